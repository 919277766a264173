"""``acknowledge = "flush"``: stores whose save is acknowledged by a later ``flush()``.

A coalescing committer (``lance_offsets.CoalescingCommitter``) returns from ``save`` before the
offset is durable; its promise starts when ``flush()`` returns. The contract's properties are
about acknowledged saves, so the suite holds such a store to them through a handle that
acknowledges each write the store's way: every ``save``, ``save_many`` and ``delete`` is
followed by ``flush()``. Every part of the kit that opens the store (the machines, the helper
handles, the worker processes of the stress and power-loss runs) gets its factory from
:func:`acknowledged`, through :func:`~._spec.load_factory`, so one declaration reaches them all.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from ._capabilities import Factory

__all__ = ["ACKNOWLEDGE_ATTR", "FlushAcknowledged", "acknowledged"]

#: The factory attribute, and the one value besides the default ("return", a save's own return).
ACKNOWLEDGE_ATTR: Final = "acknowledge"
_WRAPPED: Final = "_lance_offsets_acknowledged"


class FlushAcknowledged:
    """A handle whose writes return once the store's ``flush()`` returned after them."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self._store.save(topic_id, consumer_id, offset)
        self._store.flush()

    def save_many(self, offsets: Mapping[tuple[int, int], int]) -> None:
        self._store.save_many(offsets)
        self._store.flush()

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._store.delete(topic_id, consumer_id)
        self._store.flush()

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self._store.load(topic_id, consumer_id)  # type: ignore[no-any-return]

    def list_all(self) -> dict[tuple[int, int], int]:
        return self._store.list_all()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> FlushAcknowledged:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Anything else the store has (add_hook, save_many's absence) shows through unchanged.
        return getattr(self._store, name)

    def __repr__(self) -> str:
        return f"<flush-acknowledged {self._store!r}>"


def _declared(factory: object) -> str:
    value = getattr(factory, ACKNOWLEDGE_ATTR, "return")
    if value not in ("return", "flush"):
        raise ValueError(
            f"capability {ACKNOWLEDGE_ATTR!r} on {factory!r} must be 'return' or 'flush', "
            f"got {value!r}"
        )
    return str(value)


@functools.cache
def _wrap(factory: Factory) -> Factory:
    @functools.wraps(factory)
    def opened(path: str) -> Any:
        return FlushAcknowledged(factory(path))

    # functools.wraps copied the capability attributes; mark it so it is never wrapped twice.
    setattr(opened, _WRAPPED, True)
    return opened


def acknowledged(factory: Factory) -> Factory:
    """``factory`` itself, or for ``acknowledge = "flush"`` one whose handles flush each write.

    The same wrapper comes back for the same factory (identity matters to ``spec_of``).
    """
    if _declared(factory) == "return" or getattr(factory, _WRAPPED, False):
        return factory
    return _wrap(factory)
