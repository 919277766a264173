"""A CORRECT store locked from open to close, whose second open *waits* for the lock.

``exclusive_zoo.ExclusiveStore`` refuses a second handle at once (LevelDB's "lock ... already
held"). This one waits for the first handle's close with no deadline, as a plain ``flock`` does
(SQLite's ``locking_mode=EXCLUSIVE`` waits for its busy timeout): a check that opened a second
handle beside the first anyway would hang there, and the hang would show, where a refusal could
pass for a loud answer (F1 judged each damage with the previous reader still open, and met a
refusal it took for "loud, fine"). It declares the same: ``shared = False``,
``handles_per_process = 1``.
"""

from __future__ import annotations

import fcntl
import os

from .exclusive_zoo import ExclusiveStore


class ExclusiveWaits(ExclusiveStore):
    """Opening waits, however long, until no other handle holds the directory's LOCK."""

    def __init__(self, path: str) -> None:
        super(ExclusiveStore, self).__init__(path)  # the layout only: the lock is taken here
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
