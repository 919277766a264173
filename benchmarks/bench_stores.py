"""Save latency (p50, p99) and throughput of the lock-file, SQLite and PostgreSQL stores, one run.

Latency: the three stores' saves run interleaved in a shuffled order (``bench_save.measure``), in
one process, so disk noise hits them alike. Throughput: ``--threads`` threads, each saving its own
key through one shared handle for ``--burst`` saves, per store in turn. Ratios are against the
lock-file store.

PostgreSQL: the server named by ``LANCE_OFFSETS_PG_DSN``, or else a temporary cluster started
from the machine's binaries as the tests do (``tests/_postgres.py``; ``fsync=on``). Its latency
includes a localhost round trip and the server's WAL fsync.

Usage: ``python benchmarks/bench_stores.py [--dir DIR] [--rounds N] [--per-round K]
[--threads T] [--burst B]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench_save import measure

from lance_offsets import LockFileOffsetStore, OffsetStore, SQLiteOffsetStore
from lance_offsets._bench_floors import Variant, file_system

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _postgres  # the tests' cluster helper, importable once the path is set


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    dsn = os.environ.get(_postgres.DSN_VARIABLE)
    if dsn:
        yield dsn
        return
    bindir = _postgres.find_bindir()
    if bindir is None:
        raise SystemExit(f"no PostgreSQL binaries: set {_postgres.DSN_VARIABLE} to a server")
    with _postgres.temporary_cluster(bindir) as cluster:
        yield cluster.dsn


def saver(store: OffsetStore) -> Variant:
    def save(offset: int) -> None:
        store.save(1, 1, offset)

    return save


def throughput(store: OffsetStore, threads: int, burst: int) -> float:
    """Saves per second with ``threads`` threads sharing ``store``, each on its own key."""
    start = threading.Barrier(threads + 1)

    def work(topic: int) -> None:
        start.wait()
        for offset in range(burst):
            store.save(1000 + topic, 1, offset)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return threads * burst / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="parent of the scratch directory")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--burst", type=int, default=50, help="saves per thread")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order shuffling")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-stores-", dir=args.dir)
    try:
        with postgres_dsn() as dsn:
            from lance_offsets import PostgresOffsetStore

            schema = f"bench_{os.getpid()}"
            stores: dict[str, OffsetStore] = {
                "lockfile": LockFileOffsetStore.open(scratch, "bench"),
                "sqlite": SQLiteOffsetStore.open(scratch, "bench"),
                "postgres": PostgresOffsetStore(dsn, "bench", schema=schema),
            }
            try:
                variants = {name: saver(store) for name, store in stores.items()}
                for save in variants.values():  # warm up: create rows and files, load code
                    save(0)
                samples = measure(variants, args.rounds, args.per_round, args.seed)
                rates = {n: throughput(s, args.threads, args.burst) for n, s in stores.items()}
            finally:
                for store in stores.values():
                    store.close()
        print(
            f"python {sys.version.split()[0]}, {sys.platform}, file system "
            f"{file_system(scratch)} ({os.path.realpath(scratch)}), "
            f"{args.rounds} rounds x {args.per_round} saves; throughput {args.threads} threads "
            f"x {args.burst} saves"
        )
        p50 = {name: statistics.median(values) for name, values in samples.items()}
        for name, values in samples.items():
            p99 = statistics.quantiles(values, n=100)[-1]
            print(
                f"  {name:9s} p50 {p50[name]:9.1f} us ({p50[name] / p50['lockfile']:5.2f}x)"
                f"   p99 {p99:9.1f} us   throughput {rates[name]:8.0f} saves/s "
                f"({rates[name] / rates['lockfile']:5.2f}x)"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
