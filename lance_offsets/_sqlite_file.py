"""The SQLite database file: schema, creation, the checks made on open, error classes.

Why a new database is built whole and linked into place, and why an empty or foreign file is loud,
is in :mod:`._sqlite`'s docstring and ``docs/databases.md``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from typing import Final

from . import _platform
from ._dbcommon import CorruptDatabaseError
from ._domain import MAX_TOPIC_ID

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_FILE_NAME",
    "DELETE",
    "LIST",
    "LOAD",
    "SAVE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TABLE",
    "busy_timeout",
    "connect_verified",
    "create",
    "error_code",
    "is_busy",
    "is_damage",
]

#: The database file used when :meth:`SQLiteOffsetStore.open` is given a directory.
DEFAULT_FILE_NAME: Final = "lance-offsets.sqlite3"
#: ``PRAGMA application_id`` of our databases: "LOFS" in ASCII.
APPLICATION_ID: Final = 0x4C4F4653
#: ``PRAGMA user_version``: the schema version.
SCHEMA_VERSION: Final = 1
#: The table; the name is public, as consumers join their own rows against it.
TABLE: Final = "lance_offsets"

SCHEMA: Final = f"""
CREATE TABLE {TABLE} (
    consumer_name TEXT NOT NULL,
    topic_id INTEGER NOT NULL CHECK (typeof(topic_id) = 'integer'
        AND topic_id BETWEEN 0 AND {MAX_TOPIC_ID}),
    consumer_id INTEGER NOT NULL CHECK (typeof(consumer_id) = 'integer'),
    committed_offset INTEGER NOT NULL CHECK (typeof(committed_offset) = 'integer'),
    checksum INTEGER NOT NULL,
    PRIMARY KEY (consumer_name, topic_id, consumer_id)
) WITHOUT ROWID
"""
LOAD: Final = (
    f"SELECT committed_offset, checksum FROM {TABLE} "
    "WHERE consumer_name = ? AND topic_id = ? AND consumer_id = ?"
)
SAVE: Final = (
    f"INSERT INTO {TABLE} (consumer_name, topic_id, consumer_id, committed_offset, checksum) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer_name, topic_id, consumer_id) "
    "DO UPDATE SET committed_offset = excluded.committed_offset, checksum = excluded.checksum"
)
DELETE: Final = f"DELETE FROM {TABLE} WHERE consumer_name = ? AND topic_id = ? AND consumer_id = ?"
LIST: Final = (
    f"SELECT topic_id, consumer_id, committed_offset, checksum FROM {TABLE} WHERE consumer_name = ?"
)

# Result codes that mean damaged bytes (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed to a busy
# database or an I/O error, which are not the file's fault.
_DAMAGE_CODES: Final = frozenset({11, 26})
_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


def error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return None if code is None else int(code) & 0xFF  # extended codes keep the primary low byte


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = error_code(exc)
    if code is not None:
        return code in _DAMAGE_CODES
    # Python 3.10 has no error codes: SQLITE_CORRUPT and SQLITE_NOTADB are the plain
    # DatabaseError; busy, I/O and constraint errors are its subclasses.
    return type(exc) is sqlite3.DatabaseError


def is_busy(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` is another connection's lock outlasting the busy timeout."""
    code = error_code(exc)
    if code is not None:
        return code in _BUSY_CODES
    return type(exc) is sqlite3.OperationalError and "locked" in str(exc)  # Python 3.10


def _configure(con: sqlite3.Connection) -> None:
    # Per connection, not stored in the file: FULL makes each WAL commit fsync before returning.
    con.execute("PRAGMA synchronous = FULL")


def busy_timeout(con: sqlite3.Connection) -> float:
    return float(con.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000


def connect_verified(path: str, timeout: float) -> sqlite3.Connection:
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
        if is_damage(exc) or missing:
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


def create(path: str) -> None:
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
            con.execute(SCHEMA)
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
