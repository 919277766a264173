"""The ``export`` and ``import`` subcommands of ``lance-offsets``, and their JSON format.

The format, version 1 (``docs/cli.md`` is the reference)::

    {
      "format": "lance-offsets/1",
      "consumers": {
        "billing": [{"topic_id": 1, "consumer_id": 2, "offset": 42}, ...],
        "audit": []
      }
    }

Every number is a JSON integer in the store's domain; keys are unique per consumer; unknown
fields are rejected (a typo must not silently drop data). A later version changes ``format``.

Import validates the whole file, then reads the current offsets and computes the changes, and
only then writes. Bad input therefore changes nothing. A write can still fail midway (a lock
timeout, a full disk): the changes before it stay, and re-running the same import finishes the
job, because it only writes what differs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any, Final

from ._cli_common import (
    EXIT_OK,
    CliError,
    add_lock_timeout,
    consumer_name_arg,
    describe_key,
    file_type,
    os_errors,
    print_error,
)
from ._cli_listing import read_consumer
from ._cli_os_errors import os_error_line
from ._cli_stores import STORE_HELP, Location, is_driver_error, open_location, store_arg
from ._domain import check_key, check_offset
from ._errors import CorruptOffsetError, InvalidConsumerNameError, OffsetStoreError
from ._layout import check_consumer_name
from ._protocol import OffsetStore

__all__ = ["FORMAT", "parse_document", "register"]

#: The ``format`` field of the export document this version writes and reads.
FORMAT: Final = "lance-offsets/1"
_ENTRY_FIELDS: Final = ("topic_id", "consumer_id", "offset")

Key = tuple[int, int]
Offsets = dict[str, dict[Key, int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` and ``import`` to the top-level parser's subcommands."""
    export = subparsers.add_parser(
        "export", help=f"write every offset (or one consumer's) as JSON ({FORMAT})"
    )
    export.add_argument("store", type=store_arg, metavar="STORE", help=STORE_HELP)
    export.add_argument("--consumer", type=consumer_name_arg, metavar="NAME", help="only this one")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout"
    )
    add_lock_timeout(export)
    export.set_defaults(handler=_export)

    import_ = subparsers.add_parser(
        "import",
        help="apply a JSON export to STORE (validated whole before any change)",
        description="--merge sets the offsets in FILE and keeps the others; --replace also "
        "deletes, in each consumer named in FILE, the offsets FILE does not list.",
    )
    import_.add_argument("store", type=store_arg, metavar="STORE", help=STORE_HELP)
    import_.add_argument("file", metavar="FILE", help="an export document, or - for stdin")
    mode = import_.add_mutually_exclusive_group(required=True)
    mode.add_argument("--merge", action="store_true", help="keep offsets FILE does not list")
    mode.add_argument("--replace", action="store_true", help="delete offsets FILE does not list")
    import_.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    add_lock_timeout(import_)
    import_.set_defaults(handler=_import)


def _export(args: argparse.Namespace) -> int:
    consumers: dict[str, list[dict[str, int]]] = {}
    with open_location(args.store, args.lock_timeout) as location:
        location.require()
        if args.consumer is not None and not location.has_consumer(args.consumer):
            raise CliError(f"no consumer {args.consumer!r} under {location.shown!r}")
        names = [args.consumer] if args.consumer is not None else location.consumers()
        damage: list[str] = []
        for name in names:
            found = read_consumer(location, name)
            damage.extend(d.message for d in found.damage)
            consumers[name] = [
                {"topic_id": t, "consumer_id": c, "offset": o}
                for (t, c), o in sorted(found.offsets.items())
            ]
    if damage:
        # A damaged value fails the whole export, each one named: a partial backup that looks
        # complete is worse than none.
        for message in damage[:-1]:
            print_error(message)
        raise CliError(f"{damage[-1]}; nothing was exported")
    text = json.dumps({"format": FORMAT, "consumers": consumers}, indent=2) + "\n"
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
    else:
        _write_atomically(args.output, text)
        count = sum(len(entries) for entries in consumers.values())
        sys.stderr.write(
            f"exported {count} offset(s) of {len(consumers)} consumer(s) to {args.output}\n"
        )
    return EXIT_OK


def _write_atomically(path: str, text: str) -> None:
    # Temp file beside the target, then replace: an interrupted export never leaves half a file
    # where a good backup used to be. The folder is checked first, so an error names what the
    # user typed, not our temp file.
    folder = os.path.dirname(os.path.abspath(path))
    mode = file_type(folder, "folder")
    if mode is None or not stat.S_ISDIR(mode):
        what = "no such directory" if mode is None else "not a directory:"
        raise CliError(f"cannot write {path}: {what} {folder}")
    if os.path.isdir(path):
        raise CliError(f"cannot write {path}: it is a directory")
    tmp = f"{path}.tmp-{os.getpid()}"
    with os_errors(f"write the export to {path!r}", writing=True):
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # it may never have been created
                os.remove(tmp)
            raise


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise CliError(f"duplicate key {name!r} in a JSON object")
        result[name] = value
    return result


def _no_constants(name: str) -> Any:
    raise CliError(f"{name} is not a valid offset (JSON integers only)")


def parse_document(text: str) -> Offsets:
    """Validate an export document and return ``{consumer: {(topic, consumer_id): offset}}``.

    :raises CliError: the first problem found, with its location (``consumers['x'][3].offset``).
    """
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(doc, dict):
        raise CliError("the document must be a JSON object with 'format' and 'consumers'")
    if doc.get("format") != FORMAT:
        raise CliError(f"unsupported format {doc.get('format')!r}; this version reads {FORMAT!r}")
    if set(doc) != {"format", "consumers"}:
        extra = sorted(set(doc) - {"format", "consumers"})
        raise CliError("'consumers' is missing" if not extra else f"unknown field(s) {extra}")
    consumers = doc["consumers"]
    if not isinstance(consumers, dict):
        raise CliError(f"'consumers' must be an object, not {type(consumers).__name__}")
    return {name: _parse_entries(name, entries) for name, entries in consumers.items()}


def _parse_entries(name: str, entries: object) -> dict[Key, int]:
    where = f"consumers[{name!r}]"
    try:
        check_consumer_name(name)
    except InvalidConsumerNameError as exc:
        raise CliError(f"{where}: {exc}") from None
    if not isinstance(entries, list):
        raise CliError(f"{where} must be a list, not {type(entries).__name__}")
    offsets: dict[Key, int] = {}
    for index, entry in enumerate(entries):
        here = f"{where}[{index}]"
        if not isinstance(entry, dict) or set(entry) != set(_ENTRY_FIELDS):
            raise CliError(
                f"{here} must be an object with exactly {list(_ENTRY_FIELDS)}: {entry!r}"
            )
        try:
            key = check_key(entry["topic_id"], entry["consumer_id"])
            offset = check_offset(entry["offset"])
        except (TypeError, ValueError) as exc:
            raise CliError(f"{here}: {exc}") from None
        if key in offsets:
            raise CliError(f"{here}: topic {key[0]} consumer id {key[1]} is listed twice")
        offsets[key] = offset
    return offsets


@dataclass(frozen=True)
class _Change:
    consumer: str
    key: Key
    old: str  # "none", a number, or "corrupt (...)"
    new: int | None  # None deletes

    def describe(self) -> str:
        what = f"consumer {self.consumer!r} topic {self.key[0]} consumer id {self.key[1]}"
        if self.new is None:
            return f"delete {what} (was {self.old})"
        return f"set {what}: {self.old} -> {self.new}"


def _read_current(location: Location, name: str, keys: set[Key]) -> dict[Key, str]:
    store = location.open_existing(name)
    if store is None:
        return {}
    current: dict[Key, str] = {}
    with os_errors(f"list the offsets of consumer {name!r}", writing=False):
        stored = location.stored_keys(store)
    # Key by key rather than list_all(): a corrupt value is reported and replaced, not fatal.
    for key in sorted(keys | set(stored)):
        action = f"read the offset of {describe_key(name, *key)}"
        try:
            with os_errors(action, writing=False, path=location.where(store, key)):
                offset = store.load(*key)
        except CorruptOffsetError as exc:
            current[key] = f"corrupt ({exc.reason})"
            continue
        if offset is not None:
            current[key] = str(offset)
    return current


def _plan(location: Location, wanted: Offsets, replace: bool) -> tuple[list[_Change], int]:
    changes: list[_Change] = []
    unchanged = 0
    for name in sorted(wanted):
        offsets = wanted[name]
        current = _read_current(location, name, set(offsets))
        for key, offset in sorted(offsets.items()):
            old = current.get(key, "none")
            if old == str(offset):
                unchanged += 1
            else:
                changes.append(_Change(name, key, old, offset))
        if replace:
            changes.extend(
                _Change(name, k, v, None) for k, v in current.items() if k not in offsets
            )
    return changes, unchanged


def _import(args: argparse.Namespace) -> int:
    with open_location(args.store, args.lock_timeout) as location:
        return _import_into(location, args)


def _import_into(location: Location, args: argparse.Namespace) -> int:
    location.require_writable()
    source = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
    except UnicodeDecodeError as exc:
        raise CliError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        action = f"read the import file {source!r}"
        raise CliError(os_error_line(exc, action, writing=False, path=source)) from None
    try:
        wanted = parse_document(text)
    except CliError as exc:
        raise CliError(f"{source}: {exc.message}; nothing was changed", exc.code) from None
    changes, unchanged = _plan(location, wanted, args.replace)
    if args.dry_run:
        for change in changes:
            sys.stdout.write(f"would {change.describe()}\n")
    else:
        # Each line once its change is durable: a failed import lists what it really did.
        _apply(location, sorted(wanted), changes)
    sets = sum(1 for c in changes if c.new is not None)
    summary = (
        f"{sets} set, {len(changes) - sets} deleted, {unchanged} unchanged "
        f"in {len(wanted)} consumer(s)"
    )
    sys.stderr.write(
        f"dry run: {summary}; nothing was changed\n"
        if args.dry_run
        else f"imported {source}: {summary}\n"
    )
    return EXIT_OK


def _apply(location: Location, names: list[str], changes: list[_Change]) -> None:
    done = 0
    stores: dict[str, OffsetStore] = {}

    def store_of(name: str) -> OffsetStore:
        if name not in stores:
            stores[name] = location.open_or_create(name)
        return stores[name]

    try:
        for change in changes:
            store = store_of(change.consumer)
            what = describe_key(change.consumer, *change.key)
            verb = "remove" if change.new is None else "write"
            where = location.where(store, change.key)
            with os_errors(f"{verb} the offset of {what}", writing=True, path=where):
                if change.new is None:
                    store.delete(*change.key)
                else:
                    store.save(*change.key, change.new)
            done += 1
            sys.stdout.write(f"{change.describe()}\n")
        # Every consumer the file names exists afterwards, even one with no offsets, so an export
        # of the result lists the same consumers (a database store has no empty consumers: there a
        # consumer exists while it has offsets). Last: a failed write must not leave empty ones.
        for name in names:
            store_of(name)
    except Exception as exc:
        if isinstance(exc, CliError):
            why = exc.message
        elif isinstance(exc, OffsetStoreError) or is_driver_error(exc):
            why = str(exc)
        else:
            raise
        after = (
            "no offset was changed"
            if done == 0
            else "the changes before it were applied; re-run the import to finish"
        )
        raise CliError(
            f"import stopped after {done} of {len(changes)} change(s): {why}; {after}"
        ) from exc
