"""D3, acknowledged offsets survive a power cut: record, explore every crash state, verify each.

1. A worker process opens the store once (untraced: what it creates on open is taken as durable),
   snapshots the directory, then runs a workload of saves and deletes under the interposer
   (:func:`~._interpose.traced`), bracketing each call with ``begin``/``ack`` marks.
2. The trace must explain the directory the worker left (replayed from the snapshot, it rebuilds
   every name and byte); otherwise the store's I/O is out of the interposer's sight (C code) and
   the workload runs again under strace (:mod:`._strace`), whose trace must pass the same test.
3. The parent replays the trace in the file-system model (:mod:`._fsmodel`) and collects every
   crash state: exhaustively where a crash point has few, sampled with the seed where it has many.
4. Each distinct directory is written out, and one fresh verifier process (spawned: nothing cached
   from the worker) opens the store on each, loads every key, lists, and saves again.
5. The oracle (:mod:`._powerloss_oracle`) judges each crash state against the marks before it.
   A failure found through the interposer is confirmed with strace when it is installed (an
   ``fsync`` bound at import is invisible to the interposer, and must not be blamed).

A store whose I/O neither tracer can see (a server, mmap'ed writes) gets "unverified" with the
reason, never a pass ("not applicable" is the runner's answer for a store not claiming ``durable``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from lance_offsets.conformance._results import Evidence, Outcome, PropertyResult

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID

from ._fsmodel import CrashState, Exploration, ModelError, Tree, explore, materialise, replay
from ._options import StressOptions
from ._powerloss_oracle import (
    Failure,
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
from ._powerloss_workers import record, verify
from ._procs import running
from ._trace import TraceOp

__all__ = ["PowerLossRun", "check_d3", "run_powerloss", "workload"]

#: Seconds the traced worker may take before the check gives up on it (a hung store).
PROCESS_SECONDS: Final = 120.0
#: Seconds the verifier may spend on one crash state (open, read, save again) without progress
#: before the store counts as hung on it.
STATE_SECONDS: Final = 30.0
#: States the store may hang or die on before the verifier stops trying the rest (each hang
#: costs :data:`STATE_SECONDS`).
MAX_HANGS: Final = 3

#: Crash states checked at most, short and long (``MAX_STATES[options.long]``): a store that
#: never fsyncs piles up pending operations, and a few thousand of its states tell enough.
MAX_STATES: Final = (4000, 20000)

#: Operations that change what a power cut can leave; a trace with none saw no store I/O.
_WRITING: Final = frozenset({"write", "truncate", "rename", "replace", "unlink", "mkdir"})


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


def _in_process(target: Any, *args: Any) -> str | None:
    """Run ``target(*args)`` in a fresh spawned process; return a complaint if it did not finish."""
    with running(target, *args, name=target.__name__) as proc:
        proc.join(PROCESS_SECONDS)
        if proc.is_alive():
            return f"{target.__name__} process still running after {PROCESS_SECONDS} s"
        if proc.exitcode != 0:
            return f"{target.__name__} process exited with code {proc.exitcode}"
    return None


@dataclass(frozen=True)
class PowerLossRun:
    """Everything one D3 run found, for the verdict and for measurements."""

    result: PropertyResult
    states: int = 0
    directories: int = 0
    exploration: Exploration | None = None
    failures: tuple[Failure, ...] = ()
    #: Wall seconds of each phase: record, explore, verify (write the states out, open each),
    #: judge; a confirmation with strace adds its own explore, verify and judge.
    phases: tuple[tuple[str, float], ...] = ()


def check_d3(spec: str, options: StressOptions) -> PropertyResult:
    """Check D3 (acknowledged offsets survive power loss) on the store ``spec`` names."""
    return run_powerloss(spec, options).result


def run_powerloss(spec: str, options: StressOptions) -> PowerLossRun:
    """Record, explore and verify; see the module docstring. Scratch files are removed after."""
    clock = _Clock()
    if not sys.platform.startswith("linux"):
        return _unverified(
            clock,
            f"power-loss model runs on Linux only ({sys.platform}: the interposer cannot always "
            "map descriptors to paths or fsync directories there)",
        )
    scratch = tempfile.mkdtemp(prefix="lance-d3-", dir=options.workdir or _fast_scratch())
    try:
        return _run(spec, options, scratch, clock)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Clock:
    """Wall seconds per phase of one run, for :attr:`PowerLossRun.phases`."""

    def __init__(self) -> None:
        self.start = self.tick = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.phases.append((name, now - self.tick))
        self.tick = now


def _record_trace(spec: str, root: str, steps: list[Step], scratch: str) -> dict[str, Any]:
    out = os.path.join(scratch, "trace.pickle")
    complaint = _in_process(record, spec, root, steps, out)
    if complaint and "still running" in complaint:
        calls = ", ".join(str(step) for step in steps)
        complaint += (
            f" (the store hung during the traced workload ({calls}), before any crash state "
            "existed: a lock never released? an unbounded retry?)"
        )
    recorded: dict[str, Any] = {}
    if os.path.exists(out):
        with open(out, "rb") as fh:
            recorded = pickle.load(fh)
    if complaint:
        recorded.setdefault("error", complaint)
    return recorded


def _record_strace(spec: str, root: str, steps: list[Step], scratch: str) -> dict[str, Any]:
    """Run the workload under strace in a fresh interpreter; return tree and parsed trace."""
    from ._strace import StraceError, parse, strace_command

    out, log = os.path.join(scratch, "strace.pickle"), os.path.join(scratch, "strace.log")
    args = os.path.join(scratch, "strace-args.pickle")
    with open(args, "wb") as fh:
        pickle.dump((spec, root, steps, out), fh)
    try:
        command = strace_command(log)
    except StraceError as exc:
        return {"unavailable": str(exc)}
    worker = [sys.executable, "-m", "lance_offsets.stress._powerloss_workers", args]
    try:
        done = subprocess.run(
            [*command, *worker],
            cwd=scratch,
            capture_output=True,
            timeout=PROCESS_SECONDS,
            check=False,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the strace'd worker ran longer than {PROCESS_SECONDS} s"}
    if not os.path.exists(out):
        tail = done.stderr.decode(errors="replace")[-600:]
        return {"unavailable": f"strace exited with code {done.returncode}: {tail}"}
    with open(out, "rb") as fh:
        recorded: dict[str, Any] = pickle.load(fh)
    if "error" not in recorded:
        try:
            with open(log, encoding="latin-1") as fh:
                recorded["trace"] = parse(fh, root, recorded["initial"], cwd=scratch)
        except StraceError as exc:
            return {"unavailable": str(exc)}
    return recorded


def _child_env() -> dict[str, str]:
    """Return the strace'd worker's environment: this process's ``sys.path`` as PYTHONPATH.

    Spawned workers inherit ``sys.path``; a plain subprocess needs it spelled out (the CLI puts
    the working directory there, which is where a user's store module usually is).
    """
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _observe(
    spec: str, trees: list[Tree], keys: list[Key], scratch: str
) -> list[Observation | None]:
    """Write each tree out and open the store on it in a fresh verifier process.

    A state the store hangs on (no progress for :data:`STATE_SECONDS`) or dies on gets an
    observation saying so, and a new verifier carries on with the states after it, until
    :data:`MAX_HANGS` such states; the states left after that stay None (not verified).
    """
    dirs = []
    for number, tree in enumerate(trees):
        where = os.path.join(scratch, "states", str(number))
        os.makedirs(where)
        materialise(tree, where)
        dirs.append(where)
    seen: list[Observation | None] = [None] * len(dirs)
    start, stops = 0, 0
    while start < len(dirs) and stops < MAX_HANGS:
        out = os.path.join(scratch, f"seen-{start}.pickle")
        stopped = _verify_some(spec, dirs[start:], keys, out)
        doing: tuple[int, str] | None = None
        for tag, index, payload in _records(out):
            if tag == "seen":
                seen[start + index] = payload
            else:
                doing = index, payload
        if stopped is None:
            break
        if doing is None or seen[start + doing[0]] is not None:
            # It stopped outside any store call: the verifier itself failed (an import?).
            if stopped == "hung":
                stopped = f"no progress for {PROCESS_SECONDS:g} s before opening any state"
            raise _VerifierError(f"{stopped} (importing the store?)")
        index, what = doing
        if stopped == "hung":
            seen[start + index] = Observation(hung=what)
        else:
            seen[start + index] = Observation(died=f"{what}: {stopped}")
        start, stops = start + index + 1, stops + 1
    return seen


def _verify_some(spec: str, dirs: list[str], keys: list[Key], out: str) -> str | None:
    """Run one verifier on ``dirs``; return None, "hung", or why it stopped on its own."""
    with running(verify, spec, dirs, keys, out, name="verify") as proc:
        size, moved = -1, time.monotonic()
        while True:
            proc.join(0.5)  # returns at once when the verifier exits: no cost on a quick store
            if not proc.is_alive():
                break
            now_size = os.path.getsize(out) if os.path.exists(out) else 0
            # Starting a process and importing the store is not the store hanging on a state:
            # that gets the worker's allowance, each state after it STATE_SECONDS.
            allowed = STATE_SECONDS if now_size else PROCESS_SECONDS
            if now_size != size:
                size, moved = now_size, time.monotonic()
            elif time.monotonic() - moved > allowed:
                return "hung"  # ``running`` kills it on the way out
        if proc.exitcode != 0:
            return f"the verifier process exited with code {proc.exitcode}"
    return None


def _records(path: str) -> list[Any]:
    """Every record a verifier appended to ``path`` (the last may be cut short by a kill)."""
    found: list[Any] = []
    if not os.path.exists(path):
        return found
    with open(path, "rb") as fh:
        while True:
            try:
                found.append(pickle.load(fh))
            except Exception:  # the end, or a record cut short when the verifier was killed
                return found


class _VerifierError(RuntimeError):
    pass


@dataclass(frozen=True)
class _Recording:
    root: str
    initial: Tree
    trace: list[TraceOp]
    tracer: str
    #: Where this recording's crash states are written out.
    work: str = ""


def _recording(
    spec: str, steps: list[Step], scratch: str, seed: int
) -> _Recording | tuple[Outcome, str]:
    """Trace the workload (interposer first, strace when it sees nothing), or say why not."""
    root = os.path.realpath(os.path.join(scratch, "store"))
    os.mkdir(root)
    recorded = _record_trace(spec, root, steps, scratch)
    if "error" in recorded:
        return "failed", f"the power-loss worker failed (seed {seed}):\n{recorded['error']}"
    reason = _untraceable(recorded, root)
    if not reason:
        return _Recording(
            root, recorded["initial"], recorded["trace"], "the Python interposer", scratch
        )
    # The store's I/O is out of the interposer's sight: follow its system calls instead.
    return _strace_recording(spec, steps, os.path.join(scratch, "strace"), seed, reason)


def _strace_recording(
    spec: str, steps: list[Step], work: str, seed: int, reason: str
) -> _Recording | tuple[Outcome, str]:
    os.mkdir(work)
    root = os.path.realpath(os.path.join(work, "store"))
    os.mkdir(root)
    recorded = _record_strace(spec, root, steps, work)
    if "unavailable" in recorded:
        return "unverified", f"{reason}; strace cannot help: {recorded['unavailable']}"
    if "error" in recorded:
        return "failed", f"the strace'd worker failed (seed {seed}):\n{recorded['error']}"
    incomplete = _untraceable(recorded, root)
    if incomplete:
        return "unverified", f"{reason}; under strace too: {incomplete}"
    return _Recording(root, recorded["initial"], recorded["trace"], "strace", work)


def _run(spec: str, options: StressOptions, scratch: str, clock: _Clock) -> PowerLossRun:
    steps = workload(options)
    recording = _recording(spec, steps, scratch, options.seed)
    if isinstance(recording, tuple):
        outcome, details = recording
        seconds = time.monotonic() - clock.start
        return PowerLossRun(PropertyResult("D3", outcome, seconds, details, _NOTHING_EXPLORED))
    clock.phase("record")
    run = _check(spec, options, steps, recording, clock)
    if run.result.outcome != "failed" or not run.failures or recording.tracer == "strace":
        return run
    # A store that calls fsync through a name bound at import (``from os import fsync``) hides
    # it from the interposer, and the model would blame it for a sync it made. strace sees
    # every system call: a failure stands only if strace's trace fails too.
    work = os.path.join(scratch, "confirm")
    second = _strace_recording(spec, steps, work, options.seed, "confirming the failure")
    if isinstance(second, tuple):
        note = f"\n(not confirmed with strace: {second[1]})"
        return dataclasses.replace(run, result=_amended(run.result, clock, suffix=note))
    if _syncs(second.trace, second.root) == _syncs(recording.trace, recording.root):
        note = "\nconfirmed with strace: it shows the same fsyncs, and no other"
        return dataclasses.replace(run, result=_amended(run.result, clock, suffix=note))
    confirmed = _check(spec, options, steps, second, clock)
    if confirmed.result.outcome == "failed":
        note = f"\nconfirmed with strace: {confirmed.result.details.splitlines()[0]}"
        return dataclasses.replace(run, result=_amended(run.result, clock, suffix=note))
    prefix = (
        "the Python interposer's trace missed some of the store's I/O (an fsync bound at import?),"
        " so the verdict comes from strace's trace, which sees every system call: "
    )
    return dataclasses.replace(confirmed, result=_amended(confirmed.result, clock, prefix=prefix))


def _syncs(trace: Sequence[TraceOp], root: str) -> list[tuple[str, str]]:
    """Return the trace's fsyncs in order, by kind and path under ``root``."""
    kinds = ("fsync", "fdatasync")
    return [(op.kind, os.path.relpath(op.path, root)) for op in trace if op.kind in kinds]


def _amended(
    result: PropertyResult, clock: _Clock, *, prefix: str = "", suffix: str = ""
) -> PropertyResult:
    seconds = time.monotonic() - clock.start
    details = prefix + result.details + suffix
    return dataclasses.replace(result, seconds=seconds, details=details)


def _check(
    spec: str, options: StressOptions, steps: list[Step], recording: _Recording, clock: _Clock
) -> PowerLossRun:
    """Explore the recording's crash states, verify each in a fresh process, judge."""
    root, trace, tracer, scratch = recording.root, recording.trace, recording.tracer, recording.work
    try:
        budget = 128 if options.long else 48
        found = explore(trace, root, recording.initial, seed=options.seed, budget=budget)
    except ModelError as exc:
        return _unverified(clock, f"the trace cannot be modelled: {exc}")
    clock.phase("explore")
    keys = sorted({s.key for s in steps})
    states = _capped(found.states, MAX_STATES[options.long], options.seed)
    trees = list(dict.fromkeys(s.tree for s in states))
    try:
        seen = _observe(spec, trees, keys, scratch)
    except _VerifierError as exc:
        return _failed(clock, f"the power-loss verifier failed (seed {options.seed}): {exc}")
    clock.phase("verify")
    by_tree = {t: o for t, o in zip(trees, seen, strict=True) if o is not None}
    expected = expectations(trace, keys)
    saved: dict[Key, set[int]] = {}
    for step in steps:
        if step.value is not None:
            saved.setdefault(step.key, set()).add(step.value)
    failures: list[Failure] = []
    tolerated = 0
    judged = [s for s in states if s.tree in by_tree]
    for state in judged:
        verdict = judge(by_tree[state.tree], expected[state.point + 1], keys, saved)
        tolerated += bool(verdict.tolerated) and not verdict.problems
        if verdict.problems:
            failures.append((state, verdict))
    clock.phase("judge")
    seconds = time.monotonic() - clock.start
    summary = (
        f"{_counted(states, found)} ({len(trees)} distinct directories) at "
        f"{found.points} crash points ({found.exhaustive_points} exhaustive, "
        f"{found.sampled_points} sampled), {len(steps)} store calls traced by {tracer}, "
        f"seed {options.seed}, "
        f"{seconds:.1f} s ({len(states) / seconds:.0f} states/s)"
    )
    if len(judged) < len(states):
        summary += (
            f"; {len(states) - len(judged)} states not verified: the store hung or died on "
            f"{MAX_HANGS} states first"
        )
    options.progress(f"D3: {summary}")
    # Exhaustive: every crash point enumerated, and no state dropped by the cap.
    exhaustive = found.sampled_points == 0 and len(states) == len(found.states)
    evidence: Evidence = {
        "crash points": found.points,
        "states explored": len(judged),
        "exhaustive": "yes" if exhaustive else "no",
        "tracer": "strace" if tracer == "strace" else "interposer",
    }
    if failures:
        details = report(
            failures,
            trace,
            expected,
            seen_by=by_tree,
            keys=keys,
            checked=len(judged),
            tolerated=tolerated,
            summary=summary,
        )
        states_dir = os.path.join(scratch, "states")

        def clean(text: str) -> str:
            # Scratch paths are gone once we return: show paths relative to the store's root.
            text = text.replace(root + os.sep, "").replace(states_dir + os.sep, "state ")
            return text.replace(f"mark {root} ", "mark: ").replace(root, ".")

        worst = shown(failures)[0]
        drawn = drawn_crash_state(
            worst, trace, expected[worst[0].point + 1], by_tree[worst[0].tree], keys, clean=clean
        )
        result = PropertyResult(
            "D3", "failed", seconds, clean(details), evidence, {"crash_state": drawn}
        )
    else:
        text = f"checked {summary}"
        if tolerated:
            text += f"; {counts([], tolerated)}"
        result = PropertyResult("D3", "passed", seconds, text, evidence)
    return PowerLossRun(
        result, len(states), len(trees), found, tuple(failures), tuple(clock.phases)
    )


def _capped(states: tuple[CrashState, ...], cap: int, seed: int) -> tuple[CrashState, ...]:
    """Keep at most ``cap`` states, drawn with the seed, in trace order."""
    if len(states) <= cap:
        return states
    kept = sorted(random.Random(seed).sample(range(len(states)), cap))
    return tuple(states[i] for i in kept)


def _counted(states: tuple[CrashState, ...], found: Exploration) -> str:
    if len(states) == len(found.states):
        return f"{len(states)} crash states"
    return f"{len(states)} of {len(found.states)} crash states (drawn with the seed)"


def _fast_scratch() -> str | None:
    """Prefer tmpfs: the states are scratch, and the verifier's saves fsync (free on tmpfs)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _untraceable(recorded: dict[str, Any], root: str) -> str | None:
    """Return why the recorded trace cannot be trusted to hold all the store's I/O, if it cannot."""
    trace: list[TraceOp] = recorded["trace"]
    audit = [op for op in trace if op.note == "audit"]
    if audit:
        return (
            "the store calls file-system functions the interposer cannot wrap (bound at import "
            f"or made from C), so its fsyncs would be invisible; first: {audit[0]}"
        )
    if not any(op.kind in _WRITING and op.error is None for op in trace):
        return (
            f"the trace shows no file-system write under {root}: the store's I/O cannot be traced "
            "(a C extension or a server?)"
        )
    # Replaying the trace must rebuild the directory the worker left, byte for byte; otherwise
    # some I/O went unseen (C code, mmap) and the model would judge a store it cannot see.
    try:
        replayed = dict(replay(trace, root, recorded["initial"]))
    except ModelError as exc:
        return f"the trace cannot be replayed on the directory it started from: {exc}"
    final = dict(recorded["final"])
    for path in sorted(set(replayed) | set(final)):
        on_disk, traced = final.get(path, _ABSENT), replayed.get(path, _ABSENT)
        if on_disk != traced:
            return (
                f"the trace does not explain the directory the store left: {path} holds "
                f"{_short(on_disk)} on disk, {_short(traced)} by the trace (I/O the tracer "
                "cannot see)"
            )
    return None


_ABSENT: Final = b"<absent>"


def _short(content: bytes | None) -> str:
    if content == _ABSENT:
        return "nothing"
    if content is None:
        return "a directory"
    return repr(content) if len(content) < 40 else f"{len(content)} bytes"


def _failed(clock: _Clock, details: str) -> PowerLossRun:
    seconds = time.monotonic() - clock.start
    return PowerLossRun(PropertyResult("D3", "failed", seconds, details))


#: The evidence of a run that explored no crash state (no trace to explore).
_NOTHING_EXPLORED: Final[Evidence] = {
    "crash points": 0,
    "states explored": 0,
    "exhaustive": "no",
    "tracer": "none",
}


def _unverified(clock: _Clock, reason: str) -> PowerLossRun:
    """D3 is claimed (the runner checked) but cannot be exercised here: say why, never pass."""
    seconds = time.monotonic() - clock.start
    return PowerLossRun(PropertyResult("D3", "unverified", seconds, reason, _NOTHING_EXPLORED))
