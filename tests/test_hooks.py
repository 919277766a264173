"""HookedOffsetStore and the bundled hooks (H1-H3), on the memory and lock-file stores.

tests/slow/test_cli_processes.py checks previous_offset when another process saved the key.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import pickle
import threading
from pathlib import Path

import portalocker
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from lance_offsets import (
    MAX_CONSUMER_ID,
    MAX_OFFSET,
    MAX_TOPIC_ID,
    CollectingCommitHook,
    CommitInfo,
    CorruptOffsetError,
    HookedOffsetStore,
    HookError,
    LockFileOffsetStore,
    LockTimeoutError,
    LoggingCommitHook,
    MemoryOffsetStore,
    OffsetStore,
    PostCommitHook,
    StoreClosedError,
)


class Recorder:
    """A hook that appends (name, info) to a shared journal, to observe the call order."""

    def __init__(self, name: str, journal: list[tuple[str, CommitInfo]]) -> None:
        self.name = name
        self.journal = journal

    def on_commit(self, info: CommitInfo) -> None:
        self.journal.append((self.name, info))


class Failing:
    """A hook that records its call, then raises."""

    def __init__(self, name: str, journal: list[tuple[str, CommitInfo]]) -> None:
        self.name = name
        self.journal = journal

    def on_commit(self, info: CommitInfo) -> None:
        self.journal.append((self.name, info))
        raise RuntimeError(f"hook {self.name} failed")


def test_hooked_store_is_an_offset_store() -> None:
    store = HookedOffsetStore(MemoryOffsetStore())
    assert isinstance(store, OffsetStore)
    assert isinstance(CollectingCommitHook(), PostCommitHook)
    assert isinstance(LoggingCommitHook(), PostCommitHook)


def test_hooks_run_once_per_save_in_registration_order() -> None:
    journal: list[tuple[str, CommitInfo]] = []
    store = HookedOffsetStore(MemoryOffsetStore(), [Recorder("a", journal)])
    assert store.add_hook(Recorder("b", journal)) is store
    store.add_hook(Recorder("c", journal))
    store.save(1, 100, 42)
    store.save(1, 100, 7)
    assert [name for name, _ in journal] == ["a", "b", "c", "a", "b", "c"]
    # Every hook of one save got the very same CommitInfo.
    assert len({id(info) for _, info in journal[:3]}) == 1
    assert [info.offset for _, info in journal[::3]] == [42, 7]


def test_commit_info_fields() -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [hook])
    before = datetime.datetime.now(datetime.timezone.utc)
    store.save(3, 9, 42)
    after = datetime.datetime.now(datetime.timezone.utc)
    (info,) = hook.commits()
    assert (info.topic_id, info.consumer_id, info.offset, info.previous_offset) == (3, 9, 42, None)
    assert info.timestamp.utcoffset() == datetime.timedelta(0)
    assert before <= info.timestamp <= after
    with pytest.raises(AttributeError):
        info.offset = 1  # type: ignore[misc]


def test_previous_offset_follows_saves_and_deletes() -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [hook])
    store.save(1, 1, 10)
    store.save(1, 1, 5)  # a lower offset is a legitimate reset
    store.save(1, 2, 99)  # another key does not disturb this one's chain
    store.delete(1, 1)
    store.save(1, 1, 6)
    assert [(c.consumer_id, c.offset, c.previous_offset) for c in hook.commits()] == [
        (1, 10, None),
        (1, 5, 10),
        (2, 99, None),
        (1, 6, None),
    ]


def test_previous_offset_on_first_save_of_a_new_wrapper() -> None:
    # The seed's bug: previous_offset came from a per-wrapper dict filled only by load(), so a
    # fresh wrapper (a reopen) reported None for a key the store already held.
    inner = MemoryOffsetStore()
    HookedOffsetStore(inner).save(1, 1, 10)
    hook = CollectingCommitHook()
    HookedOffsetStore(inner, [hook]).save(1, 1, 11)
    assert hook.commits()[0].previous_offset == 10


def test_previous_offset_sees_another_handles_save() -> None:
    inner = MemoryOffsetStore()
    hook_a, hook_b = CollectingCommitHook(), CollectingCommitHook()
    a = HookedOffsetStore(inner, [hook_a])
    b = HookedOffsetStore(inner, [hook_b])
    a.save(1, 1, 10)
    b.save(1, 1, 20)
    a.save(1, 1, 30)
    assert [c.previous_offset for c in hook_a.commits()] == [None, 20]
    assert [c.previous_offset for c in hook_b.commits()] == [10]


@pytest.mark.parametrize(
    ("key", "offset", "error"),
    [
        ((-1, 0), 0, ValueError),
        ((MAX_TOPIC_ID + 1, 0), 0, ValueError),
        ((0, MAX_CONSUMER_ID + 1), 0, ValueError),
        ((0, 0), MAX_OFFSET + 1, ValueError),
        ((0, 0), -1, ValueError),
        ((True, 0), 0, TypeError),
        ((0, 0), 1.0, TypeError),
        ((0, None), 0, TypeError),
        ((0, 0), "5", TypeError),
    ],
)
def test_domain_errors_call_no_hook_and_change_nothing(
    key: tuple[object, object], offset: object, error: type[Exception]
) -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [hook])
    store.save(0, 0, 1)
    hook.clear()
    with pytest.raises(error):
        store.save(*key, offset)  # type: ignore[arg-type]
    assert hook.commits() == []
    assert store.list_all() == {(0, 0): 1}


def test_extremes_round_trip_through_hooks() -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [hook])
    store.save(MAX_TOPIC_ID, MAX_CONSUMER_ID, MAX_OFFSET)
    store.save(MAX_TOPIC_ID, MAX_CONSUMER_ID, 0)
    assert store.load(MAX_TOPIC_ID, MAX_CONSUMER_ID) == 0
    assert [(c.offset, c.previous_offset) for c in hook.commits()] == [
        (MAX_OFFSET, None),
        (0, MAX_OFFSET),
    ]


def test_failed_inner_save_calls_no_hook_and_propagates_unchanged() -> None:
    inner = MemoryOffsetStore()
    hook = CollectingCommitHook()
    store = HookedOffsetStore(inner, [hook])
    inner.close()
    with pytest.raises(StoreClosedError):
        store.save(1, 1, 1)
    assert hook.commits() == []


def test_failing_hooks_all_run_then_hook_error_after_durable_commit() -> None:
    journal: list[tuple[str, CommitInfo]] = []
    inner = MemoryOffsetStore()
    inner.save(4, 2, 1)
    store = HookedOffsetStore(
        inner,
        [
            Recorder("ok1", journal),
            Failing("bad1", journal),
            Recorder("ok2", journal),
            Failing("bad2", journal),
        ],
    )
    with pytest.raises(HookError) as caught:
        store.save(4, 2, 77)
    assert [name for name, _ in journal] == ["ok1", "bad1", "ok2", "bad2"]
    error = caught.value
    assert error.info == journal[0][1]
    assert (error.info.offset, error.info.previous_offset) == (77, 1)
    assert [str(e) for e in error.errors] == ["hook bad1 failed", "hook bad2 failed"]
    assert error.__cause__ is error.errors[0]
    assert "offset 77" in str(error)
    assert "was committed" in str(error)
    assert error.key == (4, 2)
    # The commit is durable: it is stored, and the next save reports it as the previous offset.
    assert store.load(4, 2) == 77
    journal.clear()
    with pytest.raises(HookError):
        store.save(4, 2, 78)
    assert journal[0][1].previous_offset == 77


def test_hook_error_pickles_with_its_info() -> None:
    store = HookedOffsetStore(MemoryOffsetStore(), [Failing("bad", [])])
    with pytest.raises(HookError) as caught:
        store.save(1, 2, 3)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.info == caught.value.info
    assert str(copy) == str(caught.value)


def test_keyboard_interrupt_in_a_hook_is_not_swallowed() -> None:
    class Interrupting:
        def on_commit(self, info: CommitInfo) -> None:
            raise KeyboardInterrupt

    after = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [Interrupting(), after])
    with pytest.raises(KeyboardInterrupt):
        store.save(1, 1, 5)
    assert store.load(1, 1) == 5
    assert after.commits() == []


def test_add_hook_rejects_objects_without_on_commit() -> None:
    store = HookedOffsetStore(MemoryOffsetStore())
    with pytest.raises(TypeError, match="on_commit"):
        store.add_hook(print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_commit"):
        HookedOffsetStore(MemoryOffsetStore(), [object()])  # type: ignore[list-item]
    assert store.hooks == ()


def test_delete_and_list_all_pass_through_without_hooks() -> None:
    inner = MemoryOffsetStore()
    hook = CollectingCommitHook()
    store = HookedOffsetStore(inner, [hook])
    store.save(1, 1, 1)
    store.save(2, 2, 2)
    listed = store.list_all()
    listed.clear()  # a fresh dict: mutating it changes nothing
    assert store.list_all() == {(1, 1): 1, (2, 2): 2}
    store.delete(1, 1)
    store.delete(1, 1)  # idempotent
    assert inner.list_all() == {(2, 2): 2}
    assert store.load(1, 1) is None
    assert len(hook.commits()) == 2
    with pytest.raises(ValueError, match="topic_id"):
        store.delete(-1, 0)


def test_close_and_context_manager_close_the_inner_store() -> None:
    inner = MemoryOffsetStore()
    with HookedOffsetStore(inner) as store:
        assert store.inner is inner
        store.save(1, 1, 1)
    with pytest.raises(StoreClosedError):
        inner.load(1, 1)
    with pytest.raises(StoreClosedError):
        store.save(1, 1, 2)
    store.close()  # closing twice is fine


def test_same_key_saves_from_threads_chain_exactly() -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(MemoryOffsetStore(), [hook])
    threads_count, per_thread = 8, 200

    def work(base: int) -> None:
        for i in range(per_thread):
            store.save(7, 7, base * per_thread + i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    commits = hook.commits()
    assert len(commits) == threads_count * per_thread
    # Saves of one key through one handle are serialized with their hooks: each commit's
    # previous_offset is exactly the offset of the commit the hook saw just before it.
    assert commits[0].previous_offset is None
    for before, after in itertools.pairwise(commits):
        assert after.previous_offset == before.offset
    assert store.load(7, 7) == commits[-1].offset


def test_collecting_hook_is_thread_safe_and_returns_copies() -> None:
    hook = CollectingCommitHook()
    info = CommitInfo(1, 2, 3, None, datetime.datetime.now(datetime.timezone.utc))

    def work() -> None:
        for _ in range(500):
            hook.on_commit(info)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    commits = hook.commits()
    assert len(commits) == 2000
    commits.clear()
    assert len(hook.commits()) == 2000
    hook.clear()
    assert hook.commits() == []
    assert "0 commits" in repr(hook)


def test_logging_hook_emits_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lance_offsets.commits")
    store = HookedOffsetStore(MemoryOffsetStore(), [LoggingCommitHook()])
    store.save(5, 6, 7)
    store.save(5, 6, 8)
    first, second = caplog.records
    assert first.name == "lance_offsets.commits"
    assert first.levelno == logging.DEBUG
    assert first.getMessage() == "committed offset 7 for topic_id=5 consumer_id=6 (previous none)"
    assert second.getMessage() == "committed offset 8 for topic_id=5 consumer_id=6 (previous 7)"
    fields = {k: getattr(second, k) for k in ("topic_id", "consumer_id", "offset")}
    assert fields == {"topic_id": 5, "consumer_id": 6, "offset": 8}
    assert second.previous_offset == 7  # type: ignore[attr-defined]
    stamp = datetime.datetime.fromisoformat(second.commit_timestamp)  # type: ignore[attr-defined]
    assert stamp.utcoffset() == datetime.timedelta(0)


def test_logging_hook_logger_and_level_are_configurable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mine = logging.getLogger("test.hooks.mine")
    by_name = LoggingCommitHook("test.hooks.named", level=logging.WARNING)
    store = HookedOffsetStore(MemoryOffsetStore())
    store.add_hook(LoggingCommitHook(mine, level=logging.INFO)).add_hook(by_name)
    store.save(1, 1, 1)
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("test.hooks.mine", logging.INFO),
        ("test.hooks.named", logging.WARNING),
    ]
    assert "test.hooks.named" in repr(by_name)


# A short program of saves, deletes and wrapper "reopens" against a dict model: previous_offset
# must always be the model's value for the key right before the save.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 2), st.integers(0, MAX_OFFSET)),
        st.tuples(st.just("delete"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=30,
)


@settings(deadline=None, max_examples=60)
@given(_ops)
def test_previous_offset_matches_a_model(ops: list[tuple[str, int, int]]) -> None:
    inner = MemoryOffsetStore()
    hook = CollectingCommitHook()
    store = HookedOffsetStore(inner, [hook])
    model: dict[int, int] = {}
    for op, topic, offset in ops:
        note(f"{op} topic={topic} offset={offset}")
        if op == "save":
            hook.clear()
            store.save(topic, 0, offset)
            (info,) = hook.commits()
            assert info.previous_offset == model.get(topic)
            model[topic] = offset
        elif op == "delete":
            store.delete(topic, 0)
            model.pop(topic, None)
        else:
            store = HookedOffsetStore(inner, [hook])
    assert store.list_all() == {(t, 0): o for t, o in model.items()}


# --- over the lock-file store: a real reopen, a real lock timeout, real damage ------------------


def test_previous_offset_after_reopen(tmp_path: Path) -> None:
    with HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c")) as first:
        first.save(1, 2, 10)
    hook = CollectingCommitHook()
    with HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [hook]) as reopened:
        reopened.save(1, 2, 11)
    assert [(c.offset, c.previous_offset) for c in hook.commits()] == [(11, 10)]


def test_previous_offset_after_another_handles_save_and_delete(tmp_path: Path) -> None:
    hook = CollectingCommitHook()
    mine = HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [hook])
    other = LockFileOffsetStore.open(tmp_path, "c")
    mine.save(1, 2, 10)
    other.save(1, 2, 20)
    mine.save(1, 2, 30)
    other.delete(1, 2)
    mine.save(1, 2, 40)
    assert [c.previous_offset for c in hook.commits()] == [None, 20, None]


def test_lock_timeout_calls_no_hook(tmp_path: Path) -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c", lock_timeout=0.1), [hook])
    store.save(1, 2, 10)
    hook.clear()
    # flock locks belong to an open file description: this open excludes the store's own.
    with open(tmp_path / "c" / "topic-1-consumer-2.lock", "a+b") as held:
        portalocker.lock(held, portalocker.LOCK_EX)
        with pytest.raises(LockTimeoutError) as caught:
            store.save(1, 2, 11)
        portalocker.unlock(held)
    assert type(caught.value) is LockTimeoutError  # propagated unchanged, not wrapped
    assert hook.commits() == []
    assert store.load(1, 2) == 10


def test_corrupt_previous_value_refuses_the_save(tmp_path: Path) -> None:
    hook = CollectingCommitHook()
    store = HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [hook])
    path = tmp_path / "c" / "topic-1-consumer-2.offset"
    path.write_bytes(b"garbage\n")
    with pytest.raises(CorruptOffsetError) as caught:
        store.save(1, 2, 5)
    assert caught.value.path == str(path)
    assert hook.commits() == []
    assert path.read_bytes() == b"garbage\n"
    store.inner.save(1, 2, 5)  # the documented way out: save through the inner store
    store.save(1, 2, 6)
    assert hook.commits()[0].previous_offset == 5


def test_hook_error_after_a_durable_save_on_disk(tmp_path: Path) -> None:
    store = HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [Failing("bad", [])])
    with pytest.raises(HookError):
        store.save(1, 2, 5)
    assert (tmp_path / "c" / "topic-1-consumer-2.offset").read_bytes() == b"5\n"
    with LockFileOffsetStore.open(tmp_path, "c") as reopened:
        assert reopened.load(1, 2) == 5
