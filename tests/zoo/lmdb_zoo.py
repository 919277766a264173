"""LMDB stores for D3 (py-lmdb, ``pip install lmdb``): one control and one missing sync each.

LMDB commits a write transaction by writing its data pages (``pwrite``), ``fdatasync``-ing
them, then writing the meta page through a second descriptor opened with ``O_DSYNC`` (durable
when the write returns). Its ``lock.mdb`` is a reader table in shared memory, not data: the D3
recorder leaves it out. ``sync=False`` skips both syncs; ``metasync=False`` skips the meta
page's, so the last acknowledged commit may be lost. ``writemap=True`` writes the data through
a shared mapping, which strace cannot see: D3 is unverified for it.

LMDB creates ``data.mdb`` when the environment is first opened and never fsyncs the directory,
so a power cut after the first commit can undo the file's creation and every commit with it
(POSIX does not promise that a file's fsync persists its own directory entry; D3 records from
before the first open). The stores here fsync the directory once the environment is open, as a
store built on LMDB must; ``no_dir_fsync_at_open`` is LMDB as it comes, and fails D3.

Use them as ``zoo.lmdb_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import lmdb

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]
_KEY = struct.Struct(">IQ")  # big-endian: LMDB's byte order sorts keys as numbers


class ZooLmdbStore:
    """Offsets in one LMDB environment: key ``(topic, consumer)``, value the decimal offset."""

    #: LMDB refuses a second environment on one path in one process.
    handles_per_process = 1

    def __init__(self, path: str, *, dir_sync: bool = True, **flags: Any) -> None:
        os.makedirs(path, exist_ok=True)
        self._env = lmdb.open(path, map_size=1 << 24, max_dbs=0, **flags)
        if dir_sync:
            # mdb_env_open may have created data.mdb: make its directory entry durable.
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        with self._env.begin() as txn:
            value = txn.get(_KEY.pack(*check_key(topic_id, consumer_id)))
        return None if value is None else int(value)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key, value = _KEY.pack(*check_key(topic_id, consumer_id)), check_offset(offset)
        with self._env.begin(write=True) as txn:
            txn.put(key, str(value).encode())

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = _KEY.pack(*check_key(topic_id, consumer_id))
        with self._env.begin(write=True) as txn:
            txn.delete(key)

    def list_all(self) -> dict[Key, int]:
        with self._env.begin() as txn:
            return {_KEY.unpack(k): int(v) for k, v in txn.cursor()}

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> ZooLmdbStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Factory:
    handles_per_process = 1

    def __init__(self, **flags: Any) -> None:
        self._flags = flags

    def __call__(self, path: str) -> ZooLmdbStore:
        return ZooLmdbStore(path, **self._flags)


#: The control: LMDB's defaults (sync, metasync, no writemap).
correct = _Factory()
#: DEFECT: no fdatasync, and the meta page written without O_DSYNC: commits are not durable.
no_sync = _Factory(sync=False)
#: DEFECT: the meta page written without O_DSYNC: the last commit may be lost.
no_metasync = _Factory(metasync=False)
#: Correct, but writes through a shared writable mapping: invisible to strace (unverified).
writemap = _Factory(writemap=True)
#: DEFECT (LMDB's own): the directory never fsynced after the open created data.mdb.
no_dir_fsync_at_open = _Factory(dir_sync=False)
