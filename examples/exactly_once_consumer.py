"""An exactly-once consumer: each record's result and the offset after it commit in ONE transaction.

    python exactly_once_consumer.py sqlite:///var/lib/demo/offsets.sqlite3 --records 1000
    python exactly_once_consumer.py postgresql://app@db.example/app --records 1000

Kill it at any moment and start it again: it resumes where its last commit left off, and in the
``results`` table every record appears exactly once. That is LANCE's "process and commit
atomically": a consumer that wrote its results and then saved its offset in a second step would
redo (duplicate) the results of a batch when killed between the two, and one that saved the offset
first would lose them. Here both are one commit of one database, so a kill leaves either both or
neither. ``tests/slow/test_exactly_once.py`` kills this program hundreds of times to prove it.

There is no LANCE broker here, so the source is a stand-in: record ``n`` of the stream is the text
``record-n``, and processing it computes a digest. Swap ``fetch`` and ``process`` for your own.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from lance_offsets import PostgresOffsetStore, SQLiteOffsetStore

TOPIC_ID = 7
CONSUMER_ID = 1
CONSUMER_NAME = "exactly-once-demo"

# No UNIQUE constraint on `record`, on purpose: a unique key would turn a duplicate into a crash
# and hide it. The single commit below is what keeps each record once; the test counts the rows.
CREATE_RESULTS = "CREATE TABLE IF NOT EXISTS results (record BIGINT NOT NULL, digest TEXT NOT NULL)"


@dataclass(frozen=True)
class Database:
    """The little that differs between SQLite and PostgreSQL for this consumer."""

    store: Any  # SQLiteOffsetStore or PostgresOffsetStore: both have transaction()
    insert: str  # the result row's INSERT, in the driver's placeholder style
    # PostgreSQL only: a lock taken first in every transaction, so that two instances (or a
    # restarted one and the server backend of its killed predecessor, still committing) cannot
    # both read the same offset and both process the batch. SQLite needs none: its transaction
    # starts with BEGIN IMMEDIATE, which already admits one writer at a time.
    lock: str | None = None


def open_database(url: str) -> Database:
    """Open the offset store named by ``sqlite:///path`` or ``postgresql://...``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and parts.netloc == "" and parts.path:
        sqlite = SQLiteOffsetStore.open(unquote(parts.path), CONSUMER_NAME)
        return Database(sqlite, "INSERT INTO results VALUES (?, ?)")
    if parts.scheme in ("postgresql", "postgres"):
        postgres = PostgresOffsetStore(url, CONSUMER_NAME)
        # The lock's key is a hash of the consumer's name and key, so other consumers sharing the
        # database do not wait for this one (a rare hash collision only makes two take turns).
        lock = f"SELECT pg_advisory_xact_lock(hashtext('{CONSUMER_NAME}/{TOPIC_ID}/{CONSUMER_ID}'))"
        return Database(postgres, "INSERT INTO results VALUES (%s, %s)", lock)
    raise SystemExit(f"not a store URL: {url!r} (sqlite:///path or postgresql://...)")


def fetch(offset: int, count: int, end: int) -> list[tuple[int, str]]:
    """The stand-in source: up to ``count`` records from ``offset``, as (offset, payload)."""
    return [(n, f"record-{n}") for n in range(offset, min(offset + count, end))]


def process(payload: str) -> str:
    """The work done per record; deterministic, so a test can check every result."""
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def consume(
    db: Database, end: int, batch: int, on_phase: Callable[[str], None] = lambda _phase: None
) -> None:
    """Process records until offset ``end``, one transaction per batch of ``batch`` records.

    ``on_phase`` is called with "begin", "commit" (the block is about to commit) and "idle"; the
    kill test uses it to see where each kill landed. A real consumer leaves it out.
    """
    with db.store.transaction() as tx:
        tx.execute(CREATE_RESULTS)
    while True:
        with db.store.transaction() as tx:
            on_phase("begin")
            if db.lock is not None:
                tx.execute(db.lock)
            # Read the offset inside the transaction that will move it: a restart resumes from
            # the last commit, and nothing between this read and the commit can move it.
            offset = tx.load(TOPIC_ID, CONSUMER_ID) or 0  # None: never committed, start at 0
            records = fetch(offset, batch, end)
            for n, payload in records:
                tx.execute(db.insert, (n, process(payload)))
            if records:
                tx.save(TOPIC_ID, CONSUMER_ID, records[-1][0] + 1)  # the next offset to read
            on_phase("commit")
        # Leaving the block committed the rows and the offset together, or (on any exception,
        # or a kill) neither.
        on_phase("idle")
        if not records:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Process records exactly once, then exit.")
    parser.add_argument("store", help="sqlite:///path/to/db or postgresql://user@host/dbname")
    parser.add_argument("--records", type=int, default=1000, help="the stream's length")
    parser.add_argument("--batch", type=int, default=10, help="records per transaction")
    args = parser.parse_args(argv)
    db = open_database(args.store)
    with db.store:
        consume(db, args.records, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
