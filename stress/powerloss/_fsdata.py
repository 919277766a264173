"""What a power cut may leave of a file's unsynced data: the data half of the D3 model.

Given the content a file had at its last ``fsync`` and every content the trace saw since, list
the contents a cut may leave, each with a few words saying how (for the failure report).

The list is lazy (:class:`DataChoices`): a file written many times since its last sync (a
SQLite write-ahead log under ``synchronous=OFF``) has thousands of torn versions of hundreds of
kilobytes each, far too many to hold at once. Each choice is a small recipe (which version, torn
where) and its bytes are built only when a crash state that uses it is written out. Duplicates
are dropped by digest, computed once per recipe and kept in a cache the model holds per file
until its next sync (its versions only grow until then, so earlier recipes stay valid).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = ["DataChoices", "DigestCache", "changed_range", "content_choices", "content_digest"]

#: Changed regions up to this size are torn at every byte; longer ones at a few cut points.
_EVERY_BYTE: Final = 64
#: Bytes compared at a time when looking for the first and last changed byte.
_BLOCK: Final = 4096

#: A recipe: ``(kind, version position, cut)``. Kinds: ``_KEPT`` (the content of version
#: ``position``; -1 is the synced content), ``_TORN`` (version ``position`` torn at ``cut``),
#: ``_ZEROS`` (the new size, zeros for the data gained; ``cut`` is the size).
Recipe = tuple[int, int, int]
_KEPT: Final = 0
_TORN: Final = 1
_ZEROS: Final = 2

#: Digests (and cut lists) of recipes already seen for one file since its last sync.
DigestCache = dict[tuple[int, int, int], object]


def content_digest(content: bytes) -> bytes:
    """A short digest naming a file's content: equal digests, equal bytes (to drop duplicates)."""
    return hashlib.blake2b(content, digest_size=16).digest()


def _prefix(old: bytes, new: bytes) -> int:
    """Length of the common prefix of ``old`` and ``new`` (block-wise: files can be large)."""
    limit = min(len(old), len(new))
    start = 0
    while start + _BLOCK <= limit and old[start : start + _BLOCK] == new[start : start + _BLOCK]:
        start += _BLOCK
    while start < limit and old[start] == new[start]:
        start += 1
    return start


def changed_range(old: bytes, new: bytes) -> tuple[int, int]:
    """Return the byte range ``[start, end)`` where ``new`` differs from ``old``."""
    start = _prefix(old, new)
    end = len(new)
    if len(new) <= len(old):
        while end - _BLOCK >= start and old[end - _BLOCK : end] == new[end - _BLOCK : end]:
            end -= _BLOCK
        while end > start and old[end - 1] == new[end - 1]:
            end -= 1
    return start, end


def _cuts(start: int, end: int) -> list[int]:
    """Cut points strictly inside ``[start, end)``: every byte if short, else a few."""
    if end - start <= _EVERY_BYTE:
        return list(range(start + 1, end))
    blocks = range(start - start % 4096 + 4096, end, 4096)[:4]  # page boundaries first written
    inner = {start + 1, start + 512, (start + end) // 2, end - 1, *blocks}
    return sorted(c for c in inner if start < c < end)


class DataChoices(Sequence[tuple[bytes, str]]):
    """What a cut may leave of one file: ``(content, how)`` pairs built on demand, extremes first.

    Index 0 is the current content (everything kept), index 1 the synced content (everything
    dropped) unless it is the same; then every intermediate content, every torn write, and the
    new size with zeros. Only recipes and digests are held; ``self[i]`` builds the bytes.
    """

    def __init__(
        self,
        synced: bytes,
        versions: Sequence[tuple[int, bytes]],
        cache: DigestCache | None = None,
        *,
        failed_at: int = -1,
    ) -> None:
        self._synced = synced
        self._failed_at = failed_at
        self._versions = tuple(versions)
        self._cache: DigestCache = {} if cache is None else cache
        last = len(self._versions) - 1
        first_op, last_op = self._versions[0][0], self._versions[-1][0]
        self._span = f"#{first_op}" if first_op == last_op else f"#{first_op}..#{last_op}"
        recipes: list[Recipe] = [(_KEPT, last, 0), (_KEPT, -1, 0)]
        recipes += [(_KEPT, i, 0) for i in range(last)]
        for i in range(len(self._versions)):
            recipes += [(_TORN, i, cut) for cut in self._torn_cuts(i)]
        current = self._versions[-1][1]
        if len(current) > len(synced):
            recipes.append((_ZEROS, -1, len(current)))
        seen: set[object] = set()
        self._recipes: list[Recipe] = []
        for recipe in recipes:
            digest = self._digest(recipe)
            if digest not in seen:
                seen.add(digest)
                self._recipes.append(recipe)

    def _content_of(self, position: int) -> bytes:
        return self._synced if position < 0 else self._versions[position][1]

    def _torn_cuts(self, position: int) -> list[int]:
        key = (-1, position, 0)  # the cut list of one version, cached like the digests
        cached = self._cache.get(key)
        if isinstance(cached, list):
            return cached
        previous, content = self._content_of(position - 1), self._content_of(position)
        cuts: list[int] = []
        if len(content) >= len(previous):  # a write; a truncation is one atomic size change
            cuts = _cuts(*changed_range(previous, content))
        self._cache[key] = cuts
        return cuts

    def _digest(self, recipe: Recipe) -> object:
        # Every recipe is stable until the file's next sync (versions are only appended), so
        # its digest is computed once per sync epoch, however many crash points use it.
        cached = self._cache.get(recipe)
        if cached is None:
            cached = content_digest(self._build(recipe))
            self._cache[recipe] = cached
        return cached

    def _build(self, recipe: Recipe) -> bytes:
        kind, position, cut = recipe
        if kind == _KEPT:
            return self._content_of(position)
        if kind == _ZEROS:
            return self._synced + b"\0" * (cut - len(self._synced))
        previous, content = self._content_of(position - 1), self._content_of(position)
        return content[:cut] + previous[cut:]

    def _how(self, recipe: Recipe) -> str:
        kind, position, cut = recipe
        span = self._span
        if kind == _TORN:
            return f"unsynced data ({span}) with #{self._versions[position][0]} torn at byte {cut}"
        if kind == _ZEROS:
            return f"unsynced data ({span}): new size kept, data zeros"
        if position == len(self._versions) - 1:
            return f"unsynced data ({span}) kept"
        if position < 0 and self._failed_at >= 0:
            return (
                f"unsynced data ({span}) dropped, and what the failed sync #{self._failed_at} "
                "lost is old bytes"
            )
        if position < 0:
            return f"unsynced data ({span}) dropped to last synced"
        return f"unsynced data ({span}) kept as after #{self._versions[position][0]}"

    def digest(self, index: int) -> bytes:
        """Name choice ``index`` by its content without building it: its :func:`content_digest`."""
        found = self._cache[self._recipes[index]]
        assert isinstance(found, bytes)  # recipes' entries are digests; cut lists have their own
        return found

    def __len__(self) -> int:
        return len(self._recipes)

    def __getitem__(self, index: int) -> tuple[bytes, str]:  # type: ignore[override]
        recipe = self._recipes[index]
        return self._build(recipe), self._how(recipe)


def content_choices(
    synced: bytes,
    versions: Sequence[tuple[int, bytes]],
    cache: DigestCache | None = None,
    *,
    failed_at: int = -1,
) -> DataChoices:
    """List what a cut may leave of a file: ``(content, how)`` pairs, first the extremes.

    :param synced: the content at the last sync (empty for a file never synced).
    :param versions: ``(op index, content)`` for every content change since, oldest first
        (not empty).
    :param cache: digests kept between calls for the same file since its last sync.
    :param failed_at: the failed sync whose lost bytes ``synced`` holds old (the report says
        so), or -1.

    Each write since the last sync either happened, or not, in order (the intermediate contents
    the trace saw), or was torn: its changed bytes written up to a cut point, the old bytes after
    it (an append torn to a prefix; an overwrite half new, half old; never shorter than before,
    because a write cannot shrink a file). And the file may keep its new size with zeros for the
    data it gained (the size reached the journal, the blocks did not).
    """
    return DataChoices(synced, versions, cache, failed_at=failed_at)
