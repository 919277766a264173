"""Stores that mishandle an I/O error in ``save``: one defect each, all caught on F2.

Each changes one step of ``stress_crash_zoo``'s :class:`CarefulStore` (lock, temp, fsync,
replace, fsync the directory), whose ``careful`` factory is their positive control. The first
three return from a save after a failed sync: a fresh handle then reads the new value from the
page cache, so only the sync rule of F2 (``stress/faults/_judge.py``) can catch them. The last
hangs, and F2 must say where and why instead of printing a bare harness timeout.
``rewrites_after_failed_fsync`` is correct: it answers a failed fsync by writing the bytes
again, which F2 must accept.

Use them as ``zoo.fault_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from .stress_crash_zoo import CarefulStore, Key, _fsync_dir

_LOG = logging.getLogger(__name__)
_LOG.addHandler(logging.NullHandler())  # a library logs; the application decides where to


class SwallowsFileFsync(CarefulStore):
    """F2: ``try: os.fsync(fd) except OSError: pass`` around the temp file's fsync ("fsync is
    only a hint"), then the rename: the save returns, and the offset may be gone after a crash
    because the bytes never reached the disk."""

    def synced_temp(self, key: Key, data: bytes) -> str:
        temp = self.name(key, self.temp_suffix)
        fd = os.open(temp, self.temp_flags, 0o644)
        try:
            os.write(fd, data)
            try:  # noqa: SIM105 - the defect, spelled the way real code spells it
                os.fsync(fd)
            except OSError:
                pass
        finally:
            os.close(fd)
        return temp


class BestEffortDirSync(CarefulStore):
    """F2: the directory fsync after the rename is "best effort" (common in real code: some file
    systems refuse it), so a failed one is ignored and the rename may not survive power loss."""

    def write(self, key: Key, data: bytes) -> None:
        temp = self.synced_temp(key, data)
        os.replace(temp, self.name(key))
        with contextlib.suppress(OSError):
            _fsync_dir(self.dir)


def _try_fsync(fd: int) -> bool:
    """Flush ``fd``; log and answer False on failure (the caller is meant to check)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        _LOG.warning("fsync failed: %s", exc)
        return False
    return True


class IgnoredFsyncResult(CarefulStore):
    """F2: a helper logs the fsync failure and returns False, and ``save`` never looks at the
    result: the error is reported to a log nobody reads and the caller is told all is well. It
    retries once first, on a new descriptor, which proves nothing (fsyncgate)."""

    def synced_temp(self, key: Key, data: bytes) -> str:
        temp = self.name(key, self.temp_suffix)
        fd = os.open(temp, self.temp_flags, 0o644)
        try:
            os.write(fd, data)
            if not _try_fsync(fd):
                again = os.open(temp, os.O_RDONLY)
                try:
                    _try_fsync(again)
                finally:
                    os.close(again)
        finally:
            os.close(fd)
        return temp


class RewritesAfterFailedFsync(CarefulStore):
    """Correct (a positive control for the sync rule): when the temp file's fsync fails, it
    writes the bytes again into a new temp file and syncs that, once; a second failure raises.
    The rewrite makes the pages dirty again, so the successful fsync did flush them."""

    def synced_temp(self, key: Key, data: bytes) -> str:
        try:
            return super().synced_temp(key, data)
        except OSError:
            os.remove(self.name(key, self.temp_suffix))
            return super().synced_temp(key, data)


class LeaksLockOnError(CarefulStore):
    """F2: the handle's thread lock is released only on the success path (``acquire(); work();
    release()`` without ``try/finally``): after one failed save, the next save on the same handle
    blocks for ever."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.mutex = threading.Lock()

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        self.mutex.acquire()
        with super().locked(key):
            yield
        self.mutex.release()  # skipped when the body raised


def swallows_file_fsync(path: str) -> CarefulStore:
    """F2: the temp file's fsync error is swallowed."""
    return SwallowsFileFsync(path)


def best_effort_dir_sync(path: str) -> CarefulStore:
    """F2: the directory fsync's error is swallowed."""
    return BestEffortDirSync(path)


def ignored_fsync_result(path: str) -> CarefulStore:
    """F2: fsync failure logged by a helper returning False, which nobody checks."""
    return IgnoredFsyncResult(path)


def rewrites_after_failed_fsync(path: str) -> CarefulStore:
    """Correct: a failed fsync is answered by writing the data again and syncing it."""
    return RewritesAfterFailedFsync(path)


def leaks_lock_on_error(path: str) -> CarefulStore:
    """F2: the thread lock leaks when a save raises; the next save hangs."""
    return LeaksLockOnError(path)
