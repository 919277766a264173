"""A small correct store that the broken ones start from: one decimal file per key.

``{path}/{topic_id}_{consumer_id}.off`` holds ``decimal + "\\n"``, written to a unique temp file and
renamed over; no cache, so every handle and process sees every write at once. Each defect in
``defects.py`` overrides one piece of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import Any

from lance_offsets._domain import check_key, check_offset

_NAME = re.compile(r"(0|[1-9][0-9]*)_(0|[1-9][0-9]*)\.off")
_CONTENT = re.compile(rb"(0|[1-9][0-9]*)\n")


class DirStore:
    """One file per key under ``path``; strict parsing; closes like a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.closed = False

    # -- pieces the defects override --------------------------------------------------------
    def file_of(self, key: tuple[int, int]) -> str:
        return os.path.join(self.path, f"{key[0]}_{key[1]}.off")

    def key_of(self, name: str) -> tuple[int, int] | None:
        match = _NAME.fullmatch(name)
        return None if match is None else (int(match[1]), int(match[2]))

    def read(self, file: str) -> int | None:
        try:
            with open(file, "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            return None
        match = _CONTENT.fullmatch(content)
        if match is None or int(match[1]) >= 2**64:
            raise ValueError(f"corrupt offset file {file!r}: {content[:20]!r}")
        return int(match[1])

    def write(self, file: str, offset: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"%d\n" % offset)
        os.replace(tmp, file)

    def _open_check(self) -> None:
        if self.closed:
            raise ValueError("store is closed")

    # -- the protocol -----------------------------------------------------------------------
    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        self._open_check()
        return self.read(self.file_of(key))

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        value = check_offset(offset)
        self._open_check()
        self.write(self.file_of(key), value)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        self._open_check()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.file_of(key))

    def list_all(self) -> dict[tuple[int, int], int]:
        self._open_check()
        found = {}
        for name in os.listdir(self.path):
            key = self.key_of(name)
            if key is not None:
                value = self.read(os.path.join(self.path, name))
                if value is not None:
                    found[key] = value
        return found

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
