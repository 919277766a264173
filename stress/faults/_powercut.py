"""Faults and power cuts together: a save that returned after a failed sync, shown to lose data.

The sync rule (``_judge.py``) reads a failed sync the store went on from as "the offset is not
durable". That is an inference from the trace; the power-loss explorer (D3's model, with
fsyncgate semantics: bytes written before a failed sync stay in doubt until written again,
whatever later syncs return) can show it. For every faulted cycle the rule flags, F2 hands the
cycle's trace, bracketed by D3's marks, to the explorer
(``lance_offsets.stress.powerloss._faulted.judge_faulted_trace``, the power-loss side's
interface), from the directory's tree as set up:

- the explorer finds a crash state that loses the acknowledged offset: the violation carries it
  (shown, not inferred);
- it checks every state a power cut could leave and finds none: the rule's inference is wrong
  for this store, and the finding is dropped (the verdict rests on what reached the disk);
- it samples, cannot model the trace, or is not there: the rule stands, and says so.

Explorations are cached by what the trace did (the three errors of a plan, each cycle's own
directory and values give one trace) and capped per run: each starts verifier processes.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._options import StressOptions
from ..powerloss._fstree import Tree
from ..powerloss._oracle import Step
from ..powerloss._recording import TRACERS
from ..seam._trace import TraceOp

__all__ = ["EXPLORER", "Explored", "PowerCuts"]

#: Where the power-loss side keeps the explorer for a recorded (faulted) trace.
EXPLORER: Final = "lance_offsets.stress.powerloss._faulted:judge_faulted_trace"
#: Explorations per F2 run, short and long (``MAX_RUNS[options.long]``).
MAX_RUNS: Final = (4, 16)
#: Lines of the explorer's report a violation quotes: the violation, the counts, the run.
QUOTED: Final = 3

Key = tuple[int, int]


class _Result(Protocol):
    outcome: str
    details: str
    evidence: Mapping[str, object]
    artifacts: Mapping[str, Any]


class _Run(Protocol):
    result: _Result


#: ``judge_faulted_trace(spec, trace, *, root, initial, keys, options, committed, tracer)``.
Explorer = Callable[..., _Run]


@dataclass(frozen=True)
class Explored:
    """What the explorer said about one faulted trace.

    :ivar verdict: ``"lost"`` (a crash state loses an acknowledged offset), ``"kept"`` (every
        state checked, none does), or ``"open"`` (not judged: sampled, unmodelled, not here).
    :ivar lines: for ``lost``, the explorer's violation and where the cut was; else why not.
    :ivar state: for ``lost``, the explorer's ``crash_state`` artifact (the files the cut left
        beside the trace), which reports draw.
    """

    verdict: str
    lines: tuple[str, ...]
    state: Mapping[str, Any] | None = None


def _explorer() -> Explorer | str:
    module, _, name = EXPLORER.partition(":")
    try:
        found: Explorer = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return f"the power-loss explorer for faulted traces ({EXPLORER}) is not here: {exc}"
    return found


def _signature(trace: Sequence[TraceOp], root: str) -> tuple[tuple[str, str, bool, bool], ...]:
    """What a trace did, whatever the values and the error: the cache key of an exploration.

    Every cycle has its own directory and values, and a plan's three errors give one trace:
    the operations' kinds, names under the directory, and which failed, are what the
    explorer's verdict depends on for one store.
    """
    return tuple(
        (op.kind, os.path.relpath(op.target or op.path, root), op.is_dir, op.error is None)
        for op in trace
    )


class PowerCuts:
    """The explorations of one F2 run: cached, capped, counted for the evidence."""

    def __init__(self, spec: str, options: StressOptions) -> None:
        self.spec = spec
        self.options = options
        self.cap = MAX_RUNS[options.long]
        self.cache: dict[object, Explored] = {}
        #: Explorations run, and their verdicts, for the evidence.
        self.runs = 0
        self.counts: dict[str, int] = {"lost": 0, "kept": 0, "open": 0}

    def explore(
        self,
        trace: Sequence[TraceOp],
        *,
        step: Step,
        acknowledged: bool,
        root: str,
        initial: Tree,
        committed: Mapping[Key, int],
        backend: str,
    ) -> Explored:
        """Explore the crash states of one faulted action's trace (``step``: the action).

        :param acknowledged: the action returned (its mark is ``ack``; else ``fail``).
        :param committed: the set-up values, durable before the trace.
        """
        signature = (step.kind, acknowledged, _signature(trace, root))
        if signature in self.cache:
            return self.cache[signature]
        explored = self._explore(
            trace,
            step=step,
            acknowledged=acknowledged,
            root=root,
            initial=initial,
            committed=committed,
            backend=backend,
        )
        self.cache[signature] = explored
        self.counts[explored.verdict] += 1
        return explored

    def _explore(
        self,
        trace: Sequence[TraceOp],
        *,
        step: Step,
        acknowledged: bool,
        root: str,
        initial: Tree,
        committed: Mapping[Key, int],
        backend: str,
    ) -> Explored:
        explorer = _explorer()
        if isinstance(explorer, str):
            return Explored("open", (explorer,))
        if self.runs >= self.cap:
            return Explored("open", (f"the cap of {self.cap} explorations per run was reached",))
        self.runs += 1
        marked = [
            TraceOp(0, "mark", root, note=step.note("begin")),
            *(op for op in trace if op.kind != "mark"),
            TraceOp(0, "mark", root, note=step.note("ack" if acknowledged else "fail")),
        ]
        options = dataclasses.replace(self.options, progress=lambda _: None)
        run = explorer(
            self.spec,
            marked,
            root=root,
            initial=initial,
            keys=sorted(committed),
            options=options,
            committed=dict(committed),
            tracer=TRACERS.get(backend, backend),
        )
        result = run.result
        lines = tuple(result.details.splitlines())
        if result.outcome == "failed":
            where = [line.strip() for line in lines if line.strip().startswith("crash state ")]
            shown = (*lines[:QUOTED], *where[:1])
            return Explored("lost", shown, result.artifacts.get("crash_state"))
        if result.outcome == "passed" and result.evidence.get("exhaustive") == "yes":
            return Explored("kept", (lines[0] if lines else "every crash state kept it",))
        why = lines[0] if lines else result.outcome
        if result.outcome == "passed":
            why = f"the explorer sampled the crash states (not exhaustive): {why}"
        return Explored("open", (why,))

    def evidence(self) -> str:
        """``"2 (1 lost, 1 kept)"``: explorations and what they showed."""
        shown = ", ".join(f"{n} {verdict}" for verdict, n in self.counts.items() if n)
        return f"{sum(self.counts.values())}" + (f" ({shown})" if shown else "")
