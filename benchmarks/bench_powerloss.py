"""Crash states checked per second by the D3 power-loss check, per phase, per store.

Runs ``run_powerloss`` on the reference lock-file store and on the bug zoo (short and, with
``--long``, the long workload) and prints, for each: states checked, distinct directories opened,
wall seconds by phase (record = worker process, with the verifiers starting meanwhile; explore =
the model's first pass; verify = the states streamed from the model, written out and opened by
the verifier processes, two in a long run; judge = the oracle) and two rates: states per second
over the whole check, and directories per second of the verify phase. The baseline is the
whole-check rate of the reference store in the same process.

The stores whose I/O is in C (SQLite, LMDB) are recorded through the syscall shim, the same
seam the crash points and F2 use (strace where the shim cannot be built); the tracer is printed.

Usage: ``PYTHONPATH=tests python benchmarks/bench_powerloss.py [--long] [--seed N]
[--tear-size 512|4096|1] [SPEC ...]``.
"""

from __future__ import annotations

import argparse
import importlib.util

from lance_offsets.stress._options import StressOptions, tear_size
from lance_offsets.stress.powerloss._campaign import run_powerloss

STORES = [
    "lance_offsets.conformance.reference:lockfile",
    "zoo.powerloss_zoo:correct",
    "zoo.powerloss_zoo:no_file_fsync",
    "zoo.powerloss_zoo:no_dir_fsync",
    "zoo.powerloss_zoo:fsync_target_after_rename",
    "zoo.powerloss_zoo:rename_before_sync",
    "zoo.powerloss_zoo:correct_bound_fsync",  # interposer fails it, the shim clears it
    "zoo.sqlite_zoo:wal_full",  # the SQLite zoo's correct store: traced by the syscall shim
    "zoo.powerloss_zoo:sqlite_extra",
    "zoo.powerloss_zoo:sqlite_full",
    "zoo.powerloss_zoo:sqlite_wal_full",  # write-ahead log, -shm left out
    "zoo.powerloss_zoo:sqlite_wal_off",
    "zoo.lmdb_zoo:correct",  # O_DSYNC meta page, lock.mdb left out (needs py-lmdb)
    "zoo.lmdb_zoo:no_metasync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long workload (48 calls)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tear-size", type=tear_size, default=512, help="512 (default), 4096 or 1 (any byte)"
    )
    parser.add_argument("specs", nargs="*", default=STORES, help="stores (default: all above)")
    args = parser.parse_args()
    options = StressOptions(long=args.long, seed=args.seed, tear_size=args.tear_size)
    baseline = None
    for spec in args.specs:
        if spec.startswith("zoo.lmdb_zoo") and importlib.util.find_spec("lmdb") is None:
            print(f"{spec.split(':')[1]:28} skipped: py-lmdb is not installed")
            continue
        run = run_powerloss(spec, options)
        total = run.result.seconds
        phases: dict[str, float] = {}
        for name, value in run.phases:
            phases[name] = phases.get(name, 0.0) + value
        rate = run.states / total if total else 0.0
        baseline = baseline or rate
        verify = max(sum(v for k, v in run.phases if k == "verify"), 1e-9)
        print(
            f"{spec.split(':')[1]:28} {run.result.outcome:8} "
            f"{run.result.evidence.get('tracer')!s:12} {run.states:6} states "
            f"{run.directories:5} dirs {total:6.2f} s  {rate:7.0f} states/s "
            f"({rate / baseline:4.1f}x ref)  verifier {run.directories / verify:6.0f} dirs/s  "
            + " ".join(f"{k}={v:.2f}" for k, v in phases.items())
        )


if __name__ == "__main__":
    main()
