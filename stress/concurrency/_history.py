"""Operation histories of concurrent workers, Jepsen/Knossos style.

Each worker appends one JSON line per event to its own file, with a single ``os.write`` each, so a
worker killed at any instant keeps everything up to its last complete line (a torn last line, if
the kernel ever left one, is ignored). The events of one operation:

``invoke``
    written *before* the store is called, with the time read just before writing it.
``ok``
    the call returned (for ``load``, with what it returned), time read just after it returned.
``fail``
    the call raised an exception the contract documents as "nothing happened"
    (:class:`~lance_offsets.LockTimeoutError`, for a store configured with a lock timeout).
``info``
    the call raised anything else: a violation by itself, and the operation's effect is unknown.

An ``invoke`` with no completion (the worker was killed) is indeterminate too. Indeterminate
operations may have taken effect at any time after their invocation, or never.

Times come from :func:`time.monotonic`, which is one clock for all processes of the machine on
every Python we support (3.10+): ``CLOCK_MONOTONIC`` on Linux; ``mach_absolute_time`` on macOS
(system-wide since 3.10, bpo-37205: before, each process subtracted its own start-up offset); on
Windows ``GetTickCount64`` before 3.13 and ``QueryPerformanceCounter`` since (gh-88494), both
system-wide. A coarse clock (15.6 ms ticks on Windows before 3.13) only makes more
operations look concurrent, which makes the checker more permissive, never wrong: an operation is
ordered before another only if its completion time is strictly less than the other's invocation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

__all__ = [
    "HistoryWriter",
    "Key",
    "Op",
    "OpKind",
    "Outcome",
    "WorkerHistory",
    "format_ops",
    "read_history",
    "read_worker",
]

Key = tuple[int, int]
OpKind = Literal["save", "load", "delete"]
Outcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Op:
    """One operation of one worker, invocation and completion paired.

    :ivar worker: the worker incarnation that ran it (a restarted worker gets a new number).
    :ivar seq: its position in that worker's schedule, from 1.
    :ivar kind: ``save``, ``load`` or ``delete``.
    :ivar key: ``(topic_id, consumer_id)``.
    :ivar value: the offset a ``save`` wrote; None for loads and deletes.
    :ivar invoke: monotonic time read just before the call.
    :ivar complete: monotonic time read just after it returned or raised; None when the worker was
        killed during the call.
    :ivar outcome: ``ok``, ``fail`` (documented no-effect error) or ``info`` (effect unknown).
    :ivar result: what an ``ok`` load returned.
    :ivar error: ``"TypeName: message"`` of the exception, if the call raised.
    """

    worker: int
    seq: int
    kind: OpKind
    key: Key
    value: int | None
    invoke: float
    complete: float | None = None
    outcome: Outcome = "info"
    result: int | None = None
    error: str | None = None

    def indeterminate(self) -> Op:
        """Return this operation with its completion forgotten (as if the worker died during it)."""
        return replace(self, complete=None, outcome="info", result=None)

    def describe(self, origin: float = 0.0) -> str:
        """Return one line: who, what, when (ms after ``origin``), and how it ended."""
        if self.kind == "save":
            what = f"save {self.value}"
        elif self.kind == "load":
            shown = self.result if self.outcome == "ok" else "?"
            what = f"load -> {shown}"
        else:
            what = "delete"
        start = (self.invoke - origin) * 1000
        end = "..." if self.complete is None else f"{(self.complete - origin) * 1000:10.3f}"
        if self.outcome == "ok":
            how = "ok"
        elif self.complete is None:
            how = "info (worker killed during the call: may or may not have taken effect)"
        elif self.outcome == "fail":
            how = f"fail ({self.error})"
        else:  # the report's summary line carries the whole message
            how = f"info: raised {(self.error or '').split(':')[0]}"
        who = f"w{self.worker:<3} #{self.seq:<6}"
        return f"{who} [{start:10.3f} .. {end:>10}] ms  {self.key!s:<9} {what:<27} {how}"


def format_ops(ops: list[Op], origin: float = 0.0) -> str:
    """Return the operations in invocation order, one per line, indented for a report."""
    return "\n".join("    " + op.describe(origin) for op in sorted(ops, key=lambda o: o.invoke))


class HistoryWriter:
    """Appends one worker's events to its history file, each event in one ``os.write``."""

    def __init__(self, path: str | os.PathLike[str], worker: int) -> None:
        # O_BINARY (Windows only): no newline translation in the records.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o644)
        self._worker = worker

    def _emit(self, record: dict[str, object]) -> None:
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def ready(self) -> None:
        """Say the worker has built its store and waits for the start signal."""
        self._emit({"e": "ready", "w": self._worker, "pid": os.getpid()})

    def invoke(self, seq: int, kind: OpKind, key: Key, value: int | None) -> None:
        """Record an invocation; call this *before* calling the store."""
        now = time.monotonic()
        self._emit({"e": "invoke", "s": seq, "k": kind, "key": list(key), "v": value, "t": now})

    def ok(self, seq: int, result: int | None = None) -> None:
        """Record a normal return; call this *after* the store returned."""
        self._emit({"e": "ok", "s": seq, "r": result, "t": time.monotonic()})

    def raised(self, seq: int, error: BaseException, *, documented: bool) -> None:
        """Record an exception: ``fail`` when documented as no effect, else ``info``."""
        now = time.monotonic()
        text = f"{type(error).__name__}: {error}"
        self._emit({"e": "fail" if documented else "info", "s": seq, "x": text, "t": now})

    def crashed(self, error: BaseException) -> None:
        """Record an exception outside any operation (building or closing the store)."""
        self._emit({"e": "crash", "x": f"{type(error).__name__}: {error}"})

    def done(self, paused: int = 0) -> None:
        """Say the worker stopped on its own at the deadline, after ``paused`` widening pauses."""
        self._emit({"e": "done", "p": paused})

    def close(self) -> None:
        """Close the file (the records are already with the OS)."""
        os.close(self._fd)


@dataclass
class WorkerHistory:
    """What one worker's file says: its operations, and whether it got ready and finished."""

    worker: int
    ops: list[Op]
    ready: bool
    done: bool
    crash: str | None = None
    #: Pauses the worker made inside the store's calls (``_widen.py``), once it finished.
    paused: int = 0


def read_worker(path: str | os.PathLike[str], worker: int) -> WorkerHistory:
    """Parse one worker's history file (a torn last line is ignored: the worker died writing it)."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    ops: list[Op] = []
    ready = done = False
    crash = None
    paused = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            break  # only the last line can be torn, by a kill during the write
        event = rec["e"]
        if event == "ready":
            ready = True
        elif event == "done":
            done = True
            paused = rec.get("p", 0)
        elif event == "crash":
            crash = rec["x"]
        elif event == "invoke":
            key = (rec["key"][0], rec["key"][1])
            ops.append(Op(worker, rec["s"], rec["k"], key, rec["v"], rec["t"]))
        else:
            # A worker runs one operation at a time, so a completion closes its last invocation.
            begun = ops[-1]
            if begun.seq != rec["s"] or begun.complete is not None:
                raise ValueError(f"{path}: completion of #{rec['s']} does not follow its invoke")
            ops[-1] = replace(
                begun, complete=rec["t"], outcome=event, result=rec.get("r"), error=rec.get("x")
            )
    return WorkerHistory(worker, ops, ready, done, crash, paused)


def read_history(paths: dict[int, str]) -> list[Op]:
    """Return all operations of all workers (``paths`` maps worker number to its history file)."""
    ops: list[Op] = []
    for worker, path in sorted(paths.items()):
        ops.extend(read_worker(path, worker).ops)
    return ops
