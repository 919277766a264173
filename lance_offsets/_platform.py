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

- :func:`start_writeback`: a hint, not a step: on Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
  queues a file's dirty pages for writing without waiting, so a batch's fsyncs that follow find
  the data in flight and share journal commits; a no-op elsewhere. Durability still comes from
  :func:`fsync_file` alone.

Every step calls ``os.fsync``/``os.replace``/``os.remove`` through the ``os`` module at call time,
not through names bound at import, so the stress suite's interposer (docs/stress.md) sees
each call. Branches for other platforms carry ``pragma: no cover``; their failure handling is
exercised on Linux by calling the underlying functions with injected faults
(``tests/test_platform.py``).
"""

from __future__ import annotations

import ctypes
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
    "start_writeback",
    "start_writeback_with",
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


def _start_writeback_none(fd: int) -> None:
    del fd  # no cheap way to start writeback early: the fsync that follows does all the work


#: errno values with which sync_file_range says it cannot act on this file (a pipe, a file
#: system or seccomp filter that refuses it): the hint is lost, nothing failed.
_WRITEBACK_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EPERM})


def start_writeback_with(fd: int, *, sync_file_range: Callable[[int, int, int, int], int]) -> None:
    """Start writing ``fd``'s dirty pages back now, without waiting, through ``sync_file_range``.

    Any error but "not supported" is raised (an EIO here is the one the fsync would report):
    never swallowed, F2's rule. Separated from the ctypes binding so tests can inject errors.
    """
    if sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
        code = ctypes.get_errno()
        if code not in _WRITEBACK_UNSUPPORTED:
            raise OSError(code, f"sync_file_range: {os.strerror(code)}")


#: SYNC_FILE_RANGE_WRITE from <fcntl.h>: start writeback of the range, do not wait for it.
_SYNC_FILE_RANGE_WRITE: Final = 2


def _bind_start_writeback() -> Callable[[int], None]:
    """Bind libc's sync_file_range (offset 0, length 0: the whole file) or fall back to a no-op."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # a libc without it: the hint is optional
        return _start_writeback_none
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start_writeback(fd: int) -> None:
        start_writeback_with(fd, sync_file_range=function)

    return start_writeback


fsync_file: Callable[[int], None]
start_writeback: Callable[[int], None]
fsync_dir: Callable[[str], None]
replace: Callable[[str, str], None]
remove: Callable[[str], None]
open_file: Callable[..., int]

if sys.platform == "win32":  # pragma: no cover - Windows only
    fsync_file, fsync_dir = _fsync_plain, _fsync_dir_windows
    replace, remove, open_file = _replace_windows, _remove_windows, _open_windows
    start_writeback = _start_writeback_none
elif sys.platform == "darwin":  # pragma: no cover - macOS only
    import fcntl

    def _fsync_macos(fd: int) -> None:
        full_fsync(fd, fcntl_call=fcntl.fcntl, full_fsync_op=fcntl.F_FULLFSYNC, fsync=os.fsync)

    fsync_file, fsync_dir = _fsync_macos, _fsync_dir_posix
    replace, remove, open_file = _replace_posix, _remove_posix, _open_posix
    start_writeback = _start_writeback_none
else:
    fsync_file, fsync_dir = _fsync_plain, _fsync_dir_posix
    replace, remove, open_file = _replace_posix, _remove_posix, _open_posix
    start_writeback = (
        _bind_start_writeback() if sys.platform.startswith("linux") else _start_writeback_none
    )
