"""Stores that commit through calls beyond write and rename: ``link(2)`` and a shared mapping.

Each pair is a control and the same store missing one durability step, for D3:

- ``link_commit``: every save is a new version file, ``<topic>-<consumer>.<seq>``, made by
  ``link(2)`` from a fully written and fsynced temporary file. ``link`` fails if the name exists
  (create-if-absent: two writers never clobber one version), then the directory is fsynced and
  older versions are removed. A delete is a version holding ``-``. ``link_commit_no_dir_fsync``
  skips the directory fsync: a power cut can undo the link, and the older version comes back.
- ``mmap_msync``: one file of fixed 32-byte slots, written through a shared writable mapping
  and ``msync``-ed (``mmap.flush``) before a save returns. ``mmap_no_msync`` never flushes: the
  kernel writes the dirty pages back when it likes, so a power cut can keep any of them or none.

The file both mmap stores map is made at open (sized with ``ftruncate``, fsynced, its directory
fsynced), so only the slots' writes are in doubt.

Use them as ``zoo.commit_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(data: bytes, path: str) -> int | None:
    if data == b"-\n":
        return None
    if not data.endswith(b"\n") or not data[:-1].isdigit():
        raise ValueError(f"corrupt offset version {path!r}: {data!r}")
    return int(data)


class LinkCommitStore:
    """Versions made visible by ``link(2)`` from a synced temporary file (see the module)."""

    def __init__(self, path: str, *, dir_sync: bool = True) -> None:
        self._dir = os.path.realpath(path)
        self._dir_sync = dir_sync

    def _versions(self) -> dict[Key, list[int]]:
        found: dict[Key, list[int]] = {}
        for name in os.listdir(self._dir):
            stem, dot, seq = name.rpartition(".")
            topic, dash, consumer = stem.partition("-")
            if dot and dash and seq.isdigit() and topic.isdigit() and consumer.isdigit():
                found.setdefault((int(topic), int(consumer)), []).append(int(seq))
        return {key: sorted(seqs) for key, seqs in found.items()}

    def _name(self, key: Key, seq: int) -> str:
        return os.path.join(self._dir, f"{key[0]}-{key[1]}.{seq:020d}")

    def _read(self, key: Key, seq: int) -> int | None:
        path = self._name(key, seq)
        with open(path, "rb") as fh:
            return _parse(fh.read(), path)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        seqs = self._versions().get(key)
        return self._read(key, seqs[-1]) if seqs else None

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self._commit(check_key(topic_id, consumer_id), f"{check_offset(offset)}\n".encode())

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        if key in self._versions():
            self._commit(key, b"-\n")

    def _commit(self, key: Key, data: bytes) -> None:
        tmp = os.path.join(self._dir, f".tmp-{os.getpid()}-{key[0]}-{key[1]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        older = self._versions().get(key, [])
        seq = (older[-1] + 1) if older else 1
        while True:
            try:
                os.link(tmp, self._name(key, seq))  # create-if-absent: never over a version
                break
            except FileExistsError:
                seq += 1
        os.remove(tmp)
        if self._dir_sync:
            _fsync_dir(self._dir)  # DEFECT when skipped: the link may be undone
        for old in older:  # the new version is durable: the old ones may go
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._name(key, old))

    def list_all(self) -> dict[Key, int]:
        found = {}
        for key, seqs in self._versions().items():
            value = self._read(key, seqs[-1])
            if value is not None:
                found[key] = value
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> LinkCommitStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def link_commit(path: str) -> LinkCommitStore:
    """The control: a version linked from a synced temporary file, then the directory fsynced."""
    return LinkCommitStore(path)


def link_commit_no_dir_fsync(path: str) -> LinkCommitStore:
    """DEFECT: the directory is never fsynced after the link (see the module)."""
    return LinkCommitStore(path, dir_sync=False)


#: A slot: topic id, consumer id, offset, and a used flag (1) with padding.
_SLOT = struct.Struct("<IQQQ4x")
_SLOTS = 256
_FILE = "offsets.slots"


class MmapSlotStore:
    """Offsets in fixed slots of one file, written through a shared mapping (see the module)."""

    def __init__(self, path: str, *, msync: bool = True) -> None:
        self._path = os.path.join(path, _FILE)
        self._msync = msync
        size = _SLOT.size * _SLOTS
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
                os.fsync(fd)
                _fsync_dir(path)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def _slots(self) -> dict[Key, tuple[int, int]]:
        """Each used slot's key, with its index and offset."""
        found = {}
        for index in range(_SLOTS):
            topic, consumer, offset, used = _SLOT.unpack_from(self._map, index * _SLOT.size)
            if used == 1:
                found[(topic, consumer)] = (index, offset)
            elif used != 0:
                raise ValueError(f"corrupt slot {index} in {self._path!r}: used flag {used}")
        return found

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        slot = self._slots().get(check_key(topic_id, consumer_id))
        return None if slot is None else slot[1]

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key, value = check_key(topic_id, consumer_id), check_offset(offset)
        slots = self._slots()
        if key in slots:
            index = slots[key][0]
        else:
            used = {i for i, _ in slots.values()}
            index = next(i for i in range(_SLOTS) if i not in used)
        _SLOT.pack_into(self._map, index * _SLOT.size, *key, value, 1)
        self._flush()

    def delete(self, topic_id: int, consumer_id: int) -> None:
        slot = self._slots().get(check_key(topic_id, consumer_id))
        if slot is not None:
            _SLOT.pack_into(self._map, slot[0] * _SLOT.size, 0, 0, 0, 0)
            self._flush()

    def _flush(self) -> None:
        if self._msync:
            self._map.flush()  # msync(MS_SYNC): DEFECT when skipped, the pages stay dirty

    def list_all(self) -> dict[Key, int]:
        return {key: offset for key, (_, offset) in self._slots().items()}

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()

    def __enter__(self) -> MmapSlotStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def mmap_msync(path: str) -> MmapSlotStore:
    """The control: each save's slot is msync-ed before the save returns."""
    return MmapSlotStore(path)


def mmap_no_msync(path: str) -> MmapSlotStore:
    """DEFECT: never msyncs; the dirty pages reach the disk whenever the kernel likes."""
    return MmapSlotStore(path, msync=False)
