"""How ``lance-offsets`` words an operating-system error: what failed, where, why, what to do.

Every OSError that reaches a user of the command line (a permission, a full disk, a read-only file
system, a file where a directory belongs) is worded here, by :func:`os_error_line`, and nowhere
else, so that every command says it the same way::

    cannot write the offset of consumer 'billing' topic 7 consumer id 1: lock file
    '/var/lib/lance/offsets/billing/topic-7-consumer-1.lock': permission denied; run as a user
    who can write there, or fix its permissions

(one line). The caller says what it was doing; the error says which path and why. The reasons are
our own words for the common errors, not the C library's, so that a message reads the same on
every platform.
"""

from __future__ import annotations

import errno
import os
from typing import Final

from ._layout import LOCK_SUFFIX, OFFSET_SUFFIX, TMP_SUFFIX

__all__ = ["os_error_line"]


#: errno name -> (reason, what to do). A denied access is worded below: its advice depends on
#: whether the action reads or writes.
_TABLE: Final = (
    ("ENOSPC", "no space left on device", "free some space there, then run the command again"),
    ("EDQUOT", "disk quota exceeded", "free some of your quota there, then run the command again"),
    ("EROFS", "read-only file system", "remount it read-write, or use a path on a writable one"),
    ("ENOTDIR", "a file is where a directory should be", "check the path, or move that file away"),
    ("EISDIR", "a directory is where a file should be", "check the path, or move it away"),
    ("ENOENT", "no such file or directory", "check the path"),
    ("ENAMETOOLONG", "file name too long", "use a shorter path"),
    ("ELOOP", "too many levels of symbolic links", "check the symbolic links on the path"),
    ("EMFILE", "too many open files", "raise the open-file limit (ulimit -n), then run it again"),
    ("ENFILE", "too many open files", "close other programs' files, then run the command again"),
    ("EIO", "input/output error", "the disk or file system failed: check it, then run again"),
)
# Not every platform defines every code (Windows has no EDQUOT).
_WORDS: Final = {
    getattr(errno, name): (reason, advice)
    for name, reason, advice in _TABLE
    if hasattr(errno, name)
}
_READ_ADVICE: Final = "run as a user who can read it, or fix its permissions"
_WRITE_ADVICE: Final = "run as a user who can write there, or fix its permissions"
_ACCESS_ADVICE: Final = "run as a user who has access to it, or fix its permissions"
_OTHER_ADVICE: Final = "check the path, then run the command again"

#: What a file of the lock-file store is, by the end of its name (the longest suffix first).
_KINDS: Final = (
    (TMP_SUFFIX, "temp file"),
    (LOCK_SUFFIX, "lock file"),
    (OFFSET_SUFFIX, "offset file"),
)


def _reason(exc: OSError, writing: bool | None) -> tuple[str, str]:
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        reason = "permission denied" if code == errno.EACCES else "operation not permitted"
        advice = {True: _WRITE_ADVICE, False: _READ_ADVICE, None: _ACCESS_ADVICE}[writing]
        return reason, advice
    if code is not None and code in _WORDS:
        return _WORDS[code]
    # Anything rarer: the system's own words, in the case the rest of the line uses.
    text = exc.strerror or (os.strerror(code) if code is not None else "") or str(exc)
    return text[:1].lower() + text[1:], _OTHER_ADVICE


def _shown(path: object) -> str | None:
    if path is None:
        return None
    if isinstance(path, bytes):
        return os.fsdecode(path)
    return str(path)


def _where(exc: OSError, action: str, fallback: str | None) -> str:
    """``lock file '/x/....lock': ``, ``'a' -> 'b': `` or nothing when the action names it."""
    first = _shown(exc.filename)
    second = _shown(exc.filename2)
    path = first if first is not None else fallback
    if path is None or (second is None and repr(path) in action):
        return ""
    kind = next((k for suffix, k in _KINDS if path.endswith(suffix)), "")
    shown = f"{kind} {path!r}" if kind else repr(path)
    if second is not None:
        shown += f" -> {second!r}"
    return f"{shown}: "


def os_error_line(
    exc: OSError, action: str, *, writing: bool | None, path: str | None = None
) -> str:
    """Return the one-line message for ``exc``, raised while doing ``action``.

    :param action: what the command was doing, after "cannot": ``"read the offset of consumer
        'billing' topic 7 consumer id 1"``, ``"list the consumers in base directory '/x'"``.
    :param writing: whether the action writes (True), only reads (False), or either (None):
        what a denied access asks the user to fix.
    :param path: the path to name when the error carries none (``os.read`` of a directory).
    """
    reason, advice = _reason(exc, writing)
    return f"cannot {action}: {_where(exc, action, path)}{reason}; {advice}"
