"""Ctrl-C and SIGTERM: stop soon, clean up, say one line, exit with 128 + the signal's number.

Every long-running door of the kit (``lance-offsets check``, the other CLI commands, the
conformance suite under pytest) stops the same way. The process in charge turns the first SIGINT
or SIGTERM into :class:`Interrupted`, a :class:`KeyboardInterrupt`, so it unwinds through every
``finally`` (and past every ``except Exception``) and whoever catches it at the top prints one
line and exits 130 or 143, as shells report a process killed by those signals. A second signal
while it cleans up ends the process at once: whoever presses Ctrl-C twice means it.

The processes it starts (workers, templates, verifiers) call :func:`quiet_child`: Ctrl-C reaches
the whole process group, and a hundred workers each printing a ``KeyboardInterrupt`` traceback is
the noise this module exists to remove. They leave at once and silently; the process in charge
reaps them and removes what they made (``conformance/_runscope.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final

__all__ = [
    "Interrupted",
    "exit_code",
    "ignore_late_signals",
    "interruption",
    "quiet_child",
    "quiet_unraisable",
    "raise_if_interrupted",
    "signals_held",
    "stop_on_signals",
]

#: The signals that stop a run. SIGTERM is what CI runners, ``timeout`` and service managers send.
SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; :attr:`signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"``."""
        return signal.Signals(self.signum).name


_received: list[int] = []  # the signal received while stop_on_signals was active, if any
_on_stop: list[Callable[[int], None]] = []  # called with the first signal, before the raise


def exit_code(exc: BaseException) -> int:
    """The exit status a process stopped by ``exc`` reports: 128 + the signal (130 for Ctrl-C)."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    return 128 + int(signum)


def interruption() -> Interrupted | None:
    """The interruption received so far under :func:`stop_on_signals`, or None."""
    return Interrupted(_received[0]) if _received else None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if a signal came.

    For loops that run store code which may swallow the first raise (a callback from C cannot
    let an exception through; a store may catch ``BaseException``): they check between steps.
    """
    if _received:
        raise Interrupted(_received[0])


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _received:
        # Cleaning up already: a second signal means "now". Nothing more is written.
        os._exit(128 + signum)
    _received.append(signum)
    for call in _on_stop:
        with contextlib.suppress(Exception):  # stopping matters more than telling others
            call(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def quiet_unraisable() -> Iterator[None]:
    """While active, our interruption raised where it cannot propagate is not printed.

    A signal's handler runs wherever the main thread is, garbage collector callbacks and
    finalizers included; what it raises there is "unraisable", and Python (or pytest, whose hook
    this wraps when pytest set one) would print it with a traceback. It is recorded all the
    same, and :func:`raise_if_interrupted` raises it again where it can propagate.
    """
    hook = sys.unraisablehook

    def quiet(args: sys.UnraisableHookArgs) -> object:
        if isinstance(args.exc_value, Interrupted):
            return None
        return hook(args)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        if sys.unraisablehook is quiet:  # unless someone replaced it meanwhile
            sys.unraisablehook = hook


@contextlib.contextmanager
def stop_on_signals(
    on_stop: Callable[[int], None] | None = None, *, then_ignore: bool = False
) -> Iterator[None]:
    """While active, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread.

    Outside the main thread (signals are delivered only there) it changes nothing. The handlers
    in place before are restored on exit.

    :param on_stop: called with the first signal's number before the raise (to pass a SIGTERM,
        which reaches this process alone, on to processes that must stop too).
    :param then_ignore: on exit, do not restore the handlers but :func:`ignore_late_signals`:
        for a command whose process ends right after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _received.clear()
    _on_stop[:] = [on_stop] if on_stop is not None else []
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        with quiet_unraisable():
            yield
    finally:
        if then_ignore:
            ignore_late_signals()
        else:
            for sig, handler in before.items():
                signal.signal(sig, handler)
        _received.clear()
        _on_stop.clear()


_late: list[int] = []


def _after_the_end(signum: int, frame: FrameType | None) -> None:
    if _late:  # a second one: whoever sends it means "now"
        os._exit(128 + signum)
    _late.append(signum)


def ignore_late_signals() -> None:
    """For a command whose work is done: a signal while the process winds down changes nothing.

    Between the last line printed and the process's end, Python runs finalizers (a fork server
    stopped, temporary folders removed). Python's own handler would turn a Ctrl-C there into a
    traceback and an exit "killed by SIGINT" for work that completed; the first such signal is
    ignored instead, a second ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _after_the_end)


def _leave(signum: int, frame: FrameType | None) -> None:
    # No traceback, no atexit hooks, no finalizers: the parent reaps this process and cleans up.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(128 + signum)


def quiet_child() -> None:
    """In a process the suite started: leave at once and silently on SIGINT and SIGTERM.

    Processes forked from this one inherit it. A process started under :func:`signals_held`
    ignored Ctrl-C until now. Windows has no process groups that receive Ctrl-C together in the
    same way and kills children outright; there it changes nothing.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _leave)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Start processes in this block: they ignore Ctrl-C until :func:`quiet_child` runs.

    A new interpreter takes a few hundred milliseconds to import what it runs, and Python's own
    handler would turn a Ctrl-C in that time into a ``KeyboardInterrupt`` traceback. An ignored
    SIGINT stays ignored through exec (the signal mask does not: the process-starting code
    resets it), and Python then installs no handler of its own; the process in charge kills
    such a child when it stops. Here, SIGINT and SIGTERM are held back meanwhile (on Linux a held
    signal is kept even while ignored) and reach this process's own handler when the block ends.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
