"""The contract's properties: stable IDs, titles, and what a store must claim for each to apply.

IDs never change meaning and are never renumbered (docs/contract.md); test names carry them.
This table is the one place the suite, the stress harness and the CLI learn a property's title.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["PROPERTIES", "Property", "property_ids"]


@dataclass(frozen=True)
class Property:
    """One property of the store contract.

    :ivar id: stable ID such as ``"C1"``.
    :ivar title: a few words a person can read in a report row.
    :ivar needs: capability names the store must claim for the property to apply.
    :ivar suite: which part of the kit checks it: ``conformance``, ``stress`` or ``powerloss``.
    """

    id: str
    title: str
    needs: tuple[str, ...]
    suite: str


PROPERTIES: Final[dict[str, Property]] = {
    p.id: p
    for p in (
        Property("C1", "round trip", (), "conformance"),
        Property("C2", "absent keys load as None", (), "conformance"),
        Property("C3", "last write wins", (), "conformance"),
        Property("C4", "delete is idempotent", (), "conformance"),
        Property("C5", "key isolation", (), "conformance"),
        Property("C6", "list_all is exact and fresh", (), "conformance"),
        Property("C7", "domain errors change nothing", (), "conformance"),
        Property("C8", "close and context manager", (), "conformance"),
        Property("P1", "reopen sees every commit", ("persistent",), "conformance"),
        Property("P2", "open handles see other handles' writes", ("persistent",), "conformance"),
        Property("M1", "concurrent histories linearizable", ("shared",), "stress"),
        Property("M2", "exclusion survives delete", ("shared",), "stress"),
        Property("D1", "atomic under kill", ("durable",), "stress"),
        Property("D2", "acknowledged survives kill", ("durable",), "stress"),
        Property("D3", "acknowledged survives power loss", ("durable",), "powerloss"),
        Property("D4", "crash leftovers are harmless", ("durable",), "stress"),
        Property("D5", "no stale locks", ("shared",), "stress"),
        Property("F1", "corruption is loud", ("persistent",), "conformance"),
        Property("F2", "I/O errors leave the old value", ("persistent",), "stress"),
        Property("H1", "hooks once per save, in order", (), "conformance"),
        Property("H2", "previous_offset is right, even after reopen", (), "conformance"),
        Property("H3", "failed saves call no hook; hook failures are loud", (), "conformance"),
        Property("S1", "unsafe consumer names rejected", ("named",), "conformance"),
        # Applies to stores whose handles have save_many (the check finds out): no flag to claim.
        Property("B1", "save_many is durable per key (or atomic, as declared)", (), "stress"),
    )
}


def property_ids(suite: str | None = None) -> list[str]:
    """Return the property IDs in catalog order, optionally only those of one suite."""
    return [p.id for p in PROPERTIES.values() if suite is None or p.suite == suite]
