"""One crash campaign's machinery: seeded choices, workers, crash points, random kills.

``_crash.py`` decides what to run and turns the findings into property results; this module runs
each kill-verify cycle: a fresh worker judges the previous crash (``_judge.py``), then sets up the
old state, starts the change and is killed at its crash point (or at a random time).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .._options import StressOptions
from ..seam._record import TRACERS, Backend, choose_backend, shim_saw_nothing
from ..seam._trace import Trace, TraceOp
from ..workers._fleet import Fleet, Worker, WorkerGone
from ..workers._jobs import NO_SHIM
from ._judge import (
    LOCK_WAIT_BOUND,
    Crash,
    Violation,
    judge,
    judge_damaged,
    judge_damaged_hang,
    listing,
)
from ._points import label, points, removed_before_replaced

__all__ = ["Campaign", "Found", "Run", "Scenario", "label", "points"]

Key = tuple[int, int]

#: Seconds a worker lingers after acknowledging, so a store's late writer shows up in the trace.
#: Every counting run lingers; a crash-point run only when its change's counting run traced an
#: operation while it lingered (a background writer): otherwise lingering changes nothing but
#: the time, 50 ms a cycle for every point in ``close()`` (most of SQLite's).
LINGER: Final = 0.05
#: Seconds a worker may take to reach its stop point or answer a job.
STEP_SECONDS: Final = 60.0
#: Longest random delay before a kill, seconds (a save takes about a millisecond here).
MAX_KILL_DELAY: Final = 0.03
#: Offsets of different decimal widths, so a torn or mixed file cannot pass for a real value.
_WIDTHS: Final = (1, 2, 3, 7, 10, 19)


@dataclass
class Campaign:
    """What one crash campaign did and found."""

    seed: int
    bound: float = LOCK_WAIT_BOUND
    cycles: int = 0
    kills: int = 0
    points: int = 0
    random_kills: int = 0
    unreached: int = 0
    seconds: float = 0.0
    max_wait: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    named: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Why the store's ``list_all`` is not judged (wrong with no crash at all), "" when it is.
    list_wrong: str = ""
    #: Plain changes the store raised on with no crash or fault near them: its own save is at
    #: fault (C1's business), and the cycles they ended judged nothing of crash safety.
    refused: list[str] = field(default_factory=list)
    kept: str = ""
    #: The tracing backend the crash points used ("python" or "syscall"), "" before counting.
    backend: str = ""
    #: Which view judged and why (``seam/_record.Chosen.judged``), "" before counting.
    tracing: str = ""
    #: Why no backend saw the store's I/O (set when the crash points found nothing to kill at).
    unseen: str = ""
    #: Crashes whose leftover files were damaged before a fresh process read them (D4).
    damaged: int = 0
    #: How the workers started (``Fleet.how``), and how many dead templates were replaced.
    workers: str = ""
    #: Crash states judged for each property: D1 a value read (old or new), D2 an acknowledged
    #: change at stake, D4 an open, listing or later save looked at (damaged states too), D5 a
    #: later save timed. Each property's evidence says how much of the campaign judged it.
    judged: dict[str, int] = field(default_factory=dict)
    #: The store stopped answering (a hang, not a death): ``errors`` says where.
    hung: bool = False
    #: Random kills a long run left out because they could reach nothing, and why ("" if none).
    skipped_kills: int = 0
    skipped_why: str = ""

    def judging(self, *pids: str) -> None:
        """Count one crash state judged for each of ``pids``."""
        for pid in pids:
            self.judged[pid] = self.judged.get(pid, 0) + 1


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: dict[Key, int]
    key: Key
    new: int | None
    #: "open": the change is a new handle's open over the committed ``setup`` (``new`` unused).
    action: str = ""

    @property
    def old(self) -> int | None:
        return self.setup.get(self.key)


class Refused(Exception):
    """The store raised on a plain save of a loop (no crash, no fault): its own fault, not ours."""


def _acked(message: tuple[str, Any]) -> int:
    """The acknowledged value a save loop's message carries, or why the loop stopped."""
    tag, value = message
    if tag == "raised":
        raise Refused(f"save of {value[1]}: {value[0]}")
    if tag != "acked":
        raise WorkerGone(f"the save loop stopped: {tag} {value}")
    return int(value)


def _shown(value: int | None) -> str:
    return "absent" if value is None else str(value)


def _state(setup: dict[Key, int]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in setup.items()) or "nothing"


def _change(scenario: Scenario) -> str:
    if scenario.action == "open":
        return "close, then open a new handle"
    if scenario.new is None:
        return f"delete {scenario.key}"
    return f"save {scenario.key} = {scenario.new} over {_shown(scenario.old)}"


def _crash_of(scenario: Scenario, path: str, where: str, acked: bool, context: list[str]) -> Crash:
    """The crash to judge after killing ``scenario``'s change at ``where``.

    A kill during open changes nothing: every committed value is acknowledged and must survive,
    and losing one, loudly or silently, breaks D2.
    """
    old, new = scenario.old, scenario.new
    if scenario.action == "open":
        return Crash(
            scenario.name,
            path,
            scenario.key,
            (old,),
            True,
            dict(scenario.setup),
            where,
            previous=(None,),
            files=listing(path),
            context=context,
            expected_text=f"{_shown(old)} (committed before the open)",
            loud="D2",
        )
    expected = (
        f"new {_shown(new)} (acknowledged)"
        if acked
        else f"old {_shown(old)} or new {_shown(new)} (not acknowledged)"
    )
    return Crash(
        scenario.name,
        path,
        scenario.key,
        (new,) if acked else (old, new),
        acked,
        dict(scenario.setup),
        where,
        previous=(old,),
        files=listing(path),
        context=context,
        expected_text=expected,
    )


class Found(Exception):
    """The violation a caller waited for (``run_campaign(until=...)``) was found."""


def _no_points(counted: tuple[list[TraceOp], str]) -> str | None:
    """Why a counting run gives no crash point to kill at, or None when it gives some."""
    return None if points(counted[0]) else shim_saw_nothing()


def _views(counted: tuple[list[TraceOp], str]) -> Trace | None:
    """The counting run's trace, with the shim's view of the same run when it recorded one."""
    return counted[0] if isinstance(counted[0], Trace) else None


def _call_seconds(spec: str) -> float:
    """The factory's declared bound on one store call (``call_seconds``, else 30 s)."""
    from lance_offsets.conformance._capabilities import call_seconds_of
    from lance_offsets.conformance._spec import load_factory

    return call_seconds_of(load_factory(spec))


class Run:
    """The state of one campaign: workers, the seeded choices, the crash awaiting its verdict."""

    def __init__(
        self,
        spec: str,
        options: StressOptions,
        result: Campaign,
        bound: float = LOCK_WAIT_BOUND,
        until: str | None = None,
    ) -> None:
        self.options = options
        self.bound = bound
        self.until = until
        self.result = result
        self.rng = random.Random(options.seed)
        self.fleet = Fleet(spec, note=options.progress)
        #: How long one call into the store may take (the factory's ``call_seconds``).
        self.call_seconds = _call_seconds(spec)
        self.root = tempfile.mkdtemp(prefix="lance-crash-", dir=options.workdir)
        self.count = 0
        self.pending: Crash | None = None
        self.skip_later = False  # after one D5 violation, later saves would only wait again
        self.damage_hung = False  # a damaged state hung the reader (D4): no more damage points
        self.list_checked = False  # whether _list_wrong has asked its once-per-campaign question
        #: Per scenario: did its counting run trace operations while it lingered (``LINGER``)?
        self.late: dict[str, bool] = {}
        self.started = time.monotonic()
        self.reported = self.started
        #: The tracing backend, once chosen (``count_ops``): "python" or "syscall".
        self.backend: str | None = None if options.backend == "auto" else options.backend

    def value(self) -> int:
        width = self.rng.choice(_WIDTHS)
        return min(self.rng.randrange(10 ** (width - 1), 10**width), 2**64 - 1)

    def directory(self) -> str:
        self.count += 1
        path = os.path.join(self.root, f"cycle-{self.count}")
        os.mkdir(path)
        return path

    def worker(self) -> Worker:
        """A fresh worker, which first judges the pending crash (it never had that store open)."""
        while True:
            worker = self.fleet.take()
            crash, self.pending = self.pending, None  # judged once, whatever happens
            if crash is None or self._verify(worker, crash):
                return worker

    def _verify(self, worker: Worker, crash: Crash) -> bool:
        """Judge ``crash`` in ``worker``; return False if the worker was blocked (and killed)."""
        if crash.damage:
            return self._verify_damaged(worker, crash)
        later = None if self.skip_later else self.value()
        keys = [crash.key, *(k for k in crash.setup if k != crash.key)]
        job = {
            "job": "verify",
            "path": crash.path,
            "keys": keys,
            "later": None if later is None else (crash.key, later),
        }
        worker.send(job)
        blocked = saved = None
        try:
            _, read = worker.recv(self.bound + 2.0)
        except WorkerGone as exc:
            if "sent nothing" not in str(exc):  # it died: not a wait on a lock (D5)
                worker.kill()
                raise WorkerGone(
                    f"judging the crash ({crash.scenario}: key {crash.key}, {crash.where}): the "
                    f"fresh worker died reading the store [{exc}]; files: {crash.files}"
                ) from exc
            read = {}
            blocked = (
                f"reading the store in another process did not finish within {self.bound:g} s "
                "(a lock the killed worker held is still taken?)"
            )
        if blocked is None and "open" not in read:  # a store that could not open saves nothing
            try:
                _, saved = worker.recv(self.bound + 2.0)
            except WorkerGone:
                blocked = (
                    f"a later save in another process did not return within {self.bound:g} s "
                    "(a lock the killed worker held is still taken)"
                )
        found, wait = judge(
            crash, read, saved, later=later, blocked=blocked, bound=self.bound, trust_list=True
        )
        if found and self._list_wrong(crash):
            found, wait = judge(
                crash, read, saved, later=later, blocked=blocked, bound=self.bound, trust_list=False
            )
        if wait is not None:
            self.result.max_wait = max(self.result.max_wait, wait)
        self._count_judged(crash, read, timed=saved is not None or blocked is not None)
        if any(v.prop == "D5" for v in found):
            self.skip_later = True
        self.result.violations.extend(found)
        if found:
            self.result.kept = self.root
        else:
            shutil.rmtree(crash.path, ignore_errors=True)
        done = any(v.prop == self.until for v in found)
        if blocked is not None or done:
            worker.kill()
        if done:
            raise Found
        return blocked is None

    def _count_judged(self, crash: Crash, read: dict[str, Any], *, timed: bool) -> None:
        """Count what judging ``crash`` looked at, per property (:attr:`Campaign.judged`)."""
        if read:
            self.result.judging("D4", *(("D1",) if "open" not in read else ()))
            self.result.judging(*(("D2",) if crash.acked else ()))
        if timed:
            self.result.judging("D5")

    def _list_wrong(self, crash: Crash) -> bool:
        """Whether ``list_all`` is wrong on a new store holding ``crash``'s state, uncrashed.

        Asked once per campaign, the first time a crash's judgement includes a listing: a fresh
        worker saves the set-up values (and the crashed key's old one) on an empty store and
        lists it. When even that listing is wrong, the store's ``list_all`` is at fault (C6),
        and no crash is blamed for what it lists; the campaign says so once.
        """
        state = dict(crash.setup)
        if self.list_checked or not state:  # an empty listing demonstrates nothing
            return bool(self.result.list_wrong)
        self.list_checked = True
        worker = self.fleet.take()
        try:
            fresh = tempfile.mkdtemp(prefix="fresh-list-", dir=self.root)
            worker.send({"job": "listing", "path": fresh, "state": state})
            _, listed = worker.recv(STEP_SECONDS, "a listing of an uncrashed store")
        except WorkerGone:
            return False  # no demonstration: every crash stays judged as it was
        finally:
            worker.kill()
        if listed != state:
            self.result.list_wrong = (
                f"list_all() is wrong on a new store no crash touched: after saving {state} it "
                f"gave {listed} (the store's own listing: see C6); no crash was blamed for it"
            )
        return bool(self.result.list_wrong)

    def _verify_damaged(self, worker: Worker, crash: Crash) -> bool:
        """Judge a damaged crash directory: loud or correct, no later save (D4)."""
        keys = [crash.key, *(k for k in crash.setup if k != crash.key)]
        worker.send({"job": "verify", "path": crash.path, "keys": keys, "later": None})
        # The reader waits on no later save here: a store call's own bound is enough (a lock the
        # killed worker left would have blocked the undamaged states, D5's business).
        wait = min(self.bound, self.call_seconds) + 2.0
        try:
            _, read = worker.recv(wait)
            if "open" not in read:  # a store that refused to open has no handle to close
                worker.recv(wait)  # ("saved", None): the handle closed
        except WorkerGone as exc:
            worker.kill()
            if "sent nothing" in str(exc):
                self._damaged_hung(crash, wait)
                return False
            read = {"open": f"died: {exc}"}  # a crash on damaged bytes (SIGBUS) is loud
            usable = False
        else:
            usable = True
        found = judge_damaged(crash, read)
        if found and self._list_wrong(crash):
            found = judge_damaged(crash, read, trust_list=False)
        self.result.damaged += 1
        self.result.judging("D4")
        self.result.violations.extend(found)
        if found:
            self.result.kept = self.root
        else:
            shutil.rmtree(crash.path, ignore_errors=True)
        if any(v.prop == self.until for v in found):
            worker.kill()
            raise Found
        return usable

    def _damaged_hung(self, crash: Crash, seconds: float) -> None:
        """Reading a damaged crash state did not finish: D4's hang, unless locks explain it.

        A lock the killed worker still held would block the reader whatever the bytes (D5's
        finding, judged on the undamaged states). When no undamaged state blocked, the damage
        is what made the store hang: neither loud nor correct. One such hang is enough: the
        damage points left would each wait the bound again.
        """
        if any(v.prop == "D5" for v in self.result.violations):
            return  # blocked by a lock: D5's business, judged without damage
        self.result.damaged += 1
        self.result.judging("D4")
        self.result.violations.append(judge_damaged_hang(crash, seconds))
        self.result.kept = self.root
        self.damage_hung = True
        if self.until == "D4":
            raise Found

    def _crash_job(
        self, scenario: Scenario, path: str, stop: tuple[int, str] | None
    ) -> dict[str, Any]:
        return {
            "job": "crash",
            "path": path,
            "setup": scenario.setup,
            "key": scenario.key,
            "new": scenario.new,
            "stop": stop,
            "linger": LINGER if stop is None or self.late.get(scenario.name, True) else 0.0,
            "backend": self.backend or "python",
            "action": scenario.action,
        }

    def count_ops(self, scenario: Scenario) -> tuple[list[TraceOp], str] | None:
        """Run the change once, uncrashed: its trace and directory, or None if it raised.

        The first count chooses the backend when the options leave it to us (``choose_backend``):
        the Python interposer when the syscall shim, recording the same run, saw the same
        operations; else the shim.
        """
        if self.backend is not None:  # chosen by an earlier count, or by the options
            counted = self._count(scenario)
            if not self.result.tracing:
                self.result.tracing = f"{TRACERS.get(self.backend, self.backend)} (forced)"
        else:

            def record(backend: Backend) -> tuple[list[TraceOp], str] | str | None:
                self.backend = backend
                return self._count(scenario)

            chosen = choose_backend(record, _no_points, views=_views)
            self.backend, counted = chosen.backend, chosen.counted
            self.result.unseen = chosen.unseen
            self.result.tracing = chosen.judged
        self.result.backend = self.backend
        if isinstance(counted, str):
            self.result.unseen = counted
            return None
        return counted

    def _count(self, scenario: Scenario) -> tuple[list[TraceOp], str] | str | None:
        """One counting run with the current backend; a string says why the shim is missing."""
        worker = self.worker()
        path = self.directory()
        worker.send(self._crash_job(scenario, path, None))
        doing = (
            f"scenario {scenario.name}: setting up {_state(scenario.setup)}, then the change "
            f"({_change(scenario)}) once, with no crash, to count its operations"
        )
        while True:
            tag, payload = self._recv(worker, doing, path)  # kills the worker if none comes
            if tag == "lingered":
                self.late[scenario.name] = payload > 0
            if tag == "done":
                worker.kill()
                return payload, path
            if tag == NO_SHIM:
                worker.kill()
                return str(payload)
            if tag == "raised":
                worker.kill()
                self.result.refused.append(
                    f"scenario {scenario.name}: the change ({_change(scenario)}) raised with no "
                    f"crash or fault: {payload[0]}"
                )
                return None

    def _recv(self, worker: Worker, doing: str, path: str) -> tuple[str, Any]:
        """The worker's next message, or an error naming what it was doing.

        The error says whether the store hung or the process died, and lists the files left.
        """
        try:
            return worker.recv(STEP_SECONDS)
        except WorkerGone as exc:
            worker.kill()
            if "sent nothing" in str(exc):
                self.result.hung = True
                why = (
                    f"the store hung for {STEP_SECONDS:g} s (a lock held by a crashed process? "
                    "a lock never released? an unbounded retry?)"
                )
            else:
                why = "the worker process died"
            raise WorkerGone(f"{doing}: {why} [{exc}]; files: {listing(path)}") from exc

    def crash_point(
        self, scenario: Scenario, op: TraceOp, phase: str, label: str, trace: list[TraceOp]
    ) -> None:
        path = self.directory()
        worker = self.worker()
        worker.send(self._crash_job(scenario, path, (op.index, phase)))
        acked = False
        doing = (
            f"scenario {scenario.name}: setting up {_state(scenario.setup)}, then the change "
            f"({_change(scenario)}), to be {label}"
        )
        while True:
            tag, _ = self._recv(worker, doing, path)
            if tag == "acked":
                acked = True
            elif tag == "stopped":
                break
            else:  # the point was not reached this time (a racing background thread)
                self.result.unreached += 1
                worker.kill()
                return
        worker.kill()
        self.result.kills += 1
        self.result.points += 1
        excerpt = [str(o) for o in trace[max(0, op.index - 3) : op.index + 3]]
        context = ["operations around the crash point (counting run):", *excerpt]
        crash = _crash_of(scenario, path, label, acked, context)
        cut = op.index + (1 if phase == "after" else 0)
        self.pending = dataclasses.replace(crash, removed_first=removed_before_replaced(trace, cut))
        self.tick()

    def damage_point(
        self,
        scenario: Scenario,
        op: TraceOp,
        phase: str,
        text: str,
        trace: list[TraceOp],
        *,
        target: str,
        damage: tuple[str, Callable[[bytes], bytes]],
    ) -> None:
        """Kill ``scenario`` at a crash point, then damage its file ``target``.

        :param damage: its name and what it makes of the file's bytes.
        :param target: a path relative to the store's directory that the change wrote and that
            a clean close keeps; nothing is damaged (and nothing judged) if the kill left none.
        """
        self.crash_point(scenario, op, phase, text, trace)
        crash = self.pending
        if self.damage_hung:
            return  # the damage hung the reader once (judging the last one): a plain crash
        full = os.path.join(crash.path, target) if crash else ""
        if crash is None or not os.path.isfile(full) or os.path.getsize(full) == 0:
            return  # not reached, or nothing there to damage: judged as a plain crash
        with open(full, "rb") as fh:
            data = fh.read()
        with open(full, "wb") as fh:
            fh.write(damage[1](data))
        self.pending = dataclasses.replace(
            crash, damage=f"{damage[0]}: {target} ({len(data)} bytes)"
        )

    def random_open_kill(self, key: Key, other: Key) -> None:
        """Kill a process that opens, reads and closes the store in a loop over committed data."""
        path = self.directory()
        worker = self.worker()
        setup = {other: self.value(), key: self.value()}
        worker.send({"job": "loop", "action": "open", "path": path, "key": key, "setup": setup})
        doing = f"random kill during open: committing {_state(setup)}, then opening in a loop"
        self._recv(worker, doing, path)  # "looping": committed and closed, the opens begin
        delay = self.rng.uniform(0.0, MAX_KILL_DELAY)
        time.sleep(delay)
        worker.kill()
        self.result.kills += 1
        self.result.random_kills += 1
        scenario = Scenario("open loop", setup, key, None, "open")
        where = f"random kill {delay * 1000:.1f} ms into a loop of opens"
        self.pending = _crash_of(scenario, path, where, False, [])
        self.tick()

    def random_kill(self, key: Key) -> None:
        path = self.directory()
        worker = self.worker()
        start = self.value()
        start = min(start, 2**64 - 10**6)
        worker.send({"job": "loop", "path": path, "key": key, "start": start})
        doing = f"random kill: opening the store for a save loop on {key} from {start}"
        self._recv(worker, doing, path)  # "looping": the store is open, saves begin
        delay = self.rng.uniform(0.0, MAX_KILL_DELAY)
        began = time.monotonic()
        last: int | None = None
        try:
            try:
                while (left := began + delay - time.monotonic()) > 0:
                    last = _acked(worker.recv(left))
            except WorkerGone as exc:
                if "sent nothing" not in str(exc):  # only a quiet pipe is normal here
                    worker.kill()
                    raise
            for message in worker.kill():
                last = _acked(message)
        except Refused as exc:
            # Nothing was killed mid-save: the loop ended on the store's own error. The cycle
            # judges nothing; the error is reported as the store's, never as a harness failure.
            worker.kill()
            self.result.refused.append(f"save loop on {key}: {exc}")
            shutil.rmtree(path, ignore_errors=True)
            return
        self.result.kills += 1
        self.result.random_kills += 1
        acked = last is not None
        allowed = (last, last + 1) if last is not None else (None, start)
        where = f"random kill {delay * 1000:.1f} ms into a save loop from {start}"
        expected = (
            f"{last} (last acknowledged) or {last + 1} (in flight)"
            if last is not None
            else f"absent or {start} (nothing acknowledged)"
        )
        self.pending = Crash(
            "save loop",
            path,
            key,
            allowed,
            acked,
            {},
            where,
            previous=(None,) if acked else (),
            previous_span=range(start, last) if last is not None else range(0),
            files=listing(path),
            expected_text=expected,
        )
        self.tick()

    def tick(self) -> None:
        self.result.cycles += 1
        now = time.monotonic()
        if now - self.reported >= 5.0:
            self.reported = now
            rate = self.result.cycles / (now - self.started)
            self.options.progress(
                f"crash: {self.result.cycles} cycles, {rate:.1f} cycles/s, "
                f"{self.result.kills} kills, {len(self.result.violations)} violations"
            )

    def finish(self) -> None:
        """Judge the last crash, stop every worker, remove the directories of clean cycles."""
        try:
            if self.pending is not None:
                self.worker().kill()
        except Found:
            pass
        finally:
            self.fleet.close()
            self.result.workers = self.fleet.how
            if self.fleet.restarts:
                self.result.workers += f" ({self.fleet.restarts} replaced after dying)"
            if not self.result.kept:
                shutil.rmtree(self.root, ignore_errors=True)
