"""The bench's floors do the work they stand for, and its table says every goal's verdict."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lance_offsets import LockFileOffsetStore
from lance_offsets._bench import table
from lance_offsets._bench_floors import c_save, inline_save, interleaved, scandir_read, sqlite_full
from lance_offsets._bench_store import Figure, batches


def test_inline_and_c_floors_write_what_the_store_reads(tmp_path: Path) -> None:
    store = LockFileOffsetStore.open(tmp_path, "c")
    inline_save(store.directory, 2)(41)
    assert store.load(2, 2) == 41
    with c_save(store.directory, 3) as native:
        if native is None:
            assert shutil.which("cc") is None
            assert shutil.which("gcc") is None
            pytest.skip("no C compiler on this machine")
        native(2**64 - 1)
    assert store.load(3, 3) == 2**64 - 1
    assert sorted(scandir_read(store.directory)) == [
        "topic-2-consumer-2.offset",
        "topic-3-consumer-3.offset",
    ]


def test_sqlite_floor_commits_each_save_and_each_batch(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "raw.sqlite")
    with sqlite_full(path) as (save, save_many):
        save(5)
        save_many({2: 20, 3: 30})
    with contextlib.closing(sqlite3.connect(path)) as con:  # unclosed, 3.13 warns at GC
        rows = con.execute("SELECT k, v FROM o ORDER BY k").fetchall()
    assert rows == [(1, 5), (2, 20), (3, 30)]


def test_interleaving_times_every_call_of_every_variant() -> None:
    seen: list[tuple[str, int]] = []

    def variant(name: str) -> Callable[[int], None]:
        return lambda offset: seen.append((name, offset))

    samples = interleaved({n: variant(n) for n in "ab"}, 3, seed=1)
    assert {n: len(v) for n, v in samples.items()} == {"a": 3, "b": 3}
    assert sorted(o for _, o in seen) == list(range(1, 7))


def test_batch_figures_compare_save_many_with_saves(tmp_path: Path) -> None:
    first, per_offset, context = batches(str(tmp_path), rounds=1, size=8)
    assert first.goal == ">= 10x faster"
    assert first.floor_name == "8 saves"
    assert first.ratio == pytest.approx(first.floor / first.value)  # type: ignore[operator]
    assert per_offset.goal == "<= 1.00x"
    assert context.goal == ""
    assert LockFileOffsetStore.open(tmp_path, "batch").list_all() == {(1, k): k for k in range(8)}


def test_the_table_shows_each_goal_and_its_verdict() -> None:
    figures = [
        Figure("g", "fast", 1.0, "us", "floor", 2.0, 0.5, "<= 1.10x", True),
        Figure("g", "slow", 3.0, "us", "floor", 2.0, 1.5, "<= 1.10x", False),
        Figure("g", "context", 7.0, "us"),
    ]
    text = table(figures)
    assert "goal <= 1.10x: met" in text
    assert "goal <= 1.10x: NOT met" in text
    assert text.count("\n") == 4  # the group heading and three rows
