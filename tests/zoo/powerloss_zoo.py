"""Stores that survive a process kill but not a power cut: one missing durability step each.

Every store here keeps one decimal file per key, replaced through a temp file, and raises on a file
it cannot parse (loud, as F1 asks). A kill test passes them all, because the page cache survives a
killed process; only the power-loss model (D3) sees the difference. ``correct`` is the control.

Use them as ``zoo.powerloss_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from lance_offsets import MemoryOffsetStore

Key = tuple[int, int]
_bound_fsync = os.fsync  # what ``from os import fsync`` does: the interposer cannot replace it
_SUFFIX = ".offset"


class ZooFileStore:
    """A small lock-free file store; ``protocol`` decides how a save reaches the disk."""

    def __init__(self, path: str, protocol: Callable[[str, str, bytes], None]) -> None:
        os.makedirs(path, exist_ok=True)
        self._dir = os.path.realpath(path)
        self._protocol = protocol

    def _path(self, topic_id: int, consumer_id: int) -> str:
        return os.path.join(self._dir, f"{topic_id}-{consumer_id}{_SUFFIX}")

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        path = self._path(topic_id, consumer_id)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return _parse(data, path)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        target = self._path(topic_id, consumer_id)
        self._protocol(self._dir, target, f"{offset}\n".encode())

    def delete(self, topic_id: int, consumer_id: int) -> None:
        try:
            os.remove(self._path(topic_id, consumer_id))
        except FileNotFoundError:
            return
        _fsync_dir(self._dir)

    def list_all(self) -> dict[Key, int]:
        found = {}
        for name in os.listdir(self._dir):
            if name.endswith(_SUFFIX):
                topic, _, consumer = name[: -len(_SUFFIX)].partition("-")
                key = (int(topic), int(consumer))
                path = os.path.join(self._dir, name)
                with open(path, "rb") as fh:
                    found[key] = _parse(fh.read(), path)
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> ZooFileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parse(data: bytes, path: str) -> int:
    if not data.endswith(b"\n") or not data[:-1].isdigit():
        raise ValueError(f"corrupt offset file {path!r}: {data!r}")
    return int(data)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: str, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _correct(directory: str, target: str, data: bytes) -> None:
    _write(target + ".tmp", data, sync=True)
    os.replace(target + ".tmp", target)
    _fsync_dir(directory)


def _no_file_fsync(directory: str, target: str, data: bytes) -> None:
    _write(target + ".tmp", data, sync=False)  # DEFECT: the data may never reach the disk
    os.replace(target + ".tmp", target)
    _fsync_dir(directory)


def _no_dir_fsync(directory: str, target: str, data: bytes) -> None:
    _write(target + ".tmp", data, sync=True)
    os.replace(target + ".tmp", target)  # DEFECT (the Rust seed's): the rename may be undone


def _fsync_target_after_rename(directory: str, target: str, data: bytes) -> None:
    _write(target + ".tmp", data, sync=False)
    os.replace(target + ".tmp", target)  # DEFECT: the rename may persist before the data
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(directory)


def _rename_before_sync(directory: str, target: str, data: bytes) -> None:
    fd = os.open(target + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.replace(target + ".tmp", target)  # DEFECT: renamed while the data is still unsynced
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(directory)


def _correct_bound_fsync(directory: str, target: str, data: bytes) -> None:
    fd = os.open(target + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        _bound_fsync(fd)  # bound at import: invisible to the Python interposer, seen by strace
    finally:
        os.close(fd)
    os.replace(target + ".tmp", target)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        _bound_fsync(dir_fd)
    finally:
        os.close(dir_fd)


def correct(path: str) -> ZooFileStore:
    """The control: write temp, fsync it, replace, fsync the directory."""
    return ZooFileStore(path, _correct)


def correct_bound_fsync(path: str) -> ZooFileStore:
    """Correct, but calls ``fsync`` through a name bound at import: only strace sees it."""
    return ZooFileStore(path, _correct_bound_fsync)


def no_file_fsync(path: str) -> ZooFileStore:
    """Never fsyncs the file: a cut can leave the replaced target empty or torn."""
    return ZooFileStore(path, _no_file_fsync)


def no_dir_fsync(path: str) -> ZooFileStore:
    """Never fsyncs the directory after the rename (the Rust seed): the save can be undone."""
    return ZooFileStore(path, _no_dir_fsync)


def fsync_target_after_rename(path: str) -> ZooFileStore:
    """Fsyncs the target after the rename instead of the temp file before it."""
    return ZooFileStore(path, _fsync_target_after_rename)


def rename_before_sync(path: str) -> ZooFileStore:
    """Renames the temp file before fsyncing its (still open) descriptor."""
    return ZooFileStore(path, _rename_before_sync)


#: Every defective store, by name.
DEFECTIVE = ("no_file_fsync", "no_dir_fsync", "fsync_target_after_rename", "rename_before_sync")


class LockFileSpinStore(ZooFileStore):
    """Correct saves, each inside a lock file that opening the store waits to see vanish.

    The unlink of the lock file is never made durable (no directory fsync after it), so a power
    cut can bring the lock back with no process alive to remove it, and the next open waits
    forever: a hang D3's verifier must report with the state that caused it.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, _correct)
        self._lock = os.path.join(self._dir, "LOCK")
        while os.path.exists(self._lock):  # DEFECT: an unbounded retry on a lock nobody holds
            time.sleep(0.01)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        os.close(os.open(self._lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            super().save(topic_id, consumer_id, offset)
        finally:
            os.remove(self._lock)


def lock_file_spin(path: str) -> LockFileSpinStore:
    """Hangs on open after a power cut brings back its lock file (see the class)."""
    return LockFileSpinStore(path)


class DeleteSpinStore(ZooFileStore):
    """Correct saves; ``delete`` waits forever (a lock nobody will release): the store hangs
    during the traced workload itself, before any crash state exists."""

    def delete(self, topic_id: int, consumer_id: int) -> None:
        while True:  # DEFECT: an unbounded wait
            time.sleep(0.01)


def delete_spins(path: str) -> DeleteSpinStore:
    """Hangs in its first ``delete`` (see the class)."""
    return DeleteSpinStore(path, _correct)


def in_memory_claiming_durable(path: str) -> MemoryOffsetStore:
    """Keeps offsets in memory yet claims durability: its I/O (none) cannot be traced."""
    del path
    return MemoryOffsetStore()


class ZooSqliteStore:
    """Offsets in one SQLite table (rollback journal): its I/O happens in C, out of the
    interposer's sight, so D3 follows it with strace. ``synchronous`` decides its durability."""

    #: SQLite's journal mode; the WAL store below changes only this.
    journal_mode = "DELETE"

    def __init__(self, path: str, synchronous: str) -> None:
        os.makedirs(path, exist_ok=True)
        self._db = sqlite3.connect(os.path.join(path, "offsets.sqlite"), isolation_level=None)
        self._db.execute(f"PRAGMA journal_mode={self.journal_mode}")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS offsets (topic INTEGER, consumer TEXT, offset TEXT,"
            " PRIMARY KEY (topic, consumer))"
        )

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        row = self._db.execute(
            "SELECT offset FROM offsets WHERE topic = ? AND consumer = ?",
            (topic_id, str(consumer_id)),
        ).fetchone()
        return None if row is None else int(row[0])

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
            (topic_id, str(consumer_id), str(offset)),
        )

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._db.execute(
            "DELETE FROM offsets WHERE topic = ? AND consumer = ?", (topic_id, str(consumer_id))
        )

    def list_all(self) -> dict[Key, int]:
        rows = self._db.execute("SELECT topic, consumer, offset FROM offsets").fetchall()
        return {(int(t), int(c)): int(o) for t, c, o in rows}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ZooSqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def sqlite_full(path: str) -> ZooSqliteStore:
    """SQLite, rollback journal, ``synchronous=FULL``: the commit (the journal's unlink) is not
    followed by a directory fsync, so a cut may bring the journal back and roll the save back
    (SQLite's documentation says as much; ``EXTRA`` exists for this)."""
    return ZooSqliteStore(path, "FULL")


def sqlite_extra(path: str) -> ZooSqliteStore:
    """SQLite, rollback journal, ``synchronous=EXTRA``: the directory is synced after the unlink."""
    return ZooSqliteStore(path, "EXTRA")


def sqlite_off(path: str) -> ZooSqliteStore:
    """SQLite with ``synchronous=OFF``: nothing is fsynced."""
    return ZooSqliteStore(path, "OFF")


class ZooSqliteWalStore(ZooSqliteStore):
    """Offsets in SQLite with a write-ahead log: a commit appends frames to ``-wal`` and (unless
    ``synchronous=OFF``) fsyncs it; the last connection to close checkpoints and removes it."""

    journal_mode = "WAL"


def sqlite_wal_full(path: str) -> ZooSqliteWalStore:
    """SQLite in WAL mode, ``synchronous=FULL``: every commit fsyncs the log (and SQLite fsyncs
    the directory the first time it syncs a log it created): durable."""
    return ZooSqliteWalStore(path, "FULL")


def sqlite_wal_off(path: str) -> ZooSqliteWalStore:
    """SQLite in WAL mode with ``synchronous=OFF``: commits are never fsynced."""
    return ZooSqliteWalStore(path, "OFF")


class SwappedListingStore(ZooFileStore):
    """C6 only: durable, but ``list_all`` builds keys as ``(consumer_id, topic_id)``."""

    def list_all(self) -> dict[Key, int]:
        return {(c, t): v for (t, c), v in super().list_all().items()}


def swapped_listing(path: str) -> SwappedListingStore:
    """C6, not D3: a power cut must not be blamed for a listing wrong with no power cut."""
    return SwappedListingStore(path, _correct)


class DataDirStore(ZooFileStore):
    """Correct saves into ``data/``, a directory the store makes when it is opened.

    D3 records from before the first open, so a power cut can undo that ``mkdir`` (and every
    file under it) unless the store fsyncs the directory it made ``data/`` in. ``sync_parent``
    decides; the fsync is made at every open, not only the one that made ``data/``: an open
    killed between the two would otherwise leave an entry nobody ever syncs.
    """

    def __init__(self, path: str, *, sync_parent: bool) -> None:
        data = os.path.join(path, "data")
        os.makedirs(data, exist_ok=True)
        if sync_parent:
            _fsync_dir(path)
        super().__init__(data, _correct)


def mkdir_at_open(path: str) -> DataDirStore:
    """DEFECT: makes its data directory at open and never fsyncs the parent (see the class)."""
    return DataDirStore(path, sync_parent=False)


def mkdir_at_open_fsynced(path: str) -> DataDirStore:
    """The control of ``mkdir_at_open``: the parent is fsynced after the ``mkdir``."""
    return DataDirStore(path, sync_parent=True)
