"""The verdict of a server-fault run, and how it joins the verdict of the same ID's other checks."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Final

from lance_offsets.conformance._diagnosis import FINDINGS, finding
from lance_offsets.conformance._results import Outcome, PropertyResult

from .._options import StressOptions
from ..concurrency._linearize import (
    Violation,
    check_history,
    drawn_history,
    first_reported,
    format_violations,
)
from ._run import RunRecord, Window, excuse

__all__ = ["combine", "verdict"]

#: Faults named before a violation's operations, most recent first.
NAMED_BEFORE: Final = 3


def _faults_near(violation: Violation, windows: Sequence[Window]) -> str:
    """Name the faults in force during the excerpt, else the last few before it.

    A lost or invented value is usually seen by a load after the fault that caused it (the load
    that reveals a doubled increment, the fresh handle after a restart), hence the look back.
    """
    if not violation.excerpt:
        return ""
    start = min(op.invoke for op in violation.excerpt)
    end = max(op.complete or op.invoke for op in violation.excerpt)
    during = sorted({w.kind for w in windows if w.start <= end and start <= w.end})
    if during:
        return f"  fault in force during these operations: {', '.join(during)}"
    before = [w for w in windows if w.end < start][-NAMED_BEFORE:]
    if not before:
        return "  no fault had been injected yet"
    named = ", ".join(
        f"{w.kind} ({(start - w.end) * 1000:.0f} ms earlier)" for w in reversed(before)
    )
    return f"  faults just before these operations, latest first: {named}"


def verdict(
    pid: str,
    fault: str,
    record: RunRecord,
    options: StressOptions,
    *,
    started: float,
    evidence: dict[str, int | float | str],
) -> PropertyResult:
    """Judge ``record``: the history, with fault-touched operations indeterminate, must hold."""
    ops = excuse(record.ops, record.windows)
    excused = sum(op.complete is None for op in ops) - sum(op.complete is None for op in record.ops)
    violations = check_history(ops)
    completed = sum(1 for op in ops if op.outcome == "ok")
    shown: dict[str, int | float | str] = {
        **evidence,
        "operations checked": completed,
        "operations a fault made indeterminate": excused,
        "client threads": options.workers,
    }
    seconds = time.monotonic() - started
    head = (
        f"{pid} under {fault} (seed {options.seed}): {len(record.windows)} fault(s), "
        f"{completed} operations acknowledged by {options.workers} client threads, "
        f"{excused} made indeterminate by a fault"
    )
    if record.harness:
        # The run could not judge the store: never a failure (docs/stress.md, Servers).
        text = f"{head}: unverified: {'; '.join(record.harness)}"
        return PropertyResult(pid, "unverified", seconds, text, shown)
    if not record.problems and not violations:
        if not record.windows or completed < options.workers:
            why = "no fault was injected" if not record.windows else "too few operations completed"
            return PropertyResult(pid, "unverified", seconds, f"{head}: {why}", shown)
        text = f"{head}: every key's history linearizable, every acknowledged commit kept"
        return PropertyResult(pid, "passed", seconds, text, shown)
    first = first_reported(violations)
    # What a reader meets first: the violation itself (or what stopped the run).
    lead = record.problems[0] if record.problems else first.summary if first else head
    lines = [lead, f"{head}:", *(f"  {p}" for p in record.problems)]
    report = format_violations(violations, seed=options.seed, origin=record.origin).splitlines()
    for line in report:
        lines.append(line)
        if line.startswith("  ") and not line.startswith("    "):
            match = next((v for v in violations if v.summary in line), None)
            if match is not None:
                near = _faults_near(match, record.windows)
                if near:
                    lines.append(near)
    if excused:
        lines.append(
            "  (an operation shown as 'info (worker killed during the call ...)' is one a fault "
            "made indeterminate: it raised while a fault was in force, or first on its handle "
            "after one; the checker lets it take effect or not)"
        )
    history = drawn_history(violations, ops, origin=record.origin)
    artifacts: dict[str, Any] = {"history": history} if history else {}
    if pid == "D2" and first is not None:
        # A commit the killed server acknowledged and lost: it was not durable when acknowledged.
        artifacts[FINDINGS] = [finding("acked-lost-after-kill", first.summary)]
    return PropertyResult(pid, "failed", seconds, "\n".join(lines), shown, artifacts)


def combine(client: PropertyResult, server: PropertyResult) -> PropertyResult:
    """One verdict for an ID checked on the client (kills, file faults) and on the server.

    A failure of either part fails. Otherwise the server part decides: for a store that keeps its
    offsets in a server, client kills and file faults prove nothing about what the server kept,
    so a pass needs the server campaign's pass (an unverified client part beside it passes), and
    an unverified server campaign leaves the property unverified, whatever the client part did.
    Details and evidence of both are kept, the deciding part's first; the server's evidence names
    are prefixed where they clash.
    """
    if "failed" in (client.outcome, server.outcome):
        outcome: Outcome = "failed"
    elif server.outcome == "not-applicable":
        outcome = client.outcome
    else:
        outcome = server.outcome
    evidence = dict(client.evidence)
    for name, value in server.evidence.items():
        evidence[name if name not in evidence else f"server faults: {name}"] = value
    # A failure's details lead with its violation; otherwise the part that decided leads.
    client_first = client.outcome == "failed" or server.outcome == "not-applicable"
    lead, then = (client, server) if client_first else (server, client)
    details = f"{lead.details}\n--- {then.details}" if lead.details else then.details
    findings = [*client.artifacts.get(FINDINGS, ()), *server.artifacts.get(FINDINGS, ())]
    artifacts = {**client.artifacts, **server.artifacts}
    if findings:
        artifacts[FINDINGS] = findings
    return dataclasses.replace(
        client,
        outcome=outcome,
        seconds=client.seconds + server.seconds,
        details=details,
        evidence=evidence,
        artifacts=artifacts,
    )
