"""A CORRECT store that, like LevelDB, RocksDB or an SQLite database in ``locking_mode=EXCLUSIVE``,
holds an exclusive lock on its directory from open to close, and declares so.

``{path}/LOCK`` is ``flock``-ed (``LOCK_EX | LOCK_NB``) when the handle opens and released when it
closes: a second handle, in this process or another, raises :class:`StoreLocked` until then
(LevelDB: "IO error: lock .../LOCK: already held by process"). Offsets are one file per
key, ``{path}/{topic_id}_{consumer_id}.off`` holding ``decimal + "\\n"``, written to a temp
file, fsynced, renamed over and the directory fsynced; deletes fsync the directory too. No
cache: the handle is the only one, so everything it reads is its own.

It declares what it does: ``shared = False`` (one handle on a location at a time, across
processes) and ``handles_per_process = 1``. A suite that respects declarations never opens a
second handle while one is open, so the store must pass everything it claims.

``Undeclared`` is the same store without the declarations: it claims ``shared`` by default, and
P2, M1, M2 and D5 rightly fail it; F2 must still judge its I/O errors, reading with the faulted
handle gone once it has shown that another process cannot open the store beside an open handle
even with no fault.

Use them as ``zoo.exclusive_zoo:ExclusiveStore`` (``:Undeclared``) with the ``tests`` folder on
``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile

from ._base import DirStore


class StoreLocked(RuntimeError):
    """Another handle holds the store's directory."""


class ExclusiveStore(DirStore):
    """One file per key, fsync and rename; the directory's LOCK held from open to close."""

    shared = False
    handles_per_process: int | None = 1

    def __init__(self, path: str) -> None:
        super().__init__(path)
        lock = os.path.join(path, "LOCK")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(f"lock {lock!r}: already held by another handle") from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd: int | None = fd

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, file: str, offset: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"%d\n" % offset)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._sync_dir()

    def key_of(self, name: str) -> tuple[int, int] | None:
        return None if name.startswith(".tmp-") else super().key_of(name)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self._sync_dir()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the only descriptor of the LOCK: the flock goes with it
            self._lock_fd = None
        super().close()


class Undeclared(ExclusiveStore):
    """The same store, claiming ``shared`` (the default) though it is not."""

    shared = True
    handles_per_process = None
