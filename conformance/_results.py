"""The verdict on one property, shared by the suite, the stress harness and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["OUTCOMES", "Evidence", "Outcome", "PropertyResult", "evidence_text"]

Outcome = Literal["passed", "failed", "unverified", "not-applicable"]

#: Every outcome, most serious first (the order reports list them in).
OUTCOMES: Final[tuple[Outcome, ...]] = ("failed", "unverified", "passed", "not-applicable")

#: What a check exercised, by name: counts ("crash points killed": 42), or a short word.
Evidence = Mapping[str, int | float | str]


@dataclass(frozen=True)
class PropertyResult:
    """What checking one property found.

    :ivar id: the property ID (``"C1"``...).
    :ivar outcome: ``passed``; ``failed``; ``unverified`` (the store claims the property, but the
        suite could not exercise it here: ``details`` says why); or ``not-applicable`` (the store
        does not claim what the property needs). Never "passed" for a property not exercised.
    :ivar seconds: wall time spent on it.
    :ivar details: for a failure, the readable counterexample (shrunk steps, seed, history
        excerpt); for unverified and not-applicable, the reason.
    :ivar evidence: what the check exercised, so a pass can be weighed: examples run and
        discarded, crash points killed, random kills, states explored, operations checked.
    :ivar artifacts: structured, JSON-serialisable material behind a failure, for reports that
        draw it: ``"history"`` (M1/M2: the operations of the failing excerpt, one lane per
        process) and ``"crash_state"`` (D3: the state's files beside the trace). Empty when a
        check has nothing to draw.
    """

    id: str
    outcome: Outcome
    seconds: float
    details: str = ""
    evidence: Evidence = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)


def evidence_text(evidence: Evidence) -> str:
    """One line a person reads beside a verdict: ``"crash points killed 42, random kills 6"``."""
    parts = []
    for name, value in evidence.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        shown = f"{value:.3g}" if isinstance(value, float) else shown
        parts.append(f"{name} {shown}")
    return ", ".join(parts)
