"""What every ``lance-offsets`` subcommand shares: errors, argument types, finding consumers.

Exit codes: 0 success, 1 an operational failure (missing key, corrupt file, lock timeout, an
unreadable directory or file), 2 a usage error (argparse's own, and bad values such as an
out-of-range topic id or an unsafe consumer name).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Final

from . import _layout
from ._cli_os_errors import os_error_line
from ._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from ._errors import InvalidConsumerNameError, OffsetStoreError
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
    "file_type",
    "is_consumer_dir",
    "iter_consumers",
    "offset_arg",
    "open_existing",
    "open_or_create",
    "os_errors",
    "print_error",
    "require_base_dir",
    "require_directory",
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


@contextlib.contextmanager
def os_errors(action: str, *, writing: bool | None, path: str | None = None) -> Iterator[None]:
    """Turn an OSError inside the block into a :class:`CliError` worded by ``os_error_line``.

    The store's own errors pass through: ``LockTimeoutError`` is a TimeoutError, hence an OSError,
    but it already says what happened in the store's words.
    """
    try:
        yield
    except OffsetStoreError:
        raise
    except BrokenPipeError:
        raise  # stdout went away (`ls | head`): not a failure of the action
    except OSError as exc:
        raise CliError(os_error_line(exc, action, writing=writing, path=path)) from None


def file_type(path: str, what: str) -> int | None:
    """Return the ``st_mode`` of ``path`` (None if it does not exist); ``what`` names it.

    :raises CliError: it cannot be looked at. A parent the user may not enter, or a file where a
        parent directory should be, is not "does not exist": that would send the user looking
        for the wrong problem.
    """
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(os_error_line(exc, f"use {what} {path!r}", writing=None)) from None


def require_directory(path: str, what: str) -> None:
    """Raise :class:`CliError` unless ``path`` is an existing directory; ``what`` names it."""
    mode = file_type(path, what)
    if mode is None:
        raise CliError(f"{what} {path!r} does not exist")
    if not stat.S_ISDIR(mode):
        raise CliError(f"{what} {path!r} is not a directory")


def require_base_dir(base_dir: str) -> None:
    """Raise :class:`CliError` unless ``base_dir`` is an existing directory.

    No command creates the base directory: a typo would otherwise grow a stray tree.
    """
    require_directory(base_dir, "base directory")


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
    except OSError as exc:
        action = f"look for consumer {name!r} in base directory {base_dir!r}"
        raise CliError(os_error_line(exc, action, writing=False)) from None


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
    with os_errors(f"create the directory of consumer {name!r}", writing=True):
        try:
            return LockFileOffsetStore.open(base_dir, name, lock_timeout=lock_timeout)
        except FileExistsError as exc:
            # makedirs(exist_ok=True) says "exists" only when the name is taken by a file.
            path = os.path.join(base_dir, name)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path) from exc


def iter_consumers(base_dir: str) -> Iterator[str]:
    """Yield, sorted, every subdirectory of ``base_dir`` whose name is a valid consumer name.

    Files, and directories whose names the store rejects (``CON``, ``a:b``, ...), are skipped: no
    store can have written them.
    """
    require_base_dir(base_dir)
    with (
        os_errors(f"list the consumers in base directory {base_dir!r}", writing=False),
        os.scandir(base_dir) as entries,
    ):
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
    Raises OSError (the directory cannot be listed); callers word it with what they were doing.
    """
    with os.scandir(directory) as entries:
        keys = [_layout.parse_offset_name(entry.name) for entry in entries]
    return sorted(key for key in keys if key is not None)


def print_error(message: str) -> None:
    """Print ``lance-offsets: error: message`` on stderr, as one line."""
    # Newlines inside a message (an odd file name) would break "one line per error" for scripts.
    flat = message.replace("\n", "\\n")
    sys.stderr.write(f"lance-offsets: error: {flat}\n")
