"""Stores that break under a kill, a rival process or an I/O error: one defect each.

Each is a small one-file-per-key store (``{topic}-{consumer}.offset``, decimal + newline) that
raises on a file it cannot parse. :func:`careful` does everything right (lock, temp, fsync,
replace, fsync the directory) and is the positive control beside the reference store; every other
factory changes one step, and the stress checks must catch it on the named property:

- ``in_place`` (D1): writes the offset file in place, so a kill leaves it empty or cut short.
- ``acked_before_written`` (D2): ``save`` returns at once; the bytes reach the disk on the next
  save or on ``close`` (write-behind), so a kill loses acknowledged offsets.
- ``temp_listed`` (D4): its temp file ends in ``.offset`` too, and ``list_all`` trips over it.
- ``exclusive_temp`` (D4): creates its temp file with ``O_EXCL`` "to catch concurrent writers";
  a leftover from a kill makes every later save raise ``FileExistsError``.
- ``stale_lock`` (D5): its lock is a file created with ``O_EXCL`` and removed on release; a
  killed holder never removes it, and everyone else waits for a minute.
- ``leaked_lock`` (a hang): never removes its per-key lock file, and waits for it with no
  deadline, so the second save of a key hangs; the campaign's report must say what it was doing.
- ``swallows_errors`` (F2): catches ``OSError`` in ``save`` and returns as if it had saved.
- ``truncates_first`` (F2): truncates the offset file before writing the temp, so an error
  mid-save destroys the old value.
- ``retries_forever`` (F2): retries ``os.replace`` on ``PermissionError`` with no limit (the
  Windows sharing-violation dance done wrong): a file held open for good hangs the save.

``early_bound`` is correct too, but calls ``os`` functions it bound at import (``from os import
replace``), which the interposer's wrappers cannot see: only the audit hook notices its opens and
renames, and random-time kills cover the rest.

``windows_retry`` is correct: it replaces through the reference store's bounded
``retry_sharing_violations``, so the F2 check drives that function on any OS.

Use them as ``zoo.stress_crash_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from os import close as _close
from os import fsync as _fsync
from os import open as _open
from os import replace as _replace
from os import write as _write

import portalocker

from lance_offsets import _platform

Key = tuple[int, int]
_SUFFIX = ".offset"


def _parse(data: bytes, path: str) -> int:
    text = data.decode("ascii", "replace")
    if not text.endswith("\n") or not text[:-1].isdigit():
        raise ValueError(f"corrupt offset file {path!r}: {data!r}")
    return int(text)


def _fsync_dir(path: str) -> None:
    if os.name == "nt":  # Windows cannot open a directory with os.open; its renames are durable
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CarefulStore:
    """The correct protocol; subclasses override one step each to break one property."""

    temp_suffix = ".offset.tmp"
    temp_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.dir = os.path.realpath(path)

    def name(self, key: Key, suffix: str = _SUFFIX) -> str:
        return os.path.join(self.dir, f"{key[0]}-{key[1]}{suffix}")

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        with open(self.name(key, ".lock"), "a") as fh:
            portalocker.lock(fh, portalocker.LOCK_EX)
            try:
                yield
            finally:
                portalocker.unlock(fh)

    def synced_temp(self, key: Key, data: bytes) -> str:
        """Write ``data`` to the key's temp file and fsync it; return the temp file's path."""
        temp = self.name(key, self.temp_suffix)
        fd = os.open(temp, self.temp_flags, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return temp

    def write(self, key: Key, data: bytes) -> None:
        temp = self.synced_temp(key, data)
        os.replace(temp, self.name(key))
        _fsync_dir(self.dir)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        path = self.name((topic_id, consumer_id))
        try:
            with open(path, "rb") as fh:
                return _parse(fh.read(), path)
        except FileNotFoundError:
            return None

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = (topic_id, consumer_id)
        with self.locked(key):
            self.write(key, f"{offset}\n".encode())

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self.locked((topic_id, consumer_id)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.name((topic_id, consumer_id)))
            _fsync_dir(self.dir)

    def list_all(self) -> dict[Key, int]:
        found = {}
        for entry in sorted(os.listdir(self.dir)):
            if entry.endswith(_SUFFIX):
                topic, _, consumer = entry[: -len(_SUFFIX)].partition("-")
                path = os.path.join(self.dir, entry)
                with open(path, "rb") as fh:
                    found[int(topic), int(consumer)] = _parse(fh.read(), path)
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> CarefulStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InPlaceStore(CarefulStore):
    def write(self, key: Key, data: bytes) -> None:
        with open(self.name(key), "wb") as fh:  # truncates first: a kill here leaves it empty
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


class AckedBeforeWrittenStore(CarefulStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.pending: dict[Key, int] = {}

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.flush()  # write-behind: the previous save reaches the disk now, this one later
        self.pending[topic_id, consumer_id] = offset

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        if (topic_id, consumer_id) in self.pending:
            return self.pending[topic_id, consumer_id]
        return super().load(topic_id, consumer_id)

    def flush(self) -> None:
        while self.pending:
            key, value = self.pending.popitem()
            super().save(*key, value)

    def close(self) -> None:
        self.flush()


class TempListedStore(CarefulStore):
    temp_suffix = ".tmp.offset"  # list_all parses it as a key and fails on "consumer.tmp"


class ExclusiveTempStore(CarefulStore):
    temp_flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # a leftover blocks every later save


class StaleLockStore(CarefulStore):
    #: How long a save waits for the lock file to go away before giving up.
    patience = 60.0

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        lock = self.name(key, ".lock")
        deadline = time.monotonic() + self.patience
        while True:
            try:
                os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lock file {lock!r} is held") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            os.remove(lock)


class LeakedLockStore(CarefulStore):
    """Takes a lock file per key and never removes it: the next save of that key waits forever."""

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        lock = self.name(key, ".lock")
        while True:  # no deadline: "the holder will be done in a moment"
            try:
                os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                break
            except FileExistsError:
                time.sleep(0.01)
        yield  # DEFECT: the lock file is never removed


class SwallowsErrorsStore(CarefulStore):
    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        with contextlib.suppress(OSError):  # "a full disk must not crash the consumer"
            super().save(topic_id, consumer_id, offset)


class TruncatesFirstStore(CarefulStore):
    def write(self, key: Key, data: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.name(key), 0)  # "make room first": the old value is gone now
        super().write(key, data)


class EarlyBoundStore(CarefulStore):
    def write(self, key: Key, data: bytes) -> None:
        temp = self.name(key, self.temp_suffix)
        fd = _open(temp, self.temp_flags, 0o644)
        try:
            _write(fd, data)
            _fsync(fd)
        finally:
            _close(fd)
        _replace(temp, self.name(key))
        _fsync_dir(self.dir)


class WindowsRetryStore(CarefulStore):
    def write(self, key: Key, data: bytes) -> None:
        temp = self.synced_temp(key, data)
        try:
            _platform.retry_sharing_violations(lambda: os.replace(temp, self.name(key)))
        except OSError:
            os.remove(temp)
            raise
        _fsync_dir(self.dir)


class RetriesForeverStore(CarefulStore):
    def write(self, key: Key, data: bytes) -> None:
        temp = self.synced_temp(key, data)
        while True:
            try:
                os.replace(temp, self.name(key))
                break
            except PermissionError:  # "the virus scanner will let go eventually"
                time.sleep(0.01)
        _fsync_dir(self.dir)


def careful(path: str) -> CarefulStore:
    """The correct control store."""
    return CarefulStore(path)


def in_place(path: str) -> CarefulStore:
    """D1: the offset file is written in place."""
    return InPlaceStore(path)


def acked_before_written(path: str) -> CarefulStore:
    """D2: saves are acknowledged before they are written."""
    return AckedBeforeWrittenStore(path)


def temp_listed(path: str) -> CarefulStore:
    """D4: a leftover temp file breaks list_all."""
    return TempListedStore(path)


def exclusive_temp(path: str) -> CarefulStore:
    """D4: a leftover temp file blocks later saves."""
    return ExclusiveTempStore(path)


def stale_lock(path: str) -> CarefulStore:
    """D5: a killed holder's lock file stops everyone."""
    return StaleLockStore(path)


def leaked_lock(path: str) -> CarefulStore:
    """Never releases its per-key lock file: the second save of a key hangs."""
    return LeakedLockStore(path)


def swallows_errors(path: str) -> CarefulStore:
    """F2: I/O errors in save are swallowed."""
    return SwallowsErrorsStore(path)


def truncates_first(path: str) -> CarefulStore:
    """F2: an error mid-save destroys the old value."""
    return TruncatesFirstStore(path)


def early_bound(path: str) -> CarefulStore:
    """Correct, with functions bound at import: seen only through audit events."""
    return EarlyBoundStore(path)


def windows_retry(path: str) -> CarefulStore:
    """Correct: a bounded retry of sharing violations (the reference store's function)."""
    return WindowsRetryStore(path)


def retries_forever(path: str) -> CarefulStore:
    """F2: an unbounded retry of os.replace on PermissionError."""
    return RetriesForeverStore(path)
