"""Driving an asyncio store from synchronous code: a private event loop in a thread per handle.

The conformance machines, the stress workers and the command line call stores synchronously.
:func:`sync_factory` turns a factory that is ``async def``, or that returns an asyncio store, into
a plain factory whose handles are :class:`SyncOverAsyncStore`: each owns an event loop running in
its own thread, and every call is submitted to that loop and waited for. The asyncio store is
created and used on that one loop, so stores whose connections are bound to the loop that opened
them (asyncio database drivers) work too. A factory that returns a synchronous store is passed
through untouched: its handles are exactly what it returns.

asyncio is imported only when an asyncio store turns up: every worker process the suites spawn
loads its factory through here, and most never need an event loop (the import costs tens of
milliseconds per process, times every crash cycle).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import StoreClosedError
from ._protocol import OffsetStore

if TYPE_CHECKING:
    import asyncio

__all__ = ["SyncOverAsyncStore", "is_async_store", "sync_factory"]

T = TypeVar("T")


def is_async_store(store: object) -> bool:
    """Return whether ``store`` has the asyncio face: its ``save`` is a coroutine function."""
    save = getattr(store, "save", None)
    return save is not None and inspect.iscoroutinefunction(save)


class _LoopThread:
    """An event loop running forever in a daemon thread (daemon: a killed worker never waits)."""

    def __init__(self) -> None:
        import asyncio  # here, not at the top: see the module documentation

        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="lance-offsets-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncOverAsyncStore:
    """A synchronous :class:`~lance_offsets.OffsetStore` over an asyncio store on a private loop.

    Errors raised by the asyncio store reach the caller unchanged. Methods beyond the protocol
    (``save_many``) are forwarded: coroutine methods are run on the loop, others called directly.
    """

    def __init__(self, store: Any, loop: _LoopThread) -> None:
        self._store = store
        self._loop = loop
        self._closed = False

    @property
    def async_store(self) -> Any:
        """The asyncio store this handle drives."""
        return self._store

    def _run(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StoreClosedError(repr(self))

        async def call() -> T:
            return await method(*args, **kwargs)

        return self._loop.run(call())

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        result: int | None = self._run(self._store.load, topic_id, consumer_id)
        return result

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self._run(self._store.save, topic_id, consumer_id, offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._run(self._store.delete, topic_id, consumer_id)

    def list_all(self) -> dict[tuple[int, int], int]:
        result: dict[tuple[int, int], int] = self._run(self._store.list_all)
        return result

    def close(self) -> None:
        """Close the asyncio store, then stop the loop and its thread. Idempotent."""
        if self._closed:
            return
        try:
            self._run(self._store.close)
        finally:
            self._closed = True
            self._loop.stop()

    def __enter__(self) -> SyncOverAsyncStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._store, name)
        if not inspect.iscoroutinefunction(target):
            return target

        @functools.wraps(target)
        def forwarded(*args: Any, **kwargs: Any) -> Any:
            return self._run(target, *args, **kwargs)

        return forwarded

    def __repr__(self) -> str:
        return f"SyncOverAsyncStore({self._store!r})"


def _open(make: Callable[..., Any], *args: Any) -> Any:
    """Call ``make(*args)``; give what it made a private loop only if it is asyncio.

    The factory is called in the caller's thread, as the suite calls any factory: a synchronous
    store comes back untouched, with no loop and no thread (a store bound to its opening thread,
    such as a default sqlite3 connection, keeps working). A coroutine (an ``async def`` factory)
    runs on the new handle's loop, so what it opens is bound to the loop that will use it.
    """
    made = make(*args)
    if not inspect.isawaitable(made) and not is_async_store(made):
        return made
    loop = _LoopThread()
    try:
        if inspect.isawaitable(made):
            awaited: Awaitable[Any] = made

            async def build() -> Any:
                return await awaited

            made = loop.run(build())
    except BaseException:
        loop.stop()
        raise
    if is_async_store(made):
        return SyncOverAsyncStore(made, loop)
    loop.stop()  # an async def factory that returned a synchronous store
    return made


class _SyncFactory:
    """``factory`` seen through :func:`_open`; its capability attributes read through."""

    def __init__(self, factory: Callable[..., Any]) -> None:
        self.__wrapped__ = factory
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(factory, name, None)
            if value is not None:
                setattr(self, name, value)

    def __call__(self, path: str) -> OffsetStore:
        store: OffsetStore = _open(self.__wrapped__, path)
        return store

    def __getattr__(self, name: str) -> Any:
        # Reached only for names not set above: the capability attributes (docs/conformance.md).
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.__wrapped__, name)
        if name == "open_named" and callable(value):
            return functools.partial(_open, value)  # named handles may be asyncio ones too
        return value

    def __repr__(self) -> str:
        return f"sync_factory({self.__wrapped__!r})"


#: One adapter per factory, so ``sync_factory(f) is sync_factory(f)``: the suite finds a
#: factory's import spec by loading it again and comparing identities.
_ADAPTED: dict[int, tuple[object, _SyncFactory]] = {}
_ADAPTED_LOCK = threading.Lock()


def sync_factory(factory: Callable[..., Any]) -> Callable[[str], OffsetStore]:
    """Return ``factory`` as a synchronous factory (docs/async.md); idempotent and cached.

    ``factory(path)`` may return a store, an asyncio store, or an awaitable of either (an
    ``async def`` factory). ``open_named`` is adapted the same way; other capability attributes
    (``persistent``, ``damage``, ...) read through unchanged.
    """
    if isinstance(factory, _SyncFactory):
        return factory
    with _ADAPTED_LOCK:
        # Keyed by id with the factory kept alive beside it: factories need not be hashable.
        kept = _ADAPTED.get(id(factory))
        if kept is None or kept[0] is not factory:
            kept = (factory, _SyncFactory(factory))
            _ADAPTED[id(factory)] = kept
        return kept[1]
