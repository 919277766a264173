"""LockFileOffsetStore in one process: real files, real flock, injected I/O faults.

Tests that start processes are in tests/slow/test_lockfile_processes.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lance_offsets import (
    MAX_CONSUMER_ID,
    MAX_OFFSET,
    MAX_TOPIC_ID,
    CorruptOffsetError,
    InvalidConsumerNameError,
    LockFileOffsetStore,
    LockTimeoutError,
    OffsetStore,
    StoreClosedError,
)

RUST_LAYOUT = Path(__file__).parent / "data" / "rust_layout"
RUST_CONSUMER = "rust-consumer"
#: What the Rust client's directory in tests/data/rust_layout holds, key by key.
RUST_OFFSETS = {
    (0, 0): 0,
    (1, 100): 12345,
    (1, 23): 9,
    (12, 3): 7,
    (MAX_TOPIC_ID, MAX_CONSUMER_ID): MAX_OFFSET,
}

flock_only = pytest.mark.skipif(sys.platform == "win32", reason="uses fcntl.flock directly")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="Windows fsyncs no directory")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LockFileOffsetStore]:
    with LockFileOffsetStore.open(tmp_path, "billing") as opened:
        yield opened


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- compatibility with the Rust client ------------------------------------------------------


def test_a_directory_the_rust_client_wrote_loads(tmp_path: Path) -> None:
    shutil.copytree(RUST_LAYOUT, tmp_path, dirs_exist_ok=True)
    with LockFileOffsetStore.open(tmp_path, RUST_CONSUMER) as store:
        assert store.list_all() == RUST_OFFSETS
        for key, offset in RUST_OFFSETS.items():
            assert store.load(*key) == offset
        # The temp file of a Rust save killed before its rename is not a key (D4).
        assert store.load(5, 500) is None


def test_our_files_match_the_rust_clients_byte_for_byte(tmp_path: Path) -> None:
    with LockFileOffsetStore.open(tmp_path, RUST_CONSUMER) as store:
        for key, offset in RUST_OFFSETS.items():
            store.save(*key, offset)
    ours = tree(tmp_path / RUST_CONSUMER)
    rust = {
        name: data
        for name, data in tree(RUST_LAYOUT / RUST_CONSUMER).items()
        if not name.startswith("topic-5-")  # the key whose Rust save was killed
    }
    assert ours == rust


def test_saving_over_a_rust_file_replaces_it_whole(tmp_path: Path) -> None:
    shutil.copytree(RUST_LAYOUT, tmp_path, dirs_exist_ok=True)
    with LockFileOffsetStore.open(tmp_path, RUST_CONSUMER) as store:
        store.save(5, 500, 7)  # over the Rust leftover temp file
        store.save(1, 100, 12346)
        assert store.list_all() == {**RUST_OFFSETS, (5, 500): 7, (1, 100): 12346}
    directory = tmp_path / RUST_CONSUMER
    assert (directory / "topic-1-consumer-100.offset").read_bytes() == b"12346\n"
    assert not (directory / "topic-5-consumer-500.offset.tmp").exists()


# --- the contract on one handle --------------------------------------------------------------


def test_is_an_offset_store(store: LockFileOffsetStore) -> None:
    assert isinstance(store, OffsetStore)


@pytest.mark.parametrize(
    "key", [(0, 0), (MAX_TOPIC_ID, MAX_CONSUMER_ID), (0, MAX_CONSUMER_ID), (MAX_TOPIC_ID, 0)]
)
@pytest.mark.parametrize("offset", [0, 1, MAX_OFFSET])
def test_extremes_round_trip_and_persist(tmp_path: Path, key: tuple[int, int], offset: int) -> None:
    with LockFileOffsetStore.open(tmp_path, "x") as store:
        assert store.load(*key) is None
        store.save(*key, offset)
        assert store.load(*key) == offset
    with LockFileOffsetStore.open(tmp_path, "x") as reopened:
        assert reopened.load(*key) == offset
        assert reopened.list_all() == {key: offset}


def test_last_write_wins_delete_is_idempotent(store: LockFileOffsetStore) -> None:
    store.save(1, 2, 100)
    store.save(1, 2, 5)  # a lower offset is a legitimate reset
    assert store.load(1, 2) == 5
    store.delete(1, 2)
    store.delete(1, 2)
    store.delete(9, 9)  # never saved
    assert store.load(1, 2) is None
    assert store.list_all() == {}


def test_keys_whose_spellings_collide_naively_stay_apart(store: LockFileOffsetStore) -> None:
    store.save(1, 23, 1)
    store.save(12, 3, 2)
    store.delete(1, 23)
    assert store.list_all() == {(12, 3): 2}


def test_list_all_is_a_fresh_dict(store: LockFileOffsetStore) -> None:
    store.save(1, 1, 1)
    listed = store.list_all()
    listed.clear()
    assert store.list_all() == {(1, 1): 1}


def test_a_directory_removed_from_outside_lists_empty_and_saves_raise(
    store: LockFileOffsetStore,
) -> None:
    store.save(1, 2, 3)
    shutil.rmtree(store.directory)
    assert store.list_all() == {}
    assert store._list_by_path() == {}  # Windows' listing (no dir_fd there)
    assert store.load(1, 2) is None
    with pytest.raises(FileNotFoundError):
        store.save(1, 2, 4)  # not recreated behind the operator's back; reopen to recreate
    with LockFileOffsetStore.open(os.path.dirname(store.directory), "billing") as reopened:
        reopened.save(1, 2, 4)
        assert store.load(1, 2) == 4


def test_delete_leaves_the_lock_file_in_place(store: LockFileOffsetStore) -> None:
    # Unlinking a lock another process may hold is the seed's two-writers bug.
    store.save(1, 2, 3)
    store.delete(1, 2)
    assert sorted(os.listdir(store.directory)) == ["topic-1-consumer-2.lock"]


def test_open_creates_missing_parents_and_exposes_its_directory(tmp_path: Path) -> None:
    base = tmp_path / "a" / "b"
    with LockFileOffsetStore.open(base, "svc", lock_timeout=1) as store:
        assert store.directory == str(base / "svc")
        assert store.consumer_name == "svc"
        assert store.lock_timeout == 1.0
        assert store.offset_path(1, 2) == str(base / "svc" / "topic-1-consumer-2.offset")
        assert repr(store) == f"<LockFileOffsetStore {str(base / 'svc')!r} open>"


# --- freshness across handles (P2) -----------------------------------------------------------


def test_a_warm_second_handle_sees_saves_and_deletes(tmp_path: Path) -> None:
    with (
        LockFileOffsetStore.open(tmp_path, "c") as a,
        LockFileOffsetStore.open(tmp_path, "c") as b,
    ):
        a.save(1, 1, 10)
        assert b.load(1, 1) == 10  # warm B
        assert b.list_all() == {(1, 1): 10}
        # Same size, saved within one timestamp tick, possibly the same recycled inode: the
        # cases an (inode, mtime, size) cache check would get wrong.
        for offset in (20, 30, 40, 50):
            a.save(1, 1, offset)
            assert b.load(1, 1) == offset
        a.delete(1, 1)
        assert b.load(1, 1) is None
        assert b.list_all() == {}
        b.save(2, 2, 7)
        assert a.list_all() == {(2, 2): 7}


# --- damage and leftovers (F1, D4) -----------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"12x\n", b"\x00\x00\x00", b"99999999999999999999\n"]
)
def test_a_corrupt_file_raises_naming_key_and_file(
    store: LockFileOffsetStore, content: bytes
) -> None:
    store.save(3, 4, 1234)
    assert store.load(3, 4) == 1234  # warm, in case a cache would answer
    path = Path(store.offset_path(3, 4))
    path.write_bytes(content)
    # _list_by_path is Windows' listing (no dir_fd there), run here so its errors are the same.
    for call in (lambda: store.load(3, 4), store.list_all, store._list_by_path):
        with pytest.raises(CorruptOffsetError) as caught:
            call()
        assert caught.value.key == (3, 4)
        assert caught.value.path == str(path)
        assert str(path) in str(caught.value)
    store.save(3, 4, 1235)  # saving repairs it
    assert store.load(3, 4) == 1235


def test_leftover_temp_and_foreign_files_are_ignored(store: LockFileOffsetStore) -> None:
    directory = Path(store.directory)
    store.save(1, 2, 5)
    (directory / "topic-1-consumer-2.offset.tmp").write_bytes(b"")  # torn temp of a killed save
    (directory / "topic-7-consumer-7.offset.tmp").write_bytes(b"77\n")
    (directory / "notes.txt").write_bytes(b"hello")
    (directory / "topic-01-consumer-2.offset").write_bytes(b"666\n")  # aliases (1, 2) in Rust
    (directory / "topic-1-consumer-2-x.offset").write_bytes(b"667\n")
    (directory / "topic-1-consumer-3.lock").write_bytes(b"")
    assert store.list_all() == {(1, 2): 5}
    assert store._list_by_path() == {(1, 2): 5}  # Windows' listing (no dir_fd there)
    assert store.load(7, 7) is None
    store.save(7, 7, 8)  # a leftover temp never blocks a later save
    assert store.list_all() == {(1, 2): 5, (7, 7): 8}
    store.delete(1, 2)  # and a delete cleans the key's leftover up
    assert not (directory / "topic-1-consumer-2.offset.tmp").exists()
    assert (directory / "notes.txt").read_bytes() == b"hello"


# --- consumer names (S1) and the domain (C7) -------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "c:x", "CON", "nul.txt", "x\x00", "a.", "a "]
)
def test_unsafe_consumer_names_create_nothing(tmp_path: Path, name: str) -> None:
    base = tmp_path / "base"
    with pytest.raises(InvalidConsumerNameError):
        LockFileOffsetStore.open(base, name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf")])
def test_bad_lock_timeouts_raise_value_error(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        LockFileOffsetStore.open(tmp_path, "x", lock_timeout=timeout)


@pytest.mark.parametrize("timeout", ["1", True])
def test_non_numeric_lock_timeouts_raise_type_error(tmp_path: Path, timeout: object) -> None:
    with pytest.raises(TypeError, match="lock_timeout"):
        LockFileOffsetStore.open(tmp_path, "x", lock_timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.save(1, 1, True), TypeError),
        (lambda s: s.save(1, 1, 1.0), TypeError),
        (lambda s: s.save(1, 1, -1), ValueError),
        (lambda s: s.save(1, 1, 2**64), ValueError),
        (lambda s: s.save(2**32, 1, 1), ValueError),
        (lambda s: s.save(1, 2**64, 1), ValueError),
        (lambda s: s.save(None, 1, 1), TypeError),
        (lambda s: s.delete(1, -1), ValueError),
        (lambda s: s.delete("1", 1), TypeError),
        (lambda s: s.load(-1, 1), ValueError),
        (lambda s: s.load(1, 1.5), TypeError),
    ],
)
def test_domain_errors_come_before_any_effect(
    store: LockFileOffsetStore, call: Callable[[LockFileOffsetStore], object], error: type
) -> None:
    store.save(1, 1, 1)
    before = tree(Path(store.directory))
    with pytest.raises(error):
        call(store)
    assert tree(Path(store.directory)) == before
    assert store.list_all() == {(1, 1): 1}


# --- close -----------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    with LockFileOffsetStore.open(tmp_path, "c") as store:
        store.save(1, 1, 1)
    store.close()
    assert "closed" in repr(store)
    for call in (
        lambda: store.load(1, 1),
        lambda: store.save(1, 1, 2),
        lambda: store.delete(1, 1),
        store.list_all,
    ):
        with pytest.raises(StoreClosedError, match="is closed; open a new handle"):
            call()
    with LockFileOffsetStore.open(tmp_path, "c") as other:  # the data is untouched
        assert other.load(1, 1) == 1


# --- I/O errors during save (F2), by fault injection -----------------------------------------


class FailNth:
    """Wrap ``os.<name>`` so that its ``nth`` call during the test raises ENOSPC.

    A failing ``close`` still closes the descriptor, as POSIX says it does.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
        # The store calls os.* through the module at call time (the stress interposer relies on
        # it too), so patching the os module is patching the store's view.
        self.real = getattr(os, name)
        self.name = name
        self.nth = nth
        self.calls = 0
        monkeypatch.setattr(os, name, self)

    def __call__(self, *args: object) -> object:
        self.calls += 1
        if self.calls == self.nth:
            if self.name == "close":
                self.real(*args)
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return self.real(*args)


@pytest.mark.parametrize(
    ("name", "nth"),
    [("write", 1), ("fsync", 1), ("replace", 1), ("open", 2), ("close", 1)],
    ids=["write", "fsync-file", "replace", "open-tmp", "close-tmp"],
)
def test_a_failed_save_raises_keeps_the_old_value_and_the_handle(
    store: LockFileOffsetStore, monkeypatch: pytest.MonkeyPatch, name: str, nth: int
) -> None:
    store.save(1, 2, 100)
    with monkeypatch.context() as patch:
        fault = FailNth(patch, name, nth)
        with pytest.raises(OSError, match="injected") as caught:
            store.save(1, 2, 200)
        assert fault.calls >= nth
    assert caught.value.errno == errno.ENOSPC
    assert store.load(1, 2) == 100
    assert sorted(os.listdir(store.directory)) == [
        "topic-1-consumer-2.lock",
        "topic-1-consumer-2.offset",
    ]  # no temp file left behind, and the lock was released:
    store.save(1, 2, 300)
    assert store.load(1, 2) == 300


@posix_only
def test_a_failed_directory_fsync_raises_after_the_new_value_is_in_place(
    store: LockFileOffsetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Documented in save(): the rename happened, only its durability is unknown; save again.
    store.save(1, 2, 100)
    with monkeypatch.context() as patch:
        FailNth(patch, "fsync", 2)
        with pytest.raises(OSError, match="injected"):
            store.save(1, 2, 200)
    assert store.load(1, 2) == 200
    store.save(1, 2, 200)


def test_a_failed_delete_keeps_the_value_and_the_handle(
    store: LockFileOffsetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(1, 2, 100)
    with monkeypatch.context() as patch:
        FailNth(patch, "remove", 1)
        with pytest.raises(OSError, match="injected"):
            store.delete(1, 2)
    assert store.load(1, 2) == 100
    store.delete(1, 2)
    assert store.load(1, 2) is None


# --- the per-key lock --------------------------------------------------------------------------


@pytest.fixture
def held_lock(store: LockFileOffsetStore) -> Iterator[int]:
    """An exclusive flock on key (1, 2)'s lock file, taken as the Rust client takes it."""
    import fcntl

    fd = os.open(os.path.join(store.directory, "topic-1-consumer-2.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


@flock_only
def test_a_held_lock_times_out_naming_the_lock_file(
    tmp_path: Path, store: LockFileOffsetStore, held_lock: int
) -> None:
    store.save(3, 3, 3)  # other keys are not blocked
    impatient = LockFileOffsetStore.open(tmp_path, "billing", lock_timeout=0.2)
    lock_path = os.path.join(store.directory, "topic-1-consumer-2.lock")
    calls: list[Callable[[], None]] = [
        lambda: impatient.save(1, 2, 9),
        lambda: impatient.delete(1, 2),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught:
            call()
        assert time.monotonic() - started >= 0.2
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.key == (1, 2)
        assert caught.value.path == lock_path
        assert lock_path in str(caught.value)
    assert impatient.load(1, 2) is None
    assert not os.path.exists(lock_path + ".tmp")


@flock_only
def test_a_save_waits_for_the_holder_then_proceeds(
    store: LockFileOffsetStore, held_lock: int
) -> None:
    import fcntl

    saver = threading.Thread(target=store.save, args=(1, 2, 42))
    saver.start()
    saver.join(0.3)
    assert saver.is_alive()
    assert store.load(1, 2) is None
    fcntl.flock(held_lock, fcntl.LOCK_UN)
    saver.join(10)
    assert not saver.is_alive()
    assert store.load(1, 2) == 42


def _fds_open_on(path: str) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(path)
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc/self/fd")
def test_a_waiter_on_an_unlinked_lock_file_does_not_proceed(
    store: LockFileOffsetStore, held_lock: int
) -> None:
    # The seed's delete unlinks the lock file: a waiter then wins the orphaned inode while a
    # newcomer locks a fresh file at the path. Our acquire must notice and wait for the newcomer.
    import fcntl

    lock_path = os.path.join(store.directory, "topic-1-consumer-2.lock")
    saver = threading.Thread(target=store.save, args=(1, 2, 42))
    saver.start()
    deadline = time.monotonic() + 10
    while _fds_open_on(lock_path) < 2 and time.monotonic() < deadline:  # ours + the saver's
        time.sleep(0.01)
    assert _fds_open_on(lock_path) == 2, "the saver never opened the lock file"
    os.unlink(lock_path)  # what the Rust client's delete does
    newcomer = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(newcomer, fcntl.LOCK_EX)
        fcntl.flock(held_lock, fcntl.LOCK_UN)  # the waiter now wins the orphaned inode
        saver.join(0.5)
        assert saver.is_alive(), "the save ran while another process held the current lock"
        assert store.load(1, 2) is None
    finally:
        os.close(newcomer)
    saver.join(10)
    assert store.load(1, 2) == 42
