r"""File names and file contents of the lock-file store, shared with the Rust client.

Layout (docs/lockfile.md)::

    {base_dir}/{consumer_name}/topic-{topic_id}-consumer-{consumer_id}.offset      decimal + "\n"
    {base_dir}/{consumer_name}/topic-{topic_id}-consumer-{consumer_id}.lock        advisory lock
    {base_dir}/{consumer_name}/topic-{topic_id}-consumer-{consumer_id}.offset.tmp  transient

Choices where the Rust client is looser than we are (``docs/lockfile.md`` explains each):

- File names are parsed strictly: only the canonical spelling (no leading zeros, no sign, nothing
  after the consumer id) names a key. The Rust client would also read ``topic-01-consumer-2.offset``
  as key (1, 2), which aliases ``topic-1-consumer-2.offset``; a name that does not round-trip to
  itself is ignored, so ``list_all`` never reports a key whose ``load`` would read another file.
- File contents are read as the Rust client reads them (``trim()`` then ``parse::<u64>()``),
  restricted to ASCII: surrounding ASCII whitespace and one leading ``+`` are accepted. The trailing
  newline is required: every writer (ours, Rust's ``writeln!``) ends the file with one, so a number
  without it is a file cut short ("10\n" cut to "1"), which must be loud (F1), not a wrong offset.
  Anything else (empty, non-decimal, out of u64 range) is corrupt.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from ._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from ._errors import CorruptOffsetError, InvalidConsumerNameError

__all__ = [
    "LOCK_SUFFIX",
    "MAX_CONSUMER_NAME_BYTES",
    "MAX_OFFSET_FILE_BYTES",
    "OFFSET_SUFFIX",
    "TMP_SUFFIX",
    "check_consumer_name",
    "decode_offset",
    "encode_offset",
    "lock_name",
    "offset_name",
    "parse_offset_name",
    "tmp_name",
]

#: Suffix of the committed offset file.
OFFSET_SUFFIX: Final = ".offset"
#: Suffix of the advisory lock file (both clients take an exclusive lock on it).
LOCK_SUFFIX: Final = ".lock"
#: Suffix of the temp file a save writes before renaming it over the offset file. Rust's
#: ``path.with_extension("offset.tmp")`` gives exactly this name, so the lock must exclude Rust too.
TMP_SUFFIX: Final = ".offset.tmp"
#: Longest consumer name, in UTF-8 bytes: the common per-component limit of ext4, APFS and NTFS.
MAX_CONSUMER_NAME_BYTES: Final = 255
#: Largest offset file we read. "18446744073709551615\n" is 21 bytes; the slack admits the
#: whitespace the Rust client tolerates without reading an arbitrarily large damaged file.
MAX_OFFSET_FILE_BYTES: Final = 4096

# Canonical decimal: no sign, no leading zeros (so every name round-trips to itself).
_NAME = re.compile(r"topic-(0|[1-9][0-9]*)-consumer-(0|[1-9][0-9]*)\.offset", re.ASCII)
# What Rust's u64 parser accepts after trim(): an optional '+' and at least one digit.
_CONTENT = re.compile(rb"\+?([0-9]+)")
# bytes.strip() with no argument strips exactly ASCII whitespace, like Rust's trim() on ASCII.
_FORBIDDEN = frozenset('/\\:<>"|?*')
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)


def _stem(topic_id: int, consumer_id: int) -> str:
    return f"topic-{topic_id}-consumer-{consumer_id}"


def offset_name(topic_id: int, consumer_id: int) -> str:
    """Return the offset file name of a (validated) key."""
    return _stem(topic_id, consumer_id) + OFFSET_SUFFIX


def lock_name(topic_id: int, consumer_id: int) -> str:
    """Return the lock file name of a (validated) key."""
    return _stem(topic_id, consumer_id) + LOCK_SUFFIX


def tmp_name(topic_id: int, consumer_id: int) -> str:
    """Return the temp file name of a (validated) key."""
    return _stem(topic_id, consumer_id) + TMP_SUFFIX


def parse_offset_name(name: str) -> tuple[int, int] | None:
    """Return the key a canonical offset file name stands for, or None for any other name.

    Temp files, lock files, foreign files, non-canonical spellings (``topic-01-...``) and ids out
    of the u32/u64 domain all give None: they are not keys of this store.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    topic_id, consumer_id = int(match[1]), int(match[2])
    if topic_id > MAX_TOPIC_ID or consumer_id > MAX_CONSUMER_ID:
        return None
    return topic_id, consumer_id


def encode_offset(offset: int) -> bytes:
    """Return the bytes the Rust client's ``writeln!(file, "{}", offset)`` writes."""
    return b"%d\n" % offset


def decode_offset(content: bytes, key: tuple[int, int], path: str) -> int:
    """Parse an offset file's bytes, or raise :class:`CorruptOffsetError` naming key and file.

    Never returns None: a damaged file must not read as "no offset" (the consumer would silently
    rewind to the start of the stream; F1).
    """
    # Fast path for what both clients write: digits and one newline (bytes.isdigit is ASCII-only).
    digits = content[:-1]
    if content[-1:] == b"\n" and 0 < len(digits) <= 20 and digits.isdigit():
        value = int(digits)
        if value <= MAX_OFFSET:
            return value
    if len(content) > MAX_OFFSET_FILE_BYTES:
        raise CorruptOffsetError(key, path, content, f"larger than {MAX_OFFSET_FILE_BYTES} bytes")
    stripped = content.strip()
    if not stripped:
        reason = "empty file" if not content else "only whitespace"
        raise CorruptOffsetError(key, path, content, reason)
    match = _CONTENT.fullmatch(stripped)
    if match is None:
        raise CorruptOffsetError(key, path, content, "not a decimal number")
    value = int(match[1])
    if value > MAX_OFFSET:
        raise CorruptOffsetError(key, path, content, f"out of the u64 range 0..{MAX_OFFSET}")
    if not content.endswith(b"\n"):
        raise CorruptOffsetError(key, path, content, "no trailing newline: the file was cut short")
    return value


def check_consumer_name(name: object) -> str:
    """Return ``name`` if it is a safe, portable directory name; raise otherwise.

    Rejected (:class:`InvalidConsumerNameError`, a ValueError): empty, ``.`` and ``..``, path
    separators and ``:`` (drive-relative paths and NTFS streams on Windows), the other characters
    Windows forbids (``<>"|?*``), NUL and control characters, a trailing dot or space (Windows
    silently drops them, so two names would share a directory), Windows device names with or
    without an extension (``CON``, ``nul.txt``, ``COM1``, ...; case-insensitive) and names longer
    than :data:`MAX_CONSUMER_NAME_BYTES` UTF-8 bytes. A non-str raises TypeError.
    """
    if not isinstance(name, str):
        raise TypeError(f"consumer_name must be a str, not {type(name).__name__} ({name!r})")
    reason = _name_problem(name)
    if reason is not None:
        raise InvalidConsumerNameError(name, reason)
    return name


def _name_problem(name: str) -> str | None:
    problem: str | None = None
    bad = sorted({ch for ch in name if ch in _FORBIDDEN})
    device = name.split(".", 1)[0].rstrip(" ").upper()
    size = len(name.encode("utf-8", "surrogatepass"))
    if name in ("", ".", ".."):
        problem = "empty, '.' and '..' are not directory names; use a word such as 'billing'"
    elif bad:
        problem = f"contains {''.join(bad)!r}; use letters, digits, '-', '_' or '.'"
    elif any(unicodedata.category(ch) == "Cc" for ch in name):
        problem = "contains NUL or a control character"
    elif name[-1] in ". ":
        problem = "ends with a dot or a space, which Windows drops from file names"
    elif device in _RESERVED:
        problem = f"{device!r} is a reserved device name on Windows, even with an extension"
    elif size > MAX_CONSUMER_NAME_BYTES:
        problem = f"{size} UTF-8 bytes, longer than {MAX_CONSUMER_NAME_BYTES}"
    elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        problem = "contains a lone surrogate, which no file system stores portably"
    return problem
