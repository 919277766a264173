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
import itertools
from collections.abc import Sequence
from typing import Final

__all__ = [
    "PAGE",
    "SECTOR",
    "DataChoices",
    "DigestCache",
    "changed_range",
    "content_choices",
    "content_digest",
]

#: Bytes a disk writes atomically by default: a write is torn only at a multiple of it.
SECTOR: Final = 512
#: Byte-level tears (the pessimistic option): changed regions up to this size are torn at every
#: byte; longer ones at a few cut points.
_EVERY_BYTE: Final = 64
#: Sector tears: a changed region spanning up to this many sector boundaries is torn at each.
_EVERY_SECTOR: Final = 8
#: Bytes compared at a time when looking for the first and last changed byte.
_BLOCK: Final = 4096
#: A page of the page cache: a long write's page boundaries are among its cut points.
PAGE: Final = 4096

#: A recipe: ``(kind, version position, cut)``. Kinds: ``_KEPT`` (the content of version
#: ``position``; -1 is the synced content), ``_TORN`` (version ``position`` torn at ``cut``),
#: ``_ZEROS`` (the new size, zeros for the data gained; ``cut`` is the size), ``_PAGES`` (the
#: synced content with the pages of subset ``cut`` of those version ``position`` dirtied).
Recipe = tuple[int, int, int]
_KEPT: Final = 0
_TORN: Final = 1
_ZEROS: Final = 2
_PAGES: Final = 3
#: Dirty pages of a mapping up to which every subset is tried; beyond, each page alone and
#: each page missing, for the first :data:`_PAGES_EACH` dirty pages.
_EVERY_SUBSET: Final = 6
_PAGES_EACH: Final = 32

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


def _cuts(start: int, end: int, tear: int) -> list[int]:
    """Cut points strictly inside ``[start, end)``, at multiples of ``tear`` bytes.

    A disk writes a sector whole or not at all, so a write is torn only between sectors: at
    file offsets that are multiples of the sector size (a write inside one sector is not torn
    at all). ``tear`` 1 is the pessimistic byte-level model: every byte of a short change, a few
    cut points of a long one. Otherwise every sector boundary of a change spanning a few, else
    the first, the middle and the last, and the first page boundaries.
    """
    if tear == 1:
        if end - start <= _EVERY_BYTE:
            return list(range(start + 1, end))
        blocks = range(start - start % PAGE + PAGE, end, PAGE)[:4]  # page boundaries first written
        inner = {start + 1, start + 512, (start + end) // 2, end - 1, *blocks}
        return sorted(c for c in inner if start < c < end)
    bounds = range(start - start % tear + tear, end, tear)
    if len(bounds) <= _EVERY_SECTOR:
        return list(bounds)
    pages = [c for c in bounds if c % PAGE == 0][:4]
    return sorted({bounds[0], bounds[len(bounds) // 2], bounds[-1], *pages})


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
        tear: int = SECTOR,
        failed_at: int = -1,
        pages: bool = False,
    ) -> None:
        self._synced = synced
        self._tear = tear
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
        if pages:
            recipes += [(_PAGES, last, n) for n in range(len(self._subsets(last)))]
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
            cuts = _cuts(*changed_range(previous, content), self._tear)
        self._cache[key] = cuts
        return cuts

    def _subsets(self, position: int) -> list[tuple[int, ...]]:
        """Subsets of the pages version ``position`` differs from the synced content in.

        Written through a shared mapping, those pages are written back in any order: a power
        cut may leave any subset of them (see :data:`_EVERY_SUBSET`).
        """
        key = (-2, position, 0)
        cached = self._cache.get(key)
        if isinstance(cached, list):
            return cached
        content = self._content_of(position)
        base = self._synced[: len(content)].ljust(len(content), b"\0")
        dirty = [
            page
            for page in range(-(-len(content) // PAGE))
            if base[page * PAGE : (page + 1) * PAGE] != content[page * PAGE : (page + 1) * PAGE]
        ]
        found: list[tuple[int, ...]]
        if len(dirty) <= _EVERY_SUBSET:
            found = [
                subset
                for size in range(1, len(dirty))
                for subset in itertools.combinations(dirty, size)
            ]
        else:
            each = dirty[:_PAGES_EACH]
            found = [(page,) for page in each]
            found += [tuple(p for p in dirty if p != page) for page in each]
        self._cache[key] = found
        return found

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
        if kind == _PAGES:
            content = self._content_of(position)
            out = bytearray(self._synced[: len(content)].ljust(len(content), b"\0"))
            for page in self._subsets(position)[cut]:
                out[page * PAGE : (page + 1) * PAGE] = content[page * PAGE : (page + 1) * PAGE]
            return bytes(out)
        previous, content = self._content_of(position - 1), self._content_of(position)
        return content[:cut] + previous[cut:]

    def _how(self, recipe: Recipe) -> str:
        kind, position, cut = recipe
        span = self._span
        if kind == _TORN:
            return f"unsynced data ({span}) with #{self._versions[position][0]} torn at byte {cut}"
        if kind == _ZEROS:
            return f"unsynced data ({span}): new size kept, data zeros"
        if kind == _PAGES:
            kept = ", ".join(str(page) for page in self._subsets(position)[cut])
            return f"unsynced data ({span}) through a mapping: only dirty pages {kept} written"
        return self._kept(position)

    def _kept(self, position: int) -> str:
        span = self._span
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
    tear: int = SECTOR,
    failed_at: int = -1,
    pages: bool = False,
) -> DataChoices:
    """List what a cut may leave of a file: ``(content, how)`` pairs, first the extremes.

    :param synced: the content at the last sync (empty for a file never synced).
    :param versions: ``(op index, content)`` for every content change since, oldest first
        (not empty).
    :param cache: digests kept between calls for the same file since its last sync.
    :param tear: the bytes a disk writes atomically (a sector; 1 for byte-level tears): a write
        is torn only at a file offset that is a multiple of it.
    :param pages: some versions were written through a shared mapping: any subset of the
        pages the last one dirtied may be written back, the others not.
    :param failed_at: the failed sync whose lost bytes ``synced`` holds old (the report says
        so), or -1.

    Each write since the last sync either happened, or not, in order (the intermediate contents
    the trace saw), or was torn: its changed bytes written up to a cut point at a sector
    boundary, the old bytes after it (an append torn to a prefix; an overwrite half new, half
    old; never shorter than before, because a write cannot shrink a file). And the file may keep
    its new size with zeros for the data it gained (the size reached the journal, the blocks did
    not).
    """
    return DataChoices(synced, versions, cache, tear=tear, failed_at=failed_at, pages=pages)
