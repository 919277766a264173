"""The SQLite store: every consumer's offsets in one database file, standard library only.

Schema (``docs/databases.md`` is the long version)::

    PRAGMA application_id = 0x4C4F4653 ("LOFS"), user_version = 1, journal_mode = WAL
    CREATE TABLE lance_offsets (
        consumer_name TEXT NOT NULL, topic_id INTEGER NOT NULL, consumer_id INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL, checksum INTEGER NOT NULL,
        PRIMARY KEY (consumer_name, topic_id, consumer_id)) WITHOUT ROWID

``consumer_id`` and ``committed_offset`` are u64 stored shifted by ``-2**63`` (``_dbcommon``);
``checksum`` is a CRC-32 of the row's name, key and offset, checked on every read.

Choices, and why:

- WAL with ``synchronous=FULL``: every commit fsyncs the WAL before returning. The power-loss
  explorer showed that the rollback journal with FULL loses acknowledged commits on Linux.
- A new database is built whole under a temporary name and linked into place (``os.link`` never
  replaces), so the database path is either absent or a complete database of ours. That is what
  lets an empty or foreign file at the path be loud: SQLite opens a 0-byte file as a new database,
  which for a consumer is a silent rewind to "never committed".
- One connection per handle, used under a lock: threads share the handle safely, and other
  processes exclude us through SQLite's own file locks, waiting up to ``busy_timeout``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from . import _layout, _sqlite_file
from ._dbcommon import CorruptDatabaseError, from_signed, to_signed
from ._domain import MAX_TOPIC_ID, check_key, check_offset
from ._errors import LockTimeoutError, StoreClosedError
from ._sqlite_file import DEFAULT_FILE_NAME

__all__ = ["DEFAULT_FILE_NAME", "SQLiteOffsetStore", "SQLiteTransaction", "consumer_names"]

Key = tuple[int, int]


class SQLiteOffsetStore:
    """Offsets of one consumer name in a SQLite database file (WAL, ``synchronous=FULL``).

    Safe to share between threads, and between processes on one machine's local file system (not
    on a network file system: SQLite's locks and WAL need shared memory). Call :meth:`open`.
    """

    def __init__(self, database: str, consumer_name: str, connection: sqlite3.Connection) -> None:
        """Use :meth:`open`; this constructor takes an already verified connection."""
        self._db = database
        self._name = consumer_name
        self._con: sqlite3.Connection | None = connection
        self._timeout = _sqlite_file.busy_timeout(connection)
        # Reentrant: a store.save() inside this thread's own transaction() block joins it.
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        database: str | os.PathLike[str],
        consumer_name: str,
        *,
        busy_timeout: float = 30.0,
    ) -> SQLiteOffsetStore:
        """Open (creating if absent) ``database`` and scope this handle to ``consumer_name``.

        :param database: the database file, or a directory to hold :data:`DEFAULT_FILE_NAME`.
        :param consumer_name: the same portable names as the lock-file store accepts
            (:func:`lance_offsets._layout.check_consumer_name`).
        :param busy_timeout: seconds a write waits for another process's write lock before
            :class:`~lance_offsets.LockTimeoutError`.
        :raises CorruptOffsetError: the file exists but is empty, damaged, or not ours.
        :raises InvalidConsumerNameError: an unsafe name; nothing is created.
        """
        name = _layout.check_consumer_name(consumer_name)
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise TypeError(f"busy_timeout must be a number, not {type(busy_timeout).__name__}")
        if not 0 <= busy_timeout < float("inf"):
            raise ValueError(f"busy_timeout must be a finite number >= 0, got {busy_timeout!r}")
        path = os.fspath(database)
        if not isinstance(path, str):
            raise TypeError(f"database must be a str path, not {type(path).__name__}")
        if os.path.isdir(path):
            path = os.path.join(path, DEFAULT_FILE_NAME)
        if not os.path.exists(path):
            _sqlite_file.create(path)
        return cls(path, name, _sqlite_file.connect_verified(path, float(busy_timeout)))

    @property
    def database(self) -> str:
        """The database file's path."""
        return self._db

    @property
    def consumer_name(self) -> str:
        """The consumer name given to :meth:`open`."""
        return self._name

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the key's committed offset, or None; reads the database every call."""
        key = check_key(topic_id, consumer_id)
        with self._lock, self._errors(key):
            return _load(self._connection(), self._name, key, self._db)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Commit ``offset`` for the key; durable (WAL fsynced) when this returns.

        :raises LockTimeoutError: another process held the write lock past ``busy_timeout``.
        """
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._lock, self._errors(key):
            _save(self._connection(), self._name, key, value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Remove the key's offset; deleting an absent key is not an error."""
        key = check_key(topic_id, consumer_id)
        with self._lock, self._errors(key):
            _delete(self._connection(), self._name, key)

    def list_all(self) -> dict[Key, int]:
        """Return every key and offset of this consumer name, as a fresh dict."""
        with self._lock, self._errors(None):
            rows = self._connection().execute(_sqlite_file.LIST, (self._name,)).fetchall()
        found: dict[Key, int] = {}
        for topic, consumer, stored, checksum in rows:
            key = (_topic(topic, self._db), from_signed(consumer, None, self._db))
            found[key] = _row(self._name, key, stored, checksum, self._db)
        return found

    def stored_keys(self) -> list[Key]:
        """Return, sorted, the keys this consumer name has a row for, without reading the offsets.

        What a wipe (``lance-offsets rm --all``) needs: a damaged offset must not hide its key.
        """
        with self._lock, self._errors(None):
            rows = self._connection().execute(_KEYS, (self._name,)).fetchall()
        return sorted((_topic(t, self._db), from_signed(c, None, self._db)) for t, c in rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        """Run the consumer's own SQL and offset saves in one SQLite transaction.

        ``BEGIN IMMEDIATE`` takes the write lock at once, so the block cannot fail half-way on a
        lock another process took first. Leaving the block normally commits everything (durably);
        an exception rolls everything back and propagates. Other threads using this handle wait
        until the block ends. Post-commit hooks of a :class:`~lance_offsets.HookedOffsetStore`
        wrapper do not run for saves made through the transaction.
        """
        with self._lock:
            con = self._connection()
            with self._errors(None):
                con.execute("BEGIN IMMEDIATE")
            tx = SQLiteTransaction(self, con)
            try:
                yield tx
            except BaseException:
                tx._finished = True
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
            tx._finished = True
            try:
                with self._errors(None):
                    con.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (an I/O error) may leave the transaction open; end it.
                if con.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection; further operations raise. Closing twice is fine."""
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()

    def __enter__(self) -> SQLiteOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._con is None else "open"
        return f"<SQLiteOffsetStore {self._db!r} consumer {self._name!r} {state}>"

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise StoreClosedError(repr(self))
        return self._con

    @contextlib.contextmanager
    def _errors(self, key: Key | None) -> Iterator[None]:
        """Turn SQLite's damage and busy errors into ours, naming the file (and key)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _sqlite_file.is_damage(exc):
                raise CorruptDatabaseError(self._db, str(exc), key) from exc
            if key is not None and _sqlite_file.is_busy(exc):
                raise LockTimeoutError(key, self._db, self._timeout) from exc
            raise


class SQLiteTransaction:
    """The open transaction of :meth:`SQLiteOffsetStore.transaction`; valid inside the block."""

    def __init__(self, store: SQLiteOffsetStore, connection: sqlite3.Connection) -> None:
        self._store = store
        self._con = connection
        self._finished = False

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection running the transaction, for the consumer's own statements."""
        return self._live()

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one of the consumer's statements inside the transaction."""
        return self._live().execute(sql, parameters)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """The key's offset as this transaction sees it (its own saves included)."""
        key = check_key(topic_id, consumer_id)
        with self._store._errors(key):
            return _load(self._live(), self._store.consumer_name, key, self._store.database)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Save ``offset`` for the key as part of the transaction (committed with it)."""
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        with self._store._errors(key):
            _save(self._live(), self._store.consumer_name, key, value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Delete the key's offset as part of the transaction."""
        key = check_key(topic_id, consumer_id)
        with self._store._errors(key):
            _delete(self._live(), self._store.consumer_name, key)

    def _live(self) -> sqlite3.Connection:
        if self._finished:
            raise StoreClosedError(f"{self._store!r}'s transaction (the block has ended)")
        return self._con


_KEYS = f"SELECT topic_id, consumer_id FROM {_sqlite_file.TABLE} WHERE consumer_name = ?"
_NAMES = f"SELECT DISTINCT consumer_name FROM {_sqlite_file.TABLE}"


def consumer_names(database: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> list[str]:
    """Return, sorted, every consumer name with an offset in an existing database.

    ``database`` is a file or a directory, as for :meth:`SQLiteOffsetStore.open`; unlike that,
    this creates nothing: a missing database raises FileNotFoundError.
    """
    path = os.fspath(database)
    if os.path.isdir(path):
        path = os.path.join(path, DEFAULT_FILE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such offset database", path)
    con = _sqlite_file.connect_verified(path, float(busy_timeout))
    try:
        names = [row[0] for row in con.execute(_NAMES).fetchall()]
    except sqlite3.DatabaseError as exc:
        if _sqlite_file.is_damage(exc):
            raise CorruptDatabaseError(path, str(exc)) from exc
        raise
    finally:
        con.close()
    return sorted(str(name) for name in names)


def _checksum(name: str, key: Key, value: int) -> int:
    """CRC-32 of the row's meaning: a changed byte in a stored integer is loud, not a new offset.

    SQLite keeps no page checksums, so without this a flipped bit in ``committed_offset`` would be
    a number nobody saved, handed to the consumer as its position (F1).
    """
    text = f"{name}\x00{key[0]}\x00{key[1]}\x00{value}"
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _row(name: str, key: Key, stored: object, checksum: object, db: str) -> int:
    value = from_signed(stored, key, db)
    if checksum != _checksum(name, key, value):
        raise CorruptDatabaseError(db, f"row checksum {checksum!r} does not match its offset", key)
    return value


def _load(con: sqlite3.Connection, name: str, key: Key, db: str) -> int | None:
    row = con.execute(_sqlite_file.LOAD, (name, key[0], to_signed(key[1]))).fetchone()
    return None if row is None else _row(name, key, row[0], row[1], db)


def _save(con: sqlite3.Connection, name: str, key: Key, value: int) -> None:
    row = (name, key[0], to_signed(key[1]), to_signed(value), _checksum(name, key, value))
    con.execute(_sqlite_file.SAVE, row)


def _delete(con: sqlite3.Connection, name: str, key: Key) -> None:
    con.execute(_sqlite_file.DELETE, (name, key[0], to_signed(key[1])))


def _topic(value: object, db: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOPIC_ID:
        raise CorruptDatabaseError(db, f"stored topic_id {value!r} is not a u32")
    return value
