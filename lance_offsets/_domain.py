"""The key and offset domain of the Rust trait, checked before any effect.

``topic_id`` is a u32, ``consumer_id`` and ``offset`` are u64. Wrong types (including bool, which
is an int subclass, and floats such as 1.0) raise TypeError; out-of-range ints raise ValueError.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_CONSUMER_ID", "MAX_OFFSET", "MAX_TOPIC_ID", "check_key", "check_offset"]

#: Largest valid topic id (u32).
MAX_TOPIC_ID: Final = 2**32 - 1
#: Largest valid consumer id (u64).
MAX_CONSUMER_ID: Final = 2**64 - 1
#: Largest valid offset (u64).
MAX_OFFSET: Final = 2**64 - 1


def _check(name: str, value: object, maximum: int) -> int:
    # bool is an int subclass, but True as a topic id is a bug in the caller, not topic 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    number = int(value)  # an int subclass (an IntEnum, say) is stored as its plain value
    if not 0 <= number <= maximum:
        raise ValueError(f"{name} must be in 0..{maximum}, got {number}")
    return number


def check_key(topic_id: object, consumer_id: object) -> tuple[int, int]:
    """Return the validated ``(topic_id, consumer_id)`` or raise TypeError/ValueError."""
    return (
        _check("topic_id", topic_id, MAX_TOPIC_ID),
        _check("consumer_id", consumer_id, MAX_CONSUMER_ID),
    )


def check_offset(offset: object) -> int:
    """Return the validated offset or raise TypeError/ValueError."""
    return _check("offset", offset, MAX_OFFSET)
