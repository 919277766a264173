"""Factories for the project's own stores, in the plug-in form the suites take.

``lance-offsets check`` with no SPEC checks :func:`lockfile`. Each is importable by string, e.g.
``lance_offsets.conformance.reference:memory``.
"""

from __future__ import annotations

import os

from lance_offsets import HookedOffsetStore, LockFileOffsetStore, MemoryOffsetStore

__all__ = ["hooked_lockfile", "lockfile", "memory"]

#: Consumer name the reference factories use under the test directory.
CONSUMER_NAME = "conformance"


def lockfile(path: str) -> LockFileOffsetStore:
    """The reference lock-file store, consumer ``conformance`` under ``path``."""
    return LockFileOffsetStore.open(path, CONSUMER_NAME)


def _open_named(path: str, name: str) -> LockFileOffsetStore:
    return LockFileOffsetStore.open(path, name)


lockfile.open_named = _open_named  # type: ignore[attr-defined]


def _rewrite(content: bytes) -> object:
    """Format-aware damage (F1 backdoor): replace the key's ``.offset`` file with ``content``."""

    def damage(path: str, key: tuple[int, int]) -> None:
        name = f"topic-{key[0]}-consumer-{key[1]}.offset"
        with open(os.path.join(path, CONSUMER_NAME, name), "wb") as file:
            file.write(content)

    return damage


#: What only a decimal-file format can get wrong; each must raise on load (F1).
LOCKFILE_DAMAGE = {
    "non-decimal": _rewrite(b"12x\n"),
    "out of u64 range": _rewrite(b"%d\n" % 2**64),
    "negative": _rewrite(b"-1\n"),
    "only whitespace": _rewrite(b" \n"),
    "missing newline": _rewrite(b"7"),
    "NUL-filled block": _rewrite(b"\x00" * 8),
}

lockfile.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]


def memory(path: str) -> MemoryOffsetStore:
    """The in-memory store: nothing persists, so P*, D*, M*, F* do not apply."""
    del path  # nothing is kept on disk
    return MemoryOffsetStore()


memory.persistent = False  # type: ignore[attr-defined]
memory.shared = False  # type: ignore[attr-defined]
memory.durable = False  # type: ignore[attr-defined]


def hooked_lockfile(path: str) -> HookedOffsetStore:
    """The lock-file store wrapped in :class:`HookedOffsetStore` with no hooks of its own."""
    return HookedOffsetStore(LockFileOffsetStore.open(path, CONSUMER_NAME))


hooked_lockfile.damage = LOCKFILE_DAMAGE  # type: ignore[attr-defined]
hooked_lockfile.open_named = lambda path, name: HookedOffsetStore(  # type: ignore[attr-defined]
    LockFileOffsetStore.open(path, name)
)
