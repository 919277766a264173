"""Longest event-loop stall while saves fsync: the asyncio face beside plain blocking saves.

A heartbeat task asks to wake every millisecond and records how late each wake-up is; the
longest lateness is the longest time the loop could not run anything (a stall). Two variants
run in one process, on one file system, alternating in rounds so disk noise hits both alike:

(a) ``async``:    ``await AsyncOffsetStore.save`` from ``--tasks`` tasks, each on its own handle
    and key (the fsync happens in each handle's thread);
(b) ``blocking``: ``LockFileOffsetStore.save`` called directly in the same tasks (what a
    consumer does today without the asyncio face): the loop waits for every fsync.

Prints each variant's longest and 99th-percentile stall and the ratio blocking / async.

Usage: ``python benchmarks/bench_async.py [--dir DIR] [--rounds N] [--saves K] [--tasks T]``.
DIR decides the file system measured (default: a temporary directory under the current one).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from lance_offsets import AsyncOffsetStore, LockFileOffsetStore

#: How often the heartbeat asks to wake up.
BEAT_SECONDS = 0.001


async def _measure(work: Callable[[], Awaitable[None]]) -> list[float]:
    """Run ``work`` beside a heartbeat; return how late each wake-up was, in seconds."""
    late: list[float] = []
    done = False

    async def heartbeat() -> None:
        while not done:
            due = time.perf_counter() + BEAT_SECONDS
            await asyncio.sleep(BEAT_SECONDS)
            late.append(max(0.0, time.perf_counter() - due))

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(BEAT_SECONDS * 3)
    await work()
    done = True
    await beat
    return late


async def _async_round(directory: str, saves: int, tasks: int) -> list[float]:
    handles = [
        await AsyncOffsetStore.open(functools.partial(LockFileOffsetStore.open, directory, f"a{n}"))
        for n in range(tasks)
    ]

    async def one(n: int) -> None:
        for offset in range(saves):
            await handles[n].save(n, 0, offset)

    async def work() -> None:
        await asyncio.gather(*(one(n) for n in range(tasks)))

    try:
        return await _measure(work)
    finally:
        for handle in handles:
            await handle.close()


async def _blocking_round(directory: str, saves: int, tasks: int) -> list[float]:
    handles = [LockFileOffsetStore.open(directory, f"b{n}") for n in range(tasks)]

    async def one(n: int) -> None:
        for offset in range(saves):
            handles[n].save(n, 0, offset)  # blocks the loop for the whole fsync
            await asyncio.sleep(0)

    async def work() -> None:
        await asyncio.gather(*(one(n) for n in range(tasks)))

    try:
        return await _measure(work)
    finally:
        for handle in handles:
            handle.close()


def _summary(name: str, late: list[float]) -> float:
    ms = sorted(x * 1000 for x in late)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{name:9} longest stall {ms[-1]:8.2f} ms   p99 {p99:7.2f} ms   median "
        f"{statistics.median(ms):6.2f} ms   ({len(ms)} heartbeats)"
    )
    return ms[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where to save (decides the file system)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--saves", type=int, default=40, help="saves per task per round")
    parser.add_argument("--tasks", type=int, default=4, help="concurrent saving tasks")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="bench-async-", dir=args.dir or ".")
    stalls: dict[str, list[float]] = {"async": [], "blocking": []}
    try:
        for _ in range(args.rounds):
            stalls["async"] += asyncio.run(_async_round(root, args.saves, args.tasks))
            stalls["blocking"] += asyncio.run(_blocking_round(root, args.saves, args.tasks))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = args.rounds * args.saves * args.tasks
    print(f"{total} durable saves per variant, {args.tasks} tasks, file system of {root}")
    ours = _summary("async", stalls["async"])
    theirs = _summary("blocking", stalls["blocking"])
    print(f"longest stall, blocking / async: {theirs / max(ours, 1e-6):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
