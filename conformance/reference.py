"""Factories for the project's own stores, in the plug-in form the suites take.

``lance-offsets check`` with no SPEC checks :func:`lockfile`. Each is importable by string, e.g.
``lance_offsets.conformance.reference:memory``. :func:`postgres` needs psycopg (the ``postgres``
extra) and a server: the one ``LANCE_OFFSETS_PG_DSN`` names, else a temporary cluster it starts
from the machine's PostgreSQL binaries (its ``server`` declaration, which ``--stress`` kills).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from lance_offsets import HookedOffsetStore, LockFileOffsetStore, MemoryOffsetStore
from lance_offsets._committer import CoalescingCommitter

if TYPE_CHECKING:
    from lance_offsets import AsyncOffsetStore, PostgresOffsetStore, SQLiteOffsetStore

__all__ = [
    "async_lockfile",
    "async_sqlite",
    "coalescing",
    "hooked_lockfile",
    "lockfile",
    "memory",
    "postgres",
    "sqlite",
]

#: Consumer name the reference factories use under the test directory.
CONSUMER_NAME = "conformance"


def lockfile(path: str) -> LockFileOffsetStore:
    """The reference lock-file store, consumer ``conformance`` under ``path``."""
    return LockFileOffsetStore.open(path, CONSUMER_NAME)


def _open_named(path: str, name: str) -> LockFileOffsetStore:
    return LockFileOffsetStore.open(path, name)


lockfile.open_named = _open_named  # type: ignore[attr-defined]


def _rewrite(content: bytes) -> object:
    """Format-aware damage (F1 backdoor): replace the key's ``.offset`` file with ``content``."""

    def damage(path: str, key: tuple[int, int]) -> None:
        name = f"topic-{key[0]}-consumer-{key[1]}.offset"
        with open(os.path.join(path, CONSUMER_NAME, name), "wb") as file:
            file.write(content)

    return damage


#: What only a decimal-file format can get wrong; each must raise on load (F1).
LOCKFILE_DAMAGE = {
    "non-decimal": _rewrite(b"12x\n"),
    "out of u64 range": _rewrite(b"%d\n" % 2**64),
    "negative": _rewrite(b"-1\n"),
    "only whitespace": _rewrite(b" \n"),
    "missing newline": _rewrite(b"7"),
    "NUL-filled block": _rewrite(b"\x00" * 8),
}

lockfile.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]
lockfile.batch = True  # type: ignore[attr-defined]  # save_many: per-key durable, not atomic


def memory(path: str) -> MemoryOffsetStore:
    """The in-memory store: nothing persists, so P*, D*, M*, F* do not apply."""
    del path  # nothing is kept on disk
    return MemoryOffsetStore()


memory.persistent = False  # type: ignore[attr-defined]
memory.shared = False  # type: ignore[attr-defined]
memory.durable = False  # type: ignore[attr-defined]


def coalescing(path: str) -> CoalescingCommitter:
    """The lock-file store behind a :class:`CoalescingCommitter`: acknowledged by ``flush()``."""
    return CoalescingCommitter(LockFileOffsetStore.open(path, CONSUMER_NAME))


coalescing.acknowledge = "flush"  # type: ignore[attr-defined]
coalescing.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]
coalescing.batch = True  # type: ignore[attr-defined]


def hooked_lockfile(path: str) -> HookedOffsetStore:
    """The lock-file store wrapped in :class:`HookedOffsetStore` with no hooks of its own."""
    return HookedOffsetStore(LockFileOffsetStore.open(path, CONSUMER_NAME))


hooked_lockfile.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]
hooked_lockfile.open_named = lambda path, name: HookedOffsetStore(  # type: ignore[attr-defined]
    LockFileOffsetStore.open(path, name)
)


def sqlite(path: str) -> SQLiteOffsetStore:
    """The SQLite store, consumer ``conformance``, database file ``path/lance-offsets.sqlite3``."""
    from lance_offsets import SQLiteOffsetStore  # lazy: the other factories' workers skip sqlite3

    os.makedirs(path, exist_ok=True)
    return SQLiteOffsetStore.open(path, CONSUMER_NAME)


def _sqlite_named(path: str, name: str) -> SQLiteOffsetStore:
    from lance_offsets import SQLiteOffsetStore

    os.makedirs(path, exist_ok=True)
    return SQLiteOffsetStore.open(path, name)


sqlite.open_named = _sqlite_named  # type: ignore[attr-defined]
sqlite.batch = True  # type: ignore[attr-defined]
sqlite.batch_atomic = True  # type: ignore[attr-defined]  # save_many is one transaction


def _sqlite_changed_in_place(path: str, key: tuple[int, int]) -> None:
    """F1 damage SQLite itself cannot see: the stored offset changed, its page still well formed."""
    import sqlite3

    from lance_offsets._sqlite_file import DEFAULT_FILE_NAME

    con = sqlite3.connect(os.path.join(path, DEFAULT_FILE_NAME), timeout=30)
    try:
        with con:
            con.execute(
                # Flip the lowest bit: in range at both ends of the shifted signed column.
                "UPDATE lance_offsets SET committed_offset = CASE WHEN committed_offset % 2 = 0 "
                "THEN committed_offset + 1 ELSE committed_offset - 1 END "
                "WHERE consumer_name = ? AND topic_id = ? AND consumer_id = ?",
                (CONSUMER_NAME, key[0], key[1] - 2**63),
            )
    finally:
        con.close()


sqlite.damage = {"offset changed in place": _sqlite_changed_in_place}  # type: ignore[attr-defined]


#: Environment variables naming the PostgreSQL server the ``postgres`` factory uses: a DSN, or a
#: file holding one (read at every open, so a harness can point the store at a proxy mid-run).
PG_DSN_VARIABLE = "LANCE_OFFSETS_PG_DSN"
PG_DSN_FILE_VARIABLE = "LANCE_OFFSETS_PG_DSN_FILE"


class _PostgresDeclaration:
    """The ``server`` of :func:`postgres`: a temporary cluster, made on first use.

    Lazy, because every worker of a crash campaign imports this module whatever store it
    checks, and forks pay for each module loaded: the cluster code (and the stress package
    under it) is imported only when a PostgreSQL check needs it. Everything else a
    :class:`~lance_offsets.stress.servers._postgres.FallbackCluster` has is reached through it.
    """

    def __init__(self) -> None:
        self._cluster: Any = None

    def _real(self) -> Any:
        if self._cluster is None:
            from lance_offsets.stress.servers._postgres import FallbackCluster

            self._cluster = FallbackCluster(PG_DSN_VARIABLE, PG_DSN_FILE_VARIABLE)
        return self._cluster

    def start(self) -> tuple[str, int]:
        address: tuple[str, int] = self._real().start()
        return address

    def stop(self, *, kill: bool = False) -> None:
        self._real().stop(kill=kill)

    def route(self, address: tuple[str, int] | None) -> None:
        self._real().route(address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


#: The ``server`` declaration of :func:`postgres`.
PG_SERVER = _PostgresDeclaration()


def postgres_dsn() -> str:
    """The DSN from ``LANCE_OFFSETS_PG_DSN_FILE`` (if set) or ``LANCE_OFFSETS_PG_DSN``.

    With neither set, the factory's own temporary cluster is started (once per process that
    needs it; processes started after it inherit the variable and share it).
    """
    file = os.environ.get(PG_DSN_FILE_VARIABLE)
    if file:
        with open(file, encoding="utf-8") as handle:
            return handle.read().strip()
    dsn = os.environ.get(PG_DSN_VARIABLE)
    if dsn:
        return dsn
    if not PG_SERVER.available and not PG_SERVER.in_worker_process():
        raise RuntimeError(
            f"set {PG_DSN_VARIABLE} (or {PG_DSN_FILE_VARIABLE}) to the PostgreSQL server to "
            "check, or install PostgreSQL's server binaries (initdb, pg_ctl) for a temporary one"
        )
    PG_SERVER.start()
    dsn = PG_SERVER.dsn
    assert isinstance(dsn, str)
    return dsn


def _pg_schema(path: str) -> str:
    # One schema per location: each factory(path) is isolated, and every handle on one path,
    # in any process, meets the same table.
    digest = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogatepass")).hexdigest()
    return f"lance_offsets_{digest[:20]}"


def postgres(path: str) -> PostgresOffsetStore:
    """The PostgreSQL store, consumer ``conformance``, in a schema derived from ``path``."""
    from lance_offsets import PostgresOffsetStore

    return PostgresOffsetStore(postgres_dsn(), CONSUMER_NAME, schema=_pg_schema(path))


def _postgres_named(path: str, name: str) -> PostgresOffsetStore:
    from lance_offsets import PostgresOffsetStore

    return PostgresOffsetStore(postgres_dsn(), name, schema=_pg_schema(path))


postgres.open_named = _postgres_named  # type: ignore[attr-defined]
postgres.batch = True  # type: ignore[attr-defined]
postgres.batch_atomic = True  # type: ignore[attr-defined]  # save_many is one transaction
postgres.server = PG_SERVER  # type: ignore[attr-defined]


async def async_lockfile(path: str) -> AsyncOffsetStore:
    """The lock-file store through its asyncio face, opened in its own thread (docs/async.md).

    An ``async def`` factory: the suite drives it on a private event loop per handle, so
    ``lance-offsets check lance_offsets.conformance.reference:async_lockfile`` checks the asyncio
    face through the same machines as :func:`lockfile`.
    """
    from lance_offsets import AsyncOffsetStore  # lazy: the other factories' workers skip asyncio

    return await AsyncOffsetStore.open(lambda: LockFileOffsetStore.open(path, CONSUMER_NAME))


async def _async_named(path: str, name: str) -> AsyncOffsetStore:
    from lance_offsets import AsyncOffsetStore

    return await AsyncOffsetStore.open(lambda: LockFileOffsetStore.open(path, name))


async_lockfile.open_named = _async_named  # type: ignore[attr-defined]
async_lockfile.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]


async def async_sqlite(path: str) -> AsyncOffsetStore:
    """The SQLite store through its asyncio face (opened, like every call, in its own thread)."""
    from lance_offsets import AsyncOffsetStore

    return await AsyncOffsetStore.open(lambda: sqlite(path))


async def _async_sqlite_named(path: str, name: str) -> AsyncOffsetStore:
    from lance_offsets import AsyncOffsetStore

    return await AsyncOffsetStore.open(lambda: _sqlite_named(path, name))


async_sqlite.open_named = _async_sqlite_named  # type: ignore[attr-defined]
async_sqlite.damage = sqlite.damage  # type: ignore[attr-defined]
