"""SQLite stores whose I/O happens in C: the syscall backend (``stress/seam/_shim.py``) must see it.

``wal_full`` is correct: WAL, ``synchronous=FULL`` (a WAL commit is durable once its frames are
synced), offsets stored losslessly as decimal TEXT (SQLite's INTEGER is signed 64-bit), and loud
on a file that is not its database (an emptied or foreign file raises instead of reading as "no
offsets"). The database is created under a temp name and renamed into place, so a crash while it
is being made leaves no half-made database under the real name. ``delete_extra`` is correct too,
with a rollback journal. Three stores, one defect each:

- ``journal_off``: ``journal_mode=OFF``. A commit rewrites several pages in place (the table's
  leaf, the primary-key index's leaf, the header) with nothing to roll back from: a kill between
  two of those writes leaves a table and index that disagree (``database disk image is
  malformed``). D1, at the ``pwrite64`` between them.
- ``delete_full`` (correct is ``delete_extra``): rollback journal with ``synchronous=FULL``,
  which does not sync the directory after the journal's unlink, the commit: D3, a power cut
  that undoes the unlink rolls an acknowledged save back.
- ``swallows_io_errors``: catches ``sqlite3.Error`` in ``save`` and returns ("the offset will be
  saved next time"): F2, when an ``fdatasync`` or ``pwrite64`` of the commit fails.

Use them as ``zoo.sqlite_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]

#: ``PRAGMA application_id`` of our databases: any other file under the name is not ours.
APPLICATION_ID = 0x4C4F4646  # "LOFF"
FILE = "offsets.sqlite"
_SCHEMA = (
    "CREATE TABLE offsets (topic INTEGER NOT NULL, consumer TEXT NOT NULL, offset TEXT NOT NULL,"
    " PRIMARY KEY (topic, consumer))"
)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqliteStore:
    """Offsets in one SQLite table; ``journal`` is the journal mode, the rest is correct."""

    def __init__(self, path: str, journal: str = "WAL", sync: str = "FULL") -> None:
        os.makedirs(path, exist_ok=True)
        self.file = os.path.join(path, FILE)
        if not os.path.exists(self.file):
            self._create(path, journal)
        self._db = sqlite3.connect(self.file, isolation_level=None, timeout=10.0)
        self._db.execute(f"PRAGMA journal_mode={journal}")  # only WAL persists in the file
        self._db.execute(f"PRAGMA synchronous={sync}")
        (ours,) = self._db.execute("PRAGMA application_id").fetchone()
        if ours != APPLICATION_ID:  # an emptied file reads as an empty database: refuse it
            self._db.close()
            raise ValueError(f"{self.file} is not an offsets database (emptied? foreign?)")

    def _create(self, path: str, journal: str) -> None:
        temp = os.path.join(path, f".{FILE}.{os.getpid()}.tmp")
        db = sqlite3.connect(temp, isolation_level=None)
        try:
            db.execute(f"PRAGMA journal_mode={journal}")
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(_SCHEMA)
        finally:
            db.close()
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.file)
        _fsync_dir(path)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        topic, consumer = check_key(topic_id, consumer_id)
        row = self._db.execute(
            "SELECT offset FROM offsets WHERE topic = ? AND consumer = ?", (topic, str(consumer))
        ).fetchone()
        return None if row is None else int(row[0])

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        topic, consumer = check_key(topic_id, consumer_id)
        self._db.execute(
            "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
            (topic, str(consumer), str(check_offset(offset))),
        )

    def delete(self, topic_id: int, consumer_id: int) -> None:
        topic, consumer = check_key(topic_id, consumer_id)
        self._db.execute(
            "DELETE FROM offsets WHERE topic = ? AND consumer = ?", (topic, str(consumer))
        )

    def list_all(self) -> dict[Key, int]:
        rows = self._db.execute("SELECT topic, consumer, offset FROM offsets").fetchall()
        return {(int(t), int(c)): int(o) for t, c, o in rows}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SwallowsIoErrors(SqliteStore):
    """F2: a failed commit is logged away, and ``save`` returns as if it had worked."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        with contextlib.suppress(sqlite3.Error):  # the defect: "it will be saved next time"
            super().save(topic_id, consumer_id, offset)


def wal_full(path: str) -> SqliteStore:
    """Correct: WAL, ``synchronous=FULL``, offsets as TEXT, loud on a foreign file."""
    return SqliteStore(path)


def journal_off(path: str) -> SqliteStore:
    """D1: ``journal_mode=OFF``: a kill inside a multi-page commit tears the database."""
    return SqliteStore(path, "OFF")


def delete_extra(path: str) -> SqliteStore:
    """Correct: rollback journal (``DELETE``) with ``synchronous=EXTRA``, which also syncs the
    directory after unlinking the journal, the unlink being the commit in this mode."""
    return SqliteStore(path, "DELETE", "EXTRA")


def delete_full(path: str) -> SqliteStore:
    """D3: rollback journal with ``synchronous=FULL``. The commit is the journal's unlink, and
    FULL does not sync the directory after it: a power cut can bring the journal back, and the
    next open rolls the acknowledged transaction back (SQLite documents EXTRA for this)."""
    return SqliteStore(path, "DELETE", "FULL")


def swallows_io_errors(path: str) -> SwallowsIoErrors:
    """F2: swallows ``sqlite3`` I/O errors in ``save``."""
    return SwallowsIoErrors(path)
