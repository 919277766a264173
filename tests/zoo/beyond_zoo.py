"""Stores that break outside ``save``: in ``delete``, during open, or on a damaged log.

Each keeps the contract except for one defect, the kind the issue found in real libraries:

- ``swallowing_delete`` (F2): ``delete`` wraps its unlink in ``try/except OSError: pass``, so an
  I/O error is reported as success while the offset stays. Otherwise :class:`CarefulStore`.
- ``config_rewrite`` (D2): every open rewrites a small ``store.json`` in place (truncate, then
  write, no fsync, no rename) to record the format version, and refuses to open without a valid
  one; a kill during open leaves it empty, and the store cannot open again.
- ``skipping_log`` (D4, damage after a kill): saves append checksummed records to a log, and a
  clean close compacts the log into a strict snapshot (a record count and a checksum at its end)
  and empties it, so F1, which damages only what a clean close leaves, never sees a record in
  the log. Its replay skips a record that does not verify and goes on: after a kill, a damaged
  log silently brings back older values, or none.

Use them as ``zoo.beyond_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterator

import portalocker

from .stress_crash_zoo import CarefulStore, Key, _fsync_dir


class SwallowingDelete(CarefulStore):
    """F2: a failed unlink is ignored ("best effort cleanup"), and delete returns."""

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self.locked((topic_id, consumer_id)):
            try:  # noqa: SIM105 - the defect, spelled the way real code spells it
                os.remove(self.name((topic_id, consumer_id)))
            except OSError:
                pass
            _fsync_dir(self.dir)


def swallowing_delete(path: str) -> SwallowingDelete:
    return SwallowingDelete(path)


_CONFIG = "store.json"


class ConfigRewrite(CarefulStore):
    """D2: each open records itself in ``store.json`` by rewriting it in place ("it is tiny"):
    truncate, write, no fsync, no rename; an open that finds it invalid refuses to go on. A kill
    between the truncate and the write leaves it empty, and the store cannot open again."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        config = os.path.join(self.dir, _CONFIG)
        opened = 0
        if os.path.exists(config):
            with open(config, encoding="utf-8") as fh:
                text = fh.read()
            try:
                opened = int(json.loads(text)["opened"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"corrupt store config {config!r}: {text!r}") from exc
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, json.dumps({"format": 1, "opened": opened + 1}).encode())
        finally:
            os.close(fd)


def config_rewrite(path: str) -> ConfigRewrite:
    return ConfigRewrite(path)


_LOG = "offsets.log"
_SNAP = "offsets.snap"


def _record(key: Key, offset: int | None) -> bytes:
    body = f"{key[0]} {key[1]} {'-' if offset is None else offset}"
    return f"{body} {zlib.crc32(body.encode()):08x}\n".encode()


def _parse_record(line: bytes) -> tuple[Key, int | None] | None:
    """A record's key and offset (None: deleted), or None if it does not verify."""
    body, _, crc = line.decode("ascii", "replace").rpartition(" ")
    parts = body.split(" ")
    if len(parts) != 3 or crc != f"{zlib.crc32(body.encode()):08x}":
        return None
    topic, consumer, value = parts
    return (int(topic), int(consumer)), None if value == "-" else int(value)


class SkippingLog:
    """A log of checksummed records, compacted into a snapshot on close (see the module doc)."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.dir = os.path.realpath(path)
        self.log = os.path.join(self.dir, _LOG)
        self.snap = os.path.join(self.dir, _SNAP)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fh = open(os.path.join(self.dir, "offsets.lock"), "a")  # noqa: SIM115 - closed below
        try:
            portalocker.lock(fh, portalocker.LOCK_EX)
            try:
                yield
            finally:
                portalocker.unlock(fh)
        finally:
            # After the log's fsync the change is made: a failing close of the lock file
            # cannot undo it, and raising would tell the caller it did not happen.
            with contextlib.suppress(OSError):
                fh.close()

    def _snapshot(self) -> dict[Key, int]:
        try:
            with open(self.snap, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return {}
        lines = data.split(b"\n")
        body = b"".join(line + b"\n" for line in lines[:-2])
        if lines[-1] != b"" or lines[-2] != f"end {zlib.crc32(body):08x}".encode():
            raise ValueError(f"corrupt snapshot {self.snap!r}")
        state = {}
        for line in lines[:-2]:
            parsed = _parse_record(line)
            if parsed is None or parsed[1] is None:
                raise ValueError(f"corrupt snapshot record {line!r} in {self.snap!r}")
            state[parsed[0]] = parsed[1]
        return state

    def _state(self) -> dict[Key, int]:
        state = self._snapshot()
        try:
            with open(self.log, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return state
        for line in data.split(b"\n")[:-1]:  # the last piece is "" or a torn tail: not a record
            parsed = _parse_record(line)
            if parsed is None:
                continue  # the defect: a damaged record is skipped, and replay goes on
            key, value = parsed
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        return state

    def _cut_torn_tail(self) -> None:
        """Drop a torn last record (a write a crash cut short) before appending after it."""
        with open(self.log, "rb") as fh:
            data = fh.read()
        if data and not data.endswith(b"\n"):
            fd = os.open(self.log, os.O_WRONLY)
            try:
                os.ftruncate(fd, data.rfind(b"\n") + 1)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _append(self, data: bytes) -> None:
        created = not os.path.exists(self.log)
        if not created:
            self._cut_torn_tail()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        with contextlib.suppress(OSError):  # the record is durable: this is the commit point
            os.close(fd)
        if created:
            _fsync_dir(self.dir)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        with self.locked():
            self._append(_record((topic_id, consumer_id), offset))

    def delete(self, topic_id: int, consumer_id: int) -> None:
        with self.locked():
            self._append(_record((topic_id, consumer_id), None))

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        with self.locked():
            return self._state().get((topic_id, consumer_id))

    def list_all(self) -> dict[Key, int]:
        with self.locked():
            return dict(sorted(self._state().items()))

    def __enter__(self) -> SkippingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Compact: the snapshot replaces the log's records, then the log is emptied."""
        with self.locked():
            state = self._state()
            body = b"".join(_record(key, value) for key, value in sorted(state.items()))
            temp = self.snap + ".tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, body + f"end {zlib.crc32(body):08x}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.snap)
            _fsync_dir(self.dir)
            if os.path.exists(self.log):
                os.truncate(self.log, 0)
                fd = os.open(self.log, os.O_WRONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def skipping_log(path: str) -> SkippingLog:
    return SkippingLog(path)
