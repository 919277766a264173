"""CORRECT stores that hold an exclusive lock from open to close, as embedded databases do.

One handle at a time on a location, in any process: opening takes ``flock`` on ``{path}/LOCK``
and keeps it until ``close`` (LevelDB's ``LOCK`` file, SQLite's ``locking_mode=EXCLUSIVE``), so
a second handle, in this process or another, cannot open while the first is open. Each declares
what that means in the suite's terms (docs/conformance.md, "Capabilities"):

- ``handles_per_process = 1``: a second handle in one process is refused;
- ``shared = False``: handles in several processes cannot be open together either.

With both, P2 (which needs two open handles), M1, M2 and D5 do not apply; every check closes its
handle before it opens the next and never opens a helper handle beside the one it tests. Every
other property must pass. Saves are durable (``_synced.py``: temp file, fsync, rename, directory
fsync).

- :class:`Exclusive` refuses a second handle at once (``LOCK_NB``: LevelDB's "lock ... Resource
  temporarily unavailable").
- :class:`ExclusiveWaits` waits for the lock with no deadline, as a plain ``flock`` does: a check
  that opened a second handle beside the first anyway would hang, and the hang would show.
"""

from __future__ import annotations

import fcntl
import os

from ._synced import SyncedDirStore


class Exclusive(SyncedDirStore):
    """Takes the location's lock for the handle's lifetime; a second open raises at once."""

    handles_per_process = 1
    shared = False
    #: Whether opening waits for the lock (True) or refuses a held one (False).
    WAIT = False

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._lock_fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | (0 if self.WAIT else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(self._lock_fd)
            why = f"lock {path}/LOCK: {exc.strerror} (held by another handle)"
            raise RuntimeError(why) from exc

    def close(self) -> None:
        if not self.closed:
            os.close(self._lock_fd)  # releases the flock
        super().close()


class ExclusiveWaits(Exclusive):
    """The same store, but a second open waits for the first handle's close, however long."""

    WAIT = True
