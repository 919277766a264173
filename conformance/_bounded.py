"""Checks run in a watched child process, so a store that hangs cannot stop the run.

The process in charge (``lance-offsets check``, a pytest worker, a ``--workers`` process) never
calls the store itself: each property is checked in one long-lived child (started once, reused
for every property while it is healthy), where every store call is timed (``_watch.py``). When
a call runs past its bound, the child's watchdog reports it with the stuck thread's stack; if the
watchdog cannot run (a thread blocked while holding the interpreter lock), this side reads the
shared clock, asks the child for its stacks (``faulthandler``, from C) and decides alone. Either
way the child and everything it started are killed, the property gets its hang report
(``_hang.hang_result``) and the next property starts a new child: nothing of the hung one (its
locks, its half-run Hypothesis test) can block what follows.

The same holds for the suite's own code: a check that makes no progress with no store call
running, or a child that dies outside a store call, gives ``unverified`` with the evidence,
never ``failed``.

Measured on 2 loaded cores: starting the child costs 0.5 to 0.9 s once per run (it imports the
kit and the store), reusing it nothing; timing a store call costs about 5 microseconds. The quick
check of the reference store (``lance-offsets check --seed 1``, three alternated runs each) took
15.6, 18.1 and 17.7 s before, 16.5, 19.6 and 15.9 s with the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from lance_offsets._interrupt import quiet_child, raise_if_interrupted

from ._catalog import PROPERTIES
from ._driver import DriverError
from ._hang import HangReport, StackPipe, arm_stack_dump, dumped_stack, hang_result
from ._results import PropertyResult
from ._watch import CallClock

__all__ = [
    "GRACE_SECONDS",
    "IDLE_SECONDS",
    "STRESS_IDLE_SECONDS",
    "Job",
    "check_bounded",
    "stop_child",
    "tree_cpu_ticks",
]

#: Seconds past a call's bound before this side decides alone (the child's watchdog reports
#: within a tenth of a second of the bound when it can run at all).
GRACE_SECONDS: Final = 5.0
#: Seconds past the bound for a call a helper process makes: ``_remote.py`` times it out, reads
#: that process's stacks and raises, which takes a moment of its own.
REMOTE_GRACE_SECONDS: Final = 15.0
#: A single-process check that starts or ends no store call for this long (and at least three
#: bounds) is stuck in the suite's own code.
IDLE_SECONDS: Final = 120.0
#: How often this side looks at the child, seconds.
_POLL: Final = 0.2
#: Seconds a multi-process check (crash, concurrency, power-loss, fault campaigns) may go with no
#: CPU used by the check child or any process below it: its store calls run in workers this side
#: does not time, so a deadlock in the suite's own machinery shows as a whole tree asleep.
STRESS_IDLE_SECONDS: Final = 300.0
#: Seconds between two readings of the tree's CPU time.
_CPU_EVERY: Final = 1.0


class Job(Protocol):
    """What the child checks: one property of one store, run in the child's own process.

    ``workdir`` is the run's scratch root (None: the system's temporary directory).
    """

    @property
    def workdir(self) -> str | None: ...

    def check_here(self, pid: str) -> PropertyResult: ...


def _serve(conn: Any, parts: tuple[Any, Any, Any], stacks: Any) -> None:
    """The child: check each property it is sent, until it is sent None."""
    quiet_child()
    arm_stack_dump(stacks)
    from . import _watch

    send_lock = threading.Lock()

    def send(message: tuple[str, object]) -> None:
        with send_lock:  # the watchdog's report and a result never interleave on the pipe
            conn.send(message)

    _watch.install(CallClock(*parts), lambda report: send(("hung", report)))
    _RELAY[:] = [lambda line: send(("say", line))]
    while True:
        message = conn.recv()
        if message is None:
            return
        job, pid, cwd = message
        if os.getcwd() != cwd:
            os.chdir(cwd)  # where the caller is now: relative paths mean what they mean there
        # Whatever a check makes in "the" temporary directory goes under the run's scratch root:
        # this process leaves at once on Ctrl-C (no cleanup of its own), and the run removes
        # that root, with everything below it (conformance/_runscope.py).
        tempfile.tempdir = job.workdir
        try:
            reply: tuple[str, object] = ("result", job.check_here(pid))
        except Exception as exc:  # the suite's own failure: said as such by the other side
            import traceback

            reply = ("error", "".join(traceback.format_exception(exc)[-8:]))
        except DriverError as exc:  # a broken driver stops the run: raised again by the caller
            reply = ("driver error", str(exc))
        send(reply)


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it (where /proc lists it)."""
    from ._runscope import descendants

    if sys.platform == "win32":
        return
    for _ in range(2):  # a process may fork while the first pass kills
        for below in {pid, *descendants(pid)}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(below, signal.SIGKILL)


class CheckChild:
    """One child process that checks properties, and what this side knows of it."""

    def __init__(self, fingerprint: tuple[object, ...]) -> None:
        from lance_offsets.stress.workers._procs import context, start

        ctx = context()
        self.fingerprint = fingerprint
        self.stopped = False
        self.clock = CallClock.new(ctx)
        self.stacks = StackPipe(ctx)
        self.conn, theirs = ctx.Pipe()
        # Not a daemon: a property's check starts processes of its own.
        self.proc = ctx.Process(
            target=_serve,
            args=(theirs, self.clock.parts(), self.stacks.writer),
            name="check-child",
        )
        start(self.proc)
        theirs.close()
        self.stacks.started()

    def alive(self) -> bool:
        return not self.stopped and bool(self.proc.is_alive())

    def stop(self, *, kill: bool = False) -> None:
        """End the child (asked nicely unless ``kill``) and everything it started; idempotent."""
        from lance_offsets.stress.workers._procs import reap

        if self.stopped:
            return
        self.stopped = True
        if not kill:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
                self.proc.join(5.0)
        if self.proc.is_alive():
            # Not asked to stop: a process blocked with the interpreter lock held would not even
            # run its signal handler, and its children may be stuck with it.
            _kill_tree(self.proc.pid)
        reap(self.proc)
        with contextlib.suppress(OSError):
            self.conn.close()
        self.stacks.close()

    def check(self, job: Job, pid: str) -> tuple[PropertyResult, bool]:
        """Check ``pid`` in the child; the result, and whether the child is still usable."""
        started = time.monotonic()
        self._cpu: tuple[int | None, float, float] = (None, started, 0.0)  # seen, since, read
        self.clock.touch()
        job, say = _relayed(job)
        self.conn.send((job, pid, os.getcwd()))
        single = PROPERTIES[pid].suite == "conformance"
        while True:
            if self.conn.poll(_POLL):
                try:
                    kind, value = self.conn.recv()
                except (EOFError, OSError):
                    return self._died(pid, started), False
                if kind == "say":  # a long run's progress line, said here
                    say(value)
                    continue
                seconds = time.monotonic() - started
                if kind == "result":
                    return value, True
                if kind == "driver error":
                    raise DriverError(value)
                if kind == "hung":
                    self.stop(kill=True)
                    return hang_result(pid, value, seconds), False
                return _harness(pid, seconds, f"the check raised:\n{value}"), True
            raise_if_interrupted()
            if not self.proc.is_alive():
                return self._died(pid, started), False
            stuck = self._stuck(single, started)
            if stuck is not None:
                return hang_result(pid, stuck, time.monotonic() - started), False

    def _stuck(self, single: bool, started: float) -> HangReport | None:
        """A hang this side sees on the clock alone (the child could not say), else None."""
        clock = self.clock
        now = time.monotonic()
        call_started = clock.started
        if call_started:
            grace = REMOTE_GRACE_SECONDS if clock.remote else GRACE_SECONDS
            if now - call_started <= clock.bound + grace:
                return None
            text = self.stacks.request(self.proc.pid)
            report = HangReport(
                call=clock.call,
                role=clock.role,
                seconds=now - call_started,
                bound=clock.bound,
                stack=dumped_stack(text, clock.thread),
                frozen=True,
            )
            self.stop(kill=True)
            return report
        if not single:
            return self._asleep(now)
        idle = max(IDLE_SECONDS, 3 * clock.bound)
        if now - max(clock.active, started) <= idle:
            return None
        text = self.stacks.request(self.proc.pid)
        report = HangReport(
            call="",
            role="",
            seconds=now - max(clock.active, started),
            bound=idle,
            stack=dumped_stack(text, None),
        )
        self.stop(kill=True)
        return report

    def _asleep(self, now: float) -> HangReport | None:
        """A multi-process check whose whole process tree used no CPU for too long, else None."""
        seen, since, read = self._cpu
        if now - read < _CPU_EVERY:
            return None
        cpu = tree_cpu_ticks(self.proc.pid)
        if cpu is None or cpu != seen:  # no /proc to read, or something ran
            self._cpu = (cpu, now, now)
            return None
        self._cpu = (seen, since, now)
        if now - since <= STRESS_IDLE_SECONDS:
            return None
        text = self.stacks.request(self.proc.pid)
        report = HangReport(
            call="",
            role="",
            seconds=now - since,
            bound=STRESS_IDLE_SECONDS,
            stack=dumped_stack(text, None),
            extra=(
                "a multi-process check: neither the check child nor any process it started used "
                f"CPU for {now - since:.0f} s (a deadlock in the suite's machinery)",
            ),
        )
        self.stop(kill=True)
        return report

    def _died(self, pid: str, started: float) -> PropertyResult:
        """The child ended mid-check: the store's doing if a store call was running."""
        self.proc.join(2.0)
        code = self.proc.exitcode
        seconds = time.monotonic() - started
        call = self.clock.call if self.clock.started else ""
        crash = dumped_stack(self.stacks.read(0.5), self.clock.thread if call else None)
        self.stop(kill=True)
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        where = "\n".join(["where it was (innermost last):", *(f"  {f}" for f in crash)])
        if not call:
            return _harness(
                pid,
                seconds,
                f"the process checking {pid} died ({how}) with no store call running",
                where if crash else "",
            )
        title = f"[{pid} {PROPERTIES[pid].title}]"
        text = f"{title} the store call {call} ended the process running the check ({how})"
        return PropertyResult(pid, "failed", seconds, "\n".join(filter(None, [text, where])))


#: In the child: where a long run's progress lines go (to the process in charge, by the pipe).
_RELAY: list[Callable[[str], None]] = []


def _relay(line: str) -> None:
    """A progress line said in the child, sent to the process in charge (which prints it)."""
    if _RELAY:
        _RELAY[0](line)


def _relayed(job: Job) -> tuple[Job, Callable[[str], None]]:
    """``job`` whose run options say progress through the pipe, and where the lines go here.

    The callback stays in this process: a progress line drawn on this terminal holds a lock
    and a redraw thread that mean nothing in the child (and a lock pickled while held would
    arrive held forever).
    """
    options = getattr(job, "options", None)
    say = getattr(options, "progress", None)
    if say is None or not (dataclasses.is_dataclass(job) and dataclasses.is_dataclass(options)):
        return job, _relay
    relayed = dataclasses.replace(options, progress=_relay)
    return dataclasses.replace(job, options=relayed), say


def tree_cpu_ticks(pid: int) -> int | None:
    """CPU time used by ``pid`` and every process below it, reaped ones included, in ticks.

    Read from ``/proc`` (``utime``, ``stime``, ``cutime``, ``cstime`` of each process): None
    where there is none to read, or the process is gone.
    """
    total = 0
    todo = [pid]
    found = False
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[-1].split()
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        found = True
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # stat fields 14-17
        for task in tasks:
            children = f"/proc/{current}/task/{task}/children"
            with contextlib.suppress(OSError, ValueError), open(children, encoding="ascii") as kids:
                todo += [int(child) for child in kids.read().split()]
    return total if found else None


def _harness(pid: str, seconds: float, what: str, *more: str) -> PropertyResult:
    why = f"{what}: that is the suite's failure, not the store's"
    return PropertyResult(pid, "unverified", seconds, "\n".join(filter(None, [why, *more])))


_CHILD: list[CheckChild] = []


def _fingerprint() -> tuple[object, ...]:
    # A child keeps the import path and environment it was started with (modules imported, a
    # fork server started): a caller that changed them gets a new child, which sees them as a
    # fresh process would. The working directory it is told with each property.
    return (tuple(sys.path), tuple(sorted(os.environ.items())))


def stop_child() -> None:
    """Stop this process's check child, if one runs (at exit, and after a hang)."""
    while _CHILD:
        _CHILD.pop().stop()


def check_bounded(job: Job, pid: str) -> PropertyResult:
    """Check ``pid`` with ``job`` in this process's check child, bounded as the module says."""
    fingerprint = _fingerprint()
    if _CHILD and (_CHILD[0].fingerprint != fingerprint or not _CHILD[0].alive()):
        stop_child()
    if not _CHILD:
        _CHILD.append(CheckChild(fingerprint))
        if not _REGISTERED:
            # After the child started: multiprocess registers its own exit function (which
            # waits for every child) when it first starts one, and atexit runs the last first.
            import atexit

            atexit.register(stop_child)
            _REGISTERED.append(True)
    try:
        result, usable = _CHILD[0].check(job, pid)
    except BaseException:  # interrupted: the run scope reaps what the child started
        _CHILD.pop().stop(kill=True)
        raise
    if not usable:
        _CHILD.pop().stop(kill=True)
    return result


_REGISTERED: list[bool] = []
