"""One run under server faults: handles commit in threads while a driver injects faults.

Each worker is a thread with its own handle (``factory(path)``), running the seeded schedule of
:func:`lance_offsets.stress.concurrency._campaign.plan` on a few shared keys and recording every
operation as an :class:`~lance_offsets.stress.concurrency._history.Op`. Threads, not processes: the
store's work happens in the server, the client's only job is to send requests and hear replies, and
a thread blocked on a socket releases the GIL like any client would. After each fault clears, a
fresh handle loads every key (a *verifier*, recorded under its own worker number), so an
acknowledged commit the fault lost is seen even when no worker happens to read that key again.

A fault is a :class:`Window` of time. :func:`excuse` then makes the operations a fault touched
indeterminate, the same notion as a killed worker's last call (``Op.indeterminate``): an operation
that raised while a window was open, or the first one that raised on a handle after a window (a
client learns that its connection died only when it next uses it). Any other exception stays what
the history checker calls it: undocumented, a violation.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from lance_offsets.conformance._spec import load_factory

from ..concurrency._campaign import Workload, plan
from ..concurrency._history import Key, Op, OpKind

__all__ = ["SERVER_WORKLOAD", "RunRecord", "Window", "excuse", "run_with_faults"]

#: A few shared keys, the largest one included; saves dominate (commits are what faults lose),
#: loads see what survived, a few deletes.
SERVER_WORKLOAD: Final = Workload(
    "servers", ((1, 23), (12, 3), (2**32 - 1, 2**64 - 1)), 0.5, 0.42, 0.08, kills=False
)
#: Worker numbers of verifiers start here (workers count from 0).
VERIFIER_BASE: Final = 1000
#: Seconds a worker waits after an operation raised (a client's back-off, not a busy loop).
BACKOFF: Final = 0.01
#: Seconds workers may take to open their handles.
READY_SECONDS: Final = 120.0
#: Seconds a worker may take past the deadline before it counts as stuck.
STUCK_SECONDS: Final = 30.0
#: Seconds the workers go on after the last fault (every handle it touched is used again).
TAIL: Final = 0.3
#: Seconds a fault may take to clear after its injector returned: the window stays open until
#: a fresh handle answers a load (:meth:`_Run.answered`).
ANSWER_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Window:
    """A fault in force from ``start`` to ``end`` (monotonic seconds); ``kind`` names it."""

    kind: str
    start: float
    end: float


@dataclass
class RunRecord:
    """What a run produced: operations, fault windows, and worker-level problems."""

    ops: list[Op]
    windows: list[Window]
    origin: float
    problems: list[str] = field(default_factory=list)
    #: What kept the run from judging the store (the server never answered after a restart):
    #: the verdict is then unverified, never failed.
    harness: list[str] = field(default_factory=list)


def excuse(ops: Sequence[Op], windows: Sequence[Window]) -> list[Op]:
    """Return ``ops`` with the operations a fault touched made indeterminate (module docstring)."""
    by_worker: dict[int, list[Op]] = {}
    for op in sorted(ops, key=lambda o: (o.worker, o.seq)):
        by_worker.setdefault(op.worker, []).append(op)
    excused: list[Op] = []
    for mine in by_worker.values():
        since = mine[0].invoke  # a window before the worker began never touched its handle
        for op in mine:
            if op.outcome == "ok":
                since = op.complete if op.complete is not None else since
                excused.append(op)
                continue
            end = op.complete if op.complete is not None else float("inf")
            during = any(w.start <= end and op.invoke <= w.end for w in windows)
            after = any(since <= w.start <= op.invoke for w in windows)
            if after and not during:
                # One raise per handle after a window: the handle must then work again.
                since = end
            # Forgotten like a killed worker's call: no completion, no result, no exception.
            excused.append(replace(op.indeterminate(), error=None) if during or after else op)
    return excused


def _op(  # noqa: PLR0917 (one positional per Op field, in Op's order)
    worker: int,
    seq: int,
    kind: OpKind,
    key: Key,
    value: int | None,
    invoke: float,
    error: BaseException | None,
    result: int | None = None,
) -> Op:
    """The operation just completed: ``ok`` with its result, or ``info`` with the exception."""
    now = time.monotonic()
    if error is None:
        return Op(worker, seq, kind, key, value, invoke, now, "ok", result)
    return Op(
        worker, seq, kind, key, value, invoke, now, "info", None, f"{type(error).__name__}: {error}"
    )


class _Worker(threading.Thread):
    def __init__(self, run: _Run, worker: int) -> None:
        super().__init__(name=f"server-fault-w{worker}", daemon=True)
        self.run_ = run
        self.worker = worker
        self.ops: list[Op] = []
        self.problem: str | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        run = self.run_
        try:
            store = run.factory(run.store_dir)
        except Exception as exc:
            self.problem = f"worker {self.worker} could not open the store: {exc!r}"
            return
        finally:
            self.ready.set()
        run.go.wait()
        try:
            for seq, kind, key, value in plan(run.seed, SERVER_WORKLOAD, self.worker):
                if time.monotonic() >= run.deadline:
                    break
                if not self.step(store, seq, kind, key, value):
                    time.sleep(BACKOFF)
        finally:
            with contextlib.suppress(Exception):
                store.close()

    def step(self, store: Any, seq: int, kind: OpKind, key: Key, value: int | None) -> bool:
        invoke = time.monotonic()
        result = None
        try:
            if kind == "save":
                assert value is not None
                store.save(key[0], key[1], value)
            elif kind == "load":
                result = store.load(key[0], key[1])
            else:
                store.delete(key[0], key[1])
        except Exception as exc:
            self.ops.append(_op(self.worker, seq, kind, key, value, invoke, exc))
            return False
        self.ops.append(_op(self.worker, seq, kind, key, value, invoke, None, result))
        return True


class _Run:
    def __init__(self, spec: str, seed: int, seconds: float, workdir: str | None) -> None:
        self.factory: Callable[[str], Any] = load_factory(spec)
        self.seed = seed
        self.root = tempfile.mkdtemp(prefix="lance-servers-", dir=workdir)
        self.store_dir = self.root + "/store"
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds + READY_SECONDS
        self.go = threading.Event()  # every handle is open before the first fault
        self.verifiers = 0

    def answered(self, key: Key, seconds: float) -> float | str:
        """When a fresh handle first answered a load of ``key``; else the last error it met.

        A fault clears when the server answers, not when its injector returns: a declaration's
        ``start()`` may return before the restarted server accepts connections (one whose
        check for "listening" met the killed server's socket, still open while its threads
        exit), and a call refused in that gap is the fault's doing, not the store's.
        """
        give_up = time.monotonic() + seconds
        while True:
            try:
                store = self.factory(self.store_dir)
                try:
                    store.load(key[0], key[1])
                finally:
                    with contextlib.suppress(Exception):
                        store.close()
            except Exception as exc:
                if time.monotonic() >= give_up:
                    return f"{type(exc).__name__}: {exc}"
                time.sleep(BACKOFF)
                continue
            return time.monotonic()

    def verify(self, keys: Sequence[Key]) -> list[Op]:
        """A fresh handle loads every key; its loads join the history."""
        worker = VERIFIER_BASE + self.verifiers
        self.verifiers += 1
        ops: list[Op] = []
        invoke = time.monotonic()
        try:
            store = self.factory(self.store_dir)
        except Exception as exc:
            return [_op(worker, 1, "load", keys[0], None, invoke, exc)]
        try:
            for seq, key in enumerate(keys, 1):
                invoke = time.monotonic()
                try:
                    result = store.load(key[0], key[1])
                except Exception as exc:
                    ops.append(_op(worker, seq, "load", key, None, invoke, exc))
                    continue
                ops.append(_op(worker, seq, "load", key, None, invoke, None, result))
        finally:
            with contextlib.suppress(Exception):
                store.close()
        return ops


def run_with_faults(
    spec: str,
    *,
    seed: int,
    workers: int,
    seconds: float,
    inject: Callable[[random.Random, float], Window | None],
    settle: Callable[[], None],
    workdir: str | None = None,
    faults: int | None = None,
) -> RunRecord:
    """Run ``workers`` threads for ``seconds`` while ``inject`` makes faults; then check all keys.

    :param inject: called repeatedly with the run's seeded random source and the seconds left;
        it sleeps, injects one fault, clears it, and returns its window (None: no time left).
    :param settle: called once at the end, before the last verifier: no fault from then on.
    :param faults: stop after this many faults (the quick profile's short run); ``seconds`` is
        then only a bound. The workers go on for :data:`TAIL` seconds after the last fault, so
        the handles it touched are used again once it cleared.
    """
    run = _Run(spec, seed, seconds, workdir)
    rng = random.Random(f"{seed}:servers:faults")
    threads = [_Worker(run, w) for w in range(workers)]
    windows: list[Window] = []
    harness: list[str] = []
    extra: list[Op] = []
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.ready.wait(READY_SECONDS)
        origin = time.monotonic()
        run.deadline = origin + run.seconds
        run.go.set()
        while time.monotonic() < run.deadline and (faults is None or len(windows) < faults):
            window = inject(rng, run.deadline - time.monotonic())
            if window is None:
                break
            answered = run.answered(SERVER_WORKLOAD.keys[0], ANSWER_SECONDS)
            if isinstance(answered, str):
                windows.append(window)
                harness.append(
                    f"after a {window.kind} fault, no fresh handle answered a load within "
                    f"{ANSWER_SECONDS:g} s (last: {answered}): the server did not come back, "
                    "see its declaration's start()"
                )
                break
            windows.append(replace(window, end=max(window.end, answered)))
            extra += run.verify(SERVER_WORKLOAD.keys)
        run.deadline = min(run.deadline, time.monotonic() + TAIL)
        problems = []
        for thread in threads:
            thread.join(max(0.0, run.deadline + STUCK_SECONDS - time.monotonic()))
            if thread.is_alive():
                doing = thread.ops[-1].describe() if thread.ops else "starting up"
                problems.append(
                    f"worker {thread.worker} still running {STUCK_SECONDS:g} s after the "
                    f"deadline, after: {doing.strip()} (a request never answered, never timed out?)"
                )
            elif thread.problem:
                problems.append(thread.problem)
        settle()
        extra += run.verify(SERVER_WORKLOAD.keys)
    finally:
        run.go.set()
        settle()
        shutil.rmtree(run.root, ignore_errors=True)
    ops = [op for thread in threads for op in thread.ops] + extra
    return RunRecord(ops, windows, origin, problems, harness)
