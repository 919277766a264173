"""The power-loss file-system model: every directory state a power cut could leave (D3).

The model follows LevelDB's and RocksDB's fault-injection environments and ALICE. It starts from
a known directory tree, taken as durable, and replays a trace (:class:`~._trace.TraceOp`) of what
a worker did under it. At each crash point (after op ``k``, for every ``k``) a power cut may leave:

* **data**: a file's data written since its last ``fsync``/``fdatasync`` dropped back to the last
  synced content (empty for a file never synced), kept, kept as any intermediate content the trace
  saw, with one write torn (new bytes up to a cut, old ones after: a write never shrinks a file),
  or with its new size but zeros for data (the size reached the journal, the blocks did not); see
  :mod:`._fsdata`. A write is torn only at a sector boundary (``tear``: 512 bytes by default).
  Synced content belongs to the inode, so it follows the inode across renames.
* **names**: an entry operation (create, mkdir, rename/replace, unlink, rmdir) made since the
  last ``fsync`` of its directory may be undone. Undoing a rename restores the target's old inode
  and the source name. Each pending operation persists or not independently of the others (ALICE's
  conservative view; a journal would only keep a prefix, and those prefixes are always among the
  states tried first when sampling). A rename across directories is two halves, one per directory.

Decisions, conservative on purpose:

* ``fsync`` of a file persists its data and size, NOT its own directory entry: ext4 with
  data=ordered happens to commit it, POSIX does not promise it and other file systems do not.
* ``fsync`` of a directory persists every entry operation made in that directory so far, and
  nothing about the data of the files it names.
* What the tree held before the trace is durable, including the directories holding it.

States are enumerated exhaustively when a crash point has at most :data:`EXHAUSTIVE_LIMIT` of them
(a save protocol is a handful of operations) and sampled with a seed otherwise.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from ..seam._trace import TraceOp
from ._fsdata import (
    SECTOR,
    DataChoices,
    DigestCache,
    changed_range,
    content_choices,
    content_digest,
)
from ._fstree import Tree, materialise, snapshot

__all__ = [
    "EXHAUSTIVE_LIMIT",
    "MMAP",
    "O_TMPFILE",
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "CrashState",
    "Exploration",
    "ModelError",
    "StateStream",
    "Tree",
    "UnknownCall",
    "explore",
    "materialise",
    "replay",
    "snapshot",
    "tree_digest",
]

#: A crash point with at most this many states is enumerated exhaustively.
EXHAUSTIVE_LIMIT: Final = 1024

_ROOT: Final = 0


class ModelError(ValueError):
    """The trace cannot be replayed on the tree it claims to start from (an interposer gap)."""


class UnknownCall(ModelError):
    """The trace holds a call the recorder saw and the model does not know (``"unknown"``)."""

    def __init__(self, op: TraceOp) -> None:
        call = op.call or "a call"
        flags = f" ({op.note})" if op.note else ""
        super().__init__(
            f"the store called {call}{flags} on {op.path}, which the model does not know: what "
            "a power cut leaves of it cannot be judged"
        )


#: ``open`` flags of an unnamed file (``O_TMPFILE`` includes ``O_DIRECTORY``); 0 where unknown.
O_TMPFILE: Final = getattr(os, "O_TMPFILE", 0)
#: ``renameat2`` flags, as the seam records them in a ``rename``'s ``flags``.
RENAME_NOREPLACE: Final = 1
RENAME_EXCHANGE: Final = 2
#: The ``call`` of a ``write`` record made by diffing a shared writable mapping.
MMAP: Final = "mmap"


@dataclass
class _Inode:
    is_dir: bool
    synced: bytes = b""
    current: bytes = b""
    #: ``(op index, content)`` for every content change since the last sync, oldest first.
    versions: list[tuple[int, bytes]] = field(default_factory=list)
    #: Digests of this file's torn contents since the last sync (see :mod:`._fsdata`).
    cache: DigestCache = field(default_factory=dict)
    #: Byte ranges a failed sync may have lost for good, with what the disk held there then:
    #: ``(start, end, old bytes)``. A later sync does not bring them back; writing them does.
    lost: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: The index of the first failed sync behind :attr:`lost` (for the report), else -1.
    failed_at: int = -1
    #: Whether some of the unsynced data was written through a shared mapping (``call="mmap"``):
    #: the kernel then writes back any subset of the dirty pages.
    mapped: bool = False

    @property
    def dirty(self) -> bool:
        return bool(self.versions)


@dataclass(frozen=True)
class _EntryOp:
    """A pending change to one directory's entries: ``name -> inode`` (None removes)."""

    op: TraceOp
    dir_ino: int
    changes: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True)
class CrashState:
    """One directory state a power cut after operation ``point`` could leave.

    :ivar point: the index of the last operation made before the cut (-1: before any).
    :ivar tree: the files and directories left, relative to the traced root.
    :ivar persisted: pending entry operations (since their directory's last fsync) that persisted.
    :ivar undone: pending entry operations that were lost.
    :ivar data: for each file with unsynced data, what the cut left of it.
    :ivar unsynced: the paths of those files (relative, as in ``tree``), and ``dropped`` those
        whose unsynced data the cut did not keep whole (dropped, torn, zeros); ``undone_at`` the
        trace indices of the ``undone`` operations: what a diagnosis reads (``_findings.py``),
        where ``undone`` and ``data`` are for people.
    """

    point: int
    tree: Tree
    persisted: tuple[str, ...] = ()
    undone: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    unsynced: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    undone_at: tuple[int, ...] = ()

    def describe(self) -> str:
        """Return a readable account: what persisted, what was lost, and the resulting files."""
        lines = [f"power cut after operation #{self.point}; everything fsynced before survives"]
        lines += [f"  {op}: persisted" for op in self.persisted]
        lines += [f"  {op}: UNDONE" for op in self.undone]
        lines += [f"  {d}" for d in self.data]
        files = ", ".join(
            f"{p}={c!r}" if len(c) < 48 else f"{p}=<{len(c)} bytes>"
            for p, c in self.tree
            if c is not None
        )
        lines.append(f"  files left: {files or '(none)'}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Exploration:
    """Every crash state found for one trace, with how each crash point was covered."""

    states: tuple[CrashState, ...]
    points: int
    exhaustive_points: int
    sampled_points: int


class _Model:
    """The file system as the trace leaves it: live names, durable names, inodes."""

    def __init__(self, root: str, initial: Tree) -> None:
        self.root = os.path.realpath(root)
        self.inodes: dict[int, _Inode] = {_ROOT: _Inode(is_dir=True)}
        self.live: dict[int, dict[str, int]] = {_ROOT: {}}
        self.durable: dict[int, dict[str, int]] = {_ROOT: {}}
        self.pending: list[_EntryOp] = []
        #: Files made with ``O_TMPFILE``, not yet named, by the path the seam gives them
        #: (``<dir>/#tmpfile-<fd>``), and by descriptor.
        self.unnamed: dict[str, int] = {}
        self.unnamed_fds: dict[int, int] = {}
        for rel, content in sorted(initial):
            parent, name = self._resolve_parent(os.path.join(self.root, rel))
            ino = self._new_inode(content is None, content or b"")
            self.live[parent][name] = ino
            self.durable[parent][name] = ino

    def _new_inode(self, is_dir: bool, content: bytes = b"") -> int:
        ino = len(self.inodes)
        self.inodes[ino] = _Inode(is_dir, synced=content, current=content)
        if is_dir:
            self.live[ino] = {}
            self.durable[ino] = {}
        return ino

    def _parts(self, path: str) -> list[str] | None:
        rel = os.path.relpath(path, self.root)
        if rel == ".":
            return []
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            return None
        return rel.split(os.sep)

    def _resolve_parent(self, path: str) -> tuple[int, str]:
        parts = self._parts(path)
        if not parts:
            raise ModelError(f"{path!r} is not inside the traced root {self.root!r}")
        ino = _ROOT
        for part in parts[:-1]:
            child = self.live.get(ino, {}).get(part)
            if child is None or not self.inodes[child].is_dir:
                raise ModelError(f"{path!r}: directory {part!r} is not in the model")
            ino = child
        return ino, parts[-1]

    def _lookup(self, path: str) -> int | None:
        if path in self.unnamed:
            return self.unnamed[path]
        parts = self._parts(path)
        if parts is None:
            return None
        if not parts:
            return _ROOT
        parent, name = self._resolve_parent(path)
        return self.live[parent].get(name)

    def _set_content(self, ino: int, op: TraceOp) -> None:
        node = self.inodes[ino]
        if op.content is None or node.is_dir:
            return
        if node.lost:
            node.lost = _rewritten(node.lost, node.current, op.content, again=op.kind == "write")
        if op.content != node.current:
            node.current = op.content
            node.versions.append((op.index, op.content))
            node.mapped = node.mapped or op.call == MMAP

    def _entry(self, op: TraceOp, parent: int, *changes: tuple[str, int | None]) -> None:
        for name, ino in changes:
            if ino is None:
                self.live[parent].pop(name, None)
            else:
                self.live[parent][name] = ino
        self.pending.append(_EntryOp(op, parent, changes))

    def apply(self, op: TraceOp) -> None:
        """Replay one operation; marks and failed ones change nothing but a failed file sync.

        A failed sync of a file may lose its unsynced data for good (:meth:`_failed_sync`).
        """
        if op.kind == "mark" or self._parts(op.path) is None:
            return
        if op.error is not None:
            if op.kind in ("fsync", "fdatasync") and not op.is_dir:
                self._failed_sync(op)
            return
        kind: str = op.kind  # a str: the seam's vocabulary grows ("link", "unknown")
        if kind == "unknown":
            raise UnknownCall(op)
        if kind in ("rename", "replace"):
            self._rename(op)
        elif kind == "link":
            self._link(op)
        elif kind in ("unlink", "rmdir"):
            parent, name = self._resolve_parent(op.path)
            self._entry(op, parent, (name, None))
        elif kind == "mkdir":
            parent, name = self._resolve_parent(op.path)
            self._entry(op, parent, (name, self._new_inode(is_dir=True)))
        elif kind == "open" and O_TMPFILE and (op.flags & O_TMPFILE) == O_TMPFILE:
            # An unnamed file in directory ``path``: no entry until a link names it.
            ino = self._new_inode(is_dir=False)
            self.unnamed[f"{op.path}/#tmpfile-{op.fd}"] = ino
            self.unnamed_fds[op.fd] = ino
            self._set_content(ino, op)
        else:
            self._on_file(op)

    def _on_file(self, op: TraceOp) -> None:
        """An open (maybe creating), write, truncate, sync or close of a file (or directory)."""
        ino = self._lookup(op.path)
        if ino is None:
            if op.kind != "open" or not op.flags & os.O_CREAT:
                raise ModelError(f"{op}: {op.path!r} does not exist in the model")
            if op.content:
                # A file a create found holding data existed already: the trace missed the
                # call that made it (a link, a rename the tracer does not see).
                raise ModelError(
                    f"{op}: {op.path!r} is not in the model, yet the open found it holding "
                    f"{len(op.content)} bytes: the trace missed the call that made it"
                )
            parent, name = self._resolve_parent(op.path)
            ino = self._new_inode(is_dir=False)
            self._entry(op, parent, (name, ino))
        self._set_content(ino, op)
        if op.kind in ("fsync", "fdatasync"):
            self._sync(ino, op.index)

    def _link(self, op: TraceOp) -> None:
        """A new name for an existing file (create-if-absent), or for an ``O_TMPFILE`` one."""
        if op.target is None:
            ino = self.unnamed_fds.get(op.fd)
            if ino is None and op.fd < 0 and len(self.unnamed_fds) == 1:
                ino = next(iter(self.unnamed_fds.values()))
            if ino is None:
                raise ModelError(f"{op}: no unnamed (O_TMPFILE) file with descriptor {op.fd}")
        else:
            if self._parts(op.target) is None:
                raise ModelError(f"{op}: a link to a file outside the traced root")
            ino = self._lookup(op.target)
            if ino is None:
                raise ModelError(f"{op}: {op.target!r} does not exist in the model")
        if self.inodes[ino].is_dir:
            raise ModelError(f"{op}: a hard link to a directory cannot be made")
        parent, name = self._resolve_parent(op.path)
        if name in self.live[parent]:
            raise ModelError(f"{op}: the link succeeded though {op.path!r} exists in the model")
        self._entry(op, parent, (name, ino))
        self._set_content(ino, op)

    def _rename(self, op: TraceOp) -> None:
        if op.target is None or self._parts(op.target) is None:
            raise ModelError(f"{op}: a rename out of the traced root cannot be modelled")
        src_dir, src_name = self._resolve_parent(op.path)
        dst_dir, dst_name = self._resolve_parent(op.target)
        ino = self.live[src_dir].get(src_name)
        if ino is None:
            raise ModelError(f"{op}: source {op.path!r} does not exist in the model")
        other = self.live[dst_dir].get(dst_name)
        if op.kind == "rename" and op.flags & RENAME_EXCHANGE:
            if other is None:
                raise ModelError(f"{op}: an exchange with {op.target!r}, which the model lacks")
            # Both entries change at once; across directories, each half with its directory.
            if src_dir == dst_dir:
                self._entry(op, src_dir, (src_name, other), (dst_name, ino))
            else:
                self._entry(op, dst_dir, (dst_name, ino))
                self._entry(op, src_dir, (src_name, other))
            return
        if op.kind == "rename" and op.flags & RENAME_NOREPLACE and other is not None:
            raise ModelError(f"{op}: RENAME_NOREPLACE succeeded though {op.target!r} exists")
        if other == ino:
            return  # renaming a name onto a hard link of itself changes nothing
        if src_dir == dst_dir:
            self._entry(op, src_dir, (src_name, None), (dst_name, ino))
        else:
            self._entry(op, dst_dir, (dst_name, ino))
            self._entry(op, src_dir, (src_name, None))

    def _failed_sync(self, op: TraceOp) -> None:
        """A file's sync failed: the data written since its last sync may never reach the disk.

        Linux marks the pages of a failed writeback clean (or drops them) and reports the error
        once, so a later sync that succeeds does not write them again (PostgreSQL's
        "fsyncgate", 2018). Until the store writes those bytes again, the disk may keep what it
        held before: :meth:`_sync` keeps that possibility open.
        """
        ino = self._lookup(op.path)
        if ino is None or self.inodes[ino].is_dir or not self.inodes[ino].dirty:
            return
        node = self.inodes[ino]
        start, end = changed_range(node.synced, node.current)
        if start < end:
            node.lost.append((start, end, node.synced[start:end]))
            node.failed_at = op.index if node.failed_at < 0 else node.failed_at

    def _sync(self, ino: int, index: int) -> None:
        node = self.inodes[ino]
        if node.is_dir:
            # A directory fsync persists every entry operation made in it so far.
            kept = []
            for entry in self.pending:
                if entry.dir_ino == ino:
                    for name, target in entry.changes:
                        if target is None:
                            self.durable[ino].pop(name, None)
                        else:
                            self.durable[ino][name] = target
                else:
                    kept.append(entry)
            self.pending = kept
        else:
            node.cache = {}
            node.mapped = False
            durable = _without(node.current, node.lost)
            node.synced = durable
            # What a failed sync lost stays in doubt: the disk holds the old bytes there or the
            # new ones, as if they were still unsynced on top of the old (and ``lost`` stays).
            node.versions = [] if durable == node.current else [(index, node.current)]


def _rewritten(
    lost: list[tuple[int, int, bytes]], before: bytes, after: bytes, *, again: bool
) -> list[tuple[int, int, bytes]]:
    """``lost`` without the bytes a change from ``before`` to ``after`` put there again.

    A record holds the file's content, not the write's extent: a ``write`` record that changed
    no byte (``again``: the same bytes written again, as a careful store retries) is taken to
    cover all of ``lost``, as F2's judge reads it (``faults/_judge.py``); otherwise the bytes
    that changed are covered. Bytes past a shorter new end are gone, so not lost either.
    """
    if after == before:
        return [] if again else lost
    start, end = changed_range(before, after)
    kept: list[tuple[int, int, bytes]] = []
    for a, b, old in lost:
        stop = min(b, len(after))
        for lo, hi in ((a, min(stop, start)), (max(a, end), stop)):
            if lo < hi:
                kept.append((lo, hi, old[lo - a : hi - a]))
    return kept


def _without(content: bytes, lost: list[tuple[int, int, bytes]]) -> bytes:
    """``content`` with every range of ``lost`` back to its old bytes (zeros past the old end)."""
    if not lost:
        return content
    out = bytearray(content)
    for start, end, old in lost:
        stop = min(end, len(out))
        out[start:stop] = old[: stop - start].ljust(stop - start, b"\0")
    return bytes(out)


class _Frontier:
    """A frozen copy of the model at one crash point, from which states are drawn."""

    def __init__(self, model: _Model, point: int, tear: int) -> None:
        self.point = point
        self.durable = copy.deepcopy(model.durable)
        self.pending = list(model.pending)
        self.synced = {i: n.current for i, n in model.inodes.items() if not n.dirty}
        #: :func:`content_digest` of each synced file, once per frontier (SQLite's are large).
        self._synced_digests: dict[int, bytes] = {}
        self.dirty: dict[int, DataChoices] = {
            i: content_choices(
                n.synced,
                n.versions,
                n.cache,
                tear=tear,
                failed_at=n.failed_at if n.lost else -1,
                pages=n.mapped,
            )
            for i, n in model.inodes.items()
            if n.dirty
        }

    def names(self, keep: Sequence[bool]) -> dict[int, dict[str, int]]:
        names = {d: dict(e) for d, e in self.durable.items()}
        for entry, kept in zip(self.pending, keep, strict=True):
            if kept:
                for name, ino in entry.changes:
                    if ino is None:
                        names[entry.dir_ino].pop(name, None)
                    else:
                        names[entry.dir_ino][name] = ino
        return names

    def reachable_dirty(self, names: dict[int, dict[str, int]]) -> list[int]:
        found: list[int] = []
        stack = [_ROOT]
        while stack:
            for ino in names[stack.pop()].values():
                if ino in self.dirty and ino not in found:
                    found.append(ino)
                elif ino in names:
                    stack.append(ino)
        return sorted(found)

    def state(self, keep: Sequence[bool], pick: dict[int, int]) -> tuple[CrashState, bytes]:
        """The crash state ``(keep, pick)`` leaves, and its tree's :func:`tree_digest`."""
        names = self.names(keep)
        files: list[tuple[str, bytes | None]] = []
        digests: list[tuple[str, bytes | None]] = []
        data: list[str] = []
        unsynced: list[str] = []
        dropped: list[str] = []
        described: set[int] = set()

        def walk(dir_ino: int, prefix: str) -> None:
            for name, ino in sorted(names[dir_ino].items()):
                rel = f"{prefix}{name}"
                if ino in names:
                    files.append((rel, None))
                    digests.append((rel, None))
                    walk(ino, rel + "/")
                elif ino in self.dirty:
                    choices, index = self.dirty[ino], pick.get(ino, 0)
                    content, how = choices[index]
                    files.append((rel, content))
                    digests.append((rel, choices.digest(index)))
                    if ino not in described:
                        described.add(ino)
                        data.append(_cut(f"{rel}: {how} -> ", content, _DATA_CHARS))
                        unsynced.append(rel)
                        if index != 0:  # choice 0 keeps every unsynced write
                            dropped.append(rel)
                else:
                    files.append((rel, self.synced[ino]))
                    digests.append((rel, self._synced_digest(ino)))

        walk(_ROOT, "")
        state = CrashState(
            self.point,
            tuple(files),
            tuple(str(e.op) for e, k in zip(self.pending, keep, strict=True) if k),
            tuple(str(e.op) for e, k in zip(self.pending, keep, strict=True) if not k),
            tuple(data),
            tuple(unsynced),
            tuple(dropped),
            tuple(e.op.index for e, k in zip(self.pending, keep, strict=True) if not k),
        )
        return state, _digest_of(digests)

    def _synced_digest(self, ino: int) -> bytes:
        found = self._synced_digests.get(ino)
        if found is None:
            found = self._synced_digests[ino] = content_digest(self.synced[ino])
        return found

    def upper_bound(self) -> int:
        bound: int = 2 ** len(self.pending)
        for choices in self.dirty.values():
            bound *= len(choices)
        return bound

    def every_choice(self) -> Iterator[_Choice]:
        """Every ``(keep, pick)`` of this crash point: which entry ops persist, which data."""
        for keep in itertools.product((True, False), repeat=len(self.pending)):
            inos = self.reachable_dirty(self.names(keep))
            ranges = [range(len(self.dirty[i])) for i in inos]
            for choice in itertools.product(*ranges):
                yield keep, dict(zip(inos, choice, strict=True))

    def count(self, exhaustive: bool, budget: int) -> int:
        """How many choices :meth:`every_choice` (or :meth:`sample`) yields, none built."""
        if not exhaustive:
            return max(budget, 2 * (len(self.pending) + 1))
        total = 0
        for keep in itertools.product((True, False), repeat=len(self.pending)):
            product = 1
            for ino in self.reachable_dirty(self.names(keep)):
                product *= len(self.dirty[ino])
            total += product
        return total

    def key(self, keep: Sequence[bool], pick: dict[int, int]) -> tuple[object, ...]:
        """Name the tree ``state(keep, pick)`` would build, without building its bytes.

        Equal keys, equal trees; a file's data is named by its choice's digest, a synced file by
        its inode (two inodes with equal content give two keys: a duplicate checked twice).
        """
        names = self.names(keep)
        found: list[tuple[str, object]] = []
        stack = [(_ROOT, "")]
        while stack:
            dir_ino, prefix = stack.pop()
            for name, ino in sorted(names[dir_ino].items()):
                rel = f"{prefix}{name}"
                if ino in names:
                    found.append((rel, None))
                    stack.append((ino, rel + "/"))
                elif ino in self.dirty:
                    found.append((rel, self.dirty[ino].digest(pick.get(ino, 0))))
                else:
                    found.append((rel, ino))
        return tuple(found)

    def distinct(self, choices: Iterator[_Choice]) -> Iterator[_Choice]:
        """``choices`` without those whose tree an earlier one already builds (see :meth:`key`)."""
        seen: set[tuple[object, ...]] = set()
        for keep, pick in choices:
            key = self.key(keep, pick)
            if key not in seen:
                seen.add(key)
                yield keep, pick

    def sample(self, rng: random.Random, budget: int) -> Iterator[_Choice]:
        n = len(self.pending)
        # Journal-order prefixes first (what ext4/XFS really leave), data all kept then dropped.
        for extreme in (0, 1):
            for kept in range(n, -1, -1):
                keep = tuple(i < kept for i in range(n))
                inos = self.reachable_dirty(self.names(keep))
                yield keep, {i: min(extreme, len(self.dirty[i]) - 1) for i in inos}
        for _ in range(max(0, budget - 2 * (n + 1))):
            keep = tuple(rng.random() < 0.5 for _ in range(n))
            inos = self.reachable_dirty(self.names(keep))
            yield keep, {i: rng.randrange(len(self.dirty[i])) for i in inos}


#: Characters of a crash state's account of one file's data (:attr:`CrashState.data`).
_DATA_CHARS: Final = 160


def _cut(text: str, content: bytes, chars: int) -> str:
    """``(text + repr(content))[:chars]``, without escaping all of a large ``content``.

    A SQLite file is hundreds of kilobytes, and every crash state describes its data: escaping
    all of it for 160 characters was most of the model's time. Every byte is at least one
    character of its ``repr``, so a head of ``chars`` bytes is enough, once it is quoted as the
    whole would be: with double quotes only if the content has a ``'`` and no ``"``.
    """
    head = repr(content[:chars])
    doubled = b"'" in content and b'"' not in content
    if (head[1] == '"') != doubled:
        inner = head[2:-1]
        # The head chose other quotes than the whole: it has no double quote either way, and its
        # single quotes are plain characters (a backslash byte is shown as two backslashes).
        head = f'b"{inner}"' if doubled else "b'" + inner.replace("'", "\\'") + "'"
    return (text + head)[:chars]


#: One crash state's recipe: which pending entry ops persist, which data choice each file gets.
_Choice = tuple[Sequence[bool], dict[int, int]]


def replay(trace: Sequence[TraceOp], root: str, initial: Tree) -> Tree:
    """Return the tree the trace leaves with no power cut (every name and byte as the OS has it).

    Comparing it with the directory on disk after the run tells whether the trace saw all the I/O:
    a difference means writes the tracer missed (C code, functions bound at import, mmap).

    :raises ModelError: the trace does not fit the tree.
    """
    model = _Model(root, initial)
    for op in trace:
        model.apply(op)
    files: list[tuple[str, bytes | None]] = []

    def walk(dir_ino: int, prefix: str) -> None:
        for name, ino in sorted(model.live[dir_ino].items()):
            node = model.inodes[ino]
            files.append((prefix + name, None if node.is_dir else node.current))
            if node.is_dir:
                walk(ino, f"{prefix}{name}/")

    walk(_ROOT, "")
    return tuple(sorted(files))


class StateStream:
    """The crash states of a trace, generated one at a time in trace order, at most ``cap``.

    Nothing is built up front: a first pass over the trace counts the candidate states of every
    crash point (each ``(keep, pick)`` recipe of :class:`_Frontier`), and iterating replays the
    trace again and builds only the states drawn. When the candidates outnumber ``cap``, ``cap``
    of them are drawn with the seed, uniformly over the whole trace; then states identical at
    one crash point are dropped. Memory is one crash point's frontier and one state at a time,
    whatever the trace (the digests of the states already seen at the current point aside).

    :ivar points: crash points (one per operation, and one before any).
    :ivar exhaustive_points: crash points whose every state is a candidate.
    :ivar sampled_points: crash points with more than :data:`EXHAUSTIVE_LIMIT` states, where
        ``budget`` of them drawn with the seed are the candidates.
    :ivar candidates: candidate states in all (distinct ones only, when the cap draws).
    :ivar estimated: every state the model allows, sampled points counted at their upper bound.
    :ivar drawn: how many candidates iterating yields at most (``min(candidates, cap)``).

    ``tear`` is the bytes a disk writes atomically (:data:`~._fsdata.SECTOR` by default; 4096
    for most current drives; 1 for byte-level tears): unsynced writes are torn only there.
    """

    def __init__(
        self,
        trace: Sequence[TraceOp],
        root: str,
        initial: Tree,
        *,
        seed: int,
        budget: int = 64,
        cap: int | None = None,
        tear: int = SECTOR,
    ) -> None:
        self._trace, self._root, self._initial = trace, root, initial
        self._seed, self._budget, self._tear = seed, budget, tear
        self.counts: list[int] = []
        self.exhaustive_points = self.sampled_points = 0
        self.estimated = 0
        for _point, frontier, exhaustive in self._frontiers():
            self.counts.append(frontier.count(exhaustive, budget))
            if exhaustive:
                self.exhaustive_points += 1
                self.estimated += self.counts[-1]
            else:
                self.sampled_points += 1
                self.estimated += frontier.upper_bound()
        #: Whether duplicates are dropped before the cap draws (by key, see _Frontier.key).
        self._distinct = cap is not None and sum(self.counts) > cap
        if self._distinct:
            # Count distinct states, so a point whose random draws collide does not eat the
            # cap's budget. Only when the cap draws: the keys cost a walk per candidate.
            self.counts = [
                sum(1 for _ in frontier.distinct(self._choices(point, frontier, exhaustive)))
                for point, frontier, exhaustive in self._frontiers()
            ]
        self.points = len(self.counts)
        self.candidates = sum(self.counts)
        self._selected: set[int] | None = None
        if cap is not None and self.candidates > cap:
            # Uniform over the trace, by index: the seed alone decides which states are checked.
            self._selected = set(random.Random(seed).sample(range(self.candidates), cap))
        self.drawn = self.candidates if self._selected is None else cap or 0

    def _frontiers(self) -> Iterator[tuple[int, _Frontier, bool]]:
        model = _Model(self._root, self._initial)
        previous: _Frontier | None = None
        for point in range(-1, len(self._trace)):
            if point >= 0:
                model.apply(self._trace[point])
            if point >= 0 and self._trace[point].kind == "mark" and previous is not None:
                # A mark changes no file: reuse the states (expectations differ, not trees).
                frontier = previous
            else:
                frontier = _Frontier(model, point, self._tear)
            yield point, frontier, frontier.upper_bound() <= EXHAUSTIVE_LIMIT
            previous = frontier

    def __iter__(self) -> Iterator[CrashState]:
        for state, _digest in self.digested():
            yield state

    def _choices(self, point: int, frontier: _Frontier, exhaustive: bool) -> Iterator[_Choice]:
        if exhaustive:
            return frontier.every_choice()
        return frontier.sample(random.Random(f"{self._seed}:{point}"), self._budget)

    def digested(self) -> Iterator[tuple[CrashState, bytes]]:
        """The states, each with its tree's :func:`tree_digest` (computed once, used again)."""
        index = 0
        for point, frontier, exhaustive in self._frontiers():
            seen: set[bytes] = set()
            choices = self._choices(point, frontier, exhaustive)
            for keep, pick in frontier.distinct(choices) if self._distinct else choices:
                index += 1
                if self._selected is not None and index - 1 not in self._selected:
                    continue
                built, digest = frontier.state(keep, pick)
                state = _at(built, point)
                if digest not in seen:  # equal contents under two inodes: one tree
                    seen.add(digest)
                    yield state, digest


def tree_digest(tree: Tree) -> bytes:
    """Return a short digest naming a directory tree (to drop duplicates without holding them).

    Equal trees, equal digests; it names each file by its content's :func:`content_digest`, so
    the model, which knows those of the files it builds, need not hash every state's bytes again.
    """
    return _digest_of([(rel, None if c is None else content_digest(c)) for rel, c in tree])


def _digest_of(files: Sequence[tuple[str, bytes | None]]) -> bytes:
    """The tree digest of ``(path, content digest)`` pairs (None: a directory), in tree order."""
    h = hashlib.blake2b(digest_size=16)
    for rel, digest in files:
        name = rel.encode("utf-8", "surrogateescape")
        h.update(len(name).to_bytes(4, "little") + name)
        h.update(b"d" if digest is None else b"f" + digest)
    return h.digest()


def explore(
    trace: Sequence[TraceOp],
    root: str,
    initial: Tree,
    *,
    seed: int,
    budget: int = 64,
    tear: int = SECTOR,
) -> Exploration:
    """Every crash state of ``trace`` under ``root`` starting from the durable tree ``initial``.

    Crash points whose state count is at most :data:`EXHAUSTIVE_LIMIT` are enumerated exhaustively;
    others yield ``budget`` states drawn with ``seed`` (journal-order prefixes first). States equal
    to one already found at the same crash point are dropped. This holds every state at once: for
    small traces and tests; the D3 check streams them with :class:`StateStream`.

    :raises ModelError: the trace does not fit the tree (an operation on a path the model lacks).
    """
    stream = StateStream(trace, root, initial, seed=seed, budget=budget, tear=tear)
    return Exploration(
        tuple(stream), stream.points, stream.exhaustive_points, stream.sampled_points
    )


def _at(state: CrashState, point: int) -> CrashState:
    if state.point == point:
        return state
    return replace(state, point=point)
