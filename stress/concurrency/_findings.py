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
    """Whether no worker ever loaded another worker's save of a key it already held.

    "Held": the worker saved the key, or loaded a value of it, and has not deleted it since. A
    store that answers from a per-process cache never shows such a load; any shared store does,
    as soon as two workers write one key.
    """
    held: set[tuple[int, Key]] = set()
    saver = {op.value: op.worker for op in ops if op.kind == "save"}
    refreshed = False
    for op in sorted(ops, key=lambda o: o.invoke):
        if op.outcome != "ok":
            continue
        mine = (op.worker, op.key)
        if op.kind == "delete":
            held.discard(mine)
        elif op.kind == "save":
            held.add(mine)
        elif op.result is not None:
            if mine in held and saver.get(op.result, op.worker) != op.worker:
                refreshed = True
            held.add(mine)
    return not refreshed


def history_findings(
    violations: Sequence[Violation], ops: Sequence[Op], *, refused_second: str = ""
) -> list[dict[str, str]]:
    """The findings ``violations`` of the history ``ops`` demonstrate, the most telling first.

    Two writers at once comes first whenever it is shown: it explains torn reads and lost
    updates too. The others follow by how many violations show them.

    :param refused_second: why a worker could not open the store while another had it open
        ("" when none was refused).
    """
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}

    def saw(fact: str, text: str) -> None:
        counts[fact] = counts.get(fact, 0) + 1
        shown.setdefault(fact, text)

    looked = 0
    stale = None
    for v in violations:
        op = v.excerpt[0] if v.excerpt else None
        if v.kind == "exception" and op is not None:
            if op.kind == "load":
                saw("read-raised", v.summary)
            elif looked < _RIVALS_LOOKED_AT:
                looked += 1
                rival = _rival_writer(op, ops)
                if rival is not None:
                    saw(
                        "two-writers-at-once",
                        f"{v.summary}, while worker {rival.worker} ran {rival.kind} of that key",
                    )
        elif v.kind == "unknown-value" and op is not None:
            torn = len(v.excerpt) == 1  # no save of the value anywhere
            other_key = not torn and v.excerpt[0].key != v.key
            if torn:
                saw("read-torn-value", v.summary)
            elif other_key:
                saw("read-other-keys-value", v.summary)
        elif v.kind == "not-linearizable":
            if stale is None:
                stale = _never_refreshed(ops)
            saw("stale-own-value" if stale else "lost-update", v.summary)
    if refused_second:
        saw("second-process-refused", refused_second)
    facts = sorted(counts, key=lambda f: (f != "two-writers-at-once", -counts[f]))
    return [finding(fact, shown[fact]) for fact in facts]
