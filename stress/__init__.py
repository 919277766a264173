"""The stress suite: multi-process workers, crash injection, power-loss model, history checker."""

from __future__ import annotations

# The history checker, the file-system interposer and the power-loss model are light (no
# multiprocess), so they are re-exported for anyone checking their own histories, tracing their
# own store's I/O or exploring its crash states; the process-starting checks stay behind
# stress._runner's lazy lookup.
from ._fsmodel import CrashState as CrashState
from ._fsmodel import Exploration as Exploration
from ._fsmodel import explore as explore
from ._history import Op as Op
from ._interpose import FaultPlan as FaultPlan
from ._interpose import mark as mark
from ._interpose import set_fault as set_fault
from ._interpose import traced as traced
from ._linearize import Violation as Violation
from ._linearize import check_history as check_history
from ._linearize import format_violations as format_violations

__all__: list[str] = [
    "CrashState",
    "Exploration",
    "FaultPlan",
    "Op",
    "Violation",
    "check_history",
    "explore",
    "format_violations",
    "mark",
    "set_fault",
    "traced",
]
