"""save_many on every store: what it writes, what it syncs, what it refuses; B1's machine part."""

from __future__ import annotations

import ctypes
import errno
import functools
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


OLD = {(1, 1): 10, (1, 2): 20, (1, 3): 30}
#: Two keys rewritten, two new: a failed batch must neither change the old nor invent the new.
NEW = {(1, 1): 11, (1, 2): 21, (1, 4): 41, (1, 5): 51}


def _assert_failed_batch_left_old_state(store: LockFileOffsetStore) -> None:
    assert store.list_all() == OLD
    assert not [n for n in os.listdir(store.directory) if n.endswith(".tmp")]
    store.save_many({(1, 3): 32})  # the handle and the locks are usable again
    assert store.load(1, 3) == 32


@pytest.mark.parametrize("k", [1, 2, len(NEW)])
def test_lockfile_batch_raises_the_kth_fsync_error_and_invents_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    # F2's rule inside a batch: an fsync error is raised, never swallowed. Injected through the
    # os module, where the stress kit's interposer sees the store's calls; the others are real.
    store = LockFileOffsetStore.open(tmp_path, "c")
    store.save_many(OLD)
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == k:
            raise OSError(errno.EIO, "Input/output error (injected)")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="injected"):
        store.save_many(NEW)
    monkeypatch.undo()
    assert len(calls) == k  # no fsync after the failing one, so no rename either
    _assert_failed_batch_left_old_state(store)


@pytest.mark.skipif(
    _platform.start_writeback is _platform._start_writeback_none, reason="no sync_file_range"
)
def test_lockfile_batch_raises_a_writeback_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LockFileOffsetStore.open(tmp_path, "c")
    store.save_many(OLD)

    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(
        _platform,
        "start_writeback",
        functools.partial(_platform.start_writeback_with, sync_file_range=failing),
    )
    with pytest.raises(OSError, match="sync_file_range") as raised:
        store.save_many(NEW)
    monkeypatch.undo()
    assert raised.value.errno == errno.EIO
    _assert_failed_batch_left_old_state(store)


def test_start_writeback_passes_over_files_it_cannot_act_on(tmp_path: Path) -> None:
    # A real file: writeback starts; a pipe: the kernel's ESPIPE (Linux) means "no hint here",
    # and the fsync that follows in save_many decides. Elsewhere both are no-ops.
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o666)
    read_end, write_end = os.pipe()
    try:
        os.write(fd, b"1\n")
        _platform.start_writeback(fd)
        _platform.start_writeback(write_end)
    finally:
        for opened in (fd, read_end, write_end):
            os.close(opened)


def test_lockfile_batch_syncs_every_temp_before_any_rename_in_bounded_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch larger than the window: at most _SYNC_WINDOW temp files open at once, each
    # window's writebacks started before its fsyncs, every fsync before the first rename.
    events: list[str] = []
    real_writeback, real_fsync, real_replace = (
        _platform.start_writeback,
        _platform.fsync_file,
        _platform.replace,
    )

    def writeback(fd: int) -> None:
        events.append("writeback")
        real_writeback(fd)

    def fsync_file(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    store = LockFileOffsetStore.open(tmp_path, "c")
    monkeypatch.setattr(_lockfile, "_SYNC_WINDOW", 3)
    monkeypatch.setattr(_platform, "start_writeback", writeback)
    monkeypatch.setattr(_platform, "fsync_file", fsync_file)
    monkeypatch.setattr(_platform, "replace", replace)
    batch = {(2, k): k for k in range(8)}
    store.save_many(batch)
    windows = [["writeback"] * n + ["fsync"] * n for n in (3, 3, 2)]
    assert events == [e for window in windows for e in window] + ["rename"] * 8
    assert store.list_all() == batch


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
