"""The store protocol every offset store implements (docs/contract.md)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["OffsetStore"]


@runtime_checkable
class OffsetStore(Protocol):
    """Per-(topic, consumer) offsets, kept by the consumer itself.

    Keys are ``(topic_id, consumer_id)`` with ``0 <= topic_id < 2**32`` and
    ``0 <= consumer_id < 2**64``; offsets are ``0 <= offset < 2**64``. Wrong types raise TypeError
    and out-of-range values ValueError, before any effect. Stores are context managers.
    """

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the stored offset, or None if none was ever saved (or it was deleted)."""
        ...

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Store ``offset`` for the key; any offset may follow any other."""
        ...

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Forget the key's offset; deleting an absent key is not an error."""
        ...

    def list_all(self) -> dict[tuple[int, int], int]:
        """Return every stored key and offset as a fresh dict the caller may mutate."""
        ...

    def close(self) -> None:
        """Release the handle's resources; further operations raise."""
        ...

    def __enter__(self) -> OffsetStore: ...

    def __exit__(self, *exc_info: object) -> None: ...
