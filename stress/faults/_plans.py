"""Which faults F2 injects: every operation of a save, a stratified sample of the other actions.

A plan names an operation by its index in the counted trace (:class:`FaultPlan` ``at``). The
index is how the store's calls were numbered in one counting run; a store whose numbering moves
between runs (a background thread, a first call that opens more) would then be faulted somewhere
else. So F2 also keeps score by *role*, what an operation is regardless of its number (an open,
a write, a sync of a file; an open or a sync of a directory; a rename...), and every role a save
or another action makes is faulted at least once in every run (:func:`role_plans` aims at a role
the numbered plans missed, by kind).
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterable, Iterator
from typing import Final

from ..seam._trace import TraceOp
from ..seam._tracer import FaultPlan

__all__ = [
    "ERRORS",
    "SAMPLED",
    "SHARING_VIOLATION",
    "action_plans",
    "describe_roles",
    "role",
    "role_plans",
    "roles",
    "save_plans",
]

#: The errors every operation of a save is made to fail with.
ERRORS: Final = (errno.ENOSPC, errno.EIO, errno.EACCES)
#: Fault plans a short run tries per action besides save (delete, load, open), at most (more
#: only when the action has more roles than this).
SAMPLED: Final = 16
#: Windows' ERROR_SHARING_VIOLATION, carried by the injected PermissionError.
SHARING_VIOLATION: Final = 32

#: A plan and the line a report names it by.
Plan = tuple[FaultPlan, str]


def role(op: TraceOp) -> str:
    """What ``op`` is, whatever its number: ``"fsync"``, ``"fsync of a directory"``..."""
    return f"{op.kind} of a directory" if op.is_dir else op.kind


def roles(ops: Iterable[TraceOp]) -> set[str]:
    """The roles among ``ops`` (marks are the harness's, not the store's)."""
    return {role(op) for op in ops if op.kind != "mark"}


def describe_roles(hit: set[str], made: set[str]) -> str:
    """``"7 of 7 (close, fsync, ...)"``: the roles of an action faulted, of those it makes."""
    missed = sorted(made - hit)
    text = f"{len(made & hit)} of {len(made)} ({', '.join(sorted(made & hit))})"
    return text + (f"; not faulted: {', '.join(missed)}" if missed else "")


def _name(op: TraceOp) -> str:
    return "of the directory" if op.is_dir else os.path.basename(op.path)


def at(op: TraceOp, code: int, times: int | None, action: str = "save") -> Plan:
    """The plan failing ``op`` (and, with ``times=None``, every operation after it)."""
    plan = FaultPlan(at=op.index, error=code, times=times)
    return plan, f"{plan.describe()}: {action} op #{op.index} {op.call or op.kind} {_name(op)}"


def save_plans(save_ops: list[TraceOp]) -> Iterator[Plan]:
    """Every operation of the save, each error, once and from then on; then Windows' renames."""
    for op in save_ops:
        for code in ERRORS:
            for times in (1, None):
                yield at(op, code, times)
    for times in (1, 3, None):
        plan = FaultPlan(
            error=errno.EACCES, times=times, kinds=("replace", "rename"), winerror=SHARING_VIOLATION
        )
        yield plan, f"Windows sharing violation on rename/replace, {plan.describe()}"


def action_plans(ops: list[TraceOp], action: str, rng: random.Random, long: bool) -> list[Plan]:
    """Fault plans for a delete, load or open: every one in a long run, else a stratified sample.

    The sample first takes one plan per role of the action (a seeded operation of that role, a
    seeded error, once or for good), then fills up to :data:`SAMPLED` with seeded plans from
    the rest: a directory sync among twenty writes is faulted in every run, not one run in four.
    """
    if long:
        return [at(op, code, times, action) for op in ops for code in ERRORS for times in (1, None)]
    every = [at(op, rng.choice(ERRORS), times, action) for op in ops for times in (1, None)]
    by_role: dict[str, list[int]] = {}
    for number, (plan, _) in enumerate(every):
        by_role.setdefault(role(ops[_position(ops, plan.at)]), []).append(number)
    chosen = {rng.choice(numbers) for _, numbers in sorted(by_role.items())}
    rest = [n for n in range(len(every)) if n not in chosen]
    room = max(0, SAMPLED - len(chosen))
    chosen.update(rng.sample(rest, min(room, len(rest))))
    return [every[n] for n in sorted(chosen, key=lambda n: (every[n][0].at, n))]


def _position(ops: list[TraceOp], index: int) -> int:
    return next(n for n, op in enumerate(ops) if op.index == index)


def role_plans(ops: list[TraceOp], wanted: str, action: str = "save") -> list[Plan]:
    """Plans aimed at role ``wanted`` by kind, for a role the numbered plans did not hit.

    ``kinds`` makes the first operation of that kind at or after ``at`` fail, so a plan still
    lands on the role when the numbering moved by a few operations; one plan per operation of
    the role in the counted trace, the caller stopping at the first that hits it.
    """
    plans = []
    for op in ops:
        if role(op) == wanted:
            plan = FaultPlan(at=op.index, error=errno.EIO, times=1, kinds=(op.kind,))
            plans.append((plan, f"{plan.describe()}: {action}'s {wanted} (aimed by kind)"))
    return plans
