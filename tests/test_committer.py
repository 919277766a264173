"""CoalescingCommitter: coalescing, read-your-writes, flush, errors never lost, the suite's view."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from lance_offsets.conformance import check_property

from lance_offsets import (
    CoalescingCommitter,
    LockFileOffsetStore,
    OffsetStoreError,
    StoreClosedError,
)


class GatedStore(LockFileOffsetStore):
    """A real lock-file store whose writes wait at a gate the test opens (a write in flight)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[dict[tuple[int, int], int]] = []
        self.fail_with: OSError | None = None

    def save_many(self, offsets: Mapping[tuple[int, int], int]) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.batches.append(dict(offsets))
        if self.fail_with is not None:
            raise self.fail_with
        super().save_many(offsets)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.save_many({(topic_id, consumer_id): offset})


def _gated(path: Path) -> GatedStore:
    base = LockFileOffsetStore.open(path, "c")
    return GatedStore(base.directory, base.consumer_name, None)


def _fresh(path: Path) -> LockFileOffsetStore:
    return LockFileOffsetStore.open(path, "c")


def test_a_hot_key_costs_one_write_per_flight_and_the_latest_wins(tmp_path: Path) -> None:
    inner = _gated(tmp_path)
    with CoalescingCommitter(inner) as committer:
        inner.gate.clear()
        committer.save(1, 1, 0)
        assert inner.entered.wait(30)  # offset 0 is in flight, held at the gate
        for offset in range(1, 1000):
            committer.save(1, 1, offset)
            committer.save(2, 2, offset)
        inner.gate.set()
        committer.flush()
        # One write in flight, then one batch with the latest value of each key.
        assert inner.batches == [{(1, 1): 0}, {(1, 1): 999, (2, 2): 999}]
        assert committer.stats == {"accepted": 1999, "written": 3}
        assert _fresh(tmp_path).list_all() == {(1, 1): 999, (2, 2): 999}


def test_the_handle_reads_its_writes_before_they_are_durable(tmp_path: Path) -> None:
    inner = _gated(tmp_path)
    committer = CoalescingCommitter(inner)
    inner.gate.clear()
    committer.save(3, 4, 10)
    assert inner.entered.wait(30)
    committer.save(3, 5, 11)  # pending behind the write in flight
    assert committer.load(3, 4) == 10
    assert committer.load(3, 5) == 11
    assert committer.list_all() == {(3, 4): 10, (3, 5): 11}
    assert _fresh(tmp_path).list_all() == {}  # not acknowledged: another handle may not see it
    inner.gate.set()
    committer.flush()
    assert _fresh(tmp_path).list_all() == {(3, 4): 10, (3, 5): 11}
    committer.close()


def test_close_flushes_and_closes_the_store(tmp_path: Path) -> None:
    committer = CoalescingCommitter(_fresh(tmp_path))
    committer.save_many({(1, 1): 1, (2, 2): 2})
    committer.save(1, 1, 3)
    committer.close()
    committer.close()  # idempotent
    assert _fresh(tmp_path).list_all() == {(1, 1): 3, (2, 2): 2}
    for call in (lambda: committer.save(1, 1, 1), committer.flush, committer.list_all):
        with pytest.raises(StoreClosedError):
            call()
    with pytest.raises(StoreClosedError):
        committer.store.load(1, 1)


def test_delete_drops_the_unwritten_value_and_waits_out_the_flight(tmp_path: Path) -> None:
    inner = _gated(tmp_path)
    with CoalescingCommitter(inner) as committer:
        committer.save(1, 1, 1)
        committer.flush()
        inner.gate.clear()
        inner.entered.clear()
        committer.save(1, 1, 2)
        assert inner.entered.wait(30)
        committer.save(1, 1, 3)  # pending, dropped by the delete
        threading.Timer(0.05, inner.gate.set).start()
        committer.delete(1, 1)  # returns only after the write of 2 landed, then deletes
        assert committer.load(1, 1) is None
        committer.flush()
        assert _fresh(tmp_path).load(1, 1) is None


def test_a_failed_write_is_raised_once_by_flush_and_leaves_the_old_value(tmp_path: Path) -> None:
    inner = _gated(tmp_path)
    committer = CoalescingCommitter(inner)
    committer.save(1, 1, 1)
    committer.flush()
    inner.fail_with = OSError(28, "No space left on device (injected)")
    committer.save(1, 1, 2)
    with pytest.raises(OSError, match="injected"):
        committer.flush()
    assert committer.load(1, 1) == 1  # dropped, not retried behind the caller's back
    assert _fresh(tmp_path).load(1, 1) == 1
    committer.flush()  # reported once
    inner.fail_with = None
    committer.save(1, 1, 4)
    committer.flush()
    assert _fresh(tmp_path).load(1, 1) == 4
    committer.close()


def test_several_failures_are_reported_together(tmp_path: Path) -> None:
    inner = _gated(tmp_path)
    committer = CoalescingCommitter(inner)
    inner.fail_with = OSError(5, "Input/output error (injected)")
    inner.gate.clear()
    committer.save(1, 1, 1)
    assert inner.entered.wait(30)
    committer.save(2, 2, 2)  # the next batch, which fails too
    inner.gate.set()
    deadline = time.monotonic() + 30
    while len(inner.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)  # both writes attempted before the flush (else it may see only one)
    with pytest.raises(OffsetStoreError, match="2 background writes failed") as raised:
        committer.flush()
    assert isinstance(raised.value.__cause__, OSError)
    assert inner.batches == [{(1, 1): 1}, {(2, 2): 2}]
    committer.save(3, 3, 3)
    # A failure nobody flushed surfaces at close, and the store is closed anyway.
    with pytest.raises(OSError, match="injected"):
        committer.close()
    with pytest.raises(StoreClosedError):
        inner.load(1, 1)


def test_bad_arguments_raise_at_save_before_anything_is_queued(tmp_path: Path) -> None:
    with CoalescingCommitter(_fresh(tmp_path)) as committer:
        with pytest.raises(TypeError):
            committer.save(1, 1, 1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="offset"):
            committer.save(1, 1, 2**64)
        with pytest.raises(ValueError, match="topic_id"):
            committer.save_many({(1, 1): 1, (2**32, 0): 1})
        committer.flush()
        assert committer.list_all() == {}


@pytest.mark.parametrize("pid", ["C1", "C3", "C6", "C8", "P1", "P2", "B1"])
def test_the_committer_passes_the_suite_acknowledged_by_flush(pid: str) -> None:
    result = check_property("lance_offsets.conformance.reference:coalescing", pid, profile="smoke")
    assert result.outcome == "passed", result
