"""The per-key exclusive lock: portalocker on the ``.lock`` file, re-checked after acquiring.

portalocker's module-level ``lock`` takes ``fcntl.flock`` on POSIX (whole file, per open file
description), the same lock the Rust client takes with ``libc::flock``; ``fcntl.lockf`` would not
exclude it on Linux. On Windows it locks a byte range from offset 0 (``msvcrt.locking``), which
overlaps the Rust client's whole-file ``LockFileEx`` range, so the two exclude each other there too.
We need portalocker >= 4.4 (pyproject): older versions lock raw descriptors on Windows only through
a file object, from its current position, and report contention there as a plain LockException,
which :func:`_poll` would take for a real failure.

The re-check: the Rust client's ``delete`` unlinks lock files, possibly while another process
waits on one. That waiter then wins a lock on an orphaned inode while a newcomer creates and locks
a fresh file at the path: two "exclusive" holders. So after acquiring we compare the locked file
with the one now at the path (``os.fstat`` vs ``os.stat``) and start over on a mismatch. Only the
holder of the current file may proceed. Guarded by ``tests/slow/test_lockfile_processes.py``
(``test_waiter_on_unlinked_lock_file_does_not_proceed``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Final

import portalocker

from ._errors import LockTimeoutError

__all__ = ["acquire", "release"]

#: Flags for opening a lock file: created if missing, never truncated (it holds no data).
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
#: First and longest sleep between non-blocking attempts when a timeout is set (seconds).
_FIRST_POLL: Final = 0.0005
_MAX_POLL: Final = 0.02
#: Windows' blocking ``msvcrt.locking`` gives up after about 10 s, so there we always poll.
_CAN_BLOCK: Final = sys.platform != "win32"


def acquire(path: str, key: tuple[int, int], timeout: float | None) -> int:
    """Lock the lock file at ``path`` exclusively and return its descriptor.

    Waits forever when ``timeout`` is None, otherwise raises :class:`LockTimeoutError` naming the
    key and the lock file once ``timeout`` seconds have passed. The caller must hand the
    descriptor to :func:`release`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = os.open(path, _OPEN_FLAGS, 0o666)
        try:
            _lock(fd, path, key, timeout, deadline)
            if _still_at_path(fd, path):
                return fd
            # The file was unlinked (or replaced) while we waited: the lock we hold guards
            # nothing. Drop it and lock whatever is at the path now.
            portalocker.unlock(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def release(fd: int) -> None:
    """Unlock and close a descriptor returned by :func:`acquire`."""
    try:
        # Unlock explicitly rather than rely on close: a fork() in another thread may have
        # duplicated the descriptor, and flock stays held until every duplicate is closed.
        with contextlib.suppress(portalocker.LockException):
            portalocker.unlock(fd)
    finally:
        os.close(fd)


def _still_at_path(fd: int, path: str) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    return os.path.samestat(os.fstat(fd), at_path)


def _lock(
    fd: int, path: str, key: tuple[int, int], timeout: float | None, deadline: float | None
) -> None:
    try:
        if deadline is None and _CAN_BLOCK:
            portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE)
            return
        _poll(fd, path, key, timeout, deadline)
    except portalocker.LockException as error:
        # A real failure (ENOLCK on a network file system, EBADF): report the OSError behind it.
        cause = error.__cause__
        if isinstance(cause, OSError):
            raise cause from error
        raise


def _poll(
    fd: int, path: str, key: tuple[int, int], timeout: float | None, deadline: float | None
) -> None:
    delay = _FIRST_POLL
    flags = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
    while True:
        try:
            portalocker.lock(fd, flags)
        except portalocker.AlreadyLocked:
            pass
        else:
            return
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeoutError(key, path, 0.0 if timeout is None else timeout)
            delay = min(delay, left)
        time.sleep(delay)
        delay = min(delay * 2, _MAX_POLL)
