"""Offset stores for LANCE consumers: memory, lock-file (Rust-compatible), SQLite, PostgreSQL.

Only re-exports live here; see the topical modules for the work. ``PostgresOffsetStore`` is
imported on first use, so ``import lance_offsets`` never needs psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from ._sqlite import SQLiteOffsetStore as SQLiteOffsetStore
from ._sqlite import SQLiteTransaction as SQLiteTransaction
from ._version import __version__ as __version__

__all__ = [
    "MAX_CONSUMER_ID",
    "MAX_OFFSET",
    "MAX_TOPIC_ID",
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
    "__version__",
]


if TYPE_CHECKING:
    from ._postgres import PostgresOffsetStore as PostgresOffsetStore


def __getattr__(name: str) -> object:
    # Lazy: the PostgreSQL store needs psycopg (the ``postgres`` extra), the others do not.
    if name == "PostgresOffsetStore":
        try:
            from ._postgres import PostgresOffsetStore
        except ImportError as exc:
            raise ImportError(
                "PostgresOffsetStore needs psycopg 3: pip install 'lance-offsets[postgres]' "
                f"({exc})"
            ) from exc
        return PostgresOffsetStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
