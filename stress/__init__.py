"""The stress suite: multi-process workers, crash injection, power-loss model, history checker.

The layout (docs/stress.md, "Where the code lives"): ``seam/`` sees and faults a store's file
system calls, ``workers/`` runs processes, and ``crash/``, ``faults/``, ``powerloss/`` and
``concurrency/`` are the campaigns that consume the seam's trace.
"""

from __future__ import annotations

from .concurrency._history import Op as Op
from .concurrency._linearize import Violation as Violation
from .concurrency._linearize import check_history as check_history
from .concurrency._linearize import format_violations as format_violations

# The history checker, the file-system interposer and the power-loss model are light (no
# multiprocess), so they are re-exported for anyone checking their own histories, tracing their
# own store's I/O or exploring its crash states; the process-starting checks stay behind
# stress._runner's lazy lookup.
from .powerloss._fsmodel import CrashState as CrashState
from .powerloss._fsmodel import Exploration as Exploration
from .powerloss._fsmodel import explore as explore
from .seam._interpose import FaultPlan as FaultPlan
from .seam._interpose import mark as mark
from .seam._interpose import set_fault as set_fault
from .seam._interpose import traced as traced

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
