"""Zoo stores whose defect only shows from another handle or process fail P2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lance_offsets.conformance import check_property
from zoo.defects import EXPECTED, has_readable_steps

P2 = sorted(name for name, pid in EXPECTED.items() if pid == "P2")


@pytest.mark.parametrize("name", P2)
def test_stale_handles_fail_p2(name: str) -> None:
    result = check_property(f"zoo.defects:{name}", "P2", profile="smoke")
    assert result.outcome == "failed", result
    assert "[P2 " in result.details
    assert has_readable_steps(result.details), result.details
