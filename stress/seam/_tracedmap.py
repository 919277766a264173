"""Writes through shared writable mappings, seen by the interposer: ``mmap.mmap``, diffed.

A store that maps a file shared and writable changes it by storing into memory: no call to
wrap. Inside a ``traced()`` block ``mmap.mmap`` is :class:`TracedMmap`, which remembers each such
mapping of a traced descriptor with a copy of its bytes. Before every recorded operation, at
``flush()`` (msync) and ``close()``, and when the block ends, the mappings are compared with
their copies and what changed is recorded as a ``write`` whose ``call`` is ``"mmap"``, with the
pages changed in the note and the file's whole content (VOCAB19: the model lets a power cut keep
any subset of the pages dirtied since the file's last sync). ``flush()`` is then an ``fsync``.

Mappings made before the block, or by C code, are not followed here (the syscall shim follows
those); a store whose mappings the interposer misses disagrees with the shim's view of the same
run, and the shim judges.
"""

from __future__ import annotations

import mmap
import weakref
from dataclasses import dataclass
from typing import Any

from ._trace import PAGE
from ._tracer import Tracer, read_content

__all__ = ["ACTIVE", "Mappings", "TracedMmap"]


@dataclass
class _Mapped:
    ref: weakref.ref[TracedMmap]
    path: str
    offset: int
    copy: bytes


class Mappings:
    """The shared writable mappings one tracer follows."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.maps: list[_Mapped] = []

    def add(self, area: TracedMmap, path: str, offset: int) -> None:
        self.maps.append(_Mapped(weakref.ref(area), path, offset, area[:]))

    def moved(self, src: str, dst: str) -> None:
        for mapped in self.maps:
            if mapped.path == src:
                mapped.path = dst

    def diff(self, only: TracedMmap | None = None) -> None:
        """Record what was stored through the mappings (``only`` one) since the last record."""
        for mapped in list(self.maps):
            area = mapped.ref()
            if area is None or area.closed:
                self.maps.remove(mapped)
                continue
            if only is not None and area is not only:
                continue
            now = area[:]
            if now == mapped.copy:
                continue
            first = mapped.offset // PAGE
            pages = [
                first + at // PAGE
                for at in range(0, len(now), PAGE)
                if now[at : at + PAGE] != mapped.copy[at : at + PAGE]
            ]
            mapped.copy = now
            note = "pages " + " ".join(str(p) for p in pages)
            self.tracer.record_write(mapped.path, read_content(None, mapped.path), note)


def _shared_writable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``mmap.mmap(fileno, length, *args, **kwargs)`` maps shared and writable (Unix)."""
    names = ("flags", "prot", "access", "offset")
    given = dict(zip(names, args, strict=False)) | kwargs
    access = given.get("access", mmap.ACCESS_DEFAULT)
    if access == mmap.ACCESS_WRITE:
        return True
    if access != mmap.ACCESS_DEFAULT:
        return False
    flags = given.get("flags", getattr(mmap, "MAP_SHARED", 1))
    prot = given.get("prot", getattr(mmap, "PROT_WRITE", 2) | getattr(mmap, "PROT_READ", 1))
    return bool(flags & getattr(mmap, "MAP_SHARED", 1) and prot & getattr(mmap, "PROT_WRITE", 2))


#: The mappings of the active block (set by ``_interpose``).
ACTIVE: list[Mappings] = []


class TracedMmap(mmap.mmap):  # defined at import, before any block patches mmap.mmap
    """``mmap.mmap`` whose shared writable mappings of traced descriptors are followed."""

    def __new__(cls, fileno: int, length: int, *args: Any, **kwargs: Any) -> TracedMmap:
        area: TracedMmap = super().__new__(cls, fileno, length, *args, **kwargs)
        following = ACTIVE[0] if ACTIVE else None
        entry = following.tracer.fds.get(fileno) if following is not None else None
        if following is not None and entry is not None and _shared_writable(args, kwargs):
            offset = dict(zip(("flags", "prot", "access", "offset"), args, strict=False)).get(
                "offset", kwargs.get("offset", 0)
            )
            following.add(area, entry[0], int(offset))
        return area

    def _following(self) -> Mappings | None:
        following = ACTIVE[0] if ACTIVE else None
        if following is None or not any(m.ref() is self for m in following.maps):
            return None
        return following

    def flush(self, *args: Any) -> None:
        following = self._following()
        if following is None:
            super().flush(*args)
            return
        following.diff(only=self)
        path = next(m.path for m in following.maps if m.ref() is self)
        following.tracer.run("fsync", path, lambda: super(TracedMmap, self).flush(*args))

    def close(self) -> None:
        following = self._following()
        if following is not None:
            following.diff(only=self)
        super().close()
