"""The trace of file-system operations a worker made, as the seam's recorders record it.

This is the contract between the recorders (the Python interposer ``_interpose.py``, the syscall
shim ``_shim.py`` and the strace parser ``_strace.py``) and their readers: the crash-point killer
(which numbers operations), F2's fault plans and judge, and the power-loss model
(``powerloss/_fsmodel.py``, which rebuilds the directory states a power cut could leave). Records
are plain data so they pickle between processes and print readably.

Each record describes one operation *after it completed* successfully (a failing call is recorded
with ``error`` set and changes nothing in the model). Paths are absolute and normalised with
``os.path.realpath`` of the directory plus the entry name, so renames compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PAGE", "OpKind", "Trace", "TraceOp"]

#: The unit a power cut persists writes through a shared mapping in (``"write"``, ``call="mmap"``).
PAGE = 4096

OpKind = Literal[
    # a file or directory was opened; ``flags`` holds the os.O_* flags. With O_TMPFILE: ``path``
    # is the directory the unnamed file was made in, ``fd`` its descriptor, and the file is
    # ``<dir>/#tmpfile-<fd>`` in later records until a ``link`` names it
    "open",
    # bytes reached the OS for ``path``: os.write, a flush of a file object, and, named by
    # ``call``, copy_file_range, sendfile, fallocate's zero range, punch hole, collapse and
    # insert range, and writes through a shared mapping (``call="mmap"``, recorded at the next
    # recorded operation or sync; the pages written are in ``note``)
    "write",
    # the file's size was set: os.truncate (by path too), ftruncate, open with O_TRUNC, and
    # fallocate/posix_fallocate that can only change the size
    "truncate",
    "fsync",  # os.fsync, F_FULLFSYNC or msync on ``path`` (a directory when ``is_dir``)
    "fdatasync",  # os.fdatasync on ``path``
    "close",  # a descriptor or file object for ``path`` was closed
    # rename(path, target); at syscall level ``flags`` holds renameat2's flags: 1
    # RENAME_NOREPLACE (EEXIST if target exists), 2 RENAME_EXCHANGE (the two entries swap)
    "rename",
    "replace",  # os.replace(path, target)
    "unlink",  # os.remove/os.unlink(path)
    "mkdir",  # os.mkdir(path) (os.makedirs records one per level it created)
    "rmdir",  # os.rmdir(path)
    # a new entry ``path`` for an existing file: ``target`` the existing name, or None when the
    # file had none (an O_TMPFILE descriptor linked through AT_EMPTY_PATH or /proc/self/fd/N;
    # ``fd`` then names it); ``content`` the file's whole content. EEXIST if ``path`` exists
    "link",
    # a file-system call the recorder saw and nothing models yet: ``call`` names it, ``note``
    # its flags, ``path`` where (symlink, renameat2 with RENAME_WHITEOUT, ...)
    "unknown",
    "mark",  # not a file-system operation: a note from the harness ("acked save ...")
]


@dataclass(frozen=True)
class TraceOp:
    """One recorded operation.

    :ivar index: 0-based position in the trace; crash point ``k`` means "around operation k".
    :ivar kind: what happened (see :data:`OpKind`).
    :ivar path: the file or directory operated on (the source, for a rename).
    :ivar target: the destination of a rename/replace, the existing name of a link, else None.
    :ivar is_dir: True when ``path`` is a directory (a directory fsync, say).
    :ivar flags: ``os.O_*`` flags of an ``open``; renameat2's flags of a ``rename``; the mode of
        a fallocate; else 0.
    :ivar content: for a regular file after open/write/truncate/fsync/fdatasync/close, the whole
        content the OS holds for it just after the operation; else None. The model needs whole
        contents, not deltas, to rebuild synced and unsynced states without replaying writes.
    :ivar error: errno name if the call raised (``"ENOSPC"``), else None.
    :ivar note: free text for ``mark`` records (e.g. ``"ack save 1 2 5"``); for a record of the
        syscall backend, the call's size and offset (``"4096 bytes at 8192"``).
    :ivar call: the libc function the syscall backend saw (``"pwrite64"``), else ``""``.
    :ivar fd: the descriptor a syscall-level record was made on (the one an ``open`` returned),
        else -1: the syscall model (``_syscalls.py``) follows ``O_DSYNC`` per descriptor.
    """

    index: int
    kind: OpKind
    path: str
    target: str | None = None
    is_dir: bool = False
    flags: int = 0
    content: bytes | None = None
    error: str | None = None
    note: str = ""
    call: str = ""
    fd: int = -1

    def __str__(self) -> str:
        where = f"{self.path} -> {self.target}" if self.target else self.path
        extra = f" {self.content!r}" if self.content is not None and len(self.content) < 48 else ""
        failed = f" [{self.error}]" if self.error else ""
        if self.call:  # syscall level: name the call and what it moved
            extra = f" ({self.note})" if self.note else ""
            return f"#{self.index} {self.call} {where}{extra}{failed}"
        note = f" {self.note}" if self.note else ""
        return f"#{self.index} {self.kind} {where}{extra}{failed}{note}"


class Trace(list[TraceOp]):
    """A recorded trace: the records, in index order once the recording block ended.

    :ivar syscall: when the syscall shim recorded the same run beside the Python interposer (the
        witness, ``_record.tracing(..., witness=True)``), the shim's records; else None.
    :ivar unwitnessed: why the shim did not record beside the interposer when asked ("": it did,
        or it was not asked).
    """

    syscall: list[TraceOp] | None = None
    unwitnessed: str = ""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled as plain data (a live trace of the shim drains its records first).
        return (_rebuilt, (list(self), self.syscall, self.unwitnessed))


def _rebuilt(ops: list[TraceOp], syscall: list[TraceOp] | None, unwitnessed: str) -> Trace:
    trace = Trace(ops)
    trace.syscall, trace.unwitnessed = syscall, unwitnessed
    return trace
