"""Server crash (D2, fault kind "server killed"): acknowledged commits survive a server kill.

Handles commit in threads (:mod:`._run`) while the suite SIGKILLs the declared server's whole
process group at seeded times and restarts it. After each restart a fresh handle loads every key,
and the history checker (:func:`~lance_offsets.stress.concurrency._linearize.check_history`) must
explain every load: an acknowledged save that the restart lost makes a later load return an older
value, which no linearization explains. Operations the kill touched are indeterminate (they may have
committed or not); nothing else is excused.
"""

from __future__ import annotations

import dataclasses
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
#: The quick profile's run: this many kills, closer together (commits pile up within 0.2 s on
#: any server that answers at all), bounded by :data:`QUICK_SECONDS`.
QUICK_KILLS: Final = 3
QUICK_GAP: Final = (0.2, 0.6)
QUICK_SECONDS: Final = 30.0


def check_server_crash(
    spec: str, server: ServerDeclaration, options: StressOptions
) -> PropertyResult:
    """D2 for the server: kill it (SIGKILL, whole process group) mid-run, restart, verify.

    A long run kills it for ``options.seconds``; the quick profile's, :data:`QUICK_KILLS` times.
    """
    started = time.monotonic()
    server.start()
    server.route(None)
    gaps = GAP if options.long else QUICK_GAP

    def kill_once(rng: random.Random, left: float) -> Window | None:
        gap = rng.uniform(*gaps)
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
        seconds=options.seconds if options.long else QUICK_SECONDS,
        inject=kill_once,
        settle=lambda: None,
        workdir=options.workdir,
        faults=None if options.long else QUICK_KILLS,
    )
    evidence = _evidence(record)
    result = verdict("D2", FAULT, record, options, started=started, evidence=evidence)
    if result.outcome == "passed" and not evidence["commits acknowledged before a kill"]:
        # Kills that found nothing acknowledged to lose proved nothing.
        why = (
            f"D2 under {FAULT} (seed {options.seed}): {len(record.windows)} kill(s), but no "
            "commit was acknowledged before one: nothing a kill could lose was at stake"
        )
        return dataclasses.replace(result, outcome="unverified", details=why)
    return result


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
