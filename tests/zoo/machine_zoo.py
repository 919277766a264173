"""Zoo stores for the machines' own duties: blame by demonstration, replay by seed, time.

Like ``defects.py``, each class is its own factory and :data:`EXPECTED` maps each store that must
fail to the property it breaks. :class:`RareCorruption` and :class:`TickingCache` are not in it:
they exist to show that a verdict replays by seed, and that a time-dependent failure is reported
as one; nor is :class:`HeldLock`, whose failure is slow on purpose (the time budget's test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final

import portalocker

from lance_offsets._domain import check_key, check_offset

from ._base import DirStore

Key = tuple[int, int]


class DirtyCheck(DirStore):
    """P2: a save equal to the offset this handle last wrote is skipped ("nothing changed"), so
    an idle consumer's re-commit is lost when another handle or process moved the key since.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.last: dict[Key, int] = {}

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        if self.last.get(key) == check_offset(offset):
            return
        super().save(topic_id, consumer_id, offset)
        self.last[key] = offset

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self.last.pop(check_key(topic_id, consumer_id), None)


class RareCorruption(DirStore):
    """C1, rarely: offsets whose decimal spelling ends in ``"77"`` come back one lower (a
    hand-written formatter with a carry bug). A short run finds it only now and then, which is
    what a replay test needs: the verdict must follow the seed, not luck or a cached example.
    """

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        value = super().load(topic_id, consumer_id)
        return value - 1 if value is not None and str(value).endswith("77") else value


#: The clock :class:`TickingCache` reads; a test may replace it to make time deterministic.
clock: Callable[[], float] = time.monotonic


class TickingCache(DirStore):
    """C4, depending on time: ``load`` answers from a per-handle cache that is refreshed once per
    clock tick (0.1 s), and ``delete`` forgets to invalidate it. Whether a delete's read-back
    is stale depends on whether a tick boundary fell in between: the same steps pass one time
    and fail the next.
    """

    TICK: Final = 0.1

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.cache: dict[Key, tuple[int, int | None]] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        tick = int(clock() / self.TICK)
        cached = self.cache.get(key)
        if cached is not None and cached[0] == tick:
            return cached[1]
        value = super().load(*key)
        self.cache[key] = (tick, value)
        return value

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self.cache.pop(check_key(topic_id, consumer_id), None)


class HeldLock(DirStore):
    """P2, slowly: a handle takes the store's lock when it opens and keeps it until it closes
    (SQLite's ``locking_mode=EXCLUSIVE``, "faster: no lock per call"). A second handle waits
    :attr:`WAIT` seconds for it (a busy timeout), then raises. Every replay of the failure waits
    again, which the suite's time budget after a first violation bounds.
    """

    WAIT = 0.5

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.lock = portalocker.Lock(
            os.path.join(path, "LOCK"),
            timeout=self.WAIT,
            check_interval=0.05,
            flags=portalocker.LOCK_EX | portalocker.LOCK_NB,
        )
        try:
            self.lock.acquire()
        except portalocker.LockException as exc:
            raise TimeoutError(f"{path} is locked by another handle") from exc

    def close(self) -> None:
        if not self.closed:
            self.lock.release()
        super().close()


#: Factory name -> the property the suite must fail it on.
EXPECTED: Final[dict[str, str]] = {
    "DirtyCheck": "P2",
}
