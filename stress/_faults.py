"""I/O faults (F2): the k-th operation of a save fails; the old value survives, the handle works.

A worker counts the operations of one save over an old value. Then, for every operation ``k`` and
each of ENOSPC, EIO and EACCES, once and from then on, a worker (A) sets up the old value, saves a
new one under a :class:`~lance_offsets.stress._tracer.FaultPlan`, and reports what happened; a
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
from typing import Any, Final

from lance_offsets.conformance._results import PropertyResult

from ._faultjudge import SYNC_KINDS, Tally, hang_report, injected, swallowed_syncs
from ._fleet import Fleet, Worker, WorkerGone
from ._judge import listing
from ._options import StressOptions
from ._trace import TraceOp
from ._tracer import FaultPlan
from ._worker import NO_SHIM

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
#: Windows' ERROR_SHARING_VIOLATION, carried by the injected PermissionError.
SHARING_VIOLATION: Final = 32


def _name(op: TraceOp) -> str:
    return "of the directory" if op.is_dir else os.path.basename(op.path)


def _plans(save_ops: list[TraceOp]) -> Iterator[tuple[FaultPlan, str]]:
    for op in save_ops:
        for code in ERRORS:
            for times in (1, None):
                plan = FaultPlan(at=op.index, error=code, times=times)
                yield (
                    plan,
                    f"{plan.describe()}: op #{op.index} {op.call or op.kind} {_name(op)}",
                )
    for times in (1, 3, None):
        plan = FaultPlan(
            error=errno.EACCES, times=times, kinds=("replace", "rename"), winerror=SHARING_VIOLATION
        )
        yield plan, f"Windows sharing violation on rename/replace, {plan.describe()}"


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
        self.violations: list[str] = []
        self.tally = Tally()
        #: The tracing backend ("python" or "syscall"); ``save_ops`` chooses it under "auto".
        self.backend = "python" if options.backend == "auto" else options.backend
        #: Why neither backend saw the save's I/O, when that happened.
        self.unseen = ""

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

        Under the "auto" backend, a save the Python interposer saw nothing of is counted again
        through the syscall shim (I/O made in C), which then injects the faults.
        """
        ops = self._count()
        if not ops and self.options.backend == "auto":
            self.backend = "syscall"
            ops = self._count()
            if not ops:
                self.backend = "python"
                self.unseen = self.unseen or (
                    "the syscall shim saw no file-system call under the store's directory "
                    "either (a remote or in-memory store?)"
                )
        return ops

    def _count(self) -> list[TraceOp]:
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
                self.unseen = str(payload)
                return []
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
        self.b.recv(self.bound + GRACE, "a fresh handle's close")
        read: dict[str, Any] = found
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
        self.violations.append("\n".join([*story, *hang_report(phase, self.bound, stuck)]))
        self.replace(both=phase == "a fresh handle's read")

    def cycle(self, plan: FaultPlan, what: str, commit: int) -> None:
        path = self.directory()
        old, new, later, other = self.values()
        self.a.send(
            {
                "job": "fault",
                "path": path,
                "setup": {self.other: other, self.key: old},
                "key": self.key,
                "new": new,
                "later": later,
                "plan": plan,
                "bound": self.bound,
                "backend": self.backend,
            }
        )
        story = [
            f"seed {self.options.seed}; fault {what}",
            f"key {self.key}: old {old}, faulted save of {new}, later save of {later}",
        ]
        tag, outcome = self.wait(self.a, f"the faulted save of {new} ({plan.describe()})")
        if tag != "faulted":
            self.hung(story, "the faulted save", outcome)
            return
        failed = injected(outcome["trace"], plan)
        self.tally.count(outcome["seconds"], failed)
        raised = outcome["raised"]
        if failed:
            story.append("injected into: " + "; ".join(str(op) for op in failed[:3]))
        story.append(f"the save {'raised ' + raised if raised else 'returned'}")
        problems = [] if raised else swallowed_syncs(outcome["trace"], failed)
        try:
            found = self.read(path)
        except WorkerGone as exc:
            self.hung(story, "a fresh handle's read", {"harness": str(exc)})
            return
        files = listing(path)
        value = found.get(f"load{self.key}")
        allowed: tuple[object, ...] = (new,) if raised is None else (old,)
        if raised is not None and (failed[0].index if failed else plan.at) > commit:
            allowed = (old, new)  # the fault came after the new value was in place
        if raised is not None and failed and failed[0].kind in SYNC_KINDS:
            # A failed sync leaves the written bytes in the page cache, durable or not: raising
            # is the honest answer, whichever value a fresh handle then reads.
            allowed = (old, new)
        if value not in allowed:
            shown = " or ".join(map(str, allowed))
            problems.append(f"a fresh handle then found {value}, expected {shown}")
        if found.get(f"load{self.other}") != other:
            problems.append(f"untouched key {self.other} now {found.get(f'load{self.other}')}")
        self.a.send("continue")
        tag, result = self.wait(self.a, f"the later save of {later} on the same handle")
        if tag != "later":
            self.hung([*story, *problems], "the later save", result)
            return
        if result["raised"] is not None or result.get("load") != later:
            problems.append(
                f"once the fault cleared, a later save of {later} on the same handle: {result}"
            )
        elif (again := self.read(path).get(f"load{self.key}")) != later:
            problems.append(f"the later save of {later} returned, a fresh handle found {again}")
        if problems:
            trace = "; ".join(str(op) for op in outcome["trace"][-4:])
            self.violations.append(
                "\n".join(
                    [
                        *story,
                        *problems,
                        f"files after the failed save: {files}",
                        f"last operations: {trace}",
                    ]
                )
            )
        else:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        for worker in (self.a, self.b):
            worker.kill()
        self.fleet.close()
        if not self.violations:
            shutil.rmtree(self.root, ignore_errors=True)


#: Operations that can commit a save: a rename into place, or, for a library's journal (SQLite's
#: rollback journal commits by unlinking it, or truncating it in ``journal_mode=TRUNCATE``), the
#: unlink or truncate of it. A fault after the last of them may leave the new value.
_COMMITS: Final = frozenset({"rename", "replace", "unlink", "truncate"})


def _commit_index(ops: list[TraceOp]) -> int:
    """The last operation that can commit the save: faults after it may leave the new value."""
    commits = [op.index for op in ops if op.kind in _COMMITS]
    return commits[-1] if commits else -1


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
        commit = _commit_index(ops)
        plans = list(_plans(ops))
        for number, (plan, what) in enumerate(plans):
            stopped = _stop_reason(run, options.long)
            if stopped:
                not_run = len(plans) - number
                break
            run.cycle(plan, what, commit if commit >= 0 else len(ops))
    except WorkerGone as exc:
        run.violations.append(f"seed {options.seed}: F2 harness: {exc}")
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
    if not_run:
        head += f"; stopped after {stopped}: {not_run} fault plan(s) not run"
    evidence = {
        **tally.evidence(not_run),
        "tracing": f"{run.backend} " + ("shim" if run.backend == "syscall" else "interposer"),
    }
    if not run.violations:
        return PropertyResult("F2", "passed", seconds, head, evidence)
    text = [head, f"{len(run.violations)} violation(s); replay with --stress-seed {options.seed}"]
    for violation in run.violations[:SHOWN]:
        text += ["--- F2 violation", violation]
    text.append(f"directories kept under {run.root}")
    return PropertyResult("F2", "failed", seconds, "\n".join(text), evidence)
