"""The verdict on one property, shared by the suite, the stress harness and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Outcome", "PropertyResult"]

Outcome = Literal["passed", "failed", "not-applicable"]


@dataclass(frozen=True)
class PropertyResult:
    """What checking one property found.

    :ivar id: the property ID (``"C1"``...).
    :ivar outcome: passed, failed, or not-applicable (never "passed" for a property not checked).
    :ivar seconds: wall time spent on it.
    :ivar details: for a failure, the readable counterexample (shrunk steps, seed, history
        excerpt); for not-applicable, the reason.
    """

    id: str
    outcome: Outcome
    seconds: float
    details: str = ""
