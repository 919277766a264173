"""What F2 concludes from one faulted save: swallowed sync errors, hangs, and the tally.

Kept apart from the harness (``_faults.py``, which drives the workers) so the rules read on their
own and run on recorded traces without processes.

The sync rule: a save that *returned* after a sync (``fsync``, ``fdatasync``, ``F_FULLFSYNC``)
of something it wrote or renamed into place, or of the directory it renamed into, failed has not
made the offset durable, whatever a fresh handle reads (the new bytes are still in the page cache).
A second sync that succeeds proves nothing: after a failed fsync Linux marks the dirty pages clean
or drops them ("fsyncgate", PostgreSQL 2018), so the retry reports success for data that may
never reach the disk. What does help is redoing the step from the store's own copy: writing the
same bytes again (dirty pages again) and syncing them, or changing the directory's entries again
(a rename into it, an unlink or a creation in it) and syncing it, since a directory sync commits
every earlier change of its entries with the new one; a save that did so is not faulted for the
first failure. SQLite is the common case of the latter: it ignores a failed directory sync after
creating its rollback journal (``unixSync`` in ``os_unix.c``: "many systems do not support
fsync() on directories"), then unlinks the journal and, with ``synchronous=EXTRA``, syncs the
directory again; in the other journal modes it never syncs the directory again, so a directory
the save only created a file in (a journal, a WAL) is not judged: only one it renamed into is.
Syncs of files the save only opened (a lock file) do not count, nor a failed sync of a file whose
writes an earlier successful sync had covered (nothing dirty was left to lose).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any, Final

from ..seam._trace import TraceOp
from ..seam._tracer import FaultPlan

__all__ = [
    "ACKNOWLEDGING",
    "OTHER_ACTIONS",
    "SYNC_KINDS",
    "Later",
    "Tally",
    "allowed_after",
    "hang_report",
    "injected",
    "judge_later",
    "swallowed_syncs",
    "sync_rule_applies",
]

#: Operation kinds that make data durable (F_FULLFSYNC is recorded as ``fsync``).
SYNC_KINDS: Final = frozenset({"fsync", "fdatasync"})

#: The actions F2 faults besides save: a delete of a stored key, a load of it, an open over it.
OTHER_ACTIONS: Final = ("delete", "load", "open")

#: The calls that acknowledge offsets: only their return promises durability. An open, a load
#: or a listing saves nothing, so a sync they swallow loses no offset.
ACKNOWLEDGING: Final = frozenset({"save", "save_many", "delete"})


def sync_rule_applies(action: str, durable: bool) -> bool:
    """Whether a swallowed failed sync in ``action`` is a violation.

    Only where the store claims durability (``durable``, its declaration), and only for a call
    that acknowledges offsets.
    """
    return durable and action in ACKNOWLEDGING


#: What a save that never returned most likely means, by the phase it hung in.
_LIKELY: Final = {
    "the faulted save": "an unbounded retry? a wait on something the error path left held?",
    "the faulted delete": "an unbounded retry? a wait on something the error path left held?",
    "the faulted load": "an unbounded retry? a wait on something the error path left held?",
    "the faulted open": "an unbounded retry? a wait on something the error path left held?",
    "the later save": "a lock leaked on the error path? an unbounded retry?",
    "a fresh handle's read": "the faulted handle still holds a lock: leaked on the error path?",
}


def injected(trace: list[TraceOp], plan: FaultPlan) -> list[TraceOp]:
    """The operations of ``trace`` the plan made fail (recorded with its errno)."""
    name = errno.errorcode.get(plan.error, str(plan.error))
    return [op for op in trace if op.error == name and op.kind != "mark"]


def _changed(trace: list[TraceOp]) -> set[str]:
    """Paths whose content or name the save changed: written, truncated, renamed from or to."""
    paths: set[str] = set()
    for op in trace:
        if op.error is not None:
            continue
        if op.kind in ("write", "truncate", "unlink"):
            paths.add(op.path)
        elif op.kind in ("rename", "replace"):
            paths.add(op.path)
            paths.add(op.target or op.path)
    return paths


def _dirty(trace: list[TraceOp], failed: TraceOp, unlinks: bool = False) -> bool:
    """Whether ``failed``'s file (or directory) had changes no earlier successful sync covered.

    Only dirty pages can be lost by a failed sync. SQLite closing a connection checkpoints: it
    syncs a WAL whose frames the commit had already synced, and ignores that sync's failure;
    the offset was durable before. A rename carries a file's unsynced writes to its new name.
    """
    dirty: set[str] = set()
    for op in trace:
        if op.index >= failed.index:
            break
        if op.error is not None:
            continue
        if op.kind in ("write", "truncate"):
            dirty.add(op.path)
        elif op.kind in ("rename", "replace"):
            if op.path in dirty:
                dirty.discard(op.path)
                dirty.add(op.target or op.path)
            dirty.add(os.path.dirname(op.target or op.path) + os.sep)  # the directory's entries
        elif op.kind == "unlink" and unlinks:
            dirty.add(os.path.dirname(op.path) + os.sep)
        elif op.kind in SYNC_KINDS:
            dirty.discard(op.path + os.sep if op.is_dir else op.path)
    return (failed.path + os.sep if failed.is_dir else failed.path) in dirty


def _logged_elsewhere(trace: list[TraceOp], failed: TraceOp) -> bool:
    """Whether another file the save wrote was synced after its last write, before ``failed``.

    Applied to syscall-level traces only, where a library keeps its own log: SQLite closing its
    last connection checkpoints the WAL (already synced by the commit) into the database and
    ignores a failed sync of the database, keeping the WAL; the offset is durable there. A
    Python store's own protocol is judged without this allowance.
    """
    last_write: dict[str, int] = {}
    synced_after: set[str] = set()
    for op in trace:
        if op.index >= failed.index:
            break
        if op.error is not None or op.is_dir or op.path == failed.path:
            continue
        if op.kind in ("write", "truncate"):
            last_write[op.path] = op.index
            synced_after.discard(op.path)
        elif op.kind in SYNC_KINDS and op.path in last_write:
            synced_after.add(op.path)
    return bool(synced_after)


def _names_changed_in(op: TraceOp, folder: str) -> bool:
    """Whether ``op`` changed the entries of directory ``folder`` (what a sync of it commits)."""
    if op.kind in ("rename", "replace"):
        return os.path.dirname(op.target or op.path) == folder
    if op.kind in ("unlink", "mkdir", "rmdir"):
        return os.path.dirname(op.path) == folder
    created = op.kind == "open" and bool(op.flags & os.O_CREAT)
    return created and os.path.dirname(op.path) == folder


def _redone(trace: list[TraceOp], failed: TraceOp) -> bool:
    """Whether the save redid what ``failed`` should have made durable, and synced it after."""
    after = [op for op in trace if op.index > failed.index and op.error is None]
    if failed.is_dir:
        renamed = [i for i, op in enumerate(after) if _names_changed_in(op, failed.path)]
        return bool(renamed) and any(
            op.kind in SYNC_KINDS and op.is_dir and op.path == failed.path
            for op in after[renamed[0] + 1 :]
        )
    before = [
        op.content
        for op in trace
        if op.index < failed.index and op.path == failed.path and op.content is not None
    ]
    if not before:
        return False
    return any(
        sync.kind in SYNC_KINDS and sync.path == write.path and sync.content == before[-1]
        for i, write in enumerate(after)
        if write.kind == "write"  # nothing written again: a retried sync alone proves nothing
        for sync in after[i + 1 :]
    )


def swallowed_syncs(
    trace: list[TraceOp], failed: list[TraceOp], *, what: str = "save"
) -> list[str]:
    """For a save that returned: one line per failed sync of data it wrote (see the module doc).

    :param failed: the operations the fault plan made fail (:func:`injected`).
    :param what: the action that returned; for a ``delete``, the directory it unlinked the
        key's file from counts like one a save renamed into (the removal is its whole change).
    """
    if what not in ACKNOWLEDGING:
        return []  # an open or a load acknowledges no offset: nothing to lose (sync_rule_applies)
    unlinks = what == "delete"
    changed = _changed(trace)
    # A directory sync makes names durable; the offset depends on one only where the save put
    # a file in place by renaming into the directory. The directory sync a library makes after
    # creating its own journal (SQLite ignores its failure by design) protects no acknowledged
    # data once the save returned: that is atomicity under a crash, D1/D3's business.
    folders = {
        os.path.dirname(op.target or op.path)
        for op in trace
        if (op.kind in ("rename", "replace") or (unlinks and op.kind == "unlink"))
        and op.error is None
    }
    lines = []
    for op in failed:
        if op.kind not in SYNC_KINDS:
            continue
        if not (op.path in folders if op.is_dir else op.path in changed):
            continue  # a sync of something the save did not write (a lock file): not our rule
        if not _dirty(trace, op, unlinks):
            continue  # everything it wrote there was synced before: the failure lost nothing
        if op.call and not op.is_dir and _logged_elsewhere(trace, op):
            continue  # a C library's log already held the change durably (see the function)
        if _redone(trace, op):
            continue  # the bytes were written again and that sync succeeded: durable
        path = f"directory {op.path}" if op.is_dir else op.path
        lost = "deletion" if unlinks else "offset"
        line = (
            f"{op.kind} of {path} failed with {op.error} and {what}() returned: the {lost} is not "
            f"durable (the error was swallowed); the failed sync was op #{op.index}"
        )
        retried = [
            later
            for later in trace
            if later.index > op.index
            and later.kind in SYNC_KINDS
            and later.error is None
            and later.path == op.path
        ]
        if retried:
            line += (
                f"; the later successful {retried[0].kind} (op #{retried[0].index}) proves "
                "nothing: after a failed fsync Linux marks the dirty pages clean or drops them "
                "(fsyncgate)"
            )
        lines.append(line)
    return lines


def allowed_after(
    action: str,
    raised: bool,
    failed: list[TraceOp],
    *,
    at: int,
    commit: int,
    old: int,
    new: int,
    demonstrated: bool = False,
) -> tuple[int | None, ...]:
    """The values a fresh handle may read for the key after one faulted action.

    :param at: the plan's first operation (used when the trace shows none failed).
    :param commit: the action's commit point (``_commit.py``): faults after it may leave the
        new state.
    :param demonstrated: the commit point was shown by kills, not guessed from the trace.

    A save or delete that raised leaves the old value, or the new state when the fault came
    after its commit point (the change was made: raising is honest). With a guessed commit
    point a failed sync may leave the new state too (the bytes were written, durable or not:
    SQLite in ``journal_mode=PERSIST`` commits by a write the guess cannot see); a demonstrated
    one needs no such allowance. One that returned must have made its change. A load or an
    open changes nothing: old, always.
    """
    if action in ("load", "open"):
        return (old,)
    changed = None if action == "delete" else new
    if not raised:
        return (changed,)
    if (failed[0].index if failed else at) > commit:
        return (old, changed)
    if not demonstrated and failed and failed[0].kind in SYNC_KINDS:
        return (old, changed)
    return (old,)


@dataclass(frozen=True)
class Later:
    """What a later save on the faulted handle showed once the fault cleared.

    :ivar fail_stop: the handle refused it loudly, and a reopened handle works (accepted).
    :ivar problems: what is wrong, one line each; none when the handle works or is fail-stop.
    """

    fail_stop: bool
    problems: tuple[str, ...]


def _shown(value: object) -> str:
    return "absent" if value is None else str(value)


def judge_later(
    result: dict[str, Any], later: int, committed: tuple[int | None, ...], on: str
) -> Later:
    """Judge the worker's report of the later save (``_jobs.py``, the fault job's ``later``).

    The handle must work again, or be **fail-stop**: after a failed write some libraries refuse
    every later call on the handle until it is reopened (LMDB's ``MDB_PANIC``; PostgreSQL panics
    after a failed fsync). That is accepted (docs/contract.md, F2): it is loud, nothing is lost,
    and a fresh open gives the committed values and works. A handle that instead misbehaves
    quietly still fails: a load that answers neither an error nor the committed value, a save
    that returns without its value.

    :param committed: the values the key may hold after the fault (``allowed_after``).
    :param on: which handle made the later save ("the same handle", "a new handle").
    """
    raised = result.get("raised")
    if raised is None:
        if result.get("load") == later:
            return Later(False, ())
        text = f"once the fault cleared, a later save of {later} on {on} returned, then loaded"
        return Later(False, (f"{text} {_shown(result.get('load'))}",))
    stop = result.get("fail-stop")
    text = f"once the fault cleared, a later save of {later} on {on} raised {raised}"
    if not isinstance(stop, dict):
        return Later(False, (text,))
    problems = []
    load = stop.get("load")
    if not (isinstance(load, str) and load.startswith("raised ")) and load not in committed:
        shown = " or ".join(_shown(v) for v in committed)
        problems.append(
            f"{text}, yet the same handle then loaded {_shown(load)}, not the committed {shown} "
            "(a fail-stop handle refuses every call; this one answered wrong)"
        )
    if "reopen" in stop:
        problems.append(f"{text}, and reopening the store raised {stop['reopen']}")
    elif stop.get("reopened") is not None:
        problems.append(f"{text}; on a reopened handle the save raised {stop['reopened']}")
    elif stop.get("reopened load") != later:
        problems.append(
            f"{text}; on a reopened handle it returned, then loaded "
            f"{_shown(stop.get('reopened load'))}"
        )
    if problems:
        return Later(False, tuple(problems))
    return Later(True, ())


def hang_report(phase: str, bound: float, stuck: dict[str, Any]) -> list[str]:
    """Lines saying what hung, where, and what that likely means.

    :param phase: a key of :data:`_LIKELY` ("the later save"...).
    :param stuck: the worker's ``("stuck", report)`` payload, or ``{"harness": text}`` when the
        worker could not even report (it died, or its watchdog never ran).
    """
    harness = str(stuck.get("harness", ""))
    if " died " in harness:  # not a hang: the worker process ended (os._exit, a crash in C)
        return [f"{phase} ended the worker process: {harness}"]
    lines = [f"{phase} did not return within {bound:g} s after the fault: {_LIKELY[phase]}"]
    if stuck.get("failed"):
        lines.append("injected into: " + "; ".join(str(op) for op in stuck["failed"]))
    if harness:
        lines.append(f"harness: {harness}")
    if stuck.get("blocked at"):
        lines.append("blocked at (innermost last):")
        lines += [f"  {frame}" for frame in stuck["blocked at"]]
    if stuck.get("trace"):
        lines.append("last operations: " + "; ".join(str(op) for op in stuck["trace"][-4:]))
    lines.append(
        f"time-dependent: judged by a {bound:g} s deadline (a slower machine may need more)"
    )
    return lines


@dataclass
class Tally:
    """What the faulted saves exercised, for the result's evidence."""

    saves: int = 0
    #: Faulted actions other than save, by action ("delete", "load", "open").
    others: dict[str, int] = field(default_factory=dict)
    operations: set[int] = field(default_factory=set)
    sync_faults: int = 0
    hangs: int = 0
    slowest: float = 0.0
    #: Faulted handles that refused the later save loudly and whose reopen worked (accepted).
    fail_stops: int = 0

    def count(self, seconds: float, failed: list[TraceOp], action: str = "save") -> None:
        """One faulted action that ended in ``seconds``, with the operations the plan failed."""
        if action == "save":
            self.saves += 1
        else:
            self.others[action] = self.others.get(action, 0) + 1
        self.slowest = max(self.slowest, seconds)
        self.operations.update(op.index for op in failed)
        if any(op.kind in SYNC_KINDS for op in failed):
            self.sync_faults += 1

    def evidence(self, not_run: int) -> dict[str, int | float | str]:
        return {
            "faulted saves": self.saves,
            **{f"faulted {action}s": self.others.get(action, 0) for action in OTHER_ACTIONS},
            "operations faulted": len(self.operations),
            "sync faults": self.sync_faults,
            "hangs": self.hangs,
            "fail-stop handles": self.fail_stops,
            "plans not run": not_run,
            "slowest faulted save (s)": round(self.slowest, 3),
        }
