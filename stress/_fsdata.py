"""What a power cut may leave of a file's unsynced data: the data half of the D3 model.

Given the content a file had at its last ``fsync`` and every content the trace saw since, list
the contents a cut may leave, each with a few words saying how (for the failure report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["content_choices"]

#: Changed regions up to this size are torn at every byte; longer ones at a few cut points.
_EVERY_BYTE: Final = 64


def _changed(old: bytes, new: bytes) -> tuple[int, int]:
    """Return the byte range ``[start, end)`` where ``new`` differs from ``old``."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = len(new)
    if len(new) <= len(old):
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


def content_choices(
    synced: bytes, versions: Sequence[tuple[int, bytes]]
) -> list[tuple[bytes, str]]:
    """List what a cut may leave of a file: ``(content, how)`` pairs, first the extremes.

    :param synced: the content at the last sync (empty for a file never synced).
    :param versions: ``(op index, content)`` for every content change since, oldest first
        (not empty).

    Each write since the last sync either happened, or not, in order (the intermediate contents
    the trace saw), or was torn: its changed bytes written up to a cut point, the old bytes after
    it (an append torn to a prefix; an overwrite half new, half old; never shorter than before,
    because a write cannot shrink a file). And the file may keep its new size with zeros for the
    data it gained (the size reached the journal, the blocks did not).
    """
    current = versions[-1][1]
    first = versions[0][0]
    last = versions[-1][0]
    span = f"#{first}" if first == last else f"#{first}..#{last}"
    choices: dict[bytes, str] = {
        current: f"unsynced data ({span}) kept",
        synced: f"unsynced data ({span}) dropped to last synced",
    }
    for index, content in versions[:-1]:
        choices.setdefault(content, f"unsynced data ({span}) kept as after #{index}")
    previous = synced
    for index, content in versions:
        if len(content) >= len(previous):  # a write; a truncation is one atomic size change
            start, end = _changed(previous, content)
            for cut in _cuts(start, end):
                torn = content[:cut] + previous[cut:]
                choices.setdefault(torn, f"unsynced data ({span}) with #{index} torn at byte {cut}")
        previous = content
    if len(current) > len(synced):
        zeros = synced + b"\0" * (len(current) - len(synced))
        choices.setdefault(zeros, f"unsynced data ({span}): new size kept, data zeros")
    return list(choices.items())
