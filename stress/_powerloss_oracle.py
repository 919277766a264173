"""What D3 expects of a store after a power cut, and the verdict on what a recovered store shows.

The power-loss worker brackets every store call with ``mark`` records in its trace
(``begin save 1 2 5`` ... ``ack save 1 2 5``; ``fail`` when the call raised). At a crash point the
expectation for each key follows from the marks before it: the last acknowledged value (None
after an acknowledged delete, or for a key never saved) or the value of a call in flight (begun,
not acknowledged; a call that raised stays in flight: its effect is unknown).

The verdict on one recovered directory (D3, with F1 for damage):

* every key loads as its acknowledged value or an in-flight one; a key holding ``None`` when a
  value was acknowledged lost it, a key holding an older value went back in time, a key holding a
  value never saved for it is invented;
* a loud error (opening, ``load`` or ``list_all`` raising) is acceptable only where nothing
  acknowledged is at stake: a key whose acknowledged state is "absent" and that had a save in
  flight (F1: damage of an unacknowledged save may be loud). Raising instead of returning an
  acknowledged value loses it as surely as returning None;
* ``list_all`` agrees with the same rules and shows no other key;
* the store can save again: a save and load on the recovered directory work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from ._fsmodel import CrashState, Tree
from ._trace import TraceOp

__all__ = [
    "Expectation",
    "Key",
    "Observation",
    "Step",
    "expectations",
    "judge",
    "parse_mark",
    "report",
]

Key = tuple[int, int]
Phase = Literal["begin", "ack", "fail"]


@dataclass(frozen=True)
class Step:
    """One store call of the workload: ``save`` (with its value) or ``delete`` (value None)."""

    kind: Literal["save", "delete"]
    key: Key
    value: int | None = None

    def note(self, phase: Phase) -> str:
        """Return the mark note recording ``phase`` of this call (``"ack save 1 2 5"``)."""
        value = "" if self.value is None else f" {self.value}"
        return f"{phase} {self.kind} {self.key[0]} {self.key[1]}{value}"

    def __str__(self) -> str:
        return f"{self.kind}{self.key}" + ("" if self.value is None else f" = {self.value}")


def parse_mark(note: str) -> tuple[Phase, Step] | None:
    """Return what a worker's mark note says, or None for a note that is not one of ours."""
    words = note.split(":", 1)[0].split()
    if len(words) < 4 or words[0] not in ("begin", "ack", "fail"):
        return None
    if words[1] not in ("save", "delete"):
        return None
    phase: Phase = words[0]  # type: ignore[assignment]
    key = (int(words[2]), int(words[3]))
    if words[1] == "save":
        return phase, Step("save", key, int(words[4]))
    return phase, Step("delete", key)


@dataclass(frozen=True)
class Expectation:
    """What each key may hold after a cut at one crash point.

    :ivar acked: the last acknowledged value of each key the workload touched (None: absent).
    :ivar inflight: values of calls begun and not acknowledged since, per key.
    """

    acked: tuple[tuple[Key, int | None], ...]
    inflight: tuple[tuple[Key, tuple[int | None, ...]], ...] = ()

    def allowed(self, key: Key) -> set[int | None]:
        """Return the values ``key`` may hold."""
        values: set[int | None] = {dict(self.acked).get(key)}
        values.update(dict(self.inflight).get(key, ()))
        return values

    def may_be_loud(self, key: Key) -> bool:
        """Return whether a loud error on ``key`` is acceptable (nothing acknowledged at stake)."""
        return dict(self.acked).get(key) is None and bool(dict(self.inflight).get(key))

    def describe(self, key: Key) -> str:
        """Return the expectation for ``key`` in words."""
        acked = dict(self.acked).get(key)
        text = "absent" if acked is None else f"{acked} (acknowledged)"
        pending = dict(self.inflight).get(key, ())
        if pending:
            text += " or " + " or ".join("absent" if v is None else str(v) for v in pending)
            text += " (in flight)"
        return text


def expectations(trace: Sequence[TraceOp], keys: Sequence[Key]) -> list[Expectation]:
    """Return the expectation at each crash point ``-1 .. len(trace) - 1`` (index ``point + 1``)."""
    acked: dict[Key, int | None] = dict.fromkeys(keys)
    inflight: dict[Key, list[int | None]] = {k: [] for k in keys}

    def freeze() -> Expectation:
        return Expectation(
            tuple(sorted(acked.items())),
            tuple((k, tuple(v)) for k, v in sorted(inflight.items()) if v),
        )

    found = [freeze()]
    for op in trace:
        parsed = parse_mark(op.note) if op.kind == "mark" else None
        if parsed is not None:
            phase, step = parsed
            acked.setdefault(step.key, None)
            if phase == "begin":
                inflight.setdefault(step.key, []).append(step.value)
            elif phase == "ack":
                acked[step.key] = step.value
                inflight[step.key] = []
            # "fail": the call raised; its effect is unknown, so it stays in flight.
        found.append(freeze())
    return found


@dataclass
class Observation:
    """What a fresh process saw when it opened the store on one recovered directory."""

    open_error: str | None = None
    loads: dict[Key, int | None] = field(default_factory=dict)
    load_errors: dict[Key, str] = field(default_factory=dict)
    listing: dict[Key, int] | None = None
    listing_error: str | None = None
    resave_error: str | None = None

    def describe(self, keys: Sequence[Key]) -> str:
        """Return what was found, one clause per key."""
        if self.open_error is not None:
            return f"opening the store raised {self.open_error}"
        parts = []
        for key in keys:
            if key in self.load_errors:
                parts.append(f"load{key} raised {self.load_errors[key]}")
            else:
                parts.append(f"load{key} -> {self.loads.get(key)}")
        if self.listing_error is not None:
            parts.append(f"list_all() raised {self.listing_error}")
        else:
            parts.append(f"list_all() -> {self.listing}")
        return "; ".join(parts)


def judge(
    seen: Observation,
    expected: Expectation,
    keys: Sequence[Key],
    saved: dict[Key, set[int]],
) -> list[str]:
    """Return the D3 violations in ``seen`` (empty when the state passes).

    :param saved: every value the workload tried to save, per key, to tell a value that went
        back in time from one nobody ever saved.
    """
    if seen.open_error is not None:
        at_stake = [
            k for k in keys if not expected.may_be_loud(k) and expected.allowed(k) != {None}
        ]
        if not at_stake:
            return []
        lost = ", ".join(f"{k}: {expected.describe(k)}" for k in at_stake)
        return [f"opening the store raised {seen.open_error}; lost {lost}"]
    problems: list[str] = []
    loud = False
    for key in keys:
        if key in seen.load_errors:
            loud = True
            if not expected.may_be_loud(key):
                problems.append(
                    f"load{key} raised {seen.load_errors[key]}; expected {expected.describe(key)}"
                )
            continue
        problems += _wrong(f"load{key}", seen.loads.get(key), key, expected, saved)
    if seen.listing_error is not None:
        if not loud:
            problems.append(f"list_all() raised {seen.listing_error} though every load worked")
    elif seen.listing is not None:
        for key in sorted(set(seen.listing) - set(keys)):
            problems.append(f"list_all() shows {key} = {seen.listing[key]}, a key nobody saved")
        for key in keys:
            listed = seen.listing.get(key)
            # A listing that agrees with a wrong load adds nothing to the load's complaint.
            if key not in seen.load_errors and listed != seen.loads.get(key):
                problems += _wrong("list_all()", listed, key, expected, saved)
    if seen.resave_error is not None:
        problems.append(f"the recovered store cannot save again: {seen.resave_error}")
    return problems


def _wrong(
    what: str, value: int | None, key: Key, expected: Expectation, saved: dict[Key, set[int]]
) -> list[str]:
    if value in expected.allowed(key):
        return []
    want = expected.describe(key)
    if value is None:
        return [f"{what} lost {key}: found absent, expected {want}"]
    if value in saved.get(key, set()):
        return [f"{what} went back in time for {key}: found {value}, expected {want}"]
    return [f"{what} invented {key} = {value}, a value nobody saved; expected {want}"]


#: Failing crash states printed in full in a failure report.
SHOWN_FAILURES: Final = 3


def _shown(failures: list[tuple[CrashState, list[str]]]) -> list[tuple[CrashState, list[str]]]:
    """Pick failures at distinct crash points, each the simplest state (fewest losses) there."""
    best: dict[int, tuple[CrashState, list[str]]] = {}
    for state, problems in failures:
        weight = len(state.undone) + len(state.data)
        held = best.get(state.point)
        if held is None or weight < len(held[0].undone) + len(held[0].data):
            best[state.point] = (state, problems)
    return [best[p] for p in sorted(best)][:SHOWN_FAILURES]


def report(
    failures: list[tuple[CrashState, list[str]]],
    trace: Sequence[TraceOp],
    expected: list[Expectation],
    *,
    seen_by: dict[Tree, Observation],
    keys: list[Key],
    summary: str,
) -> str:
    """Return the failure report: the simplest failing state at a few crash points, the trace."""
    lines = [f"{len(failures)} of the crash states lose or invent offsets; checked {summary}"]
    shown = _shown(failures)
    for state, problems in shown:
        lines.append("")
        at = trace[state.point] if state.point >= 0 else None
        lines.append(f"crash state after {at if at else 'nothing'}:")
        lines.append(state.describe())
        want = "; ".join(f"{k}: {expected[state.point + 1].describe(k)}" for k in keys)
        lines.append(f"  expected: {want}")
        lines.append(f"  found: {seen_by[state.tree].describe(keys)}")
        lines += [f"  VIOLATION: {p}" for p in problems]
    lines.append("")
    lines.append("trace (the worker's file-system operations and marks, numbered):")
    last = max(s.point for s, _ in shown)
    lines += [f"  {op}" for op in trace[: last + 1]]
    return "\n".join(lines)
