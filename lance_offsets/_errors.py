"""The error hierarchy: one root, each subclass also the nearest builtin.

Callers can catch :class:`OffsetStoreError` for anything the store raises on purpose, or the builtin
they already handle (``ValueError``, ``TimeoutError``, ``OSError``). Every error carries the key and
the path it concerns as attributes and pickles cleanly, because the crash harness passes errors
between processes (``tests/test_errors.py`` pins str, repr and pickling).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "CorruptOffsetError",
    "HookError",
    "InvalidConsumerNameError",
    "LockTimeoutError",
    "OffsetStoreError",
    "StoreClosedError",
]

Key = tuple[int, int]


def _describe(key: Key | None, path: str | os.PathLike[str] | None) -> str:
    parts = []
    if key is not None:
        parts.append(f"topic_id={key[0]} consumer_id={key[1]}")
    if path is not None:
        parts.append(f"file {os.fspath(path)!r}")
    return ", ".join(parts)


class OffsetStoreError(Exception):
    """Root of every error an offset store raises on purpose.

    :ivar key: the ``(topic_id, consumer_id)`` concerned, or None.
    :ivar path: the file concerned, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        key: Key | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.path = None if path is None else os.fspath(path)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, key={self.key!r}, path={self.path!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default Exception pickling.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[OffsetStoreError], message: str, state: dict[str, Any]) -> OffsetStoreError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class CorruptOffsetError(OffsetStoreError, ValueError):
    """Stored bytes for a key are not a valid offset.

    Raised instead of returning None: a None would make the consumer silently rewind to the start
    of the stream (the Rust client's ``load_all_into_cache`` skips such files).
    """

    def __init__(
        self,
        key: Key,
        path: str | os.PathLike[str],
        content: bytes,
        reason: str,
    ) -> None:
        shown = content[:40]
        more = "..." if len(content) > 40 else ""
        super().__init__(
            f"corrupt offset for {_describe(key, path)}: {reason} (content {shown!r}{more}); "
            "restore the file from a backup or set the offset explicitly with "
            "'lance-offsets set'",
            key=key,
            path=path,
        )
        self.content = content
        self.reason = reason


class LockTimeoutError(OffsetStoreError, TimeoutError):
    """The per-key lock was not acquired within the configured timeout."""

    def __init__(self, key: Key, path: str | os.PathLike[str], timeout: float) -> None:
        super().__init__(
            f"could not lock {_describe(key, path)} within {timeout:g} s; another process holds "
            "it (a stuck consumer, or the Rust client mid-save)",
            key=key,
            path=path,
        )
        self.timeout = timeout


class InvalidConsumerNameError(OffsetStoreError, ValueError):
    """A consumer name would escape the base directory or is not portable."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid consumer name {name!r}: {reason}")
        self.name = name
        self.reason = reason


class StoreClosedError(OffsetStoreError, ValueError):
    """An operation was attempted on a closed store (like I/O on a closed file)."""

    def __init__(self, store: str) -> None:
        super().__init__(f"{store} is closed; open a new handle")


class HookError(OffsetStoreError):
    """One or more post-commit hooks failed after the offset was durably committed.

    The commit itself succeeded: :attr:`info` says what was committed, :attr:`errors` holds every
    hook failure, in hook order (every hook ran). Retrying the save is safe but not required.
    """

    def __init__(self, info: Any, errors: list[BaseException]) -> None:
        names = ", ".join(f"{type(e).__name__}: {e}" for e in errors)
        super().__init__(
            f"offset {info.offset} for topic_id={info.topic_id} consumer_id={info.consumer_id} "
            f"was committed, but {len(errors)} post-commit hook(s) failed: {names}",
            key=(info.topic_id, info.consumer_id),
        )
        self.info = info
        self.errors = errors
