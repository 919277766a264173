"""I/O faults (F2): the k-th operation of a save fails; the old value survives, the handle works.

A worker counts the operations of one save over an old value. Then, for every operation ``k`` and
each of ENOSPC, EIO and EACCES, once and from then on, a worker (A) sets up the old value, saves a
new one under a :class:`~lance_offsets.stress.seam._tracer.FaultPlan`, and reports what happened; a
second worker (B, with its own fresh handle) reads the key. The rules:

- a save that raised left the old value; the new one only when the fault hit after the commit
  (after the last rename/replace of the save, say a failed directory fsync, or the unlink or
  truncate of a library's journal) or hit a sync (the bytes were written, durable or not: SQLite
  in ``journal_mode=PERSIST`` raises on its journal's last sync, after the commit), never
  anything else;
- a save that returned stored the new value (a swallowed error is a lie to the caller), and no
  sync of what it wrote failed on the way (see ``_faultjudge.py``: after a failed fsync the new
  bytes may be only in the page cache, and a retried fsync proves nothing);
- once the fault clears, a later save on A's same handle succeeds and B reads it back.

A save, or a read, that does not return within the bound is reported with the plan, the
operations and where the worker was blocked; the stuck workers are replaced and the remaining
plans go on, up to :data:`MAX_HANGS` hangs.

Windows semantics on any OS: ``os.replace``/``os.rename`` failing with a sharing violation
(``PermissionError`` with ``winerror`` 32) once, three times, or for good must end, within
:data:`FAULT_BOUND` seconds, in a stored new value or a raised error with the old value intact.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from lance_offsets.conformance._diagnosis import FINDINGS, finding
from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ..crash._judge import listing
from ..seam._record import Backend, choose_backend, counted_save, shim_saw_nothing
from ..seam._trace import TraceOp
from ..seam._tracer import FaultPlan
from ..workers._fleet import Fleet, Worker, WorkerGone
from ..workers._jobs import NO_SHIM
from ._judge import (
    OTHER_ACTIONS,
    Tally,
    allowed_after,
    hang_report,
    injected,
    swallowed_syncs,
)

__all__ = ["FAULT_BOUND", "check_f2"]

#: The errors every operation of a save is made to fail with.
ERRORS: Final = (errno.ENOSPC, errno.EIO, errno.EACCES)
#: Seconds a faulted save may take (a retry loop must be bounded).
FAULT_BOUND: Final = 10.0
#: Seconds past the bound the parent waits for a worker whose watchdog did not report.
GRACE: Final = 5.0
#: Hangs after which the remaining plans are skipped (each costs the bound in seconds).
MAX_HANGS: Final = 2
#: Violations a short run shows before it stops (a long run keeps counting).
SHOWN: Final = 3
#: Fault plans a short run tries per action besides save (delete, load, open), at most.
SAMPLED: Final = 16
#: Windows' ERROR_SHARING_VIOLATION, carried by the injected PermissionError.
SHARING_VIOLATION: Final = 32


def _name(op: TraceOp) -> str:
    return "of the directory" if op.is_dir else os.path.basename(op.path)


def _at(op: TraceOp, code: int, times: int | None, action: str = "save") -> tuple[FaultPlan, str]:
    plan = FaultPlan(at=op.index, error=code, times=times)
    return plan, f"{plan.describe()}: {action} op #{op.index} {op.call or op.kind} {_name(op)}"


def _plans(save_ops: list[TraceOp]) -> Iterator[tuple[FaultPlan, str]]:
    for op in save_ops:
        for code in ERRORS:
            for times in (1, None):
                yield _at(op, code, times)
    for times in (1, 3, None):
        plan = FaultPlan(
            error=errno.EACCES, times=times, kinds=("replace", "rename"), winerror=SHARING_VIOLATION
        )
        yield plan, f"Windows sharing violation on rename/replace, {plan.describe()}"


def _action_plans(
    ops: list[TraceOp], action: str, rng: random.Random, long: bool
) -> list[tuple[FaultPlan, str]]:
    """Fault plans for a delete, load or open: every one in a long run, else a seeded sample.

    The sample faults every operation with a seeded error, once and for good (a store that
    swallows one error may still raise on the next), then keeps at most :data:`SAMPLED` of
    them: the save's full enumeration is what F2 spends its time on.
    """
    if long:
        return [
            _at(op, code, times, action) for op in ops for code in ERRORS for times in (1, None)
        ]
    plans = [_at(op, rng.choice(ERRORS), times, action) for op in ops for times in (1, None)]
    if len(plans) > SAMPLED:
        plans = sorted(rng.sample(plans, SAMPLED), key=lambda p: p[0].at)
    return plans


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


class _Faults:
    def __init__(self, spec: str, options: StressOptions, bound: float) -> None:
        self.spec = spec
        self.bound = bound
        self.options = options
        self.rng = random.Random(options.seed)
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
            return list(known.ops)

        def record(backend: Backend) -> list[TraceOp] | str:
            self.backend = backend
            return self._count()

        chosen = choose_backend(record, _no_ops, self.options.backend)
        self.backend, self.unseen = chosen.backend, chosen.unseen
        return chosen.counted or []

    def _count(self) -> list[TraceOp] | str:
        old, new, _, other = self.values()
        job = {
            "job": "crash",
            "path": self.directory(),
            "setup": {self.other: other, self.key: old},
            "key": self.key,
            "new": new,
            "stop": None,
            "linger": 0.0,
            "backend": self.backend,
        }
        self.a.send(job)
        while True:
            tag, payload = self.a.recv(self.bound + GRACE, f"the counting save of {new}")
            if tag == "done":
                break
            if tag == NO_SHIM:
                return str(payload)
            if tag == "raised":
                raise WorkerGone(f"a save with no fault raised: {payload[0]}")
        ops: list[TraceOp] = []
        for op in payload:
            if op.kind == "mark":
                break  # the save returned here; what follows is close()
            ops.append(op)
        return ops

    def read(self, path: str) -> dict[str, Any]:
        self.b.send({"job": "verify", "path": path, "keys": [self.key, self.other], "later": None})
        _, found = self.b.recv(self.bound + GRACE, "a fresh handle's read")
        read: dict[str, Any] = found
        if "open" in read:  # the fresh handle could not even open: there is nothing to close
            return {f"load{self.key}": f"open {read['open']}", **read}
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

    def _job(
        self, action: str, path: str, plan: FaultPlan | None, values: tuple[int, int, int, int]
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
        }

    def returned(
        self, action: str, outcome: dict[str, Any], failed: list[TraceOp], old: tuple[int, int]
    ) -> list[_Problem]:
        """What is wrong with an action that returned despite the fault (``old``: key, other).

        A load must have returned the committed value, an open a handle that reads the committed
        values; a save or delete that swallowed a failed sync of what it changed is a lie.
        """
        problems = [
            ("fsync-error-ignored", line)
            for line in swallowed_syncs(outcome["trace"], failed, what=action)
        ]
        if action == "load" and outcome["returned"] != old[0]:
            text = f"the load returned {outcome['returned']}, committed was {old[0]}"
            problems.append(("failed-read-answered", text))
        if action == "open":
            read = outcome.get("read", {})
            for key, value in zip((self.key, self.other), old, strict=True):
                if read.get(f"load{key}") != value:
                    text = (
                        f"the opened handle read {read.get(f'load{key}')} for {key}, the "
                        f"committed value is {value}"
                    )
                    problems.append(("failed-read-answered", text))
        return problems

    def cycle(self, plan: FaultPlan, what: str, commit: int, action: str = "save") -> None:
        path = self.directory()
        old, new, later, other = self.values()
        self.a.send(self._job(action, path, plan, (old, new, later, other)))
        change = f"faulted save of {new}" if action == "save" else f"faulted {action}"
        story = [
            f"seed {self.options.seed}; fault {what}",
            f"key {self.key}: old {old}, {change}, later save of {later}",
        ]
        phase = f"the faulted {action}"
        tag, outcome = self.wait(self.a, f"the {change} ({plan.describe()})")
        if tag != "faulted":
            self.hung(story, phase, outcome)
            return
        failed = injected(outcome["trace"], plan)
        self.tally.count(outcome["seconds"], failed, action)
        raised = outcome["raised"]
        if failed:
            story.append("injected into: " + "; ".join(str(op) for op in failed[:3]))
        story.append(f"the {action} {'raised ' + raised if raised else 'returned'}")
        problems = [] if raised else self.returned(action, outcome, failed, (old, other))
        try:
            found = self.read(path)
        except WorkerGone as exc:
            self.hung(story, "a fresh handle's read", {"harness": str(exc)})
            return
        files = listing(path)
        value = found.get(f"load{self.key}")
        allowed = allowed_after(
            action, raised is not None, failed, at=plan.at, commit=commit, old=old, new=new
        )
        if value not in allowed:
            shown = " or ".join("absent" if v is None else str(v) for v in allowed)
            # Raised, yet the key changed: the old value was touched before the commit point.
            # Returned without the change: the error was swallowed.
            fact = "error-swallowed" if not raised else ""
            if raised and action == "save":
                fact = "failed-save-changed-value"
            problems.append((fact, f"a fresh handle then found {value}, expected {shown}"))
        if found.get(f"load{self.other}") != other:
            text = f"untouched key {self.other} now {found.get(f'load{self.other}')}"
            problems.append(("", text))
        on = "a new handle" if action == "open" else "the same handle"
        told = [text for _, text in problems]
        if not self.later_save(path, later, on, [*story, *told], problems):
            return
        self.record(story, problems, files, outcome["trace"], action)
        if not problems:
            shutil.rmtree(path, ignore_errors=True)

    def later_save(
        self, path: str, later: int, on: str, story: list[str], problems: list[_Problem]
    ) -> bool:
        """Once the fault cleared, a later save on ``on`` must work; False if it hung."""
        self.a.send("continue")
        tag, result = self.wait(self.a, f"the later save of {later} on {on}")
        if tag != "later":
            self.hung(story, "the later save", result)
            return False
        fact = "later-save-fails-after-fault"
        if result["raised"] is not None or result.get("load") != later:
            text = f"once the fault cleared, a later save of {later} on {on}: {result}"
            problems.append((fact, text))
        elif (again := self.read(path).get(f"load{self.key}")) != later:
            text = f"the later save of {later} returned, a fresh handle found {again}"
            problems.append((fact, text))
        return True

    def record(
        self,
        story: list[str],
        problems: list[_Problem],
        files: str,
        trace: list[TraceOp],
        action: str,
    ) -> None:
        """Keep one cycle's violation (its story, files and last operations), if it has one.

        Its headline is the first problem, with the key, the fault and how the action ended.
        """
        if not problems:
            return
        last = "; ".join(str(op) for op in trace[-4:])
        text = "\n".join(
            [
                *story,
                *(text for _, text in problems),
                f"files after the faulted {action}: {files}",
                f"last operations: {last}",
            ]
        )
        fact, first = next(((f, t) for f, t in problems if f), problems[0])
        ended = story[-1].split(" (injected", 1)[0]  # "the save raised OSError: [Errno 28] ..."
        headline = f"key {self.key}, {story[0].split('; ', 1)[-1]}: {first} ({ended})"
        self.violations.append(_Found(text, headline, fact))

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


#: Operations that can commit a save: a rename into place, or, for a library's journal (SQLite's
#: rollback journal commits by unlinking it, or truncating it in ``journal_mode=TRUNCATE``), the
#: unlink or truncate of it. A fault after the last of them may leave the new value.
_COMMITS: Final = frozenset({"rename", "replace", "unlink", "truncate"})


def _commit_index(ops: list[TraceOp], action: str = "save") -> int:
    """The last operation that can commit the save: faults after it may leave the new value.

    For a delete, the first: its first unlink (or rename) may already have removed the key, and
    what follows (removing a leftover temp file, say) cannot bring it back.
    """
    commits = [op.index for op in ops if op.kind in _COMMITS]
    if not commits:
        return -1
    return commits[0] if action == "delete" else commits[-1]


def _stop_reason(run: _Faults, long: bool) -> str | None:
    if run.tally.hangs >= MAX_HANGS:
        return f"{run.tally.hangs} hangs"
    if len(run.violations) >= SHOWN and not long:
        return f"{len(run.violations)} violations"
    return None


def check_f2(spec: str, options: StressOptions, *, bound: float = FAULT_BOUND) -> PropertyResult:
    """F2: ENOSPC/EIO/EACCES during a save raise, leave the old value, and the handle works.

    :param bound: seconds a faulted save may take before it counts as an unbounded retry.
    """
    started = time.monotonic()
    run = _Faults(spec, options, bound)
    not_run = 0
    stopped: str | None = None
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
        plans = [(plan, what, "save", ops) for plan, what in _plans(ops)]
        for action in OTHER_ACTIONS:
            counted = run.count_action(action)
            sampled = _action_plans(counted, action, run.rng, options.long)
            plans += [(plan, what, action, counted) for plan, what in sampled]
        for number, (plan, what, action, traced_ops) in enumerate(plans):
            stopped = _stop_reason(run, options.long)
            if stopped:
                not_run = len(plans) - number
                break
            commit = _commit_index(traced_ops, action)
            run.cycle(plan, what, commit if commit >= 0 else len(traced_ops), action)
    except WorkerGone as exc:
        text = f"seed {options.seed}: F2 harness: {exc}"
        run.violations.append(_Found(text, text, ""))
    finally:
        run.close()
    seconds = time.monotonic() - started
    tally = run.tally
    traced = " through the syscall shim" if run.backend == "syscall" else ""
    head = (
        f"seed {options.seed}: {tally.saves} faulted saves{traced} in {seconds:.1f} s "
        f"({tally.sync_faults}"
        f" with a failed sync); slowest faulted save {tally.slowest:.3f} s (bound {bound:g} s)"
    )
    head += "; " + ", ".join(f"{tally.others.get(a, 0)} faulted {a}s" for a in OTHER_ACTIONS)
    if not_run:
        head += f"; stopped after {stopped}: {not_run} fault plan(s) not run"
    evidence = {
        **tally.evidence(not_run),
        "tracing": f"{run.backend} " + ("shim" if run.backend == "syscall" else "interposer"),
        "save counted by": "the crash campaign" if run.shared else "F2",
    }
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
    artifacts = {FINDINGS: run.findings()}
    return PropertyResult("F2", "failed", seconds, "\n".join(lines), evidence, artifacts)
