"""The one seam every campaign records through: "what did this store operation do?".

Two calls, used by the crash points (D1, D2, D4, D5), the I/O faults (F2), batch kills (B1)
and the power-loss model (D3) alike:

* :func:`tracing` (inside a worker): the tracing block and its ``mark`` for a backend, the Python
  interposer (``"python"``) or the preloaded syscall shim (``"syscall"``). Both number calls,
  stop at a crash point (:class:`StopAt`) and inject a :class:`FaultPlan`. With
  ``witness=True`` the interposer's block also arms the shim, recording only: the same run,
  seen twice, its syscall view in :attr:`Trace.syscall`.
* :func:`choose_backend` (in the parent): the backend choice, in this one place. Ground truth is
  what reached the kernel: where the syscall view exists, the Python interposer judges only when
  it provably saw the same operations as the shim in the same run (:func:`disagreement`: the
  same number and kinds of file-system operations on the same paths, none seen only through an
  audit hook); otherwise the shim's record judges, and :attr:`Chosen.judged` says which view
  judged and why (``syscall shim (the Python interposer missed 3 fsync calls)``). Where there is
  no syscall view (no shim here), the interposer first, the shim when the interposer saw
  nothing; else no backend, with every reason, and the campaign says "unverified".

What a campaign counts as "saw the store's I/O" is its own: the crash campaign needs a crash
point, F2 an operation of the save, D3 a trace that replays to the directory the store left.

One trace for the campaigns that run the same operation: the crash campaign's counting run of a
save over an old value is kept here (:func:`remember_save`), and F2 plans its faults from it
(:func:`counted_save`) instead of counting the same save again, in the same backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from . import _shim
from ._interpose import mark as python_mark
from ._interpose import traced
from ._trace import Trace, TraceOp
from ._tracer import FaultPlan, StopAt

__all__ = [
    "TRACERS",
    "Backend",
    "Chosen",
    "CountedSave",
    "choose_backend",
    "counted_save",
    "disagreement",
    "remember_save",
    "shim_saw_nothing",
    "tracing",
    "until_mark",
]

Backend = Literal["python", "syscall"]
T = TypeVar("T")

#: How evidence names each backend.
TRACERS: Final[dict[str, str]] = {"python": "python interposer", "syscall": "syscall shim"}

#: Why the shim did not help when it ran and saw no call at all (crash points, F2).
SHIM_SAW_NOTHING: Final = (
    "the syscall shim saw no file-system call under the store's directory either (a remote or "
    "in-memory store?)"
)


def shim_saw_nothing() -> str:
    """:data:`SHIM_SAW_NOTHING`, or why it could not see, for a driver it can never see."""
    from lance_offsets.conformance._driver import unseen_drivers

    why = unseen_drivers()
    if why:
        return f"the syscall shim saw no file-system call under the store's directory: {why}"
    return SHIM_SAW_NOTHING


def tracing(
    root: str,
    backend: str,
    *,
    fail: FaultPlan | None = None,
    on_map: Callable[[str], None] | None = None,
    stop: StopAt | None = None,
    witness: bool = False,
    contents: bool = True,
) -> tuple[AbstractContextManager[Trace], Callable[[str], None]]:
    """The tracing block over ``root`` and its ``mark`` for ``backend`` (in a worker).

    :param on_map: the shim only: called with each file mapped shared and writable.
    :param stop: the crash point: the worker tells its parent there and waits to be killed.
    :param witness: with ``"python"``: the shim records the same run beside the interposer
        (when it is preloaded here; else :attr:`Trace.unwitnessed` says why not), for
        :func:`choose_backend` to compare. Counting runs ask for it. The witness's records carry
        no contents: the comparison needs kinds and paths only.
    :param contents: the shim's records carry each file's content after the call (``"syscall"``;
        the interposer's always do).
    """
    if backend == "syscall":
        block = _shim.syscall_traced(root, fail=fail, on_map=on_map, stop=stop, contents=contents)
        return block, _shim.mark
    if witness:
        return _witnessed(root, fail, stop), _both_marks
    return traced(root, fail=fail, stop=stop), python_mark


@contextlib.contextmanager
def _witnessed(root: str, fail: FaultPlan | None, stop: StopAt | None) -> Iterator[Trace]:
    """The interposer's block, with the shim recording the same run (when it is here)."""
    if _shim.loaded() is None:
        why = _shim.unavailable() or "this worker was started without the syscall shim preloaded"
        with traced(root, fail=fail, stop=stop) as trace:
            trace.unwitnessed = why
            yield trace
        return
    shim = _shim.syscall_traced(root, contents=False, witness=True)
    with shim as seen, traced(root, fail=fail, stop=stop) as trace:
        yield trace
    trace.syscall = list(seen)


def _both_marks(note: str) -> None:
    python_mark(note)
    _shim.mark(note)


#: Kinds the two views name differently: Python's os.replace is rename(2).
_SAME_KIND: Final = {"replace": "rename"}


def _seen(trace: Sequence[TraceOp]) -> list[tuple[str, str]]:
    return [(_SAME_KIND.get(op.kind, op.kind), op.path) for op in trace if op.kind != "mark"]


def _calls(counts: Counter[str]) -> str:
    """``1 write call, 2 fsync calls and 1 close call``."""
    words = [f"{n} {kind} call{'' if n == 1 else 's'}" for kind, n in counts.items()]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def disagreement(python: Sequence[TraceOp], syscall: Sequence[TraceOp]) -> str | None:
    """Why the interposer's view of a run is not the shim's view of it; None: the same operations.

    The same: the same file-system operations (kinds, ``replace`` being ``rename``, and paths),
    in the same order, and none the interposer saw only through an audit hook (it never learns
    how such a call ended, nor what it left in the file).
    """
    ours, theirs = _seen(python), _seen(syscall)
    audited = sum(1 for op in python if op.note == "audit")
    if ours == theirs and not audited:
        return None
    missed = Counter(kind for kind, _ in theirs) - Counter(kind for kind, _ in ours)
    extra = Counter(kind for kind, _ in ours) - Counter(kind for kind, _ in theirs)
    parts = []
    if missed:
        parts.append(f"the Python interposer missed {_calls(missed)}")
    if audited:
        parts.append(f"saw {audited} only through audit hooks (bound at import, or made in C)")
    if extra:
        parts.append(f"the syscall shim did not see {_calls(extra)} the interposer recorded")
    if not parts:  # as many of each kind, elsewhere or in another order
        at = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b)
        (kind, path), (other, where) = ours[at], theirs[at]
        parts.append(
            f"the views part at operation {at}: {kind} {os.path.basename(path)} (interposer), "
            f"{other} {os.path.basename(where)} (syscall shim)"
        )
    return "; ".join(parts)


@dataclass(frozen=True)
class Chosen(Generic[T]):
    """The backend a campaign goes on with and what its recording run gave.

    :ivar backend: the backend whose record ``counted`` is.
    :ivar counted: that record; None when the recorded run raised.
    :ivar unseen: why no backend saw the store's I/O ("" when one did).
    :ivar judged: the evidence's ``tracing``: the view that judges and why (``syscall shim (the
        Python interposer missed 3 fsync calls)``).
    """

    backend: Backend
    counted: T | None
    unseen: str = ""
    judged: str = ""


def _trace_of(counted: object) -> Trace | None:
    return counted if isinstance(counted, Trace) else None


def choose_backend(
    record: Callable[[Backend], T | str | None],
    blind: Callable[[T], str | None],
    forced: str = "auto",
    *,
    views: Callable[[T], Trace | None] = _trace_of,
) -> Chosen[T]:
    """Record with the interposer and the shim's witness; go on with the view that saw it all.

    :param record: runs the operations once through a backend (a ``"python"`` run asks for the
        witness: ``tracing(..., witness=True)``); returns the record, a string saying why the
        backend is unavailable (no shim here), or None when the run raised.
    :param blind: why a record shows nothing of the store's I/O, or None when it does (the
        shim's reason becomes :attr:`Chosen.unseen`).
    :param forced: ``"python"`` or ``"syscall"`` to use that backend only (``--backend``).
    :param views: the interposer's :class:`Trace` inside a record (with the witness's records
        in :attr:`Trace.syscall`); by default the record itself when it is one.
    """
    if forced in ("python", "syscall"):
        backend: Backend = "syscall" if forced == "syscall" else "python"
        only = record(backend)
        judged = f"{TRACERS[backend]} (forced)"
        if isinstance(only, str):
            return Chosen(backend, None, only, judged)
        return Chosen(backend, only, judged=judged)
    first = record("python")
    if first is None or isinstance(first, str):
        return Chosen("python", None, first or "")
    trace = views(first)
    if trace is not None and trace.syscall is not None:
        return _compared(record, blind, first, trace, trace.syscall)
    unwitnessed = trace.unwitnessed if trace is not None else ""
    if blind(first) is None:
        judged = TRACERS["python"]
        if unwitnessed:
            judged += f" (no syscall view to compare with: {unwitnessed})"
        return Chosen("python", first, judged=judged)
    judged = "syscall shim (the Python interposer saw none of the store's I/O)"
    return _shim_instead(record, blind, first, judged, "")


def _compared(
    record: Callable[[Backend], T | str | None],
    blind: Callable[[T], str | None],
    first: T,
    python: Sequence[TraceOp],
    syscall: Sequence[TraceOp],
) -> Chosen[T]:
    """The interposer's record if the shim saw the same in the same run; else the shim's."""
    differ = disagreement(python, syscall)
    if differ is not None:
        return _shim_instead(record, blind, first, f"syscall shim ({differ})", differ)
    why = blind(first)
    if why is not None:  # neither view saw anything of the store's I/O
        return Chosen("python", first, why)
    judged = f"python interposer (the syscall shim saw the same {len(_seen(python))} operations)"
    return Chosen("python", first, judged=judged)


def _shim_instead(
    record: Callable[[Backend], T | str | None],
    blind: Callable[[T], str | None],
    first: T,
    judged: str,
    differ: str,
) -> Chosen[T]:
    """The shim's record; the interposer's only when it saw everything and the shim cannot help.

    :param differ: how the interposer's view differed from the shim's ("" when it saw nothing):
        then it missed calls, and no verdict may rest on it.
    """
    second = record("syscall")
    if second is None:  # the store raised under the shim: the campaign reports that
        return Chosen("syscall", None, judged=judged)
    if isinstance(second, str):
        if differ:  # never judge from a view that missed calls
            unseen = f"{differ}, and the syscall shim is unavailable: {second}"
            return Chosen("syscall", None, unseen)
        return Chosen("python", first, second)
    why = blind(second)
    if why is not None and not differ:
        return Chosen("python", first, why)
    return Chosen("syscall", second, why or "", judged)


@dataclass(frozen=True)
class CountedSave:
    """The counted trace of one save over an old value, up to its acknowledgement.

    :ivar backend: the backend chosen for the store (its operations are numbered by it).
    :ivar ops: the save's operations (no content needed: faults are planned by index and kind).
    :ivar unseen: why no backend saw the save's I/O, when ``ops`` is empty.
    :ivar judged: which view judged and why (:attr:`Chosen.judged`).
    """

    backend: Backend
    ops: tuple[TraceOp, ...]
    unseen: str = ""
    judged: str = ""


#: Which save: (spec, the options' backend, seed, key). The seed draws the key and the values,
#: and the operations of a save do not depend on the values (the crash campaign relies on that).
SaveKey = tuple[str, str, int, tuple[int, int]]
_SAVES: dict[SaveKey, CountedSave] = {}
#: Entries kept at most (one per store and seed in a ``check`` run; tests run many).
_KEPT: Final = 8


def until_mark(trace: Trace) -> Trace:
    """Both views of a counting run up to their first mark (a save's: up to its acknowledgement).

    For a campaign that plans from the operations before the acknowledgement (F2) and still
    wants :func:`choose_backend` to compare the views.
    """

    def cut(ops: list[TraceOp]) -> list[TraceOp]:
        marks = [i for i, op in enumerate(ops) if op.kind == "mark"]
        return ops[: marks[0]] if marks else list(ops)

    kept = Trace(cut(trace))
    kept.syscall = None if trace.syscall is None else cut(trace.syscall)
    kept.unwitnessed = trace.unwitnessed
    return kept


def _before_ack(trace: list[TraceOp]) -> tuple[TraceOp, ...]:
    ops = []
    for op in trace:
        if op.kind == "mark":
            break  # the save returned here; what follows is close()
        ops.append(dataclasses.replace(op, content=None))
    return tuple(ops)


def remember_save(
    which: SaveKey, backend: Backend, trace: list[TraceOp], unseen: str, judged: str = ""
) -> None:
    """Keep a counting run's trace of a save over an old value, for F2."""
    while len(_SAVES) >= _KEPT:
        del _SAVES[next(iter(_SAVES))]
    _SAVES[which] = CountedSave(backend, _before_ack(trace), unseen, judged)


def counted_save(which: SaveKey) -> CountedSave | None:
    """The save counted earlier in this process for the same store, options and key, if any."""
    return _SAVES.get(which)
