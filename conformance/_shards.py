"""One check run spread over N machines: which properties shard K of N runs.

``lance-offsets check --shard K/N`` runs shard K's share of the selected properties, and
``lance-offsets report merge`` joins the N verdicts into the verdict one machine gives. That holds
because the split is by property only and every shard uses the run's one seed: each property
draws from that seed and its ID wherever it runs, so a shard gives each of its properties the
verdict one machine would. The draws of one property are never cut across shards (a campaign
follows one random stream, and a failed first pass stops the rest): that would be a verdict no
single run gives.

Properties that one campaign decides together stay in one shard: D1, D2, D4 and D5 are one crash
campaign (``stress/crash/_campaign.py`` caches it by spec and seed), and F2 plans its faults from
the save that campaign counted (``stress/seam/_record.py``), so its evidence reads as on one
machine.

The split is balanced by an expected cost (:func:`unit_cost`): a static estimate per property,
from the profile and ``--stress``, never from a clock, so every shard of a run computes the same
split on any machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ._catalog import PROPERTIES, property_ids
from ._profiles import PROFILES

__all__ = ["GROUPS", "Shard", "parse_shard", "share", "split", "unit_cost", "units"]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based, as ``--shard K/N`` writes it)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_SHARD: Final = re.compile(r"([0-9]+)/([0-9]+)")


def parse_shard(text: str) -> Shard:
    """``"2/3"`` as a :class:`Shard`; anything else raises ValueError saying what is expected."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(f"--shard {text!r}: expected K/N, shard K of N, e.g. 2/3")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: K must be from 1 to N, and N at least 1")
    return Shard(index, count)


#: Properties decided by one campaign in one process: a shard runs all of the selected ones.
GROUPS: Final[tuple[frozenset[str], ...]] = (frozenset({"D1", "D2", "D4", "D5", "F2"}),)

#: Seconds per Hypothesis example of each single-process property, measured on the reference
#: lock-file store with the smoke profile (15 examples of 15 steps) on 2 cores. Estimates for
#: balancing shards: another store's ratios differ, which only makes the shards less even.
_PER_EXAMPLE: Final[dict[str, float]] = {
    "C1": 0.027,
    "C2": 0.018,
    "C3": 0.019,
    "C4": 0.023,
    "C5": 0.028,
    "C6": 0.011,
    "C7": 0.075,
    "C8": 0.004,
    "P1": 0.014,
    "P2": 0.028,
    "F1": 0.013,
    "H1": 0.005,
    "H2": 0.005,
    "H3": 0.003,
    "S1": 0.003,
}
#: Those whose examples are state-machine programs: their cost grows with the steps too.
_STEPPED: Final = frozenset({"C1", "C2", "C3", "C4", "C5", "C6", "P1", "P2"})
#: Steps per example those measurements were taken at (the smoke profile's).
_MEASURED_STEPS: Final = 15

#: Seconds of each multi-process property, (short run, ``--stress`` run). The crash campaign's
#: cost is D1's (the others of its group reuse it); ``--stress`` runs M1 and M2 for 60 s each
#: and the campaign for 2,000 kill-verify cycles (20-70 a second).
_STRESS: Final[dict[str, tuple[float, float]]] = {
    "M1": (2.5, 62.0),
    "M2": (2.5, 62.0),
    "D1": (3.0, 70.0),
    "D2": (0.0, 0.0),
    "D3": (0.3, 1.0),
    "D4": (0.0, 0.0),
    "D5": (0.0, 0.0),
    "F2": (0.6, 0.7),
    "B1": (0.8, 2.6),
}
#: The crash campaign, run once for whichever of its properties a unit holds.
_CAMPAIGN: Final = frozenset({"D1", "D2", "D4", "D5"})


def unit_cost(unit: Iterable[str], *, profile: str, stress: bool) -> float:
    """Expected seconds of running the properties of ``unit`` in one process."""
    members = set(unit)
    settings = PROFILES[profile]
    examples = settings.max_examples
    steps = settings.stateful_step_count / _MEASURED_STEPS
    total = 0.0
    for pid in members - _CAMPAIGN:
        if pid in _STRESS:
            total += _STRESS[pid][1 if stress else 0]
        else:
            total += _PER_EXAMPLE[pid] * examples * (steps if pid in _STEPPED else 1.0)
    if members & _CAMPAIGN:
        total += _STRESS["D1"][1 if stress else 0]
    return total


def units(ids: Iterable[str]) -> list[tuple[str, ...]]:
    """The selected properties as indivisible units, in catalog order of their first member.

    A property of a :data:`GROUPS` group shares a unit with the selected others of its group;
    every other property is a unit of its own.
    """
    selected = set(ids)
    unknown = selected - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown property IDs {sorted(unknown)}")
    found: list[tuple[str, ...]] = []
    placed: set[str] = set()
    for pid in property_ids():
        if pid not in selected or pid in placed:
            continue
        group = next((g for g in GROUPS if pid in g), frozenset({pid}))
        unit = tuple(p for p in property_ids() if p in group and p in selected)
        placed.update(unit)
        found.append(unit)
    return found


def split(ids: Iterable[str], count: int, *, profile: str, stress: bool) -> list[list[str]]:
    """The properties of each of ``count`` shards (item 0 is shard 1), each in catalog order.

    Longest unit first, each to the shard with the least expected cost so far (the lowest
    index on a tie): deterministic, every unit in exactly one shard, and shards beyond the
    number of units are empty.
    """
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    order = {pid: i for i, pid in enumerate(property_ids())}
    costed = [(unit_cost(u, profile=profile, stress=stress), u) for u in units(ids)]
    costed.sort(key=lambda item: (-item[0], order[item[1][0]]))
    loads = [0.0] * count
    shards: list[list[str]] = [[] for _ in range(count)]
    for cost, unit in costed:
        lightest = min(range(count), key=lambda k: (loads[k], k))
        loads[lightest] += cost
        shards[lightest].extend(unit)
    return [sorted(shard, key=order.__getitem__) for shard in shards]


def share(ids: Sequence[str] | None, shard: Shard, *, profile: str, stress: bool) -> list[str]:
    """The properties shard ``shard`` runs of ``ids`` (None: the whole catalog)."""
    selected = property_ids() if ids is None else ids
    return split(selected, shard.count, profile=profile, stress=stress)[shard.index - 1]
