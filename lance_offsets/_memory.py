"""The in-memory store: for tests and for consumers whose offsets live elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ._batch import check_batch
from ._domain import check_key, check_offset
from ._errors import StoreClosedError

__all__ = ["MemoryOffsetStore"]


class MemoryOffsetStore:
    """Offsets in a dict guarded by a lock; thread-safe, lost when the process exits.

    Guarantees: none across processes and none across a crash. Copies share nothing.
    """

    def __init__(self) -> None:
        self._offsets: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(repr(self))

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        with self._lock:
            self._check_open()
            return self._offsets.get(key)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._lock:
            self._check_open()
            self._offsets[key] = value

    def save_many(self, offsets: Mapping[tuple[int, int], int]) -> None:
        """Store every offset of the mapping at once: other threads see all of it or none."""
        batch = check_batch(offsets)
        with self._lock:
            self._check_open()
            self._offsets.update(batch)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        with self._lock:
            self._check_open()
            self._offsets.pop(key, None)

    def list_all(self) -> dict[tuple[int, int], int]:
        with self._lock:
            self._check_open()
            return dict(self._offsets)

    def close(self) -> None:
        """Mark the store closed; the offsets are dropped. Closing twice is fine."""
        with self._lock:
            self._closed = True
            self._offsets.clear()

    def __enter__(self) -> MemoryOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._offsets)} offsets"
        return f"<MemoryOffsetStore {state}>"
