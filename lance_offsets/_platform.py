"""The three platform-dependent steps of a durable save, chosen once at import.

- :func:`fsync_file`: ``fcntl(F_FULLFSYNC)`` on macOS, whose plain ``fsync`` only reaches the
  drive's cache, falling back to ``fsync`` on file systems that refuse it (SMB, some FUSE and
  exFAT volumes answer ENOTSUP/EINVAL); ``fsync`` elsewhere (``FlushFileBuffers`` on Windows).
- :func:`fsync_dir`: ``fsync`` on the directory on POSIX, so the rename that commits a save
  survives power loss; a no-op on Windows, where a directory cannot be opened for flushing and
  NTFS journals the rename itself.
- :func:`replace` / :func:`remove` / :func:`open_file`: plain ``os.replace``/``os.remove``/
  ``os.open`` on POSIX. On Windows they fail with a sharing violation while another process has
  the file open (a reader, a virus scanner) or while a replaced file is still being deleted, so
  they retry with bounded backoff and then raise; never delete-then-rename, which would leave a
  window with no offset file at all.

Every step calls ``os.fsync``/``os.replace``/``os.remove`` through the ``os`` module at call time,
not through names bound at import, so the stress suite's interposer (docs/stress.md) sees
each call. Branches for other platforms carry ``pragma: no cover``; their failure handling is
exercised on Linux by calling the underlying functions with injected faults
(``tests/test_platform.py``).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = [
    "REPLACE_ATTEMPTS",
    "fsync_dir",
    "fsync_file",
    "full_fsync",
    "is_sharing_violation",
    "open_file",
    "remove",
    "replace",
    "retry_sharing_violations",
]

_T = TypeVar("_T")

#: Windows error codes that mean "another process has the file open or locked", not a real
#: failure: ERROR_ACCESS_DENIED (also what a delete-pending file gives), ERROR_SHARING_VIOLATION,
#: ERROR_LOCK_VIOLATION.
SHARING_WINERRORS: Final = frozenset({5, 32, 33})
#: How many times a Windows replace/remove is tried before the error is raised.
REPLACE_ATTEMPTS: Final = 12
#: First backoff delay in seconds; it doubles up to :data:`MAX_DELAY` (about 1 s in all).
FIRST_DELAY: Final = 0.001
#: Longest single backoff delay in seconds.
MAX_DELAY: Final = 0.25
#: errno values with which a file system refuses F_FULLFSYNC although fsync would work.
_FULLFSYNC_UNSUPPORTED: Final = frozenset({errno.ENOTSUP, errno.EINVAL, errno.ENOTTY})


def is_sharing_violation(error: BaseException) -> bool:
    """Return True if ``error`` is a Windows "file in use" error worth retrying."""
    return isinstance(error, PermissionError) and (
        getattr(error, "winerror", None) in SHARING_WINERRORS
    )


def retry_sharing_violations(
    operation: Callable[[], _T],
    *,
    attempts: int = REPLACE_ATTEMPTS,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
    sleep: Callable[[float], object] = time.sleep,
) -> _T:
    """Call ``operation`` until it stops failing with a sharing violation, at most ``attempts``.

    Any other error is raised at once; the last sharing violation is raised when the attempts run
    out, so a file held open for good fails the save loudly instead of hanging it.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except OSError as error:
            if attempt == attempts or not is_sharing_violation(error):
                raise
        sleep(delay)
        delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def full_fsync(
    fd: int,
    *,
    fcntl_call: Callable[[int, int], object],
    full_fsync_op: int,
    fsync: Callable[[int], None],
) -> None:
    """Flush ``fd`` through the drive cache with F_FULLFSYNC, or fall back to ``fsync``.

    Separated from the macOS branch so Linux tests can drive both outcomes.
    """
    try:
        fcntl_call(fd, full_fsync_op)
    except OSError as error:
        if error.errno not in _FULLFSYNC_UNSUPPORTED:
            raise
        fsync(fd)


def _fsync_plain(fd: int) -> None:
    os.fsync(fd)


def _fsync_dir_posix(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_posix(src: str, dst: str) -> None:
    os.replace(src, dst)


def _remove_posix(path: str) -> None:
    os.remove(path)


def _open_posix(path: str, flags: int, mode: int = 0o666) -> int:
    return os.open(path, flags, mode)


def _fsync_dir_windows(path: str) -> None:  # pragma: no cover - Windows only
    del path  # NTFS journals the rename; a directory handle cannot be flushed from Python


def _replace_windows(src: str, dst: str) -> None:  # pragma: no cover - Windows only
    retry_sharing_violations(lambda: os.replace(src, dst))


def _remove_windows(path: str) -> None:  # pragma: no cover - Windows only
    retry_sharing_violations(lambda: os.remove(path))


def _open_windows(path: str, flags: int, mode: int = 0o666) -> int:  # pragma: no cover - Windows
    return retry_sharing_violations(lambda: os.open(path, flags, mode))


fsync_file: Callable[[int], None]
fsync_dir: Callable[[str], None]
replace: Callable[[str, str], None]
remove: Callable[[str], None]
open_file: Callable[..., int]

if sys.platform == "win32":  # pragma: no cover - Windows only
    fsync_file, fsync_dir = _fsync_plain, _fsync_dir_windows
    replace, remove, open_file = _replace_windows, _remove_windows, _open_windows
elif sys.platform == "darwin":  # pragma: no cover - macOS only
    import fcntl

    def _fsync_macos(fd: int) -> None:
        full_fsync(fd, fcntl_call=fcntl.fcntl, full_fsync_op=fcntl.F_FULLFSYNC, fsync=os.fsync)

    fsync_file, fsync_dir = _fsync_macos, _fsync_dir_posix
    replace, remove, open_file = _replace_posix, _remove_posix, _open_posix
else:
    fsync_file, fsync_dir = _fsync_plain, _fsync_dir_posix
    replace, remove, open_file = _replace_posix, _remove_posix, _open_posix
