"""A small correct and durable store the zoo's subtler stores start from.

:class:`~._base.DirStore`'s layout (``{path}/{topic_id}_{consumer_id}.off`` holding
``decimal + "\\n"``), written the way docs/contract.md asks: a unique temporary file, fsynced,
``os.replace``d over the old one, the directory fsynced; saves and deletes under ``flock`` on
``{path}/.lock`` (a file never deleted), so handles in other processes exclude one another. A
store built on it breaks exactly what its own class changes, nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator

from ._base import DirStore


class SyncedDirStore(DirStore):
    """One file per key, fsync and rename, directory fsync, flock around every change."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, file: str, offset: int) -> None:
        with self.locked():
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
            self.sync_dir()

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self.locked():
            super().delete(topic_id, consumer_id)
            self.sync_dir()
