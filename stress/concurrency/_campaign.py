"""Concurrent workers on shared keys, and the properties their histories decide (M1, M2).

N worker processes (``options.workers``) each build the store from the factory spec string and
run a seeded schedule of save/load/delete on a few shared keys, recording every operation
(:mod:`._history`). Workers wait for a start file so that all of them begin together whatever
their start-up time, and stop on their own at a deadline on the shared monotonic clock. No
shared-memory primitive (queue, event, lock) is used between parent and workers: a worker killed
while holding one would wedge the rest, and history files keep everything a killed worker wrote.

M1 kills workers at seeded times and restarts them under new numbers; the killed worker's last
operation is indeterminate. M2 uses one key and a delete-heavy mix with no kills, aimed at the
defect where ``delete`` unlinks the lock file while another process holds it (the Rust seed's
bug): the next saver locks a *new* file at that path, so two processes "hold" the exclusive lock
at once and both write the shared ``.offset.tmp``. One then renames a temp file the other already
renamed (``FileNotFoundError``), or renames one the other is still writing (a reader sees an
empty or half-written offset), or acknowledges a save whose bytes the other replaced (a lost
write). The checker reports the first as an undocumented exception, the second as an exception
or a value nobody saved, the third as a non-linearizable history, so exclusion is observed
through its consequences without the store's cooperation.

Every choice (operations, keys, values, kill times and victims) derives from ``options.seed``:
the same seed replays the same schedule, though timing, and so interleaving, differs.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lance_offsets.conformance._diagnosis import FINDINGS
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._spec import load_factory

from lance_offsets._errors import LockTimeoutError
from lance_offsets._interrupt import quiet_child, raise_if_interrupted

from .._options import StressOptions
from ..seam._interpose import traced
from ..seam._trace import TraceOp
from ..workers._procs import context, kill, reap, start
from ._findings import history_findings
from ._history import HistoryWriter, Key, Op, OpKind, read_worker
from ._linearize import check_history, drawn_history, first_reported, format_violations
from ._widen import Widener

__all__ = [
    "M1_WORKLOAD",
    "M2_WORKLOAD",
    "RunResult",
    "WorkerJob",
    "Workload",
    "check_m1",
    "check_m2",
    "kill_schedule",
    "plan",
    "run_workload",
    "worker_main",
]

#: How long workers may take to build their store before the run is abandoned.
READY_SECONDS: Final = 120.0
#: How long a worker may run past the deadline (finishing one call) before it counts as stuck.
STUCK_SECONDS: Final = 30.0
#: Seconds between progress lines in long runs.
PROGRESS_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Workload:
    """What the workers do: which keys, which mix of operations, whether some are killed."""

    name: str
    keys: tuple[Key, ...]
    save: float
    load: float
    delete: float
    kills: bool


#: M1: a few shared keys, including the pair (1, 23) / (12, 3) whose naive file names collide, and
#: the largest key; loads dominate so stale and lost values get seen.
M1_WORKLOAD: Final = Workload(
    "M1", ((1, 23), (12, 3), (2**32 - 1, 2**64 - 1)), 0.4, 0.45, 0.15, kills=True
)
#: M2: one key, saves racing deletes (see the module docstring); loads to see torn values.
M2_WORKLOAD: Final = Workload("M2", ((7, 7),), 0.45, 0.2, 0.35, kills=False)


def plan(
    seed: int, workload: Workload, worker: int
) -> Iterator[tuple[int, OpKind, Key, int | None]]:
    """Yield worker ``worker``'s schedule: ``(seq, kind, key, value)``, the same for one seed.

    Values are ``worker * 2**32 + seq``: unique, so each read names the one save it saw.
    """
    rng = random.Random(f"{seed}:{workload.name}:{worker}")
    kinds: list[OpKind] = ["save", "load", "delete"]
    weights = [workload.save, workload.load, workload.delete]
    seq = 0
    while True:
        seq += 1
        kind = rng.choices(kinds, weights)[0]
        key = rng.choice(workload.keys)
        yield seq, kind, key, worker * 2**32 + seq if kind == "save" else None


def kill_schedule(options: StressOptions, workload: Workload) -> list[tuple[float, int]]:
    """Return ``(seconds after start, worker slot)`` of each kill, the same for one seed."""
    if not workload.kills:
        return []
    rng = random.Random(f"{options.seed}:{workload.name}:kills")
    count = max(1, int(options.seconds / 3)) if options.seconds >= 1 else 0
    times = sorted(rng.uniform(0.1, 0.9) * options.seconds for _ in range(count))
    return [(t, rng.randrange(options.workers)) for t in times]


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs, picklable: it runs under spawn."""

    spec: str
    store_dir: str
    history: str
    go: str
    worker: int
    seed: int
    workload: Workload


def worker_main(job: WorkerJob) -> None:
    """Run in a worker process: build the store, wait for the start file, run the schedule.

    The store's file calls pass the seam's interposer, whose ``on_op`` pauses some of them
    (:mod:`._widen`): race windows widened, the same for one seed.
    """
    quiet_child()
    writer = HistoryWriter(job.history, job.worker)
    widener = Widener(job.seed, job.workload.name, job.worker)
    with traced(job.store_dir, on_op=widener) as trace:
        _work(job, writer, trace)
    writer.done(widener.paused)
    writer.close()


def _work(job: WorkerJob, writer: HistoryWriter, trace: list[TraceOp]) -> None:
    try:
        store = load_factory(job.spec)(job.store_dir)
    except Exception as exc:
        writer.crashed(exc)
        raise
    writer.ready()
    deadline = _wait_for_start(job.go)
    for seq, kind, key, value in plan(job.seed, job.workload, job.worker):
        if time.monotonic() >= deadline:
            break
        trace.clear()  # only the pauses matter here: the records would pile up for nothing
        writer.invoke(seq, kind, key, value)
        try:
            if kind == "save":
                assert value is not None
                store.save(key[0], key[1], value)
                writer.ok(seq)
            elif kind == "load":
                writer.ok(seq, store.load(key[0], key[1]))
            else:
                store.delete(key[0], key[1])
                writer.ok(seq)
        except LockTimeoutError as exc:
            # Documented: the lock was not acquired in time (a store configured with a timeout),
            # so nothing happened; the checker holds the store to that.
            writer.raised(seq, exc, documented=True)
        except Exception as exc:
            writer.raised(seq, exc, documented=False)
    try:
        store.close()
    except Exception as exc:
        writer.crashed(exc)
        raise


def _wait_for_start(go: str) -> float:
    give_up = time.monotonic() + READY_SECONDS
    while time.monotonic() < give_up:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return float(Path(go).read_text())
        time.sleep(0.002)
    raise TimeoutError(f"no start signal at {go} within {READY_SECONDS:g} s")


@dataclass
class RunResult:
    """What a concurrent run produced.

    :ivar ops: every recorded operation of every worker incarnation.
    :ivar origin: monotonic time of the start signal (reports print times relative to it).
    :ivar seconds: wall time from the start signal to the last worker's exit.
    :ivar kills: workers killed on schedule.
    :ivar problems: worker-level failures (a store that could not be built, a worker stuck past
        the deadline, one that died on its own), each a readable line.
    :ivar workdir: where the store and the history files are.
    :ivar refused: why a worker could not open the store while another had it open, if one
        could not ("" otherwise).
    :ivar paused: pauses the workers that finished made inside the store's calls (``_widen``).
    """

    ops: list[Op]
    origin: float
    seconds: float
    kills: int
    problems: list[str] = field(default_factory=list)
    workdir: str = ""
    refused: str = ""
    paused: int = 0


class _Run:
    """The parent's side of one run: starts, kills, restarts and reaps the workers."""

    def __init__(self, spec: str, options: StressOptions, workload: Workload) -> None:
        self.spec, self.options, self.workload = spec, options, workload
        self.root = tempfile.mkdtemp(prefix=f"lance-{workload.name}-", dir=options.workdir)
        self.store_dir = os.path.join(self.root, "store")
        os.mkdir(self.store_dir)
        self.go = os.path.join(self.root, "go")
        self.histories: dict[int, str] = {}
        self.live: dict[int, tuple[int, Any]] = {}  # slot -> (worker number, process)
        self.killed: set[int] = set()  # workers killed, on schedule or because stuck
        self.kills = 0  # kills on schedule
        self.procs: list[tuple[int, Any]] = []
        #: Why a worker could not open the store while another had it open ("" if none).
        self.refused = ""

    def start(self, slot: int) -> None:
        worker = len(self.histories)
        path = os.path.join(self.root, f"history-{worker}.jsonl")
        Path(path).touch()  # exists from the start: progress and readers never miss it
        self.histories[worker] = path
        job = WorkerJob(
            self.spec, self.store_dir, path, self.go, worker, self.options.seed, self.workload
        )
        proc = context().Process(
            target=worker_main, args=(job,), name=f"{self.workload.name}-w{worker}"
        )
        proc.daemon = True
        start(proc)
        self.live[slot] = (worker, proc)
        self.procs.append((worker, proc))

    def wait_ready(self) -> list[str]:
        give_up = time.monotonic() + READY_SECONDS
        waiting = dict(self.live.values())
        while waiting and time.monotonic() < give_up:
            for worker, proc in list(waiting.items()):
                read = read_worker(self.histories[worker], worker)
                if read.ready:
                    del waiting[worker]
                elif not proc.is_alive():
                    why = read.crash or "see its stderr"
                    if any(
                        read_worker(self.histories[w], w).ready
                        for w in self.histories
                        if w != worker
                    ):
                        self.refused = f"worker {worker} could not open the store: {why}"
                    return [
                        f"worker {worker} exited ({proc.exitcode}) before it was ready: {why} "
                        "(each worker calls factory(path) in its own process, all on one path; "
                        "a store that cannot be shared should set shared = False on its factory)"
                    ]
            time.sleep(0.01)
        return [f"workers {sorted(waiting)} not ready after {READY_SECONDS:g} s"] if waiting else []

    def count(self) -> tuple[int, int]:
        """Operations invoked and undocumented exceptions so far (cheap: no parsing)."""
        data = [Path(p).read_bytes() for p in self.histories.values()]
        return sum(d.count(b'"e":"invoke"') for d in data), sum(
            d.count(b'"e":"info"') for d in data
        )

    def run(self) -> RunResult:
        try:
            for slot in range(self.options.workers):
                self.start(slot)
            problems = self.wait_ready()
            if problems:
                return RunResult([], 0.0, 0.0, 0, problems, self.root, self.refused)
            origin = time.monotonic()
            deadline = origin + self.options.seconds
            Path(self.go + ".tmp").write_text(repr(deadline))
            os.replace(self.go + ".tmp", self.go)
            self._drive(origin, deadline)
            problems = self._finish(deadline)
            seconds = time.monotonic() - origin
        finally:
            for _, proc in self.procs:
                reap(proc)
        read = [read_worker(path, w) for w, path in sorted(self.histories.items())]
        ops = [op for worker in read for op in worker.ops]
        paused = sum(worker.paused for worker in read)
        return RunResult(ops, origin, seconds, self.kills, problems, self.root, paused=paused)

    def _drive(self, origin: float, deadline: float) -> None:
        kills = kill_schedule(self.options, self.workload)
        next_progress = origin + PROGRESS_SECONDS
        while True:
            raise_if_interrupted()
            now = time.monotonic()
            # Kills due are never skipped, even when this loop wakes late on a loaded machine:
            # every run of one seed kills the same slots in the same order.
            while kills and now - origin >= kills[0][0]:
                _, slot = kills.pop(0)
                worker, proc = self.live[slot]
                kill(proc)
                self.killed.add(worker)
                self.kills += 1
                self.start(slot)  # a fresh incarnation joins at once: the start file exists
            if now >= deadline:
                return
            if self.options.long and now >= next_progress:
                invoked, errors = self.count()
                self.options.progress(
                    f"{self.workload.name}: {now - origin:5.1f} s, {invoked} ops "
                    f"({invoked / (now - origin):.0f} ops/s), {self.kills} kills, "
                    f"{errors} undocumented exceptions so far"
                )
                next_progress += PROGRESS_SECONDS
            wake = min([deadline, next_progress] + [origin + k[0] for k in kills[:1]])
            time.sleep(max(0.0, min(0.05, wake - time.monotonic())))

    def _finish(self, deadline: float) -> list[str]:
        problems = []
        for worker, proc in self.live.values():
            proc.join(max(0.0, deadline + STUCK_SECONDS - time.monotonic()))
            if proc.is_alive():
                kill(proc)
                self.killed.add(worker)
                ops = read_worker(self.histories[worker], worker).ops
                doing = ops[-1].describe() if ops else "starting up"
                problems.append(
                    f"worker {worker} still running {STUCK_SECONDS:g} s after the deadline, "
                    f"in: {doing.strip()} (a lock never released? a deadlock?)"
                )
        for worker, proc in self.procs:
            if worker in self.killed or proc.exitcode in (0, None):
                continue
            read = read_worker(self.histories[worker], worker)
            problems.append(f"worker {worker} exited with code {proc.exitcode}: {read.crash}")
        return problems


def run_workload(spec: str, options: StressOptions, workload: Workload) -> RunResult:
    """Run ``workload`` on the store ``spec`` names; the scratch directory is left to the caller."""
    return _Run(spec, options, workload).run()


def _check(pid: str, spec: str, options: StressOptions, workload: Workload) -> PropertyResult:
    began = time.monotonic()
    result = run_workload(spec, options, workload)
    checking = time.monotonic()
    violations = check_history(result.ops)
    check_seconds = time.monotonic() - checking
    completed = sum(1 for op in result.ops if op.complete is not None)
    rate = completed / result.seconds if result.seconds else 0.0
    options.progress(
        f"{pid}: {completed} ops in {result.seconds:.1f} s ({rate:.0f} ops/s) by "
        f"{options.workers} workers, {result.kills} kills; history checked in {check_seconds:.2f} s"
    )
    evidence = {
        "operations checked": completed,
        "workers": options.workers,
        "kills": result.kills,
        "race-window pauses": result.paused,
    }
    problems = list(result.problems)
    if not problems and completed < options.workers:
        problems.append(f"only {completed} operations completed: nothing was tested")
    if not problems and not violations:
        shutil.rmtree(result.workdir, ignore_errors=True)
        text = (
            f"{completed} operations by {options.workers} workers ({workload.name} workload, "
            f"{result.kills} kills, {result.paused} race-window pauses, seed {options.seed}): "
            "every key's history linearizable"
        )
        return PropertyResult(pid, "passed", time.monotonic() - began, text, evidence)
    first = first_reported(violations)
    lines = [
        # What a reader meets first: the violation itself (or what stopped the workers).
        problems[0] if problems else first.summary if first else "no violation recorded",
        f"{pid} ({workload.name} workload, {options.workers} workers, {result.kills} kills, "
        f"{result.paused} race-window pauses, {completed} operations; store and histories kept "
        f"in {result.workdir}):",
    ]
    lines += [f"  {p}" for p in problems]
    lines.append(format_violations(violations, seed=options.seed, origin=result.origin))
    history = drawn_history(violations, result.ops, origin=result.origin)
    artifacts: dict[str, Any] = {
        FINDINGS: history_findings(violations, result.ops, refused_second=result.refused)
    }
    if history:
        artifacts["history"] = history
    return PropertyResult(
        pid, "failed", time.monotonic() - began, "\n".join(lines), evidence, artifacts
    )


def check_m1(spec: str, options: StressOptions) -> PropertyResult:
    """M1: concurrent save/load/delete, with kills, give a linearizable history of each key."""
    return _check("M1", spec, options, M1_WORKLOAD)


def check_m2(spec: str, options: StressOptions) -> PropertyResult:
    """M2: saves racing deletes on one key never let two writers in at once (see module doc)."""
    return _check("M2", spec, options, M2_WORKLOAD)
