"""Pure-Python stores that bind every file-system function when they are imported.

``from os import fsync, replace`` (or ``_fsync = os.fsync`` at import) keeps the function the
module found then: the Python interposer, which replaces ``os.fsync`` only while a trace is
active, never sees such calls (its audit hook sees the opens and renames, not the writes and
fsyncs). What reached the kernel is the ground truth (issue 19, class 1): the syscall shim sees
these calls, so a verdict must rest on its view, and a counterexample must be made of the store's
own operations, never of a view that missed its fsyncs.

One file per key, ``{topic}-{consumer}.offset`` holding ``value\\n``, written to a unique temp file
(pid and a counter in its name, so processes never share one), fsynced, renamed over, and the
directory fsynced; reads through ``io.open`` bound at import too. Factories
(``zoo.bound_zoo:<name>``, the ``tests`` folder on ``PYTHONPATH``):

- ``all_bound``: correct; passes D1, D2, D3, D4, D5 and F2.
- ``no_dir_fsync``: the same without the directory fsync after the rename: a power cut can undo
  an acknowledged save (D3 fails, with the shim's view of its own calls).
- ``fsync_bound_no_dir_fsync``: only ``fsync`` bound at import (every other call through
  ``os.``, which the interposer sees in full, with no audit event for the missing fsyncs) and no
  directory fsync: D3 fails; the interposer's view alone would also blame the file's data, whose
  fsyncs it never saw.
"""

from __future__ import annotations

import itertools
import os
import re
from io import open as _open_file
from os import O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_WRONLY
from os import close as _close
from os import fsync as _fsync
from os import getpid as _getpid
from os import listdir as _listdir
from os import makedirs as _makedirs
from os import open as _open
from os import remove as _remove
from os import replace as _replace
from os import write as _write
from typing import Final

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]

_NAME: Final = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\.offset")
_CONTENT: Final = re.compile(rb"(0|[1-9][0-9]*)\n")
_COUNTER = itertools.count()


class BoundStore:
    """Every file-system call through a function bound when this module was imported."""

    #: Whether a save fsyncs the directory after its rename.
    dir_fsync = True

    def __init__(self, path: str) -> None:
        _makedirs(path, exist_ok=True)
        self.dir = os.path.realpath(path)

    def _file(self, key: Key) -> str:
        return os.path.join(self.dir, f"{key[0]}-{key[1]}.offset")

    def _sync_dir(self) -> None:
        fd = _open(self.dir, O_RDONLY | O_DIRECTORY)
        try:
            _fsync(fd)
        finally:
            _close(fd)

    def _write(self, path: str, data: bytes) -> None:
        fd = _open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        try:
            _write(fd, data)
            _fsync(fd)
        finally:
            _close(fd)

    def _read(self, path: str) -> int | None:
        try:
            with _open_file(path, "rb") as handle:  # noqa: UP020 - bound at import, on purpose
                content = handle.read()
        except FileNotFoundError:
            return None
        match = _CONTENT.fullmatch(content)
        if match is None or int(match[1]) >= 2**64:
            raise ValueError(f"corrupt offset file {path!r}: {content[:24]!r}")
        return int(match[1])

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self._read(self._file(check_key(topic_id, consumer_id)))

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        target = self._file(check_key(topic_id, consumer_id))
        check_offset(offset)
        temp = f"{target}.{_getpid()}.{next(_COUNTER)}.tmp"
        self._write(temp, b"%d\n" % offset)
        _replace(temp, target)
        if self.dir_fsync:
            self._sync_dir()

    def delete(self, topic_id: int, consumer_id: int) -> None:
        try:
            _remove(self._file(check_key(topic_id, consumer_id)))
        except FileNotFoundError:
            return
        self._sync_dir()

    def list_all(self) -> dict[Key, int]:
        found: dict[Key, int] = {}
        for entry in sorted(_listdir(self.dir)):
            match = _NAME.fullmatch(entry)
            if match is not None:
                value = self._read(os.path.join(self.dir, entry))
                if value is not None:
                    found[int(match[1]), int(match[2])] = value
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> BoundStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NoDirFsyncStore(BoundStore):
    dir_fsync = False


class FsyncBoundStore(NoDirFsyncStore):
    """Only fsync bound at import; the rest through ``os.`` at call time (the interposer's)."""

    def _write(self, path: str, data: bytes) -> None:
        fd = os.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        try:
            os.write(fd, data)
            _fsync(fd)
        finally:
            os.close(fd)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        target = self._file(check_key(topic_id, consumer_id))
        check_offset(offset)
        temp = f"{target}.{_getpid()}.{next(_COUNTER)}.tmp"
        self._write(temp, b"%d\n" % offset)
        os.replace(temp, target)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        try:
            os.remove(self._file(check_key(topic_id, consumer_id)))
        except FileNotFoundError:
            return
        fd = os.open(self.dir, O_RDONLY | O_DIRECTORY)
        try:
            _fsync(fd)
        finally:
            os.close(fd)


def all_bound(path: str) -> BoundStore:
    """Correct, with every file-system function bound at import."""
    return BoundStore(path)


def no_dir_fsync(path: str) -> BoundStore:
    """D3: every function bound at import, and no directory fsync after the rename."""
    return NoDirFsyncStore(path)


def fsync_bound_no_dir_fsync(path: str) -> BoundStore:
    """D3: fsync alone bound at import, and no directory fsync after the rename."""
    return FsyncBoundStore(path)
