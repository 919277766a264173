"""What the SQLite and PostgreSQL stores share: the signed-integer mapping and the database error.

Both databases keep integers as signed 64-bit values, while consumer ids and offsets are u64. Both
stores keep them shifted by ``2**63``: ``stored = value - 2**63`` maps ``0..2**64-1`` onto
``-2**63..2**63-1`` one to one and preserves order, so ``ORDER BY`` and range checks still work,
and the column stays a native integer (no text parsing that could accept a damaged value).
"""

from __future__ import annotations

import os
from typing import Final

from ._errors import CorruptOffsetError, OffsetStoreError

__all__ = ["SHIFT", "CorruptDatabaseError", "from_signed", "to_signed"]

Key = tuple[int, int]

#: What is subtracted from a u64 before it is stored in a signed 64-bit column.
SHIFT: Final = 2**63


def to_signed(value: int) -> int:
    """Map a validated u64 onto the signed 64-bit range, preserving order."""
    return value - SHIFT


def from_signed(stored: object, key: Key | None, where: str) -> int:
    """Map a stored signed value back to a u64; anything that is not an int of range is loud."""
    if isinstance(stored, bool) or not isinstance(stored, int) or not -SHIFT <= stored < SHIFT:
        raise CorruptDatabaseError(where, f"stored value {stored!r} is not a shifted u64", key)
    return stored + SHIFT


class CorruptDatabaseError(CorruptOffsetError):
    """The database holding the offsets is damaged, emptied or not ours.

    A :class:`~lance_offsets.CorruptOffsetError` (so a ``ValueError``): callers that already catch
    a corrupt offset file catch this too. ``key`` is None when the whole database is concerned.
    """

    def __init__(self, where: str | os.PathLike[str], reason: str, key: Key | None = None) -> None:
        shown = os.fspath(where)
        about = "" if key is None else f" (topic_id={key[0]} consumer_id={key[1]})"
        # OffsetStoreError's constructor, not CorruptOffsetError's: that one needs a key and the
        # bytes of one offset file, which a database-wide problem does not have.
        OffsetStoreError.__init__(
            self,
            f"corrupt offset database {shown!r}{about}: {reason}; restore it from a backup, or "
            "move it away to start empty",
            key=key,
            path=shown,
        )
        self.content = b""
        self.reason = reason
