"""A call into the store that did not return in time: what hung, where, and the verdict it gives.

Every call the suite makes into a store is bounded (``_watch.py`` times the calls made in the
process that runs a check, ``_bounded.py`` supervises that process from the one in charge, and
``_remote.py`` bounds the calls of its helper process). Whichever notices a hang describes it as
a :class:`HangReport`: the call, how long it had run, the thread's stack where it was blocked
(innermost last, the suite's own frames cut away), and the store calls just before it.

The verdict follows who hung (:func:`hang_result`): the store under test, the property fails
(a call must return: raise or answer); a helper handle the check opened beside it (C7's view,
H3's probe, F1's handle B), the property is unverified, since helper handles never decide a
verdict; the suite's own code, with no store call running, unverified too: a harness problem is
never the store's failure.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._catalog import PROPERTIES
from ._diagnosis import FINDINGS, finding
from ._results import PropertyResult

__all__ = [
    "DUMP_SIGNAL",
    "HangReport",
    "Role",
    "StackPipe",
    "StoreHung",
    "arm_stack_dump",
    "dumped_stack",
    "hang_result",
    "python_stack",
]

#: The signal that makes a process the suite started write every thread's stack to its dump
#: file (``faulthandler``, from C: it works while a thread holds the GIL). None on Windows.
DUMP_SIGNAL: Final = getattr(signal, "SIGUSR1", None)
#: Frames shown of the stuck thread's stack, innermost last.
_FRAMES: Final = 8
#: Seconds a stack dump may take to appear once asked for.
_DUMP_WAIT: Final = 2.0

#: Who made a call: the store under test, a helper handle, or nobody (the suite's own code).
Role = Literal["store", "helper", ""]

#: Files of the suite whose frames a hang report leaves out (it shows where the store is).
_OURS: Final = re.compile(
    r"[/\\](conformance|stress)[/\\][^/\\]+\.py$|[/\\]hypothesis[/\\]|[/\\]_aio_sync\.py$"
)


@dataclass(frozen=True)
class HangReport:
    """One call that did not return within its bound.

    :ivar call: the call, as the store was asked (``"load(1, 2)"``, ``"factory(path)"``).
    :ivar role: who made it: ``"store"`` (the handle under test), ``"helper"`` (a handle a check
        opened beside it), ``""`` (no store call was running: the suite's own code stalled).
    :ivar seconds: how long it had run when it was reported.
    :ivar bound: the bound it exceeded.
    :ivar where: ``""`` for the process running the check, else which process ("another process").
    :ivar stack: the stuck thread's frames, innermost last (``file:line in function: source``).
    :ivar recent: the store calls before it, latest last (``"h2.save(1, 2, 3) -> None"``).
    :ivar running: what the check said it was doing (its own words, when it said).
    :ivar steps: the store steps of the example so far, as the state machine notes them.
    :ivar frozen: the process could not report itself (its watchdog never ran: a thread held the
        interpreter lock while blocked), so the process in charge read its stacks.
    """

    call: str
    role: Role
    seconds: float
    bound: float
    where: str = ""
    stack: tuple[str, ...] = ()
    recent: tuple[str, ...] = ()
    running: str = ""
    steps: tuple[str, ...] = ()
    frozen: bool = False
    extra: tuple[str, ...] = field(default=())

    def headline(self, pid: str) -> str:
        """The failure's first line: the property, who hung on what, and for how long."""
        title = f"[{pid} {PROPERTIES[pid].title}]" if pid in PROPERTIES else f"[{pid}]"
        place = f" in {self.where}" if self.where else ""
        if not self.role:
            return (
                f"{title} the suite's own code made no progress for {self.seconds:.0f} s with no "
                f"store call running{place}: the suite's failure, not the store's"
            )
        who = "the store" if self.role == "store" else "a helper handle the check opened"
        return f"{title} {who} hung: {self.call}{place} did not return within {self.bound:g} s"

    def lines(self, pid: str) -> list[str]:
        """The whole report, a person's reading order: what, where, what came before."""
        out = [self.headline(pid)]
        if self.role == "helper":
            out.append(
                "helper handles never decide a verdict: the rest of the property was not checked. "
                "The helper likely waited for a lock the handle under test holds (while hooks "
                "run, or from open to close); a store that allows one handle at a time, across "
                "processes too, declares handles_per_process = 1 and shared = False, and no "
                "check then opens a second handle beside the first"
            )
        if self.running and self.running != self.call:
            out.append(f"the check was running: {self.running}")
        if self.stack:
            how = " (read from outside: the thread held the interpreter lock)"
            out.append(f"blocked at (innermost last){how if self.frozen else ''}:")
            out += [f"  {frame}" for frame in self.stack]
        if self.recent:
            out.append("store calls before it (latest last): " + "; ".join(self.recent))
        if self.steps:
            out.append("Store steps of the example so far (latest last):")
            out += list(self.steps)
        out += list(self.extra)
        if self.role:
            out.append(
                f"time-dependent: judged by a {self.bound:g} s deadline per call (a store whose "
                "calls may rightly take longer declares factory.call_seconds)"
            )
        return out


class StoreHung(BaseException):  # a stop, like KeyboardInterrupt: not an Exception
    """A bounded call did not return: the check stops here and the report is its verdict.

    A BaseException, as :class:`~._profiles.BudgetSpent`: the checks catch ``Exception`` around
    store calls (a raise is often fine), and a hang must not pass for a raise; Hypothesis lets
    it through at once instead of shrinking.
    """

    def __init__(self, report: HangReport) -> None:
        super().__init__(report.headline("?"))
        self.report = report


def hang_result(pid: str, report: HangReport, seconds: float = 0.0) -> PropertyResult:
    """The verdict a hang gives property ``pid``: failed for the store, else unverified."""
    text = "\n".join(report.lines(pid))
    if report.role != "store":
        return PropertyResult(pid, "unverified", seconds, text, {"hangs": 1})
    artifacts = {FINDINGS: [finding("hung", report.headline(pid))]}
    return PropertyResult(pid, "failed", seconds, text, {"hangs": 1}, artifacts)


def _frame_line(filename: str, lineno: int, name: str) -> str:
    source = linecache.getline(filename, lineno).strip()
    return f"{os.path.basename(filename)}:{lineno} in {name}" + (f": {source}" if source else "")


def _theirs(frames: Sequence[tuple[str, int, str]]) -> list[str]:
    """The frames after the suite's last one (the store's), innermost last, at most a few."""
    ours = [i for i, (filename, _, _) in enumerate(frames) if _OURS.search(filename)]
    kept = frames[ours[-1] + 1 :] if ours and ours[-1] + 1 < len(frames) else frames
    return [_frame_line(*frame) for frame in kept[-_FRAMES:]]


def python_stack(thread: int) -> tuple[str, ...]:
    """The stack of thread ``thread`` of this process, the store's frames only, innermost last."""
    frame: Any = sys._current_frames().get(thread)
    frames = []
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return tuple(_theirs(frames[::-1]))


_ARMED: list[Any] = []  # the writing end faulthandler writes to: kept open for the process's life


def arm_stack_dump(writer: Any) -> None:
    """In a process the suite started: write every thread's stack to ``writer`` when asked.

    ``writer`` is the child's end of a :class:`StackPipe`; asked is :data:`DUMP_SIGNAL`, or a
    fatal error (a crash in C).
    """
    import faulthandler

    _ARMED.append(writer)
    if DUMP_SIGNAL is not None:
        faulthandler.register(DUMP_SIGNAL, file=writer.fileno(), all_threads=True, chain=False)
    faulthandler.enable(file=writer.fileno(), all_threads=True)


class StackPipe:
    """Where a process the suite started writes its stacks, and where its parent reads them.

    A pipe, not a file: nothing is left behind however the run ends (a signal, a kill).
    """

    def __init__(self, ctx: Any) -> None:
        self.reader, self.writer = ctx.Pipe(duplex=False)

    def started(self) -> None:
        """The child has its end (it was passed at start): close ours of it."""
        self.writer.close()

    def read(self, wait: float = 0.0) -> str:
        """What the child wrote: waits up to ``wait`` for a first byte, then until it is quiet."""
        if sys.platform == "win32":
            return ""
        import select

        fd = self.reader.fileno()
        chunks = []
        deadline = time.monotonic() + wait
        timeout = wait
        while True:
            ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
            if not ready:
                break
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:  # the child is gone and its end closed
                break
            chunks.append(chunk)
            timeout = min(0.1, max(deadline - time.monotonic(), 0.1))
        return b"".join(chunks).decode("utf-8", "replace")

    def request(self, pid: int) -> str:
        """Ask process ``pid`` for its stacks (:data:`DUMP_SIGNAL`); "" if none came."""
        if DUMP_SIGNAL is None:
            return ""
        self.read()  # whatever came before is not this dump
        try:
            os.kill(pid, DUMP_SIGNAL)
        except OSError:
            return ""
        return self.read(_DUMP_WAIT)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.writer.close()


_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-f]+)", re.MULTILINE)
_FILE = re.compile(r'^\s+File "(.*)", line (\d+) in (.*)$')


def dumped_stack(text: str, thread: int | None) -> tuple[str, ...]:
    """The stack of ``thread`` (any, when None or absent) in a faulthandler dump, innermost last."""
    blocks: dict[int, list[tuple[str, int, str]]] = {}
    current: list[tuple[str, int, str]] | None = None
    for line in text.splitlines():
        header = _THREAD.match(line)
        if header:
            current = blocks.setdefault(int(header[1], 16), [])
            continue
        match = _FILE.match(line)
        if match and current is not None:
            current.append((match[1], int(match[2]), match[3]))
    if not blocks:
        return ()
    chosen = blocks.get(thread) if thread is not None else None
    if chosen is None:
        chosen = max(blocks.values(), key=len)
    return tuple(_theirs(chosen[::-1]))  # faulthandler prints the innermost first
