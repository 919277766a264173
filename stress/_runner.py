"""Runs the multi-process properties on a store named by its factory spec.

Each property's check lives in the module that owns it and is looked up lazily, so plain
``lance-offsets check`` pays for multiprocess only when it reaches these properties.
A check is ``check_<id>(spec: str, options: StressOptions) -> PropertyResult``; the runner has
already decided the property applies (the store claims what it needs). A check may still answer
unverified with a reason (D3 on a store whose I/O cannot be traced, F2 on one whose I/O the
interposer cannot see) and fills in the evidence behind its verdict.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Final

from lance_offsets.conformance._capabilities import Capabilities, capabilities_of
from lance_offsets.conformance._catalog import PROPERTIES
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._spec import canonical_spec, load_factory

from ._options import StressOptions

__all__ = ["CHECKS", "run_properties"]

#: Where each multi-process property's check lives.
CHECKS: Final[dict[str, str]] = {
    "M1": "lance_offsets.stress.concurrency._campaign:check_m1",
    "M2": "lance_offsets.stress.concurrency._campaign:check_m2",
    "D1": "lance_offsets.stress.crash._campaign:check_d1",
    "D2": "lance_offsets.stress.crash._campaign:check_d2",
    "D3": "lance_offsets.stress.powerloss._campaign:check_d3",
    "D4": "lance_offsets.stress.crash._campaign:check_d4",
    "D5": "lance_offsets.stress.crash._campaign:check_d5",
    "F2": "lance_offsets.stress.faults._campaign:check_f2",
    "B1": "lance_offsets.stress.batch._campaign:check_b1",
}


def run_properties(spec: str, ids: list[str], options: StressOptions) -> list[PropertyResult]:
    """Check each property of ``ids`` (those in :data:`CHECKS`) on the store ``spec`` names.

    A server the factory declares is held for the call (started first, so the workers inherit
    where it listens; stopped at the end unless an enclosing run holds it: ``stress/servers``).
    """
    spec = canonical_spec(spec)  # an exec: spec, made to mean the same program everywhere
    factory = load_factory(spec)
    capabilities = capabilities_of(factory)
    if capabilities.server is None:
        return [_one(spec, pid, factory, capabilities, options) for pid in ids]
    from .servers._campaigns import declared_server

    with declared_server(factory):
        return [_one(spec, pid, factory, capabilities, options) for pid in ids]


def _one(
    spec: str, pid: str, factory: object, capabilities: Capabilities, options: StressOptions
) -> PropertyResult:
    start = time.monotonic()
    missing = capabilities.missing(PROPERTIES[pid].needs)
    if missing:
        reason = f"store does not claim {', '.join(missing)}"
        return PropertyResult(pid, "not-applicable", 0.0, reason)
    module_name, _, func_name = CHECKS[pid].partition(":")
    check = getattr(importlib.import_module(module_name), func_name)
    if capabilities.server is None:
        result: PropertyResult = check(spec, options)
    else:  # a declared server adds its campaigns (D2, F2), which have the server to themselves
        from .servers._campaigns import server_turn, with_server_faults

        with server_turn(exclusive=False):
            result = check(spec, options)
        result = with_server_faults(pid, spec, factory, options, result)
    if not result.seconds:
        result = dataclasses.replace(result, seconds=time.monotonic() - start)
    return result
