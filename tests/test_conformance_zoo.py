"""Each broken store of the zoo fails on the property it breaks, with a readable counterexample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the zoo is importable by spec string

from lance_offsets.conformance import check_property
from zoo.defects import EXPECTED, has_readable_steps

# P2 defects need a second process: they run in tests/slow/test_conformance_zoo_p2.py.
FAST = {name: pid for name, pid in EXPECTED.items() if pid != "P2"}


@pytest.mark.parametrize(("name", "pid"), sorted(FAST.items()))
def test_broken_store_fails_its_property(name: str, pid: str) -> None:
    result = check_property(f"zoo.defects:{name}", pid, profile="smoke")
    assert result.outcome == "failed", f"{name} should fail {pid}: {result}"
    assert f"[{pid} " in result.details
    assert has_readable_steps(result.details), result.details  # the shrunk steps
