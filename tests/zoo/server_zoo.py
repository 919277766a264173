"""PostgreSQL-backed stores with one client-server defect each, and the property that catches it.

Each factory carries the reference ``postgres`` factory's server declaration, so the server-fault
campaigns (``lance_offsets.stress.servers``) kill and proxy the same temporary cluster.
:data:`EXPECTED` maps each to the property and the fault kind that must fail it;
``tests/slow/test_server_faults.py`` proves they do, and that :func:`control` passes.
"""

from __future__ import annotations

import time
from typing import Any, Final

import psycopg
from lance_offsets.conformance import reference

from lance_offsets import PostgresOffsetStore
from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]


def control(path: str) -> PostgresOffsetStore:
    """The reference PostgreSQL store, unchanged: every server-fault campaign passes it."""
    return reference.postgres(path)


control.server = reference.PG_SERVER  # type: ignore[attr-defined]


def async_commit(path: str) -> PostgresOffsetStore:
    """D2 (server killed): ``synchronous_commit=off`` in the connection string, for speed.

    The server acknowledges each commit before its WAL reaches the disk (the WAL writer flushes
    it a few hundred milliseconds later), so a server killed in between forgets saves its
    clients were told are committed.
    """
    dsn = reference.postgres_dsn() + " options='-c synchronous_commit=off'"
    return PostgresOffsetStore(dsn, reference.CONSUMER_NAME, schema=reference._pg_schema(path))


async_commit.server = reference.PG_SERVER  # type: ignore[attr-defined]


class IncrementRetry:
    """F2 (connection cut after the request, before the reply): offsets move by increments, and
    a commit whose reply was lost is retried.

    ``save`` reads the current offset and commits ``committed_offset + delta`` in one
    transaction, which is correct by itself. When the connection fails, it reconnects and sends
    the increment again, assuming the first attempt never reached the server; when only the
    reply was lost, the increment is applied twice and the key holds an offset nobody saved.
    """

    #: Attempts of one save, and the pause between them.
    ATTEMPTS: Final = 20
    PAUSE: Final = 0.1

    server = reference.PG_SERVER

    def __init__(self, path: str) -> None:
        self._schema = reference._pg_schema(path)
        self._table = f"{self._schema}.zoo_offsets"
        self._conn = self._connect()
        with self._conn.transaction():  # handles opening at once would race CREATE IF NOT EXISTS
            self._conn.execute("SELECT pg_advisory_xact_lock(7)")
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (topic_id bigint, consumer_id "
                "numeric, committed_offset numeric, PRIMARY KEY (topic_id, consumer_id))"
            )
        self._closed = False

    def _connect(self) -> Any:
        return psycopg.connect(reference.postgres_dsn(), autocommit=True)

    def _live(self) -> Any:
        if self._closed:
            raise ValueError("store is closed")
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        row = (
            self._live()
            .execute(
                f"SELECT committed_offset FROM {self._table} WHERE topic_id = %s AND "
                "consumer_id = %s",
                key,
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        delta: int | None = None
        try:
            with self._live().transaction():
                row = self._conn.execute(
                    f"SELECT committed_offset FROM {self._table} WHERE topic_id = %s AND "
                    "consumer_id = %s FOR UPDATE",
                    key,
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        f"INSERT INTO {self._table} VALUES (%s, %s, %s) ON CONFLICT (topic_id, "
                        "consumer_id) DO UPDATE SET committed_offset = excluded.committed_offset",
                        (*key, value),
                    )
                    return
                delta = value - int(row[0])
                self._increment(key, delta)
        except psycopg.OperationalError:
            if delta is None:
                raise
            self._retry(key, delta)

    def _increment(self, key: Key, delta: int) -> None:
        self._conn.execute(
            f"UPDATE {self._table} SET committed_offset = committed_offset + %s "
            "WHERE topic_id = %s AND consumer_id = %s",
            (delta, *key),
        )

    def _retry(self, key: Key, delta: int) -> None:
        # The defect: "the commit never got there", so the same increment is sent again.
        for attempt in range(self.ATTEMPTS):
            time.sleep(self.PAUSE)
            try:
                self._live()
                self._increment(key, delta)
            except psycopg.OperationalError:
                if attempt == self.ATTEMPTS - 1:
                    raise
            else:
                return

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        self._live().execute(
            f"DELETE FROM {self._table} WHERE topic_id = %s AND consumer_id = %s", key
        )

    def list_all(self) -> dict[Key, int]:
        rows = self._live().execute(f"SELECT * FROM {self._table}").fetchall()
        return {(int(t), int(c)): int(o) for t, c, o in rows}

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def __enter__(self) -> IncrementRetry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Each zoo store, the property it fails, and the fault kind the failure names.
EXPECTED: Final[dict[str, tuple[str, str]]] = {
    "async_commit": ("D2", "server killed"),
    "IncrementRetry": ("F2", "connection cut after the request, before the reply"),
}
