"""Stores that mishandle an I/O error in ``save``: one defect each, all caught on F2.

Each changes one step of ``stress_crash_zoo``'s :class:`CarefulStore` (lock, temp, fsync,
replace, fsync the directory), whose ``careful`` factory is their positive control. Several
return from a save after a failed sync: a fresh handle then reads the new value from the page
cache, so only the sync rule of F2 (``stress/faults/_judge.py``) sees them, and the power-loss
explorer shows the loss (``stress/faults/_powercut.py``). ``leaks_lock_on_error`` hangs, and F2
must say where and why instead of printing a bare harness timeout.

Correct ones, each the control of a defect beside it, F2 must pass:

- ``rewrites_after_failed_fsync`` and ``rewrites_then_retries_fsync`` answer a failed fsync by
  writing the bytes again (``retries_fsync`` retries without writing: it fails);
- ``lock_unlinked_after_replace`` takes a lock library's lock file and unlinks it on release,
  after the replace and the directory fsync: the save commits at the replace, not at the last
  unlink (``lock_unlinked_ignores_dir_sync`` ignores a failed directory fsync there: it fails);
- ``NotDurableSwallowsFileFsync`` swallows a failed fsync but declares ``durable = False``;
- ``fail_stop`` refuses every call on a handle after a failed save until it is reopened, as
  LMDB does after ``MDB_PANIC`` (``fail_stop_answers_from_memory`` and ``acks_after_fault``
  misbehave quietly after the fault instead: they fail).

Use them as ``zoo.fault_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import fcntl
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


class NotDurableSwallowsFileFsync(SwallowsFileFsync):
    """Correct for what it claims: the same swallowed fsync, on a store that declares
    ``durable = False`` (a cache, say). It promises nothing about power loss, so F2's sync rule
    does not apply; everything else F2 asks still does."""

    durable = False


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


class RetriesFsync(CarefulStore):
    """F2, shown by a power cut: a failed fsync of the temp file is retried on the same
    descriptor ("a transient error"), without writing again. After a failed writeback Linux
    marks the dirty pages clean, so the retry succeeds with nothing to flush, the save renames
    and returns, and the offset is lost if the power goes."""

    def synced_temp(self, key: Key, data: bytes) -> str:
        temp = self.name(key, self.temp_suffix)
        fd = os.open(temp, self.temp_flags, 0o644)
        try:
            os.write(fd, data)
            try:
                os.fsync(fd)
            except OSError:
                os.fsync(fd)  # the defect: the retry has nothing left to flush
        finally:
            os.close(fd)
        return temp


class RewritesThenRetriesFsync(CarefulStore):
    """Correct (the control of :class:`RetriesFsync`): after a failed fsync it writes the same
    bytes again from its own copy (the pages are dirty again), then fsyncs once more."""

    def synced_temp(self, key: Key, data: bytes) -> str:
        temp = self.name(key, self.temp_suffix)
        fd = os.open(temp, self.temp_flags, 0o644)
        try:
            os.write(fd, data)
            try:
                os.fsync(fd)
            except OSError:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
        finally:
            os.close(fd)
        return temp


class LockUnlinkedAfterReplace(CarefulStore):
    """Correct: a lock library's lock file, ``flock``-ed, checked to still be the file at its
    path (else taken again), and unlinked on release while still held. The release comes after
    the replace and the directory fsync, so the save's last unlink is the lock file's, while
    its commit is the replace: a fault between the two may leave the new value."""

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        path = self.name(key, ".lock")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break  # still the lock file at its path: ours
            except FileNotFoundError:
                pass  # its holder unlinked it after we opened it: take the new one
            os.close(fd)
        try:
            yield
        finally:
            try:
                os.unlink(path)
            finally:
                os.close(fd)


class LockUnlinkedIgnoresDirSync(LockUnlinkedAfterReplace):
    """F2: the same lock, and the directory fsync after the replace is "best effort": a failed
    one is ignored, and the save returns with its rename not durable."""

    def write(self, key: Key, data: bytes) -> None:
        temp = self.synced_temp(key, data)
        os.replace(temp, self.name(key))
        with contextlib.suppress(OSError):
            _fsync_dir(self.dir)


class FailStop(CarefulStore):
    """Correct: after a failed save the handle refuses every call until the store is reopened
    (LMDB's ``MDB_PANIC``, PostgreSQL's panic after a failed fsync): loud, and nothing lost."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.broken: str | None = None

    def usable(self) -> None:
        if self.broken is not None:
            raise RuntimeError(f"handle unusable since an I/O error ({self.broken}): reopen it")

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        self.usable()
        return super().load(topic_id, consumer_id)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.usable()
        try:
            super().save(topic_id, consumer_id, offset)
        except OSError as exc:
            self.broken = str(exc)
            raise

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self.usable()
        try:
            super().delete(topic_id, consumer_id)
        except OSError as exc:
            self.broken = str(exc)
            raise

    def list_all(self) -> dict[Key, int]:
        self.usable()
        return super().list_all()


class FailStopAnswersFromMemory(FailStop):
    """F2: refuses saves after a failed one, but its load still answers, from the handle's
    memory of the last value it was asked to save (the failed one): a wrong value, quietly."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.asked: dict[Key, int] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        if self.broken is not None and (topic_id, consumer_id) in self.asked:
            return self.asked[topic_id, consumer_id]
        return super().load(topic_id, consumer_id)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.asked[topic_id, consumer_id] = offset
        super().save(topic_id, consumer_id, offset)


class AcksAfterFault(FailStopAnswersFromMemory):
    """F2: after a failed save the handle goes "read-only" without saying so: later saves
    return at once and are remembered, never written (acknowledged, not made)."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        if self.broken is not None:
            self.asked[topic_id, consumer_id] = offset
            return
        super().save(topic_id, consumer_id, offset)


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


def retries_fsync(path: str) -> CarefulStore:
    """F2: a failed fsync retried without writing again; the save returns."""
    return RetriesFsync(path)


def rewrites_then_retries_fsync(path: str) -> CarefulStore:
    """Correct: a failed fsync answered by writing the same bytes again, then fsyncing."""
    return RewritesThenRetriesFsync(path)


def lock_unlinked_after_replace(path: str) -> CarefulStore:
    """Correct: the lock file is unlinked on release, after the replace."""
    return LockUnlinkedAfterReplace(path)


def lock_unlinked_ignores_dir_sync(path: str) -> CarefulStore:
    """F2: the same lock; a failed directory fsync after the replace is ignored."""
    return LockUnlinkedIgnoresDirSync(path)


def fail_stop(path: str) -> CarefulStore:
    """Correct: the handle refuses every call after a failed save, until reopened."""
    return FailStop(path)


def fail_stop_answers_from_memory(path: str) -> CarefulStore:
    """F2: after a failed save, load answers the failed value from memory."""
    return FailStopAnswersFromMemory(path)


def acks_after_fault(path: str) -> CarefulStore:
    """F2: after a failed save, later saves return without writing."""
    return AcksAfterFault(path)


def leaks_lock_on_error(path: str) -> CarefulStore:
    """F2: the thread lock leaks when a save raises; the next save hangs."""
    return LeaksLockOnError(path)
