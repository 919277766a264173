"""A correct store that holds an exclusive lock from open to close, and declares it, passes the
whole check: no property may open a second handle while one is open (issue 19, class 4).

Run as a third party runs it: the CLI, by spec string, with a JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lance_offsets.conformance._catalog import PROPERTIES
from lance_offsets.stress._options import StressOptions

# Long (the whole check by the CLI): CI's pass of the tests marked stress runs it; the waiting
# variant (tests/slow/test_declarations.py) keeps the class in the default run.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.stress,
    pytest.mark.skipif(sys.platform == "win32", reason="the zoo store locks with flock"),
]

TESTS = str(Path(__file__).resolve().parents[1])

#: The store declares ``shared = False`` and one handle per process: these need a second
#: process beside an open handle, and are not applicable.
NOT_SHARED = {"M1", "M2", "D5"}
#: Not offered by the store: consumer names, save_many.
NOT_OFFERED = {"S1", "B1"}


def test_a_store_locked_from_open_to_close_passes_every_check(
    tmp_path: Path, stress_options: StressOptions
) -> None:
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lance_offsets",
            "check",
            "zoo.exclusive_zoo:ExclusiveStore",
            "--seed",
            str(stress_options.seed),
            "--json",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout[-4000:], done.stderr[-2000:])
    written = json.loads(report.read_text())
    verdicts = written["properties"]
    assert set(verdicts) == set(PROPERTIES)
    assert [pid for pid, outcome in verdicts.items() if outcome == "failed"] == []
    for pid, outcome in verdicts.items():
        if pid in NOT_SHARED | NOT_OFFERED:
            assert outcome == "not-applicable", (pid, outcome)
        elif pid == "P2":  # at most one handle is ever open: nothing to see (conformance/)
            assert outcome in ("unverified", "not-applicable"), outcome
        else:
            assert outcome == "passed", (pid, outcome)
    assert done.returncode == 0, done.stderr
    # F2 read what each fault left with the faulted handle killed, as the declaration asks.
    f2 = written["details"]["F2"]["evidence"]
    assert "faulted handle was killed (the store does not claim shared)" in f2["fresh reads"]
    assert f2["faulted saves"] >= 5 * 3 * 2
    assert min(f2[f"faulted {action}s"] for action in ("delete", "load", "open")) >= 1
