"""A CORRECT store that, like LMDB (py-lmdb) and RocksDB (rocksdict), refuses a second open handle
on one location in one process: the suite must not fail C7, C8, H2, H3 or F1 on it because its
own helper handle was refused.

``{path}/{topic_id}_{consumer_id}.off`` holds ``decimal + "\\n"``: written to a unique temp file,
fsynced, renamed over and the directory fsynced, under ``flock`` on ``{path}/.lock`` (as are
deletes), so handles in other processes see and exclude one another. A module-level registry of
open locations (what LMDB keeps per environment) makes a second ``OneHandle(path)`` in the same
process raise until the first is closed.

- ``OneHandle`` does not declare it: P2's same-process part fails, and nothing else.
- ``OneHandleDeclared`` declares ``handles_per_process = 1``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from ._base import DirStore

#: Locations with an open handle in this process (LMDB: "environment already open in this process").
_OPEN: set[str] = set()


class OneHandleError(RuntimeError):
    """A second handle on a location already open in this process."""


class OneHandle(DirStore):
    """One file per key, fsync and rename, flock; one open handle per location per process."""

    def __init__(self, path: str) -> None:
        where = os.path.realpath(path)
        if where in _OPEN:
            raise OneHandleError(f"the store at {path!r} is already open in this process")
        super().__init__(path)
        _OPEN.add(where)
        self._where = where

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, file: str, offset: int) -> None:
        with self._locked():
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(b"%d\n" % offset)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, file)
            except BaseException:
                os.unlink(tmp)
                raise
            self._sync_dir()

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self._locked():
            super().delete(topic_id, consumer_id)
            self._sync_dir()

    def close(self) -> None:
        if not self.closed:
            _OPEN.discard(self._where)
        super().close()


class OneHandleDeclared(OneHandle):
    """The same store, declaring what it does."""

    handles_per_process = 1
