"""Worker processes, started with ``multiprocess`` and always reaped.

Workers rebuild their store from the factory spec string, so any importable store works and the
behaviour is the same under fork and spawn (spawn is all macOS and Windows have). Every helper
here reaps what it starts: terminate, join with a deadline, kill, close.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

import multiprocess

__all__ = ["JOIN_SECONDS", "context", "kill", "reap", "running"]

#: How long reaping waits for a terminated worker before it kills it outright.
JOIN_SECONDS: Final = 5.0


def context() -> Any:
    """The start method context: spawn everywhere, so Linux runs what macOS and Windows run."""
    return multiprocess.get_context("spawn")


def kill(proc: Any) -> None:
    """Kill ``proc`` from outside (SIGKILL on POSIX, TerminateProcess on Windows) and wait."""
    if proc.is_alive():
        proc.kill()
    proc.join(JOIN_SECONDS)


def reap(proc: Any) -> None:
    """Stop ``proc`` whatever state it is in and release its resources."""
    if proc.is_alive():
        proc.terminate()
        proc.join(JOIN_SECONDS)
    if proc.is_alive():
        proc.kill()
        proc.join(JOIN_SECONDS)
    with contextlib.suppress(ValueError):  # close() refuses a process that somehow still runs
        proc.close()


@contextlib.contextmanager
def running(target: Callable[..., object], *args: object, name: str = "worker") -> Iterator[Any]:
    """Start ``target(*args)`` in a worker process; reap it however the block exits."""
    proc = context().Process(target=target, args=args, name=name, daemon=True)
    proc.start()
    try:
        yield proc
    finally:
        reap(proc)
