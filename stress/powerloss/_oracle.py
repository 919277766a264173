"""What D3 expects of a store after a power cut, and the verdict on what a recovered store shows.

The power-loss worker brackets every store call with ``mark`` records in its trace
(``begin save 1 2 5`` ... ``ack save 1 2 5``; ``fail`` when the call raised). At a crash point the
expectation for each key follows from the marks before it: the last acknowledged value (None
after an acknowledged delete, or for a key never saved) or the value of a call in flight (begun,
not acknowledged; a call that raised stays in flight: its effect is unknown).

The rule (D3, with F1 for damage). A crash state is a VIOLATION when, most serious first:

1. ``lost``: an acknowledged offset is lost or wrong: a key with an acknowledged value loads (or
   lists) as None (the store silently rewound) or as an older value, or a deleted key comes back;
2. ``invented``: a key holds a value nobody saved for it, or ``list_all`` shows a key nobody saved;
3. ``split`` (only for a store declaring ``batch_atomic``, B1): a batch in flight is half done,
   some of its keys new and some not (once it returned, all must be new: rule 1 says so per key);
4. ``raised``: opening the store, ``load`` or ``list_all`` raised while an acknowledged value was
   at stake. A loud error beats a silent wrong answer (F1), but a store that cannot give back an
   offset whose save was acknowledged has lost it for the consumer as surely as returning None;
5. ``hung``: opening or reading the state did not finish (the verifier is killed after
   ``STATE_SECONDS`` in ``_powerloss.py``: a lock left by the crashed process? a retry loop?),
   or killed the verifier process (a crash in C code);
6. ``stuck``: the recovered store cannot save (and load) again.

A loud error where NOTHING acknowledged is at stake is acceptable, and counted, not failed:
opening or ``load(key)`` raising when no key it covers has an acknowledged value (the damage can
only come from calls never acknowledged); ``list_all`` raising when no key has an acknowledged
value. When a ``load`` raised too, ``list_all`` raising is judged with it (the same damage): it
is acceptable if every failing load was, and adds nothing to a failing load's violation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..seam._trace import TraceOp
from ._fsmodel import CrashState, Tree

__all__ = [
    "KINDS",
    "Expectation",
    "Failure",
    "Findings",
    "Key",
    "Kind",
    "Observation",
    "Problem",
    "Step",
    "Verdict",
    "counts",
    "drawn_crash_state",
    "expectations",
    "judge",
    "parse_mark",
    "report",
    "shown",
]

Key = tuple[int, int]
Phase = Literal["begin", "ack", "fail"]


@dataclass(frozen=True)
class Step:
    """One store call of the workload: ``save`` (with its value) or ``delete`` (value None).

    Consecutive saves with one nonzero ``batch`` number are one ``save_many`` call (B1): each
    key is marked begun before the call and acknowledged after it, so the oracle holds every
    key of the batch to old-or-new during it and to new once it returned (per-key durable);
    the marks name the batch, so for a store declaring ``batch_atomic`` it also holds the batch
    to all old or all new (:func:`judge`'s ``atomic``).
    """

    kind: Literal["save", "delete"]
    key: Key
    value: int | None = None
    batch: int = 0

    def note(self, phase: Phase) -> str:
        """Return the mark note recording ``phase`` of this call (``"ack save 1 2 5"``)."""
        value = "" if self.value is None else f" {self.value}"
        batch = f" batch {self.batch}" if self.batch else ""
        return f"{phase} {self.kind} {self.key[0]} {self.key[1]}{value}{batch}"

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
        batch = int(words[6]) if words[5:6] == ["batch"] else 0
        return phase, Step("save", key, int(words[4]), batch)
    return phase, Step("delete", key)


@dataclass(frozen=True)
class Expectation:
    """What each key may hold after a cut at one crash point.

    :ivar acked: the last acknowledged value of each key the workload touched (None: absent).
    :ivar inflight: values of calls begun and not acknowledged since, per key.
    :ivar batches: the ``save_many`` calls begun and not acknowledged for every key: each
        batch's number and the new value of each of its keys.
    """

    acked: tuple[tuple[Key, int | None], ...]
    inflight: tuple[tuple[Key, tuple[int | None, ...]], ...] = ()
    batches: tuple[tuple[int, tuple[tuple[Key, int], ...]], ...] = ()

    def allowed(self, key: Key) -> set[int | None]:
        """Return the values ``key`` may hold."""
        values: set[int | None] = {dict(self.acked).get(key)}
        values.update(dict(self.inflight).get(key, ()))
        return values

    def at_stake(self, key: Key) -> bool:
        """Return whether ``key`` has an acknowledged value (a loud error on it loses that)."""
        return dict(self.acked).get(key) is not None

    def describe(self, key: Key) -> str:
        """Return the expectation for ``key`` in words."""
        acked = dict(self.acked).get(key)
        text = "absent" if acked is None else f"{acked} (acknowledged)"
        pending = dict(self.inflight).get(key, ())
        if pending:
            text += " or " + " or ".join("absent" if v is None else str(v) for v in pending)
            text += " (in flight)"
        return text


def expectations(
    trace: Sequence[TraceOp], keys: Sequence[Key], committed: Sequence[tuple[Key, int]] = ()
) -> list[Expectation]:
    """Return the expectation at each crash point ``-1 .. len(trace) - 1`` (index ``point + 1``).

    :param committed: values durable before the trace began (each key holds its value until an
        acknowledged call changes it); D3's own workload starts from an empty store.
    """
    acked: dict[Key, int | None] = dict.fromkeys(keys)
    acked.update(committed)
    inflight: dict[Key, list[int | None]] = {k: [] for k in keys}
    #: Batch number -> its keys' new values, and the keys not yet acknowledged.
    batches: dict[int, tuple[dict[Key, int], set[Key]]] = {}

    def freeze() -> Expectation:
        return Expectation(
            tuple(sorted(acked.items())),
            tuple((k, tuple(v)) for k, v in sorted(inflight.items()) if v),
            tuple((n, tuple(sorted(new.items()))) for n, (new, _) in sorted(batches.items())),
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
            if step.batch and step.value is not None:
                _follow_batch(batches, phase, step.batch, step.key, step.value)
            # "fail": the call raised; its effect is unknown, so it stays in flight.
        found.append(freeze())
    return found


def _follow_batch(
    batches: dict[int, tuple[dict[Key, int], set[Key]]],
    phase: Phase,
    batch: int,
    key: Key,
    value: int,
) -> None:
    """Track one mark of a ``save_many``: in flight from its first begin to its last ack.

    Between the acks of its keys the call has returned: the keys acknowledged already must be
    new (per key), so a batch still in flight then is held to all new.
    """
    new, waiting = batches.setdefault(batch, ({}, set()))
    if phase == "begin":
        new[key] = value
        waiting.add(key)
    elif phase == "ack":
        waiting.discard(key)
        if not waiting:
            del batches[batch]
    # "fail": the call raised; all or nothing still holds for a store declaring it atomic.


@dataclass
class Observation:
    """What a fresh process saw when it opened the store on one recovered directory."""

    open_error: str | None = None
    loads: dict[Key, int | None] = field(default_factory=dict)
    load_errors: dict[Key, str] = field(default_factory=dict)
    listing: dict[Key, int] | None = None
    listing_error: str | None = None
    resave_error: str | None = None
    #: What the store was doing when it stopped answering (the verifier was killed), if it hung.
    hung: str | None = None
    #: What the store was doing when the verifier process died on its own (exit code), if it did.
    died: str | None = None

    def describe(self, keys: Sequence[Key]) -> str:
        """Return what was found, one clause per key."""
        if self.hung is not None:
            return f"the store hung in {self.hung}"
        if self.died is not None:
            return f"the verifier process died in {self.died}"
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


#: Kinds of violation, most serious first, with how a report counts them.
Kind = Literal["lost", "invented", "split", "raised", "hung", "stuck"]
KINDS: Final[dict[Kind, str]] = {
    "lost": "lost or rewound an acknowledged offset",
    "invented": "showed a value or key nobody saved",
    "split": "left a batch declared atomic half done",
    "raised": "raised where an acknowledged offset was at stake",
    "hung": "hung or died opening or reading the state",
    "stuck": "could not save again",
}


@dataclass(frozen=True)
class Problem:
    """One violation in one crash state: its kind (see :data:`KINDS`) and the words for it."""

    kind: Kind
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Verdict:
    """The oracle's verdict on one crash state.

    :ivar problems: the violations, most serious first (none: the state passes).
    :ivar tolerated: loud errors the rule accepts (nothing acknowledged was at stake).
    """

    problems: tuple[Problem, ...] = ()
    tolerated: tuple[str, ...] = ()

    @property
    def worst(self) -> int:
        """Rank of the most serious problem (0: ``lost``); ``len(KINDS)`` for none."""
        order = list(KINDS)
        return min((order.index(p.kind) for p in self.problems), default=len(order))


def judge(
    seen: Observation,
    expected: Expectation,
    keys: Sequence[Key],
    saved: dict[Key, set[int]],
    *,
    atomic: bool = False,
    trust_list: bool = True,
) -> Verdict:
    """Return the verdict on ``seen`` under the rule in the module docstring.

    :param saved: every value the workload tried to save, per key, to tell a value that went
        back in time from one nobody ever saved.
    :param atomic: the store declares ``batch_atomic``: hold each batch to all or nothing.
    :param trust_list: False when ``list_all`` is wrong on a store no power cut touched: what
        it lists is then the store's own listing (C6's business), not judged here.
    """
    if seen.hung is not None or seen.died is not None:
        return Verdict((_stopped(seen),))
    at_stake = [k for k in keys if expected.at_stake(k)]
    if seen.open_error is not None:
        what = f"opening the store raised {seen.open_error}"
        if not at_stake:
            return Verdict(tolerated=(what,))
        lost = ", ".join(f"{k}: {expected.describe(k)}" for k in at_stake)
        return Verdict((Problem("raised", f"{what}; acknowledged values unreadable: {lost}"),))
    problems: list[Problem] = []
    tolerated: list[str] = []
    loud_at_stake = False
    for key in keys:
        if key in seen.load_errors:
            what = f"load{key} raised {seen.load_errors[key]}"
            if expected.at_stake(key):
                problems.append(Problem("raised", f"{what}; expected {expected.describe(key)}"))
                loud_at_stake = True
            else:
                tolerated.append(what)
        else:
            problems += _wrong(f"load{key}", seen.loads.get(key), key, expected, saved)
    if seen.listing_error is not None:
        what = f"list_all() raised {seen.listing_error}"
        if at_stake and not seen.load_errors:
            hidden = ", ".join(f"{k}: {expected.describe(k)}" for k in at_stake)
            problems.append(Problem("raised", f"{what} though every load worked; hides {hidden}"))
        elif not loud_at_stake:  # else the failing load's complaint covers this one
            tolerated.append(what)
    problems += _listing(seen, expected, keys, saved) if trust_list else []
    problems += _split(seen, expected) if atomic else []
    if seen.resave_error is not None:
        text = f"the recovered store cannot save again: {seen.resave_error}"
        problems.append(Problem("stuck", text))
    order = list(KINDS)
    problems.sort(key=lambda p: order.index(p.kind))
    return Verdict(tuple(problems), tuple(tolerated))


def _split(seen: Observation, expected: Expectation) -> list[Problem]:
    """Each batch in flight whose keys (as loaded) are some new and some not: named, key by key.

    A key whose load raised says nothing of the batch (its complaint is judged on its own).
    """
    problems = []
    for batch, new in expected.batches:
        loaded = [(key, value) for key, value in new if key not in seen.load_errors]
        fresh = [seen.loads.get(key) == value for key, value in loaded]
        if any(fresh) and not all(fresh):
            parts = "; ".join(
                f"{key} {'new' if is_new else 'old'} ({_shown(seen.loads.get(key))})"
                for (key, _), is_new in zip(loaded, fresh, strict=True)
            )
            text = (
                f"save_many batch {batch} is half done, though the store declares batch_atomic "
                f"(all old or all new): {parts}"
            )
            problems.append(Problem("split", text))
    return problems


def _shown(value: int | None) -> str:
    return "absent" if value is None else str(value)


def _stopped(seen: Observation) -> Problem:
    if seen.hung is not None:
        text = (
            f"the store hung opening/reading this state, in {seen.hung} (a lock held by a "
            "crashed process? an unbounded retry?)"
        )
        return Problem("hung", text)
    return Problem("hung", f"the verifier process died in {seen.died}")


def _listing(
    seen: Observation, expected: Expectation, keys: Sequence[Key], saved: dict[Key, set[int]]
) -> list[Problem]:
    """Judge what ``list_all`` returned (nothing to judge if it raised)."""
    if seen.listing is None:
        return []
    problems = []
    for key in sorted(set(seen.listing) - set(keys)):
        text = f"list_all() shows {key} = {seen.listing[key]}, a key nobody saved"
        problems.append(Problem("invented", text))
    for key in keys:
        listed = seen.listing.get(key)
        # A listing that agrees with a wrong load adds nothing to the load's complaint.
        if key not in seen.load_errors and listed != seen.loads.get(key):
            problems += _wrong("list_all()", listed, key, expected, saved)
    return problems


def _wrong(
    what: str, value: int | None, key: Key, expected: Expectation, saved: dict[Key, set[int]]
) -> list[Problem]:
    if value in expected.allowed(key):
        return []
    want = expected.describe(key)
    if value is None:
        return [Problem("lost", f"{what} lost {key}: found absent, expected {want}")]
    if value in saved.get(key, set()):
        text = f"{what} went back in time for {key}: found {value}, expected {want}"
        return [Problem("lost", text)]
    text = f"{what} invented {key} = {value}, a value nobody saved; expected {want}"
    return [Problem("invented", text)]


#: Failing crash states of the most serious kind printed in full in a failure report (then one
#: of each less serious kind).
SHOWN_FAILURES: Final = 3

Failure = tuple[CrashState, Verdict]


def _weight(state: CrashState) -> int:
    """How much a state differs from "everything persisted": the simplest explains best."""
    return len(state.undone) + len(state.data)


def shown(failures: Sequence[Failure]) -> list[Failure]:
    """Pick the failures a report prints, most serious first.

    Up to :data:`SHOWN_FAILURES` states of the worst kind, at distinct crash points, each the
    simplest state (fewest undone operations and dropped data) there; then the simplest state
    of each less serious kind, so every kind found has one example.
    """
    ranked = sorted(failures, key=lambda f: (f[1].worst, _weight(f[0]), f[0].point))
    picked: list[Failure] = []
    points: set[int] = set()
    kinds: set[int] = set()
    for failure in ranked:
        state, verdict = failure
        if not picked or verdict.worst == picked[0][1].worst:
            if state.point in points or len(picked) >= SHOWN_FAILURES:
                continue
        elif verdict.worst in kinds:
            continue
        picked.append(failure)
        points.add(state.point)
        kinds.add(verdict.worst)
    return picked


class Findings:
    """The failing crash states of a run, tallied as they are judged, in bounded memory.

    A run may judge tens of thousands of states, each holding a directory tree (a SQLite log can
    be hundreds of kilobytes). Only counts are kept for all of them; of the states themselves,
    only those a report can show (:func:`shown`): per kind, the simplest state at each of the
    :data:`SHOWN_FAILURES` simplest crash points, with what the verifier saw there.
    """

    def __init__(self) -> None:
        self.failed = 0
        self.per_kind: dict[str, int] = {}
        self._best: dict[int, dict[int, Failure]] = {}
        self.seen_by: dict[Tree, Observation] = {}

    def add(self, state: CrashState, verdict: Verdict, seen: Observation | None = None) -> None:
        """Count one failing state; keep it if a report could show it."""
        self.failed += 1
        for kind in {p.kind for p in verdict.problems}:
            self.per_kind[kind] = self.per_kind.get(kind, 0) + 1
        best = self._best.setdefault(verdict.worst, {})
        there = best.get(state.point)
        if there is not None and _rank((state, verdict)) >= _rank(there):
            return
        best[state.point] = (state, verdict)
        if len(best) > SHOWN_FAILURES:
            del best[max(best, key=lambda point: _rank(best[point]))]
        if seen is not None:
            self.seen_by[state.tree] = seen
            kept = {f[0].tree for per in self._best.values() for f in per.values()}
            for tree in [t for t in self.seen_by if t not in kept]:
                del self.seen_by[tree]

    @property
    def kept(self) -> list[Failure]:
        return [f for per in self._best.values() for f in per.values()]


def _rank(failure: Failure) -> tuple[int, int, int]:
    return failure[1].worst, _weight(failure[0]), failure[0].point


def _tally(failures: Sequence[Failure] | Findings) -> Findings:
    if isinstance(failures, Findings):
        return failures
    findings = Findings()
    for state, verdict in failures:
        findings.add(state, verdict)
    return findings


def counts(failures: Sequence[Failure] | Findings, tolerated: int) -> str:
    """Return how many states showed each kind of violation, and how many raised acceptably.

    ``tolerated`` counts states with no violation and a loud error the rule accepts. Most
    serious first: ``"lost or rewound an acknowledged offset in 2,606 states; ..."``.
    """
    per_kind = _tally(failures).per_kind
    parts = []
    for kind, words in KINDS.items():
        n = per_kind.get(kind, 0)
        if n:
            parts.append(f"{words} in {n:,} state{'s' if n != 1 else ''}")
    if tolerated:
        s = "s" if tolerated != 1 else ""
        parts.append(
            f"raised in {tolerated:,} state{s} with nothing acknowledged at stake: acceptable"
        )
    return "; ".join(parts)


def report(
    failures: Sequence[Failure] | Findings,
    trace: Sequence[TraceOp],
    expected: list[Expectation],
    *,
    seen_by: dict[Tree, Observation],
    keys: list[Key],
    checked: int,
    tolerated: int,
    summary: str,
) -> str:
    """Return the failure report: counts per kind, the most serious states, the trace.

    :param checked: crash states judged; :param tolerated: how many raised acceptably.
    """
    findings = _tally(failures)
    lines = [
        f"{findings.failed:,} of {checked:,} crash states violate D3: "
        f"{counts(findings, tolerated)}",
        f"checked {summary}",
        "most serious first:",
    ]
    picked = shown(findings.kept)
    for state, verdict in picked:
        lines.append("")
        at = trace[state.point] if state.point >= 0 else None
        kind = KINDS[verdict.problems[0].kind].upper()
        lines.append(f"crash state after {at if at else 'nothing'} [{kind}]:")
        lines.append(state.describe())
        want = "; ".join(f"{k}: {expected[state.point + 1].describe(k)}" for k in keys)
        lines.append(f"  expected: {want}")
        lines.append(f"  found: {seen_by[state.tree].describe(keys)}")
        lines += [f"  VIOLATION ({p.kind}): {p}" for p in verdict.problems]
        lines += [f"  acceptable: {t} (nothing acknowledged at stake)" for t in verdict.tolerated]
    lines.append("")
    lines.append("trace (the worker's file-system operations and marks, numbered):")
    last = max(s.point for s, _ in picked)
    lines += [f"  {op}" for op in trace[: last + 1]]
    return "\n".join(lines)


#: Bytes of each file a drawn crash state shows; the size says how much there was.
SHOWN_BYTES: Final = 512
_INDEX: Final = re.compile(r"#(\d+) ")


def _safe(content: bytes) -> str:
    # The bytes as a Python literal's inside: printable ASCII as is, anything else escaped, so
    # a report can show any file whatever it holds.
    return repr(content[:SHOWN_BYTES])[2:-1]


def drawn_crash_state(
    failure: Failure,
    trace: Sequence[TraceOp],
    expected: Expectation,
    seen: Observation,
    keys: Sequence[Key],
    *,
    clean: Callable[[str], str] = str,
) -> dict[str, Any]:
    """Return one failing crash state as JSON-ready data for a report that draws it.

    ``files``: what the cut left (path, ``dir`` or ``file``, size, the bytes shown safely and
    truncated to :data:`SHOWN_BYTES`). ``trace``: the worker's operations up to the cut, each
    marked ``persisted`` or ``undone`` when it was a pending entry operation at the cut.
    ``clean`` rewrites text naming scratch paths (the caller's temporary directories).
    """
    state, verdict = failure
    fate: dict[int, str] = {}
    for mark, ops in (("persisted", state.persisted), ("undone", state.undone)):
        for text in ops:
            found = _INDEX.match(text)
            if found:
                fate[int(found.group(1))] = mark
    files = []
    for path, content in state.tree:
        entry: dict[str, Any] = {"path": clean(path), "type": "dir" if content is None else "file"}
        if content is not None:
            entry.update(
                size=len(content), content=_safe(content), truncated=len(content) > SHOWN_BYTES
            )
        files.append(entry)
    return {
        "point": state.point,
        "violation": verdict.problems[0].kind if verdict.problems else "",
        "problems": [f"{p.kind}: {clean(p.text)}" for p in verdict.problems],
        "expected": {f"{k}": expected.describe(k) for k in keys},
        "found": clean(seen.describe(keys)),
        "data": [clean(d) for d in state.data],
        "files": files,
        "trace": [
            {"index": op.index, "text": clean(str(op)), "fate": fate.get(op.index, "")}
            for op in trace[: state.point + 1]
        ],
    }
