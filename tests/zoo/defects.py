"""The bug zoo: each class is a store with ONE defect seen in real code, and the property it breaks.

Each class is its own factory (``zoo.defects:StaleCache`` called as ``StaleCache(path)``), so the
suite reaches them exactly as it reaches a third-party store. :data:`EXPECTED` maps each to the
property the suite must fail it on; ``tests/test_conformance_zoo.py`` proves it does.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Final

from lance_offsets import CommitInfo
from lance_offsets._domain import check_key, check_offset

from ._base import DirStore

Key = tuple[int, int]


class ZeroForAbsent(DirStore):
    """C2: ``load`` answers 0 for a key never saved ("unwrap_or(0)" pushed into the store), so a
    consumer cannot tell "start of stream" from "never ran"."""

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        value = super().load(topic_id, consumer_id)
        return 0 if value is None else value


class FloatOffsets(DirStore):
    """C1: offsets pass through a float (a JSON library, a REAL column): above 2**53 they round,
    so the offset read back is one nobody saved."""

    def write(self, file: str, offset: int) -> None:
        super().write(file, int(float(offset)) % 2**64)


class ConcatenatedNames(DirStore):
    """C5: file names built as ``f"{topic}{consumer}"``: keys (1, 23) and (12, 3) share a file."""

    def file_of(self, key: Key) -> str:
        return os.path.join(self.path, f"{key[0]}{key[1]}.off")

    def key_of(self, name: str) -> Key | None:
        stem = name.removesuffix(".off")
        return (int(stem[:1]), int(stem[1:] or 0)) if name.endswith(".off") else None


class InternalDict(DirStore):
    """C6: ``list_all`` hands out the store's own cache dict: the caller's edits change it."""

    persistent = False

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.cache: dict[Key, int] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self.cache.get(check_key(topic_id, consumer_id))

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.cache[check_key(topic_id, consumer_id)] = check_offset(offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self.cache.pop(check_key(topic_id, consumer_id), None)

    def list_all(self) -> dict[Key, int]:
        return self.cache


class LooseTypes(DirStore):
    """C7: ``int(x)`` instead of a type check: True saves as 1, 2.9 as 2, "7" as 7."""

    def save(self, topic_id: Any, consumer_id: Any, offset: Any) -> None:
        super().save(int(topic_id), int(consumer_id), int(offset))


class ValidatesLate(DirStore):
    """C7: writes first, validates after: a rejected offset is already on disk."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        self.write(self.file_of(key), offset)
        check_offset(offset)


class StaleCache(DirStore):
    """P2: a per-handle cache that never notices another handle's or process's save (the Rust
    client's cache)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.cache: dict[Key, int | None] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        if key not in self.cache:
            self.cache[key] = super().load(*key)
        return self.cache[key]

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self.cache[(topic_id, consumer_id)] = offset

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self.cache[(topic_id, consumer_id)] = None


class CorruptIsNone(DirStore):
    """F1: a file that does not parse reads as "no offset" (the Rust client's
    ``load_all_into_cache`` skips it): the consumer silently rewinds to the start."""

    def read(self, file: str) -> int | None:
        try:
            return super().read(file)
        except ValueError:
            return None


class MonotonicOnly(DirStore):
    """C3: ignores a save lower than the stored offset ("offsets only grow"), so a deliberate
    reset (rewind to replay) is silently dropped."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        current = self.load(topic_id, consumer_id)
        if current is None or check_offset(offset) >= current:
            super().save(topic_id, consumer_id, offset)


class DeleteAbsentRaises(DirStore):
    """C4: ``os.remove`` without catching FileNotFoundError: deleting an absent key raises."""

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._open_check()
        os.remove(self.file_of(check_key(topic_id, consumer_id)))


class LostOnClose(DirStore):
    """P1: saves wait in memory for a flush that ``close()`` never does; a new handle sees none."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.pending: dict[Key, int | None] = {}

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        key = check_key(topic_id, consumer_id)
        return self.pending[key] if key in self.pending else super().load(*key)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self.pending[check_key(topic_id, consumer_id)] = check_offset(offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self.pending[check_key(topic_id, consumer_id)] = None

    def list_all(self) -> dict[Key, int]:
        found = super().list_all()
        for key, value in self.pending.items():
            found.pop(key, None)
            if value is not None:
                found[key] = value
        return found


class CacheOnlyListing(DirStore):
    """P2: ``list_all`` reports only the keys this handle wrote, not what other handles wrote."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.mine: set[Key] = set()

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self.mine.add((topic_id, consumer_id))

    def list_all(self) -> dict[Key, int]:
        return {k: v for k, v in super().list_all().items() if k in self.mine}


class CloseDoesNothing(DirStore):
    """C8: ``close()`` is a no-op, so a handle keeps writing after its owner closed it."""

    def close(self) -> None:
        pass


class NameEscapes(DirStore):
    """S1: the consumer name is joined to the base directory unchecked: '../x' writes outside it."""

    @staticmethod
    def open_named(path: str, name: str) -> NameEscapes:
        return NameEscapes(os.path.join(path, name))


class NameCheckedAfterMkdir(DirStore):
    """S1: the directory is created first (the Rust client's ``create_dir_all``) and the name is
    refused after: '../x' is rejected with ValueError, but ``x`` already exists outside the base."""

    @staticmethod
    def open_named(path: str, name: str) -> NameCheckedAfterMkdir:
        os.makedirs(os.path.join(path, name), exist_ok=True)
        if name in ("", ".", "..") or any(c in name for c in "/\\\x00:"):
            raise ValueError(f"invalid consumer name {name!r}")
        return NameCheckedAfterMkdir(os.path.join(path, name))


# -- hooks ------------------------------------------------------------------------------------


class HookFailed(Exception):
    """Raised by the hooked zoo stores when hooks fail; carries the CommitInfo."""

    def __init__(self, info: CommitInfo, errors: list[Exception]) -> None:
        super().__init__(f"committed {info.offset}, but hooks failed: {errors}")
        self.info = info


class HookedDir(DirStore):
    """Correct hooks over :class:`DirStore`: the base of the hook defects below."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.hooks: list[Any] = []

    def add_hook(self, hook: Any) -> HookedDir:
        self.hooks.append(hook)
        return self

    def previous(self, key: Key) -> int | None:
        return super().load(*key)

    def info(self, key: Key, offset: int) -> CommitInfo:
        now = datetime.datetime.now(datetime.timezone.utc)
        return CommitInfo(key[0], key[1], offset, self.previous(key), now)

    def run_hooks(self, info: CommitInfo) -> None:
        errors = []
        for hook in self.hooks:
            try:
                hook.on_commit(info)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise HookFailed(info, errors)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        info = self.info(key, check_offset(offset))
        super().save(topic_id, consumer_id, offset)
        self.run_hooks(info)


class HookBeforeSave(HookedDir):
    """H3: "post-commit" hooks run before the write, so they announce offsets not yet stored."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        key = check_key(topic_id, consumer_id)
        info = self.info(key, check_offset(offset))
        try:
            self.run_hooks(info)
        finally:
            DirStore.save(self, topic_id, consumer_id, offset)


class HookOnFailedSave(HookedDir):
    """H3: hooks run in a ``finally``, so a save that raised still announces a commit."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        try:
            DirStore.save(self, topic_id, consumer_id, offset)
        finally:
            self.run_hooks(
                CommitInfo(
                    topic_id,
                    consumer_id,
                    offset,
                    None,
                    datetime.datetime.now(datetime.timezone.utc),
                )
            )


class PreviousFromHandle(HookedDir):
    """H2: ``previous_offset`` from a per-handle dict (the Rust HookedOffsetStore): None on the
    first save after a reopen, and blind to other handles."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.seen: dict[Key, int] = {}

    def previous(self, key: Key) -> int | None:
        return self.seen.get(key)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        self.seen[(topic_id, consumer_id)] = offset

    def delete(self, topic_id: int, consumer_id: int) -> None:
        super().delete(topic_id, consumer_id)
        self.seen.pop((topic_id, consumer_id), None)


class HookOnDelete(HookedDir):
    """H1: "notify on every change": a delete calls the post-commit hooks too, with offset 0, so a
    downstream system records a commit that never happened."""

    def delete(self, topic_id: int, consumer_id: int) -> None:
        key = check_key(topic_id, consumer_id)
        info = self.info(key, 0)
        super().delete(topic_id, consumer_id)
        self.run_hooks(info)


class HookFailureAborts(HookedDir):
    """H3: the first failing hook's exception escapes as is: later hooks never run, and the
    caller sees a plain error for an offset that WAS committed (the Rust ``?`` in invoke_hooks)."""

    def run_hooks(self, info: CommitInfo) -> None:
        for hook in self.hooks:
            hook.on_commit(info)


#: Factory name -> the property the suite must fail it on.
EXPECTED: Final[dict[str, str]] = {
    "FloatOffsets": "C1",
    "ZeroForAbsent": "C2",
    "ConcatenatedNames": "C5",
    "InternalDict": "C6",
    "LooseTypes": "C7",
    "ValidatesLate": "C7",
    "StaleCache": "P2",
    "CorruptIsNone": "F1",
    "MonotonicOnly": "C3",
    "DeleteAbsentRaises": "C4",
    "LostOnClose": "P1",
    "CacheOnlyListing": "P2",
    "CloseDoesNothing": "C8",
    "NameEscapes": "S1",
    "NameCheckedAfterMkdir": "S1",
    "HookBeforeSave": "H3",
    "HookOnFailedSave": "H3",
    "PreviousFromHandle": "H2",
    "HookFailureAborts": "H3",
    "HookOnDelete": "H1",
    "LastKnownGood": "F1",
    "SignedBigint": "C1",
    "SwappedListing": "C6",
}


def has_readable_steps(text: str) -> bool:
    """Whether a failure report holds Hypothesis' shrunk counterexample, not just a message.

    Hypothesis titles it "Falsifying example" in older releases and "Failing test case" in newer
    ones ("... explicit example" for one a check enumerates itself, as F1 does); what follows (a
    state machine's steps, or a test's arguments and draws) is the part a person reads, so at
    least two lines of it must be there.
    """
    titles = ("Falsifying example", "Failing test case", "Failing explicit example")
    for title in (*titles, "Falsifying explicit example"):
        if title in text:
            body = text.split(title, 1)[1].strip().splitlines()
            return len(body) >= 2
    return False


# -- added later: below EXPECTED, so parallel additions stay apart ------------------------


class LastKnownGood(DirStore):
    """F1 (warm): remembers the last value of each file and, when the file no longer parses,
    returns that ("fall back to last known good"). A new handle raises, so every cold check
    passes; an open handle hands out the offset it saved itself, older than what another handle
    committed since, and the consumer silently replays."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.known: dict[str, int] = {}

    def read(self, file: str) -> int | None:
        try:
            value = super().read(file)
        except ValueError:
            if file in self.known:
                return self.known[file]
            raise
        if value is not None:
            self.known[file] = value
        return value

    def write(self, file: str, offset: int) -> None:
        super().write(file, offset)
        self.known[file] = offset


class SignedBigint(HookedDir):
    """C1: the offset goes through a signed 64-bit column (SQLite INTEGER, a Java long): saving
    2**63 or more raises OverflowError, before any hook runs. Otherwise correct, hooks included,
    so H1-H3 must not blame its hooks for it."""

    def write(self, file: str, offset: int) -> None:
        if offset >= 2**63:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        super().write(file, offset)


class SwappedListing(DirStore):
    """C6: ``list_all`` builds its keys as ``(consumer_id, topic_id)``, the order of the row it
    reads them from; ``load``, ``save`` and ``delete`` are right. Crash properties must not blame
    a crash for a listing that is wrong with no crash at all (D4 shows it, and says "see C6")."""

    def list_all(self) -> dict[Key, int]:
        return {(c, t): v for (t, c), v in super().list_all().items()}
