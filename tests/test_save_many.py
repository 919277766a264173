"""save_many on every store: what it writes, what it syncs, what it refuses; B1's machine part."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.conformance import check_property
from zoo.batch_zoo import EXPECTED

from lance_offsets import (
    CollectingCommitHook,
    HookedOffsetStore,
    LockFileOffsetStore,
    MemoryOffsetStore,
    SQLiteOffsetStore,
    StoreClosedError,
    _lockfile,
    _platform,
)

Opener = Callable[[Path], Any]

STORES: dict[str, Opener] = {
    "lockfile": lambda p: LockFileOffsetStore.open(p, "c"),
    "memory": lambda p: MemoryOffsetStore(),
    "sqlite": lambda p: SQLiteOffsetStore.open(p / "o.sqlite", "c"),
    "hooked": lambda p: HookedOffsetStore(LockFileOffsetStore.open(p, "c")),
    "hooked memory (no inner save_many)": lambda p: HookedOffsetStore(_NoBatch()),
}


class _NoBatch(MemoryOffsetStore):
    """A store without save_many (attribute lookup fails), for the hooks wrapper's fallback."""

    def __getattribute__(self, name: str) -> Any:
        if name == "save_many":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with STORES[request.param](tmp_path) as opened:
        yield opened


BATCH = {(1, 23): 5, (12, 3): 6, (0, 0): 0, (2**32 - 1, 2**64 - 1): 2**64 - 1}


def test_a_batch_saves_every_key_over_old_values(store: Any) -> None:
    store.save(1, 23, 99)
    store.save(7, 7, 70)
    store.save_many(BATCH)
    assert store.list_all() == {**BATCH, (7, 7): 70}
    for key, offset in BATCH.items():
        assert store.load(*key) == offset


def test_an_empty_batch_changes_nothing(store: Any) -> None:
    store.save(1, 1, 1)
    store.save_many({})
    assert store.list_all() == {(1, 1): 1}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({(2**32, 0): 1}, ValueError),
        ({(0, 0): 2**64}, ValueError),
        ({(0, 0): -1}, ValueError),
        ({(0, 0): 1.0}, TypeError),
        ({(0, True): 1}, TypeError),
        ({(0,): 1}, TypeError),
        ({"00": 1}, TypeError),
    ],
)
def test_a_bad_entry_refuses_the_whole_batch_before_any_effect(
    store: Any, bad: dict[Any, Any], error: type[Exception]
) -> None:
    store.save(1, 23, 99)
    # The good keys come first, in insertion and key order: a store writing as it validates
    # would have written them.
    with pytest.raises(error):
        store.save_many({(0, 5): 1, (1, 23): 2, **bad})
    assert store.list_all() == {(1, 23): 99}


def test_a_batch_that_is_not_a_mapping_raises_type_error(store: Any) -> None:
    with pytest.raises(TypeError, match="mapping"):
        store.save_many([((1, 1), 1)])


def test_a_closed_store_refuses_a_batch(tmp_path: Path) -> None:
    for name, opener in STORES.items():
        where = tmp_path / name.replace(" ", "_")
        where.mkdir()
        opened = opener(where)
        opened.close()
        with pytest.raises(StoreClosedError):
            opened.save_many({(1, 1): 1})
        if "no inner save_many" not in name:  # nothing to call, nothing to refuse
            with pytest.raises(StoreClosedError):
                opened.save_many({})


def test_lockfile_batch_writes_the_per_key_format(tmp_path: Path) -> None:
    # The Rust client reads a batch like K saves: same names, same bytes, no leftover temps.
    with LockFileOffsetStore.open(tmp_path / "single", "c") as single:
        for key, offset in BATCH.items():
            single.save(*key, offset)
    with LockFileOffsetStore.open(tmp_path / "batch", "c") as batched:
        batched.save_many(BATCH)

    def files(path: Path) -> dict[str, bytes]:
        return {f.name: f.read_bytes() for f in (path / "c").iterdir()}

    assert files(tmp_path / "batch") == files(tmp_path / "single")
    assert not [n for n in files(tmp_path / "batch") if n.endswith(".tmp")]


def test_lockfile_batch_syncs_each_file_and_the_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_file, real_dir = _platform.fsync_file, _platform.fsync_dir

    def fsync_file(fd: int) -> None:
        synced.append("file")
        real_file(fd)

    def fsync_dir(path: str) -> None:
        synced.append("dir")
        real_dir(path)

    store = LockFileOffsetStore.open(tmp_path, "c")
    monkeypatch.setattr(_platform, "fsync_file", fsync_file)
    monkeypatch.setattr(_platform, "fsync_dir", fsync_dir)
    batch = {(1, k): k for k in range(64)}
    store.save_many(batch)
    # Every temp file durable before the first rename; one directory fsync after the last.
    assert synced == ["file"] * 64 + ["dir"]
    assert store.list_all() == batch


def test_lockfile_batch_failing_midway_removes_its_temps_and_keeps_old_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LockFileOffsetStore.open(tmp_path, "c")
    store.save_many({(1, 1): 10, (1, 2): 20, (1, 3): 30})
    real = _lockfile._write_synced
    calls = []

    def failing(path: str, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device (injected)")
        real(path, data)

    monkeypatch.setattr(_lockfile, "_write_synced", failing)
    with pytest.raises(OSError, match="injected"):
        store.save_many({(1, 1): 11, (1, 2): 21, (1, 3): 31})
    monkeypatch.undo()
    assert store.list_all() == {(1, 1): 10, (1, 2): 20, (1, 3): 30}
    assert not [n for n in os.listdir(store.directory) if n.endswith(".tmp")]
    store.save_many({(1, 3): 32})  # the handle and the locks are usable again
    assert store.load(1, 3) == 32


def test_hooks_run_once_per_key_with_previous_offsets(tmp_path: Path) -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [hook])
    store.save(1, 2, 5)
    hook.clear()
    store.save_many({(3, 4): 1, (1, 2): 6})
    seen = [(c.topic_id, c.consumer_id, c.offset, c.previous_offset) for c in hook.commits()]
    assert seen == [(1, 2, 6, 5), (3, 4, 1, None)]  # key order


@pytest.mark.parametrize("name", ["lockfile", "memory", "sqlite", "hooked_lockfile"])
def test_reference_stores_pass_b1s_machine(name: str) -> None:
    result = check_property(f"lance_offsets.conformance.reference:{name}", "B1", profile="smoke")
    assert result.outcome == "passed", result


def test_b1_is_not_applicable_without_save_many() -> None:
    # The machine drops its batch rules; the stress half (tests/slow) says not-applicable.
    from lance_offsets.conformance._props_batch import batch_of

    assert not batch_of(lambda path: MemoryOffsetStore.__new__(_NoBatch))
    assert batch_of(lambda path: MemoryOffsetStore())


MACHINE_CAUGHT = sorted(name for name, part in EXPECTED.items() if part == "machine")


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("name", MACHINE_CAUGHT)
def test_batch_defects_seen_in_one_process_fail_b1(name: str) -> None:
    result = check_property(f"zoo.batch_zoo:{name}", "B1", profile="smoke")
    assert result.outcome == "failed", result
    assert "[B1 " in result.details
    assert "save_many(" in result.details  # the shrunk steps show the batch


@pytest.mark.usefixtures("zoo_importable")
def test_the_batch_control_passes_b1s_machine() -> None:
    result = check_property("zoo.batch_zoo:BatchFileStore", "B1", profile="smoke")
    assert result.outcome == "passed", result
