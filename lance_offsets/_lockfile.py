"""STUB: the lock-file store (being written; see issue 2). Public signatures are final."""

from __future__ import annotations

import os

__all__ = ["LockFileOffsetStore"]


class LockFileOffsetStore:
    """One file per key under ``base_dir/consumer_name``, compatible with the Rust client."""

    @classmethod
    def open(
        cls,
        base_dir: str | os.PathLike[str],
        consumer_name: str,
        *,
        lock_timeout: float | None = None,
    ) -> LockFileOffsetStore:
        raise NotImplementedError

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        raise NotImplementedError

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        raise NotImplementedError

    def delete(self, topic_id: int, consumer_id: int) -> None:
        raise NotImplementedError

    def list_all(self) -> dict[tuple[int, int], int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LockFileOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
