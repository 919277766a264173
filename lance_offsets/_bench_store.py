"""The store figures of ``lance-offsets bench``: save latency, batches, reads, processes.

Every figure is a :class:`Figure`: a value, and where there is one, the floor it is compared with
and the goal for the ratio. Nothing here asserts anything: a bench reports, the reader judges.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._bench_floors import (
    Variant,
    c_save,
    inline_save,
    interleaved,
    read_inline,
    scandir_read,
    sqlite_full,
)
from ._committer import CoalescingCommitter
from ._layout import encode_offset, lock_name, offset_name
from ._lockfile import LockFileOffsetStore
from ._sqlite import SQLiteOffsetStore

__all__ = ["Figure", "store_figures"]


@dataclass(frozen=True)
class Figure:
    """One measured figure.

    :ivar ratio: ``value / floor`` (or ``floor / value`` for a speed-up goal), None without one.
    :ivar goal: the goal as text ("<= 1.10x"), "" for a figure shown for context.
    :ivar met: whether the goal is met, None without a goal.
    """

    group: str
    name: str
    value: float
    unit: str
    floor_name: str = ""
    floor: float | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _vs(  # noqa: PLR0917 - a figure is read as one line: group, name, value, floor, goal
    group: str,
    name: str,
    value: float,
    unit: str,
    floor_name: str,
    floor: float,
    limit: float | None = None,
) -> Figure:
    ratio = value / floor if floor else float("inf")
    goal = "" if limit is None else f"<= {limit:.2f}x"
    met = None if limit is None else ratio <= limit
    return Figure(group, name, value, unit, floor_name, floor, ratio, goal, met)


@contextlib.contextmanager
def _store(root: str, name: str) -> Iterator[LockFileOffsetStore]:
    store = LockFileOffsetStore.open(root, name)
    try:
        yield store
    finally:
        store.close()


def save_latency(root: str, calls: int, seed: int) -> list[Figure]:
    """p50/p99 of one durable save: each store beside the floors, interleaved."""
    with contextlib.ExitStack() as stack:
        lock = stack.enter_context(_store(root, "save"))
        sqlite = SQLiteOffsetStore.open(os.path.join(root, "store.sqlite"), "bench")
        stack.callback(sqlite.close)
        committer = CoalescingCommitter(LockFileOffsetStore.open(root, "coalesced"))
        stack.callback(committer.close)
        raw, _ = stack.enter_context(sqlite_full(os.path.join(root, "raw.sqlite")))
        native = stack.enter_context(c_save(lock.directory, 3))

        def flushed(offset: int) -> None:
            committer.save(1, 1, offset)
            committer.flush()

        variants: dict[str, Variant] = {
            "lock-file store": lambda offset: lock.save(1, 1, offset),
            "inline Python syscalls": inline_save(lock.directory, 2),
            "SQLite store": lambda offset: sqlite.save(1, 1, offset),
            "SQLite WAL FULL raw": raw,
            "coalescing save+flush": flushed,
        }
        if native is not None:
            variants["C protocol"] = native
        for save in variants.values():  # warm up: create the files, load the code
            save(0)
        samples = interleaved(variants, calls, seed)
    p50 = {name: statistics.median(v) for name, v in samples.items()}
    p99 = {name: _p(v, 0.99) for name, v in samples.items()}
    floor = "inline Python syscalls"
    figures = [
        _vs(
            "durable save",
            "lock-file store p50",
            p50["lock-file store"],
            "us",
            floor,
            p50[floor],
            1.10,
        ),
        _vs(
            "durable save",
            "lock-file store p99",
            p99["lock-file store"],
            "us",
            floor + " p99",
            p99[floor],
        ),
    ]
    if "C protocol" in p50:
        figures.append(
            _vs(
                "durable save",
                "lock-file store p50",
                p50["lock-file store"],
                "us",
                "C protocol",
                p50["C protocol"],
            )
        )
    sqlite_floor = p50["SQLite WAL FULL raw"]
    figures.extend(
        _vs("durable save", f"{n} p50", p50[n], "us", "SQLite WAL FULL raw", sqlite_floor)
        for n in ("SQLite store", "coalescing save+flush")
    )
    figures.extend(
        Figure("durable save", f"{n} p50 / p99", p50[n], "us", "p99", p99[n]) for n in samples
    )
    return figures


def _each(save: Callable[[int, int, int], None], batch: dict[tuple[int, int], int]) -> None:
    for key, offset in batch.items():
        save(*key, offset)


def _each_row(save: Variant, rows: dict[int, int]) -> None:
    for offset in rows.values():
        save(offset)


def batches(root: str, rounds: int, size: int = 64) -> list[Figure]:
    """``save_many`` of ``size`` offsets against ``size`` saves, and against SQLite per offset.

    SQLite WAL FULL per offset is one commit per offset (its durable save); its batch (one
    commit for all) is shown beside it for context.
    """
    times: dict[str, list[float]] = {"saves": [], "many": [], "sqlite": [], "sqlite many": []}
    path = os.path.join(root, "batch.sqlite")
    with _store(root, "batch") as store, sqlite_full(path) as (raw_one, raw_many):
        for r in range(rounds):
            batch = {(1, k): r * 1000 + k for k in range(size)}
            rows = {k: r * 1000 + k for k in range(size)}
            times["saves"].append(_timed(functools.partial(_each, store.save, batch)))
            times["many"].append(_timed(functools.partial(store.save_many, batch)))
            times["sqlite"].append(_timed(functools.partial(_each_row, raw_one, rows)))
            times["sqlite many"].append(_timed(functools.partial(raw_many, rows)))
    t = {name: statistics.median(v) for name, v in times.items()}
    speedup = t["saves"] / t["many"]
    return [
        Figure(
            "save_many",
            f"save_many of {size} (lock-file)",
            t["many"] / 1000,
            "ms",
            f"{size} saves",
            t["saves"] / 1000,
            speedup,
            ">= 10x faster",
            speedup >= 10,
        ),
        _vs(
            "save_many",
            "save_many, per offset",
            t["many"] / size,
            "us",
            "SQLite WAL FULL, per offset",
            t["sqlite"] / size,
            1.0,
        ),
        _vs(
            "save_many",
            "save_many, per offset",
            t["many"] / size,
            "us",
            f"SQLite WAL FULL, {size} in one commit",
            t["sqlite many"] / size,
        ),
    ]


def _populate(directory: str, keys: int) -> None:
    """N keys as the Rust client leaves them (offset + lock file); no fsync needed to read."""
    for i in range(keys):
        topic, consumer = i % 97, i
        with open(os.path.join(directory, offset_name(topic, consumer)), "wb") as f:
            f.write(encode_offset(i * 1000))
        open(os.path.join(directory, lock_name(topic, consumer)), "wb").close()


def _timed(call: Callable[[], object], times: int = 1) -> float:
    started = time.perf_counter_ns()
    for _ in range(times):
        call()
    return (time.perf_counter_ns() - started) / 1000 / times


def _saver(directory: str, stop: Any) -> None:
    with LockFileOffsetStore.open(directory, "reads") as store:
        offset = 0
        while not stop.is_set():
            offset += 1
            store.save(5, 5, offset)


def reads(root: str, keys: int, repeat: int) -> list[Figure]:
    """Warm load (alone and while another process saves), open, and list_all of ``keys``."""
    LockFileOffsetStore.open(root, "reads").close()
    directory = os.path.join(root, "reads")
    _populate(directory, keys)
    with _store(root, "reads") as store:
        path = store.offset_path(5, 5)
        load = statistics.median(_timed(lambda: store.load(5, 5), 500) for _ in range(repeat))
        inline = statistics.median(_timed(lambda: read_inline(path), 500) for _ in range(repeat))
        listing = statistics.median(_timed(store.list_all) for _ in range(repeat))
        floor = statistics.median(_timed(lambda: scandir_read(directory)) for _ in range(repeat))
        opened = statistics.median(
            _timed(lambda: LockFileOffsetStore.open(root, "reads").close(), 200)
            for _ in range(repeat)
        )
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        saver = ctx.Process(target=_saver, args=(root, stop), daemon=True)
        saver.start()
        try:
            time.sleep(0.5)  # the saver is under way
            busy = statistics.median(_timed(lambda: store.load(5, 5), 500) for _ in range(repeat))
        finally:
            stop.set()
            saver.join(30)
    return [
        _vs("reads", "load, warm", load, "us", "inline open/read/close", inline),
        _vs("reads", "load, warm, another process saving", busy, "us", "load, warm", load),
        Figure("reads", "open", opened, "us"),
        _vs(
            "reads",
            f"list_all of {keys:,} keys",
            listing / 1000,
            "ms",
            "inline scandir+read",
            floor / 1000,
            1.15,
        ),
    ]


def _worker(directory: str, key: tuple[int, int], start: float, end: float, out: Any) -> None:
    with LockFileOffsetStore.open(directory, "procs") as store:
        done = 0
        while time.time() < start:
            time.sleep(0.001)
        while time.time() < end:
            done += 1
            store.save(*key, done)
        out.put(done)


def processes(root: str, seconds: float, counts: tuple[int, ...] = (1, 2, 4, 8)) -> list[Figure]:
    """Durable saves per second with N processes, each on its own key and all on one key."""
    ctx = multiprocessing.get_context("spawn")
    figures = []
    for shared in (False, True):
        for n in counts:
            out = ctx.Queue()
            start = time.time() + 1.0  # every process started and imported before the clock
            procs = [
                ctx.Process(
                    target=_worker,
                    args=(root, (1, 1) if shared else (1, i), start, start + seconds, out),
                    daemon=True,
                )
                for i in range(n)
            ]
            for proc in procs:
                proc.start()
            total = sum(out.get(timeout=60 + seconds) for _ in procs)
            for proc in procs:
                proc.join(30)
            where = "one key" if shared else "distinct keys"
            figures.append(
                Figure("throughput", f"{n} processes, {where}", total / seconds, "saves/s")
            )
    return figures


def store_figures(root: str, *, calls: int, seconds: float, seed: int) -> list[Figure]:
    """Every store figure, measured under ``root`` (one file system for all)."""
    return [
        *save_latency(root, calls, seed),
        *batches(root, rounds=5),
        *reads(root, keys=10_000, repeat=5),
        *processes(root, seconds),
    ]
