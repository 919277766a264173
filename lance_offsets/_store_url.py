"""Store URLs: how the command line names the store a command works on.

=================================  ==========================================================
``/var/lib/lance/offsets``         a base directory of the lock-file store (as always)
``file:///var/lib/lance/offsets``  the same, as a URL
``sqlite:///var/lib/x.sqlite3``    a SQLite database file (absolute path: ``sqlite:`` + ``//``
                                   + the path, as in file URLs); a directory means its
                                   ``lance-offsets.sqlite3``, as ``SQLiteOffsetStore.open``
``sqlite:relative/x.sqlite3``      a SQLite database, relative to the working directory
``postgresql://u@host/db``         a PostgreSQL database (libpq's URL, ``postgres://`` too);
                                   ``?schema=`` and ``?table=`` choose the store's table
=================================  ==========================================================

Parsing only: nothing is opened, created or imported here, so a bad URL is rejected before any
change. A text that does not start with a scheme is a path, so Windows paths (``C:/x``) and
paths with colons further on stay paths; an unknown scheme (``redis://``) is an error rather than
a directory named ``redis:``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["StoreUrl", "StoreUrlError", "parse_store_url", "redact"]

Kind = Literal["directory", "sqlite", "postgresql"]

#: The schemes a store URL may have, and the kind of store each names.
SCHEMES: Final[dict[str, Kind]] = {
    "file": "directory",
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
#: What every error message offers instead.
FORMS: Final = "a directory, file:///path, sqlite:///path/to/db or postgresql://user@host/dbname"
#: Query parameters of a PostgreSQL URL that belong to the store, not to libpq.
_STORE_PARAMETERS: Final = ("schema", "table")

# A scheme is two or more letters then ':' ("C:" is a drive); an unknown one only counts as a
# scheme when "://" follows, so that "notes:v2/offsets" stays a relative path.
_KNOWN = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
_ANY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")


class StoreUrlError(ValueError):
    """A store URL that names no store this version can open; the message says why."""


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL."""

    kind: Kind
    #: What the user typed, any password replaced by ``***``: safe to print.
    shown: str
    #: The directory (``directory``) or the database path (``sqlite``); empty for PostgreSQL.
    path: str = ""
    #: PostgreSQL: the URL to hand to psycopg, without the store's own parameters.
    conninfo: str = ""
    schema: str = "public"
    table: str = "lance_offsets"


def redact(text: str) -> str:
    """Hide the password of a URL (``user:secret@`` -> ``user:***@``) for messages."""
    return _PASSWORD.sub(r"\1***@", text)


def parse_store_url(text: str) -> StoreUrl:
    """Parse a directory or store URL; raise :class:`StoreUrlError` naming it when it is bad."""
    shown = redact(text)
    if not text:
        raise StoreUrlError(f"empty store: give {FORMS}")
    known = _KNOWN.match(text)
    scheme = known.group(1).lower() if known else ""
    if scheme not in SCHEMES:
        if _ANY_URL.match(text):
            raise StoreUrlError(f"unsupported store URL {shown!r}: use {FORMS}")
        return StoreUrl("directory", shown, path=text)
    kind = SCHEMES[scheme]
    if kind == "postgresql":
        return _postgresql(text, shown)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise StoreUrlError(f"store URL {shown!r}: a {scheme} URL takes no '?' or '#' part")
    if parts.netloc not in ("", "localhost"):
        raise StoreUrlError(
            f"store URL {shown!r}: a {scheme} URL names a local path, not a host "
            f"({parts.netloc!r}); write {scheme}:///absolute/path"
        )
    path = _local_path(unquote(parts.path))
    if not path:
        raise StoreUrlError(f"store URL {shown!r} has no path")
    if kind == "sqlite" and path == ":memory:":
        raise StoreUrlError(f"store URL {shown!r}: an in-memory database keeps no offsets")
    return StoreUrl(kind, shown, path=path)


def _local_path(path: str) -> str:
    # "/C:/x" is how a URL spells the Windows path "C:/x".
    if os.name == "nt" and re.match(r"/[A-Za-z]:", path):
        return path[1:]
    return path


def _postgresql(text: str, shown: str) -> StoreUrl:
    parts = urlsplit(text)
    if parts.fragment:
        raise StoreUrlError(f"store URL {shown!r}: a postgresql URL takes no '#' part")
    ours: dict[str, str] = {}
    libpq: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _STORE_PARAMETERS:
            if name in ours or not value:
                raise StoreUrlError(f"store URL {shown!r}: give {name}= once, with a name")
            ours[name] = value
        else:
            libpq.append((name, value))
    # The text itself, not urlunsplit(): that drops the empty host of "postgresql:///dbname".
    conninfo = text.partition("?")[0] + (f"?{urlencode(libpq)}" if libpq else "")
    return StoreUrl(
        "postgresql",
        shown,
        conninfo=conninfo,
        schema=ours.get("schema", "public"),
        table=ours.get("table", "lance_offsets"),
    )
