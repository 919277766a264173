"""What ``lance-offsets check`` shows while it runs: a progress line and an honest time left.

The verdict's rows go to stdout, the progress to stderr. On a terminal the progress is one line,
redrawn in place every second; it is erased before anything else is written (a result row, a long
run's own progress line) and drawn again after it, so no row ever shares a line with it (the
erase is a carriage return, spaces, and another carriage return: it needs no terminal escape
codes, and a log of the terminal read line by line still shows each row at the start of its own
line). Where stderr is not a terminal (a CI log, a pipe) each finished property is one line.

The time left is learned from the properties already run, by kind (:func:`kind`): a Hypothesis
property does not predict a crash campaign, and the crash campaign's first property pays for
the other three. A kind with nothing finished yet is not guessed: the line says "at least" with
only what is known (a timed run lasts at least its seconds), and names what was not timed yet.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, Final, TextIO

from ._catalog import PROPERTIES
from ._results import PropertyResult

__all__ = ["Estimate", "ProgressLine", "duration", "kind"]

#: Properties decided by one crash campaign: in a serial run the first of them runs it, and the
#: others read its result (stress/crash/_campaign.py caches it by spec and seed).
CRASH_CAMPAIGN: Final = frozenset({"D1", "D2", "D4", "D5"})
#: Properties whose run lasts a set time (StressOptions.seconds), at least.
TIMED: Final = frozenset({"M1", "M2"})
#: Seconds between redraws of a live progress line (the elapsed time moves).
REDRAW_SECONDS: Final = 1.0


def kind(pid: str) -> str:
    """What predicts ``pid``'s time: properties of one kind take alike."""
    if PROPERTIES[pid].suite == "conformance":
        return "hypothesis"
    if pid in CRASH_CAMPAIGN:
        return "crash campaign"
    if pid in TIMED:
        return "timed run"
    return pid  # D3, F2, B1: each a campaign of its own


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min"``, ``"1 h 5 min"``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class Estimate:
    """Time left in a run, from the times of the properties it has finished.

    :param ids: the properties the run checks.
    :param timed_seconds: how long a timed run (M1, M2) lasts at least.
    :param workers: properties checked at once.
    """

    def __init__(self, ids: Iterable[str], *, timed_seconds: float, workers: int = 1) -> None:
        self.ids = list(ids)
        self.timed_seconds = timed_seconds
        self.workers = max(1, workers)
        self.seconds: dict[str, float] = {}

    def finished(self, pid: str, seconds: float) -> None:
        self.seconds[pid] = seconds

    def _shared_paid(self, pid: str) -> bool:
        # Serial only: checked at once, each process runs the crash campaign itself.
        return (
            self.workers == 1 and pid in CRASH_CAMPAIGN and bool(CRASH_CAMPAIGN & set(self.seconds))
        )

    def _learned(self, pid: str) -> float | None:
        """Mean time of the finished properties of ``pid``'s kind (None: none finished)."""
        times = [seconds for done, seconds in self.seconds.items() if kind(done) == kind(pid)]
        return sum(times) / len(times) if times else None

    def left(self, running: dict[str, float] | None = None) -> tuple[float, list[str]]:
        """Seconds known to be left, and the properties left whose time is not known yet.

        :param running: elapsed seconds of each property running now.
        """
        running = running or {}
        known = 0.0
        unknown = []
        for pid in self.ids:
            if pid in self.seconds:
                continue
            if self._shared_paid(pid):
                continue
            learned = self._learned(pid)
            if learned is None:
                unknown.append(pid)
                learned = self.timed_seconds if pid in TIMED else 0.0
            known += max(0.0, learned - running.get(pid, 0.0))
        return known / self.workers, unknown

    def text(self, running: dict[str, float] | None = None) -> str:
        """``"about 3 min left"``, ``"at least 2 min left (D3, F2 not timed yet)"``, or ``""``."""
        seconds, unknown = self.left(running)
        if len(self.seconds) == len(self.ids):
            return ""
        if not unknown:
            return f"about {duration(seconds)} left"
        names = ", ".join(unknown[:4]) + (", ..." if len(unknown) > 4 else "")
        if seconds < 1:
            return f"time left not known yet ({names} not timed yet)"
        return f"at least {duration(seconds)} left ({names} not timed yet)"


class _LinesOnly:
    """What a :class:`ProgressLine` becomes in another process: whole lines on its stderr."""

    def line(self, text: str, stream: TextIO | None = None) -> None:
        print(text, file=sys.stderr if stream is None else stream, flush=True)


class ProgressLine:
    """The rows of a run on ``out`` and its progress on ``err``, never on one line together."""

    def __init__(
        self,
        estimate: Estimate,
        out: TextIO,
        err: TextIO,
        *,
        live: bool | None = None,
    ) -> None:
        self.estimate = estimate
        self.total = len(estimate.ids)
        self.out, self.err = out, err
        self.live = err.isatty() if live is None else live
        self.start = time.monotonic()
        self.running: dict[str, float] = {}  # pid -> when it started
        self.done = 0
        self._drawn = 0  # characters of the progress line now on the terminal
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="check-progress", daemon=True)
            self._ticker.start()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # A copy in another process (a --workers process, to which a progress callback travels
        # inside the run's options) must not carry this lock: pickled while held, it arrives
        # held by a thread that does not exist there, and the first line waits forever. It
        # gets a writer of whole lines to its own stderr instead.
        return (_LinesOnly, ())

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self._lock:
                self._draw()

    def _status(self) -> str:
        now = time.monotonic()
        elapsed = {pid: now - began for pid, began in self.running.items()}
        parts = [f"[{self.done}/{self.total}]"]
        if elapsed:
            parts.append(
                "running "
                + ", ".join(f"{pid} ({seconds:.0f} s)" for pid, seconds in elapsed.items())
                + ","
            )
        parts.append(f"{now - self.start:.0f} s elapsed")
        left = self.estimate.text(elapsed)
        return " ".join(parts) + (f", {left}" if left else "")

    def _erase(self) -> None:
        if self._drawn:
            self.err.write("\r" + " " * self._drawn + "\r")
            self.err.flush()
            self._drawn = 0

    def _width(self) -> int:
        # A line longer than the terminal wraps, and a carriage return then erases only its last
        # row: keep it one column short of the width.
        try:
            return max(20, os.get_terminal_size(self.err.fileno()).columns - 1)
        except (OSError, ValueError, AttributeError):
            return 79

    def _draw(self) -> None:
        if not self.live or self._stop.is_set():
            return
        text = self._status()[: self._width()]
        width = max(len(text), self._drawn)
        self.err.write("\r" + text.ljust(width) + "\r")
        self.err.flush()
        self._drawn = width

    def started(self, pid: str) -> None:
        """``pid``'s check began."""
        with self._lock:
            self.running[pid] = time.monotonic()
            self._draw()

    def finished(self, result: PropertyResult, row: str | None) -> None:
        """``result`` is known: print its ``row`` (None: printed later, in catalog order)."""
        with self._lock:
            self.running.pop(result.id, None)
            self.done += 1
            self.estimate.finished(result.id, result.seconds)
            if row is not None:
                self.line(row, self.out)
            if not self.live:
                elapsed = time.monotonic() - self.start
                left = self.estimate.text()
                print(
                    f"[{self.done}/{self.total}] {result.id} {result.outcome}, "
                    f"{elapsed:.0f} s elapsed" + (f", {left}" if left else ""),
                    file=self.err,
                    flush=True,
                )
            self._draw()

    def line(self, text: str, stream: TextIO | None = None) -> None:
        """Print ``text`` as a line of its own (to stderr by default), then redraw the progress."""
        with self._lock:
            self._erase()
            target = self.err if stream is None else stream
            print(text, file=target, flush=True)
            self._draw()

    def close(self) -> None:
        """Stop redrawing and leave the terminal without a progress line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2 * REDRAW_SECONDS)
        with self._lock:
            self._erase()
