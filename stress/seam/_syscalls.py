"""Syscall-level records in, the power-loss model's trace out: one place for both feeders.

Two backends see a store's system calls from outside Python: the ``LD_PRELOAD`` shim
(``_shim.py``, the default) and strace (``_strace.py``, the fallback where no C compiler can
build the shim). Both feed the same :class:`SyscallTrace`, which keeps what the model
(``powerloss/_fsmodel.py``) needs and a system call does not say by itself:

* every file's whole content after each operation, per inode (so a rename or unlink of an open
  file keeps the right bytes under the right descriptor). The shim reads the content from the
  file and hands it in; strace prints only the bytes written, so the table applies them at the
  descriptor's position (``pwrite`` at its offset, ``O_APPEND`` at the end) itself;
* ``O_DSYNC``/``O_SYNC`` descriptors: a write through one is durable when it returns;
* shared-memory files left out (LMDB's ``lock.mdb``, SQLite's ``-shm``): written through a shared
  mapping and rebuilt on the next open, they hold no data;
* writes through a shared writable mapping of a data file (LMDB's ``writemap``): the shim diffs
  the mapping at every recorded call and records them (``write``, ``call="mmap"``); strace cannot
  see them, so a mapping stops its recording;
* the calls beyond write, sync and rename (VOCAB19): ``link`` (a new name for a named file, or for
  an ``O_TMPFILE`` descriptor's unnamed one), renameat2's flags (``RENAME_EXCHANGE`` swaps the
  two names), copies and preallocation into a file (recorded as ``write``/``truncate`` naming the
  call), and ``unknown`` calls, kept as they came, for the model to refuse by name;
* a bound on the file contents the trace may hold (:data:`MAX_TRACE_BYTES`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ._trace import OpKind, TraceOp

__all__ = [
    "MAX_TRACE_BYTES",
    "SyscallError",
    "SyscallTrace",
    "data_only",
    "from_shim",
    "shared_memory",
]

Tree = tuple[tuple[str, bytes | None], ...]

#: File contents the trace may hold in all (each record holds its file's whole content): past
#: this a store's writes are too many or too large to model in bounded memory.
MAX_TRACE_BYTES: Final = 256 << 20

#: Files that hold shared memory, not data, by the end of their names: LMDB's reader table
#: (``lock.mdb``, ``NAME-lock`` with ``MDB_NOSUBDIR``) and SQLite's WAL index (``-shm``). Both
#: are written through a shared mapping, and both are rebuilt when the first process opens the
#: store after a crash, so the recorders leave them out of the trace and of the trees, and the
#: shim does not diff their mappings.
SHARED_MEMORY: Final = ("/lock.mdb", "-lock", "-shm")


#: The libc calls whose records keep their name in the model's trace (VOCAB19): writes the
#: model judges by their page (``mmap``), and calls beyond write/sync/rename. Plain ones keep
#: the kind alone, as the interposer's records do.
NAMED_CALLS: Final = frozenset(
    {
        "mmap",
        "copy_file_range",
        "sendfile",
        "sendfile64",
        "fallocate",
        "fallocate64",
        "posix_fallocate",
        "posix_fallocate64",
        "truncate",
        "truncate64",
        "link",
        "linkat",
        "renameat2",
    }
)
RENAME_EXCHANGE: Final = 2
#: fallocate's mode bits (linux/falloc.h).
_KEEP_SIZE, _PUNCH, _COLLAPSE, _ZERO, _INSERT = 0x01, 0x02, 0x08, 0x10, 0x20


class SyscallError(RuntimeError):
    """The records cannot be followed (a shared writable mapping, too many bytes, a cut line)."""


def shared_memory(path: str) -> bool:
    """Whether ``path`` names a shared-memory file the recorders leave out (see above)."""
    return ("/" + path).endswith(SHARED_MEMORY)  # a relative "lock.mdb" too


def data_only(tree: Tree) -> Tree:
    """Return ``tree`` without its shared-memory files (what the model's trees hold)."""
    return tuple((rel, content) for rel, content in tree if not shared_memory(rel))


@dataclass
class _Fd:
    ino: int
    pos: int
    append: bool
    #: Opened with ``O_DSYNC`` or ``O_SYNC``: each write is durable when it returns.
    dsync: bool = False


class SyscallTrace:
    """Follows files under ``root`` through syscall-level events; :attr:`trace` is the result.

    Each event names the descriptor it was made on, as the process saw it. ``content`` (the
    shim's feeder) is the file's whole content just after the call, read from the file; without
    it (strace's) the table computes the content from the bytes the call moved.
    """

    def __init__(self, root: str, initial: Tree) -> None:
        self.root = os.path.realpath(root)
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
        #: Bytes of file content the trace's records hold so far.
        self.held = 0

    def _new(self, path: str, content: bytes = b"") -> int:
        ino = self._unnamed(content)
        self.names[path] = ino
        return ino

    def _unnamed(self, content: bytes = b"") -> int:
        ino = len(self.data) + 1
        self.data[ino] = bytearray(content)
        return ino

    def inside(self, path: str | None) -> bool:
        """Whether ``path`` is a data path under the root (not shared memory)."""
        if path is None or shared_memory(path):
            return False
        return path == self.root or path.startswith(self.root + os.sep)

    def _emit(
        self,
        kind: OpKind,
        path: str,
        *,
        target: str | None = None,
        is_dir: bool = False,
        flags: int = 0,
        content: bytes | None = None,
        error: str | None = None,
        call: str = "",
        note: str = "",
        fd: int = -1,
    ) -> None:
        if self.inside(path) or self.inside(target):
            self.held += len(content or b"")
            if self.held > MAX_TRACE_BYTES:
                raise SyscallError(
                    f"the trace would hold more than {MAX_TRACE_BYTES >> 20} MiB of file "
                    "contents (the store writes too much for the model to follow in bounded "
                    "memory)"
                )
            index = len(self.trace)
            # The call's name (and descriptor, for the unnamed files links name) where the model
            # needs them; plain records as the interposer makes them.
            named = call in NAMED_CALLS or kind == "unknown" or fd >= 0
            op = TraceOp(index, kind, path, target, is_dir, flags, content, error)
            if named:
                op = TraceOp(
                    index, kind, path, target, is_dir, flags, content, error, note, call, fd
                )
            self.trace.append(op)

    def _content(self, ino: int) -> bytes:
        return bytes(self.data[ino])

    def _entry(self, fd: int, path: str | None) -> _Fd | None:
        """The descriptor's entry, or a stand-in found by its path.

        The stand-in serves a descriptor the table never saw opened (a ``dup``, which the shim
        does not wrap) whose path is known.
        """
        entry = self.fds.get(fd)
        if entry is None and path is not None and path in self.names:
            entry = _Fd(self.names[path], 0, False)
        return entry

    def _took(self, ino: int, content: bytes | None) -> None:
        if content is not None:  # the file's real content, read by the shim: it wins
            self.data[ino][:] = content

    def mark(self, note: str) -> None:
        self.trace.append(TraceOp(len(self.trace), "mark", self.root, note=note))

    # --- opening and closing ------------------------------------------------------------------

    def opened(
        self,
        path: str,
        flags: int,
        fd: int,
        error: str | None,
        *,
        is_dir: bool | None = None,
        content: bytes | None = None,
    ) -> None:
        """An ``open`` of ``path`` returned ``fd`` (or failed with ``error``)."""
        if error is not None:
            self._emit("open", path, flags=flags, error=error)
            return
        tmpfile = getattr(os, "O_TMPFILE", 0)
        if tmpfile and flags & tmpfile == tmpfile:  # an unnamed file in the directory ``path``
            self.fds.pop(fd, None)
            self.dir_fds.discard(fd)
            if self.inside(path):
                unnamed = self._unnamed()
                self._took(unnamed, content)
                dsync = bool(flags & os.O_DSYNC)
                self.fds[fd] = _Fd(unnamed, 0, bool(flags & os.O_APPEND), dsync)
                self._emit("open", path, flags=flags, content=self._content(unnamed), fd=fd)
            return
        if is_dir if is_dir is not None else (flags & os.O_DIRECTORY or path in self.dirs):
            self.dir_fds.add(fd)
            self._emit("open", path, flags=flags, is_dir=True)
            return
        self.fds.pop(fd, None)  # a number reused from a file outside the root
        if not self.inside(path):
            return
        ino = self.names.get(path)
        if ino is None:
            ino = self._new(path)
        if flags & os.O_TRUNC:
            self.data[ino].clear()
        self._took(ino, content)
        dsync = bool(flags & os.O_DSYNC)  # O_SYNC includes O_DSYNC's bit
        self.fds[fd] = _Fd(ino, 0, bool(flags & os.O_APPEND), dsync)
        self._emit("open", path, flags=flags, content=self._content(ino))

    def closed(self, fd: int, path: str | None, error: str | None) -> None:
        entry = self.fds.pop(fd, None)
        is_dir = fd in self.dir_fds
        self.dir_fds.discard(fd)
        if path is not None and (entry is not None or is_dir):
            content = self._content(entry.ino) if entry is not None else None
            self._emit("close", path, content=content, is_dir=is_dir, error=error)

    def duplicated(self, fd: int, new: int) -> None:
        if fd in self.fds:
            self.fds[new] = self.fds[fd]
        if fd in self.dir_fds:
            self.dir_fds.add(new)

    def seeked(self, fd: int, pos: int) -> None:
        entry = self.fds.get(fd)
        if entry is not None:
            entry.pos = pos

    # --- data -----------------------------------------------------------------------------------

    def wrote(
        self,
        fd: int,
        path: str | None,
        data: bytes | None,
        offset: int | None,
        error: str | None,
        *,
        content: bytes | None = None,
        call: str = "",
        note: str = "",
    ) -> None:
        """A write: of ``data`` at ``offset`` (None: the position), or with ``content`` read.

        strace gives the bytes; the shim gives the file's content after the write. ``call`` and
        ``note`` name a write the model must know the call of (``mmap``: by the page).
        """
        entry = self._entry(fd, path)
        if entry is None or path is None:
            return
        buf = self.data[entry.ino]
        if error is None and content is not None:
            self._took(entry.ino, content)
        elif error is None and data is not None:
            at = offset if offset is not None else (len(buf) if entry.append else entry.pos)
            if at > len(buf):
                buf.extend(b"\0" * (at - len(buf)))
            buf[at : at + len(data)] = data
            if offset is None:
                entry.pos = at + len(data)
        self._emit(
            "write", path, content=self._content(entry.ino), error=error, call=call, note=note
        )
        if error is not None:
            return
        if not entry.dsync:
            self.dirty.add(entry.ino)
        elif entry.ino not in self.dirty:
            # Through O_DSYNC the write is durable when it returns: the same as the write then
            # fdatasync, exactly, when the file held no other unsynced data (LMDB's meta page
            # follows an fdatasync of the data). With other unsynced data, fdatasync would
            # credit them too; the write alone is the conservative model then.
            self._emit("fdatasync", path, content=self._content(entry.ino))

    def truncated(
        self,
        fd: int | None,
        path: str,
        length: int,
        error: str | None,
        *,
        content: bytes | None = None,
        call: str = "",
    ) -> None:
        """The size of ``path`` was set, through ``fd`` or (None) by name."""
        entry = self._entry(fd, path) if fd is not None else None
        ino = entry.ino if entry is not None else self.names.get(path)
        if ino is None:
            return
        if error is None:
            if content is not None:
                self._took(ino, content)
            else:
                buf = self.data[ino]
                del buf[length:]
                buf.extend(b"\0" * (length - len(buf)))
            self.dirty.add(ino)
        self._emit("truncate", path, content=self._content(ino), error=error, call=call)

    def fallocated(  # noqa: PLR0917 - fallocate's own arguments, in its order
        self, fd: int, path: str, mode: int, offset: int, length: int, error: str | None
    ) -> None:
        """The effect of fallocate on the bytes (strace: the shim reads the content itself).

        Mode 0 may grow the file and ``KEEP_SIZE`` alone changes nothing visible: a
        ``truncate``; punching a hole or zeroing a range zeroes it, collapsing removes it and
        inserting adds zeros: a ``write``.
        """
        entry = self._entry(fd, path)
        if entry is None:
            return
        buf = self.data[entry.ino]
        end = offset + length
        if error is None:
            if mode & _COLLAPSE:
                del buf[offset:end]
            elif mode & _INSERT:
                buf[offset:offset] = bytes(length)
            elif mode & (_PUNCH | _ZERO):
                stop = min(end, len(buf))
                buf[offset:stop] = bytes(max(stop - offset, 0))
            if not mode & _KEEP_SIZE and not mode & (_COLLAPSE | _INSERT) and end > len(buf):
                buf.extend(bytes(end - len(buf)))
            self.dirty.add(entry.ino)
        kind: OpKind = "write" if mode & ~_KEEP_SIZE else "truncate"
        self._emit(kind, path, content=self._content(entry.ino), error=error, call="fallocate")

    def content_of(self, fd: int, path: str) -> bytes | None:
        """The content the table holds for ``fd``'s file (or ``path``'s), None if unknown."""
        entry = self._entry(fd, path)
        return None if entry is None else self._content(entry.ino)

    def synced(self, kind: OpKind, fd: int, path: str | None, error: str | None) -> None:
        entry = self._entry(fd, path)
        if entry is not None and error is None:
            self.dirty.discard(entry.ino)
        if path is not None and (entry is not None or fd in self.dir_fds):
            content = self._content(entry.ino) if entry is not None else None
            self._emit(kind, path, content=content, is_dir=entry is None, error=error)

    def mapped(self, path: str) -> None:
        """``path`` was mapped shared and writable, and its writes cannot be seen (strace)."""
        if self.inside(path):
            raise SyscallError(
                f"the store writes {path} through a shared writable mapping (mmap), which no "
                "tracer can see (LMDB's writemap, say)"
            )

    # --- names ----------------------------------------------------------------------------------

    def renamed(
        self, src: str, dst: str, error: str | None, *, flags: int = 0, call: str = ""
    ) -> None:
        """A rename; with renameat2's ``RENAME_EXCHANGE`` in ``flags``, the two names swap."""
        if error is None and flags & RENAME_EXCHANGE:
            self._swap(src, dst)
        elif error is None:
            self._move(src, dst)
        self._emit(
            "rename", src, target=dst, is_dir=dst in self.dirs, error=error, flags=flags, call=call
        )

    def _move(self, src: str, dst: str) -> None:
        for path in [p for p in self.names if p == src or p.startswith(src + os.sep)]:
            self.names[dst + path[len(src) :]] = self.names.pop(path)
        for path in [p for p in self.dirs if p == src or p.startswith(src + os.sep)]:
            self.dirs.discard(path)
            self.dirs.add(dst + path[len(src) :])

    def _swap(self, a: str, b: str) -> None:
        aside = a + "\0exchanging"  # no real name holds a NUL
        self._move(a, aside)
        self._move(b, a)
        self._move(aside, b)

    def linked(
        self,
        path: str,
        target: str | None,
        fd: int,
        error: str | None,
        *,
        content: bytes | None = None,
        call: str = "link",
    ) -> None:
        """A new name ``path`` for the file ``target`` names, or (None) for ``fd``'s file."""
        ino = self.names.get(target) if target is not None else None
        if ino is None and fd in self.fds:
            ino = self.fds[fd].ino
        if error is None and ino is not None:
            self._took(ino, content)
            self.names[path] = ino
        data = self._content(ino) if ino is not None else content
        self._emit("link", path, target=target, content=data, error=error, call=call, fd=fd)

    def unknown(self, op: TraceOp) -> None:
        """A call nothing models: kept as it came (``call``, ``note``), for the model to name."""
        self._emit(
            "unknown",
            op.path,
            target=op.target,
            flags=op.flags,
            error=op.error,
            call=op.call,
            note=op.note,
            fd=op.fd,
        )

    def removed(self, path: str, is_dir: bool, error: str | None) -> None:
        if error is None:
            self.names.pop(path, None)
            self.dirs.discard(path)
        self._emit("rmdir" if is_dir else "unlink", path, is_dir=is_dir, error=error)

    def made_dir(self, path: str, error: str | None) -> None:
        if error is None:
            self.dirs.add(path)
        self._emit("mkdir", path, is_dir=True, error=error)


def from_shim(
    records: Iterable[TraceOp], root: str, initial: Tree, mapped: Iterable[str] = ()
) -> list[TraceOp]:
    """The model's trace of what the shim recorded under ``root`` (see the module docstring).

    :param initial: the tree under ``root`` when tracing began.
    :param mapped: the files the shim saw mapped shared and writable. Their writes are in the
        records (``write``, ``call="mmap"``): nothing to refuse.
    :raises SyscallError: the trace is too big.
    """
    del mapped  # the shim diffs mappings itself now (VOCAB19)
    table = SyscallTrace(root, initial)
    for op in records:
        _feed(table, op)
    return table.trace


def _feed(table: SyscallTrace, op: TraceOp) -> None:
    kind, path, error = op.kind, op.path, op.error
    if kind == "mark":
        table.mark(op.note)
    elif kind == "open":
        table.opened(path, op.flags, op.fd, error, is_dir=op.is_dir, content=op.content)
    elif kind == "write":
        note = op.note if op.call == "mmap" else ""  # which pages: the model's unit
        table.wrote(op.fd, path, None, None, error, content=op.content, call=op.call, note=note)
    elif kind == "truncate":
        length = len(op.content or b"")
        table.truncated(op.fd, path, length, error, content=op.content, call=op.call)
    elif kind in ("fsync", "fdatasync"):
        table.synced(kind, op.fd, path, error)
    elif kind == "close":
        table.closed(op.fd, path, error)
    elif kind in ("rename", "replace") and op.target is not None:
        table.renamed(path, op.target, error, flags=op.flags, call=op.call)
    elif kind == "link":
        table.linked(path, op.target, op.fd, error, content=op.content, call=op.call)
    elif kind == "unknown":
        table.unknown(op)
    elif kind in ("unlink", "rmdir"):
        table.removed(path, kind == "rmdir", error)
    elif kind == "mkdir":
        table.made_dir(path, error)
