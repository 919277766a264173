"""A Linux tracer built on strace: the D3 model for stores whose I/O happens in C (SQLite, Rust).

The Python interposer sees only calls made through Python's ``os`` and ``open``. ``strace -f``
sees the system calls themselves, from any language. This module turns its output (``-y`` for the
path behind each descriptor, ``-xx`` so every string is hex and parses without ambiguity) into the
same :class:`~._trace.TraceOp` records, so :mod:`._fsmodel` explores the crash states unchanged.

strace reports the bytes written, not the file's content, so the parser keeps every file's content
itself: the tree snapshot taken before tracing, plus every write at the descriptor's position
(``pwrite`` at its offset, ``O_APPEND`` at the end), truncation and rename, per inode so a rename
or unlink of an open file keeps the right bytes under the right descriptor.

Marks: the traced program opens ``<MARK_DIR>/<hex of the note>``, which fails (the directory does
not exist) and costs nothing; the parser turns those opens into ``mark`` records. Everything
before the first mark is ignored (interpreter start-up, opening the store untraced).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..powerloss._fsmodel import Tree
from ._trace import OpKind, TraceOp

__all__ = [
    "MARK_DIR",
    "MAX_TRACE_BYTES",
    "STRACE_SYSCALLS",
    "StraceError",
    "data_only",
    "mark_path",
    "parse",
    "shared_memory",
    "strace_command",
]

#: The directory mark opens name; it never exists, so each mark is one failed ``openat``.
MARK_DIR: Final = "/nonexistent-lance-offsets-d3-mark"

#: System calls traced (``?``: skip names this architecture lacks, e.g. ``open`` on arm64).
STRACE_SYSCALLS: Final = (
    "openat",
    "open",
    "creat",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "ftruncate",
    "truncate",
    "fsync",
    "fdatasync",
    "close",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "lseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "mmap",
)

#: Files that hold shared memory, not data: LMDB's reader table (``lock.mdb``, ``NAME-lock``
#: with ``MDB_NOSUBDIR``) and SQLite's WAL index (``-shm``). Both are written through a shared
#: mapping strace cannot see, and both are rebuilt when the first process opens the store after
#: a crash, so the recorder leaves them out of the trace and of the trees.
_SHARED_MEMORY: Final = re.compile(r"(?:^|/)lock\.mdb$|-lock$|-shm$")

_LINE = re.compile(
    r"^(?P<pid>\d+) +(?P<name>\w+)\((?P<args>.*)\) += (?P<ret>-?\d+|0x[0-9a-f]+)(?P<rest>.*)$"
)
_UNFINISHED = re.compile(r"^(?P<pid>\d+) +(?P<head>.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(?P<pid>\d+) +<\.\.\. \w+ resumed>(?P<tail>.*)$")
_HEX = re.compile(rb"\\x([0-9a-f]{2})")
#: The head of a write to a descriptor: enough to skip writes outside the root unparsed (the
#: worker pickles its snapshots, megabytes each, and splitting such a line is slow).
_WRITE_HEAD = re.compile(r"^\d+ +(?:write|pwrite64|writev|pwritev2?)\(\d+(<[^>]*>)")
_ANNOTATED = re.compile(r"^(-?\w+)<(.*)>$")
_ERRNO = re.compile(r"^ (E[A-Z0-9]+) ")


#: File contents the trace may hold in all (each record holds its file's whole content): past
#: this a store's writes are too many or too large to model in bounded memory.
MAX_TRACE_BYTES: Final = 256 << 20


class StraceError(RuntimeError):
    """strace is missing, cannot trace here, or printed something this parser cannot follow."""


def strace_command(output: str) -> list[str]:
    """Return the strace argument list writing to ``output``; raise if strace cannot run here."""
    exe = shutil.which("strace")
    if exe is None:
        raise StraceError("strace is not installed (Debian: apt-get install strace)")
    syscalls = ",".join(f"?{name}" for name in STRACE_SYSCALLS)
    return [exe, "-f", "-qq", "-y", "-xx", "-s", str(1 << 24), "--seccomp-bpf",
            "-e", "signal=none", "-e", f"trace={syscalls}", "-o", output]  # fmt: skip


def shared_memory(path: str) -> bool:
    """Whether ``path`` names a shared-memory file the recorder leaves out (see above)."""
    return _SHARED_MEMORY.search(path) is not None


def data_only(tree: Tree) -> Tree:
    """Return ``tree`` without its shared-memory files (what the model's trees hold)."""
    return tuple((rel, content) for rel, content in tree if not shared_memory(rel))


def mark_path(note: str) -> str:
    """Return the path whose failed open records the mark ``note``."""
    return f"{MARK_DIR}/{note.encode().hex()}"


def _unhex(text: str) -> bytes:
    return _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("latin-1"))


def _split(args: str) -> list[str]:
    """Split an argument list at top-level commas (not inside quotes, braces or ``<...>``)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(args):
        if ch == '"' and (i == 0 or args[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "{[<(":
            depth += 1
        elif not quoted and ch in "}]>)":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(args[start:i].strip())
            start = i + 1
    parts.append(args[start:].strip())
    return parts


def _string(arg: str) -> bytes:
    if not arg.startswith('"'):
        raise StraceError(f"expected a string argument, got {arg[:60]!r}")
    if arg.endswith('"...'):
        raise StraceError("strace cut a written buffer short: raise -s")
    return _unhex(arg[1:-1])


def _path_of(arg: str) -> str | None:
    """Return the path strace printed for a descriptor argument (``3</tmp/x>``), if any."""
    match = _ANNOTATED.match(arg)
    if match is None:
        return None
    path = _unhex(match.group(2)).decode("utf-8", "surrogateescape")
    return None if path.endswith(" (deleted)") else path


def _flags(text: str) -> int:
    value = 0
    for name in text.split("|"):
        value |= getattr(os, name, 0) if name.startswith("O_") else 0
    return value


@dataclass
class _Fd:
    ino: int
    pos: int
    append: bool
    #: Opened with ``O_DSYNC`` or ``O_SYNC``: each write is durable when it returns.
    dsync: bool = False


class _Parser:
    """Turns strace lines into TraceOp records for paths under ``root``."""

    def __init__(self, root: str, initial: Tree, cwd: str) -> None:
        self.root = os.path.realpath(root)
        self.cwd = cwd
        self.names: dict[str, int] = {}
        self.data: dict[int, bytearray] = {}
        self.dirs = {self.root}
        #: Files whose content changed since their last sync, by inode (for ``O_DSYNC``).
        self.dirty: set[int] = set()
        for rel, content in data_only(initial):
            path = os.path.join(self.root, rel)
            if content is None:
                self.dirs.add(path)
            else:
                self._new(path, content)
        self.fds: dict[int, _Fd] = {}
        self.dir_fds: set[int] = set()
        self.trace: list[TraceOp] = []
        self.started = False
        #: Bytes of file content the trace's records hold so far.
        self.held = 0
        self.ret_path: str | None = None

    def _new(self, path: str, content: bytes = b"") -> int:
        ino = len(self.data) + 1
        self.data[ino] = bytearray(content)
        self.names[path] = ino
        return ino

    def _inside(self, path: str | None) -> bool:
        if path is None or shared_memory(path):
            return False
        return path == self.root or path.startswith(self.root + os.sep)

    def follows(self, path: str | None) -> bool:
        """Whether a write to ``path`` can matter: traced, and under the root."""
        return self.started and self._inside(path)

    def _resolve(self, dir_arg: str | None, path_arg: str) -> str:
        """Return the absolute path of ``path_arg`` relative to the descriptor ``dir_arg``."""
        path = _unhex(path_arg[1:-1]).decode("utf-8", "surrogateescape")
        base = (_path_of(dir_arg) if dir_arg else None) or self.cwd
        return os.path.normpath(os.path.join(base, path))

    def emit(
        self,
        kind: OpKind,
        path: str,
        *,
        target: str | None = None,
        is_dir: bool = False,
        flags: int = 0,
        content: bytes | None = None,
        error: str | None = None,
    ) -> None:
        if self._inside(path) or self._inside(target):
            self.held += len(content or b"")
            if self.held > MAX_TRACE_BYTES:
                raise StraceError(
                    f"the trace would hold more than {MAX_TRACE_BYTES >> 20} MiB of file "
                    "contents (the store writes too much for the model to follow in bounded "
                    "memory)"
                )
            index = len(self.trace)
            op = TraceOp(index, kind, path, target, is_dir, flags, content, error)
            self.trace.append(op)

    def content(self, ino: int) -> bytes:
        return bytes(self.data[ino])

    def line(self, name: str, args: list[str], ret: int, error: str | None) -> None:
        if not self.started and name not in ("openat", "open"):
            return  # before the first mark: start-up and the untraced open, already in the tree
        handler = getattr(self, f"_sys_{name}", None)
        if handler is not None:
            handler(args, ret, error)

    # --- opening and closing ------------------------------------------------------------------

    def _open(
        self, path: str, flags: int, ret: int, error: str | None, ret_path: str | None
    ) -> None:
        if path.startswith(MARK_DIR + "/"):
            note = bytes.fromhex(path[len(MARK_DIR) + 1 :]).decode()
            self.started = True
            self.trace.append(TraceOp(len(self.trace), "mark", self.root, note=note))
            return
        if not self.started:
            return
        path = ret_path or path
        if error is not None:
            self.emit("open", path, flags=flags, error=error)
            return
        if flags & os.O_DIRECTORY or path in self.dirs:
            self.dir_fds.add(ret)
            self.emit("open", path, flags=flags, is_dir=True)
            return
        if not self._inside(path):
            return
        ino = self.names.get(path)
        if ino is None:
            ino = self._new(path)
        if flags & os.O_TRUNC:
            self.data[ino].clear()
        dsync = bool(flags & os.O_DSYNC)  # O_SYNC includes O_DSYNC's bit
        self.fds[ret] = _Fd(ino, 0, bool(flags & os.O_APPEND), dsync)
        self.emit("open", path, flags=flags, content=self.content(ino))

    def _sys_openat(self, args: list[str], ret: int, error: str | None) -> None:
        self._open(self._resolve(args[0], args[1]), _flags(args[2]), ret, error, self.ret_path)

    def _sys_open(self, args: list[str], ret: int, error: str | None) -> None:
        self._open(self._resolve(None, args[0]), _flags(args[1]), ret, error, self.ret_path)

    def _sys_creat(self, args: list[str], ret: int, error: str | None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self._open(self._resolve(None, args[0]), flags, ret, error, self.ret_path)

    def _sys_close(self, args: list[str], ret: int, error: str | None) -> None:
        fd, path = int(args[0].split("<")[0]), _path_of(args[0])
        entry = self.fds.pop(fd, None)
        is_dir = fd in self.dir_fds
        self.dir_fds.discard(fd)
        if path is not None and (entry is not None or is_dir):
            content = self.content(entry.ino) if entry is not None else None
            self.emit("close", path, content=content, is_dir=is_dir, error=error)

    def _dup(self, args: list[str], ret: int, error: str | None) -> None:
        fd = int(args[0].split("<")[0])
        if error is None and fd in self.fds:
            self.fds[ret] = self.fds[fd]
        if error is None and fd in self.dir_fds:
            self.dir_fds.add(ret)

    _sys_dup = _sys_dup2 = _sys_dup3 = _dup

    def _sys_fcntl(self, args: list[str], ret: int, error: str | None) -> None:
        if args[1].startswith("F_DUPFD"):
            self._dup(args, ret, error)
        elif args[1] == "F_FULLFSYNC":  # pragma: no cover - macOS only
            self._sync("fsync", args, error)

    # --- data -----------------------------------------------------------------------------------

    def _write_at(
        self, args: list[str], data: bytes, offset: int | None, error: str | None
    ) -> None:
        fd = int(args[0].split("<")[0])
        entry, path = self.fds.get(fd), _path_of(args[0])
        if entry is None or path is None:
            return
        buf = self.data[entry.ino]
        if error is None:
            at = offset if offset is not None else (len(buf) if entry.append else entry.pos)
            if at > len(buf):
                buf.extend(b"\0" * (at - len(buf)))
            buf[at : at + len(data)] = data
            if offset is None:
                entry.pos = at + len(data)
        self.emit("write", path, content=self.content(entry.ino), error=error)
        if error is not None:
            return
        if not entry.dsync:
            self.dirty.add(entry.ino)
        elif entry.ino not in self.dirty:
            # Through O_DSYNC the write is durable when it returns: the same as the write then
            # fdatasync, exactly, when the file held no other unsynced data (LMDB's meta page
            # follows an fdatasync of the data). With other unsynced data, fdatasync would
            # credit them too; the write alone is the conservative model then.
            self.emit("fdatasync", path, content=self.content(entry.ino))

    def _sys_mmap(self, args: list[str], ret: int, error: str | None) -> None:
        path = _path_of(args[4]) if len(args) > 4 else None
        shared_write = "PROT_WRITE" in args[2] and "MAP_SHARED" in args[3]
        if error is None and shared_write and self._inside(path):
            # Nothing after this can be trusted to hold the file's content: stop here.
            raise StraceError(
                f"the store writes {path} through a shared writable mapping (mmap), which "
                "strace cannot see (an mmap-aware recorder would be needed: LMDB's writemap)"
            )

    def _sys_write(self, args: list[str], ret: int, error: str | None) -> None:
        self._write_at(args, _string(args[1])[: max(ret, 0)], None, error)

    def _sys_pwrite64(self, args: list[str], ret: int, error: str | None) -> None:
        self._write_at(args, _string(args[1])[: max(ret, 0)], int(args[3]), error)

    def _sys_writev(self, args: list[str], ret: int, error: str | None) -> None:
        bases = re.findall(r'iov_base="((?:[^"\\]|\\.)*)"', args[1])
        data = b"".join(_unhex(b) for b in bases)[: max(ret, 0)]
        self._write_at(args, data, None, error)

    def _sys_pwritev(self, args: list[str], ret: int, error: str | None) -> None:
        bases = re.findall(r'iov_base="((?:[^"\\]|\\.)*)"', args[1])
        data = b"".join(_unhex(b) for b in bases)[: max(ret, 0)]
        self._write_at(args, data, int(args[3]), error)

    _sys_pwritev2 = _sys_pwritev

    def _sys_lseek(self, args: list[str], ret: int, error: str | None) -> None:
        entry = self.fds.get(int(args[0].split("<")[0]))
        if entry is not None and error is None:
            entry.pos = ret

    def _truncate(self, ino: int, path: str, length: int, error: str | None) -> None:
        if error is None:
            buf = self.data[ino]
            del buf[length:]
            buf.extend(b"\0" * (length - len(buf)))
            self.dirty.add(ino)
        self.emit("truncate", path, content=self.content(ino), error=error)

    def _sys_ftruncate(self, args: list[str], ret: int, error: str | None) -> None:
        entry, path = self.fds.get(int(args[0].split("<")[0])), _path_of(args[0])
        if entry is not None and path is not None:
            self._truncate(entry.ino, path, int(args[1]), error)

    def _sys_truncate(self, args: list[str], ret: int, error: str | None) -> None:
        path = self._resolve(None, args[0])
        if path in self.names:
            self._truncate(self.names[path], path, int(args[1]), error)

    def _sync(self, kind: OpKind, args: list[str], error: str | None) -> None:
        fd = int(args[0].split("<")[0])
        entry, path = self.fds.get(fd), _path_of(args[0])
        if entry is not None and error is None:
            self.dirty.discard(entry.ino)
        if path is not None and (entry is not None or fd in self.dir_fds):
            content = self.content(entry.ino) if entry is not None else None
            self.emit(kind, path, content=content, is_dir=entry is None, error=error)

    def _sys_fsync(self, args: list[str], ret: int, error: str | None) -> None:
        self._sync("fsync", args, error)

    def _sys_fdatasync(self, args: list[str], ret: int, error: str | None) -> None:
        self._sync("fdatasync", args, error)

    # --- names ----------------------------------------------------------------------------------

    def _rename(self, src: str, dst: str, error: str | None) -> None:
        if error is None:
            for path in [p for p in self.names if p == src or p.startswith(src + os.sep)]:
                self.names[dst + path[len(src) :]] = self.names.pop(path)
            for path in [p for p in self.dirs if p == src or p.startswith(src + os.sep)]:
                self.dirs.discard(path)
                self.dirs.add(dst + path[len(src) :])
        self.emit("rename", src, target=dst, is_dir=dst in self.dirs, error=error)

    def _sys_rename(self, args: list[str], ret: int, error: str | None) -> None:
        self._rename(self._resolve(None, args[0]), self._resolve(None, args[1]), error)

    def _sys_renameat(self, args: list[str], ret: int, error: str | None) -> None:
        self._rename(self._resolve(args[0], args[1]), self._resolve(args[2], args[3]), error)

    _sys_renameat2 = _sys_renameat

    def _remove(self, path: str, is_dir: bool, error: str | None) -> None:
        if error is None:
            self.names.pop(path, None)
            self.dirs.discard(path)
        self.emit("rmdir" if is_dir else "unlink", path, is_dir=is_dir, error=error)

    def _sys_unlink(self, args: list[str], ret: int, error: str | None) -> None:
        self._remove(self._resolve(None, args[0]), False, error)

    def _sys_unlinkat(self, args: list[str], ret: int, error: str | None) -> None:
        self._remove(self._resolve(args[0], args[1]), "AT_REMOVEDIR" in args[2], error)

    def _sys_rmdir(self, args: list[str], ret: int, error: str | None) -> None:
        self._remove(self._resolve(None, args[0]), True, error)

    def _mkdir(self, path: str, error: str | None) -> None:
        if error is None:
            self.dirs.add(path)
        self.emit("mkdir", path, is_dir=True, error=error)

    def _sys_mkdir(self, args: list[str], ret: int, error: str | None) -> None:
        self._mkdir(self._resolve(None, args[0]), error)

    def _sys_mkdirat(self, args: list[str], ret: int, error: str | None) -> None:
        self._mkdir(self._resolve(args[0], args[1]), error)


def parse(lines: Iterable[str], root: str, initial: Tree, cwd: str = "/") -> list[TraceOp]:
    """Turn strace output into trace records for paths under ``root`` (see the module docstring).

    :param initial: the tree under ``root`` when tracing began, so file contents can be followed.
    :param cwd: the traced program's working directory, for relative paths strace cannot annotate.
    :raises StraceError: a line this parser cannot follow (a buffer strace cut short, say).
    """
    parser = _Parser(root, initial, cwd)
    pending: dict[str, str] = {}
    for raw in lines:
        text = raw.rstrip("\n")
        unfinished = _UNFINISHED.match(text)
        if unfinished:
            pending[unfinished["pid"]] = unfinished["head"]
            continue
        resumed = _RESUMED.match(text)
        if resumed:
            text = f"{resumed['pid']} {pending.pop(resumed['pid'], '')}{resumed['tail']}"
        head = _WRITE_HEAD.match(text)
        if head is not None and not parser.follows(_path_of(f"0{head[1]}")):
            continue
        match = _LINE.match(text)
        if match is None:
            continue  # exits, signals, "+++ exited with 0 +++"
        rest = match["rest"]
        errno = _ERRNO.match(rest)
        annotated = rest.startswith("<") and rest.endswith(">")
        parser.ret_path = _path_of(f"0{rest}") if annotated else None
        parser.line(match["name"], _split(match["args"]), int(match["ret"], 0), errno and errno[1])
    return parser.trace
