"""Where a save (or delete) commits: the operation after which a fresh handle sees the change.

A fault before the commit must leave the old value; one after it may leave the new one (the
change was made, raising is honest). Guessing the commit from the trace (the last rename,
replace, unlink or truncate) is wrong for a store that unlinks a lock file after its
``os.replace``: the guess moves past the replace, and a failed directory sync between the two,
which leaves the new value, was judged a violation.

So F2 demonstrates it with the crash campaign's machinery: a worker runs the counted change and
is killed right after operation ``k`` (``stop=(k, "after")``), and a fresh process reads the key.
The commit is the first operation after which it reads the new value. Only operations that can
change what a reader finds are candidates (writes, truncations, renames, links, unlinks,
creations); a binary search over them costs a few kills. When a kill point is not reached (the
run took another path), the read after a kill blocks, or a fresh handle sees the change after an
operation the trace shows changing nothing (a write through a shared mapping), the guess stands,
and the evidence says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from ..seam._trace import TraceOp

__all__ = ["Commit", "Seen", "demonstrated_commit", "guessed_commit"]

#: What a fresh handle read after a kill: the change, the old state, something else, or no
#: verdict (the kill point was not reached, or the read after the kill blocked).
Seen = Literal["new", "old", "other", "unreached"]

#: Kinds that can commit a save by the guess: a rename into place, or, for a library's journal
#: (SQLite's rollback journal commits by unlinking it, or truncating it in
#: ``journal_mode=TRUNCATE``), the unlink or truncate of it.
_GUESSED: Final = frozenset({"rename", "replace", "unlink", "truncate", "link"})
#: Kinds after which a reader may find something new (an ``open`` only if it creates or
#: truncates).
_CHANGES: Final = frozenset({"write", "truncate", "rename", "replace", "unlink", "link", "mkdir"})


@dataclass(frozen=True)
class Commit:
    """The commit point of one action's counted trace.

    :ivar index: the operation after which the change may be visible; faults after it may leave
        the new state. ``len(ops)`` (past the end) when no operation of the action commits it.
    :ivar demonstrated: found by kills and fresh reads (True) or guessed from the trace.
    :ivar how: one line for the evidence.
    """

    index: int
    demonstrated: bool
    how: str


def guessed_commit(ops: list[TraceOp], action: str = "save") -> Commit:
    """The last operation that can commit (a delete: the first), from the trace alone.

    For a delete, the first: its first unlink (or rename) may already have removed the key, and
    what follows (removing a leftover temp file, say) cannot bring it back.
    """
    commits = [op for op in ops if op.kind in _GUESSED and op.error is None]
    if not commits:
        return Commit(len(ops), False, "guessed: no rename, unlink or truncate (end of the action)")
    chosen = commits[0] if action == "delete" else commits[-1]
    return Commit(chosen.index, False, f"guessed: {_named(chosen)}")


def _named(op: TraceOp) -> str:
    return f"op #{op.index} {op.call or op.kind} {os.path.basename(op.path) or op.path}"


def _can_change(op: TraceOp) -> bool:
    if op.error is not None or op.kind == "mark":
        return False
    if op.kind == "open":
        return bool(op.flags & (os.O_CREAT | os.O_TRUNC))
    return op.kind in _CHANGES


def demonstrated_commit(ops: list[TraceOp], seen_after: Callable[[int], Seen]) -> Commit | str:
    """Find the commit by killing after candidate operations; or why it could not be shown.

    :param seen_after: kills a run of the action right after operation ``k`` (its index) and
        says what a fresh handle then read.
    :returns: the :class:`Commit`, or a string saying why the kills showed nothing (the caller
        falls back to :func:`guessed_commit`).
    """
    candidates = [op for op in ops if _can_change(op)]
    if not candidates:  # the change is made where the trace cannot see it (a shared mapping?)
        return "no operation in the trace can change what a reader sees (writes through a mapping?)"
    kills = 0

    def probe(op: TraceOp) -> Seen:
        nonlocal kills
        kills += 1
        return seen_after(op.index)

    last = probe(candidates[-1])
    if last == "unreached":
        return f"the kill after {_named(candidates[-1])} was not reached"
    if last != "new":
        return _not_before_the_end(ops, candidates[-1], last, probe)
    low, high = -1, len(candidates) - 1  # after candidates[high]: new; before candidates[0]: old
    while high - low > 1:
        middle = (low + high) // 2
        seen = probe(candidates[middle])
        if seen == "unreached":
            return f"the kill after {_named(candidates[middle])} was not reached"
        if seen == "new":
            high = middle
        else:
            low = middle
    chosen = candidates[high]
    return Commit(chosen.index, True, f"demonstrated: {_named(chosen)} ({kills} kill(s))")


def _not_before_the_end(
    ops: list[TraceOp], last: TraceOp, seen: Seen, probe: Callable[[TraceOp], Seen]
) -> Commit | str:
    """After the last candidate ``last`` a fresh handle read ``seen``, not the change.

    The change is then not visible before the action returned (a write-behind store), unless a
    kill after the action's very last operation shows it: then it was made where the trace
    cannot see (a write through a shared mapping, synced by the operation after), and the
    trace cannot place the commit.
    """
    final = ops[-1]
    after = seen if final is last else probe(final)
    if after == "new":
        return (
            f"a fresh handle sees the change after {_named(final)}, not after {_named(last)}: "
            "the trace misses where it is made"
        )
    if after == "unreached":
        return f"the kill after {_named(final)} was not reached"
    return Commit(len(ops), True, f"demonstrated: not before the action returned (read {after})")
