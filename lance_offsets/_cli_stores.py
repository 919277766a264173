"""The stores ``lance-offsets`` commands work on: a base directory, a SQLite or PostgreSQL database.

Every command takes a store (``STORE``: a directory or a URL, :mod:`._store_url`) and asks it the
same few things through :class:`Location`: does it exist, which consumers does it hold, open one
(without creating anything, or creating it to write), which keys does a consumer have. The rules
of ``docs/cli.md`` hold for all three: reads create nothing, and the place that holds the
offsets (base directory; the folder of a SQLite file) is never created.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from . import _cli_common
from ._cli_common import CliError, os_errors
from ._cli_os_errors import os_error_line
from ._lockfile import LockFileOffsetStore
from ._protocol import OffsetStore
from ._store_url import StoreUrl, StoreUrlError, parse_store_url

if TYPE_CHECKING:
    from ._postgres import PostgresOffsetStore
    from ._sqlite import SQLiteOffsetStore

__all__ = ["STORE_HELP", "Location", "is_driver_error", "open_location", "store_arg"]

Key = tuple[int, int]
_S = TypeVar("_S", bound=OffsetStore)

#: The help of every STORE argument (docs/cli.md, "Stores", is the long version).
STORE_HELP = (
    "a base directory, file:///dir, sqlite:///path/to/db (or a directory holding "
    "lance-offsets.sqlite3) or postgresql://user@host/dbname[?schema=S&table=T]"
)
#: SQLite's busy timeout is an int of milliseconds: the longest wait it can express, for "forever".
_SQLITE_FOREVER: Final = (2**31 - 1) // 1000
#: Seconds to wait for a PostgreSQL server to answer a connection, unless the URL says otherwise.
_CONNECT_TIMEOUT: Final = 10


def store_arg(text: str) -> StoreUrl:
    """Argparse type of ``STORE``: a bad URL is a usage error (status 2) before any change."""
    try:
        return parse_store_url(text)
    except StoreUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Location:
    """One store a command works on; subclasses per kind. Close it (``open_location`` does)."""

    def __init__(self, url: StoreUrl, lock_timeout: float | None) -> None:
        self.url = url
        self.shown = url.shown
        self.lock_timeout = lock_timeout
        self._stores: list[OffsetStore] = []

    def _track(self, store: _S) -> _S:
        self._stores.append(store)
        return store

    def require(self) -> None:
        """Raise :class:`CliError` unless the store exists (what every read needs)."""
        raise NotImplementedError

    def require_writable(self) -> None:
        """Raise :class:`CliError` unless a write could create what it needs (nothing else)."""
        self.require()

    def consumers(self) -> list[str]:
        """Every consumer of the store, sorted."""
        raise NotImplementedError

    def has_consumer(self, name: str) -> bool:
        return name in self.consumers()

    def open_existing(self, name: str) -> OffsetStore | None:
        """Open consumer ``name`` creating nothing; None if the store has no place for it."""
        raise NotImplementedError

    def open_or_create(self, name: str) -> OffsetStore:
        """Open consumer ``name`` to write, creating what the store creates on a first save."""
        raise NotImplementedError

    def stored_keys(self, store: OffsetStore) -> list[Key]:
        """The keys with a stored offset, found even when a value is corrupt."""
        raise NotImplementedError

    def where(self, store: OffsetStore, key: Key) -> str:
        """Where the key's offset lives, for messages (a file, a database, a table)."""
        return self.shown

    def os_problem(self, exc: BaseException) -> str | None:
        """A driver error that is an OS error in disguise, worded as one; None otherwise."""
        return None

    def close(self) -> None:
        """Close every store opened through this location (then its connection, if any)."""
        for store in self._stores:
            store.close()


class DirectoryLocation(Location):
    """A base directory of the lock-file store: one subdirectory per consumer."""

    def require(self) -> None:
        _cli_common.require_base_dir(self.url.path)

    def consumers(self) -> list[str]:
        return list(_cli_common.iter_consumers(self.url.path))

    def has_consumer(self, name: str) -> bool:
        return _cli_common.is_consumer_dir(self.url.path, name)

    def open_existing(self, name: str) -> OffsetStore | None:
        store = _cli_common.open_existing(self.url.path, name, self.lock_timeout)
        return None if store is None else self._track(store)

    def open_or_create(self, name: str) -> OffsetStore:
        return self._track(_cli_common.open_or_create(self.url.path, name, self.lock_timeout))

    def stored_keys(self, store: OffsetStore) -> list[Key]:
        assert isinstance(store, LockFileOffsetStore)
        # Keys from the file names: a corrupt value must not stop a wipe.
        return _cli_common.stored_keys(store.directory)

    def where(self, store: OffsetStore, key: Key) -> str:
        assert isinstance(store, LockFileOffsetStore)
        return store.offset_path(*key)


class SQLiteLocation(Location):
    """A SQLite database file (or a directory holding ``lance-offsets.sqlite3``)."""

    def __init__(self, url: StoreUrl, lock_timeout: float | None) -> None:
        super().__init__(url, lock_timeout)
        from ._sqlite_file import DEFAULT_FILE_NAME

        # Native separators in messages: "sqlite:///C:/x.db" is C:\x.db on Windows.
        path = os.path.normpath(url.path)
        self.database = os.path.join(path, DEFAULT_FILE_NAME) if os.path.isdir(path) else path

    def _timeout(self) -> float:
        return _SQLITE_FOREVER if self.lock_timeout is None else self.lock_timeout

    def require(self) -> None:
        mode = _cli_common.file_type(self.database, "SQLite database")
        if mode is None or not stat.S_ISREG(mode):
            what = "does not exist" if mode is None else "is not a file"
            raise CliError(f"SQLite database {self.database!r} {what}")

    def consumers(self) -> list[str]:
        from ._sqlite import consumer_names

        self.require()
        return consumer_names(self.database, busy_timeout=self._timeout())

    def open_existing(self, name: str) -> OffsetStore | None:
        if not os.path.isfile(self.database):
            return None
        return self._open(name)

    def require_writable(self) -> None:
        if os.path.exists(self.database):
            self.require()
            # Before SQLite opens it: a refused write would still leave its -wal and -shm files.
            denied = _access_problem(self.database, writing=True)
            if denied is not None:
                raise CliError(os_error_line(denied, self._use, writing=True))
            return
        folder = os.path.dirname(os.path.abspath(self.database))
        if not os.path.isdir(folder):
            # As with a base directory: a typo must not grow a stray tree.
            raise CliError(f"cannot create SQLite database {self.database!r}: no folder {folder!r}")

    def open_or_create(self, name: str) -> OffsetStore:
        self.require_writable()
        return self._open(name, writing=True)

    def _open(self, name: str, *, writing: bool = False) -> SQLiteOffsetStore:
        from ._sqlite import SQLiteOffsetStore

        with os_errors(f"open SQLite database {self.database!r}", writing=writing):
            store = SQLiteOffsetStore.open(self.database, name, busy_timeout=self._timeout())
        return self._track(store)

    def os_problem(self, exc: BaseException) -> str | None:
        import sqlite3  # already loaded: the driver raised exc

        from ._sqlite_file import error_code

        # SQLite says "unable to open database file" or "attempt to write a readonly database"
        # without the path or the system's reason; look at the files it needs, as it would.
        code = error_code(exc) if isinstance(exc, sqlite3.Error) else None
        text = str(exc)
        if code == _SQLITE_FULL or "disk is full" in text:
            cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.database)
            return os_error_line(cause, self._use, writing=True)
        writing = code == _SQLITE_READONLY or "readonly database" in text
        if not (writing or code == _SQLITE_CANTOPEN or "unable to open" in text):
            return None
        denied = _access_problem(self.database, writing)
        return None if denied is None else os_error_line(denied, self._use, writing=writing)

    @property
    def _use(self) -> str:
        return f"use SQLite database {self.database!r}"

    def stored_keys(self, store: OffsetStore) -> list[Key]:
        from ._sqlite import SQLiteOffsetStore

        assert isinstance(store, SQLiteOffsetStore)
        return store.stored_keys()

    def where(self, store: OffsetStore, key: Key) -> str:
        return self.database


#: SQLite's primary result codes for a read-only database, one it cannot open, a full disk.
_SQLITE_READONLY: Final = 8
_SQLITE_CANTOPEN: Final = 14
_SQLITE_FULL: Final = 13


def _access_problem(database: str, writing: bool) -> OSError | None:
    """The first file SQLite needs that this user may not use, as the OSError it would raise."""
    folder = os.path.dirname(os.path.abspath(database))
    needs = [(database, os.R_OK | (os.W_OK if writing else 0))]
    needs += [(database + suffix, os.R_OK | os.W_OK) for suffix in ("-wal", "-shm")]
    # Last, the folder: SQLite creates the -wal and -shm files beside the database.
    needs.append((folder, os.X_OK | (os.W_OK if writing else 0)))
    for path, mode in needs:
        if os.path.exists(path) and not os.access(path, mode):
            code = errno.EROFS if mode & os.W_OK and _on_read_only_fs(path) else errno.EACCES
            return OSError(code, os.strerror(code), path)
    return None


def _on_read_only_fs(path: str) -> bool:
    statvfs = getattr(os, "statvfs", None)  # not on Windows
    return statvfs is not None and bool(statvfs(path).f_flag & os.ST_RDONLY)


class PostgresLocation(Location):
    """A table in a PostgreSQL database; one connection, shared by every consumer's store."""

    def __init__(self, url: StoreUrl, lock_timeout: float | None) -> None:
        super().__init__(url, lock_timeout)
        self._conn: Any = None
        self.table = f"{url.schema}.{url.table}"

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = _connect(self.url, self.lock_timeout)
        return self._conn

    def _table_exists(self) -> bool:
        conn = self._connection()  # first: it says so clearly when psycopg is missing
        from psycopg import sql

        name = sql.Identifier(self.url.schema, self.url.table).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def require(self) -> None:
        if not self._table_exists():
            raise CliError(f"no offsets table {self.table} in {self.shown!r}")

    def consumers(self) -> list[str]:
        from ._postgres import consumer_names

        self.require()
        return consumer_names(self._connection(), schema=self.url.schema, table=self.url.table)

    def open_existing(self, name: str) -> OffsetStore | None:
        return self._open(name, create=False) if self._table_exists() else None

    def require_writable(self) -> None:
        self._connection()  # the table is created by the first write

    def open_or_create(self, name: str) -> OffsetStore:
        return self._open(name, create=True)

    def _open(self, name: str, create: bool) -> PostgresOffsetStore:
        from ._postgres import PostgresOffsetStore

        # A given connection: the store never closes it, and operations take turns on it.
        schema, table = self.url.schema, self.url.table
        return self._track(
            PostgresOffsetStore(self._connection(), name, schema=schema, table=table, create=create)
        )

    def stored_keys(self, store: OffsetStore) -> list[Key]:
        # The table's CHECKs keep every stored value a u64: nothing corrupt to step around.
        return sorted(store.list_all())

    def close(self) -> None:
        super().close()
        if self._conn is not None:
            self._conn.close()


def _connect(url: StoreUrl, lock_timeout: float | None) -> Any:
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise CliError(
            f"{url.shown!r} needs psycopg 3, which is not installed; install it with: "
            "pip install 'lance-offsets[postgres]'"
        ) from None
    try:
        given = conninfo_to_dict(url.conninfo)
    except psycopg.ProgrammingError as exc:
        raise CliError(f"bad PostgreSQL URL {url.shown!r}: {exc}", _cli_common.EXIT_USAGE) from None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = _CONNECT_TIMEOUT
    try:
        conn = psycopg.connect(url.conninfo, autocommit=True, **extra)
    except psycopg.Error as exc:
        raise CliError(f"cannot connect to {url.shown!r}: {_one_line(exc)}") from None
    # The server's lock_timeout is what --lock-timeout means here: how long a write waits for a
    # row another session holds. 0 disables it (waits forever); our 0 means "do not wait": 1 ms.
    waited = "0" if lock_timeout is None else f"{max(1, round(lock_timeout * 1000))}ms"
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (waited,))
    return conn


def is_driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` is sqlite3's or psycopg's own error (not one of the store's)."""
    # Matched by module, so that directory commands never import sqlite3 or psycopg.
    return type(exc).__module__.partition(".")[0] in ("sqlite3", "psycopg")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


_LOCATIONS: Final[dict[str, type[Location]]] = {
    "directory": DirectoryLocation,
    "sqlite": SQLiteLocation,
    "postgresql": PostgresLocation,
}


@contextlib.contextmanager
def open_location(url: StoreUrl, lock_timeout: float | None) -> Iterator[Location]:
    """Yield the location of ``url``; database errors inside become one-line CLI errors."""
    location = _LOCATIONS[url.kind](url, lock_timeout)
    try:
        yield location
    except Exception as exc:
        # A driver's own errors (server gone, lock_timeout hit, permission denied on the file)
        # are expected operational failures: one line naming the store, status 1.
        if is_driver_error(exc):
            problem = location.os_problem(exc)
            raise CliError(problem or f"{location.shown}: {_one_line(exc)}") from exc
        raise
    finally:
        location.close()
