"""Kill-verify cycles per second of the crash campaign (D1/D2/D4/D5), and the F2 fault check's time.

For each store: the crash campaign's kill-verify cycles per second (short by default: every crash
point once plus 6 random kills; ``--cycles N`` for a long one), and the F2 check's faulted saves
per second. Two baselines run in the same process: bare worker cycles (get a fresh worker, wait
until it is ready, kill it: the floor any crash cycle pays; on POSIX a child forked from the warm
template) and ``zoo.stress_crash_zoo:careful`` (the same protocol as the reference store, in 60
lines); ratios are against them. Each store's cycles/s is printed beside the bare cycles of a
worker built for it, and beside the fork-server start-ready-kill loop the template replaced.

Then the syscall shim's per-call overhead (``stress/seam/_shim.py``): a loop of 64-byte ``pwrite`` +
``fsync`` on tmpfs, timed in one process with the shim preloaded but unarmed, armed for another
directory (the filter's cost: resolve the descriptor, compare), and armed for the loop's own
directory (a callback into Python and a content read per call, as in a crash campaign), and in
a process without the shim.

Usage: ``PYTHONPATH=tests python benchmarks/bench_crash.py [--cycles N] [--seed N] [SPEC ...]``
(default SPECs: the reference lock-file store and ``zoo.sqlite_zoo:wal_full``, whose I/O is in C).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.crash._campaign import run_campaign
from lance_offsets.stress.faults._campaign import check_f2
from lance_offsets.stress.seam._shim import build

from lance_offsets._bench_suite import bare_cycles, forkserver_cycles

BASELINE = "zoo.stress_crash_zoo:careful"
SQLITE = "zoo.sqlite_zoo:wal_full"

#: Run in a child process (with or without the shim preloaded): seconds per call of each mode.
_LOOP = r"""
import json, os, sys, tempfile, time
from lance_offsets.stress.seam._shim import loaded, syscall_traced
calls = int(sys.argv[1])
here, elsewhere = tempfile.mkdtemp(dir="/dev/shm"), tempfile.mkdtemp(dir="/dev/shm")
fd = os.open(os.path.join(here, "f"), os.O_RDWR | os.O_CREAT, 0o644)
def loop():
    began = time.perf_counter()
    for i in range(calls // 2):
        os.pwrite(fd, b"x" * 64, (i % 64) * 64)
        os.fsync(fd)
    return (time.perf_counter() - began) / calls
out = {"unarmed" if loaded() else "no shim": loop()}
if loaded():
    with syscall_traced(elsewhere):
        out["armed, other directory"] = loop()
    with syscall_traced(here):
        out["armed, traced"] = loop()
print(json.dumps(out))
"""


def shim_overhead(calls: int = 20000) -> dict[str, float]:
    """Seconds per pwrite/fsync call in each mode (see the module's docstring)."""
    shim = build()
    figures: dict[str, float] = {}
    for preload in [None, shim] if shim else [None]:
        env = dict(os.environ)
        if preload:
            env["LD_PRELOAD"] = preload
        done = subprocess.run(
            [sys.executable, "-c", _LOOP, str(calls)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        figures.update(json.loads(done.stdout))
    return figures


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
    parser.add_argument("specs", nargs="*", default=[DEFAULT_SPEC, SQLITE])
    parser.add_argument("--cycles", type=int, default=0, help="long campaign of N cycles")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    options = StressOptions(
        long=args.cycles > 0, cycles=args.cycles, seed=args.seed, progress=print
    )
    base_rate, base_f2 = measure(BASELINE, options)
    for spec in args.specs:
        floor, old_floor = bare_cycles(spec, 30), forkserver_cycles(spec, 30)
        print(
            f"{spec}: bare worker fork-ready-kill {floor:.1f} cycles/s, "
            f"forkserver start-ready-kill {old_floor:.1f} cycles/s"
        )
        rate, f2 = measure(spec, options)
        print(
            f"{spec}: {rate / floor:.2f} x bare cycles, {rate / old_floor:.2f} x forkserver "
            f"cycles, {rate / base_rate:.2f} x {BASELINE} cycles/s; "
            f"F2 time {f2 / base_f2:.2f} x {BASELINE}"
        )
    figures = shim_overhead()
    plain = figures.get("no shim", 0.0)
    for mode, seconds in figures.items():
        extra = f" (+{(seconds - plain) * 1e6:.2f} us)" if mode != "no shim" else ""
        print(f"shim overhead: pwrite/fsync on tmpfs, {mode}: {seconds * 1e6:.2f} us/call{extra}")


if __name__ == "__main__":
    main()
