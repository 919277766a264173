"""A drop-in offset store for lnc-client consumers, backed by our stores (docs/async.md).

lnc-client's own ``FileOffsetStore`` takes no lock and never fsyncs: several processes on one key
lose saves and see no offset while the file exists. :class:`LanceOffsetStore` implements the same
``lnc_client.offset.OffsetStore`` interface on our lock-file store (or any of ours), off the event
loop::

    from lance_offsets.lnc import LanceOffsetStore

    store = LanceOffsetStore.lockfile("/var/lib/lance/offsets")
    consumer = await StandaloneConsumer.connect(address, config, offset_store=store)

Needs the ``lnc`` extra (``pip install 'lance-offsets[lnc]'``). Keys map as described in
:mod:`lance_offsets._lnc_keys`; ``lance-offsets import-lnc`` moves an existing lnc-client offsets
directory over.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

try:
    from lnc_client.offset import OffsetStore as _LncOffsetStore
except ImportError as exc:  # pragma: no cover - the extra is installed wherever we test
    raise ImportError(
        f"lance_offsets.lnc needs lnc-client: pip install 'lance-offsets[lnc]' ({exc})"
    ) from exc

from ._async import AsyncOffsetStore
from ._lnc_keys import lnc_key
from ._lockfile import LockFileOffsetStore
from ._protocol import OffsetStore

__all__ = ["LanceOffsetStore", "lnc_key"]


class LanceOffsetStore(_LncOffsetStore):
    """lnc-client's ``OffsetStore`` on one of our stores; every call runs off the event loop.

    ``open_store(consumer_name)`` opens one of our stores for a mapped consumer name; one handle
    (an :class:`~lance_offsets.AsyncOffsetStore`, with its own thread) is kept per mapped name
    until :meth:`close`. Saves are durable when they return, exclusive across processes, and a
    load never returns None for an offset that exists. Cancellation leaves the old or the new
    offset (see :mod:`lance_offsets._async`).
    """

    def __init__(self, open_store: Callable[[str], OffsetStore]) -> None:
        self._open_store = open_store
        self._handles: dict[str, AsyncOffsetStore] = {}
        self._opening = asyncio.Lock()
        self._closed = False

    @classmethod
    def lockfile(
        cls, base_dir: str | os.PathLike[str], *, lock_timeout: float | None = None
    ) -> LanceOffsetStore:
        """Keep offsets as lock-file stores under ``base_dir`` (one folder per mapped name)."""
        base = os.fspath(base_dir)
        return cls(lambda name: LockFileOffsetStore.open(base, name, lock_timeout=lock_timeout))

    async def _handle(self, consumer_name: str) -> AsyncOffsetStore:
        if self._closed:
            raise RuntimeError("LanceOffsetStore is closed")
        handle = self._handles.get(consumer_name)
        if handle is None:
            async with self._opening:  # two tasks on a new name must not open two handles
                handle = self._handles.get(consumer_name)
                if handle is None:
                    opener = self._open_store
                    handle = await AsyncOffsetStore.open(lambda: opener(consumer_name))
                    self._handles[consumer_name] = handle
        return handle

    async def load(
        self, consumer_name: str, topic_id: int, *, topic_name: str | None = None
    ) -> int | None:
        ours, key = lnc_key(consumer_name, topic_id, topic_name)
        return await (await self._handle(ours)).load(*key)

    async def save(
        self, consumer_name: str, topic_id: int, offset: int, *, topic_name: str | None = None
    ) -> None:
        ours, key = lnc_key(consumer_name, topic_id, topic_name)
        await (await self._handle(ours)).save(*key, offset)

    async def delete(
        self, consumer_name: str, topic_id: int, *, topic_name: str | None = None
    ) -> None:
        ours, key = lnc_key(consumer_name, topic_id, topic_name)
        await (await self._handle(ours)).delete(*key)

    async def close(self) -> None:
        """Close every handle this store opened. Idempotent."""
        self._closed = True
        handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            await handle.close()

    async def __aenter__(self) -> LanceOffsetStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
