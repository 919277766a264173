"""The u32/u64 key and offset domain, checked before any effect (docs/contract.md, C7)."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lance_offsets import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from lance_offsets._domain import check_key, check_offset

WRONG_TYPES = [True, False, 1.0, "1", None, b"1", 1 + 0j]


class Topic(enum.IntEnum):
    ORDERS = 3


def test_maxima_are_u32_and_u64() -> None:
    assert (MAX_TOPIC_ID, MAX_CONSUMER_ID, MAX_OFFSET) == (2**32 - 1, 2**64 - 1, 2**64 - 1)


@pytest.mark.parametrize("key", [(0, 0), (MAX_TOPIC_ID, MAX_CONSUMER_ID), (1, 2)])
def test_extremes_are_accepted(key: tuple[int, int]) -> None:
    assert check_key(*key) == key
    assert check_offset(0) == 0
    assert check_offset(MAX_OFFSET) == MAX_OFFSET


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_wrong_types_raise_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="topic_id must be an int"):
        check_key(value, 0)
    with pytest.raises(TypeError, match="consumer_id must be an int"):
        check_key(0, value)
    with pytest.raises(TypeError, match="offset must be an int"):
        check_offset(value)


@pytest.mark.parametrize(
    ("topic_id", "consumer_id", "message"),
    [
        (-1, 0, r"topic_id must be in 0\.\.4294967295, got -1"),
        (2**32, 0, r"topic_id must be in 0\.\.4294967295, got 4294967296"),
        (0, -1, r"consumer_id must be in 0\.\.18446744073709551615, got -1"),
        (0, 2**64, r"consumer_id must be in 0\.\.18446744073709551615, got 18446744073709551616"),
    ],
)
def test_out_of_range_keys_raise_value_error(topic_id: int, consumer_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_key(topic_id, consumer_id)


@pytest.mark.parametrize("offset", [-1, 2**64, -(2**70)])
def test_out_of_range_offsets_raise_value_error(offset: int) -> None:
    with pytest.raises(ValueError, match="offset must be in"):
        check_offset(offset)


def test_int_subclasses_become_plain_ints() -> None:
    topic, _ = check_key(Topic.ORDERS, 0)
    assert type(topic) is int
    assert topic == 3


@settings(deadline=None, max_examples=200)
@given(st.integers())
def test_check_offset_accepts_exactly_u64(value: int) -> None:
    if 0 <= value <= MAX_OFFSET:
        assert check_offset(value) == value
    else:
        with pytest.raises(ValueError, match="offset"):
            check_offset(value)
