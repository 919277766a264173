"""Stores that break outside ``save``: in ``delete``, during open, or on a damaged log.

Each keeps the contract except for one defect, the kind the issue found in real libraries:

- ``swallowing_delete`` (F2): ``delete`` wraps its unlink in ``try/except OSError: pass``, so an
  I/O error is reported as success while the offset stays. Otherwise :class:`CarefulStore`.
- ``config_rewrite`` (D2): every open rewrites a small ``store.json`` in place (truncate, then
  write, no fsync, no rename) to record the format version, and refuses to open without a valid
  one; a kill during open leaves it empty, and the store cannot open again.
- ``skipping_log`` (F1 after a kill): an append-only log of checksummed records whose replay
  skips a record that does not verify and goes on, so a damaged record silently brings back the
  key's older value. ``checked_log`` is the same log, loud on a bad record: the control.

Use them as ``zoo.beyond_zoo:<name>`` with the ``tests`` folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os

from .stress_crash_zoo import CarefulStore, _fsync_dir


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
