"""An opt-in coalescing committer for hot consumers: ``save()`` at any rate, few durable writes.

:class:`CoalescingCommitter` wraps any offset store. ``save`` only records the offset and returns;
one background thread writes what was recorded, one batch at a time (``save_many`` when the store
has it), so at most one durable write per key is in flight and a key saved many times while a write
was running costs one more write, of its latest value.

Its contract (what ``lance-offsets check`` holds it to, with ``acknowledge = "flush"`` on the
factory, docs/contract.md "Acknowledged"):

- A save is acknowledged when a later :meth:`CoalescingCommitter.flush` (or ``close``) returns.
  A crash or power cut may lose every save not yet flushed; never one that was.
- Read-your-writes on the handle: ``load`` and ``list_all`` give the latest saved value at once,
  flushed or not. Other handles and processes see a value only once it was written.
- ``delete`` is synchronous: it drops the key's unwritten value, waits for a write of that key in
  flight, then deletes through the store.
- Errors are never lost: a failed write drops its values (the store keeps what it held, as after
  a failed ``save``) and its error is raised by the next ``flush`` or ``close``, once; save again
  to retry. Later saves are written meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ._batch import check_batch, save_each
from ._domain import check_key, check_offset
from ._errors import OffsetStoreError, StoreClosedError
from ._protocol import OffsetStore

__all__ = ["CoalescingCommitter"]

Key = tuple[int, int]


class CoalescingCommitter:
    """Coalesce saves to ``store`` in a background thread; :meth:`flush` makes them durable.

    Thread-safe. Closing the committer flushes, then closes the wrapped store.

    :param store: the store that keeps the offsets (any :class:`OffsetStore`).
    """

    def __init__(self, store: OffsetStore) -> None:
        self._store = store
        self._many = getattr(store, "save_many", None)
        self._cond = threading.Condition()
        self._pending: dict[Key, int] = {}  # accepted, not yet handed to the writer
        self._inflight: dict[Key, int] = {}  # the batch the writer is writing now
        self._error: Exception | None = None
        self._later_errors = 0  # failures after the first, before flush reported it
        self._closed = False
        self._stopping = False
        self._accepted = 0
        self._writes = 0
        self._seq = 0  # bumped by every save; the writer records the last one it has written
        self._done = 0
        self._thread = threading.Thread(
            target=self._run, name="lance-offsets-committer", daemon=True
        )
        self._thread.start()

    @property
    def store(self) -> OffsetStore:
        """The wrapped store."""
        return self._store

    @property
    def stats(self) -> dict[str, int]:
        """Saves accepted and durable writes made (per key) so far: the coalescing at work."""
        with self._cond:
            return {"accepted": self._accepted, "written": self._writes}

    # -- the protocol -------------------------------------------------------------------------

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Record ``offset`` for the key and return at once; :meth:`flush` makes it durable."""
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._cond:
            self._check_open()
            self._pending[key] = value
            self._accepted += 1
            self._seq += 1
            self._cond.notify_all()

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        """Record every offset of the mapping (validated as a whole first)."""
        batch = check_batch(offsets)
        with self._cond:
            self._check_open()
            self._pending.update(batch)
            self._accepted += len(batch)
            self._seq += 1
            self._cond.notify_all()

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """The latest value saved through this handle, else the store's."""
        key = check_key(topic_id, consumer_id)
        with self._cond:
            self._check_open()
            # Under the lock: a delete cannot fall between the overlay and the store read.
            found = self._pending.get(key, self._inflight.get(key))
            return found if found is not None else self._store.load(*key)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Drop the key's unwritten value, wait out a write of it in flight, delete it."""
        key = check_key(topic_id, consumer_id)
        with self._cond:
            self._check_open()
            self._pending.pop(key, None)
            while key in self._inflight:
                self._cond.wait()
            self._store.delete(*key)

    def list_all(self) -> dict[Key, int]:
        """The store's offsets with this handle's unwritten values over them, as a fresh dict."""
        with self._cond:
            self._check_open()
            found = self._store.list_all()
            found.update(self._inflight)
            found.update(self._pending)
            return found

    def flush(self) -> None:
        """Return once every value saved before the call is durable in the store.

        :raises Exception: the error of a write that failed since the last flush (its values
            were dropped: save them again), raised once; several failures raise one
            :class:`OffsetStoreError` caused by the first.
        """
        with self._cond:
            self._check_open()
            self._wait_written()

    def close(self) -> None:
        """Flush, stop the writer and close the store; closing twice is fine.

        :raises Exception: a write failed and its values could not be written; the store is
            closed anyway, and those values are lost (they were never acknowledged).
        """
        error: Exception | None = None
        with self._cond:
            if self._closed:
                return
            try:
                self._wait_written()
            except Exception as exc:  # raised below, once the store is closed
                error = exc
            self._closed = self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        self._store.close()
        if error is not None:
            raise error

    def __enter__(self) -> CoalescingCommitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._pending)} pending"
        return f"<CoalescingCommitter over {self._store!r} {state}>"

    # -- the writer ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(repr(self))

    def _wait_written(self) -> None:
        """Wait (holding the condition) until every save so far was written; raise an error."""
        target = self._seq
        while True:
            if self._error is not None and not self._inflight:
                error, self._error = self._error, None
                later, self._later_errors = self._later_errors, 0
                if later:
                    raise OffsetStoreError(
                        f"{later + 1} background writes failed since the last flush; the first: "
                        f"{error!r} (their offsets were not written: save them again)"
                    ) from error
                raise error
            # Done when the writer finished a batch taken after the last save before this call
            # (saves made meanwhile by other threads do not keep a flush waiting forever).
            if self._done >= target or not (self._pending or self._inflight):
                return
            self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._pending:
                    self._cond.wait()
                if self._stopping:
                    return
                batch, self._pending = self._pending, {}
                self._inflight = batch
                taken = self._seq
            error = self._write(batch)
            with self._cond:
                self._inflight = {}
                self._done = taken
                if error is None:
                    self._writes += len(batch)
                elif self._error is None:
                    # Dropped, not retried: a retry in the background could commit a value after
                    # flush() told the caller it failed (F2: a failed save leaves the old value).
                    self._error = error
                else:
                    self._later_errors += 1
                self._cond.notify_all()

    def _write(self, batch: dict[Key, int]) -> Exception | None:
        try:
            if self._many is not None and len(batch) > 1:
                self._many(batch)
            else:
                save_each(self._store, sorted(batch.items()))
        except Exception as exc:  # handed to flush(), never dropped
            return exc
        return None
