"""An offset store outside the package, with its own layout: one JSON file, replaced atomically.

``{path}/offsets.json`` holds ``{"offsets": {"<topic_id>:<consumer_id>": offset, ...}}``. A save
locks ``{path}/offsets.lock`` (portalocker), reads the file, writes a unique temp file, fsyncs it,
``os.replace``s it over the old one and fsyncs the directory. Nothing is cached, so every handle
and every process sees every commit. A file that does not parse, or holds anything but valid
keys and u64 offsets, raises ValueError naming the file: never None for a damaged store.

Check it (from this folder)::

    lance-offsets check jsonfile_store:factory
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import portalocker

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]


class JsonFileStore:
    """Every offset in one JSON document."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.file = os.path.join(path, "offsets.json")
        self.lock_file = os.path.join(path, "offsets.lock")
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"JsonFileStore on {self.path!r} is closed")

    def _read(self) -> dict[Key, int]:
        try:
            with open(self.file, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw.decode("utf-8"))
            found = {}
            for name, offset in document["offsets"].items():
                topic, _, consumer = name.partition(":")
                key = check_key(int(topic), int(consumer))
                found[key] = check_offset(offset)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"corrupt offsets file {self.file!r}: {exc}") from exc
        return found

    def _write(self, offsets: dict[Key, int]) -> None:
        document = {"offsets": {f"{t}:{c}": v for (t, c), v in sorted(offsets.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".offsets-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(document).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.file)
        except BaseException:
            os.unlink(tmp)
            raise
        if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
            dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _update(self, key: Key, offset: int | None) -> None:
        with portalocker.Lock(self.lock_file, mode="a", flags=portalocker.LOCK_EX):
            offsets = self._read()
            if offset is None:
                if key not in offsets:
                    return
                del offsets[key]
            else:
                offsets[key] = offset
            self._write(offsets)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        self._check_open()
        return self._read().get(key)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._check_open()
        self._update(key, value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        self._check_open()
        self._update(key, None)

    def list_all(self) -> dict[Key, int]:
        self._check_open()
        return self._read()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> JsonFileStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def factory(path: str) -> JsonFileStore:
    """The plug-in form: ``factory(path)``. It declares nothing, so it is held to everything."""
    return JsonFileStore(path)
