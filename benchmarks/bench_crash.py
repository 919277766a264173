"""Kill-verify cycles per second of the crash campaign (D1/D2/D4/D5), and the F2 fault check's time.

For each store: the crash campaign's kill-verify cycles per second (short by default: every crash
point once plus 6 random kills; ``--cycles N`` for a long one), and the F2 check's faulted saves
per second. Two baselines run in the same process: bare worker cycles (start a worker, wait until
it is ready, kill it: the floor any crash cycle pays) and ``zoo.stress_crash_zoo:careful`` (the
same protocol as the reference store, in 60 lines); ratios are against them.

Usage: ``PYTHONPATH=tests python benchmarks/bench_crash.py [--cycles N] [--seed N] [SPEC ...]``
(default SPEC: the reference lock-file store).
"""

from __future__ import annotations

import argparse
import time

from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._crash import run_campaign
from lance_offsets.stress._faults import check_f2
from lance_offsets.stress._fleet import Fleet
from lance_offsets.stress._options import StressOptions

BASELINE = "zoo.stress_crash_zoo:careful"


def bare_cycles(spec: str, count: int) -> float:
    """Worker start-ready-kill cycles per second: the floor under every crash cycle."""
    with Fleet(spec) as fleet:
        fleet.take().kill()  # the fork server's own start-up is not a cycle
        began = time.perf_counter()
        for _ in range(count):
            fleet.take().kill()
        return count / (time.perf_counter() - began)


def measure(spec: str, options: StressOptions) -> tuple[float, float]:
    campaign = run_campaign(spec, options)
    rate = campaign.cycles / campaign.seconds
    print(
        f"{spec}: {campaign.cycles} kill-verify cycles ({campaign.points} crash points, "
        f"{campaign.random_kills} random kills) in {campaign.seconds:.1f} s = {rate:.1f} cycles/s, "
        f"{len(campaign.violations)} violations"
    )
    f2 = check_f2(spec, options)
    saves = int(f2.details.split(": ", 1)[1].split(" ", 1)[0])
    print(f"{spec}: F2 {f2.outcome}, {saves} faulted saves in {f2.seconds:.1f} s")
    return rate, f2.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=[DEFAULT_SPEC])
    parser.add_argument("--cycles", type=int, default=0, help="long campaign of N cycles")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    options = StressOptions(
        long=args.cycles > 0, cycles=args.cycles, seed=args.seed, progress=print
    )
    floor = bare_cycles(DEFAULT_SPEC, 30)
    print(f"bare worker start-ready-kill: {floor:.1f} cycles/s")
    base_rate, base_f2 = measure(BASELINE, options)
    for spec in args.specs:
        rate, f2 = measure(spec, options)
        print(
            f"{spec}: {rate / floor:.2f} x bare cycles, {rate / base_rate:.2f} x {BASELINE} "
            f"cycles/s; F2 time {f2 / base_f2:.2f} x {BASELINE}"
        )


if __name__ == "__main__":
    main()
