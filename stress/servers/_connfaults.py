"""Connection faults (F2 for servers): a fault in the store's network I/O must not make it lie.

The store's traffic goes through :class:`._proxy.FaultProxy` (the factory is pointed at it through
its server declaration's ``route``). At seeded times the proxy drops every connection, delays
or stalls traffic, or cuts connections after a request reached the server but before its reply
reached the client, so an acknowledgement is lost in flight. The history checker then holds the
store to F2's rule for its network: an operation the fault touched may have taken effect or not
(it is indeterminate), but an acknowledged save is never lost, no load returns a value nobody
saved (a retried increment applied twice shows up as one), and the handle works again once the
fault clears.
"""

from __future__ import annotations

import random
import time
from typing import Final

from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ._declaration import ServerDeclaration
from ._proxy import FaultKind, FaultProxy
from ._run import Window, run_with_faults
from ._verdict import verdict

__all__ = ["FAULT", "check_connection_faults"]

#: The fault family, as reports and evidence name it; each window names its own kind.
FAULT: Final = "connection faults"
#: What each proxy fault is called in reports.
KIND_NAMES: Final = {
    "cut": "connection cut after the request, before the reply",
    "drop": "connection dropped",
    "stall": "traffic stalled",
    "delay": "traffic delayed",
}
#: The order faults come in: every other one a cut, the fault that loses acknowledgements (each
#: cut costs a client only its connection's next reply, so it needs the most turns).
ORDER: Final[tuple[FaultKind, ...]] = ("cut", "drop", "cut", "stall", "cut", "delay")
#: Replies a connection passes in a cut before one is lost: 0 loses the one in flight; more let
#: a connection made during the fault start up and lose a later reply (a commit's, say).
CUT_AFTER: Final = (0, 6)
#: Seconds between faults, and how long each lasts.
GAP: Final = (0.1, 0.5)
LENGTH: Final = (0.05, 0.3)
#: The quick profile's run: one turn of :data:`ORDER` (every kind, three cuts), bounded by
#: :data:`QUICK_SECONDS`.
QUICK_FAULTS: Final = len(ORDER)
QUICK_SECONDS: Final = 30.0


def check_connection_faults(
    spec: str, server: ServerDeclaration, options: StressOptions
) -> PropertyResult:
    """F2 for the server's connection: drop, delay, stall, cut-before-reply through a proxy.

    A long run makes faults for ``options.seconds``; the quick profile's, :data:`QUICK_FAULTS`.
    """
    started = time.monotonic()
    upstream = server.start()
    with FaultProxy(upstream, cut_after=CUT_AFTER, seed=options.seed) as proxy:
        server.route(proxy.address)
        turn = [0]

        def fault_once(rng: random.Random, left: float) -> Window | None:
            gap, length = rng.uniform(*GAP), rng.uniform(*LENGTH)
            if left < gap + length + 0.2:
                return None
            kind = ORDER[turn[0] % len(ORDER)]
            turn[0] += 1
            time.sleep(gap)
            start = time.monotonic()
            proxy.fault(kind)
            time.sleep(length)
            proxy.clear()
            return Window(KIND_NAMES[kind], start, time.monotonic())

        try:
            record = run_with_faults(
                spec,
                seed=options.seed,
                workers=options.workers,
                seconds=options.seconds if options.long else QUICK_SECONDS,
                inject=fault_once,
                settle=lambda: server.route(None),
                workdir=options.workdir,
                faults=None if options.long else QUICK_FAULTS,
            )
        finally:
            server.route(None)
        evidence: dict[str, int | float | str] = {
            "fault": FAULT,
            "proxied connections": proxy.connections,
            **{f"{KIND_NAMES[k]}": n for k, n in proxy.counts.items()},
        }
    return verdict("F2", FAULT, record, options, started=started, evidence=evidence)
