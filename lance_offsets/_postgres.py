"""The PostgreSQL store on psycopg 3 (the ``postgres`` extra): offsets shared by many machines.

Schema (created on first use unless ``create=False``; ``docs/databases.md`` is the long version)::

    CREATE TABLE {schema}.lance_offsets (
        consumer_name    text           NOT NULL,
        topic_id         bigint         NOT NULL CHECK (topic_id BETWEEN 0 AND 4294967295),
        consumer_id      numeric(20, 0) NOT NULL CHECK (consumer_id BETWEEN 0 AND 2^64 - 1),
        committed_offset numeric(20, 0) NOT NULL CHECK (committed_offset BETWEEN 0 AND 2^64 - 1),
        updated_at       timestamptz    NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_name, topic_id, consumer_id))

``numeric(20, 0)`` holds the whole u64 range and reads as the real number in ``psql``; the CHECKs
make the server refuse anything outside the domain, whoever writes.

Every statement is one row operation, so the server's row locks give the exclusion and its WAL
(with the server's ``fsync`` and ``synchronous_commit`` on) the durability of an acknowledged save.
Nothing is cached: every ``load`` asks the server.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Final, Protocol, TypeAlias

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from . import _layout
from ._dbcommon import CorruptDatabaseError
from ._domain import MAX_OFFSET, MAX_TOPIC_ID, check_key, check_offset
from ._errors import OffsetStoreError, StoreClosedError

__all__ = ["DEFAULT_TABLE", "PostgresOffsetStore", "PostgresTransaction", "consumer_names"]

Key = tuple[int, int]
Connection: TypeAlias = "psycopg.Connection[Any]"

#: The table name used unless ``table=`` says otherwise.
DEFAULT_TABLE: Final = "lance_offsets"
# One advisory lock key for schema creation: CREATE ... IF NOT EXISTS races between sessions.
_DDL_LOCK: Final = 0x4C4F4653

_DDL: Final = """
CREATE TABLE IF NOT EXISTS {table} (
    consumer_name text NOT NULL,
    topic_id bigint NOT NULL CHECK (topic_id BETWEEN 0 AND {max_topic}),
    consumer_id numeric(20, 0) NOT NULL CHECK (consumer_id BETWEEN 0 AND {max_u64}),
    committed_offset numeric(20, 0) NOT NULL CHECK (committed_offset BETWEEN 0 AND {max_u64}),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_name, topic_id, consumer_id)
)
"""


class ConnectionPool(Protocol):
    """What the store needs of a pool: ``psycopg_pool.ConnectionPool`` has it."""

    def connection(self) -> contextlib.AbstractContextManager[Connection]: ...


class PostgresOffsetStore:
    """Offsets of one consumer name in a PostgreSQL table; safe for threads and many machines.

    :param source: a DSN (the store opens, owns and closes an autocommit connection), a psycopg
        connection (used as given, never closed by the store; operations serialize on it) or a
        pool (one connection borrowed per operation).
    :param consumer_name: the portable names the lock-file store accepts.
    :param schema: the schema holding the table (created if absent, with the table).
    :param table: the table name.
    :param create: create the schema and table when missing; False expects them to exist.
    """

    def __init__(
        self,
        source: str | Connection | ConnectionPool,
        consumer_name: str,
        *,
        schema: str = "public",
        table: str = DEFAULT_TABLE,
        create: bool = True,
    ) -> None:
        self._name = _layout.check_consumer_name(consumer_name)
        for label, value in (("schema", schema), ("table", table)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{label} must be a non-empty str, got {value!r}")
        self._where = f"{schema}.{table}"
        self._table = sql.Identifier(schema, table)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._conn: Connection | None = None
        self._dsn = source if isinstance(source, str) else None
        self._owned = self._dsn is not None
        if isinstance(source, str):
            self._conn = psycopg.connect(source, autocommit=True)
        elif isinstance(source, psycopg.Connection):
            self._conn = source
        elif callable(getattr(source, "connection", None)):
            self._pool = source
        else:
            raise TypeError(f"source must be a DSN, a psycopg Connection or a pool, not {source!r}")
        self._closed = False
        self._queries = _Queries(self._table)
        if create:
            try:
                with self._borrow() as conn:
                    _idle(conn, self._where)
                    _create(conn, schema, self._table)
            except BaseException:
                self.close()
                raise

    @property
    def consumer_name(self) -> str:
        """The consumer name this handle is scoped to."""
        return self._name

    @property
    def table(self) -> str:
        """The schema-qualified table, as ``schema.table``."""
        return self._where

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the key's committed offset, or None; asks the server every call."""
        key = check_key(topic_id, consumer_id)
        with self._borrow() as conn:
            _idle(conn, self._where)
            # Even a read: on a non-autocommit connection it would leave a transaction open.
            with _committed(conn):
                return self._queries.load(conn, self._name, key, self._where)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Commit ``offset`` for the key; durable on the server when this returns."""
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._borrow() as conn:
            _idle(conn, self._where)
            with _committed(conn):
                self._queries.save(conn, self._name, key, value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Remove the key's offset; deleting an absent key is not an error."""
        key = check_key(topic_id, consumer_id)
        with self._borrow() as conn:
            _idle(conn, self._where)
            with _committed(conn):
                self._queries.delete(conn, self._name, key)

    def list_all(self) -> dict[Key, int]:
        """Return every key and offset of this consumer name, as a fresh dict."""
        with self._borrow() as conn:
            _idle(conn, self._where)
            with _committed(conn):
                rows = conn.execute(self._queries.list_all, (self._name,)).fetchall()
        found: dict[Key, int] = {}
        for topic, consumer, stored in rows:
            key = (_topic(topic, self._where), _u64(consumer, None, self._where))
            found[key] = _u64(stored, key, self._where)
        return found

    @contextlib.contextmanager
    def transaction(self, conn: Connection | None = None) -> Iterator[PostgresTransaction]:
        """Save offsets in the same transaction as the caller's own statements.

        With ``conn``: the block runs in ``conn.transaction()``; when ``conn`` is already inside a
        transaction this is a savepoint and the offsets commit when the caller commits. Without
        it: the store's own (or a pooled) connection, exposed as ``tx.connection``. Leaving the
        block normally commits (or releases the savepoint); an exception rolls back and propagates.
        """
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self._borrow())
            else:
                self._check_open()
            stack.enter_context(conn.transaction())
            tx = PostgresTransaction(self, conn)
            try:
                yield tx
            finally:
                tx._finished = True

    def close(self) -> None:
        """Close the connection the store opened itself; a given connection or pool stays open."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None and self._owned:
            conn.close()

    def __enter__(self) -> PostgresOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresOffsetStore {self._where} consumer {self._name!r} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(repr(self))

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[Connection]:
        if self._pool is not None:
            self._check_open()
            with self._pool.connection() as conn:
                yield conn
            return
        with self._lock:
            self._check_open()
            assert self._conn is not None  # set until close, which also sets _closed
            if self._dsn is not None and (self._conn.closed or self._conn.broken):
                # The server restarted or the network dropped: the operation that met it raised;
                # this one gets a new connection, so the handle works again once the fault clears.
                self._conn = psycopg.connect(self._dsn, autocommit=True)
            yield self._conn


class PostgresTransaction:
    """The open transaction of :meth:`PostgresOffsetStore.transaction`; valid inside the block."""

    def __init__(self, store: PostgresOffsetStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self._finished = False

    @property
    def connection(self) -> Connection:
        """The connection running the transaction, for the caller's own statements."""
        return self._live()

    def execute(self, query: Any, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Run one of the caller's statements in the transaction; returns the psycopg cursor."""
        return self._live().execute(query, params)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """The key's offset as this transaction sees it (its own saves included)."""
        key = check_key(topic_id, consumer_id)
        store = self._store
        return store._queries.load(self._live(), store.consumer_name, key, store.table)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Save ``offset`` for the key as part of the transaction (committed with it)."""
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._store._queries.save(self._live(), self._store.consumer_name, key, value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Delete the key's offset as part of the transaction."""
        key = check_key(topic_id, consumer_id)
        self._store._queries.delete(self._live(), self._store.consumer_name, key)

    def _live(self) -> Connection:
        if self._finished:
            raise StoreClosedError(f"{self._store!r}'s transaction (the block has ended)")
        return self._conn


def consumer_names(
    conn: Connection, *, schema: str = "public", table: str = DEFAULT_TABLE
) -> list[str]:
    """Return, sorted, every consumer name with an offset in the table (which must exist).

    Sorted here, not by the server: its collation depends on the database's locale.
    """
    query = sql.SQL("SELECT DISTINCT consumer_name FROM {}").format(sql.Identifier(schema, table))
    with _committed(conn):
        rows = conn.execute(query).fetchall()
    return sorted(str(row[0]) for row in rows)


class _Queries:
    """The statements, composed once per table (identifiers quoted by psycopg.sql)."""

    def __init__(self, table: sql.Identifier) -> None:
        key = sql.SQL("consumer_name = %s AND topic_id = %s AND consumer_id = %s::numeric")
        self.load_sql = sql.SQL("SELECT committed_offset FROM {} WHERE {}").format(table, key)
        self.delete_sql = sql.SQL("DELETE FROM {} WHERE {}").format(table, key)
        self.save_sql = sql.SQL(
            "INSERT INTO {} (consumer_name, topic_id, consumer_id, committed_offset) "
            "VALUES (%s, %s, %s::numeric, %s::numeric) "
            "ON CONFLICT (consumer_name, topic_id, consumer_id) DO UPDATE SET "
            "committed_offset = excluded.committed_offset, updated_at = now()"
        ).format(table)
        self.list_all = sql.SQL(
            "SELECT topic_id, consumer_id, committed_offset FROM {} WHERE consumer_name = %s"
        ).format(table)

    def load(self, conn: Connection, name: str, key: Key, where: str) -> int | None:
        row = conn.execute(self.load_sql, (name, *key)).fetchone()
        return None if row is None else _u64(row[0], key, where)

    def save(self, conn: Connection, name: str, key: Key, value: int) -> None:
        conn.execute(self.save_sql, (name, *key, value))

    def delete(self, conn: Connection, name: str, key: Key) -> None:
        conn.execute(self.delete_sql, (name, *key))


@contextlib.contextmanager
def _committed(conn: Connection) -> Iterator[None]:
    """Make the statements in the block one committed transaction, whatever the connection mode."""
    if conn.autocommit:
        yield  # a single statement commits by itself: one round trip, not three
    else:
        with conn.transaction():
            yield


def _idle(conn: Connection, where: str) -> None:
    # A save on a connection inside the caller's transaction would be acknowledged without being
    # committed (and vanish with a rollback): that is what transaction(conn) is for.
    status = conn.info.transaction_status
    if status != TransactionStatus.IDLE:
        raise OffsetStoreError(
            f"the connection for {where} is not idle ({status.name}): a save there would not be "
            "committed on return; use store.transaction(conn) inside your own transaction"
        )


def _create(conn: Connection, schema: str, table: sql.Identifier) -> None:
    # One transaction, committed: a given non-autocommit connection is left idle, as it came.
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)).fetchone()
        if exists is not None and exists[0] is not None:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        ddl = _DDL.format(table="{table}", max_topic=MAX_TOPIC_ID, max_u64=MAX_OFFSET)
        conn.execute(sql.SQL(ddl).format(table=table))


def _topic(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOPIC_ID:
        raise CorruptDatabaseError(where, f"stored topic_id {value!r} is not a u32")
    return value


def _u64(value: object, key: Key | None, where: str) -> int:
    """A numeric(20, 0) column as an int; anything not a whole u64 is loud, never rounded."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)
        if 0 <= number <= MAX_OFFSET:
            return number
    raise CorruptDatabaseError(where, f"stored value {value!r} is not a u64", key)
