"""The history checker: per-key linearizability against a register, plus the direct violations.

Model: each key is a register holding an offset or None. ``save`` sets it, ``delete`` sets None,
``load`` reads it. A history is linearizable if every operation can be given one instant between
its invocation and completion at which it takes effect, so that the register explains every
result. Indeterminate operations (a killed worker's last call, or one that raised an undocumented
exception) may take effect at any instant after their invocation, or never; ``fail`` operations
(documented "nothing happened") never do.

Keys are independent registers, so the history splits by key first (P-compositionality: a history
is linearizable iff each key's sub-history is). Each key is then checked with a sweep over its
events in time order that keeps every reachable *configuration*: the register's value and which of
the currently invoked-but-not-returned operations were already linearized (Lowe's just-in-time
linearization, as in Knossos' ``linear`` checker). On each return the operation must be
linearized, possibly after some other pending ones; a return that no configuration can explain
proves the history not linearizable. Only operations in flight are remembered, so the cost grows
with the history's length times the number of concurrent operations, not exponentially with the
length, which is what makes 4 workers x 60 s of history check in seconds.

Two pruning rules keep indeterminate operations cheap, and both only drop options that can never
be needed: an indeterminate ``load`` has no effect, and an indeterminate ``save`` of a value no
load returned never explains anything (written values are unique, so no read depends on it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._history import Key, Op, format_ops

__all__ = [
    "REPORT_ORDER",
    "UndecidedError",
    "Violation",
    "check_history",
    "drawn_history",
    "first_reported",
    "first_unexplained",
    "format_violations",
    "shrink",
]

#: Violations of each kind shown in a report; the rest are counted.
SHOWN_PER_KIND: Final = 3
#: Configurations explored at one return before the checker gives up on a key. Correct stores
#: stay in the tens (operations in flight x a few values); only a flood of indeterminate
#: operations (a store raising on most calls) comes near, and giving up is then reported as a
#: failure to decide, never as a pass.
MAX_CONFIGS: Final = 200_000


class UndecidedError(Exception):
    """The search for a linearization grew past :data:`MAX_CONFIGS`."""


#: A configuration: the register's value, the pending operations already linearized, and how
#: many indeterminate deletes were used.
_Config = tuple["int | None", frozenset[int], int]


@dataclass(frozen=True)
class Violation:
    """One thing the history proves wrong.

    :ivar kind: ``exception`` (undocumented), ``unknown-value`` (a load returned a value nobody
        saved to that key), ``not-linearizable``, or ``undecided`` (the search gave up: see
        :data:`MAX_CONFIGS`; reported as a failure, never a pass).
    :ivar key: the key concerned.
    :ivar summary: one line saying what is wrong.
    :ivar excerpt: the operations that show it (shrunk to a minimal set for ``not-linearizable``).
    :ivar culprit: for ``not-linearizable``, the first completed operation no order explains.
    """

    kind: Literal["exception", "unknown-value", "not-linearizable", "undecided"]
    key: Key
    summary: str
    excerpt: tuple[Op, ...]
    culprit: Op | None = None


def _relevant(ops: Sequence[Op]) -> list[Op]:
    """Drop operations that cannot change the verdict (see the module docstring)."""
    read = {op.result for op in ops if op.kind == "load" and op.outcome == "ok"}
    kept = []
    for op in ops:
        if op.outcome == "fail":
            continue
        if op.outcome != "ok" and (
            op.kind == "load" or (op.kind == "save" and op.value not in read)
        ):
            continue
        kept.append(op)
    return kept


def _apply(op: Op, state: int | None) -> tuple[bool, int | None]:
    """Whether ``op`` can take effect on ``state``, and the state after it."""
    if op.kind == "save":
        return True, op.value
    if op.kind == "delete":
        return True, None
    return op.outcome != "ok" or op.result == state, state


def first_unexplained(ops: Sequence[Op]) -> Op | None:
    """Return the first completed operation no linearization explains, or None if linearizable.

    ``ops`` must all concern one key.
    """
    ops = _relevant(ops)
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        # At equal times invocations sort first: equal readings count as overlapping.
        events.append((op.invoke, 0, i))
        if op.outcome == "ok" and op.complete is not None:
            # Only a normal return pins an operation; an indeterminate one (killed, or raised
            # something undocumented) stays optional for ever, as in Jepsen's ``info``.
            events.append((op.complete, 1, i))
    events.sort()
    configs: set[_Config] = {(None, frozenset(), 0)}
    pending: set[int] = set()
    # Indeterminate deletes are interchangeable once invoked (each may clear the register once,
    # at any later time), so configurations count how many were used instead of naming them:
    # without this, k killed deletes would multiply the configurations by 2**k.
    pool = 0
    for _, is_return, i in events:
        if not is_return:
            if ops[i].kind == "delete" and ops[i].outcome != "ok":
                pool += 1
            else:
                pending.add(i)
            continue
        configs = _linearize_through(ops, configs, pending, pool, i)
        pending.discard(i)
        if not configs:
            return ops[i]
        _forget_consumed(ops, configs, pending)
    return None


def _forget_consumed(ops: Sequence[Op], configs: set[_Config], pending: set[int]) -> None:
    """Drop indeterminate operations every configuration has already linearized."""
    consumed = {p for p in pending if ops[p].outcome != "ok"}
    for _, done, _ in configs:
        consumed &= done
    if consumed:
        pending -= consumed
        updated = {(state, done - consumed, used) for state, done, used in configs}
        configs.clear()
        configs.update(updated)


def _linearize_through(
    ops: Sequence[Op], configs: set[_Config], pending: set[int], pool: int, target: int
) -> set[_Config]:
    """Return every configuration reachable by linearizing pending operations up to ``target``.

    Exploration stops at ``target``: whatever else could be linearized after it is still pending
    and will be tried at the next return. ``target`` leaves the configuration once linearized;
    indeterminate operations never return, so they stay marked as used until every
    configuration has used them. Of configurations differing only in how many pooled deletes
    they used, the one that used fewest can do everything the others can, so only it is kept.
    """
    best: dict[tuple[int | None, frozenset[int]], int] = {}
    seen = set(configs)
    stack = list(configs)
    while stack:
        state, done, used = stack.pop()
        if target in done:
            key = (state, done - {target})
            if used < best.get(key, pool + 1):
                best[key] = used
            continue
        successors: list[_Config] = []
        if state is not None and used < pool:
            successors.append((None, done, used + 1))
        for p in pending:
            if p not in done:
                possible, after = _apply(ops[p], state)
                if possible:
                    successors.append((after, done | {p}, used))
        for nxt in successors:
            if nxt not in seen:
                seen.add(nxt)
                if len(seen) > MAX_CONFIGS:
                    raise UndecidedError(f"over {MAX_CONFIGS} configurations at one return")
                stack.append(nxt)
    return {(state, done, used) for (state, done), used in best.items()}


def _fails(ops: Sequence[Op]) -> bool:
    # A candidate that lost the save a read returned would fail for a dull reason; _droppable
    # never lets that save go.
    try:
        return first_unexplained(ops) is not None
    except UndecidedError:
        return False


def _droppable(dropped: Sequence[Op], kept: Sequence[Op]) -> bool:
    """Whether no operation in ``dropped`` could explain a load left in ``kept``.

    Dropping a write can turn a linearizable history into one that is not: without the delete
    between them, a save and a later load of None look like a lost write, when the history was
    fine and its real fault lies elsewhere. An excerpt must fail *because of what it shows*, so
    that adding back any of the operations it left out still fails. That holds when each dropped
    operation is a load (it changes nothing), a save of a value no kept load returned (values are
    unique), or a delete that every kept load of None is separated from by a kept write: one that
    was invoked after the delete completed and completed before the load was invoked, so that in
    any order the delete is not the last write that load saw.
    """
    kept_reads = [op for op in kept if op.kind == "load" and op.outcome == "ok"]
    read_values = {op.result for op in kept_reads}
    read_none = [op for op in kept_reads if op.result is None]
    pinned = [
        op for op in kept if op.kind != "load" and op.outcome == "ok" and op.complete is not None
    ]
    for op in dropped:
        if op.outcome == "fail" or op.kind == "load":
            continue
        if op.kind == "save":
            if op.value in read_values:
                return False
            continue
        # An indeterminate delete may take effect at any time after its invocation.
        done = op.complete if op.outcome == "ok" and op.complete is not None else float("inf")
        for load in read_none:
            if not any(
                done < w.invoke and w.complete is not None and w.complete < load.invoke
                for w in pinned
            ):
                return False
    return True


def shrink(ops: Sequence[Op], *, budget_seconds: float = 5.0) -> list[Op]:
    """Return a small sub-history of one key that is still not linearizable.

    First the shortest failing prefix: everything invoked before the first unexplainable return,
    with operations still running at that instant made indeterminate. Then chunks, halving in
    size down to single operations, are dropped while the rest still fails and nothing dropped
    could explain what is left (see :func:`_droppable`). Bounded by ``budget_seconds``; the
    result is minimal (no single operation can go) when the budget allows.
    """
    culprit = first_unexplained(ops)
    if culprit is None or culprit.complete is None:
        return list(ops)
    cut = culprit.complete
    # Pairs of (operation as recorded, as checked): the check sees operations still running at
    # the cut as indeterminate, the report shows them as recorded. Showing a completion can only
    # add constraints, so the excerpt as shown fails too.
    current = [
        (op, op.indeterminate() if op.outcome == "ok" and (op.complete or 0) > cut else op)
        for op in sorted(ops, key=lambda o: o.invoke)
        if op.invoke <= cut
    ]
    if not _fails([checked for _, checked in current]):
        # Equal timestamps can reorder returns; fall back to the whole history.
        current = [(op, op) for op in sorted(ops, key=lambda o: o.invoke)]
    deadline = time.monotonic() + budget_seconds
    size = max(1, len(current) // 2)
    while time.monotonic() < deadline:
        changed = False
        i = 0
        while i < len(current) and time.monotonic() < deadline:
            candidate = current[:i] + current[i + size :]
            kept = [checked for _, checked in candidate]
            dropped = [checked for _, checked in current[i : i + size]]
            if candidate and _droppable(dropped, kept) and _fails(kept):
                current = candidate
                changed = True
            else:
                i += size
        if size == 1 and not changed:
            break
        size = max(1, size // 2)
    return [recorded for recorded, _ in current]


def _overlapping(target: Op, ops: Sequence[Op], limit: int = 6) -> list[Op]:
    """Return up to ``limit`` other operations on ``target``'s key in flight during it."""
    end = target.complete if target.complete is not None else float("inf")
    return [
        op
        for op in ops
        if op is not target
        and op.key == target.key
        and op.invoke <= end
        and (op.complete is None or op.complete >= target.invoke)
    ][:limit]


def check_history(ops: Sequence[Op], *, shrink_seconds: float = 5.0) -> list[Violation]:
    """Return everything wrong: undocumented exceptions, unknown values, unlinearizable keys.

    ``shrink_seconds`` bounds the time spent shrinking each non-linearizable key's excerpt.
    """
    violations: list[Violation] = []
    for op in ops:
        if op.outcome == "info" and op.error is not None:
            summary = (
                f"{op.kind} of key {op.key} raised {op.error} (not documented by the contract)"
            )
            # The first few (those a report shows) come with their rivals: the other
            # operations on the key in flight at the same time, which usually explain it.
            # Only exceptions are in ``violations`` yet: the first few get their rivals.
            rivals = _overlapping(op, ops) if len(violations) < SHOWN_PER_KIND else []
            violations.append(Violation("exception", op.key, summary, (op, *rivals)))
    saves = {op.value: op for op in ops if op.kind == "save"}
    unknown: set[tuple[int, int]] = set()  # (worker, seq) of reads already reported
    for op in ops:
        if op.kind != "load" or op.outcome != "ok" or op.result is None:
            continue
        source = saves.get(op.result)
        if source is not None and source.key == op.key and source.outcome != "fail":
            continue
        if source is None:
            why = "which no worker ever saved (torn or garbled data?)"
        elif source.key != op.key:
            why = f"which was saved to key {source.key} (keys collide?)"
        else:
            why = f"whose save failed with {source.error} (a failed save took effect)"
        summary = f"load of key {op.key} returned {op.result}, {why}"
        evidence = (op,) if source is None else (source, op)
        violations.append(Violation("unknown-value", op.key, summary, evidence))
        unknown.add((op.worker, op.seq))
    for key in sorted({op.key for op in ops}):
        mine = [op for op in ops if op.key == key and (op.worker, op.seq) not in unknown]
        try:
            culprit = first_unexplained(mine)
        except UndecidedError as exc:
            summary = f"could not decide whether key {key} is linearizable ({exc}): not a pass"
            violations.append(Violation("undecided", key, summary, ()))
            continue
        if culprit is None:
            continue
        minimal = shrink(mine, budget_seconds=shrink_seconds)
        summary = (
            f"history of key {key} is not linearizable: no order of the operations below, each "
            "taking effect between its invocation and completion, explains every result "
            f"(first unexplained: w{culprit.worker} #{culprit.seq} {culprit.kind})"
        )
        violations.append(Violation("not-linearizable", key, summary, tuple(minimal), culprit))
    return violations


#: The order a report lists violations in, by kind: the first is the one a reader meets first.
REPORT_ORDER: Final = ("unknown-value", "not-linearizable", "exception", "undecided")


def first_reported(violations: Sequence[Violation]) -> Violation | None:
    """The violation a report shows first (see :data:`REPORT_ORDER`), or None."""
    return next((v for kind in REPORT_ORDER for v in violations if v.kind == kind), None)


def format_violations(violations: Sequence[Violation], *, seed: int, origin: float = 0.0) -> str:
    """Return a readable report: the first few violations of each kind, excerpts, the seed.

    Times are printed in milliseconds after ``origin`` (the run's start signal).
    """
    lines: list[str] = []
    for kind in REPORT_ORDER:
        of_kind = [v for v in violations if v.kind == kind]
        for v in of_kind[:SHOWN_PER_KIND]:
            lines.append(f"  {v.summary}")
            lines.append(format_ops(list(v.excerpt), origin))
        if len(of_kind) > SHOWN_PER_KIND:
            lines.append(f"  ... and {len(of_kind) - SHOWN_PER_KIND} more {kind} violation(s)")
    lines.append(
        f"  seed {seed}: the same seed replays the same schedule of operations "
        f"(pytest --stress-seed {seed}), but not their timing: this verdict depends on how the "
        "workers interleaved, so a rerun may need a few tries (or --stress) to see it again"
    )
    return "\n".join(lines)


#: Operations a drawn history holds at most: the excerpt, then its neighbours in time.
DRAWN_OPERATIONS: Final = 60
#: Which violation a report draws, first found first: the one a timeline explains best.
_DRAW_ORDER: Final = ("not-linearizable", "unknown-value", "exception", "undecided")


def drawn_history(
    violations: Sequence[Violation], ops: Sequence[Op], *, origin: float
) -> dict[str, Any]:
    """Return the failing excerpt as JSON-ready data for a report that draws it, or ``{}``.

    One violation is drawn (the first non-linearizable key if any: its excerpt is the minimal
    set of operations no order explains), with the operations of every worker in flight around
    it, so a reader sees what ran concurrently. Each operation says who ran it (``process``: the
    worker incarnation), what (``kind``, ``key``, ``value`` or ``result``), when (``call`` and
    ``return``, seconds after ``origin``; ``return`` None when the worker was killed during it),
    how it ended (``outcome``: ok, fail, info), and whether it is in the excerpt.
    """
    drawn = next((v for kind in _DRAW_ORDER for v in violations if v.kind == kind), None)
    if drawn is None or not drawn.excerpt:
        return {}
    excerpt = {(op.worker, op.seq) for op in drawn.excerpt}
    start = min(op.invoke for op in drawn.excerpt)
    end = max(op.invoke if op.complete is None else op.complete for op in drawn.excerpt)

    def distance(op: Op) -> float:
        # 0 for operations overlapping the excerpt's span, else how far outside it they ran.
        finish = op.complete if op.complete is not None else float("inf")
        return max(0.0, start - finish, op.invoke - end)

    neighbours = sorted((op for op in ops if (op.worker, op.seq) not in excerpt), key=distance)
    room = max(0, DRAWN_OPERATIONS - len(drawn.excerpt))
    chosen = sorted([*drawn.excerpt, *neighbours[:room]], key=lambda o: (o.invoke, o.worker))
    return {
        "violation": drawn.kind,
        "key": list(drawn.key),
        "summary": drawn.summary,
        "operations in history": len(ops),
        "operations": [_drawn(op, origin, (op.worker, op.seq) in excerpt) for op in chosen],
    }


def _drawn(op: Op, origin: float, in_excerpt: bool) -> dict[str, Any]:
    return {
        "process": op.worker,
        "seq": op.seq,
        "kind": op.kind,
        "key": list(op.key),
        "value": op.value,
        "result": op.result if op.kind == "load" and op.outcome == "ok" else None,
        "call": round(op.invoke - origin, 6),
        "return": None if op.complete is None else round(op.complete - origin, 6),
        "outcome": op.outcome,
        "error": op.error,
        "excerpt": in_excerpt,
    }
