"""The SQLite store: every consumer's offsets in one database file, standard library only.

Schema (``docs/databases.md`` is the long version)::

    PRAGMA application_id = 0x4C4F4653 ("LOFS"), user_version = 1, journal_mode = WAL
    CREATE TABLE lance_offsets (
        consumer_name TEXT NOT NULL, topic_id INTEGER NOT NULL, consumer_id INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL,
        PRIMARY KEY (consumer_name, topic_id, consumer_id)) WITHOUT ROWID

``consumer_id`` and ``committed_offset`` are u64 stored shifted by ``-2**63`` (``_dbcommon``).

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
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final

from . import _layout, _platform
from ._dbcommon import CorruptDatabaseError, from_signed, to_signed
from ._domain import MAX_TOPIC_ID, check_key, check_offset
from ._errors import LockTimeoutError, StoreClosedError

__all__ = ["DEFAULT_FILE_NAME", "SQLiteOffsetStore", "SQLiteTransaction"]

Key = tuple[int, int]

#: The database file used when :meth:`SQLiteOffsetStore.open` is given a directory.
DEFAULT_FILE_NAME: Final = "lance-offsets.sqlite3"
#: ``PRAGMA application_id`` of our databases: "LOFS" in ASCII.
APPLICATION_ID: Final = 0x4C4F4653
#: ``PRAGMA user_version``: the schema version.
SCHEMA_VERSION: Final = 1
#: The table; the name is public, as consumers join their own rows against it.
TABLE: Final = "lance_offsets"

_SCHEMA: Final = f"""
CREATE TABLE {TABLE} (
    consumer_name TEXT NOT NULL,
    topic_id INTEGER NOT NULL CHECK (typeof(topic_id) = 'integer'
        AND topic_id BETWEEN 0 AND {MAX_TOPIC_ID}),
    consumer_id INTEGER NOT NULL CHECK (typeof(consumer_id) = 'integer'),
    committed_offset INTEGER NOT NULL CHECK (typeof(committed_offset) = 'integer'),
    PRIMARY KEY (consumer_name, topic_id, consumer_id)
) WITHOUT ROWID
"""
_LOAD: Final = (
    f"SELECT committed_offset FROM {TABLE} "
    "WHERE consumer_name = ? AND topic_id = ? AND consumer_id = ?"
)
_SAVE: Final = (
    f"INSERT INTO {TABLE} (consumer_name, topic_id, consumer_id, committed_offset) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (consumer_name, topic_id, consumer_id) "
    "DO UPDATE SET committed_offset = excluded.committed_offset"
)
_DELETE: Final = f"DELETE FROM {TABLE} WHERE consumer_name = ? AND topic_id = ? AND consumer_id = ?"
_LIST: Final = (
    f"SELECT topic_id, consumer_id, committed_offset FROM {TABLE} WHERE consumer_name = ?"
)

# Result codes that mean damaged bytes (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed to a busy
# database or an I/O error, which are not the file's fault.
_DAMAGE_CODES: Final = frozenset({11, 26})
_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


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
        self._timeout = _busy_timeout(connection)
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
            _create(path)
        return cls(path, name, _connect_verified(path, float(busy_timeout)))

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
            rows = self._connection().execute(_LIST, (self._name,)).fetchall()
        found: dict[Key, int] = {}
        for topic, consumer, stored in rows:
            key = (_topic(topic, self._db), from_signed(consumer, None, self._db))
            found[key] = from_signed(stored, key, self._db)
        return found

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
            if _is_damage(exc):
                raise CorruptDatabaseError(self._db, str(exc), key) from exc
            if key is not None and _code(exc) in _BUSY_CODES:
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


def _load(con: sqlite3.Connection, name: str, key: Key, db: str) -> int | None:
    row = con.execute(_LOAD, (name, key[0], to_signed(key[1]))).fetchone()
    return None if row is None else from_signed(row[0], key, db)


def _save(con: sqlite3.Connection, name: str, key: Key, value: int) -> None:
    con.execute(_SAVE, (name, key[0], to_signed(key[1]), to_signed(value)))


def _delete(con: sqlite3.Connection, name: str, key: Key) -> None:
    con.execute(_DELETE, (name, key[0], to_signed(key[1])))


def _topic(value: object, db: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOPIC_ID:
        raise CorruptDatabaseError(db, f"stored topic_id {value!r} is not a u32")
    return value


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return None if code is None else int(code) & 0xFF  # extended codes keep the primary low byte


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = _code(exc)
    if code is not None:
        return code in _DAMAGE_CODES
    # Python 3.10 has no error codes: SQLITE_CORRUPT and SQLITE_NOTADB are the plain
    # DatabaseError; busy, I/O and constraint errors are its subclasses.
    return type(exc) is sqlite3.DatabaseError


def _configure(con: sqlite3.Connection) -> None:
    # Per connection, not stored in the file: FULL makes each WAL commit fsync before returning.
    con.execute("PRAGMA synchronous = FULL")


def _busy_timeout(con: sqlite3.Connection) -> float:
    return float(con.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000


def _connect_verified(path: str, timeout: float) -> sqlite3.Connection:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise CorruptDatabaseError(path, "the database file vanished while opening") from None
    if size == 0:
        raise CorruptDatabaseError(
            path,
            "the file is empty (0 bytes); SQLite would open it as a new, empty database and every "
            "consumer would silently start over",
        )
    # isolation_level=None: we issue BEGIN ourselves; otherwise the module would open implicit
    # transactions that hold locks across calls. check_same_thread=False: our lock serializes.
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        _configure(con)
        problem = _schema_problem(con)
    except sqlite3.DatabaseError as exc:
        con.close()
        missing = type(exc) is sqlite3.OperationalError and "no such" in str(exc)
        if _is_damage(exc) or missing:
            raise CorruptDatabaseError(path, str(exc)) from exc
        raise
    except BaseException:
        con.close()
        raise
    if problem is not None:
        con.close()
        raise CorruptDatabaseError(path, problem)
    return con


def _schema_problem(con: sqlite3.Connection) -> str | None:
    """Say why the database is not one of ours, or None; reading it also detects damage."""
    app = con.execute("PRAGMA application_id").fetchone()[0]
    if app != APPLICATION_ID:
        return f"not an offset database (application_id {app:#x})"
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        return f"unknown schema version {version}"
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        return f"journal_mode is {mode!r}, not 'wal'"
    con.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()
    return None


def _create(path: str) -> None:
    """Build a new database under a temporary name, sync it, and link it to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.new-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute(_SCHEMA)
        finally:
            con.close()  # the last connection checkpoints the WAL into the file and removes it
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            _platform.fsync_file(fd)
        finally:
            os.close(fd)
        # link, not replace: when two processes create at once, the first database stays and
        # the second process opens it; a replace could swap a database under a committed save.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        _platform.fsync_dir(directory)
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
