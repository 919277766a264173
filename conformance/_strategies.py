"""Strategies for keys, offsets and bad arguments, narrowed by a store's declared ranges.

Keys deliberately collide: the machine draws them from a bundle, so the same key comes back, and
it derives near-colliding keys whose decimal spellings run together the same way (``1,23`` and
``12,3`` both spell ``123``), the bug of stores that build file names with ``f"{t}{c}"``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import strategies as st

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID

from ._capabilities import Capabilities

__all__ = [
    "CONTRACT_MAX",
    "Key",
    "bad_values",
    "keys",
    "near_collisions",
    "offsets",
    "wrong_types",
]

Key = tuple[int, int]


def _bounded(maximum: int) -> st.SearchStrategy[int]:
    # The extremes get their own branch: 0, 1 and the maximum round-trip or the store is broken,
    # and plain integers() reaches 2**64 - 1 only rarely.
    edges = sorted({0, 1, maximum - 1, maximum})  # capabilities guarantee maximum >= 1
    return st.one_of(
        st.sampled_from(edges), st.integers(0, min(maximum, 1000)), st.integers(0, maximum)
    )


def keys(caps: Capabilities) -> st.SearchStrategy[Key]:
    """Valid keys within the store's declared ranges, extremes included."""
    return st.tuples(_bounded(caps.topic_id_max), _bounded(caps.consumer_id_max))


def offsets(caps: Capabilities) -> st.SearchStrategy[int]:
    """Valid offsets within the store's declared range, extremes included."""
    return _bounded(caps.offset_max)


def near_collisions(key: Key, caps: Capabilities) -> list[Key]:
    """Keys other than ``key`` that a naive encoding could confuse with it.

    Every split of the concatenated decimal spelling (``1,23`` -> ``12,3``), the same digits as a
    topic or a consumer alone (``0,123`` and ``123,0``), and the two halves swapped.
    """
    topic, consumer = key
    spelled = f"{topic}{consumer}"
    found: set[Key] = set()
    for cut in range(1, len(spelled)):
        head, tail = spelled[:cut], spelled[cut:]
        found.add((int(head), int(tail)))
    found.update({(0, int(spelled)), (int(spelled), 0), (consumer, topic)})
    return sorted(
        k
        for k in found
        if k != key and 0 <= k[0] <= caps.topic_id_max and 0 <= k[1] <= caps.consumer_id_max
    )


def wrong_types() -> st.SearchStrategy[object]:
    """Values of a wrong type for any key part or offset: each must raise TypeError."""
    return st.one_of(
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1.0, 0.0, -0.0, math.inf, math.nan, Decimal(1), Fraction(3, 1)]),
        st.text(max_size=4),
        st.sampled_from(["1", "0", "", None, b"1", [1], (1,), 1j]),
    )


def bad_values(maximum: int) -> st.SearchStrategy[int]:
    """Ints outside ``0..maximum`` (the contract's range): each must raise ValueError."""
    return st.one_of(
        st.sampled_from([-1, maximum + 1, -(2**64), 2**64, 2**128]),
        st.integers(max_value=-1),
        st.integers(min_value=maximum + 1),
    )


#: The contract's maxima by argument name; C7 uses these, never a store's narrower ones.
CONTRACT_MAX = {"topic_id": MAX_TOPIC_ID, "consumer_id": MAX_CONSUMER_ID, "offset": MAX_OFFSET}
