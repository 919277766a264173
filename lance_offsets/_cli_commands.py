"""The ``ls``, ``get``, ``set`` and ``rm`` subcommands of ``lance-offsets``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    add_lock_timeout,
    consumer_id_arg,
    consumer_name_arg,
    describe_key,
    offset_arg,
    os_errors,
    print_error,
    topic_id_arg,
)
from ._cli_listing import read_consumer
from ._cli_stores import STORE_HELP, Location, open_location, store_arg
from ._errors import CorruptOffsetError, OffsetStoreError
from ._protocol import OffsetStore

__all__ = ["register"]

Key = tuple[int, int]

_HEADER = ("consumer", "topic", "consumer id", "offset")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ls``, ``get``, ``set`` and ``rm`` to the top-level parser's subcommands."""
    ls = subparsers.add_parser(
        "ls",
        help="list the offsets of every consumer (or one) in STORE",
        description="List offsets as a table: consumer, topic, consumer id, offset.",
    )
    ls.add_argument("store", type=store_arg, metavar="STORE", help=STORE_HELP)
    ls.add_argument("--consumer", type=consumer_name_arg, metavar="NAME", help="only this one")
    ls.add_argument("--json", action="store_true", help="print a JSON array of rows instead")
    add_lock_timeout(ls)
    ls.set_defaults(handler=_ls)

    get = subparsers.add_parser("get", help="print one offset (exit 1 if there is none)")
    _add_key_arguments(get)
    get.set_defaults(handler=_get)

    set_ = subparsers.add_parser("set", help="store one offset durably (creates the consumer)")
    _add_key_arguments(set_)
    set_.add_argument("offset", type=offset_arg, metavar="OFFSET")
    set_.set_defaults(handler=_set)

    rm = subparsers.add_parser(
        "rm",
        help="delete one offset, or every offset of a consumer with --all",
        usage="%(prog)s [-h] [--lock-timeout SECONDS] STORE CONSUMER (TOPIC CONSUMER_ID | --all)",
    )
    rm.add_argument("store", type=store_arg, metavar="STORE", help=STORE_HELP)
    rm.add_argument("consumer", type=consumer_name_arg, metavar="CONSUMER")
    rm.add_argument("topic_id", type=_rm_topic_arg, metavar="TOPIC", nargs="?")
    rm.add_argument("consumer_id", type=consumer_id_arg, metavar="CONSUMER_ID", nargs="?")
    rm.add_argument("--all", action="store_true", help="delete every offset of CONSUMER")
    add_lock_timeout(rm)
    rm.set_defaults(handler=_rm, parser=rm)


def _rm_topic_arg(text: str) -> int:
    if text == "--all":
        # After "--" every word is a name or a number (POSIX); a consumer named like an option
        # is reached with the option first.
        raise argparse.ArgumentTypeError(
            "'--all' after '--' reads as a topic; put it first: rm STORE --all -- CONSUMER"
        )
    return topic_id_arg(text)


def _add_key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=store_arg, metavar="STORE", help=STORE_HELP)
    parser.add_argument("consumer", type=consumer_name_arg, metavar="CONSUMER")
    parser.add_argument("topic_id", type=topic_id_arg, metavar="TOPIC")
    parser.add_argument("consumer_id", type=consumer_id_arg, metavar="CONSUMER_ID")
    add_lock_timeout(parser)


def _ls(args: argparse.Namespace) -> int:
    rows: list[tuple[str, int, int, int]] = []
    damage: list[str] = []
    with open_location(args.store, args.lock_timeout) as location:
        location.require()
        if args.consumer is not None:
            if not location.has_consumer(args.consumer):
                raise CliError(f"no consumer {args.consumer!r} under {location.shown!r}")
            names = [args.consumer]
        else:
            names = location.consumers()
        for name in names:
            # A damaged key hides neither the consumer's other keys nor the other consumers:
            # healthy rows on stdout, one error line per damaged key on stderr, exit 1.
            found = read_consumer(location, name)
            rows.extend((name, t, c, o) for (t, c), o in sorted(found.offsets.items()))
            damage.extend(d.message for d in found.damage)
    if args.json:
        records = [
            {"consumer": n, "topic_id": t, "consumer_id": c, "offset": o} for n, t, c, o in rows
        ]
        _write_json(records)
    else:
        _write_table(rows)
    sys.stdout.flush()  # the table first, then what is missing from it
    for message in damage:
        print_error(message)
    return EXIT_FAILURE if damage else EXIT_OK


def _write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _write_table(rows: list[tuple[str, int, int, int]]) -> None:
    cells = [_HEADER, *((n, str(t), str(c), str(o)) for n, t, c, o in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADER))]
    for row in cells:
        # Names left-aligned, numbers right-aligned so their digits line up.
        parts = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, 4)]
        sys.stdout.write("  ".join(parts) + "\n")


def _get(args: argparse.Namespace) -> int:
    with open_location(args.store, args.lock_timeout) as location:
        location.require()
        store = location.open_existing(args.consumer)
        key = (args.topic_id, args.consumer_id)
        offset = None if store is None else _load(location, store, args.consumer, key)
    if offset is None:
        where = (
            ""
            if store is not None
            else f" (no directory for that consumer under {location.shown!r})"
        )
        raise CliError(
            f"no offset stored for {describe_key(args.consumer, args.topic_id, args.consumer_id)}"
            f"{where}"
        )
    sys.stdout.write(f"{offset}\n")
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    key = describe_key(args.consumer, args.topic_id, args.consumer_id)
    with open_location(args.store, args.lock_timeout) as location:
        store = location.open_or_create(args.consumer)
        # Not through HookedOffsetStore: it refuses to save over a corrupt value (it cannot say
        # what the save replaced), and overwriting one is exactly what CorruptOffsetError tells
        # the operator to do with this command.
        previous = _previous(location, store, args.consumer, (args.topic_id, args.consumer_id))
        where = location.where(store, (args.topic_id, args.consumer_id))
        with os_errors(f"write the offset of {key}", writing=True, path=where):
            store.save(args.topic_id, args.consumer_id, args.offset)
    sys.stdout.write(f"{key}: {previous} -> {args.offset}\n")
    return EXIT_OK


def _load(location: Location, store: OffsetStore, consumer: str, key: Key) -> int | None:
    """Load ``key``; an OSError becomes one line naming the consumer, the key and its file."""
    where = location.where(store, key)
    with os_errors(f"read the offset of {describe_key(consumer, *key)}", writing=False, path=where):
        return store.load(*key)


def _previous(location: Location, store: OffsetStore, consumer: str, key: Key) -> str:
    """Return the key's current offset as text: a number, ``none``, or ``corrupt (...)``."""
    try:
        offset = _load(location, store, consumer, key)
    except CorruptOffsetError as exc:
        # A database's damage has no file content to show, only the reason.
        content = f", content {exc.content[:40]!r}" if exc.content else ""
        return f"corrupt ({exc.reason}{content})"
    return "none" if offset is None else str(offset)


def _rm(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if (args.topic_id is None) != (args.consumer_id is None) or args.all == (
        args.topic_id is not None
    ):
        parser.error("give either TOPIC and CONSUMER_ID, or --all (not both)")
    with open_location(args.store, args.lock_timeout) as location:
        location.require()
        if args.all:
            if not location.has_consumer(args.consumer):
                # As `ls --consumer` does: a typo in the name must not look like a successful wipe.
                raise CliError(f"no consumer {args.consumer!r} under {location.shown!r}")
            removed = _rm_all(location, args.consumer)
            sys.stdout.write(f"removed {removed} offset(s) of consumer {args.consumer!r}\n")
            return EXIT_OK
        key = describe_key(args.consumer, args.topic_id, args.consumer_id)
        store_or_none = location.open_existing(args.consumer)
        previous = (
            "none"
            if store_or_none is None
            else _previous(
                location, store_or_none, args.consumer, (args.topic_id, args.consumer_id)
            )
        )
        if store_or_none is None or previous == "none":
            # Deleting an absent key is not an error (the store's own rule); say so all the same.
            sys.stdout.write(f"{key}: no offset stored, nothing removed\n")
            return EXIT_OK
        where = location.where(store_or_none, (args.topic_id, args.consumer_id))
        with os_errors(f"remove the offset of {key}", writing=True, path=where):
            store_or_none.delete(args.topic_id, args.consumer_id)
    sys.stdout.write(f"{key}: removed (was {previous})\n")
    return EXIT_OK


def _rm_all(location: Location, consumer: str) -> int:
    """Delete every offset of an existing consumer, found by name; return how many."""
    store = location.open_existing(consumer)
    assert store is not None  # the caller checked that the consumer exists
    with os_errors(f"list the offsets of consumer {consumer!r}", writing=False):
        keys = location.stored_keys(store)  # works over corrupt values
    for done, key in enumerate(keys):
        action = f"remove the offset of {describe_key(consumer, *key)}"
        try:
            with os_errors(action, writing=True, path=location.where(store, key)):
                store.delete(*key)
        except (CliError, OffsetStoreError) as exc:
            # Files of one directory may differ (a lock file another user made, a lock held):
            # after the first, say how many were already removed.
            if done == 0:
                raise
            why = exc.message if isinstance(exc, CliError) else str(exc)
            raise CliError(f"{why}; {done} of {len(keys)} offset(s) removed before") from None
    return len(keys)
