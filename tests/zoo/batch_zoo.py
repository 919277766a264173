"""Stores whose ``save_many`` has one realistic defect each, and the controls (B1).

Single saves are correct everywhere here (they are the power-loss zoo's control protocol), so
only B1 can fail. Use them as ``zoo.batch_zoo:<name>`` with the ``tests`` folder on
``PYTHONPATH``. :data:`EXPECTED` says which part of B1 catches each: ``machine`` (one process),
``kill`` (a crash point inside the batch) or ``power`` (a power cut inside or after it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from lance_offsets._batch import check_batch
from lance_offsets._domain import check_key, check_offset

from .powerloss_zoo import ZooFileStore, _correct, _fsync_dir, _write

Key = tuple[int, int]


class BatchFileStore(ZooFileStore):
    """The control: write and fsync every temp, rename each, fsync the directory once."""

    def __init__(self, path: str) -> None:
        super().__init__(path, _correct)

    def _temps(self, batch: list[tuple[Key, int]], *, sync: bool = True) -> list[tuple[str, str]]:
        moves = []
        for key, offset in batch:
            target = self._path(*key)
            _write(target + ".tmp", b"%d\n" % offset, sync=sync)
            moves.append((target + ".tmp", target))
        return moves

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        moves = self._temps(check_batch(offsets))
        for tmp, target in moves:
            os.replace(tmp, target)
        _fsync_dir(self._dir)


class NoDirSyncBatch(BatchFileStore):
    """The batch skips the directory fsync ("each rename is atomic, that is enough"): a power
    cut after ``save_many`` returned can undo its renames."""

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        for tmp, target in self._temps(check_batch(offsets)):
            os.replace(tmp, target)  # DEFECT: no directory fsync after the renames


class UnsyncedBatchTemps(BatchFileStore):
    """The batch fsyncs the directory but not the temp files ("one fsync for all"): a power cut
    can leave a renamed file empty."""

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        for tmp, target in self._temps(check_batch(offsets), sync=False):  # DEFECT
            os.replace(tmp, target)
        _fsync_dir(self._dir)


class ClaimsAtomic(BatchFileStore):
    """Declares ``batch_atomic`` but renames one file after another, like the control: a kill
    between two renames leaves some keys new and some old."""

    batch_atomic = True  # DEFECT: K renames are not one atomic step


class IntentOnlyKillSafe(BatchFileStore):
    """Declares ``batch_atomic`` and keeps it under kills, not under power cuts.

    ``save_many`` writes and fsyncs every temp and an intent file listing the whole batch,
    renames the intent into place (the commit point), renames each temp, removes the intent and
    fsyncs the directory once; opening the store rolls a found intent forward. A killed process
    leaves all old (no intent yet) or all new (rolled forward). But until that one directory
    fsync the renames are pending, and a power cut may keep any of them: a key's rename without
    the intent's (or with the intent's removal) leaves the batch half done. The fix: fsync the
    directory after the intent's rename and again before removing it.
    """

    batch_atomic = True

    def __init__(self, path: str) -> None:
        super().__init__(path)
        intent = os.path.join(self._dir, _INTENT)
        try:
            with open(intent, "rb") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines:  # written and fsynced whole before its rename
            topic, consumer, offset = (int(word) for word in line.split())
            self.save(topic, consumer, offset)
        os.remove(intent)
        _fsync_dir(self._dir)

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        batch = check_batch(offsets)
        moves = self._temps(batch)
        intent = os.path.join(self._dir, _INTENT)
        _write(
            intent + ".tmp",
            b"".join(b"%d %d %d\n" % (*key, value) for key, value in batch),
            sync=True,
        )
        os.replace(intent + ".tmp", intent)  # committed, for a kill: a fresh open rolls forward
        for tmp, target in moves:
            os.replace(tmp, target)
        os.remove(intent)
        _fsync_dir(self._dir)  # DEFECT: one fsync for all: a power cut may keep any renames


#: The intent file of :class:`IntentOnlyKillSafe`: one ``topic consumer offset`` line per key.
_INTENT: Final = "batch.intent"


class ValidatesAsItWrites(BatchFileStore):
    """Checks each entry just before writing it: a bad entry late in the batch raises after the
    earlier keys were replaced."""

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        for key, offset in offsets.items():
            # DEFECT: each entry is checked just before its write, not the whole batch first.
            self.save(*check_key(*key), check_offset(offset))


class CachedBatch(BatchFileStore):
    """A per-handle read cache that ``save`` updates and ``save_many`` forgets: the handle
    keeps answering the values from before the batch."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._cache: dict[Key, int | None] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = (topic_id, consumer_id)
        if key not in self._cache:
            self._cache[key] = super().load(topic_id, consumer_id)
        return self._cache[key]

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self._cache[(topic_id, consumer_id)] = offset

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self._cache[(topic_id, consumer_id)] = None

    # save_many inherited: DEFECT, the cache is not told


#: Store name -> the part of B1 that must catch it.
EXPECTED: Final[dict[str, str]] = {
    "NoDirSyncBatch": "power",
    "UnsyncedBatchTemps": "power",
    "ClaimsAtomic": "kill",
    "IntentOnlyKillSafe": "power",
    "ValidatesAsItWrites": "machine",
    "CachedBatch": "machine",
}
