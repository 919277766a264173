"""B1 on any store with ``save_many``: the machine's half, then kills and power cuts in a batch.

1. The one-process half (``conformance/_props_batch.py``): read-back, refused batches.
2. Kills: a worker sets up old values, runs ``save_many`` of new ones under the interposer and
   is killed at each crash point of it (all of them in a long run; in a short one, before and
   after each rename and each sync that follows the first rename). A verifier process then opens the
   store fresh. Per-key durable (the default): each key of the batch holds its old or its new
   offset, the key outside it is untouched, nothing else is listed, and all are new once the
   batch was acknowledged. ``batch_atomic``: in addition, all old or all new.
3. Power cuts: the power-loss explorer (D3's) runs a workload whose saves are batches; its oracle
   holds each key of a batch in flight to old-or-new, and to new once acknowledged.
   ``batch_atomic``: in addition, in every crash state, each batch in flight all old or all new
   (a store can be all-or-nothing under kills, its recovery rolling a batch forward, and still
   split under a power cut that keeps some of its renames and not others).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any, Final

from lance_offsets.conformance._capabilities import capabilities_of
from lance_offsets.conformance._diagnosis import FINDINGS, finding
from lance_offsets.conformance._props_batch import batch_of
from lance_offsets.conformance._results import Outcome, PropertyResult
from lance_offsets.conformance._run import check_property
from lance_offsets.conformance._spec import load_factory

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID

from .._options import StressOptions
from ..crash._points import label, points
from ..powerloss._campaign import run_powerloss
from ..powerloss._oracle import Step
from ..seam._record import Backend, choose_backend, shim_saw_nothing
from ..seam._trace import TraceOp
from ..workers._fleet import Fleet, Worker, WorkerGone
from ..workers._jobs import NO_SHIM

__all__ = ["check_b1", "judge_batch", "judged_batch", "power_workload"]


def _no_points(trace: list[TraceOp]) -> str | None:
    return None if points(trace) else shim_saw_nothing()


Key = tuple[int, int]

#: The operations a short run kills at (all of them in a long run).
_RENAMES: Final = frozenset({"rename", "replace"})
_SYNCS: Final = frozenset({"fsync", "fdatasync"})
#: Seconds a worker may take to reach its stop point or answer a job.
_STEP_SECONDS: Final = 60.0
#: Violations after which the kills stop (the report shows the first ones).
_ENOUGH: Final = 3

_OTHER: Final[Key] = (7, 7)
_SETUP: Final[dict[Key, int]] = {(1, 2): 5, (MAX_TOPIC_ID, MAX_CONSUMER_ID): 40, _OTHER: 700}
# Different decimal widths from the old values: a torn or mixed file cannot pass for either.
_BATCH: Final[dict[Key, int]] = {
    (1, 2): 123456,
    (MAX_TOPIC_ID, MAX_CONSUMER_ID): MAX_OFFSET,
    (0, 0): 9,  # absent before: a first save inside the batch
}


def power_workload() -> list[Step]:
    """Two saves, a batch over them and a new key, a second batch: D3's explorer replays it."""
    a, b, c = (1, 2), (MAX_TOPIC_ID, MAX_CONSUMER_ID), (0, 0)
    return [
        Step("save", a, 5),
        Step("save", b, 40),
        Step("save", a, 123456, batch=1),
        Step("save", b, MAX_OFFSET, batch=1),
        Step("save", c, 9, batch=1),
        Step("save", c, 77, batch=2),
        Step("save", a, 0, batch=2),
    ]


def check_b1(spec: str, options: StressOptions) -> PropertyResult:
    """Check B1 on the store ``spec`` names (not applicable without ``save_many``)."""
    start = time.monotonic()
    factory = load_factory(spec)
    if not batch_of(factory, options.workdir):
        return PropertyResult("B1", "not-applicable", 0.0, "the store's handles have no save_many")
    caps = capabilities_of(factory)
    # The short run's one-process half is the smoke profile: kills and power cuts follow, and
    # every batch costs one fsync per key, so the quick profile's examples would double B1's time.
    profile = "ci" if options.long else "smoke"
    machine = check_property(spec, "B1", profile=profile, seed=options.seed)
    evidence: dict[str, int | float | str] = {
        f"machine {name}": value for name, value in machine.evidence.items()
    }
    if machine.outcome != "passed" or not caps.durable:
        note = "" if caps.durable else "kills and power cuts not checked: not claimed durable"
        details = "; ".join(filter(None, [machine.details, note]))
        return dataclasses.replace(
            machine, id="B1", seconds=time.monotonic() - start, details=details, evidence=evidence
        )
    semantics = "atomic" if caps.batch_atomic else "per-key durable"
    evidence["semantics"] = semantics
    kills = _Kills(spec, options, caps.batch_atomic)
    try:
        kills.run()
    finally:
        kills.close()
    evidence.update(kills.evidence())
    if kills.violations:
        details = (
            f"{kills.violations[0]}\n[B1] save_many ({semantics}) broken by a kill inside the "
            f"batch (seed {options.seed}):\n" + "\n".join(kills.violations[:_ENOUGH])
        )
        artifacts = {FINDINGS: kills.findings()}
        seconds = time.monotonic() - start
        return PropertyResult("B1", "failed", seconds, details, evidence, artifacts)
    power = run_powerloss(spec, options, power_workload(), atomic=caps.batch_atomic).result
    evidence.update({f"power {name}": value for name, value in power.evidence.items()})
    seconds = time.monotonic() - start
    if power.outcome == "failed":
        # The explorer speaks of D3, whose oracle it is: here every key of a batch in flight is
        # held to old-or-new, and to new once save_many returned; an atomic batch to all or none.
        rule = "per-key and all-or-nothing rules" if caps.batch_atomic else "per-key rule"
        text = power.details.replace("violate D3", f"violate B1's {rule}")
        first, _, rest = text.partition("\n")
        details = f"{first}\n[B1] a power cut inside or after save_many:\n{rest}"
        artifacts = {FINDINGS: list(power.artifacts.get(FINDINGS, ()))}
        return PropertyResult("B1", "failed", seconds, details, evidence, artifacts)
    notes = [kills.unseen, "" if power.outcome == "passed" else f"power cuts: {power.details}"]
    outcome: Outcome = "passed" if power.outcome == "passed" and kills.killed else "unverified"
    return PropertyResult("B1", outcome, seconds, "; ".join(filter(None, notes)), evidence)


class _Kills:
    """Kill a worker at each chosen crash point of one ``save_many``; judge in a fresh process."""

    def __init__(self, spec: str, options: StressOptions, atomic: bool) -> None:
        self.options = options
        self.atomic = atomic
        self.fleet = Fleet(spec)
        self.root = tempfile.mkdtemp(prefix="lance-batch-", dir=options.workdir)
        self.count = self.killed = self.unreached = 0
        self.violations: list[str] = []
        #: What the violations demonstrate (``_diagnosis.py``): fact -> the first that showed it.
        self.facts: dict[str, str] = {}
        self.unseen = ""
        self.verifier: Worker | None = None
        self.backend = "python"
        #: Which view judged and why (``seam/_record.choose_backend``).
        self.judged = ""

    def findings(self) -> list[dict[str, str]]:
        return [finding(fact, shown) for fact, shown in self.facts.items()]

    def evidence(self) -> dict[str, int | float | str]:
        return {
            "batch crash points killed": self.killed,
            "batch tracing": self.judged or self.backend,
            "batch points not reached": self.unreached,
        }

    def close(self) -> None:
        self.fleet.close()
        if self.verifier is not None:
            self.verifier.kill()
        if not self.violations:
            shutil.rmtree(self.root, ignore_errors=True)

    def _directory(self) -> str:
        self.count += 1
        path = os.path.join(self.root, f"cycle-{self.count}")
        os.mkdir(path)
        return path

    def _job(self, path: str, stop: tuple[int, str] | None) -> dict[str, Any]:
        return {
            "job": "batch",
            "path": path,
            "setup": dict(_SETUP),
            "batch": dict(_BATCH),
            "stop": stop,
            "linger": 0.0,
            "backend": self.backend,
        }

    def _count(self) -> list[TraceOp] | str | None:
        """The trace of one uncrashed batch; why the shim is missing; None: it raised (noted)."""
        path = self._directory()
        worker = self.fleet.take()
        worker.send(self._job(path, None))
        while True:
            tag, payload = worker.recv(_STEP_SECONDS, "the uncrashed batch")
            if tag == "done":
                worker.kill()
                trace: list[TraceOp] = payload
                return trace
            if tag == "raised":
                worker.kill()
                self.violations.append(f"save_many({_BATCH}) raised with no crash: {payload[0]}")
                return None
            if tag == NO_SHIM:
                worker.kill()
                return f"no syscall shim ({payload})"

    def run(self) -> None:
        def record(backend: Backend) -> list[TraceOp] | str | None:
            self.backend = backend
            return self._count()

        # The seam chooses, as for D1's crash points: the interposer when the shim saw the same
        # calls in the same run, else the shim (I/O made in C, or calls bound at import).
        counted = choose_backend(record, _no_points, self.options.backend)
        self.backend, self.judged, trace = counted.backend, counted.judged, counted.counted
        if trace is None:
            if counted.unseen:
                self.unseen = f"kills inside the batch: {counted.unseen}"
            return
        chosen = points(trace)
        if not chosen:
            why = counted.unseen or "neither tracer saw the store's I/O"
            self.unseen = f"kills inside the batch: {why}"
            return
        self.unseen = ""
        if not self.options.long:
            # Where a batch's keys can part ways: at each rename, and at the syncs after the
            # first one (the directory fsync). Inside one key's temp write, D1 already kills.
            # A store without renames (a database's journal) is cut at each of its syncs.
            renames = [op.index for op in trace if op.kind in _RENAMES]
            first = renames[0] if renames else -1
            chosen = [
                (op, phase)
                for op, phase in chosen
                if op.kind in _RENAMES or (op.kind in _SYNCS and op.index > first)
            ] or chosen
        for op, phase in chosen:
            self._kill_at(op, phase, trace)
            if len(self.violations) >= _ENOUGH:
                return

    def _kill_at(self, op: TraceOp, phase: str, trace: list[TraceOp]) -> None:
        path = self._directory()
        worker = self.fleet.take()
        worker.send(self._job(path, (op.index, phase)))
        acked = False
        while True:
            tag, _ = worker.recv(_STEP_SECONDS, f"the batch to reach op #{op.index}")
            if tag == "acked":
                acked = True
            elif tag == "stopped":
                break
            else:  # not reached this time (a racing background thread)
                worker.kill()
                self.unreached += 1
                return
        worker.kill()
        self.killed += 1
        where = label(op, phase, trace, path)
        found = self._read(path)
        for fact, problem in judged_batch(found, acked=acked, atomic=self.atomic):
            self.violations.append(f"{where}: {problem}")
            self.facts.setdefault(fact, f"{where}: {problem}")

    def _read(self, path: str) -> dict[str, Any]:
        if self.verifier is None:
            # One verifier for every cycle: it opens each crashed directory with a new handle,
            # and never had any of them open before.
            self.verifier = self.fleet.take()
        keys = sorted({*_SETUP, *_BATCH})
        self.verifier.send({"job": "verify", "path": path, "keys": keys, "later": None})
        try:
            _, found = self.verifier.recv(_STEP_SECONDS, f"reading {path}")
            if "open" not in found:
                self.verifier.recv(_STEP_SECONDS, "closing the verifier's handle")
        except WorkerGone as exc:
            self.verifier.kill()
            self.verifier = None
            return {"open": f"the verifier died or hung: {exc}"}
        return dict(found)


def _shown(value: object) -> str:
    return "absent" if value is None else repr(value)


def judge_batch(found: dict[str, Any], *, acked: bool, atomic: bool) -> list[str]:
    """What is wrong with the state a fresh handle read after a kill inside ``save_many``."""
    return [text for _, text in judged_batch(found, acked=acked, atomic=atomic)]


def judged_batch(found: dict[str, Any], *, acked: bool, atomic: bool) -> list[tuple[str, str]]:
    """:func:`judge_batch`'s problems, each with what it demonstrates (``_diagnosis.py``)."""
    if "open" in found:
        return [
            ("open-fails-after-kill", f"a fresh handle could not open the store: {found['open']}")
        ]
    problems: list[tuple[str, str]] = []
    state: dict[Key, str] = {}
    for key in sorted({*_SETUP, *_BATCH}):
        got = found.get(f"load{key}")
        old, new = _SETUP.get(key), _BATCH.get(key, _SETUP.get(key))
        if isinstance(got, str):
            problems.append(("batch-kill-torn", f"load{key} {got}"))
            continue
        if key not in _BATCH:
            if got != old:
                text = f"key {key} outside the batch holds {_shown(got)}, not {old}"
                problems.append(("kill-changed-other-key", text))
            continue
        if acked and got != new:
            text = f"save_many returned, yet load{key} gave {_shown(got)}, not {new}"
            problems.append(("acked-lost-after-kill", text))
        elif got not in (old, new):
            text = f"load{key} gave {_shown(got)}: neither the old {_shown(old)} nor the new {new}"
            problems.append(("batch-kill-torn", text))
        state[key] = "new" if got == new else "old"
    listing = found.get("list_all")
    loads = {k: found.get(f"load{k}") for k in sorted({*_SETUP, *_BATCH})}
    expected_listing = {k: v for k, v in loads.items() if v is not None and not isinstance(v, str)}
    if isinstance(listing, str):
        problems.append(("listing-shows-leftover", f"list_all() {listing}"))
    elif listing != expected_listing:
        text = f"list_all() gave {listing}, the loads {expected_listing}"
        problems.append(("listing-shows-leftover", text))
    if atomic and len(set(state.values())) > 1 and not problems:
        parts = ", ".join(f"{k}: {v}" for k, v in state.items())
        problems.append(
            ("batch-split", f"declared batch_atomic, yet the batch is half done ({parts})")
        )
    return problems
