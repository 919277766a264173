"""``save_many``: what every store's batch save shares (validation, ordering, the fallback).

A batch is a mapping ``{(topic_id, consumer_id): offset}``. Every store validates the whole
mapping before any effect (C7's rule, for a batch), and works through it in key order: two
batches that lock keys one by one then always take the locks in one order and cannot deadlock.

Semantics (docs/contract.md, property B1): every store's batch is at least **per-key durable**:
after a crash inside ``save_many`` each key holds its old or its new offset, never anything else,
and once ``save_many`` returns every new offset is acknowledged as if saved alone. A store whose
batch is also **atomic** (all keys old or all keys new after any crash: the databases, one
transaction) says so with ``BATCH_ATOMIC = True`` on its class, and its factory with
``batch_atomic = True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._domain import check_key, check_offset

__all__ = ["Batch", "check_batch", "save_each"]

Key = tuple[int, int]
#: A validated batch: (key, offset) pairs in key order, each key once.
Batch = list[tuple[Key, int]]


def check_batch(offsets: object) -> Batch:
    """Return the batch validated and sorted by key, or raise before any effect.

    :raises TypeError: ``offsets`` is not a mapping, a key is not a ``(topic_id, consumer_id)``
        pair, or a value or key part has a wrong type.
    :raises ValueError: a key part or offset is outside the contract's domain.
    """
    if not isinstance(offsets, Mapping):
        raise TypeError(
            f"save_many takes a mapping {{(topic_id, consumer_id): offset}}, "
            f"not {type(offsets).__name__}"
        )
    checked: dict[Key, int] = {}
    for key, offset in offsets.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"a save_many key must be a (topic_id, consumer_id) tuple, not {key!r}")
        # Two spellings of one key (an IntEnum and its int) are one key: the last value wins,
        # as two saves in a row would.
        checked[check_key(*key)] = check_offset(offset)
    return sorted(checked.items())


def save_each(store: Any, batch: Batch) -> None:
    """Save a validated batch one key at a time: per-key durable, as each ``save`` is."""
    for key, offset in batch:
        store.save(*key, offset)
