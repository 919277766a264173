r"""The lock-file store: one small file per key, on-disk compatible with the Rust client.

On-disk protocol (``docs/lockfile.md`` is the long version)::

    {base_dir}/{consumer_name}/topic-{t}-consumer-{c}.offset      decimal + "\n", replaced whole
    {base_dir}/{consumer_name}/topic-{t}-consumer-{c}.lock        empty; flock'ed, never unlinked
    {base_dir}/{consumer_name}/topic-{t}-consumer-{c}.offset.tmp  exists only inside a save

save:   lock .lock (re-checked, see _keylock) -> write .offset.tmp -> fsync it (F_FULLFSYNC on
        macOS) -> os.replace onto .offset -> fsync the directory (POSIX) -> unlock.
save_many: lock every key's .lock in key order -> write each .offset.tmp, start every writeback
        (Linux), fsync each -> os.replace each onto its .offset -> ONE directory fsync -> unlock.
        Per-key durable, not atomic: the renames of K files are K separate directory changes
        (see docs/lockfile.md).
delete: lock .lock -> remove .offset and any leftover .offset.tmp -> fsync the directory -> unlock.
load / list_all: read the .offset files without locking; a replace is atomic, so a reader sees
        the old file or the new one, whole.

Invariants:

1. An ``.offset`` file is never written in place: it is absent or holds the complete bytes of one
   save, which were on stable storage before the rename made them visible. So a file that does not
   parse is damage from outside, and it raises :class:`CorruptOffsetError` (never None).
2. Only the holder of the lock on the file currently at the ``.lock`` path touches the key's
   ``.offset.tmp`` and ``.offset``; the temp name can be shared (Rust uses the same one) because of
   that.
3. We never unlink a ``.lock`` file: another process may hold or wait on it. (The Rust client does
   unlink them; the re-check in :mod:`._keylock` keeps us correct when it does.)
4. Nothing is cached: every ``load`` reads the file, so another handle's or process's save or delete
   is seen at once (P2). ``(st_ino, st_mtime_ns, st_size)`` cannot prove a cached value fresh:
   inode numbers are reused as soon as a replace frees one, timestamps tick every few milliseconds,
   and all offsets of one width have one size.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from typing import Final

from . import _keylock, _layout, _platform
from ._batch import check_batch
from ._domain import check_key, check_offset
from ._errors import StoreClosedError

__all__ = ["LockFileOffsetStore"]

Key = tuple[int, int]

#: Binary mode matters on Windows: in text mode os.write would turn "\n" into "\r\n".
_BINARY: Final = getattr(os, "O_BINARY", 0)
_READ_FLAGS: Final = os.O_RDONLY | _BINARY
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY
#: list_all opens each file relative to one descriptor of the directory: the kernel then walks
#: one path component per file instead of the whole path (about 6% of a 10,000-key listing,
#: docs/performance.md). Windows has no ``dir_fd`` and lists by path.
_LIST_BY_DIR_FD: Final = os.open in os.supports_dir_fd and os.scandir in os.supports_fd
#: Temp files save_many holds open at once: bounds its descriptors whatever the batch's size
#: (a process may have only 1024); batches of 64 are what docs/performance.md measured.
_SYNC_WINDOW: Final = 64


class LockFileOffsetStore:
    """One file per key under ``base_dir/consumer_name``, compatible with the Rust client.

    Safe to share between threads, processes and the Rust client on a local file system. A handle
    holds no open files between calls; :meth:`close` only forbids further use.
    """

    def __init__(self, directory: str, consumer_name: str, lock_timeout: float | None) -> None:
        """Use :meth:`open`; this constructor assumes validated arguments and an existing dir."""
        self._dir = directory
        # Joined once: os.path.join per call is a measurable share of a load (bench_list_all.py).
        self._prefix = os.path.join(directory, "")
        self._consumer_name = consumer_name
        self._lock_timeout = lock_timeout
        self._closed = False

    @classmethod
    def open(
        cls,
        base_dir: str | os.PathLike[str],
        consumer_name: str,
        *,
        lock_timeout: float | None = None,
    ) -> LockFileOffsetStore:
        """Open (creating if needed) the offsets of ``consumer_name`` under ``base_dir``.

        :param base_dir: the directory shared by all consumers (the Rust client's ``base_dir``).
        :param consumer_name: a portable directory name; see
            :func:`lance_offsets._layout.check_consumer_name` for what is rejected.
        :param lock_timeout: seconds to wait for a key's lock before raising
            :class:`LockTimeoutError`; None (the default) waits as long as it takes, as the Rust
            client does.
        :raises InvalidConsumerNameError: the name could escape ``base_dir`` or is not portable;
            nothing is created.
        :raises TypeError, ValueError: ``lock_timeout`` is not None or a finite number >= 0.
        """
        name = _layout.check_consumer_name(consumer_name)
        timeout = _check_timeout(lock_timeout)
        base = os.fspath(base_dir)
        if not isinstance(base, str):
            raise TypeError(f"base_dir must be a str path, not {type(base).__name__} ({base!r})")
        directory = os.path.join(base, name)
        _make_dirs(directory)
        return cls(directory, name, timeout)

    @property
    def directory(self) -> str:
        """The directory holding this consumer's files (``base_dir/consumer_name``)."""
        return self._dir

    @property
    def consumer_name(self) -> str:
        """The consumer name given to :meth:`open`."""
        return self._consumer_name

    @property
    def lock_timeout(self) -> float | None:
        """Seconds a save or delete waits for a key's lock; None waits forever."""
        return self._lock_timeout

    def offset_path(self, topic_id: int, consumer_id: int) -> str:
        """Return the path of the key's offset file (whether or not it exists)."""
        topic, consumer = check_key(topic_id, consumer_id)
        return self._path(_layout.offset_name(topic, consumer))

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        """Return the key's committed offset, or None if it has none.

        Reads the file on every call (no cache), so it reflects every save and delete that
        returned, in any handle or process.

        :raises CorruptOffsetError: the file exists but does not hold an offset (names key, file).
        """
        key = check_key(topic_id, consumer_id)
        self._check_open()
        path = self._path(_layout.offset_name(*key))
        content = _read(path)
        return None if content is None else _layout.decode_offset(content, key, path)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        """Commit ``offset`` for the key, atomically and durably, under the key's lock.

        Survives: a process kill at any point (the key then holds the old or the new offset, never
        a mix, and a leftover temp file is ignored and later overwritten), on every platform. Power
        loss once this returns: on Linux (file and directory fsynced); on macOS where the file
        system honours F_FULLFSYNC (APFS and HFS+ on internal drives); on Windows the data is
        flushed and the rename is as durable as NTFS's metadata journal makes it, because Python
        cannot flush a directory there. On failure (ENOSPC, EIO, ...) the OSError
        is raised, the temp file is removed and the handle stays usable; the old offset remains,
        except when only the final directory fsync fails: then the new offset is in place but may
        not survive power loss, and saving again is the remedy.

        :raises LockTimeoutError: ``lock_timeout`` passed before the lock was free.
        """
        key = check_key(topic_id, consumer_id)
        data = _layout.encode_offset(check_offset(offset))
        self._check_open()
        target = self._path(_layout.offset_name(*key))
        tmp = self._path(_layout.tmp_name(*key))
        with self._locked(key):
            try:
                _write_synced(tmp, data)
                _platform.replace(tmp, target)
            except BaseException:
                # We hold the lock, so the temp file is ours to remove (invariant 2).
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            _platform.fsync_dir(self._dir)

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        """Commit every ``{(topic_id, consumer_id): offset}`` with one directory fsync.

        K offsets cost K file fsyncs and one directory fsync instead of K of each; on Linux every
        temp file's writeback is started before the first fsync, so the fsyncs find the data in
        flight and share journal commits (docs/performance.md). Each file keeps the per-key
        format, so the Rust client reads a batch like K saves. Per-key durable, not
        atomic (B1): a kill or power cut inside the call leaves each key with its old or its new
        offset, never a mix within a key; once it returns, every offset is durable. Validation of
        the whole mapping comes before any effect. On failure the error is raised and the temp
        files are removed; keys renamed before the failure hold their new offset (not durable
        until the next save of them if only the directory fsync failed).

        :raises LockTimeoutError: ``lock_timeout`` passed before one of the locks was free; no
            offset was written.
        """
        batch = check_batch(offsets)
        self._check_open()
        if not batch:
            return
        with contextlib.ExitStack() as locks:
            # Key order: two batches sharing keys take their locks in one order (no deadlock).
            for key, _ in batch:
                locks.enter_context(self._locked(key))
            temps = [self._path(_layout.tmp_name(*key)) for key, _ in batch]
            try:
                # Every temp durable before the first rename: a power cut can then only undo
                # renames, and each undone rename leaves that key's old offset whole.
                for start in range(0, len(batch), _SYNC_WINDOW):
                    window = slice(start, start + _SYNC_WINDOW)
                    _write_all_synced(temps[window], [offset for _, offset in batch[window]])
                for tmp, (key, _) in zip(temps, batch, strict=True):
                    _platform.replace(tmp, self._path(_layout.offset_name(*key)))
            except BaseException:
                for tmp in temps:  # we hold every lock, so every temp file is ours (invariant 2)
                    with contextlib.suppress(OSError):
                        os.remove(tmp)
                raise
            _platform.fsync_dir(self._dir)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        """Remove the key's offset under its lock; deleting an absent key is not an error.

        Survives a process kill at any point (the key is then present or absent) on every platform,
        and power loss once this returns on POSIX (the directory is fsynced). The ``.lock`` file
        stays: unlinking a file another process may hold would let two writers in at once.

        :raises LockTimeoutError: ``lock_timeout`` passed before the lock was free.
        """
        key = check_key(topic_id, consumer_id)
        self._check_open()
        target = self._path(_layout.offset_name(*key))
        tmp = self._path(_layout.tmp_name(*key))
        with self._locked(key):
            removed = _remove_if_present(target)
            # A temp file left by a killed save is harmless, but a delete is the natural moment to
            # clean it up, and holding the lock makes it ours to remove.
            _remove_if_present(tmp)
            if removed:
                _platform.fsync_dir(self._dir)

    def list_all(self) -> dict[Key, int]:
        """Return every committed key and offset found in the directory, as a fresh dict.

        Reads the directory and each offset file (no cache). Lock files, temp files, foreign and
        non-canonical names are skipped; a key deleted while listing is left out.

        :raises CorruptOffsetError: an offset file does not hold an offset (names key and file).
        """
        self._check_open()
        if not _LIST_BY_DIR_FD:  # pragma: no cover - Windows only
            return self._list_by_path()
        try:
            dir_fd = os.open(self._dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            # The directory was removed from outside (an operator wiping the consumer): no key has
            # an offset any more, just as a removed file makes load() return None.
            return {}
        found: dict[Key, int] = {}
        try:
            with os.scandir(dir_fd) as entries:
                for entry in entries:
                    name = entry.name
                    # Most foreign names (lock files) fail this cheap test before the full parse.
                    if not name.endswith(_layout.OFFSET_SUFFIX):
                        continue
                    key = _layout.parse_offset_name(name)
                    if key is None:
                        continue
                    content = _read(name, dir_fd)
                    if content is not None:
                        found[key] = _layout.decode_offset(content, key, self._prefix + name)
        finally:
            os.close(dir_fd)
        return found

    def _list_by_path(self) -> dict[Key, int]:  # pragma: no cover - Windows only
        """:meth:`list_all` where files cannot be opened relative to a directory descriptor."""
        found: dict[Key, int] = {}
        try:
            listing = os.scandir(self._dir)
        except FileNotFoundError:
            return found
        with listing as entries:
            for entry in entries:
                if not entry.name.endswith(_layout.OFFSET_SUFFIX):
                    continue
                key = _layout.parse_offset_name(entry.name)
                if key is None:
                    continue
                content = _read(entry.path)
                if content is not None:
                    found[key] = _layout.decode_offset(content, key, entry.path)
        return found

    def close(self) -> None:
        """Forbid further operations on this handle; closing twice is fine.

        Nothing is flushed here: every save was durable when it returned.
        """
        self._closed = True

    def __enter__(self) -> LockFileOffsetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LockFileOffsetStore {self._dir!r} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(repr(self))

    def _path(self, name: str) -> str:
        return self._prefix + name

    @contextlib.contextmanager
    def _locked(self, key: Key) -> Iterator[None]:
        fd = _keylock.acquire(self._path(_layout.lock_name(*key)), key, self._lock_timeout)
        try:
            yield
        finally:
            _keylock.release(fd)


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"lock_timeout must be None or a number, not {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"lock_timeout must be a finite number >= 0 or None, got {timeout!r}")
    return float(timeout)


def _make_dirs(directory: str) -> None:
    missing: list[str] = []
    path = os.path.abspath(directory)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    # Make each new directory's entry durable, or the first save could vanish with it.
    for created in reversed(missing):
        _platform.fsync_dir(os.path.dirname(created))


def _read(path: str, dir_fd: int | None = None) -> bytes | None:
    """Return the file's bytes (at most one byte past the size limit), or None if absent.

    :param dir_fd: a descriptor of the directory ``path`` (then a bare name) is relative to.
    """
    try:
        if dir_fd is None:
            fd = _platform.open_file(path, _READ_FLAGS)
        else:
            fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        # One read: a regular file on a local file system returns less than asked only at end of
        # file, and a file that fills the whole request is too large to be an offset anyway.
        return os.read(fd, _layout.MAX_OFFSET_FILE_BYTES + 1)
    finally:
        os.close(fd)


def _write_synced(path: str, data: bytes) -> None:
    fd = _platform.open_file(path, _WRITE_FLAGS, 0o666)
    try:
        _write_fully(fd, data)
        _platform.fsync_file(fd)
    finally:
        os.close(fd)


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        # os.write may write less than asked (a signal, a nearly full disk); finish the job.
        view = view[os.write(fd, view) :]


def _write_all_synced(paths: list[str], offsets: list[int]) -> None:
    """Write each offset to its temp path, start every writeback, then fsync each (save_many).

    Serial fsyncs of files written one by one each wait for their own data and journal commit;
    with every writeback already queued, the first fsync's commit carries the others' blocks and
    the later ones find little left to do. Only the fsyncs give durability; the hint changes
    nothing else, and an error of either is raised.
    """
    fds: list[int] = []
    try:
        for path, offset in zip(paths, offsets, strict=True):
            fds.append(_platform.open_file(path, _WRITE_FLAGS, 0o666))
            _write_fully(fds[-1], _layout.encode_offset(offset))
        for fd in fds:
            _platform.start_writeback(fd)
        for fd in fds:
            _platform.fsync_file(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _remove_if_present(path: str) -> bool:
    try:
        _platform.remove(path)
    except FileNotFoundError:
        return False
    return True
