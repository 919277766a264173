"""Which properties the server-fault campaigns decide, how the runner adds them, and whose server.

D2 gains the server crash (:mod:`._crash`), F2 the connection faults (:mod:`._connfaults`), for a
factory that declares its server. Both run in every profile: the quick one kills the server a few
times and makes one turn of connection faults (seconds in all), ``--stress`` runs each for the
run's length. For a server store the server campaign is what D2 and F2 rest on: client kills and
file faults alone never make them pass (:func:`~._verdict.combine`).

The suite stops the server it started when the run ends (:func:`declared_server`; an interrupted
run's scope kills it with the rest of its processes). While the server campaigns kill or proxy it,
no other check of the run uses it (:func:`server_turn`): with ``check --workers`` another
property would otherwise see its connections die and fail for the campaign's doing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator
from typing import Final

from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ._declaration import ServerDeclaration, in_worker_process, server_of
from ._verdict import combine

__all__ = [
    "SERVER_CHECKS",
    "declared_server",
    "server_turn",
    "stop_server",
    "with_server_faults",
]

#: Where each property's server-fault check lives.
SERVER_CHECKS: Final[dict[str, str]] = {
    "D2": "lance_offsets.stress.servers._crash:check_server_crash",
    "F2": "lance_offsets.stress.servers._connfaults:check_connection_faults",
}
#: What each adds, as the details name it.
_WHAT: Final = {"D2": "server killed", "F2": "connection faults"}
#: The file whose lock gives the server campaigns the server to themselves (:func:`server_turn`),
#: named by the process that holds the server to the processes it starts.
LOCK_VARIABLE: Final = "LANCE_OFFSETS_SERVER_LOCK"

#: Servers this process holds, by id: a nested :func:`declared_server` neither holds the server
#: a second time nor stops it under the outer one.
_HELD: dict[int, ServerDeclaration] = {}


def _holds(server: ServerDeclaration) -> bool:
    """Whether this process is to hold ``server``: no block holds it yet, and no other process.

    A process started by ``multiprocessing`` or ``multiprocess`` (a ``check --workers`` pool
    process) belongs to the run of the process that started it, which holds the server.
    """
    return id(server) not in _HELD and not in_worker_process()


def _start(server: ServerDeclaration) -> str | None:
    try:
        server.start()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def stop_server(server: ServerDeclaration) -> None:
    """Stop ``server`` cleanly, or kill it if that fails; never raises (the run is ending)."""
    try:
        server.stop()
    except Exception:
        with contextlib.suppress(Exception):
            server.stop(kill=True)


def _hold(server: ServerDeclaration) -> str | None:
    """Hold ``server`` in this process; the lock file variable as it was, to restore."""
    saved = os.environ.get(LOCK_VARIABLE)
    _HELD[id(server)] = server
    handle, lock = tempfile.mkstemp(prefix="lance-offsets-server-", suffix=".lock")
    os.close(handle)
    os.environ[LOCK_VARIABLE] = lock
    return saved


def _release(server: ServerDeclaration, saved: str | None) -> None:
    _HELD.pop(id(server), None)
    with contextlib.suppress(OSError):
        os.unlink(os.environ.get(LOCK_VARIABLE, ""))
    if saved is None:
        os.environ.pop(LOCK_VARIABLE, None)
    else:
        os.environ[LOCK_VARIABLE] = saved


@contextlib.contextmanager
def declared_server(factory: object) -> Iterator[str | None]:
    """Hold the factory's declared server for a run: started now, stopped when the block ends.

    Yields why it could not be started (None when it was, or when there is none). Started before
    any check, so every process the checks start (workers, a fork server, a pool) inherits where
    it listens. A server that cannot be started here (the factory is configured for another one,
    say) is no verdict: the checks then reach whatever the factory reaches, and the server
    campaigns say why they did not run. Only the outermost block of the process that holds the
    server stops it, whatever ended the block (a failure, Ctrl-C); a pool process of the run, or
    a block inside another, uses the server and leaves it running.
    """
    server = server_of(factory)
    if server is None:
        yield None
        return
    holder = _holds(server)
    saved = _hold(server) if holder else None
    try:
        yield _start(server)
    finally:
        if holder:
            try:
                stop_server(server)
            finally:
                _release(server, saved)


@contextlib.contextmanager
def server_turn(*, exclusive: bool) -> Iterator[None]:
    """Use the run's server: shared by the checks, exclusive for a campaign that kills or cuts it.

    A lock on the holder's lock file (``fcntl.flock``), so it spans every process of the run; a
    no-op where the run holds no server, or without ``fcntl`` (Windows).
    """
    path = os.environ.get(LOCK_VARIABLE)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        path = None
    if not path:
        yield
        return
    try:
        handle = os.open(path, os.O_RDWR)
    except OSError:  # the holder has ended the run meanwhile
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(handle)  # releases the lock


def with_server_faults(
    pid: str, spec: str, factory: object, options: StressOptions, result: PropertyResult
) -> PropertyResult:
    """``result`` joined with the server-fault check of ``pid``, when the factory has a server."""
    server = server_of(factory)
    if pid not in SERVER_CHECKS or server is None:
        return result
    module_name, _, func_name = SERVER_CHECKS[pid].partition(":")
    check = getattr(importlib.import_module(module_name), func_name)
    try:
        with server_turn(exclusive=True):
            server_result: PropertyResult = check(spec, server, options)
    except Exception as exc:  # a server that cannot start is no verdict on the store
        why = f"{_WHAT[pid]}: the declared server could not be run: {type(exc).__name__}: {exc}"
        server_result = PropertyResult(pid, "unverified", 0.0, why)
    return combine(result, server_result)
