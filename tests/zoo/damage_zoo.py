"""F1 stores that are loud on most damage and silent on one kind, cold only (class 6 of
issue 19).

A store that treats one particular damage as "no data" passes F1 unless that very damage is
drawn, in the variant that shows it. F1 must try every damage kind, cold and warm, in every
run, however few examples the profile gives it.

- :class:`EmptyFileIsAbsent`: one file per key; an empty file reads as "no offset" (a writer that
  truncates first and crashes, and a reader that says "nothing written yet"), while a cut or
  garbled file raises. Cold and warm both show it.
- :class:`EmptyDocumentIsEmpty`: every offset in one JSON document, beside a version file bumped
  by every write; a handle keeps the document it parsed and rereads it only when the version
  changed (a cheap freshness check, so another handle's commits are seen). An empty document
  reads as an empty store (``json.loads`` would raise, so the code special-cases it); any other
  unreadable document or version raises. Only cold damage shows it (a warm handle keeps serving
  the document it parsed, which is right), and only when the document alone is emptied (an
  emptied version file raises first).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from lance_offsets._domain import check_key, check_offset

from ._base import DirStore

Key = tuple[int, int]


class EmptyFileIsAbsent(DirStore):
    """An empty offset file reads as None; any other bad content raises."""

    def read(self, file: str) -> int | None:
        try:
            with open(file, "rb") as handle:
                if handle.read(1) == b"":
                    return None
        except FileNotFoundError:
            return None
        return super().read(file)


class EmptyDocumentIsEmpty:
    """All offsets in ``{path}/offsets.json``; an empty document is an empty store."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = os.path.join(path, "offsets.json")
        self.version_file = os.path.join(path, "version")
        os.makedirs(path, exist_ok=True)
        self.closed = False
        self.cached: tuple[int, dict[Key, int]] | None = None

    def _version(self) -> int:
        try:
            with open(self.version_file, "rb") as handle:
                return int(handle.read())  # an unreadable version raises: loud
        except FileNotFoundError:
            return 0

    def _read(self) -> dict[Key, int]:
        version = self._version()
        if self.cached is not None and self.cached[0] == version:
            return dict(self.cached[1])
        try:
            with open(self.file, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = b""
        if not data.strip():
            offsets: dict[Key, int] = {}  # "nothing saved yet"
        else:
            try:
                offsets = {(int(t), int(c)): int(o) for t, c, o in json.loads(data)}
            except (ValueError, TypeError) as exc:
                raise ValueError(f"corrupt offsets document {self.file!r}: {data[:20]!r}") from exc
        self.cached = (version, offsets)
        return dict(offsets)

    def _replace(self, file: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, file)

    def _write(self, offsets: dict[Key, int]) -> None:
        rows = sorted([t, c, o] for (t, c), o in offsets.items())
        self._replace(self.file, json.dumps(rows).encode("ascii"))
        version = self._version() + 1
        self._replace(self.version_file, b"%d" % version)
        self.cached = (version, dict(offsets))

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("store is closed")

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        self._check_open()
        return self._read().get(key)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._check_open()
        offsets = self._read()
        offsets[key] = value
        self._write(offsets)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        self._check_open()
        offsets = self._read()
        if offsets.pop(key, None) is not None:
            self._write(offsets)

    def list_all(self) -> dict[Key, int]:
        self._check_open()
        return self._read()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
