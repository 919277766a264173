"""D3, acknowledged offsets survive a power cut: record, explore every crash state, verify each.

1. A fleet worker opens the store on a new, empty directory and runs a workload of saves and
   deletes through the fault seam, bracketing each call with ``begin``/``ack`` marks
   (:mod:`._recording`). The trace starts before that first open: what the open creates (its
   data directory, a lock file, a database) is part of the workload, undone by a power cut
   unless the store fsynced the directory holding it.
2. The trace must explain the directory the worker left (replayed from the snapshot, it rebuilds
   every name and byte). The seam chooses the backend as for the crash points and F2: the Python
   interposer first, the syscall shim when the store's I/O is out of the interposer's sight (C
   code), strace as the fallback; each trace must pass the same test.
3. The parent replays the trace in the file-system model (:mod:`._fsmodel`) and collects every
   crash state: exhaustively where a crash point has few, sampled with the seed where it has many.
4. Each distinct directory is written out (to tmpfs when there is one) and fresh verifier
   processes (spawned: nothing cached from the worker; one per core in a long run,
   :mod:`._verifier`) open the store on each, load every key, list, and save again.
5. The oracle (:mod:`._oracle`) judges each crash state against the marks before it. A failure
   found through the interposer is confirmed at the system-call level (the shim, else strace):
   an ``fsync`` bound at import is invisible to the interposer, and must not be blamed.

A store whose I/O no tracer can see (a server, mmap'ed writes) gets "unverified" with the
reason, never a pass ("not applicable" is the runner's answer for a store not claiming ``durable``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lance_offsets.conformance._diagnosis import FINDINGS
from lance_offsets.conformance._results import Evidence, Outcome, PropertyResult

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID

from .._options import StressOptions
from ._findings import StateFindings
from ._fsmodel import (
    CrashState,
    ModelError,
    StateStream,
    Tree,
    materialise,
)
from ._oracle import (
    Failure,
    Findings,
    Key,
    Observation,
    Step,
    counts,
    drawn_crash_state,
    expectations,
    judge,
    report,
    shown,
)
from ._recording import STRACE, TRACERS, Recording
from ._recording import recording as record_workload
from ._verifier import MAX_HANGS, Lanes, VerifierError, lanes_for

PYTHON: Final = TRACERS["python"]
SHIM: Final = TRACERS["syscall"]

__all__ = [
    "Clock",
    "PowerLossRun",
    "Scratch",
    "check_d3",
    "check_recording",
    "in_scratch",
    "remove_abandoned_states",
    "run_powerloss",
    "workload",
]

#: Crash states checked at most, short and long (``MAX_STATES[options.long]``): a store that
#: never fsyncs piles up pending operations, and a few thousand of its states tell enough.
MAX_STATES: Final = (4000, 20000)
#: Crash-state directories written out at a time, and the bytes they may hold: each batch is
#: verified and removed before the next is written, so scratch space (tmpfs: memory) and the
#: states held in memory stay bounded whatever the store writes.
BATCH_STATES: Final = 256
BATCH_BYTES: Final = 32 << 20


def workload(options: StressOptions) -> list[Step]:
    """The store calls the worker makes: saves over existing values, deletes, extreme values.

    The short version is fixed (six calls on two keys); the long one draws ``8 * 6`` calls on
    four keys with ``options.seed``. Every saved value is distinct per key, so a value that went
    back in time is told apart from the acknowledged one.
    """
    a, b = (1, 2), (MAX_TOPIC_ID, MAX_CONSUMER_ID)
    if not options.long:
        return [
            Step("save", a, 5),
            Step("save", b, 9),
            Step("save", a, 60),
            Step("delete", b),
            Step("save", b, 0),
            Step("save", a, MAX_OFFSET),
        ]
    rng = random.Random(options.seed)
    keys = [a, b, (0, 0), (rng.randrange(MAX_TOPIC_ID), rng.randrange(MAX_CONSUMER_ID))]
    steps: list[Step] = []
    used: set[tuple[Key, int]] = set()
    for _ in range(48):
        key = rng.choice(keys)
        if rng.random() < 0.2:
            steps.append(Step("delete", key))
            continue
        value = rng.choice([0, MAX_OFFSET, rng.randrange(100), rng.randrange(MAX_OFFSET)])
        while (key, value) in used:
            value = rng.randrange(MAX_OFFSET)
        used.add((key, value))
        steps.append(Step("save", key, value))
    return steps


@dataclass(frozen=True)
class PowerLossRun:
    """Everything one D3 run found, for the verdict and for measurements."""

    result: PropertyResult
    states: int = 0
    directories: int = 0
    #: The crash states' stream: counts per crash point, how many were drawn of how many.
    exploration: StateStream | None = None
    #: The failing states a report can show (every failure is counted in the details).
    failures: tuple[Failure, ...] = ()
    #: Wall seconds of each phase: record, explore, verify (write the states out, open each),
    #: judge; a confirmation with strace adds its own explore, verify and judge.
    phases: tuple[tuple[str, float], ...] = ()


def check_d3(spec: str, options: StressOptions) -> PropertyResult:
    """Check D3 (acknowledged offsets survive power loss) on the store ``spec`` names."""
    return run_powerloss(spec, options).result


def run_powerloss(
    spec: str, options: StressOptions, steps: list[Step] | None = None, *, atomic: bool = False
) -> PowerLossRun:
    """Record, explore and verify; see the module docstring. Scratch files are removed after.

    :param steps: the workload (default: :func:`workload`); B1 passes one with batches.
    :param atomic: hold each batch to all old or all new too (B1, a store declaring
        ``batch_atomic``); see :func:`~._oracle.judge`.
    """

    def run(dirs: Scratch, clock: Clock) -> PowerLossRun:
        return _run(spec, options, dirs, clock, steps or workload(options), atomic=atomic)

    return in_scratch(options, run)


def in_scratch(
    options: StressOptions, run: Callable[[Scratch, Clock], PowerLossRun]
) -> PowerLossRun:
    """Call ``run`` with scratch directories made for it and removed after, whatever happens.

    Not on Linux, and when memory runs out, the answer is unverified with the reason.
    """
    clock = Clock()
    if not sys.platform.startswith("linux"):
        return _unverified(
            clock,
            f"power-loss model runs on Linux only ({sys.platform}: the interposer cannot always "
            "map descriptors to paths or fsync directories there)",
        )
    where = options.workdir or _fast_scratch() or tempfile.gettempdir()
    # The crash states are the model's output, not the store's run: where they are written
    # changes no verdict, and on tmpfs the verifier's saves cost no disk flush (the workdir,
    # pytest's tmp_path say, is on disk). The workload itself runs where the caller said.
    states_where = _fast_scratch() or where
    made: list[str] = []
    try:
        scratch = _scratch_in(where, made)
        states = scratch if states_where == where else _scratch_in(states_where, made)
        return run(Scratch(scratch, states), clock)
    except MemoryError:
        # Bounded by design (streamed states, capped batches and traces); if memory still runs
        # out, this machine is too small for the run: that is no finding about the store.
        return _unverified(
            clock,
            f"ran out of memory (seed {options.seed}): the power-loss model could not be run "
            "to the end here",
        )
    finally:
        # Also on KeyboardInterrupt: crash-state directories may be on tmpfs (memory).
        for made_dir in made:
            shutil.rmtree(made_dir, ignore_errors=True)


@dataclass(frozen=True)
class Scratch:
    """Where one run writes: the recordings (``work``) and the crash states (``states``)."""

    work: str
    states: str


def _scratch_in(where: str, made: list[str]) -> str:
    """Make a scratch directory under ``where`` owned by this process; append it to ``made``."""
    _remove_stale_scratch(where)
    scratch = tempfile.mkdtemp(prefix=_SCRATCH_PREFIX, dir=where)
    made.append(scratch)
    with open(os.path.join(scratch, _OWNER), "w", encoding="ascii") as fh:
        fh.write(str(os.getpid()))
    return scratch


_SCRATCH_PREFIX: Final = "lance-d3-"
#: A file in each scratch directory naming the process that owns it.
_OWNER: Final = "owner.pid"


def _remove_stale_scratch(where: str) -> None:
    """Remove scratch directories left by runs that died (a SIGKILL, an OOM kill) under ``where``.

    Only directories whose owner file names a process that no longer exists: a live run's, or
    one without an owner file (being created right now), is left alone.
    """
    with contextlib.suppress(OSError):
        for name in os.listdir(where):
            if not name.startswith(_SCRATCH_PREFIX):
                continue
            path = os.path.join(where, name)
            try:
                with open(os.path.join(path, _OWNER), encoding="ascii") as fh:
                    pid = int(fh.read())
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except (OSError, ValueError):
                continue


def remove_abandoned_states() -> None:
    """Remove crash-state scratch on tmpfs whose owning process is gone (an interrupted run)."""
    fast = _fast_scratch()
    if fast is not None:
        _remove_stale_scratch(fast)


class Clock:
    """Wall seconds per phase of one run, for :attr:`PowerLossRun.phases`."""

    def __init__(self) -> None:
        self.start = self.tick = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.phases.append((name, now - self.tick))
        self.tick = now


def _run(
    spec: str,
    options: StressOptions,
    where: Scratch,
    clock: Clock,
    steps: list[Step],
    *,
    atomic: bool,
) -> PowerLossRun:
    # The verifiers are started first: they import the store while the workload is recorded.
    # They never see the recording: all they get is crash-state directories, later.
    lanes = Lanes(spec, _keys(steps), where.states, lanes_for(options.long))
    lanes.spawn()
    try:
        return _recorded(spec, options, where, clock, steps, lanes=lanes, atomic=atomic)
    finally:
        lanes.close()


def _keys(steps: list[Step]) -> list[Key]:
    return sorted({s.key for s in steps})


def _recorded(
    spec: str,
    options: StressOptions,
    where: Scratch,
    clock: Clock,
    steps: list[Step],
    *,
    lanes: Lanes,
    atomic: bool,
) -> PowerLossRun:
    scratch = where.work
    recording = record_workload(spec, steps, scratch, options.seed, options.backend)
    if isinstance(recording, tuple):
        outcome, details = recording
        # The scratch directory is gone once we return: name the store's files by their names.
        for way in ("python", "syscall", STRACE, "confirm"):
            store = os.path.join(scratch, way, "store")
            details = details.replace(store + os.sep, "").replace(store, "the store's directory")
        seconds = time.monotonic() - clock.start
        result = PropertyResult("D3", _outcome(outcome), seconds, details, _NOTHING_EXPLORED)
        return PowerLossRun(result)
    clock.phase("record")
    # The recording judged on the view that saw every operation: the interposer only where the
    # shim, recording the same run beside it, saw the same (seam/_record.py); a store that
    # calls fsync through a name bound at import is recorded through the shim.
    return check_recording(
        options, steps, recording, clock, lanes=lanes, states=where.states, atomic=atomic
    )


def check_recording(
    options: StressOptions,
    steps: list[Step],
    recording: Recording,
    clock: Clock,
    *,
    lanes: Lanes,
    states: str,
    atomic: bool,
) -> PowerLossRun:
    """Explore the recording's crash states, verify each in a fresh process, judge.

    :param lanes: the verifiers (spawned, fresh); :param states: where states are written.
    """
    try:
        judging = _Judging(steps, recording, lanes, states, atomic=atomic)
        return _explore_and_verify(options, steps, recording, clock, judging)
    except ModelError as exc:
        return _unverified(clock, f"the trace cannot be modelled: {exc}")


@dataclass
class _Tally:
    """What a streamed check has counted so far."""

    states: int = 0
    judged: int = 0
    tolerated: int = 0
    directories: int = 0
    findings: Findings = dataclasses.field(default_factory=Findings)


class _Judging:
    """Crash states in, verdicts out: one batch of distinct directories on disk at a time."""

    def __init__(
        self, steps: list[Step], recording: Recording, lanes: Lanes, states: str, *, atomic: bool
    ) -> None:
        self.keys = _keys(steps)
        self.atomic = atomic
        self.expected = expectations(recording.trace, self.keys, recording.committed)
        self.saved: dict[Key, set[int]] = {}
        for step in steps:
            if step.value is not None:
                self.saved.setdefault(step.key, set()).add(step.value)
        self.tally = _Tally()
        #: What the failing states demonstrate (for the diagnosis).
        self.facts = StateFindings(recording.trace, recording.root)
        #: What the verifier saw, per distinct directory (by digest): each is opened once.
        self.observed: dict[bytes, Observation | None] = {}
        # One directory per recording: a confirmation's states never meet the first run's.
        self.states_dir = tempfile.mkdtemp(prefix="states-", dir=states)
        self.lanes = lanes
        self.batch: list[tuple[CrashState, bytes]] = []
        self.fresh: dict[bytes, Tree] = {}
        self.held = 0

    def add(self, state: CrashState, digest: bytes) -> None:
        """Judge ``state`` (its tree's :func:`tree_digest` is ``digest``), batching it if new."""
        self.tally.states += 1
        if digest in self.observed:
            self._judge(state, self.observed[digest])
        elif self.lanes.exhausted:
            self.observed[digest] = None  # not verified: the store hung on MAX_HANGS states
        else:
            self.batch.append((state, digest))
            if digest not in self.fresh:
                self.fresh[digest] = state.tree
                self.held += sum(len(c) for _, c in state.tree if c is not None)
            if len(self.fresh) >= BATCH_STATES or self.held >= BATCH_BYTES:
                self.flush()

    def _judge(self, state: CrashState, seen: Observation | None) -> None:
        if seen is None:
            return
        self.tally.judged += 1
        verdict = judge(
            seen,
            self.expected[state.point + 1],
            self.keys,
            self.saved,
            atomic=self.atomic,
            trust_list=self.lanes.listing_wrong is None,
        )
        self.tally.tolerated += bool(verdict.tolerated) and not verdict.problems
        if verdict.problems:
            self.tally.findings.add(state, verdict, seen)
            self.facts.add(state, verdict)

    def flush(self) -> None:
        """Write the batch's directories out, verify them, remove them, judge its states."""
        digests, trees = list(self.fresh), list(self.fresh.values())
        first = self.tally.directories
        dirs = [os.path.join(self.states_dir, str(first + n)) for n in range(len(trees))]
        self.tally.directories += len(dirs)

        def prepare(i: int) -> None:
            os.makedirs(dirs[i])
            materialise(trees[i], dirs[i])

        try:
            seen = self.lanes.observe(dirs, prepare)
        finally:
            for where in dirs:
                shutil.rmtree(where, ignore_errors=True)
        self.observed.update(zip(digests, seen, strict=True))
        for state, digest in self.batch:
            self._judge(state, self.observed[digest])
        self.batch.clear()
        self.fresh.clear()
        self.held = 0


def _explore_and_verify(
    options: StressOptions,
    steps: list[Step],
    recording: Recording,
    clock: Clock,
    judging: _Judging,
) -> PowerLossRun:
    budget = 128 if options.long else 48
    try:
        stream = StateStream(
            recording.trace, recording.root, recording.initial, seed=options.seed,
            budget=budget, cap=MAX_STATES[options.long], tear=options.tear_size,
        )  # fmt: skip
        clock.phase("explore")
        for state, digest in stream.digested():
            judging.add(state, digest)
        if judging.batch:
            judging.flush()
    except VerifierError as exc:
        return _failed(clock, f"the power-loss verifier failed (seed {options.seed}): {exc}")
    finally:
        judging.lanes.close()  # before the clock stops: reaping them is part of the check
    clock.phase("verify")
    return _verdict(options, len(steps), recording, clock, stream=stream, judging=judging)


def _verdict(
    options: StressOptions,
    calls: int,
    recording: Recording,
    clock: Clock,
    *,
    stream: StateStream,
    judging: _Judging,
) -> PowerLossRun:
    root, trace, tracer = recording.root, recording.trace, recording.tracer
    keys, expected, tally = judging.keys, judging.expected, judging.tally
    seconds = time.monotonic() - clock.start
    summary = (
        f"{_counted(tally.states, stream)} ({tally.directories} distinct directories) at "
        f"{stream.points} crash points ({stream.exhaustive_points} exhaustive, "
        f"{stream.sampled_points} sampled), {calls} store calls traced by {tracer}, "
        f"writes torn {_tears(options.tear_size)}, seed {options.seed}, "
        f"{seconds:.1f} s ({tally.states / seconds:.0f} states/s)"
    )
    if tally.judged < tally.states:
        summary += (
            f"; {tally.states - tally.judged} states not verified: the store hung or died on "
            f"{MAX_HANGS} states first"
        )
        lanes = judging.lanes.count
        summary += f" in each of its {lanes} verifier processes" if lanes > 1 else ""
    if judging.lanes.listing_wrong:
        summary += f"; {judging.lanes.listing_wrong}"
    options.progress(f"D3: {summary}")
    # Exhaustive: every crash point enumerated, and no state dropped by the cap.
    exhaustive = stream.sampled_points == 0 and stream.drawn == stream.candidates
    evidence: dict[str, int | float | str] = {
        "crash points": stream.points,
        "states explored": tally.judged,
        "exhaustive": "yes" if exhaustive else "no",
        "tracer": _EVIDENCE_TRACER.get(tracer, tracer),
        "tear size": options.tear_size,
    }
    if recording.judged and recording.judged != tracer:
        evidence["tracing"] = recording.judged  # which view judged, and why that one
    findings = tally.findings
    if findings.failed:
        details = report(
            findings,
            trace,
            expected,
            seen_by=findings.seen_by,
            keys=keys,
            checked=tally.judged,
            tolerated=tally.tolerated,
            summary=summary,
        )
        states_dir = judging.states_dir

        def clean(text: str) -> str:
            # Scratch paths are gone once we return: show paths relative to the store's root.
            text = text.replace(root + os.sep, "").replace(states_dir + os.sep, "state ")
            return text.replace(f"mark {root} ", "mark: ").replace(root, ".")

        worst = shown(findings.kept)[0]
        drawn = drawn_crash_state(
            worst,
            trace,
            expected[worst[0].point + 1],
            findings.seen_by[worst[0].tree],
            keys,
            clean=clean,
        )
        # The first line is the violation: the worst state's worst problem, and where the cut was.
        state, verdict = worst
        at = trace[state.point] if state.point >= 0 else "the first operation"
        headline = f"{verdict.problems[0].text} (a power cut after {at})"
        artifacts = {"crash_state": drawn, FINDINGS: judging.facts.findings(clean)}
        text = clean(f"{headline}\n{details}")
        result = PropertyResult("D3", "failed", seconds, text, evidence, artifacts)
    else:
        text = f"checked {summary}"
        if tally.tolerated:
            text += f"; {counts([], tally.tolerated)}"
        result = PropertyResult("D3", "passed", seconds, text, evidence)
    clock.phase("judge")
    return PowerLossRun(
        result,
        tally.states,
        tally.directories,
        stream,
        tuple(findings.kept),
        tuple(clock.phases),
    )


#: How the evidence names each tracer.
_EVIDENCE_TRACER: Final = {PYTHON: "interposer", SHIM: "syscall shim", STRACE: "strace"}


def _tears(size: int) -> str:
    return "at any byte" if size == 1 else f"at {size}-byte sectors"


def _outcome(name: str) -> Outcome:
    return "failed" if name == "failed" else "unverified"


def _counted(states: int, stream: StateStream) -> str:
    if stream.drawn == stream.candidates:
        return f"{states} crash states"
    return (
        f"{states:,} of {stream.candidates:,} candidate crash states (drawn with the seed; "
        f"the model allows about {stream.estimated:.2g} in all)"
    )


def _fast_scratch() -> str | None:
    """Prefer tmpfs: the states are scratch, and the verifier's saves fsync (free on tmpfs)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _failed(clock: Clock, details: str) -> PowerLossRun:
    seconds = time.monotonic() - clock.start
    return PowerLossRun(PropertyResult("D3", "failed", seconds, details))


#: The evidence of a run that explored no crash state (no trace to explore).
_NOTHING_EXPLORED: Final[Evidence] = {
    "crash points": 0,
    "states explored": 0,
    "exhaustive": "no",
    "tracer": "none",
}


def _unverified(clock: Clock, reason: str) -> PowerLossRun:
    """D3 is claimed (the runner checked) but cannot be exercised here: say why, never pass."""
    seconds = time.monotonic() - clock.start
    return PowerLossRun(PropertyResult("D3", "unverified", seconds, reason, _NOTHING_EXPLORED))
