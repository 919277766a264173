"""The asyncio face (docs/async.md): the contract with await, a loop that keeps ticking, and
cancellation that leaves the old or the new offset, settled, never a half-state."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.conformance import reference
from lance_offsets.conformance._spec import load_factory

from lance_offsets import (
    AsyncOffsetStore,
    LockFileOffsetStore,
    MemoryOffsetStore,
    StoreClosedError,
    SyncOverAsyncStore,
    sync_factory,
)
from lance_offsets._aio_sync import is_async_store


def _open(directory: Path) -> LockFileOffsetStore:
    return LockFileOffsetStore.open(str(directory), "billing")


async def _aopen(directory: Path) -> AsyncOffsetStore:
    return await AsyncOffsetStore.open(lambda: _open(directory))


def test_contract_with_await(tmp_path: Path) -> None:
    async def main() -> None:
        async with await _aopen(tmp_path) as store:
            assert await store.load(1, 2) is None
            await store.save(1, 2, 40)
            await store.save(3, 4, 7)
            assert await store.load(1, 2) == 40
            assert await store.list_all() == {(1, 2): 40, (3, 4): 7}
            await store.delete(1, 2)
            await store.delete(1, 2)  # absent: not an error
            assert await store.list_all() == {(3, 4): 7}
        # What the async handle saved is on disk for any synchronous handle.
        with _open(tmp_path) as plain:
            assert plain.list_all() == {(3, 4): 7}

    asyncio.run(main())


def test_argument_errors_before_any_effect(tmp_path: Path) -> None:
    async def main() -> None:
        async with await _aopen(tmp_path) as store:
            with pytest.raises(TypeError):
                await store.save(1, 2, 1.0)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="topic_id"):
                await store.save(2**32, 0, 1)
            with pytest.raises(TypeError):
                await store.load(True, 0)
            assert await store.list_all() == {}

    asyncio.run(main())


def test_closed_handle_raises_and_close_is_idempotent(tmp_path: Path) -> None:
    async def main() -> None:
        store = await _aopen(tmp_path)
        await store.save(1, 1, 1)
        await store.close()
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.load(1, 1)

    asyncio.run(main())


def test_calls_on_one_handle_run_in_the_order_awaited(tmp_path: Path) -> None:
    # Tasks started in order on one handle: the last one started must win, as in sync code.
    async def main() -> None:
        async with await _aopen(tmp_path) as store:
            await asyncio.gather(*(store.save(5, 5, n) for n in range(50)))
            assert await store.load(5, 5) == 49

    asyncio.run(main())


class _WithExtras(MemoryOffsetStore):
    """A store with a method beyond the protocol, as ``save_many`` will be."""

    def save_many(self, offsets: Mapping[tuple[int, int], int]) -> None:
        for (topic_id, consumer_id), offset in offsets.items():
            self.save(topic_id, consumer_id, offset)


def test_methods_beyond_the_protocol_are_forwarded() -> None:
    async def main() -> None:
        async with AsyncOffsetStore(_WithExtras()) as store:
            await store.save_many({(1, 1): 3, (2, 2): 4})
            assert await store.list_all() == {(1, 1): 3, (2, 2): 4}
            with pytest.raises(AttributeError):
                store.no_such_method  # noqa: B018

    asyncio.run(main())
    # And back through the suite's synchronous side: both layers forward it.
    with sync_factory(lambda _path: AsyncOffsetStore(_WithExtras()))("unused") as handle:
        handle.save_many({(3, 3): 5})  # type: ignore[attr-defined]
        assert handle.list_all() == {(3, 3): 5}


def test_heartbeat_ticks_while_saves_fsync(tmp_path: Path) -> None:
    """Structure, not time: every async save lets the loop run a ready task; a blocking one never.

    A heartbeat task that is always ready (``sleep(0)``) counts its ticks. Each awaited save
    suspends its task until the worker thread finishes, so the heartbeat runs at least once
    inside every save; a plain blocking save in a coroutine gives it no turn at all.
    """
    saves = 60
    inside: list[int] = []
    blocking_inside: list[int] = []

    async def main() -> None:
        ticks = 0
        stop = False

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        async with await _aopen(tmp_path / "a") as store:
            for n in range(saves):
                before = ticks
                await store.save(1, 1, n)  # open() then fsync() of file and directory
                inside.append(ticks - before)
        with _open(tmp_path / "b") as plain:
            for n in range(saves):
                before = ticks
                plain.save(1, 1, n)  # the same work, blocking the loop
                blocking_inside.append(ticks - before)
                await asyncio.sleep(0)
        stop = True
        await beat

    asyncio.run(main())
    print(f"heartbeat ticks inside async saves: {sum(inside)}; inside blocking saves: 0")
    assert all(n >= 1 for n in inside), inside
    assert blocking_inside == [0] * saves


def test_longest_stall_is_measured_and_printed(tmp_path: Path) -> None:
    """The longest event-loop stall while 4 tasks save, async beside blocking: printed, with
    what was exercised asserted (never a time bound: the figure depends on the machine)."""
    beat = 0.001

    async def stalls(save: Callable[[int, int], Awaitable[None]]) -> tuple[float, int]:
        late: list[float] = []
        done = False

        async def heartbeat() -> None:
            while not done:
                due = time.perf_counter() + beat
                await asyncio.sleep(beat)
                late.append(time.perf_counter() - due)

        ticking = asyncio.create_task(heartbeat())
        await asyncio.sleep(beat * 3)
        await asyncio.gather(*(save(task, n) for task in range(4) for n in range(15)))
        done = True
        await ticking
        return max(late), len(late)

    async def main() -> dict[str, tuple[float, int]]:
        async with await _aopen(tmp_path) as store:
            measured = {"async": await stalls(lambda task, n: store.save(task, 0, n))}
        with _open(tmp_path) as plain:

            async def blocking(task: int, n: int) -> None:
                plain.save(task, 1, n)  # the fsync blocks the loop

            measured["blocking"] = await stalls(blocking)
        return measured

    measured = asyncio.run(main())
    shown = {k: f"{v[0] * 1000:.2f} ms over {v[1]} heartbeats" for k, v in measured.items()}
    print(f"longest event-loop stall during 60 durable saves: {shown}")
    assert all(heartbeats >= 1 for _, heartbeats in measured.values())


def test_cancelled_saves_leave_the_old_or_the_new_offset_settled(tmp_path: Path) -> None:
    """Real cancellation at random moments; after each CancelledError nothing is in flight."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    outcomes = {"old": 0, "new": 0}

    async def main() -> None:
        async with await _aopen(tmp_path) as store:
            await store.save(9, 9, 0)
            current = 0
            for n in range(1, 81):
                # Queue some saves first sometimes, so a cancel can find the save not started.
                queued = [asyncio.create_task(store.save(8, 8, k)) for k in range(rng.randrange(3))]
                task = asyncio.create_task(store.save(9, 9, n))
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    await asyncio.sleep(rng.random() / 500)
                cancelled = task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                else:
                    cancelled = False
                await asyncio.gather(*queued)
                # Read behind the handle's back with a fresh synchronous handle, twice: the state
                # is settled (the save cannot land later) and is the old or the new offset.
                seen = _open(tmp_path).load(9, 9)
                await asyncio.sleep(0.002)
                assert _open(tmp_path).load(9, 9) == seen
                if cancelled:
                    assert seen in (current, n), (seen, current, n)
                    outcomes["old" if seen == current else "new"] += 1
                else:
                    assert seen == n
                current = seen if seen is not None else current

    asyncio.run(main())
    print(f"cancelled saves that kept the old offset / stored the new one: {outcomes}")
    assert sum(outcomes.values()) >= 1


def test_a_cancel_during_a_running_save_waits_for_it(tmp_path: Path) -> None:
    """Deterministic: the save is held inside the thread while the task is cancelled."""
    entered, release = threading.Event(), threading.Event()

    class Gated(LockFileOffsetStore):
        def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
            entered.set()
            release.wait(30)
            super().save(topic_id, consumer_id, offset)

    async def main() -> None:
        store = AsyncOffsetStore(Gated.open(str(tmp_path), "billing"))
        task = asyncio.create_task(store.save(1, 1, 2))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.01)
        assert not task.done()  # held: the save is running, the cancel waits for it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _open(tmp_path).load(1, 1) == 2  # the new offset, complete
        await store.close()

    asyncio.run(main())


def test_a_cancel_before_the_save_starts_withdraws_it(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class Gated(LockFileOffsetStore):
        def load(self, topic_id: int, consumer_id: int) -> int | None:
            entered.set()
            release.wait(30)
            return super().load(topic_id, consumer_id)

    async def main() -> None:
        store = AsyncOffsetStore(Gated.open(str(tmp_path), "billing"))
        blocker = asyncio.create_task(store.load(1, 1))  # occupies the handle's thread
        while not entered.is_set():
            await asyncio.sleep(0.001)
        task = asyncio.create_task(store.save(1, 1, 5))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await blocker is None
        assert await store.load(1, 1) is None  # withdrawn: the old state (absent) stays
        await store.close()

    asyncio.run(main())


# -- the suite's side: asyncio factories driven synchronously --------------------------------


def test_an_async_def_factory_gives_synchronous_handles(tmp_path: Path) -> None:
    factory = load_factory("lance_offsets.conformance.reference:async_lockfile")
    assert factory is load_factory("lance_offsets.conformance.reference:async_lockfile")
    handle = factory(str(tmp_path))
    assert isinstance(handle, SyncOverAsyncStore)
    with handle:
        handle.save(1, 2, 3)
        assert handle.load(1, 2) == 3
    with pytest.raises(StoreClosedError):
        handle.load(1, 2)
    with reference.lockfile(str(tmp_path)) as plain:
        assert plain.load(1, 2) == 3
    # Capabilities read through; open_named is adapted as well.
    assert factory.damage is reference.LOCKFILE_DAMAGE  # type: ignore[attr-defined]
    named = factory.open_named(str(tmp_path), "other")  # type: ignore[attr-defined]
    assert isinstance(named, SyncOverAsyncStore)
    named.close()


def test_a_sync_factory_returning_an_async_store_is_adapted(tmp_path: Path) -> None:
    def factory(path: str) -> AsyncOffsetStore:
        return AsyncOffsetStore(LockFileOffsetStore.open(path, "x"))

    with sync_factory(factory)(str(tmp_path)) as handle:
        assert isinstance(handle, SyncOverAsyncStore)
        handle.save(1, 1, 1)
        with pytest.raises(ValueError, match="offset"):
            handle.save(1, 1, -1)  # the asyncio store's own error, unchanged
        assert handle.list_all() == {(1, 1): 1}


def test_synchronous_factories_pass_through_untouched(tmp_path: Path) -> None:
    factory = load_factory("lance_offsets.conformance.reference:lockfile")
    handle: Any = factory(str(tmp_path))
    assert type(handle) is LockFileOffsetStore
    handle.close()
    assert not is_async_store(handle)
    assert sync_factory(factory) is factory  # idempotent


def test_no_thread_is_left_behind(tmp_path: Path) -> None:
    factory = sync_factory(reference.async_lockfile)
    before = threading.active_count()
    for n in range(5):
        with factory(str(tmp_path)) as handle:
            handle.save(0, 0, n)
    assert threading.active_count() == before
    assert os.path.exists(tmp_path / reference.CONSUMER_NAME)


class _FireAndForget:
    """A realistic asyncio defect: ``save`` hands the blocking save to a thread and returns
    without awaiting it, so the offset is acknowledged before it is stored."""

    def __init__(self, store: LockFileOffsetStore) -> None:
        self._store = store
        self._pending: set[asyncio.Future[None]] = set()

    async def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self._store.load(topic_id, consumer_id)

    async def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        future = asyncio.get_running_loop().run_in_executor(
            None, self._store.save, topic_id, consumer_id, offset
        )
        self._pending.add(future)  # kept, never awaited: the defect
        future.add_done_callback(self._pending.discard)

    async def delete(self, topic_id: int, consumer_id: int) -> None:
        self._store.delete(topic_id, consumer_id)

    async def list_all(self) -> dict[tuple[int, int], int]:
        return self._store.list_all()

    async def close(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._store.close()


async def _fire_and_forget(path: str) -> _FireAndForget:
    return _FireAndForget(LockFileOffsetStore.open(path, "conformance"))


def test_the_suite_checks_an_asyncio_factory_given_as_an_object() -> None:
    from lance_offsets.conformance import check_property

    # Typed code passes sync_factory(f); the suite adapts a bare asyncio factory all the same.
    good = check_property(sync_factory(reference.async_lockfile), "C3", profile="smoke")
    assert good.outcome == "passed", good
    bad = check_property(_fire_and_forget, "C1", profile="smoke")  # type: ignore[arg-type]
    assert bad.outcome == "failed", bad
    assert "[C1 " in bad.details


def test_a_timeout_around_a_save_is_a_timeout_and_leaves_it_settled(tmp_path: Path) -> None:
    async def main() -> dict[str, int]:
        counts = {"timed out": 0, "of which kept the old offset": 0}
        current = None
        async with await _aopen(tmp_path) as store:
            for n in range(1, 31):
                try:
                    await asyncio.wait_for(store.save(2, 2, n), 0.0005)
                except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
                    counts["timed out"] += 1
                seen = _open(tmp_path).load(2, 2)
                assert seen in (current, n), (seen, current, n)
                counts["of which kept the old offset"] += seen != n
                current = seen
        return counts

    print(f"30 saves under a 0.5 ms timeout: {asyncio.run(main())}")


def test_an_open_cancelled_midway_closes_what_it_opened(tmp_path: Path) -> None:
    opened: list[LockFileOffsetStore] = []
    release = threading.Event()

    def slow_open() -> LockFileOffsetStore:
        release.wait(30)
        store = _open(tmp_path)
        opened.append(store)
        return store

    async def main() -> None:
        task = asyncio.create_task(AsyncOffsetStore.open(slow_open))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert opened

    def closed() -> bool:
        try:
            opened[0].load(1, 1)
        except StoreClosedError:
            return True
        return False

    for _ in range(500):  # the close runs in the abandoned handle's thread, right after
        if closed():
            break
        threading.Event().wait(0.01)
    assert closed()


def test_synchronous_stores_never_import_asyncio() -> None:
    # Every worker process the suites spawn loads its factory through sync_factory: a store
    # without the asyncio face must not pay for the asyncio import there (tens of ms a process).
    code = (
        "import sys, tempfile\n"
        "from lance_offsets.conformance._spec import load_factory\n"
        "factory = load_factory('lance_offsets.conformance.reference:lockfile')\n"
        "factory(tempfile.mkdtemp()).close()\n"
        "assert 'asyncio' not in sys.modules, 'asyncio imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
