"""Cost of ``list_all`` and ``load`` on a directory of N keys, against inline baselines.

The store keeps no cache (every call reads the directory and the files, so another process's
save or delete is seen at once), so "cold" and "warm" differ only in what the OS has cached:
"first" is the first call on a fresh handle right after the files were written, "warm" the median
of the following calls. Baselines, in the same process on the same files:

- ``scandir+read``: ``os.scandir`` and ``open``/``read``/``close`` of every ``.offset`` file inline,
  no parsing or checks (the floor for a list that reflects the directory);
- ``listdir``: names only (what a list served from a cache, validated by listing, would cost);
- for ``load``: one ``os.stat`` (what a per-load cache validation by (inode, mtime, size) would
  cost) and an inline ``open``/``read``/``close``.

Usage: ``python benchmarks/bench_list_all.py [--keys N] [--dir DIR] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from lance_offsets import LockFileOffsetStore
from lance_offsets._bench_floors import read_inline, scandir_read
from lance_offsets._bench_store import _populate as populate


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - started) / 1e6


def repeated(call: Callable[[], object], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            call()

    return run


def row(label: str, value: float, unit: str, note: str = "") -> None:
    print(f"  {label:17s} {value:9.2f} {unit}  {note}".rstrip())


def ratio(name: str, values: dict[str, float], baseline: str) -> str:
    return f"ratio {name}/{baseline} {values[name] / values[baseline]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--dir", default=".", help="parent of the scratch directory")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-list-", dir=args.dir)
    try:
        LockFileOffsetStore.open(scratch, "bench").close()
        directory = os.path.join(scratch, "bench")
        populate(directory, args.keys)
        print(f"python {sys.version.split()[0]}, {sys.platform}, {args.keys} keys in {directory}")
        with LockFileOffsetStore.open(scratch, "bench") as store:
            first = timed(store.list_all)
            assert len(store.list_all()) == args.keys
            path = store.offset_path(5, 5)
            loads = 1000
            # Interleaved, round by round, so load from other processes hits every variant alike.
            listing = {
                "list_all": store.list_all,
                "scandir+read": lambda: scandir_read(directory),
                "listdir": lambda: os.listdir(directory),
            }
            single = {
                "load": lambda: store.load(5, 5),
                "load absent": lambda: store.load(5, 6),
                "inline read": lambda: read_inline(path),
                "os.stat": lambda: os.stat(path),
            }
            ms: dict[str, list[float]] = {name: [] for name in listing}
            us: dict[str, list[float]] = {name: [] for name in single}
            for _ in range(args.repeat):
                for name, call in listing.items():
                    ms[name].append(timed(call))
                for name, call in single.items():
                    us[name].append(timed(repeated(call, loads)) * 1000 / loads)
            m = {name: statistics.median(v) for name, v in ms.items()}
            u = {name: statistics.median(v) for name, v in us.items()}
            per_key = m["list_all"] * 1000 / args.keys
            row("list_all first", first, "ms", "fresh handle, files just written")
            row("list_all warm", m["list_all"], "ms", f"{per_key:.2f} us/key")
            row("scandir+read", m["scandir+read"], "ms", ratio("list_all", m, "scandir+read"))
            row("listdir only", m["listdir"], "ms")
            row("load", u["load"], "us", ratio("load", u, "inline read"))
            row("load absent key", u["load absent"], "us")
            row("inline read", u["inline read"], "us")
            row("os.stat only", u["os.stat"], "us", "what a stat-validated cache would cost")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
