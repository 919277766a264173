"""What D3's failing crash states demonstrate, as findings for ``conformance/_diagnosis.py``.

A failing state differs from "everything the worker did persisted" in two ways the model
records: entry operations a power cut undid (a rename, a creation, a removal: their directory
was not fsynced since), and files whose unsynced data it dropped or tore. Each is a fact:

- an undone rename, creation or removal: the directory was not fsynced after it;
- dropped data of a file that reached its name by a rename: the temporary file was not fsynced
  before the rename;
- dropped data of a file written under its own name: rewritten in place if the store fsyncs it
  at some point (the window between truncate and fsync is the defect), never fsynced if not;
- dropped data of a file whose sync failed (F2's faulted trace, ``_faulted.py``): the store went
  on after the failed sync without writing the data again;
- a state that fails with nothing undone and every write kept: what the process left at that
  instant is itself wrong, which a kill would show too; a file written under its own name
  then is rewritten in place.

A hung or stuck verifier adds its own fact. A state that differs in one way only shows that
one way is enough to fail: when some states do, only what they show is kept (a state that
undid one file's creation and tore another's data, failing on the first file, says nothing of
the second). The findings list the most frequent first, each shown by the first state that
showed it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Final

from lance_offsets.conformance._diagnosis import finding

from ..seam._trace import TraceOp
from ._fsmodel import CrashState
from ._oracle import Verdict

__all__ = ["StateFindings"]

#: What an undone entry operation of each kind demonstrates.
_UNDONE: Final = {
    "rename": "rename-undone",
    "replace": "rename-undone",
    "unlink": "unlink-undone",
    "rmdir": "unlink-undone",
}
#: What a kind of problem demonstrates by itself (the oracle's kinds), and how it is shown.
_KIND_FACT: Final = {
    "hung": ("hung-after-power-cut", "left a state the store hung on"),
    "stuck": ("recovered-cannot-save", "left a state the store cannot save in"),
    "split": ("batch-split", "left a batch half done"),
}


def _name(op: TraceOp) -> str:
    return os.path.basename(op.target or op.path)


class StateFindings:
    """Facts counted over the failing crash states of one recording."""

    def __init__(self, trace: Sequence[TraceOp], root: str) -> None:
        self.ops = {op.index: op for op in trace}

        def rel(path: str) -> str:
            return os.path.relpath(path, root)

        #: Files that got their name from a rename, and files the worker fsynced.
        self.renamed_into = {
            rel(op.target) for op in trace if op.kind in ("rename", "replace") and op.target
        }
        self.synced = {rel(op.path) for op in trace if op.kind in ("fsync", "fdatasync")}
        #: Files a sync of failed, under every name they got by a rename after the failure.
        self.failed_sync: set[str] = set()
        for op in trace:
            if op.kind in ("fsync", "fdatasync") and op.error is not None and not op.is_dir:
                self.failed_sync.add(rel(op.path))
            elif (
                op.kind in ("rename", "replace") and op.target and rel(op.path) in self.failed_sync
            ):
                self.failed_sync.add(rel(op.target))
        #: Per fact, how many failing states showed it, and the first; ``alone`` counts the
        #: states that showed it and nothing else.
        self.counts: dict[str, int] = {}
        self.alone: dict[str, int] = {}
        self.shown: dict[str, str] = {}
        self.shown_alone: dict[str, str] = {}

    def _written_in_place(self, path: str) -> str:
        if path in self.failed_sync:
            return "fsync-error-ignored"
        if path in self.renamed_into:
            return "power-cut-dropped-renamed-data"
        if path in self.synced:
            return "power-cut-tore-file-in-place"
        return "power-cut-dropped-unsynced-data"

    def facts(self, state: CrashState, verdict: Verdict) -> list[tuple[str, str]]:
        """What ``state`` demonstrates: ``(fact, what shows it)`` pairs."""
        undone = [self.ops[i] for i in state.undone_at if i in self.ops]
        found = [
            (_UNDONE.get(op.kind, "create-undone"), f"undid #{op.index} {op.kind} {_name(op)}")
            for op in undone
        ]
        found += [
            (self._written_in_place(path), f"tore or dropped {path}'s unsynced data")
            for path in state.dropped
        ]
        if not state.undone_at and not state.dropped:  # the live state itself fails
            found += [
                ("power-cut-tore-file-in-place", f"kept {path} as the worker left it, mid-rewrite")
                for path in state.unsynced
                if path not in self.renamed_into and path in self.synced
            ]
        found += [_KIND_FACT[p.kind] for p in verdict.problems if p.kind in _KIND_FACT]
        return found

    def add(self, state: CrashState, verdict: Verdict) -> None:
        """Count the facts of one failing state."""
        problem = verdict.problems[0].text if verdict.problems else ""
        facts = dict(self.facts(state, verdict))
        for fact, how in facts.items():
            text = f"{problem} (a power cut after operation #{state.point} {how})"
            self.counts[fact] = self.counts.get(fact, 0) + 1
            self.shown.setdefault(fact, text)
            if len(facts) == 1:
                self.alone[fact] = self.alone.get(fact, 0) + 1
                self.shown_alone.setdefault(fact, text)

    def findings(self, clean: Callable[[str], str] = str) -> list[dict[str, str]]:
        """The facts, the most frequent first, each with the first state that showed it.

        ``clean`` rewrites text naming scratch paths (the caller's temporary directories).
        """
        counts, shown = (self.alone, self.shown_alone) if self.alone else (self.counts, self.shown)
        order = sorted(counts, key=lambda fact: -counts[fact])
        return [finding(fact, clean(shown[fact])) for fact in order]
