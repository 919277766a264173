"""Worker processes, started with ``multiprocess`` and always reaped.

Workers rebuild their store from the factory spec string, so any importable store works and the
behaviour is the same under fork and spawn (spawn is all macOS and Windows have). Every helper
here reaps what it starts: terminate, join with a deadline, kill, close.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Final

import multiprocess

from lance_offsets._interrupt import signals_held

__all__ = ["JOIN_SECONDS", "context", "fit_socket_paths", "kill", "reap", "running", "start"]

#: How long reaping waits for a terminated worker before it kills it outright.
JOIN_SECONDS: Final = 5.0
#: The longest temporary directory under which multiprocessing's Unix sockets still fit:
#: ``<dir>/pymp-XXXXXXXX/listener-XXXXXXXX`` must fit ``sun_path`` (104 bytes on macOS, 108 on
#: Linux, a NUL included), with a margin.
SOCKET_DIR_MAX: Final = 64


def fit_socket_paths(module: Any) -> None:
    """Make ``module`` (multiprocess or multiprocessing) put its sockets where their paths fit.

    Both make the Unix sockets of a fork server and of descriptor passing in a directory under
    the temporary directory. Under a long one (pytest's, macOS's ``/var/folders/...``, a run
    directory inside either) the bind fails with "AF_UNIX path too long", and every property
    that starts a worker would fail for the suite's own reason. Python 3.13's multiprocessing
    chooses a short base itself; before it, and in multiprocess, this does the same, once.
    """
    if sys.platform == "win32":
        return
    process = importlib.import_module(f"{module.__name__}.process")
    util = importlib.import_module(f"{module.__name__}.util")
    config = process.current_process()._config
    if config.get("tempdir") is not None or len(tempfile.gettempdir()) <= SOCKET_DIR_MAX:
        return
    for base in ("/tmp", "/var/tmp", "/usr/tmp"):
        if os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
            short = tempfile.mkdtemp(prefix="pymp-", dir=base)
            # As multiprocessing's own: removed when this process exits normally.
            util.Finalize(None, shutil.rmtree, args=(short, True), exitpriority=-100)
            config["tempdir"] = short
            return


def start(proc: Any) -> None:
    """Start ``proc`` (a worker that calls ``quiet_child``) with SIGINT and SIGTERM held back.

    So that Ctrl-C while it is still starting makes it leave quietly once it can, not print a
    ``KeyboardInterrupt`` traceback from the middle of its imports.
    """
    with signals_held():
        proc.start()


def context() -> Any:
    """The start method context: spawn everywhere, so Linux runs what macOS and Windows run."""
    fit_socket_paths(multiprocess)
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
    start(proc)
    try:
        yield proc
    finally:
        reap(proc)
