"""How often the quick M1/M2 runs catch each concurrency defect of the zoo, over N seeds.

For each ``SPEC@PID`` (default: every lock defect of ``zoo.stress_concurrency_zoo`` on the
property that catches it, and the correct stores on both), runs the quick profile's M1 or M2
(2 workers, 2 s, as plain ``lance-offsets check``) once per seed and prints how many runs failed,
the operations checked per run and the first line of each failure. A defect should be caught in
every run; a correct store in none.

Usage: ``PYTHONPATH=tests python benchmarks/bench_races.py [--seeds N] [--first S]
[--seconds S] [--workers N] [SPEC@PID ...]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.concurrency._campaign import check_m1, check_m2

ZOO = "zoo.stress_concurrency_zoo"
#: The zoo's lock defects with the property each must fail, then the correct stores.
DEFAULT = (
    f"{ZOO}:shared_tmp@M1",
    f"{ZOO}:unlinking_delete@M2",
    f"{ZOO}:unlinking_delete@M1",
    f"{ZOO}:thread_locked@M1",
    f"{ZOO}:rmw_json@M1",
    f"{ZOO}:unlink_on_release@M1",
    f"{ZOO}:polling_unlink@M1",
    f"{ZOO}:stale_cache@M1",
    f"{ZOO}:careful@M1",
    f"{ZOO}:careful@M2",
    "lance_offsets.conformance.reference:lockfile@M1",
    "lance_offsets.conformance.reference:lockfile@M2",
    "lance_offsets.conformance.reference:sqlite@M1",
    "lance_offsets.conformance.reference:sqlite@M2",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=list(DEFAULT), metavar="SPEC@PID")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for target in args.targets:
        spec, _, pid = target.rpartition("@")
        check = check_m1 if pid == "M1" else check_m2
        failed, ops, firsts = 0, [], []
        began = time.monotonic()
        for seed in range(args.first, args.first + args.seeds):
            scratch = tempfile.mkdtemp(prefix="bench-races-")
            options = StressOptions(
                seconds=args.seconds, workers=args.workers, seed=seed, workdir=scratch
            )
            try:
                result = check(spec, options)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)  # a failure keeps its histories
            ops.append(int(result.evidence.get("operations checked", 0)))
            if result.outcome == "failed":
                failed += 1
                firsts.append(f"seed {seed}: {result.details.splitlines()[0][:110]}")
        took = time.monotonic() - began
        print(
            f"{target}: caught {failed}/{args.seeds}, operations per run median "
            f"{statistics.median(ops):.0f} (min {min(ops)}), {took / args.seeds:.1f} s per run",
            flush=True,
        )
        for line in firsts:
            print(f"    {line}", flush=True)


if __name__ == "__main__":
    main()
