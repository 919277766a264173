"""Server crash (D2, fault kind "server killed"): acknowledged commits survive a server kill.

Handles commit in threads (:mod:`._run`) while the suite SIGKILLs the declared server's whole
process group at seeded times and restarts it. After each restart a fresh handle loads every key,
and the history checker (:func:`~lance_offsets.stress.concurrency._linearize.check_history`) must
explain every load: an acknowledged save that the restart lost makes a later load return an older
value, which no linearization explains. Operations the kill touched are indeterminate (they may have
committed or not); nothing else is excused.
"""

from __future__ import annotations

import random
import time
from typing import Final

from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ._declaration import ServerDeclaration
from ._run import RunRecord, Window, run_with_faults
from ._verdict import verdict

__all__ = ["FAULT", "check_server_crash"]

#: The fault kind, as reports and evidence name it.
FAULT: Final = "server killed"
#: Seconds between kills: long enough for commits to pile up, short enough for many kills.
GAP: Final = (0.4, 1.6)


def check_server_crash(
    spec: str, server: ServerDeclaration, options: StressOptions
) -> PropertyResult:
    """D2 for the server: kill it (SIGKILL, whole process group) mid-run, restart, verify."""
    started = time.monotonic()
    server.start()
    server.route(None)

    def kill_once(rng: random.Random, left: float) -> Window | None:
        gap = rng.uniform(*GAP)
        if left < gap + 0.2:
            return None
        time.sleep(gap)
        start = time.monotonic()
        server.stop(kill=True)
        server.start()
        return Window(FAULT, start, time.monotonic())

    record = run_with_faults(
        spec,
        seed=options.seed,
        workers=options.workers,
        seconds=options.seconds,
        inject=kill_once,
        settle=lambda: None,
        workdir=options.workdir,
    )
    return verdict("D2", FAULT, record, options, started=started, evidence=_evidence(record))


def _evidence(record: RunRecord) -> dict[str, int | float | str]:
    last_kill = max((w.start for w in record.windows), default=0.0)
    acknowledged = sum(
        1
        for op in record.ops
        if op.kind == "save" and op.outcome == "ok" and (op.complete or 0.0) < last_kill
    )
    return {
        "fault": FAULT,
        "server kills": len(record.windows),
        "commits acknowledged before a kill": acknowledged,
    }
