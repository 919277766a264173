"""Stores whose calls never return (class 11 of issue 19), in the ways real ones hang or die.

Each is correct otherwise (``_synced.py``); each declares ``call_seconds = 2`` so a test waits
two seconds per hang, not the default thirty.

- :class:`HangsOnDamage`: opening validates every offset file, and one that does not parse sends
  it into "recovery", which takes the store's lock again on a new descriptor while the first
  still holds it: ``flock`` waits forever (an old release of a real library deadlocked the same
  way on a damaged file). Only a damaged store hangs: F1 (and D4's damaged leftovers) must
  report the hang; every other property passes.
- :class:`LoadHangsAfter`: every ``load`` leaks a slot of a per-process pool of :data:`SLOTS`
  "connections"; once they are gone the next ``load`` waits for a free one in C without
  releasing the interpreter lock (a driver's blocking call made through ``ctypes.PyDLL``), so no
  thread of the process runs again: the suite's watchdog thread cannot report it, and the
  process in charge must read the stacks from outside.
- :class:`CrashesOnHugeOffsets`: a save of an offset of 2**63 or more crashes the process (a C
  driver's signed overflow, then a bad pointer: SIGSEGV). The call never returns either: the
  property fails, naming the call, and the run goes on.
- :class:`HooksUnderLock`: correct, but a reader waits while its hooks run, so H3's probe (such
  a reader, inside a hook) waits until its bound: the suite's wait, which must not fail the
  store (unverified with a probe here; one probe bound, then no probe, with a probe in another
  process).
"""

from __future__ import annotations

import ctypes
import datetime
import fcntl
import os
import re
import tempfile
from typing import Any, Final

from lance_offsets import CommitInfo, HookError
from lance_offsets._domain import check_key, check_offset

from ._synced import SyncedDirStore

_NAME = re.compile(r"(0|[1-9][0-9]*)_(0|[1-9][0-9]*)\.off")


class HangsOnDamage(SyncedDirStore):
    """Opening a store with an unreadable offset file waits forever for its own lock."""

    call_seconds = 2.0

    def __init__(self, path: str) -> None:
        super().__init__(path)
        with self.locked():
            for name in sorted(os.listdir(path)):
                if _NAME.fullmatch(name):
                    try:
                        self.read(os.path.join(path, name))
                    except ValueError:
                        self._recover()

    def _recover(self) -> None:
        # Recovery takes "the" lock, not knowing the open already holds it: a second open file
        # description of the lock file, so flock waits for the first, which waits for us.
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)


class HangsOnDamageHere(HangsOnDamage):
    """The same, declared not shared: F1 reads a damaged store in the process that checks it
    (no helper process), so that process's own watchdog must report the deadlock."""

    shared = False


#: Loads a process may make before :class:`LoadHangsAfter` hangs.
SLOTS: Final = 150


class _Pool:
    """A pool of SLOTS "connections" whose exhaustion blocks in C with the GIL held."""

    def __init__(self) -> None:
        self.free = SLOTS
        # A default pthread mutex locked twice by one thread never returns, and PyDLL keeps the
        # interpreter lock through the call: the whole process stops. Linux (glibc) layout: a
        # zeroed pthread_mutex_t is PTHREAD_MUTEX_INITIALIZER.
        self.mutex = ctypes.create_string_buffer(64)
        self.libc = ctypes.PyDLL(None)

    def take(self) -> None:
        if self.free == 0:
            self.libc.pthread_mutex_lock(self.mutex)
            self.libc.pthread_mutex_lock(self.mutex)  # waits for a slot that never comes back
        self.free -= 1


_POOL = _Pool()


class LoadHangsAfter(SyncedDirStore):
    """Each load takes a pooled connection and never gives it back; the pool runs dry."""

    call_seconds = 2.0

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        _POOL.take()
        return super().load(topic_id, consumer_id)


class HooksUnderLock(SyncedDirStore):
    """Correct, but its post-commit hooks run while the save still holds the store's lock, and a
    load takes that lock shared: a reader in another process waits until the hooks are done.

    H3's probe is such a reader, inside a hook: the probe waits for the save, the save for the
    hook, the hook for the probe. The suite made that wait, not the store: it must fail nothing.
    """

    call_seconds = 2.0

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.hooks: list[Any] = []
        self._holding = False

    def add_hook(self, hook: Any) -> HooksUnderLock:
        self.hooks.append(hook)
        return self

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        if self._holding:  # this handle's own hook reading: the lock is ours already
            return super().load(topic_id, consumer_id)
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return super().load(topic_id, consumer_id)
        finally:
            os.close(fd)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._open_check()
        with self.locked():
            previous = super().load(*key)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"%d\n" % value)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.file_of(key))
            self.sync_dir()
            info = CommitInfo(*key, value, previous, datetime.datetime.now(datetime.timezone.utc))
            errors: list[BaseException] = []
            self._holding = True
            try:
                for hook in self.hooks:
                    try:
                        hook.on_commit(info)
                    except Exception as exc:
                        errors.append(exc)
            finally:
                self._holding = False
        if errors:
            raise HookError(info, errors)


class CrashesOnHugeOffsets(SyncedDirStore):
    """A save of an offset that does not fit a signed 64-bit integer ends the process (SIGSEGV)."""

    call_seconds = 2.0

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        if isinstance(offset, int) and offset >= 2**63:
            ctypes.string_at(0)  # reads address 0: the kernel ends the process
        super().save(topic_id, consumer_id, offset)


class HooksUnderLockOneHandle(HooksUnderLock):
    """The same, declaring one handle per process: H3's probe then reads from another process,
    where the suite can stop it at its bound and go on without a probe."""

    handles_per_process = 1
