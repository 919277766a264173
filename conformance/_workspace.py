"""Fresh directories and every handle opened in them, closed at the end whatever happened."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from lance_offsets._protocol import OffsetStore

__all__ = ["Workspace", "close_quietly"]


def close_quietly(handle: Any) -> None:
    """Close ``handle``; a store whose close raises is judged by C8, not by every other test."""
    with contextlib.suppress(Exception):
        handle.close()


class Workspace:
    """Owns a scratch root: hands out fresh directories and remembers every handle it opened.

    :param factory: the store factory, called as ``factory(path)``.
    :param root: where to make directories; None means the system temporary directory.
    """

    def __init__(self, factory: Callable[[str], OffsetStore], root: str | None = None) -> None:
        self.factory = factory
        self.root = tempfile.mkdtemp(prefix="lance-conformance-", dir=root)
        self._handles: list[Any] = []
        self._count = 0

    def fresh_dir(self) -> str:
        """Return a new, empty directory that no earlier example used."""
        self._count += 1
        path = os.path.join(self.root, f"store-{self._count}")
        os.mkdir(path)
        return path

    def open(self, path: str) -> Any:
        """Open a handle with the factory and remember it so :meth:`close_all` closes it."""
        handle = self.factory(path)
        self._handles.append(handle)
        return handle

    def track(self, handle: Any) -> Any:
        """Remember a handle opened some other way (``open_named``, a hook wrapper)."""
        self._handles.append(handle)
        return handle

    def close_all(self) -> None:
        """Close every handle handed out so far (closing twice is allowed by the contract)."""
        handles, self._handles = self._handles, []
        for handle in reversed(handles):
            close_quietly(handle)

    def cleanup(self) -> None:
        """Close every handle and remove the scratch root."""
        self.close_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
