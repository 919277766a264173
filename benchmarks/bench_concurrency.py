"""Operations per second of the M1 workload with N workers, and what the history check costs.

For each store: operations completed per second over the run (4 workers by default, the M1 mix
on 3 keys, seeded kills), kills, and the history checker's time for that history (absolute and per
operation). The baseline is ``zoo.stress_concurrency_zoo:careful``, the same lock-and-replace
protocol without fsync, run in the same process: the ratio shows what durability costs under
contention. A last line times the checker alone on a synthetic 4-worker history of an atomic
register (every operation overlapping its neighbours), with no processes involved.

Usage: ``PYTHONPATH=tests python benchmarks/bench_concurrency.py [--seconds S] [--workers N]
[--seed N] [SPEC ...]`` (default SPEC: the reference lock-file store).
"""

from __future__ import annotations

import argparse
import random
import shutil
import time

from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.concurrency._campaign import M1_WORKLOAD, run_workload
from lance_offsets.stress.concurrency._history import Op
from lance_offsets.stress.concurrency._linearize import check_history

BASELINE = "zoo.stress_concurrency_zoo:careful"


def measure(spec: str, options: StressOptions) -> float:
    run = run_workload(spec, options, M1_WORKLOAD)
    began = time.perf_counter()
    violations = check_history(run.ops)
    checked = time.perf_counter() - began
    shutil.rmtree(run.workdir, ignore_errors=True)
    done = sum(1 for op in run.ops if op.complete is not None)
    rate = done / run.seconds
    print(
        f"{spec}: {done} ops in {run.seconds:.1f} s = {rate:.0f} ops/s, {run.kills} kills, "
        f"{len(violations)} violations, {len(run.problems)} problems; history checked in "
        f"{checked:.2f} s ({checked / max(done, 1) * 1e6:.1f} us/op)"
    )
    return rate


def synthetic(ops_per_worker: int, workers: int = 4) -> list[Op]:
    rng = random.Random(0)
    timeline = []
    for w in range(workers):
        t = 0.0
        for s in range(1, ops_per_worker + 1):
            start = t + rng.random()
            point = start + rng.random()
            t = point + rng.random()
            timeline.append((point, w, s, start, t, rng.choice(["save", "load", "load", "delete"])))
    state: int | None = None
    ops = []
    for _, w, s, start, end, kind in sorted(timeline):
        value = w * 2**32 + s if kind == "save" else None
        if kind != "load":
            state = value
        result = state if kind == "load" else None
        ops.append(Op(w, s, kind, (1, 23), value, start, end, "ok", result))  # type: ignore[arg-type]
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "specs", nargs="*", default=["lance_offsets.conformance.reference:lockfile"]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    options = StressOptions(long=True, seconds=args.seconds, workers=args.workers, seed=args.seed)
    baseline = measure(BASELINE, options)
    for spec in args.specs:
        rate = measure(spec, options)
        print(f"  ratio to baseline: {rate / baseline:.2f}")
    ops = synthetic(25_000)
    began = time.perf_counter()
    assert check_history(ops) == []
    took = time.perf_counter() - began
    print(
        f"checker alone: {len(ops)} ops (4 workers, one key) in {took:.2f} s "
        f"({took / len(ops) * 1e6:.1f} us/op)"
    )


if __name__ == "__main__":
    main()
