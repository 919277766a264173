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
_WRITE_HEAD = re.compile(r"^\d+ +(?:write|pwrite64|writev|pwritev2?)\(\d+(<[^>]*>)")
_ANNOTATED = re.compile(r"^(-?\w+)<(.*)>$")
_ERRNO = re.compile(r"^ (E[A-Z0-9]+) ")


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


class _Parser:
    """Turns strace lines into :class:`SyscallTrace` events for paths under ``root``."""

    def __init__(self, root: str, initial: Tree, cwd: str) -> None:
        self.table = SyscallTrace(root, initial)
        self.cwd = cwd
        self.started = False
        self.ret_path: str | None = None

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
        self.table.closed(_fd(args[0]), _path_of(args[0]), error)

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
        self.table.wrote(_fd(args[0]), _path_of(args[0]), data, offset, error)

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
        path = _path_of(args[0])
        if path is not None:
            self.table.truncated(_fd(args[0]), path, int(args[1]), error)

    def _sys_truncate(self, args: list[str], ret: int, error: str | None) -> None:
        self.table.truncated(None, self._resolve(None, args[0]), int(args[1]), error)

    def _sync(self, kind: OpKind, args: list[str], error: str | None) -> None:
        self.table.synced(kind, _fd(args[0]), _path_of(args[0]), error)

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

    _sys_renameat2 = _sys_renameat

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
    return parser.table.trace
