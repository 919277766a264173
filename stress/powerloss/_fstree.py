"""Directory trees as plain data: read one from disk, write one out (the D3 crash states)."""

from __future__ import annotations

import os

__all__ = ["Tree", "materialise", "snapshot"]

#: A directory tree: sorted ``(relative path, content)`` pairs; content None for a directory.
Tree = tuple[tuple[str, "bytes | None"], ...]


def materialise(tree: Tree, where: str) -> None:
    """Write ``tree`` under the existing directory ``where``, in order (parents come first)."""
    for rel, content in tree:
        path = os.path.join(where, rel)
        if content is None:
            os.mkdir(path)
        else:
            with open(path, "wb") as fh:
                fh.write(content)


def snapshot(root: str) -> Tree:
    """Read the tree under ``root``: the inverse of :func:`materialise` (symlinks not followed)."""
    found: list[tuple[str, bytes | None]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        found.extend((prefix + name, None) for name in dirnames)
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                found.append((prefix + name, fh.read()))
    return tuple(sorted(found))
