"""What a concurrent history's violations demonstrate, as findings for ``_diagnosis.py``.

The checker (:mod:`._linearize`) says what is wrong; this says what that shows about the store,
from the operations alone:

- a save or delete that raised something undocumented while another worker's save or delete of
  the key was in flight: two writers were inside one change at once (the lock does not exclude);
- a load that raised: it parsed a file another process was writing or a kill left half-written
  (the writes are not atomic);
- a load of a value nobody saved (torn), or one saved to another key (keys collide);
- a history no order explains, told apart by what the workers saw. A handle that serves its own
  cache shows it everywhere: once a worker had a key (saved it, or loaded a value), none of its
  later loads ever returned another worker's save until it deleted the key itself. Then the
  unexplained load is a stale view; otherwise an update was lost (two writers, or an unlocked
  read-modify-write of a shared file).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from lance_offsets.conformance._diagnosis import finding

from ._history import Key, Op
from ._linearize import Violation

__all__ = ["history_findings"]

#: Save and delete exceptions looked at for a rival writer (each look scans the history).
_RIVALS_LOOKED_AT: Final = 50


def _rival_writer(op: Op, ops: Sequence[Op]) -> Op | None:
    """Another worker's save or delete of ``op``'s key in flight while ``op`` ran, if any."""
    end = op.complete if op.complete is not None else float("inf")
    for other in ops:
        if (
            other.worker != op.worker
            and other.key == op.key
            and other.kind in ("save", "delete")
            and other.invoke <= end
            and (other.complete is None or other.complete >= op.invoke)
        ):
            return other
    return None


def _never_refreshed(ops: Sequence[Op]) -> bool:
    """Whether no worker ever loaded a new value of a key it already held.

    "Held": the worker saved the key, or loaded a value of it, and has not deleted it since; a
    new value is one other than what it last saw of the key. A store that answers from a
    per-process cache never shows such a load; any shared store does, as soon as another
    worker writes a key this one has seen.
    """
    last: dict[tuple[int, Key], int] = {}  # (worker, key) -> the value it last saw
    for op in sorted(ops, key=lambda o: o.invoke):
        if op.outcome != "ok":
            continue
        mine = (op.worker, op.key)
        if op.kind == "delete":
            last.pop(mine, None)
        elif op.kind == "save" and op.value is not None:
            last[mine] = op.value
        elif op.result is not None:
            if mine in last and last[mine] != op.result:
                return False
            last[mine] = op.result
    return True


def _fact_of(v: Violation, ops: Sequence[Op], stale: bool, look: bool) -> tuple[str, str] | None:
    """What one violation demonstrates, with its words; None when it says nothing certain.

    :param stale: the store never showed a worker a new value of a key it held.
    :param look: whether to scan the history for a rival writer (bounded by the caller).
    """
    op = v.excerpt[0] if v.excerpt else None
    fact = None
    summary = v.summary
    if v.kind == "not-linearizable":
        fact = "stale-own-value" if stale else "lost-update"
    elif op is not None and v.kind == "exception" and op.kind == "load":
        fact = "read-raised"
    elif op is not None and v.kind == "exception":
        rival = _rival_writer(op, ops) if look else None
        if rival is not None:
            fact = "two-writers-at-once"
            summary = f"{v.summary}, while worker {rival.worker} ran {rival.kind}"
    elif op is not None and v.kind == "unknown-value":
        # The excerpt is the load alone when nobody saved the value, else the save, then it.
        fact = "read-torn-value" if len(v.excerpt) == 1 else None
        fact = "read-other-keys-value" if op.key != v.key else fact
    return None if fact is None else (fact, summary)


def history_findings(
    violations: Sequence[Violation], ops: Sequence[Op], *, refused_second: str = ""
) -> list[dict[str, str]]:
    """The findings ``violations`` of the history ``ops`` demonstrate, the most telling first.

    Two writers at once comes first whenever it is shown, and then stands for the reads that
    raised or saw torn values too (they read what the two wrote). The others follow by how many
    violations show them.

    :param refused_second: why a worker could not open the store while another had it open
        ("" when none was refused).
    """
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    stale = any(v.kind == "not-linearizable" for v in violations) and _never_refreshed(ops)
    writes = 0
    for v in violations:
        looking = v.kind == "exception" and bool(v.excerpt) and v.excerpt[0].kind != "load"
        found = _fact_of(v, ops, stale, look=writes < _RIVALS_LOOKED_AT)
        writes += looking
        if found is not None:
            counts[found[0]] = counts.get(found[0], 0) + 1
            shown.setdefault(*found)
    if refused_second:
        counts["second-process-refused"] = 1
        shown["second-process-refused"] = refused_second
    if "two-writers-at-once" in counts:
        # Two writers on one file explain what readers saw of it: no second cause.
        for fact in ("read-raised", "read-torn-value"):
            counts.pop(fact, None)
    facts = sorted(counts, key=lambda f: (f != "two-writers-at-once", -counts[f]))
    return [finding(fact, shown[fact]) for fact in facts]
