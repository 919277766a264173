"""What a store claims, read from optional attributes on its factory.

A factory is any callable ``factory(path) -> OffsetStore``. It may carry these attributes (all
optional; a factory that declares nothing is held to everything, so nothing passes silently):

``persistent`` (bool, default True)
    Data outlives the handle: a new ``factory(path)`` sees it (P1, P2, F1, F2).
``shared`` (bool, default True)
    Handles in several processes on one path see one another and exclude one another (P2 across
    processes, M1, M2, D5).
``durable`` (bool, default True)
    A returned save survives a process kill and a power cut (D1-D4).
``topic_id_max``, ``consumer_id_max``, ``offset_max`` (int)
    The largest values the store accepts, for a store with a narrower domain than the contract;
    strategies are narrowed to them instead of tests being skipped.
``open_named`` (callable ``(path, consumer_name) -> OffsetStore``)
    For stores whose location includes a consumer name; enables S1.
``damage`` (mapping of name to callable ``(path, key) -> None``)
    Format-aware corruption the suite cannot invent on its own (F1); each damages the stored
    offset of ``key`` under ``path``, with every handle closed (cold) or while one handle is open
    in another process (warm). A callable that raises while a handle is open skips that example.
``batch_atomic`` (bool, default False)
    For stores with ``save_many``: a batch is atomic, all keys old or all new after a kill or
    power cut (B1). Without it a batch is held to per-key durability only.
``batch`` (bool, default: found by opening one handle)
    Whether the store's handles have ``save_many`` (B1 applies), for a factory that cannot be
    probed cheaply.
``acknowledge`` (``"return"``, the default, or ``"flush"``)
    When a save is acknowledged: when it returns, or when a later ``flush()`` returns (a
    coalescing committer). With ``"flush"`` every check goes through handles that flush after
    each write (``_acknowledge.py``), so every property is about flushed saves.
``handles_per_process`` (int >= 1, default: no limit)
    ``1`` declares that, as documented for LMDB and RocksDB, the store refuses a second open handle
    on one location in one process. The checks then never open a helper handle in the process
    that holds one: they observe through another process (when the factory has an import spec and
    the store claims ``shared``) or say which part was not checked; P2's same-process part does
    not apply. Without the declaration a refused helper handle is handled the same way, and never
    becomes a verdict.
``call_seconds`` (a positive number, default :data:`CALL_SECONDS`)
    How long one call into the store (an open, a load, a close...) may take before the suite
    reports it hung: the property fails with where the call was blocked. A store whose calls may
    rightly take longer (a remote one with long retries) declares more.
``server`` (object with ``start()``, ``stop(kill=...)``, ``route(address)``)
    The server the store talks to (``lance_offsets.stress.servers.ServerDeclaration``): with
    ``--stress``, D2 adds server kills and F2 connection faults through a proxy (docs/stress.md,
    "Servers").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from lance_offsets._protocol import OffsetStore

__all__ = [
    "CALL_SECONDS",
    "CAPABILITY_FLAGS",
    "Capabilities",
    "Factory",
    "call_seconds_of",
    "capabilities_of",
]

Factory = Callable[[str], OffsetStore]
Damage = Callable[[str, tuple[int, int]], None]

#: Boolean capability attributes; each defaults to True (held to everything).
CAPABILITY_FLAGS: Final = ("persistent", "shared", "durable")
#: Seconds one call into the store may take before it counts as hung, unless the factory
#: declares ``call_seconds``. Generous: a correct store answers in milliseconds, and one that
#: waits for a busy lock (SQLite's default busy timeout is 5 s) must still be able to raise.
CALL_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Capabilities:
    """The claims of one factory, with defaults filled in."""

    persistent: bool = True
    shared: bool = True
    durable: bool = True
    topic_id_max: int = MAX_TOPIC_ID
    consumer_id_max: int = MAX_CONSUMER_ID
    offset_max: int = MAX_OFFSET
    open_named: Callable[[str, str], OffsetStore] | None = None
    damage: Mapping[str, Damage] = field(default_factory=dict)
    handles_per_process: int | None = None
    batch_atomic: bool = False
    server: object | None = None
    call_seconds: float = CALL_SECONDS

    @property
    def one_handle(self) -> bool:
        """Whether the store declares it refuses a second handle on a location in one process."""
        return self.handles_per_process == 1

    @property
    def one_at_a_time(self) -> bool:
        """Whether no second handle may be open beside a first, in this process or another.

        One per process, and not shared: an embedded database that holds an exclusive lock
        from open to close. No check opens a helper handle beside the one it tests.
        """
        return self.one_handle and not self.shared

    def has(self, name: str) -> bool:
        """Return whether the store claims capability ``name`` (``named`` means S1 applies)."""
        if name == "named":
            return self.open_named is not None
        return bool(getattr(self, name))

    def missing(self, needs: tuple[str, ...]) -> list[str]:
        """Return the capabilities among ``needs`` the store does not claim."""
        return [n for n in needs if not self.has(n)]


def _flag(factory: object, name: str) -> bool:
    value = getattr(factory, name, True)
    if not isinstance(value, bool):
        raise TypeError(f"capability {name!r} on {factory!r} must be a bool, got {value!r}")
    return value


def _optional_flag(factory: object, name: str) -> bool:
    """A flag that is a stronger promise, so it defaults to False (not claimed)."""
    value = getattr(factory, name, False)
    if not isinstance(value, bool):
        raise TypeError(f"capability {name!r} on {factory!r} must be a bool, got {value!r}")
    return value


def _limit(factory: object, name: str, default: int) -> int:
    value: Any = getattr(factory, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= default:
        raise ValueError(f"capability {name!r} on {factory!r} must be an int in 1..{default}")
    return value


def _handles(factory: object) -> int | None:
    value: Any = getattr(factory, "handles_per_process", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"capability 'handles_per_process' on {factory!r} must be an int >= 1, got {value!r}"
        )
    return value


def call_seconds_of(factory: object) -> float:
    """The factory's declared ``call_seconds`` (a positive number), else :data:`CALL_SECONDS`."""
    value: Any = getattr(factory, "call_seconds", CALL_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"capability 'call_seconds' on {factory!r} must be a positive number of seconds, "
            f"got {value!r}"
        )
    return float(value)


def capabilities_of(factory: object) -> Capabilities:
    """Read the capability attributes of ``factory``; bad values raise, naming the attribute."""
    open_named = getattr(factory, "open_named", None)
    if open_named is not None and not callable(open_named):
        raise TypeError(f"capability 'open_named' on {factory!r} must be callable")
    damage = getattr(factory, "damage", {})
    if not isinstance(damage, Mapping) or not all(callable(d) for d in damage.values()):
        raise TypeError(f"capability 'damage' on {factory!r} must map names to callables")
    return Capabilities(
        persistent=_flag(factory, "persistent"),
        shared=_flag(factory, "shared"),
        durable=_flag(factory, "durable"),
        topic_id_max=_limit(factory, "topic_id_max", MAX_TOPIC_ID),
        consumer_id_max=_limit(factory, "consumer_id_max", MAX_CONSUMER_ID),
        offset_max=_limit(factory, "offset_max", MAX_OFFSET),
        open_named=open_named,
        damage=dict(damage),
        handles_per_process=_handles(factory),
        batch_atomic=_optional_flag(factory, "batch_atomic"),
        server=getattr(factory, "server", None),
        call_seconds=call_seconds_of(factory),
    )
