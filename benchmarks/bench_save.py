"""Median latency of a durable save, beside the same syscalls inline and the seed's protocol.

Three variants run interleaved, one save each in a shuffled order, in one process on one
directory, so disk noise hits them alike:

(a) ``store``:  ``LockFileOffsetStore.save`` (domain checks, portalocker flock with the inode
    re-check, temp write, fsync, replace, directory fsync, unlock);
(b) ``inline``: the same syscalls written out in Python (flock, open/write/fsync/close the temp
    file, replace, open/fsync/close the directory, unlock), without checks or re-check;
(c) ``seed``:   the Rust seed's protocol: (b) without the directory fsync.

``lance-offsets bench`` measures the same (and C and SQLite floors) with the rest of the figures;
this script keeps the seed's variant. Usage: ``python benchmarks/bench_save.py [--dir DIR]
[--rounds N] [--per-round K]``. DIR decides the file system measured (default: a temporary
directory under the current directory).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from lance_offsets import LockFileOffsetStore
from lance_offsets._bench_floors import Variant, file_system, inline_save, interleaved


def measure(
    variants: dict[str, Variant], rounds: int, per_round: int, seed: int
) -> dict[str, list[float]]:
    """Interleaved timings (``lance_offsets._bench_floors.interleaved``), kept for bench_stores."""
    return interleaved(variants, rounds * per_round, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="parent of the scratch directory")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the order shuffling")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-save-", dir=args.dir)
    try:
        with LockFileOffsetStore.open(scratch, "bench") as store:
            variants: dict[str, Variant] = {
                "store": lambda offset: store.save(1, 1, offset),
                "inline": inline_save(store.directory, 2, dir_fsync=True),
                "seed": inline_save(store.directory, 3, dir_fsync=False),
            }
            for save in variants.values():  # warm up: create files, load code
                save(0)
            samples = measure(variants, args.rounds, args.per_round, args.seed)
        print(
            f"python {sys.version.split()[0]}, {sys.platform}, file system "
            f"{file_system(scratch)} ({os.path.realpath(scratch)}), "
            f"{args.rounds} rounds x {args.per_round} saves"
        )
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, values in samples.items():
            p90 = statistics.quantiles(values, n=10)[-1]
            print(f"  {name:7s} median {medians[name]:9.1f} us   p90 {p90:9.1f} us")
        print(f"  ratio store/inline {medians['store'] / medians['inline']:.3f}")
        print(f"  ratio store/seed   {medians['store'] / medians['seed']:.3f}")
        print(f"  ratio inline/seed  {medians['inline'] / medians['seed']:.3f} (directory fsync)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
