"""Stores that break only when several processes share them: one defect each (M1, M2).

Each keeps one decimal file per key (``topic-{t}-consumer-{c}.offset``, decimal + newline) and
raises ``ValueError`` on a file it cannot parse. :func:`careful` does it right (a per-key lock
file that is never deleted, a unique temp file, replace) and is the positive control beside the
reference store; every other factory is one defect seen in the wild:

- ``shared_tmp`` (M1): every writer of a key uses one fixed ``.tmp`` name and no lock, so a
  concurrent save renames a temp file another already renamed (``FileNotFoundError``) or renames
  one another just truncated (readers see an empty file).
- ``unlinking_delete`` (M2): the Rust seed's defect. Saves take ``flock`` on the ``.lock`` file and
  write the shared ``.offset.tmp`` under it; ``delete`` unlinks the offset *and the lock file*
  without taking the lock, so the next saver creates and locks a new lock file while the old
  holder is still inside: two "exclusive" writers on one temp file.
- ``stale_cache`` (M1): caches every offset it read or wrote and never looks at the file again,
  so it never notices another process's save or delete.
- ``rmw_json`` (M1): one JSON file for all keys, read, modified and rewritten (atomically, by
  replace) without a lock: concurrent saves to *different* keys lose each other's updates.
- ``thread_locked`` (M1): ``rmw_json`` with its read-modify-write under a ``threading.Lock``. Right
  for any number of threads and handles in one process, so every single-process property passes;
  the lock means nothing to another process, and concurrent saves from two lose updates.
- ``unlink_on_release`` (M1): ``rmw_json`` under a lock file that every release unlocks and then
  unlinks (as lock libraries that "clean up" their lock file do). A process that opened the lock
  file before the unlink and locks it after the unlock holds a lock on a file no longer in the
  directory, while the next process creates a new lock file and locks that: two holders, and
  their read-modify-writes lose each other's updates.
- ``polling_unlink`` (M1): ``unlink_on_release`` with a lock taken by polling (open the lock file,
  try a non-blocking lock, close and retry a little later), as polling lock libraries do. A
  waiter holds the file open only for the instant between its open and its try, so it ends up
  holding a lock file already unlinked only when that instant spans another's unlock and
  unlink: the same two holders, through a window of microseconds.
- ``exclusive_open`` (M1): locks the whole directory for as long as a handle is open (a
  single-process design, like a database's ``LOCK`` file), so a second process cannot even open
  it; the workers report it instead of a history.

Use them as ``zoo.stress_concurrency_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator

import portalocker

Key = tuple[int, int]


def _parse(data: bytes, path: str) -> int:
    text = data.decode("ascii", "replace")
    if not text.endswith("\n") or not text[:-1].isdigit():
        raise ValueError(f"corrupt offset file {path!r}: {data!r}")
    return int(text)


class _FileStore:
    """One file per key; the subclasses differ in how they write, delete and cache."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)

    def file_of(self, key: Key, suffix: str = ".offset") -> str:
        return os.path.join(self.path, f"topic-{key[0]}-consumer-{key[1]}{suffix}")

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        path = self.file_of((topic_id, consumer_id))
        try:
            with open(path, "rb") as handle:
                return _parse(handle.read(), path)
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def locked(self, key: Key) -> Iterator[None]:
        # The lock file is never deleted: deleting it is the defect unlinking_delete shows.
        with open(self.file_of(key, ".lock"), "a") as lock:
            portalocker.lock(lock, portalocker.LOCK_EX)
            try:
                yield
            finally:
                portalocker.unlock(lock)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = (topic_id, consumer_id)
        with self.locked(key):
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"%d\n" % offset)
            os.replace(tmp, self.file_of(key))

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = (topic_id, consumer_id)
        with self.locked(key), contextlib.suppress(FileNotFoundError):
            os.remove(self.file_of(key))

    def list_all(self) -> dict[Key, int]:
        found = {}
        for name in os.listdir(self.path):
            parts = name.removesuffix(".offset").split("-")
            if name.endswith(".offset") and len(parts) == 4:
                value = self.load(int(parts[1]), int(parts[3]))
                if value is not None:
                    found[int(parts[1]), int(parts[3])] = value
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> _FileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _SharedTmp(_FileStore):
    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        target = self.file_of((topic_id, consumer_id))
        with open(target + ".tmp", "wb") as handle:  # one name for every writer, no lock
            handle.write(b"%d\n" % offset)
        os.rename(target + ".tmp", target)


class _UnlinkingDelete(_FileStore):
    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        target = self.file_of((topic_id, consumer_id))
        # As the seed: create-or-truncate the lock file, flock it, write the shared temp, rename.
        with open(self.file_of((topic_id, consumer_id), ".lock"), "wb") as lock:
            portalocker.lock(lock, portalocker.LOCK_EX)
            with open(target + ".tmp", "wb") as handle:
                handle.write(b"%d\n" % offset)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(target + ".tmp", target)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        # As the seed: no lock, and the lock file goes too, held or not.
        for suffix in (".offset", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.file_of((topic_id, consumer_id), suffix))


class _StaleCache(_FileStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.cache: dict[Key, int] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = (topic_id, consumer_id)
        if key in self.cache:  # never re-reads: another process's save goes unseen
            return self.cache[key]
        value = super().load(topic_id, consumer_id)
        if value is not None:
            self.cache[key] = value
        return value

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self.cache[topic_id, consumer_id] = offset

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self.cache.pop((topic_id, consumer_id), None)


class _RmwJson(_FileStore):
    def _read_all(self) -> dict[str, int]:
        try:
            with open(os.path.join(self.path, "offsets.json"), "rb") as handle:
                data: dict[str, int] = json.load(handle)
                return data
        except FileNotFoundError:
            return {}

    def _write_all(self, data: dict[str, int]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, os.path.join(self.path, "offsets.json"))  # atomic, but no lock around it

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self._read_all().get(f"{topic_id}/{consumer_id}")

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        data = self._read_all()
        data[f"{topic_id}/{consumer_id}"] = offset
        self._write_all(data)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        data = self._read_all()
        if data.pop(f"{topic_id}/{consumer_id}", None) is not None:
            self._write_all(data)

    def list_all(self) -> dict[Key, int]:
        return {
            (int(k.split("/")[0]), int(k.split("/")[1])): v for k, v in self._read_all().items()
        }


class _ThreadLocked(_RmwJson):
    #: One per process, shared by every handle in it: it excludes threads, not processes.
    lock = threading.Lock()

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        with self.lock:
            super().save(topic_id, consumer_id, offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self.lock:
            super().delete(topic_id, consumer_id)


class _UnlinkOnRelease(_RmwJson):
    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        path = os.path.join(self.path, "offsets.lock")
        with open(path, "a") as lock:
            portalocker.lock(lock, portalocker.LOCK_EX)
            try:
                yield
            finally:
                portalocker.unlock(lock)
                # The defect: the lock file goes after the unlock, while others may have it open.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        with self._held():
            super().save(topic_id, consumer_id, offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self._held():
            super().delete(topic_id, consumer_id)


class _PollingUnlink(_UnlinkOnRelease):
    #: Seconds between two tries of the lock (a polling lock library's usual interval).
    POLL = 0.05

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        path = os.path.join(self.path, "offsets.lock")
        while True:
            lock = open(path, "a")  # noqa: SIM115 (closed below, or after the release)
            try:
                portalocker.lock(lock, portalocker.LOCK_EX | portalocker.LOCK_NB)
                break
            except portalocker.exceptions.LockException:
                lock.close()
                time.sleep(self.POLL)
        try:
            yield
        finally:
            portalocker.unlock(lock)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            lock.close()


class _ExclusiveOpen(_FileStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.lock = open(os.path.join(path, "LOCK"), "a")  # noqa: SIM115 (held until close)
        try:
            portalocker.lock(self.lock, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except Exception:
            self.lock.close()
            raise

    def close(self) -> None:
        self.lock.close()


def careful(path: str) -> _FileStore:
    """Correct: per-key lock never deleted, unique temp, replace (not durable: no fsync)."""
    return _FileStore(path)


def shared_tmp(path: str) -> _FileStore:
    """One fixed temp name per key and no lock (M1)."""
    return _SharedTmp(path)


def unlinking_delete(path: str) -> _FileStore:
    """Delete unlinks the lock file another process may hold (M2; the Rust seed's defect)."""
    return _UnlinkingDelete(path)


def stale_cache(path: str) -> _FileStore:
    """A cache that never notices other processes' writes (M1)."""
    return _StaleCache(path)


def rmw_json(path: str) -> _FileStore:
    """All keys in one JSON file, rewritten without a lock: lost updates (M1)."""
    return _RmwJson(path)


def thread_locked(path: str) -> _FileStore:
    """Read-modify-write under a per-process threading.Lock: lost updates across processes (M1)."""
    return _ThreadLocked(path)


def unlink_on_release(path: str) -> _FileStore:
    """Read-modify-write under a lock file unlinked after each unlock: two holders (M1)."""
    return _UnlinkOnRelease(path)


def polling_unlink(path: str) -> _FileStore:
    """As ``unlink_on_release``, the lock taken by polling: a window of microseconds (M1)."""
    return _PollingUnlink(path)


def exclusive_open(path: str) -> _FileStore:
    """Only one handle, in one process, at a time (M1: workers cannot open it)."""
    return _ExclusiveOpen(path)


# None of them fsyncs: they are here for M1/M2, not for the durability properties.
for _factory in (
    careful,
    shared_tmp,
    unlinking_delete,
    stale_cache,
    rmw_json,
    thread_locked,
    unlink_on_release,
    polling_unlink,
    exclusive_open,
):
    _factory.durable = False  # type: ignore[attr-defined]
