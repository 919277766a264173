"""The asyncio face of every store: the same contract with ``await`` (docs/async.md).

:class:`AsyncOffsetStore` wraps any synchronous store. Every blocking call (file I/O, fsync, a
database round trip) runs in one worker thread that belongs to the handle, so the event loop never
waits on a disk. One thread per handle, not a shared pool, because:

* calls on one handle run in the order they were awaited, as they would in a synchronous program;
* a store that is not safe to share between threads (or a database connection that must stay on
  the thread that opened it, see :meth:`AsyncOffsetStore.open`) never sees a second thread.

Cancellation. A call that already runs in the thread cannot be interrupted halfway, and a save
that returned to nobody would leave the caller guessing. So when the awaiting task is cancelled:

* if the call has not started (it waits behind earlier calls of the handle), it is withdrawn and
  never runs: the store keeps the old offset;
* if it has started, the task waits for it to finish, then raises :class:`asyncio.CancelledError`:
  the store holds the new offset (or the call's own error happened and is dropped).

Either way nothing is in flight when ``CancelledError`` reaches the caller: a ``load`` right after
it sees the old or the new offset, never something between, and never a change arriving later.
A cancelled call takes at most as long as the call itself.

Methods beyond the protocol (``save_many``, a store's own extras) are forwarded generically by
:meth:`AsyncOffsetStore.__getattr__`: a callable attribute of the wrapped store becomes a coroutine
function that runs in the handle's thread under the same cancellation rule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ._domain import check_key, check_offset
from ._errors import StoreClosedError
from ._protocol import OffsetStore

__all__ = ["AsyncOffsetStore"]

T = TypeVar("T")


async def _settled(future: concurrent.futures.Future[T]) -> T:
    """Await ``future`` (running in a handle's thread) under the module's cancellation rule."""
    wrapped = asyncio.wrap_future(future)
    try:
        # shield: a cancel of the task must not reach the thread's future on its own; whether the
        # call may still be withdrawn is decided here, by future.cancel().
        return await asyncio.shield(wrapped)
    except asyncio.CancelledError:
        if future.cancel():  # had not started: withdrawn, the old state stays
            raise
    # Started (or finished): let it finish whatever further cancels arrive, then pass the cancel
    # on, so nothing is in flight once the caller sees CancelledError.
    while not wrapped.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([wrapped])
    if not wrapped.cancelled():
        wrapped.exception()  # retrieved: the cancel, not the call's own error, is what surfaces
    raise asyncio.CancelledError


class AsyncOffsetStore:
    """An :class:`~lance_offsets.OffsetStore` with ``async`` methods; blocking work in a thread.

    Build it with :meth:`open` (the store is opened in the handle's own thread; right for every
    store) or wrap a store already open with ``AsyncOffsetStore(store)``. Use it as
    ``async with``; :meth:`close` waits for the calls still queued, then closes the store.
    Argument errors (TypeError, ValueError) are raised before anything reaches the thread.
    """

    def __init__(self, store: OffsetStore, *, _thread: concurrent.futures.Executor | None = None):
        self._store = store
        self._thread = _thread or self._new_thread()
        self._closed = False

    @staticmethod
    def _new_thread() -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lance-offsets-aio")

    @classmethod
    async def open(cls, opener: Callable[[], OffsetStore]) -> AsyncOffsetStore:
        """Open a store with ``opener()`` in the new handle's thread and return the handle.

        E.g. ``await AsyncOffsetStore.open(lambda: LockFileOffsetStore.open(d, "billing"))``.
        Opening can block too (directory creation, a database connection, a lock).
        """
        thread = cls._new_thread()
        opening = thread.submit(opener)
        try:
            store = await _settled(opening)
        except BaseException:
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                # Cancelled while it opened: it did open, and nobody will ever close it but us.
                thread.submit(opening.result().close)
            thread.shutdown(wait=False)  # ends after that close, without blocking the loop
            raise
        return cls(store, _thread=thread)

    @property
    def sync_store(self) -> OffsetStore:
        """The wrapped synchronous store (use it only from the handle's thread, or when idle)."""
        return self._store

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreClosedError(f"async store over {self._store!r}")
        return await _settled(self._thread.submit(method, *args))

    async def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the stored offset, or None; see :meth:`OffsetStore.load`."""
        check_key(topic_id, consumer_id)
        return await self._call(self._store.load, topic_id, consumer_id)

    async def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Store ``offset`` durably; on cancellation see the module documentation."""
        check_key(topic_id, consumer_id)
        check_offset(offset)
        await self._call(self._store.save, topic_id, consumer_id, offset)

    async def delete(self, topic_id: int, consumer_id: int) -> None:
        """Forget the key's offset; deleting an absent key is not an error."""
        check_key(topic_id, consumer_id)
        await self._call(self._store.delete, topic_id, consumer_id)

    async def list_all(self) -> dict[tuple[int, int], int]:
        """Return every stored key and offset as a fresh dict."""
        return await self._call(self._store.list_all)

    async def close(self) -> None:
        """Wait for queued calls, close the store in its thread, release the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await _settled(self._thread.submit(self._store.close))
        finally:
            # Joined, not left to linger: it has just finished its last call and is idle, so the
            # join costs a thread wake-up, no I/O; a closed handle then leaves no thread behind.
            self._thread.shutdown(wait=True)

    async def __aenter__(self) -> AsyncOffsetStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: save_many and store extras.
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._store, name)
        if not callable(target):
            return target

        @functools.wraps(target)
        async def forwarded(*args: Any, **kwargs: Any) -> Any:
            return await self._call(functools.partial(target, *args, **kwargs))

        return forwarded

    def __repr__(self) -> str:
        return f"AsyncOffsetStore({self._store!r})"
