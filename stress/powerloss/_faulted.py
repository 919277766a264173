"""Faults and power cuts together: D3's explorer and oracle on a trace someone else recorded.

F2 makes a call fail (an ``fsync`` returning ``EIO``, say) and watches what the store does. A
store that retries the failed sync without writing its data again, and then acknowledges, has
lost that data if the power goes: after a failed writeback Linux marks the dirty pages clean (or
drops them), so the second sync has nothing to write (PostgreSQL's "fsyncgate", 2018). The
model (``_fsmodel.py``) keeps that possibility open: bytes written before a failed sync of a
file stay in doubt until the store writes them again, whatever later syncs return.

:func:`judge_faulted_trace` takes F2's faulted trace (with ``error`` set on the failed call),
the acknowledgements as D3's marks, and the keys; explores every crash state a power cut could
leave, has fresh verifier processes open the store on each, and judges them as D3 does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .._options import StressOptions
from ..seam._trace import TraceOp
from ._campaign import Clock, PowerLossRun, Scratch, check_recording, in_scratch
from ._fsmodel import Tree
from ._oracle import Key, Step, parse_mark
from ._recording import TRACERS, Recording
from ._verifier import Lanes, lanes_for

__all__ = ["judge_faulted_trace"]


def judge_faulted_trace(
    spec: str,
    trace: Sequence[TraceOp],
    *,
    root: str,
    initial: Tree,
    keys: Sequence[Key],
    options: StressOptions,
    committed: Mapping[Key, int] | None = None,
    tracer: str = TRACERS["python"],
) -> PowerLossRun:
    """Explore and judge the crash states of a recorded (faulted) trace, as D3 does.

    :param spec: the store's factory spec (``module:factory``): the verifiers open it.
    :param trace: what the store did, in order, failed calls with ``error`` set (``"EIO"``),
        bracketed by D3's marks: a ``mark`` record whose ``note`` is
        ``Step("save", key, value).note("begin")`` before a call and ``.note("ack")`` after it
        returned (``"fail"`` if it raised; a delete is ``Step("delete", key)``). Paths are
        absolute, under ``root``. Indices are renumbered (a slice of a longer trace will do).
    :param root: the directory the store was opened on (the trace's paths are under it).
    :param initial: the tree under ``root`` when the trace starts, taken as durable
        (``_fstree.snapshot(root)`` taken then).
    :param keys: every key to load in each crash state (those the marks name are added).
    :param options: the seed (sampling) and ``long`` (the state cap, verifier processes).
    :param committed: values durable before the trace (a setup the store synced): each key is
        expected to hold its value until an acknowledged call changes it.
    :param tracer: who recorded the trace, for the report.
    :returns: :class:`~._campaign.PowerLossRun`: ``result`` is a D3-style verdict ("failed"
        with the first violation on its first line and a crash state as its ``crash_state``
        artifact; "passed"; "unverified" when the trace cannot be modelled, with the reason).
    """
    ops = [dataclasses.replace(op, index=n) for n, op in enumerate(trace)]
    durable = tuple(sorted((committed or {}).items()))
    steps = [Step("save", key, value) for key, value in durable] + _steps(ops, keys)
    recording = Recording(root, initial, ops, tracer, committed=durable)
    names = sorted({step.key for step in steps})

    def run(dirs: Scratch, clock: Clock) -> PowerLossRun:
        lanes = Lanes(spec, names, dirs.states, lanes_for(options.long))
        lanes.spawn()
        try:
            return check_recording(
                options, steps, recording, clock, lanes=lanes, states=dirs.states, atomic=False
            )
        finally:
            lanes.close()

    return in_scratch(options, run)


def _steps(trace: Sequence[TraceOp], keys: Sequence[Key]) -> list[Step]:
    """The store calls the marks name (each begun once), and a bare delete for other keys.

    The oracle reads two things from them: the keys to load, and every value the workload tried
    to save (a value nobody tried is "invented").
    """
    steps: list[Step] = []
    for op in trace:
        parsed = parse_mark(op.note) if op.kind == "mark" else None
        if parsed is not None and parsed[0] == "begin":
            steps.append(parsed[1])
    named = {step.key for step in steps}
    steps += [Step("delete", key) for key in keys if key not in named]
    return steps
