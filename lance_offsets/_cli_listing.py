"""Reading a consumer's offsets for ``ls`` and ``export``: every healthy one, and each damaged key.

The library's ``list_all`` raises on the first damaged value (F1: corruption is loud), which is
right for a consumer about to resume, but an operator looking at a directory needs the rest too:
which keys are fine, and exactly which are not. So the command line lists a consumer with
``list_all`` and, only when that raises, reads it again key by key (the keys found by name, as
``rm --all`` finds them), keeping every offset that reads and one :class:`Damage` per key that
does not. The library is not weakened: the per-key reading is the CLI's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._cli_common import describe_key
from ._cli_os_errors import os_error_line
from ._cli_stores import Location
from ._errors import CorruptOffsetError, LockTimeoutError

__all__ = ["ConsumerOffsets", "Damage", "read_consumer"]

Key = tuple[int, int]


@dataclass(frozen=True)
class Damage:
    """One key whose offset could not be read (or a consumer whose keys could not be listed).

    :ivar key: the damaged key; None when the consumer's keys themselves could not be listed.
    :ivar message: one line naming the consumer, the key, the file, what is wrong, what to do.
    """

    key: Key | None
    message: str


@dataclass
class ConsumerOffsets:
    """What :func:`read_consumer` found: the offsets that read, and the damage, by key."""

    offsets: dict[Key, int] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)


def read_consumer(location: Location, name: str) -> ConsumerOffsets:
    """Read every offset of consumer ``name``; a damaged key is reported, not fatal.

    Errors that are not about one consumer's data (a base directory the user may not enter, a
    database that cannot be opened, a lost server connection) still raise.
    """
    store = location.open_existing(name)
    if store is None:
        return ConsumerOffsets()
    try:
        return ConsumerOffsets(store.list_all())  # a healthy consumer costs one listing
    except LockTimeoutError:
        raise  # a TimeoutError, hence an OSError, but no damage
    except (CorruptOffsetError, OSError):
        pass  # read again, key by key, below
    found = ConsumerOffsets()
    try:
        keys = location.stored_keys(store)
    except LockTimeoutError:
        raise
    except (CorruptOffsetError, OSError) as exc:
        found.damage.append(Damage(None, _unlisted(name, exc)))
        return found
    for key in keys:
        try:
            offset = store.load(*key)
        except CorruptOffsetError as exc:
            found.damage.append(Damage(key, f"consumer {name!r}: {exc}"))
            continue
        except LockTimeoutError:
            raise
        except OSError as exc:
            action = f"read the offset of {describe_key(name, *key)}"
            line = os_error_line(exc, action, writing=False, path=location.where(store, key))
            found.damage.append(Damage(key, line))
            continue
        if offset is not None:  # None: deleted since the listing; no longer a key
            found.offsets[key] = offset
    return found


def _unlisted(name: str, exc: CorruptOffsetError | OSError) -> str:
    if isinstance(exc, CorruptOffsetError):
        return f"consumer {name!r}: {exc}"
    return os_error_line(exc, f"list the offsets of consumer {name!r}", writing=False)
