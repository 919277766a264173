"""The one seam every campaign records through: "what did this store operation do?".

Two calls, used by the crash points (D1, D2, D4, D5), the I/O faults (F2) and the power-loss
model (D3) alike:

* :func:`tracing` (inside a worker): the tracing block and its ``mark`` for a backend, the Python
  interposer (``"python"``) or the preloaded syscall shim (``"syscall"``). Both number calls,
  stop at a crash point and inject a :class:`FaultPlan` through the same :class:`Tracer`.
* :func:`choose_backend` (in the parent): the backend choice, in this one place. The interposer
  first (it sees Python I/O, cheaply); the shim when the interposer saw nothing of the store's
  I/O (it is in C); else no backend, with the reason, and the campaign says "unverified".

What a campaign counts as "saw the store's I/O" is its own: the crash campaign needs a crash
point, F2 an operation of the save, D3 a trace that replays to the directory the store left.

One trace for the campaigns that run the same operation: the crash campaign's counting run of a
save over an old value is kept here (:func:`remember_save`), and F2 plans its faults from it
(:func:`counted_save`) instead of counting the same save again, in the same backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from . import _shim
from ._interpose import mark as python_mark
from ._interpose import traced
from ._trace import TraceOp
from ._tracer import FaultPlan, OnOp

__all__ = [
    "Backend",
    "Chosen",
    "CountedSave",
    "choose_backend",
    "counted_save",
    "remember_save",
    "tracing",
]

Backend = Literal["python", "syscall"]
T = TypeVar("T")

#: Why the shim did not help when it ran and saw no call at all (crash points, F2).
SHIM_SAW_NOTHING: Final = (
    "the syscall shim saw no file-system call under the store's directory either (a remote or "
    "in-memory store?)"
)


def tracing(
    root: str,
    backend: str,
    *,
    on_op: OnOp | None = None,
    fail: FaultPlan | None = None,
    on_map: Callable[[str], None] | None = None,
) -> tuple[AbstractContextManager[list[TraceOp]], Callable[[str], None]]:
    """The tracing block over ``root`` and its ``mark`` for ``backend`` (in a worker).

    :param on_map: the shim only: called with each file mapped shared and writable.
    """
    if backend == "syscall":
        block = _shim.syscall_traced(root, on_op=on_op, fail=fail, on_map=on_map)
        return block, _shim.mark
    return traced(root, on_op=on_op, fail=fail), python_mark


@dataclass(frozen=True)
class Chosen(Generic[T]):
    """The backend a campaign goes on with and what its recording run gave.

    :ivar backend: the backend whose record ``counted`` is.
    :ivar counted: that record; None when the recorded run raised.
    :ivar unseen: why no backend saw the store's I/O ("" when one did).
    """

    backend: Backend
    counted: T | None
    unseen: str = ""


def choose_backend(
    record: Callable[[Backend], T | str | None],
    blind: Callable[[T], str | None],
    forced: str = "auto",
) -> Chosen[T]:
    """Record with the interposer, then with the shim if the interposer saw nothing.

    :param record: runs the operations once through a backend; returns the record, a string
        saying why the backend is unavailable (no shim here), or None when the run raised.
    :param blind: why a record shows nothing of the store's I/O, or None when it does (the
        shim's reason becomes :attr:`Chosen.unseen`).
    :param forced: ``"python"`` or ``"syscall"`` to use that backend only (``--backend``).
    """
    if forced in ("python", "syscall"):
        backend: Backend = "syscall" if forced == "syscall" else "python"
        only = record(backend)
        return Chosen(backend, None, only) if isinstance(only, str) else Chosen(backend, only)
    first = record("python")
    if first is None or isinstance(first, str):
        return Chosen("python", None, first or "")
    if blind(first) is None:
        return Chosen("python", first)
    return _shim_instead(record, blind, first)


def _shim_instead(
    record: Callable[[Backend], T | str | None], blind: Callable[[T], str | None], first: T
) -> Chosen[T]:
    """The shim's record when it sees the I/O the interposer did not; else the interposer's."""
    second = record("syscall")
    if second is None:  # the store raised under the shim: the campaign reports that
        return Chosen("syscall", None)
    if isinstance(second, str):
        return Chosen("python", first, second)
    why = blind(second)
    if why is not None:
        return Chosen("python", first, why)
    return Chosen("syscall", second)


@dataclass(frozen=True)
class CountedSave:
    """The counted trace of one save over an old value, up to its acknowledgement.

    :ivar backend: the backend chosen for the store (its operations are numbered by it).
    :ivar ops: the save's operations (no content needed: faults are planned by index and kind).
    :ivar unseen: why no backend saw the save's I/O, when ``ops`` is empty.
    """

    backend: Backend
    ops: tuple[TraceOp, ...]
    unseen: str = ""


#: Which save: (spec, the options' backend, seed, key). The seed draws the key and the values,
#: and the operations of a save do not depend on the values (the crash campaign relies on that).
SaveKey = tuple[str, str, int, tuple[int, int]]
_SAVES: dict[SaveKey, CountedSave] = {}
#: Entries kept at most (one per store and seed in a ``check`` run; tests run many).
_KEPT: Final = 8


def _before_ack(trace: list[TraceOp]) -> tuple[TraceOp, ...]:
    ops = []
    for op in trace:
        if op.kind == "mark":
            break  # the save returned here; what follows is close()
        ops.append(dataclasses.replace(op, content=None))
    return tuple(ops)


def remember_save(which: SaveKey, backend: Backend, trace: list[TraceOp], unseen: str) -> None:
    """Keep a counting run's trace of a save over an old value, for F2."""
    while len(_SAVES) >= _KEPT:
        del _SAVES[next(iter(_SAVES))]
    _SAVES[which] = CountedSave(backend, _before_ack(trace), unseen)


def counted_save(which: SaveKey) -> CountedSave | None:
    """The save counted earlier in this process for the same store, options and key, if any."""
    return _SAVES.get(which)
