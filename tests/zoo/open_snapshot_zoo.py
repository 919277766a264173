"""P2 stores that act on what they read when they opened, and raise once another handle changed
the store (class 5 of issue 19).

Each answers every load and listing fresh from the files (no stale read to see) and keeps one
thing from its open: the next free row id, or the set of stored keys. Once another handle (in
this process or another) has changed the store, a save that relies on that snapshot raises: a
freshness defect of P2's, though the save alone (C1) is fine. The machine must show it as P2,
with both handles' steps, not void P2's examples as "the store's own save; see C1".

- :class:`NextIdAtOpen`: each key is a row ``{id}.row`` holding ``topic consumer offset``; a new
  key takes the next id, counted once at open. A row another handle created since takes that
  id, and the exclusive create raises ``FileExistsError`` (an ``INSERT`` with an id from a
  counter cached at open, hitting the primary key).
- :class:`KeySetAtOpen`: the keys present at open are "known"; a save of an unknown key creates
  its file exclusively ("insert"), of a known one replaces it ("update"). A key another handle
  saved since is still unknown here, and the insert raises ``FileExistsError``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

from lance_offsets._domain import check_key, check_offset

from ._base import DirStore

Key = tuple[int, int]
_ROW = re.compile(r"(0|[1-9][0-9]*)\.row")


class NextIdAtOpen(DirStore):
    """Rows with ids; the next free id is counted at open and trusted from then on."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        ids = [int(m[1]) for name in os.listdir(path) if (m := _ROW.fullmatch(name))]
        self.next_id = max(ids, default=0) + 1

    def _rows(self) -> dict[Key, tuple[str, int]]:
        rows = {}
        for name in os.listdir(self.path):
            if _ROW.fullmatch(name):
                full = os.path.join(self.path, name)
                with contextlib.suppress(FileNotFoundError), open(full, "rb") as fh:
                    topic, consumer, offset = (int(x) for x in fh.read().split())
                    rows[(topic, consumer)] = (full, offset)
        return rows

    def _put(self, file: str, key: Key, offset: int, *, new: bool) -> None:
        data = b"%d %d %d\n" % (*key, offset)
        if new:  # an insert: the id must be free
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, file)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        self._open_check()
        row = self._rows().get(key)
        return None if row is None else row[1]

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._open_check()
        row = self._rows().get(key)
        if row is not None:
            self._put(row[0], key, value, new=False)
            return
        self._put(os.path.join(self.path, f"{self.next_id}.row"), key, value, new=True)
        self.next_id += 1

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        self._open_check()
        row = self._rows().get(key)
        if row is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(row[0])

    def list_all(self) -> dict[Key, int]:
        self._open_check()
        return {key: offset for key, (_, offset) in self._rows().items()}


class KeySetAtOpen(DirStore):
    """Inserts keys it did not see at open with an exclusive create, updates the others."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.known = {key for name in os.listdir(path) if (key := self.key_of(name))}

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._open_check()
        file = self.file_of(key)
        if key in self.known:
            self.write(file, value)
            return
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"%d\n" % value)
        self.known.add(key)
