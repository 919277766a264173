"""The strace feeder of the syscall model: a fallback for stores whose I/O happens in C.

The syscall shim (``_shim.py``) is the first choice for such stores: it sees the same calls from
inside the process and reads each file's content itself. It needs a C compiler to be built;
where there is none but strace is installed, ``strace -f`` sees the system calls from outside.
This module turns its output (``-y`` for the path behind each descriptor, ``-xx`` so every
string is hex and parses without ambiguity) into events of :class:`~._syscalls.SyscallTrace`,
which keeps every file's content from the bytes written (strace shows no file contents) and
produces the same :class:`~._trace.TraceOp` records as the shim's feeder.

Marks: the traced program opens ``<MARK_DIR>/<hex of the note>``, which fails (the directory does
not exist) and costs nothing; the parser turns those opens into ``mark`` records. Everything
before the first mark is ignored (interpreter start-up, opening the store untraced).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from typing import Final

from ._syscalls import SyscallError, SyscallTrace, Tree
from ._trace import OpKind, TraceOp

__all__ = ["MARK_DIR", "STRACE_SYSCALLS", "StraceError", "mark_path", "parse", "strace_command"]

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
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "copy_file_range",
    "sendfile",
    "sendfile64",
    "fallocate",
    "lseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "mmap",
)

_LINE = re.compile(
    r"^(?P<pid>\d+) +(?P<name>\w+)\((?P<args>.*)\) += (?P<ret>-?\d+|0x[0-9a-f]+)(?P<rest>.*)$"
)
_UNFINISHED = re.compile(r"^(?P<pid>\d+) +(?P<head>.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(?P<pid>\d+) +<\.\.\. \w+ resumed>(?P<tail>.*)$")
_HEX = re.compile(rb"\\x([0-9a-f]{2})")
#: The head of a write to a descriptor: enough to skip writes outside the root unparsed (the
#: worker pickles its snapshots, megabytes each, and splitting such a line is slow).
_WRITE_HEAD = re.compile(r"^\d+ +(?:write|pwrite64|writev|pwritev2?)\((\d+<[^>]*>(?:\(deleted\))?)")
#: A descriptor strace annotated with its path; strace 6 puts "(deleted)" after the brackets.
_ANNOTATED = re.compile(r"^(-?\w+)<(.*)>(\(deleted\))?$")
#: An unnamed O_TMPFILE file, as /proc names it: "<dir>/#<inode> (deleted)".
_UNNAMED = re.compile(r"^(?P<dir>.*)/#\d+(?: \(deleted\))?$")
#: How renameat2's flags read (RENAME_WHITEOUT and others: a call nothing models).
_RENAME_FLAGS = {"RENAME_NOREPLACE": 1, "RENAME_EXCHANGE": 2, "RENAME_WHITEOUT": 4}
_FALLOC_FLAGS = {"FALLOC_FL_KEEP_SIZE": 0x01, "FALLOC_FL_PUNCH_HOLE": 0x02,
                 "FALLOC_FL_COLLAPSE_RANGE": 0x08, "FALLOC_FL_ZERO_RANGE": 0x10,
                 "FALLOC_FL_INSERT_RANGE": 0x20, "FALLOC_FL_UNSHARE_RANGE": 0x40}  # fmt: skip
_ERRNO = re.compile(r"^ (E[A-Z0-9]+) ")


Err = str | None  # an errno name, or None: the call worked


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


def _annotation(arg: str) -> tuple[str, bool] | None:
    """The path strace printed for a descriptor argument (``3</tmp/x>``) and whether it is gone."""
    match = _ANNOTATED.match(arg)
    if match is None:
        return None
    path = _unhex(match.group(2)).decode("utf-8", "surrogateescape")
    if path.endswith(" (deleted)"):  # strace before 6 prints it inside the brackets
        return path[: -len(" (deleted)")], True
    return path, match.group(3) is not None


def _path_of(arg: str) -> str | None:
    """Return the path strace printed for a descriptor argument (``3</tmp/x>``), if any."""
    found = _annotation(arg)
    return None if found is None or found[1] else found[0]


def _bits(text: str, names: dict[str, int]) -> tuple[int, list[str]]:
    """Flags written ``A|B`` (or a number) as a value, and the names nothing here knows."""
    value, unknown = 0, []
    for name in text.split("|"):
        if name in names:
            value |= names[name]
        elif name.isdigit() or name.startswith("0x"):
            value |= int(name, 0)
        else:
            unknown.append(name)
    return value, unknown


def _flags(text: str) -> int:
    value = 0
    for name in text.split("|"):
        value |= getattr(os, name, 0) if name.startswith("O_") else 0
    return value


class _Parser:
    """Turns strace lines into :class:`SyscallTrace` events for paths under ``root``."""

    def __init__(self, root: str, initial: Tree, cwd: str) -> None:
        self.table = SyscallTrace(root, initial)
        self.cwd = cwd
        self.started = False
        self.ret_path: str | None = None
        #: O_TMPFILE descriptors a link named (their annotation keeps the unnamed entry).
        self.named: dict[int, str] = {}

    def fd_path(self, arg: str) -> str | None:
        """The path of a descriptor argument; an unnamed O_TMPFILE file as ``<dir>/#tmpfile-N``.

        The same names the shim gives (``_shim_c.py``'s ``fd_path``), until a link names it.
        """
        found = _annotation(arg)
        if found is None:
            return None
        path, gone = found
        unnamed = _UNNAMED.match(path) if gone else None
        if unnamed is not None:
            number = _fd(arg)
            return self.named.get(number, f"{unnamed['dir']}/#tmpfile-{number}")
        return None if gone else path

    def follows(self, path: str | None) -> bool:
        """Whether a write to ``path`` can matter: traced, and under the root."""
        return self.started and self.table.inside(path)

    def _resolve(self, dir_arg: str | None, path_arg: str) -> str:
        """Return the absolute path of ``path_arg`` relative to the descriptor ``dir_arg``."""
        path = _unhex(path_arg[1:-1]).decode("utf-8", "surrogateescape")
        base = (_path_of(dir_arg) if dir_arg else None) or self.cwd
        return os.path.normpath(os.path.join(base, path))

    def line(self, name: str, args: list[str], ret: int, error: str | None) -> None:
        if not self.started and name not in ("openat", "open"):
            return  # before the first mark: start-up and the untraced open, already in the tree
        handler = getattr(self, f"_sys_{name}", None)
        if handler is not None:
            try:
                handler(args, ret, error)
            except SyscallError as exc:
                raise StraceError(str(exc)) from exc

    # --- opening and closing ------------------------------------------------------------------

    def _open(self, path: str, flags: int, ret: int, error: str | None) -> None:
        if path.startswith(MARK_DIR + "/"):
            self.started = True
            self.table.mark(bytes.fromhex(path[len(MARK_DIR) + 1 :]).decode())
        elif self.started:
            self.table.opened(self.ret_path or path, flags, ret, error)

    def _sys_openat(self, args: list[str], ret: int, error: str | None) -> None:
        self._open(self._resolve(args[0], args[1]), _flags(args[2]), ret, error)

    def _sys_open(self, args: list[str], ret: int, error: str | None) -> None:
        self._open(self._resolve(None, args[0]), _flags(args[1]), ret, error)

    def _sys_creat(self, args: list[str], ret: int, error: str | None) -> None:
        self._open(self._resolve(None, args[0]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ret, error)

    def _sys_close(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.closed(_fd(args[0]), self.fd_path(args[0]), error)
        self.named.pop(_fd(args[0]), None)

    def _dup(self, args: list[str], ret: int, error: str | None) -> None:
        if error is None:
            self.table.duplicated(_fd(args[0]), ret)

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
        self.table.wrote(_fd(args[0]), self.fd_path(args[0]), data, offset, error)

    def _sys_mmap(self, args: list[str], ret: int, error: str | None) -> None:
        path = _path_of(args[4]) if len(args) > 4 else None
        shared_write = "PROT_WRITE" in args[2] and "MAP_SHARED" in args[3]
        if error is None and shared_write and path is not None:
            self.table.mapped(path)  # raises for a data file under the root

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
        if error is None:
            self.table.seeked(_fd(args[0]), ret)

    def _sys_ftruncate(self, args: list[str], ret: int, error: str | None) -> None:
        path = self.fd_path(args[0])
        if path is not None:
            self.table.truncated(_fd(args[0]), path, int(args[1]), error)

    def _sys_truncate(self, args: list[str], ret: int, error: str | None) -> None:
        path = self._resolve(None, args[0])
        self.table.truncated(None, path, int(args[1]), error, call="truncate")

    def _sys_fallocate(self, args: list[str], ret: int, error: str | None) -> None:
        path = self.fd_path(args[0])
        if path is None:
            return
        mode, unknown = _bits(args[1], _FALLOC_FLAGS)
        if unknown:
            raise StraceError(f"fallocate with a mode this parser does not know: {args[1]}")
        self.table.fallocated(_fd(args[0]), path, mode, int(args[2]), int(args[3]), error)

    def _copied(  # noqa: PLR0917 - the call's own arguments, in its order
        self, call: str, src: str, src_off: str, dst: str, dst_off: int | None, ret: int, e: Err
    ) -> None:
        """``ret`` bytes of ``src`` at the offset strace printed (``[10]``) written to ``dst``.

        strace prints no bytes of a copy: they come from the source's content, known only for a
        file under the root and an offset strace shows (reads, which move a descriptor's
        position, are not traced).
        """
        path = self.fd_path(dst)
        if path is None or not self.table.inside(path):
            return
        source = self.fd_path(src)
        at = re.match(r"^\[(\d+)\]", src_off)
        data = self.table.content_of(_fd(src), source) if source is not None else None
        if e is None and (data is None or at is None):
            raise StraceError(
                f"{call} into {path}: strace shows no bytes of a copy, and the source "
                f"({source or src}) is not a file under the store's directory read at a known "
                "offset"
            )
        start = int(at.group(1)) if at is not None else 0
        chunk = data[start : start + max(ret, 0)] if data is not None else b""
        self.table.wrote(_fd(dst), path, chunk, dst_off, e, call=call)

    def _sys_copy_file_range(self, args: list[str], ret: int, error: str | None) -> None:
        out = re.match(r"^\[(\d+)\]", args[3])
        offset = int(out.group(1)) if out is not None else None
        self._copied("copy_file_range", args[0], args[1], args[2], offset, ret, error)

    def _sys_sendfile(self, args: list[str], ret: int, error: str | None) -> None:
        self._copied("sendfile", args[1], args[2], args[0], None, ret, error)

    _sys_sendfile64 = _sys_sendfile

    def _sync(self, kind: OpKind, args: list[str], error: str | None) -> None:
        self.table.synced(kind, _fd(args[0]), self.fd_path(args[0]), error)

    def _sys_fsync(self, args: list[str], ret: int, error: str | None) -> None:
        self._sync("fsync", args, error)

    def _sys_fdatasync(self, args: list[str], ret: int, error: str | None) -> None:
        self._sync("fdatasync", args, error)

    # --- names ----------------------------------------------------------------------------------

    def _sys_rename(self, args: list[str], ret: int, error: str | None) -> None:
        src, dst = self._resolve(None, args[0]), self._resolve(None, args[1])
        self.table.renamed(src, dst, error)

    def _sys_renameat(self, args: list[str], ret: int, error: str | None) -> None:
        src, dst = self._resolve(args[0], args[1]), self._resolve(args[2], args[3])
        self.table.renamed(src, dst, error)

    def _sys_renameat2(self, args: list[str], ret: int, error: str | None) -> None:
        src, dst = self._resolve(args[0], args[1]), self._resolve(args[2], args[3])
        flags, unknown = _bits(args[4], _RENAME_FLAGS)
        if unknown or flags & ~3:
            self._unknown("renameat2", src, dst, flags, f"flags {args[4]}", error)
        else:
            self.table.renamed(src, dst, error, flags=flags, call="renameat2")

    def _unknown(  # noqa: PLR0917 - what an "unknown" record holds
        self, call: str, path: str, target: str | None, flags: int, note: str, error: Err
    ) -> None:
        op = TraceOp(-1, "unknown", path, target, flags=flags, error=error, note=note, call=call)
        self.table.unknown(op)

    def _link(  # noqa: PLR0917 - linkat's own arguments, in its order
        self, call: str, old_dir: str, old: str, new: str, flags: str, e: Err
    ) -> None:
        """A new name ``new``; for a descriptor's file (AT_EMPTY_PATH, /proc/self/fd/N), none."""
        name = _unhex(old[1:-1]).decode("utf-8", "surrogateescape")
        proc = re.fullmatch(r"/(?:proc/self|dev)/fd/(\d+)", name)
        fd, target = -1, None
        if "AT_EMPTY_PATH" in flags and not name:
            fd = _fd(old_dir)
        elif proc is not None:
            fd = int(proc.group(1))
        else:
            target = self._resolve(old_dir, old)
        self.table.linked(new, target, fd, e, call=call)
        if e is None and fd >= 0:
            self.named[fd] = new

    def _sys_link(self, args: list[str], ret: int, error: str | None) -> None:
        self._link("link", "", args[0], self._resolve(None, args[1]), "", error)

    def _sys_linkat(self, args: list[str], ret: int, error: str | None) -> None:
        new = self._resolve(args[2], args[3])
        self._link("linkat", args[0], args[1], new, args[4], error)

    def _sys_symlink(self, args: list[str], ret: int, error: str | None) -> None:
        path = self._resolve(None, args[1])
        self._unknown("symlink", path, None, 0, f"to {_unhex(args[0][1:-1]).decode()}", error)

    def _sys_symlinkat(self, args: list[str], ret: int, error: str | None) -> None:
        path = self._resolve(args[1], args[2])
        self._unknown("symlinkat", path, None, 0, f"to {_unhex(args[0][1:-1]).decode()}", error)

    def _sys_unlink(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.removed(self._resolve(None, args[0]), False, error)

    def _sys_unlinkat(self, args: list[str], ret: int, error: str | None) -> None:
        path = self._resolve(args[0], args[1])
        self.table.removed(path, "AT_REMOVEDIR" in args[2], error)

    def _sys_rmdir(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.removed(self._resolve(None, args[0]), True, error)

    def _sys_mkdir(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.made_dir(self._resolve(None, args[0]), error)

    def _sys_mkdirat(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.made_dir(self._resolve(args[0], args[1]), error)


def _fd(arg: str) -> int:
    return int(arg.split("<", maxsplit=1)[0])


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
        if head is not None and not parser.follows(parser.fd_path(head[1])):
            continue
        match = _LINE.match(text)
        if match is None:
            continue  # exits, signals, "+++ exited with 0 +++"
        rest = match["rest"]
        errno = _ERRNO.match(rest)
        annotated = rest.startswith("<") and rest.endswith((">", ">(deleted)"))
        parser.ret_path = _path_of(f"0{rest}") if annotated else None
        parser.line(match["name"], _split(match["args"]), int(match["ret"], 0), errno and errno[1])
    return parser.table.trace
