"""Offset stores for LANCE consumers: memory, lock-file (Rust-compatible), SQLite, PostgreSQL.

Only re-exports live here; see the topical modules for the work. The database stores are
imported on first use: ``import lance_offsets`` never needs psycopg, and every process the suites
spawn does not pay for sqlite3 unless it uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._committer import CoalescingCommitter as CoalescingCommitter
from ._domain import MAX_CONSUMER_ID as MAX_CONSUMER_ID
from ._domain import MAX_OFFSET as MAX_OFFSET
from ._domain import MAX_TOPIC_ID as MAX_TOPIC_ID
from ._errors import CorruptOffsetError as CorruptOffsetError
from ._errors import HookError as HookError
from ._errors import InvalidConsumerNameError as InvalidConsumerNameError
from ._errors import LockTimeoutError as LockTimeoutError
from ._errors import OffsetStoreError as OffsetStoreError
from ._errors import StoreClosedError as StoreClosedError
from ._hooks import CollectingCommitHook as CollectingCommitHook
from ._hooks import CommitInfo as CommitInfo
from ._hooks import HookedOffsetStore as HookedOffsetStore
from ._hooks import LoggingCommitHook as LoggingCommitHook
from ._hooks import PostCommitHook as PostCommitHook
from ._lockfile import LockFileOffsetStore as LockFileOffsetStore
from ._memory import MemoryOffsetStore as MemoryOffsetStore
from ._protocol import OffsetStore as OffsetStore
from ._version import __version__ as __version__

__all__ = [
    "MAX_CONSUMER_ID",
    "MAX_OFFSET",
    "MAX_TOPIC_ID",
    "AsyncOffsetStore",
    "CoalescingCommitter",
    "CollectingCommitHook",
    "CommitInfo",
    "CorruptOffsetError",
    "HookError",
    "HookedOffsetStore",
    "InvalidConsumerNameError",
    "LockFileOffsetStore",
    "LockTimeoutError",
    "LoggingCommitHook",
    "MemoryOffsetStore",
    "OffsetStore",
    "OffsetStoreError",
    "PostCommitHook",
    "PostgresOffsetStore",
    "SQLiteOffsetStore",
    "SQLiteTransaction",
    "StoreClosedError",
    "SyncOverAsyncStore",
    "__version__",
    "sync_factory",
]


if TYPE_CHECKING:
    from ._aio_sync import SyncOverAsyncStore as SyncOverAsyncStore
    from ._aio_sync import sync_factory as sync_factory
    from ._async import AsyncOffsetStore as AsyncOffsetStore
    from ._postgres import PostgresOffsetStore as PostgresOffsetStore
    from ._sqlite import SQLiteOffsetStore as SQLiteOffsetStore
    from ._sqlite import SQLiteTransaction as SQLiteTransaction

#: Names imported on first use, and the module holding each.
_LAZY = {
    # asyncio only for those who use it: the suites' worker processes import this package.
    "AsyncOffsetStore": "._async",
    "SyncOverAsyncStore": "._aio_sync",
    "sync_factory": "._aio_sync",
    "PostgresOffsetStore": "._postgres",
    "SQLiteOffsetStore": "._sqlite",
    "SQLiteTransaction": "._sqlite",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        found = getattr(importlib.import_module(module, __name__), name)
    except ImportError as exc:
        # Only the PostgreSQL store has a dependency of its own (the ``postgres`` extra).
        raise ImportError(
            f"{name} needs psycopg 3: pip install 'lance-offsets[postgres]' ({exc})"
        ) from exc
    globals()[name] = found  # later lookups skip this function
    return found
