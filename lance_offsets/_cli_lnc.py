"""``lance-offsets import-lnc``: move an lnc-client offsets directory into our lock-file store.

lnc-client's ``FileOffsetStore`` keeps ``{dir}/{consumer}_{topic}.offset`` files holding JSON
``{"consumer": str, "topic_id": int, "topic_name": str | null, "offset": int}``. The file name is
lossy (``a/b`` and ``a_b`` share one), so the key is read from the JSON, and mapped as the drop-in
:class:`lance_offsets.lnc.LanceOffsetStore` maps it (:mod:`._lnc_keys`): after the import the
drop-in, pointed at the target base directory, continues where lnc-client stopped.

Like ``import``, the whole directory is validated and the changes computed before anything is
written; bad input changes nothing, and the error names the file and the value. ``.tmp`` files
are lnc-client saves that were interrupted or in flight: they are reported and skipped, never
imported (their offset was never acknowledged). Does not need lnc-client installed.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from ._cli_common import (
    EXIT_OK,
    CliError,
    add_lock_timeout,
    describe_key,
    open_existing,
    open_or_create,
    os_errors,
    require_base_dir,
    require_directory,
)
from ._domain import check_offset
from ._errors import OffsetStoreError
from ._lnc_keys import lnc_key

__all__ = ["LncEntry", "read_lnc_dir", "register"]

_FIELDS = ("consumer", "topic_id", "topic_name", "offset")


@dataclass(frozen=True)
class LncEntry:
    """One lnc-client offset file, mapped to our key."""

    file: str
    consumer: str
    topic: str  # how lnc-client named the topic: its name, or its id
    ours: str  # our consumer name
    key: tuple[int, int]
    offset: int


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import-lnc`` to the top-level parser's subcommands."""
    parser = subparsers.add_parser(
        "import-lnc",
        help="import an lnc-client offsets directory (FileOffsetStore) into BASE_DIR",
        description="Read every *.offset file lnc-client's FileOffsetStore wrote in LNC_DIR and "
        "set the same offsets under BASE_DIR, keyed as lance_offsets.lnc.LanceOffsetStore keys "
        "them (docs/async.md). Validates everything before writing anything.",
    )
    parser.add_argument("lnc_dir", metavar="LNC_DIR", help="lnc-client's offset_dir")
    parser.add_argument("--to", required=True, metavar="BASE_DIR", dest="base_dir")
    parser.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    add_lock_timeout(parser)
    parser.set_defaults(handler=_import_lnc)


def _field(path: str, data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise CliError(f"{path}: no {name!r} field (an lnc-client offset file has {_FIELDS})")
    return data[name]


def _entry(path: str) -> LncEntry:
    reading = os_errors(f"read the lnc-client offset file {path!r}", writing=False)
    with reading, open(path, "rb") as file:
        raw = file.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: not an lnc-client offset file: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a JSON object, got {raw[:60]!r}")
    consumer = _field(path, data, "consumer")
    topic_id = _field(path, data, "topic_id")
    topic_name = data.get("topic_name")
    offset = _field(path, data, "offset")
    if not isinstance(consumer, str):
        raise CliError(f"{path}: 'consumer' must be a string, got {consumer!r}")
    if topic_name is not None and not isinstance(topic_name, str):
        raise CliError(f"{path}: 'topic_name' must be a string or null, got {topic_name!r}")
    try:
        ours, key = lnc_key(consumer, topic_id, topic_name)
        if not topic_name:
            key = (_u32(topic_id), 0)
        offset = check_offset(offset)
    except (TypeError, ValueError) as exc:
        raise CliError(f"{path}: {exc}") from None
    topic = f"name {topic_name!r}" if topic_name else f"id {topic_id}"
    return LncEntry(os.path.basename(path), consumer, topic, ours, key, offset)


def _u32(value: int) -> int:
    if not 0 <= value < 2**32:
        raise ValueError(f"'topic_id' must be in 0..{2**32 - 1}, got {value}")
    return value


def read_lnc_dir(directory: str) -> tuple[list[LncEntry], list[str]]:
    """Return the entries of every ``*.offset`` file and the names of skipped ``.tmp`` files.

    :raises CliError: a file is not a valid lnc-client offset file, or two files hold one key.
    """
    require_directory(directory, "lnc-client offsets directory")
    with os_errors(f"list the lnc-client offsets directory {directory!r}", writing=False):
        names = sorted(os.listdir(directory))
    entries = [_entry(os.path.join(directory, n)) for n in names if n.endswith(".offset")]
    seen: dict[tuple[str, tuple[int, int]], LncEntry] = {}
    for entry in entries:
        other = seen.setdefault((entry.ours, entry.key), entry)
        if other is not entry and other.offset != entry.offset:
            raise CliError(
                f"{entry.file} and {other.file} both hold consumer {entry.consumer!r} topic "
                f"{entry.topic}, with offsets {other.offset} and {entry.offset}: keep one"
            )
    unique = list({(e.ours, e.key): e for e in entries}.values())
    return unique, [n for n in names if n.endswith(".tmp")]


def _import_lnc(args: argparse.Namespace) -> int:
    entries, leftovers = read_lnc_dir(args.lnc_dir)
    require_base_dir(args.base_dir)
    changes: list[tuple[LncEntry, int | None]] = []
    for entry in entries:
        store = open_existing(args.base_dir, entry.ours, args.lock_timeout)
        if store is None:
            current = None
        else:
            action = f"read the offset of {describe_key(entry.ours, *entry.key)}"
            with os_errors(action, writing=False, path=store.offset_path(*entry.key)):
                current = store.load(*entry.key)
        if current != entry.offset:
            changes.append((entry, current))
    verb = "would set" if args.dry_run else "set"
    for entry, current in changes:
        if not args.dry_run:
            action = f"write the offset of {describe_key(entry.ours, *entry.key)}"
            try:
                with (
                    open_or_create(args.base_dir, entry.ours, args.lock_timeout) as store,
                    os_errors(action, writing=True, path=store.offset_path(*entry.key)),
                ):
                    store.save(*entry.key, entry.offset)
            except (OffsetStoreError, CliError) as exc:
                raise CliError(f"{entry.file}: {exc}") from None
        was = "absent" if current is None else str(current)
        print(
            f"{verb} consumer {entry.consumer!r} topic {entry.topic} -> {entry.ours!r} "
            f"key {entry.key}: {was} -> {entry.offset}  ({entry.file})"
        )
    for name in leftovers:
        print(f"skipped {name}: an lnc-client save that never finished, not an offset")
    unchanged = len(entries) - len(changes)
    done = "would change" if args.dry_run else "changed"
    print(f"{len(entries)} lnc offset(s): {done} {len(changes)}, unchanged {unchanged}")
    return EXIT_OK
