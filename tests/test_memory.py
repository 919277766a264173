"""MemoryOffsetStore: the contract without persistence."""

from __future__ import annotations

import threading

import pytest

from lance_offsets import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID, OffsetStore, StoreClosedError
from lance_offsets import MemoryOffsetStore as Memory


def test_is_an_offset_store() -> None:
    assert isinstance(Memory(), OffsetStore)


def test_round_trip_last_write_wins_and_delete() -> None:
    store = Memory()
    assert store.load(1, 2) is None
    store.save(1, 2, 10)
    store.save(1, 2, 3)  # a lower offset is a legitimate reset
    assert store.load(1, 2) == 3
    store.delete(1, 2)
    store.delete(1, 2)  # idempotent
    assert store.load(1, 2) is None


def test_extremes_round_trip_and_keys_stay_apart() -> None:
    store = Memory()
    store.save(MAX_TOPIC_ID, MAX_CONSUMER_ID, MAX_OFFSET)
    store.save(1, 23, 0)
    store.save(12, 3, 1)
    assert store.list_all() == {(MAX_TOPIC_ID, MAX_CONSUMER_ID): MAX_OFFSET, (1, 23): 0, (12, 3): 1}


def test_list_all_is_a_fresh_dict() -> None:
    store = Memory()
    store.save(1, 1, 1)
    listed = store.list_all()
    listed[(9, 9)] = 9
    assert store.list_all() == {(1, 1): 1}


def test_domain_errors_leave_the_store_unchanged() -> None:
    store = Memory()
    store.save(1, 1, 1)
    with pytest.raises(TypeError):
        store.save(1, 1, True)
    with pytest.raises(ValueError, match="offset"):
        store.save(1, 1, -1)
    with pytest.raises(ValueError, match="topic_id"):
        store.delete(2**32, 1)
    assert store.list_all() == {(1, 1): 1}


def test_close_is_idempotent_and_final() -> None:
    with Memory() as store:
        store.save(1, 1, 1)
    store.close()
    for call in (lambda: store.load(1, 1), lambda: store.save(1, 1, 2), store.list_all):
        with pytest.raises(StoreClosedError, match="closed"):
            call()


def test_threads_saving_distinct_keys_all_land() -> None:
    store = Memory()

    def work(topic: int) -> None:
        for offset in range(200):
            store.save(topic, 0, offset)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert store.list_all() == {(t, 0): 199 for t in range(4)}
