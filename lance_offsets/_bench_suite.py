"""The suite's own figures for ``lance-offsets bench``: where the checking time goes.

The quick check's wall time (a child ``lance-offsets check --seed 1`` in an empty directory), the
crash campaign's kill-verify cycles per second beside a bare loop of the same workers (get a
fresh ready one, kill it: forked from the warm template) and beside the fork-server
start-ready-kill loop it replaced, the power-loss explorer's crash states per second, and the
history checker's cost per operation at 10^4, 10^5 and 10^6 operations (a linear checker costs
the same per operation at every size).
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time

from ._bench_store import Figure

__all__ = ["bare_cycles", "forkserver_cycles", "suite_figures", "synthetic_history"]

#: The store the suite figures are measured on.
REFERENCE = "lance_offsets.conformance.reference:lockfile"


def bare_cycles(spec: str, count: int, *, warm: bool = True) -> float:
    """Get-a-fresh-ready-worker-and-kill-it cycles per second: the floor under every crash cycle.

    The campaign's own path (``Fleet.take``, then ``kill``): on POSIX a child forked from the
    warm template; with ``warm=False`` a new fork-server process per cycle, the path before it
    (:func:`forkserver_cycles`).
    """
    from .stress.workers._fleet import Fleet

    with Fleet(spec, warm=warm) as fleet:
        fleet.take().kill()  # the fork server's and the template's own start-up is not a cycle
        began = time.perf_counter()
        for _ in range(count):
            fleet.take().kill()
        return count / (time.perf_counter() - began)


def forkserver_cycles(spec: str, count: int) -> float:
    """Fork-server start-ready-kill cycles per second (import and build the factory each time)."""
    return bare_cycles(spec, count, warm=False)


def synthetic_history(operations: int, workers: int = 4) -> list[object]:
    """A seeded history of an atomic register on one key, every operation overlapping others."""
    from .stress.concurrency._history import Op

    rng = random.Random(0)
    timeline = []
    for w in range(workers):
        t = 0.0
        for s in range(1, operations // workers + 1):
            start = t + rng.random()
            point = start + rng.random()
            t = point + rng.random()
            timeline.append((point, w, s, start, t, rng.choice(["save", "load", "load", "delete"])))
    state: int | None = None
    ops: list[object] = []
    for _, w, s, start, end, kind in sorted(timeline):
        value = w * 2**32 + s if kind == "save" else None
        if kind != "load":
            state = value
        result = state if kind == "load" else None
        ops.append(Op(w, s, kind, (1, 23), value, start, end, "ok", result))  # type: ignore[arg-type]
    return ops


def quick_check_seconds(root: str, spec: str = REFERENCE) -> float:
    """Wall seconds of ``lance-offsets check SPEC --seed 1`` (quick profile).

    The reference store's by default.
    """
    where = tempfile.mkdtemp(prefix="check-", dir=root)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "lance_offsets", "check", spec, "--seed", "1"],
        cwd=where,
        check=False,
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - began


def _history(figures: list[Figure]) -> None:
    from .stress.concurrency._linearize import check_history

    per_op: dict[int, float] = {}
    for size in (10**4, 10**5, 10**6):
        ops = synthetic_history(size)
        began = time.perf_counter()
        if check_history(ops):  # type: ignore[arg-type]
            raise RuntimeError("the history checker rejected a linearizable history")
        per_op[size] = (time.perf_counter() - began) / len(ops) * 1e6
        big = size == 10**6
        figures.append(
            Figure(
                "suite",
                f"history checker, {size:,} ops",
                per_op[size],
                "us/op",
                "at 10,000 ops",
                per_op[10**4],
                per_op[size] / per_op[10**4],
                "<= 10 us/op, flat" if big else "",
                (per_op[size] <= 10 and per_op[size] / per_op[10**4] <= 1.5) if big else None,
            )
        )


def suite_figures(root: str, *, seed: int) -> list[Figure]:
    """Every suite figure; the scratch directories go under ``root``."""
    from .stress._options import StressOptions
    from .stress.crash._campaign import run_campaign
    from .stress.powerloss._campaign import run_powerloss

    figures = []
    wall = quick_check_seconds(root)
    figures.append(
        Figure(
            "suite",
            "quick check, reference store",
            wall,
            "s",
            "goal",
            15.0,
            wall / 15.0,
            "<= 15 s",
            wall <= 15.0,
        )
    )
    options = StressOptions(seed=seed, workdir=root)
    campaign = run_campaign(REFERENCE, options)
    rate = campaign.cycles / campaign.seconds
    floor = bare_cycles(REFERENCE, 30)
    figures.append(
        Figure(
            "suite",
            "kill-verify cycles",
            rate,
            "cycles/s",
            "bare fork-ready-kill",
            floor,
            rate / floor,
            ">= 100/s and >= 0.90x",
            rate >= 100 and rate / floor >= 0.9,
        )
    )
    old_floor = forkserver_cycles(REFERENCE, 30)  # the floor before the warm template
    figures.append(
        Figure(
            "suite",
            "kill-verify cycles",
            rate,
            "cycles/s",
            "forkserver start-ready-kill",
            old_floor,
            rate / old_floor,
        )
    )
    # The long workload (48 calls, thousands of states): the short one's 185 states measure
    # process start-up more than the explorer.
    run = run_powerloss(REFERENCE, StressOptions(seed=seed, workdir=root, long=True))
    states = run.states / run.result.seconds if run.result.seconds else 0.0
    figures.append(
        Figure(
            "suite",
            "power-loss states, long workload",
            states,
            "states/s",
            "goal",
            2000.0,
            states / 2000,
            ">= 2,000/s",
            states >= 2000,
        )
    )
    _history(figures)
    return figures
