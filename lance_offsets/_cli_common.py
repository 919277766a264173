"""What every ``lance-offsets`` subcommand shares: errors, argument types, finding consumers.

Exit codes: 0 success, 1 an operational failure (missing key, corrupt file, lock timeout, an
unreadable directory or file), 2 a usage error (argparse's own, and bad values such as an
out-of-range topic id or an unsafe consumer name).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Final

from . import _layout
from ._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from ._errors import InvalidConsumerNameError
from ._lockfile import LockFileOffsetStore

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "FOREVER",
    "CliError",
    "add_lock_timeout",
    "consumer_id_arg",
    "consumer_name_arg",
    "describe_key",
    "is_consumer_dir",
    "iter_consumers",
    "offset_arg",
    "open_existing",
    "open_or_create",
    "print_error",
    "require_base_dir",
    "stored_keys",
    "topic_id_arg",
]

#: Exit status of a command that did what was asked.
EXIT_OK: Final = 0
#: Exit status of an operational failure: missing key, corrupt file, lock timeout, I/O error.
EXIT_FAILURE: Final = 1
#: Exit status of a usage error, as argparse uses.
EXIT_USAGE: Final = 2
#: Seconds a command waits for a key's lock by default. The library waits forever, which suits a
#: consumer; an operator at a terminal should hear about a stuck holder instead of hanging.
DEFAULT_LOCK_TIMEOUT: Final = 10.0

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)", re.ASCII)


class CliError(Exception):
    """An expected failure: printed as one ``lance-offsets: error: ...`` line, no traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _bounded_int(what: str, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # Only plain decimal: int() would also take " 7", "+7", "0x7" (with base 0) or "1_000",
        # and an operator who typed one of those probably meant something else.
        if _DECIMAL.fullmatch(text) is None or int(text) > maximum:
            raise argparse.ArgumentTypeError(
                f"{what} must be a decimal integer in 0..{maximum}, got {text!r}"
            )
        return int(text)

    parse.__name__ = what  # argparse names the type in some messages
    return parse


#: argparse type of a topic id (u32).
topic_id_arg: Final = _bounded_int("topic id", MAX_TOPIC_ID)
#: argparse type of a consumer id (u64).
consumer_id_arg: Final = _bounded_int("consumer id", MAX_CONSUMER_ID)
#: argparse type of an offset (u64).
offset_arg: Final = _bounded_int("offset", MAX_OFFSET)


def consumer_name_arg(text: str) -> str:
    """Argparse type of a consumer name: the store's own rule, as a usage error."""
    try:
        return _layout.check_consumer_name(text)
    except InvalidConsumerNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: What ``--lock-timeout`` takes for "wait as long as the holder keeps the lock".
FOREVER: Final = "forever"


def _lock_timeout_arg(text: str) -> float | None:
    if text == FOREVER:
        return None  # what the store's own lock_timeout=None means
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"lock timeout must be a number of seconds >= 0 or {FOREVER!r}, got {text!r}"
        )
    return value


def add_lock_timeout(parser: argparse.ArgumentParser) -> None:
    """Add ``--lock-timeout SECONDS`` to a subcommand that takes key locks."""
    parser.add_argument(
        "--lock-timeout",
        type=_lock_timeout_arg,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for a key's lock before failing, or {FOREVER!r} "
        f"(default {DEFAULT_LOCK_TIMEOUT:g})",
    )


def describe_key(consumer: str, topic_id: int, consumer_id: int) -> str:
    """Return how messages name one key of one consumer."""
    return f"consumer {consumer!r} topic {topic_id} consumer id {consumer_id}"


def require_base_dir(base_dir: str) -> None:
    """Raise :class:`CliError` unless ``base_dir`` is an existing directory.

    No command creates the base directory: a typo would otherwise grow a stray tree.
    """
    if not os.path.isdir(base_dir):
        what = "is not a directory" if os.path.exists(base_dir) else "does not exist"
        raise CliError(f"base directory {base_dir!r} {what}")


def is_consumer_dir(base_dir: str, name: str) -> bool:
    """Return whether ``base_dir/name`` exists as a directory (``name`` already validated).

    A base directory the user may not enter is an error, not "no such consumer": answering
    "missing" there would let ``rm`` report success having deleted nothing.
    """
    path = os.path.join(base_dir, name)
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise CliError(
            f"cannot look for consumer {name!r} in base directory {base_dir!r}: permission denied"
        ) from None


def open_existing(
    base_dir: str, name: str, lock_timeout: float | None
) -> LockFileOffsetStore | None:
    """Open consumer ``name`` if its directory exists; None otherwise, creating nothing."""
    if not is_consumer_dir(base_dir, name):
        return None
    return LockFileOffsetStore.open(base_dir, name, lock_timeout=lock_timeout)


def open_or_create(base_dir: str, name: str, lock_timeout: float | None) -> LockFileOffsetStore:
    """Open consumer ``name``, creating its directory (never the base directory)."""
    require_base_dir(base_dir)
    return LockFileOffsetStore.open(base_dir, name, lock_timeout=lock_timeout)


def iter_consumers(base_dir: str) -> Iterator[str]:
    """Yield, sorted, every subdirectory of ``base_dir`` whose name is a valid consumer name.

    Files, and directories whose names the store rejects (``CON``, ``a:b``, ...), are skipped: no
    store can have written them.
    """
    require_base_dir(base_dir)
    with os.scandir(base_dir) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    for name in names:
        try:
            _layout.check_consumer_name(name)
        except InvalidConsumerNameError:
            continue
        yield name


def stored_keys(directory: str) -> list[tuple[int, int]]:
    """Return, sorted, the keys whose offset files exist in a consumer directory.

    Names only, no contents: what ``rm --all`` needs, and it works over corrupt values.
    """
    with os.scandir(directory) as entries:
        keys = [_layout.parse_offset_name(entry.name) for entry in entries]
    return sorted(key for key in keys if key is not None)


def print_error(message: str) -> None:
    """Print ``lance-offsets: error: message`` on stderr, as one line."""
    # Newlines inside a message (an odd file name) would break "one line per error" for scripts.
    flat = message.replace("\n", "\\n")
    sys.stderr.write(f"lance-offsets: error: {flat}\n")
