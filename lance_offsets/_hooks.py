"""Post-commit hooks: a store wrapper that tells listeners about every durable save.

Guarantees of :class:`HookedOffsetStore` (properties H1-H3 of docs/contract.md):

- H1: after each save that the inner store acknowledged, every hook runs exactly once, in
  registration order, with one :class:`CommitInfo`.
- H2: ``previous_offset`` is read from the inner store right before the save, not from a cache
  of this handle, so it is right on the first save after a reopen and after another handle or
  process changed the key. The Rust seed kept a per-handle dict filled only by ``load()``, so its
  first save after a reopen reported None.
- H3: a save that fails (domain error, or the inner store raises) calls no hook and propagates the
  error unchanged. When hooks fail after a durable save, the remaining hooks still run, and then
  :class:`~lance_offsets.HookError` is raised carrying the :class:`CommitInfo` and every hook
  error, so no caller mistakes a durable commit for a failed one.

What we do NOT promise: another process (or another handle) may save the same key between our
read of ``previous_offset`` and our save. ``previous_offset`` is then the value the key held when
this save began, not necessarily the value the save overwrote. Saves through one handle to one key
are serialized, so within a handle the chain of ``previous_offset`` values is exact.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from ._batch import check_batch, save_each
from ._domain import check_key, check_offset
from ._errors import HookError
from ._protocol import OffsetStore

__all__ = [
    "CollectingCommitHook",
    "CommitInfo",
    "HookedOffsetStore",
    "LoggingCommitHook",
    "PostCommitHook",
]

#: Logger :class:`LoggingCommitHook` uses when given none.
DEFAULT_LOGGER_NAME: Final = "lance_offsets.commits"


@dataclass(frozen=True)
class CommitInfo:
    """What one successful save committed.

    :ivar topic_id: the key's topic.
    :ivar consumer_id: the key's consumer.
    :ivar offset: the offset now durably stored.
    :ivar previous_offset: what the store held for the key right before the save, or None if the
        key was absent (see the module docstring for the race with other writers).
    :ivar timestamp: when the inner save returned, as an aware UTC datetime.
    """

    topic_id: int
    consumer_id: int
    offset: int
    previous_offset: int | None
    timestamp: datetime.datetime


@runtime_checkable
class PostCommitHook(Protocol):
    """Called after each successful save, with what was committed.

    A hook runs on the saving thread while that key's saves through the same handle wait, so it
    should be quick. An exception it raises does not undo the commit; it surfaces as
    :class:`~lance_offsets.HookError` after the other hooks ran.
    """

    def on_commit(self, info: CommitInfo) -> None:
        """Handle one committed offset."""
        ...


class LoggingCommitHook:
    """Log each commit through stdlib :mod:`logging`, with the fields as structured extras.

    Each record carries ``topic_id``, ``consumer_id``, ``offset``, ``previous_offset`` and
    ``commit_timestamp`` (ISO 8601) as attributes, so a JSON formatter can emit them as fields.

    :param logger: a logger or a logger name; default ``"lance_offsets.commits"``.
    :param level: the level of each record; default ``logging.DEBUG`` (commits can be frequent).
    """

    def __init__(
        self, logger: logging.Logger | str | None = None, level: int = logging.DEBUG
    ) -> None:
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or DEFAULT_LOGGER_NAME)
        self.logger = logger
        self.level = level

    def on_commit(self, info: CommitInfo) -> None:
        """Emit one record for ``info``."""
        self.logger.log(
            self.level,
            "committed offset %d for topic_id=%d consumer_id=%d (previous %s)",
            info.offset,
            info.topic_id,
            info.consumer_id,
            "none" if info.previous_offset is None else info.previous_offset,
            extra={
                "topic_id": info.topic_id,
                "consumer_id": info.consumer_id,
                "offset": info.offset,
                "previous_offset": info.previous_offset,
                # Not "timestamp": the record's own time is "created"; this is the commit's.
                "commit_timestamp": info.timestamp.isoformat(),
            },
        )

    def __repr__(self) -> str:
        return f"LoggingCommitHook({self.logger.name!r}, {logging.getLevelName(self.level)})"


class CollectingCommitHook:
    """Remember every commit in memory; thread-safe. Meant for tests and diagnostics."""

    def __init__(self) -> None:
        self._commits: list[CommitInfo] = []
        self._lock = threading.Lock()

    def on_commit(self, info: CommitInfo) -> None:
        """Append ``info``."""
        with self._lock:
            self._commits.append(info)

    def commits(self) -> list[CommitInfo]:
        """Return a copy of the commits seen so far, oldest first."""
        with self._lock:
            return list(self._commits)

    def clear(self) -> None:
        """Forget every commit seen so far."""
        with self._lock:
            self._commits.clear()

    def __repr__(self) -> str:
        with self._lock:
            return f"<CollectingCommitHook {len(self._commits)} commits>"


def _check_hook(hook: object) -> PostCommitHook:
    # Reject a wrong object at registration: found only after a durable commit, it would turn
    # every save into a HookError.
    if not isinstance(hook, PostCommitHook):
        raise TypeError(f"a hook needs an on_commit(info) method; got {hook!r}")
    return hook


class HookedOffsetStore:
    """Wrap an offset store and call post-commit hooks after each successful save.

    Durability, atomicity and sharing are the inner store's; this wrapper adds the hook calls and
    nothing else (``load``, ``delete`` and ``list_all`` pass through). See the module docstring for
    the guarantees and what is not promised.

    Thread-safety: safe to share between threads if the inner store is. Saves and deletes of one
    key through this handle are serialized (read previous, save, hooks), so hooks see a key's
    commits in commit order; different keys proceed in parallel. ``add_hook`` may be called while
    other threads save: a save uses the hooks registered when it began.

    :param inner: the store that keeps the offsets; closing this wrapper closes it.
    :param hooks: hooks to register now, in order.
    """

    def __init__(self, inner: OffsetStore, hooks: list[PostCommitHook] | None = None) -> None:
        self._inner = inner
        # A tuple swapped under the lock: a save iterates over a snapshot, never a list that
        # add_hook is appending to.
        self._hooks: tuple[PostCommitHook, ...] = tuple(_check_hook(h) for h in hooks or ())
        self._lock = threading.Lock()
        # One reentrant lock per key: a hook may itself save through this store on its thread.
        self._key_locks: dict[tuple[int, int], threading.RLock] = {}

    @property
    def inner(self) -> OffsetStore:
        """The wrapped store."""
        return self._inner

    @property
    def hooks(self) -> tuple[PostCommitHook, ...]:
        """The registered hooks, in the order they run."""
        return self._hooks

    def add_hook(self, hook: PostCommitHook) -> HookedOffsetStore:
        """Register ``hook`` after the existing ones and return this store, for chaining.

        :raises TypeError: ``hook`` has no ``on_commit`` method.
        """
        checked = _check_hook(hook)
        with self._lock:
            self._hooks = (*self._hooks, checked)
        return self

    def _key_lock(self, key: tuple[int, int]) -> threading.RLock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.RLock()
            return lock

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the inner store's offset for the key, or None."""
        return self._inner.load(topic_id, consumer_id)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Save through the inner store, then run every hook once, in order.

        Survives what the inner store's save survives. A save that raises calls no hook.

        :raises TypeError, ValueError: the key or offset is outside the domain; nothing happened.
        :raises OffsetStoreError: anything the inner store raises, unchanged; no hook ran. This
            includes :class:`~lance_offsets.CorruptOffsetError` from reading the previous offset:
            the save is refused rather than reporting a previous offset nobody can know (overwrite
            the damaged value through the inner store, or with ``lance-offsets set``).
        :raises HookError: the offset WAS committed, but one or more hooks raised; every hook ran
            and the error carries the :class:`CommitInfo` and each hook's exception.
        """
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._key_lock(key):
            # Read from the store, not from a cache of ours: right after a reopen, and after
            # another handle's save (tests/test_hooks.py::test_previous_offset_after_reopen).
            previous = self._inner.load(*key)
            self._inner.save(*key, value)
            info = CommitInfo(
                topic_id=key[0],
                consumer_id=key[1],
                offset=value,
                previous_offset=previous,
                timestamp=datetime.datetime.now(datetime.timezone.utc),
            )
            self._run_hooks(info)

    def save_many(self, offsets: Mapping[tuple[int, int], int]) -> None:
        """Save a batch through the inner store, then run the hooks once per key, in key order.

        The inner store's ``save_many`` is used (one save per key when it has none), so the batch
        has the inner store's semantics (B1). ``previous_offset`` of each key is read
        before the batch. When hooks fail, every hook still runs for every key, and then
        :class:`~lance_offsets.HookError` for the first key whose hooks failed is raised (the
        whole batch WAS committed).
        """
        batch = check_batch(offsets)
        with contextlib.ExitStack() as held:
            for key, _ in batch:
                held.enter_context(self._key_lock(key))
            previous = {key: self._inner.load(*key) for key, _ in batch}
            inner_many = getattr(self._inner, "save_many", None)
            if inner_many is None:
                save_each(self._inner, batch)
            else:
                inner_many(dict(batch))
            now = datetime.datetime.now(datetime.timezone.utc)
            first: HookError | None = None
            for key, value in batch:
                try:
                    self._run_hooks(CommitInfo(key[0], key[1], value, previous[key], now))
                except HookError as exc:
                    first = first or exc
            if first is not None:
                raise first

    def _run_hooks(self, info: CommitInfo) -> None:
        errors: list[BaseException] = []
        for hook in self._hooks:
            try:
                hook.on_commit(info)
            # Only Exception: KeyboardInterrupt and SystemExit must stop the program, not be
            # collected (the commit stays durable either way).
            except Exception as exc:  # each hook's failure is caught on its own
                errors.append(exc)
        if errors:
            raise HookError(info, errors) from errors[0]

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Delete through the inner store; no hook runs (hooks observe saves only)."""
        key = check_key(topic_id, consumer_id)
        # Under the key lock so a delete cannot fall between a save's read of the previous
        # offset and its write, which would make previous_offset wrong within this handle.
        with self._key_lock(key):
            self._inner.delete(*key)

    def list_all(self) -> dict[tuple[int, int], int]:
        """Return the inner store's keys and offsets as a fresh dict."""
        return self._inner.list_all()

    def close(self) -> None:
        """Close the inner store. Hooks are kept but no further save can succeed."""
        self._inner.close()

    def __enter__(self) -> HookedOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HookedOffsetStore {self._inner!r} with {len(self._hooks)} hooks>"
