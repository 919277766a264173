"""STUB: post-commit hooks (being written; see issue 2). Public signatures are final."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._protocol import OffsetStore

__all__ = [
    "CollectingCommitHook",
    "CommitInfo",
    "HookedOffsetStore",
    "LoggingCommitHook",
    "PostCommitHook",
]


@dataclass(frozen=True)
class CommitInfo:
    """What one successful save committed."""

    topic_id: int
    consumer_id: int
    offset: int
    previous_offset: int | None
    timestamp: datetime.datetime


@runtime_checkable
class PostCommitHook(Protocol):
    """Called after each successful save, with what was committed."""

    def on_commit(self, info: CommitInfo) -> None: ...


class LoggingCommitHook:
    def on_commit(self, info: CommitInfo) -> None:
        raise NotImplementedError


class CollectingCommitHook:
    def on_commit(self, info: CommitInfo) -> None:
        raise NotImplementedError

    def commits(self) -> list[CommitInfo]:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class HookedOffsetStore:
    def __init__(self, inner: OffsetStore, hooks: list[PostCommitHook] | None = None) -> None:
        raise NotImplementedError

    def add_hook(self, hook: PostCommitHook) -> HookedOffsetStore:
        raise NotImplementedError
