"""The trace of file-system operations a worker made, as the interposer records it.

This is the contract between the interposer (``_interpose.py``, which records) and its readers:
the crash-point killer (which numbers operations) and the power-loss model (``_fsmodel.py``, which
rebuilds the directory states a power cut could leave). Records are plain data so they pickle
between processes and print readably.

Each record describes one operation *after it completed* successfully (a failing call is recorded
with ``error`` set and changes nothing in the model). Paths are absolute and normalised with
``os.path.realpath`` of the directory plus the entry name, so renames compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["OpKind", "TraceOp"]

OpKind = Literal[
    "open",  # a file or directory was opened; ``flags`` holds the os.O_* flags
    "write",  # bytes reached the OS for ``path`` (os.write, or a flush of a file object)
    "truncate",  # the file's size was set (os.truncate/ftruncate, or open with O_TRUNC)
    "fsync",  # os.fsync or F_FULLFSYNC on ``path`` (a directory when ``is_dir``)
    "fdatasync",  # os.fdatasync on ``path``
    "close",  # a descriptor or file object for ``path`` was closed
    "rename",  # os.rename(path, target)
    "replace",  # os.replace(path, target)
    "unlink",  # os.remove/os.unlink(path)
    "mkdir",  # os.mkdir(path) (os.makedirs records one per level it created)
    "rmdir",  # os.rmdir(path)
    "mark",  # not a file-system operation: a note from the harness ("acked save ...")
]


@dataclass(frozen=True)
class TraceOp:
    """One recorded operation.

    :ivar index: 0-based position in the trace; crash point ``k`` means "around operation k".
    :ivar kind: what happened (see :data:`OpKind`).
    :ivar path: the file or directory operated on (the source, for a rename).
    :ivar target: the destination of a rename/replace, else None.
    :ivar is_dir: True when ``path`` is a directory (a directory fsync, say).
    :ivar flags: ``os.O_*`` flags of an ``open``, else 0.
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
