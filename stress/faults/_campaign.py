"""I/O faults (F2): the k-th operation of a save fails; the old value survives, the handle works.

A worker counts the operations of one save over an old value. Then, for every operation ``k`` and
each of ENOSPC, EIO and EACCES, once and from then on, a worker (A) sets up the old value, saves a
new one under a :class:`~lance_offsets.stress.seam._tracer.FaultPlan`, and reports what happened; a
second worker (B, with its own fresh handle) reads the key. The rules:

- a save that raised left the old value; the new one only when the fault hit after the commit,
  the operation after which a fresh handle sees the new value, demonstrated by kills
  (``_commit.py``; guessed from the trace only when the kills cannot show it);
- a save that returned stored the new value (a swallowed error is a lie to the caller), and, for
  a store that claims durability, no sync of what it wrote failed on the way (``_judge.py``;
  a flagged trace goes to the power-loss explorer, ``_powercut.py``, which shows the loss);
- once the fault clears, a later save on A's same handle succeeds and B reads it back; or the
  handle is fail-stop: it refuses loudly, and a reopened handle saves (docs/contract.md).

Declarations are respected: for a store that does not claim ``shared`` (an exclusive lock from
open to close), B opens only after A, the faulted handle, was killed, and the later save runs on
a second faulted handle (the same plan in a new directory). A store that claims ``shared`` but
refuses B while A is open even with no fault is read that way too, and the evidence says so.

Every role of a save (each open, write, sync, rename, directory sync...) is faulted in every
run, whatever the numbering (``_plans.py``).

A save, or a read, that does not return within the bound is reported with the plan, the
operations and where the worker was blocked; the stuck workers are replaced and the remaining
plans go on, up to :data:`MAX_HANGS` hangs.

Windows semantics on any OS: ``os.replace``/``os.rename`` failing with a sharing violation
(``PermissionError`` with ``winerror`` 32) once, three times, or for good must end, within
:data:`FAULT_BOUND` seconds, in a stored new value or a raised error with the old value intact.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lance_offsets.conformance._capabilities import capabilities_of
from lance_offsets.conformance._diagnosis import FINDINGS, finding
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._spec import load_factory

from .._options import StressOptions
from ..crash._judge import listing
from ..powerloss._oracle import Step
from ..seam._record import Backend, choose_backend, counted_save, shim_saw_nothing, until_mark
from ..seam._trace import Trace, TraceOp
from ..seam._tracer import FaultPlan
from ..workers._fleet import Fleet, Worker, WorkerGone
from ..workers._jobs import NO_SHIM
from ._commit import Commit, Seen, demonstrated_commit, guessed_commit
from ._judge import (
    OTHER_ACTIONS,
    SYNC_KINDS,
    Tally,
    allowed_after,
    hang_report,
    injected,
    judge_later,
    swallowed_syncs,
    sync_rule_applies,
)
from ._plans import Plan, action_plans, describe_roles, role, role_plans, roles, save_plans
from ._powercut import PowerCuts

__all__ = ["FAULT_BOUND", "check_f2"]

#: Seconds a faulted save may take (a retry loop must be bounded).
FAULT_BOUND: Final = 10.0
#: Seconds past the bound the parent waits for a worker whose watchdog did not report.
GRACE: Final = 5.0
#: Hangs after which the remaining plans are skipped (each costs the bound in seconds).
MAX_HANGS: Final = 2
#: Violations a short run shows before it stops (a long run keeps counting).
SHOWN: Final = 3
#: The actions whose commit point matters (a load or an open changes nothing).
CHANGING: Final = ("save", "delete")


def _no_ops(ops: list[TraceOp]) -> str | None:
    return None if ops else shim_saw_nothing()


@dataclass(frozen=True)
class _Found:
    """One violation: its story, the line a report leads with, what it demonstrates."""

    text: str
    headline: str
    fact: str


#: A problem one faulted cycle found: what it demonstrates (``_diagnosis.py``), and its words.
_Problem = tuple[str, str]


@dataclass
class _Cycle:
    """One faulted action: its plan, values and what happened, as the judging steps need it."""

    action: str
    plan: FaultPlan
    #: "faulted save of 5", "faulted delete"...
    change: str
    path: str
    old: int
    new: int
    later: int
    other: int
    story: list[str]
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)
    failed: list[TraceOp] = dataclasses.field(default_factory=list)
    problems: list[_Problem] = dataclasses.field(default_factory=list)

    @property
    def values(self) -> tuple[int, int, int, int]:
        return self.old, self.new, self.later, self.other


class _Faults:
    def __init__(self, spec: str, options: StressOptions, bound: float) -> None:
        self.spec = spec
        self.bound = bound
        self.options = options
        self.rng = random.Random(options.seed)
        capabilities = capabilities_of(load_factory(spec))
        #: Whether the store claims durability: the sync rule applies only then.
        self.durable = capabilities.durable
        #: No second handle while the faulted one is open: the store does not claim ``shared``
        #: (an exclusive lock from open to close), or refused B with no fault at all.
        self.exclusive = not capabilities.shared
        self.reads = (
            "after the faulted handle was killed (the store does not claim shared)"
            if self.exclusive
            else "beside the faulted handle, in another process"
        )
        #: Whether B was refused beside an unfaulted handle (None: not asked yet).
        self.refuses: bool | None = None
        self.fleet = Fleet(spec)
        self.root = tempfile.mkdtemp(prefix="lance-faults-", dir=options.workdir)
        self.count = 0
        self.a = self.fleet.take()
        self.b = self.fleet.take()
        self.key = (self.rng.randrange(2**32), self.rng.randrange(2**64))
        self.other = (self.key[0], self.key[1] ^ 1)
        self.violations: list[_Found] = []
        self.tally = Tally()
        #: The tracing backend ("python" or "syscall"); ``save_ops`` chooses it under "auto".
        self.backend = "python" if options.backend == "auto" else options.backend
        #: Why neither backend saw the save's I/O, when that happened.
        self.unseen = ""
        #: The save's operations came from the crash campaign's counting run (no count here).
        self.shared = False
        #: Which view judged and why (``seam/_record.Chosen.judged``).
        self.judged = ""
        #: Per action: the roles its counted trace makes, and those a plan made fail.
        self.made: dict[str, set[str]] = {}
        self.hit: dict[str, set[str]] = {}
        #: The counted operations of each action (save first), filled by :func:`check_f2`.
        self.ops: dict[str, list[TraceOp]] = {}
        self.powercuts = PowerCuts(spec, options)
        #: The first crash state the power-loss explorer showed losing an offset (reports draw it).
        self.crash_state: Mapping[str, Any] | None = None

    def directory(self) -> str:
        self.count += 1
        path = os.path.join(self.root, f"fault-{self.count}")
        os.mkdir(path)
        return path

    def values(self) -> tuple[int, int, int, int]:
        drawn: set[int] = set()
        while len(drawn) < 4:
            drawn.add(self.rng.choice((self.rng.randrange(10), self.rng.randrange(10**12))))
        old, new, later, other = drawn
        return old, new, later, other

    # -- counting ------------------------------------------------------------------------------

    def save_ops(self) -> list[TraceOp]:
        """The operations of one save over an old value (a counting run, no fault).

        The crash campaign's counting run of the same save, when it ran first in this process
        (``check`` runs D1 before F2), is the one trace both plan from (``seam/_record.py``);
        else a counting run here, through the backend the seam chooses: a save the Python
        interposer saw nothing of is counted again through the syscall shim (I/O made in C).
        """
        known = counted_save((self.spec, self.options.backend, self.options.seed, self.key))
        if known is not None:
            self.backend, self.unseen, self.shared = known.backend, known.unseen, True
            self.judged = known.judged
            return list(known.ops)

        def record(backend: Backend) -> list[TraceOp] | str:
            self.backend = backend
            return self._count()

        chosen = choose_backend(record, _no_ops, self.options.backend)
        self.backend, self.unseen, self.judged = chosen.backend, chosen.unseen, chosen.judged
        return list(chosen.counted or [])

    def _crash_job(self, action: str, stop: tuple[int, str] | None) -> dict[str, Any]:
        """A crash job of ``action`` (save or delete) over a stored key, in a new directory."""
        old, new, _, other = self.values()
        return {
            "job": "crash",
            "path": self.directory(),
            "setup": {self.other: other, self.key: old},
            "key": self.key,
            "new": None if action == "delete" else new,
            "stop": stop,
            "linger": 0.0,
            "backend": self.backend,
        }

    def _count(self) -> list[TraceOp] | str:
        job = self._crash_job("save", None)
        self.a.send(job)
        while True:
            tag, payload = self.a.recv(self.bound + GRACE, f"the counting save of {job['new']}")
            if tag == "done":
                break
            if tag == NO_SHIM:
                return str(payload)
            if tag == "raised":
                raise WorkerGone(f"a save with no fault raised: {payload[0]}")
        # Up to the acknowledgement (what follows is close()), in both views of the run: the seam
        # judges on the syscall view when the interposer missed calls (seam/_record.py).
        return until_mark(payload if isinstance(payload, Trace) else Trace(payload))

    def count_action(self, action: str) -> list[TraceOp]:
        """The operations of one ``action`` (delete, load, open) over a stored key, unfaulted."""
        self.a.send(self._job(action, self.directory(), None, self.values()))
        tag, outcome = self.a.recv(self.bound + GRACE, f"the counting {action}")
        if tag != "faulted":
            raise WorkerGone(f"the counting {action} with no fault: {tag} {outcome}")
        self.a.send("stop")
        self.a.recv(self.bound + GRACE, f"the end of the counting {action}")
        if outcome["raised"] is not None:
            raise WorkerGone(f"a {action} with no fault raised: {outcome['raised']}")
        ops: list[TraceOp] = outcome["trace"]
        return ops

    # -- the commit point ----------------------------------------------------------------------

    def commit(self, action: str, ops: list[TraceOp]) -> Commit:
        """Where ``action`` commits: shown by kills (``_commit.py``), else guessed, saying why."""
        by_index = {op.index: op for op in ops}

        def seen_after(index: int) -> Seen:
            return self._seen_after(action, by_index[index])

        shown = demonstrated_commit(ops, seen_after)
        if isinstance(shown, Commit):
            return shown
        guess = guessed_commit(ops, action)
        return dataclasses.replace(guess, how=f"{guess.how} ({shown})")

    def _seen_after(self, action: str, op: TraceOp) -> Seen:
        """Kill a run of ``action`` right after ``op``; what a fresh handle then reads."""
        job = self._crash_job(action, (op.index, "after"))
        worker = self.fleet.take()
        stopped: tuple[int, str] | None = None
        try:
            worker.send(job)
            while stopped is None:
                tag, payload = worker.recv(self.bound + GRACE, f"the {action} up to op #{op.index}")
                if tag == "stopped":
                    stopped = tuple(payload)  # (index, phase): the seam stops there, in C too
                elif tag != "acked":  # done, raised, no shim: the point was not reached
                    break
        except WorkerGone:
            stopped = None
        finally:
            worker.kill()
        if stopped != (op.index, "after"):
            return "unreached"  # no kill there: no verdict
        try:
            found = self.read(job["path"])
        except WorkerGone:  # blocked by what the kill left (D5's business): no verdict here
            self.b.kill()
            self.b = self.fleet.take()
            return "unreached"
        shutil.rmtree(job["path"], ignore_errors=True)
        value = found.get(f"load{self.key}", "unread")
        if "open" in found:
            return "other"
        if value == job["new"]:
            return "new"
        return "old" if value == job["setup"][self.key] else "other"

    # -- one faulted cycle ---------------------------------------------------------------------

    def read(self, path: str) -> dict[str, Any]:
        """What a fresh handle in B reads; ``{"open": error}`` when it could not open."""
        self.b.send({"job": "verify", "path": path, "keys": [self.key, self.other], "later": None})
        _, found = self.b.recv(self.bound + GRACE, "a fresh handle's read")
        read: dict[str, Any] = found
        if "open" in read:  # the fresh handle could not even open: there is nothing to close
            return read
        self.b.recv(self.bound + GRACE, "a fresh handle's close")
        return read

    def wait(self, worker: Worker, doing: str) -> tuple[str, Any]:
        """The worker's reply, its watchdog's ``("stuck", report)``, or ``("gone", ...)``."""
        try:
            return worker.recv(self.bound + GRACE, doing)
        except WorkerGone as exc:
            return "gone", {"harness": str(exc)}

    def replace(self, *, both: bool = False) -> None:
        """New workers for stuck ones (a hung save may hold a lock the next cycle would need)."""
        self.a.kill()
        self.a = self.fleet.take()
        if both:
            self.b.kill()
            self.b = self.fleet.take()

    def hung(self, story: list[str], phase: str, stuck: dict[str, Any]) -> None:
        self.tally.hangs += 1
        report = hang_report(phase, self.bound, stuck)
        headline = f"key {self.key}, {story[0].split('; ', 1)[-1]}: {report[0]}"
        fact = "hung-after-fault" if " died " not in str(stuck.get("harness", "")) else ""
        self.violations.append(_Found("\n".join([*story, *report]), headline, fact))
        self.replace(both=phase == "a fresh handle's read")

    def _job(
        self,
        action: str,
        path: str,
        plan: FaultPlan | None,
        values: tuple[int, int, int, int],
        *,
        snapshot: bool = False,
    ) -> dict[str, Any]:
        """A fault job; ``values`` are the key's old, new and later values and the other's."""
        old, new, later, other = values
        return {
            "job": "fault",
            "action": action,
            "path": path,
            "setup": {self.other: other, self.key: old},
            "key": self.key,
            "new": new,
            "later": later,
            "plan": plan,
            "bound": self.bound,
            "backend": self.backend,
            "snapshot": snapshot,
        }

    def _syncs_ahead(self, action: str, plan: FaultPlan, ops: list[TraceOp]) -> bool:
        """Whether the plan can make a sync fail that the action then goes on from.

        Such a faulted trace may go to the power-loss explorer, which needs the tree it
        started from (the job's ``snapshot``).
        """
        if not sync_rule_applies(action, self.durable):
            return False
        return any(op.kind in SYNC_KINDS and op.index >= plan.at for op in ops)

    def returned(self, cycle: _Cycle) -> list[_Problem]:
        """What is wrong with an action that returned despite the fault.

        A load must have returned the committed value, an open a handle that reads the committed
        values; a save or delete that swallowed a failed sync of what it changed is a lie, for
        a store that claims durability.
        """
        action, outcome = cycle.action, cycle.outcome
        problems: list[_Problem] = []
        if sync_rule_applies(action, self.durable):
            lines = swallowed_syncs(outcome["trace"], cycle.failed, what=action)
            problems += [("fsync-error-ignored", line) for line in lines]
        if action == "load" and outcome["returned"] != cycle.old:
            text = f"the load returned {outcome['returned']}, committed was {cycle.old}"
            problems.append(("failed-read-answered", text))
        if action == "open":
            read = outcome.get("read", {})
            for key, value in zip((self.key, self.other), (cycle.old, cycle.other), strict=True):
                if read.get(f"load{key}") != value:
                    text = (
                        f"the opened handle read {read.get(f'load{key}')} for {key}, the "
                        f"committed value is {value}"
                    )
                    problems.append(("failed-read-answered", text))
        return problems

    def cycle(self, plan: FaultPlan, what: str, commit: Commit, action: str = "save") -> None:
        ops = self.ops[action]
        old, new, later, other = self.values()
        change = f"faulted save of {new}" if action == "save" else f"faulted {action}"
        story = [
            f"seed {self.options.seed}; fault {what}",
            f"key {self.key}: old {old}, {change}, later save of {later}",
        ]
        cycle = _Cycle(action, plan, change, self.directory(), old, new, later, other, story)
        snapshot = self._syncs_ahead(action, plan, ops)
        if not self._faulted(cycle, snapshot=snapshot):
            return
        killed = False
        if self.exclusive:  # the declaration: no second handle while the faulted one is open
            self.replace()
            killed = True
        try:
            found = self.read(cycle.path)
            if "open" in found and not killed and self._refuses_beside_an_open_handle():
                self.replace()  # a store that refuses B anyway: read with A gone, as declared
                killed = True
                found = self.read(cycle.path)
        except WorkerGone as exc:
            self.hung(story, "a fresh handle's read", {"harness": str(exc)})
            return
        files = listing(cycle.path)
        allowed = self._judge_read(cycle, found, commit)
        self._explore_power_cuts(cycle)
        on = "a new handle" if action == "open" else "the same handle"
        handle = self._faulted_again(cycle) if killed else cycle.path
        if handle is None or not self.later_save(cycle, on, allowed, handle):
            return
        self.record(cycle, files)
        if not cycle.problems:
            shutil.rmtree(cycle.path, ignore_errors=True)

    def _faulted(self, cycle: _Cycle, *, snapshot: bool, again: bool = False) -> bool:
        """Run the faulted action in A; False if it hung (reported).

        :param again: the same fault a second time (:meth:`_faulted_again`): not counted twice.
        """
        job = self._job(cycle.action, cycle.path, cycle.plan, cycle.values, snapshot=snapshot)
        self.a.send(job)
        tag, outcome = self.wait(self.a, f"the {cycle.change} ({cycle.plan.describe()})")
        if tag != "faulted":
            self.hung(cycle.story, f"the faulted {cycle.action}", outcome)
            return False
        cycle.outcome = outcome
        cycle.failed = injected(outcome["trace"], cycle.plan)
        if not again:
            self.tally.count(outcome["seconds"], cycle.failed, cycle.action)
            self.hit.setdefault(cycle.action, set()).update(self._roles_hit(cycle))
        raised = outcome["raised"]
        if cycle.failed:
            cycle.story.append("injected into: " + "; ".join(str(op) for op in cycle.failed[:3]))
        cycle.story.append(f"the {cycle.action} {'raised ' + raised if raised else 'returned'}")
        cycle.problems = [] if raised else self.returned(cycle)
        return True

    def _roles_hit(self, cycle: _Cycle) -> set[str]:
        """The roles the fault hit, named as the counted trace names them.

        A failed ``open`` has no descriptor to tell a directory by (the shim records it as a
        plain open): the counted operation at the same index and of the same kind says.
        """
        counted = {op.index: op for op in self.ops.get(cycle.action, [])}
        hit = set()
        for op in cycle.failed:
            same = counted.get(op.index)
            hit.add(role(same if same is not None and same.kind == op.kind else op))
        return hit

    def _faulted_again(self, cycle: _Cycle) -> str | None:
        """The same fault in a second directory, for the later save (the first handle is gone).

        A store that allows one handle at a time was read with its faulted handle killed; the
        handle that must work again once the fault cleared is this one. Returns its directory,
        or None if the fault hung this time (reported).
        """
        again = dataclasses.replace(cycle, path=self.directory(), story=list(cycle.story))
        if not self._faulted(again, snapshot=False, again=True):
            return None
        cycle.story.append(f"the same fault again in {os.path.basename(again.path)}, kept open")
        return again.path

    def _refuses_beside_an_open_handle(self) -> bool:
        """Whether B cannot open the store beside an open handle with no fault at all.

        Blame by demonstration: then B's refusal after a fault is the store's way (it is not
        shared in practice, whatever it declares; P2 and M1 judge that), not the fault's doing,
        and F2 reads with the faulted handle killed from then on.
        """
        if self.refuses is None:
            path = self.directory()
            worker = self.fleet.take()
            try:
                worker.send(self._job("save", path, None, self.values()))
                tag, _ = worker.recv(self.bound + GRACE, "a save with no fault, its handle open")
                found = self.read(path) if tag == "faulted" else {}
            finally:
                worker.kill()
            self.refuses = "open" in found
            if self.refuses:
                self.exclusive = True
                self.reads = (
                    "after the faulted handle was killed (another process could not open the "
                    f"store beside an open handle even with no fault: {found['open']})"
                )
        return self.refuses

    def _judge_read(self, cycle: _Cycle, found: dict[str, Any], commit: Commit) -> tuple[Any, ...]:
        """Judge what B read after the fault; return the values the key may hold."""
        raised = cycle.outcome["raised"] is not None
        allowed = allowed_after(
            cycle.action,
            raised,
            cycle.failed,
            at=cycle.plan.at,
            commit=commit.index,
            old=cycle.old,
            new=cycle.new,
            demonstrated=commit.demonstrated,
        )
        if "open" in found:
            text = f"a fresh handle could not open the store after the fault: {found['open']}"
            cycle.problems.append(("later-save-fails-after-fault", text))
            return allowed
        value = found.get(f"load{self.key}")
        if value not in allowed:
            shown = " or ".join("absent" if v is None else str(v) for v in allowed)
            # Raised, yet the key changed: the old value was touched before the commit point.
            # Returned without the change: the error was swallowed.
            fact = "error-swallowed" if not raised else ""
            if raised and cycle.action == "save":
                fact = "failed-save-changed-value"
            text = f"a fresh handle then found {value}, expected {shown} (commit {commit.how})"
            cycle.problems.append((fact, text))
        if found.get(f"load{self.other}") != cycle.other:
            text = f"untouched key {self.other} now {found.get(f'load{self.other}')}"
            cycle.problems.append(("", text))
        return allowed

    def _explore_power_cuts(self, cycle: _Cycle) -> None:
        """Judge a save or delete that returned after a failed sync by power cuts too.

        The sync rule's finding is shown (the explorer finds a state that loses an offset),
        cleared (it checked every state and none does), or stands with the reason it was not
        shown; a return the rule accepted (the bytes were written again) is confirmed, or
        becomes a violation if a power cut still loses the offset.
        """
        initial = cycle.outcome.get("initial")
        synced = any(op.kind in SYNC_KINDS for op in cycle.failed)
        if initial is None or not synced or cycle.outcome["raised"] is not None:
            return
        new = None if cycle.action == "delete" else cycle.new
        explored = self.powercuts.explore(
            cycle.outcome["trace"],
            step=Step("delete" if cycle.action == "delete" else "save", self.key, new),
            acknowledged=True,
            root=os.path.realpath(cycle.path),
            initial=initial,
            committed={self.key: cycle.old, self.other: cycle.other},
            backend=self.backend,
        )
        flagged = [p for p in cycle.problems if p[0] == "fsync-error-ignored"]
        rest = [p for p in cycle.problems if p[0] != "fsync-error-ignored"]
        shown = "\n".join(f"  {line}" for line in explored.lines)
        if explored.verdict == "lost":
            self.crash_state = self.crash_state or explored.state
            first = (
                flagged[0][1]
                if flagged
                else (
                    f"{cycle.action}() returned after a failed sync (op #{cycle.failed[0].index}) "
                    "that the store answered by writing again, yet the offset is not durable"
                )
            )
            text = f"{first}\nshown by a power cut (the power-loss explorer):\n{shown}"
            cycle.problems = [("fsync-error-ignored", text), *flagged[1:], *rest]
        elif explored.verdict == "kept":
            was = "the sync rule's finding was cleared: " if flagged else ""
            cycle.story.append(
                f"{was}the power-loss explorer checked every state a power cut could leave "
                f"after the failed sync, and none loses an offset ({explored.lines[0]})"
            )
            cycle.problems = rest
        elif flagged:
            first = flagged[0][1] + f" (by the sync rule; no power cut shown: {explored.lines[0]})"
            cycle.problems = [("fsync-error-ignored", first), *flagged[1:], *rest]

    def later_save(self, cycle: _Cycle, on: str, allowed: tuple[Any, ...], path: str) -> bool:
        """Once the fault cleared, a later save on ``on`` must work; False if it hung.

        Or the handle is fail-stop (``judge_later``): it refuses loudly, and a reopen works.
        ``path`` is the directory A's handle is open on (a second one for a store not shared).
        """
        self.a.send("continue")
        told = [*cycle.story, *(text for _, text in cycle.problems)]
        tag, result = self.wait(self.a, f"the later save of {cycle.later} on {on}")
        if tag != "later":
            self.hung(told, "the later save", result)
            return False
        fact = "later-save-fails-after-fault"
        judged = judge_later(result, cycle.later, allowed, on)
        cycle.problems += [(fact, text) for text in judged.problems]
        if judged.fail_stop:
            self.tally.fail_stops += 1
            cycle.story.append(
                f"fail-stop: the handle refused the later save ({result['raised']}); a reopened "
                "handle saved it"
            )
        if not judged.problems and (again := self.read(path).get(f"load{self.key}")) != (
            cycle.later
        ):
            text = f"the later save of {cycle.later} returned, a fresh handle found {again}"
            cycle.problems.append((fact, text))
        return True

    def record(self, cycle: _Cycle, files: str) -> None:
        """Keep one cycle's violation (its story, files and last operations), if it has one.

        Its headline is the first problem, with the key, the fault and how the action ended.
        """
        if not cycle.problems:
            return
        trace: list[TraceOp] = cycle.outcome["trace"]
        last = "; ".join(str(op) for op in trace[-4:])
        text = "\n".join(
            [
                *cycle.story,
                *(text for _, text in cycle.problems),
                f"files after the faulted {cycle.action}: {files}",
                f"last operations: {last}",
            ]
        )
        fact, first = next(((f, t) for f, t in cycle.problems if f), cycle.problems[0])
        ended = next(line for line in cycle.story if line.startswith(f"the {cycle.action} "))
        ended = ended.split(" (injected", 1)[0]  # "the save raised OSError: [Errno 28] ..."
        first = first.split("\n", 1)[0]
        headline = f"key {self.key}, {cycle.story[0].split('; ', 1)[-1]}: {first} ({ended})"
        self.violations.append(_Found(text, headline, fact))

    # -- the run -------------------------------------------------------------------------------

    def run(self, plans: list[tuple[FaultPlan, str, str]], commits: dict[str, Commit]) -> int:
        """Run ``plans`` (plan, words, action); return how many were not run (stopped)."""
        for number, (plan, words, action) in enumerate(plans):
            if self.stop_reason() is not None:
                return len(plans) - number
            self.cycle(plan, words, commits.get(action, _UNCHANGED), action)
        return 0

    def cover(self, commits: dict[str, Commit]) -> None:
        """Fault every role the numbered plans missed (the numbering moved), aimed by kind."""
        for action, ops in self.ops.items():
            for wanted in sorted(roles(ops) - self.hit.get(action, set())):
                for plan, words in role_plans(ops, wanted, action):
                    if self.stop_reason() is not None or wanted in self.hit.get(action, set()):
                        break
                    self.cycle(plan, words, commits.get(action, _UNCHANGED), action)

    def stop_reason(self) -> str | None:
        if self.tally.hangs >= MAX_HANGS:
            return f"{self.tally.hangs} hangs"
        if len(self.violations) >= SHOWN and not self.options.long:
            return f"{len(self.violations)} violations"
        return None

    def close(self) -> None:
        for worker in (self.a, self.b):
            worker.kill()
        self.fleet.close()
        if not self.violations:
            shutil.rmtree(self.root, ignore_errors=True)

    def findings(self) -> list[dict[str, str]]:
        """What the violations demonstrate, the most frequent first (``_diagnosis.py``)."""
        counts: dict[str, int] = {}
        shown: dict[str, str] = {}
        for found in self.violations:
            if found.fact:
                counts[found.fact] = counts.get(found.fact, 0) + 1
                shown.setdefault(found.fact, found.headline)
        return [finding(f, shown[f]) for f in sorted(counts, key=lambda f: -counts[f])]


#: The commit of an action that changes nothing (load, open): never consulted.
_UNCHANGED: Final = Commit(-1, True, "changes nothing")


def _plans(run: _Faults) -> list[tuple[FaultPlan, str, str]]:
    """Every plan of the run: the save's every operation, then the other actions' samples."""
    plans: list[tuple[FaultPlan, str, str]] = []
    for action, ops in run.ops.items():
        chosen: list[Plan] = (
            list(save_plans(ops))
            if action == "save"
            else action_plans(ops, action, run.rng, run.options.long)
        )
        plans += [(plan, words, action) for plan, words in chosen]
    return plans


def check_f2(spec: str, options: StressOptions, *, bound: float = FAULT_BOUND) -> PropertyResult:
    """F2: ENOSPC/EIO/EACCES during a save raise, leave the old value, and the handle works.

    :param bound: seconds a faulted save may take before it counts as an unbounded retry.
    """
    started = time.monotonic()
    run = _Faults(spec, options, bound)
    not_run = 0
    commits: dict[str, Commit] = {}
    try:
        ops = run.save_ops()
        if not ops:
            unseen = run.unseen or "the syscall backend was not tried"
            reason = (
                "the interposer saw no file operations in a save (C extension or remote?), and "
                f"{unseen}: the store claims persistence, but no fault could be injected"
            )
            evidence = {**run.tally.evidence(0), "tracing": "none"}
            return PropertyResult("F2", "unverified", time.monotonic() - started, reason, evidence)
        run.ops = {"save": ops, **{action: run.count_action(action) for action in OTHER_ACTIONS}}
        commits = {action: run.commit(action, run.ops[action]) for action in CHANGING}
        run.made = {action: roles(action_ops) for action, action_ops in run.ops.items()}
        not_run = run.run(_plans(run), commits)
        if not not_run:
            run.cover(commits)
    except WorkerGone as exc:
        text = f"seed {options.seed}: F2 harness: {exc}"
        run.violations.append(_Found(text, text, ""))
    finally:
        run.close()
    return _result(
        run, options=options, bound=bound, started=started, not_run=not_run, commits=commits
    )


def _result(
    run: _Faults,
    *,
    options: StressOptions,
    bound: float,
    started: float,
    not_run: int,
    commits: dict[str, Commit],
) -> PropertyResult:
    seconds = time.monotonic() - started
    tally = run.tally
    traced = " through the syscall shim" if run.backend == "syscall" else ""
    head = (
        f"seed {options.seed}: {tally.saves} faulted saves{traced} in {seconds:.1f} s "
        f"({tally.sync_faults}"
        f" with a failed sync); slowest faulted save {tally.slowest:.3f} s (bound {bound:g} s)"
    )
    head += "; " + ", ".join(f"{tally.others.get(a, 0)} faulted {a}s" for a in OTHER_ACTIONS)
    stopped = run.stop_reason()
    if not_run:
        head += f"; stopped after {stopped}: {not_run} fault plan(s) not run"
    evidence: dict[str, int | float | str] = {
        **tally.evidence(not_run),
        "tracing": f"{run.backend} " + ("shim" if run.backend == "syscall" else "interposer"),
        "save counted by": "the crash campaign" if run.shared else "F2",
    }
    if run.judged:
        evidence["judged by"] = run.judged
    if run.made:
        evidence["save roles faulted"] = describe_roles(
            run.hit.get("save", set()), run.made["save"]
        )
    for action, commit in commits.items():
        evidence[f"{action} commit"] = commit.how
    evidence["fresh reads"] = run.reads
    if run.powercuts.runs:
        evidence["power cuts explored"] = run.powercuts.evidence()
    if not run.violations:
        return PropertyResult("F2", "passed", seconds, head, evidence)
    more = f" (and {len(run.violations) - 1} more violation(s))" if len(run.violations) > 1 else ""
    lines = [
        run.violations[0].headline + more,
        head,
        f"{len(run.violations)} violation(s); replay with the same seed: "
        f"check --seed {options.seed}, pytest --stress-seed {options.seed}",
    ]
    for violation in run.violations[:SHOWN]:
        lines += ["--- F2 violation", violation.text]
    lines.append(f"directories kept under {run.root}")
    artifacts: dict[str, Any] = {FINDINGS: run.findings()}
    if run.crash_state:
        artifacts["crash_state"] = run.crash_state
    return PropertyResult("F2", "failed", seconds, "\n".join(lines), evidence, artifacts)
