"""Which properties the server-fault campaigns decide, and how the runner adds them.

D2 gains the server crash (:mod:`._crash`), F2 the connection faults (:mod:`._connfaults`), for a
factory that declares its server. They run in long runs (``check --stress``, ``pytest --stress``)
only: the quick profile stays as fast as before, and says so in the verdict.
"""

from __future__ import annotations

import importlib
from typing import Final

from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ._declaration import server_of
from ._verdict import combine

__all__ = ["SERVER_CHECKS", "start_declared", "with_server_faults"]

#: Where each property's server-fault check lives.
SERVER_CHECKS: Final[dict[str, str]] = {
    "D2": "lance_offsets.stress.servers._crash:check_server_crash",
    "F2": "lance_offsets.stress.servers._connfaults:check_connection_faults",
}
#: What each adds, as the note of a short run names it.
_WHAT: Final = {"D2": "server killed", "F2": "connection faults"}


def start_declared(factory: object) -> str | None:
    """Start the factory's declared server, if any, before any check; why not, or None.

    Before, so that every process the checks start (workers, a fork server, a pool) inherits
    where it listens. A server that cannot be started here (the factory is configured for
    another one, say) is no verdict: the checks then reach whatever the factory reaches.
    """
    server = server_of(factory)
    if server is None:
        return None
    try:
        server.start()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def with_server_faults(
    pid: str, spec: str, factory: object, options: StressOptions, result: PropertyResult
) -> PropertyResult:
    """``result`` joined with the server-fault check of ``pid``, when the factory has a server."""
    server = server_of(factory)
    if pid not in SERVER_CHECKS or server is None:
        return result
    if not options.long:
        note = f"(server declared: the {_WHAT[pid]} campaign runs with --stress)"
        return combine(result, PropertyResult(pid, "not-applicable", 0.0, note))
    module_name, _, func_name = SERVER_CHECKS[pid].partition(":")
    check = getattr(importlib.import_module(module_name), func_name)
    try:
        server_result: PropertyResult = check(spec, server, options)
    except Exception as exc:  # a server that cannot start is no verdict on the store
        why = f"{_WHAT[pid]}: the declared server could not be run: {type(exc).__name__}: {exc}"
        server_result = PropertyResult(pid, "unverified", 0.0, why)
    return combine(result, server_result)
