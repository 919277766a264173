"""The stress suite: multi-process workers, crash injection, power-loss model, history checker."""

from __future__ import annotations

# The history checker is light (no multiprocess), so it is re-exported for anyone checking their
# own recorded histories; the process-starting checks stay behind stress._runner's lazy lookup.
from ._history import Op as Op
from ._linearize import Violation as Violation
from ._linearize import check_history as check_history
from ._linearize import format_violations as format_violations

__all__: list[str] = ["Op", "Violation", "check_history", "format_violations"]
