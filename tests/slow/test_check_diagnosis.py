"""A real check of a broken store: each failure leads with its violation, the report with the root
cause, and every property shows its own evidence and time (issue 18, "A failure teaches the fix").

The store writes its offset files in place (tests/zoo/stress_crash_zoo.py:in_place): a kill
empties a file (D1), readers in another process parse half-written files (M1, M2), the listing
trips over the emptied file (D4), a failed write destroys the old value (F2). One cause, shown
most directly by D1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: The tests folder: the zoo is importable from there (the module's one run sets it itself, as
#: the zoo_importable fixture would for a single test).
TESTS = str(Path(__file__).resolve().parents[1])

SEED = 7
ONLY = "M1,M2,D1,D2,D3,D4,D5,F2"
#: What each failing property's first line said before it led with the violation.
STATISTICS_FIRST = {
    "D1": "one campaign for",
    "D4": "one campaign for",
    "F2": f"seed {SEED}:",
    "M1": "M1 (M1 workload",
    "M2": "M2 (M2 workload",
    "D3": "of 492 crash states",
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    where = tmp_path_factory.mktemp("check")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lance_offsets",
            "check",
            "zoo.stress_crash_zoo:in_place",
            *("--only", ONLY, "--seed", str(SEED)),
            *("--json", "v.json", "--junit", "v.xml", "--markdown", "v.md", "--html", "v.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=where,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])),
        },
    )
    print(f"seed {SEED}")
    print(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout, where


def _blocks(stdout: str) -> dict[str, list[str]]:
    """Each failure's block of the terminal report, by property ID."""
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("=== "):
            current = blocks.setdefault(line.split()[1], [line])
        elif current:
            current.append(line)
    return blocks


def test_the_terminal_leads_with_the_root_cause_and_prints_its_failure_first(
    checked: tuple[str, Path],
) -> None:
    stdout, _ = checked
    causes = stdout.index("Likely causes, the one behind most failures first:")
    assert stdout.index("  root cause, shown by D1: the offset file is truncated") > causes
    order = [line.split()[1] for line in stdout.splitlines() if line.startswith("=== ")]
    assert order.index("D1") < order.index("M1")  # catalog order printed M1 first
    assert order[0] == "D1"
    blocks = _blocks(stdout)
    for pid in ("M1", "M2", "D4", "F2"):
        assert blocks[pid][0].endswith("FAILED (consequence of D1's cause) ==="), blocks[pid][0]
    assert "consequence" not in blocks["D1"][0]


def test_each_failure_leads_with_its_violation_then_cause_and_remedy(
    checked: tuple[str, Path],
) -> None:
    blocks = _blocks(checked[0])
    for pid, statistics in STATISTICS_FIRST.items():
        violation = blocks[pid][1]
        assert statistics not in violation, (pid, violation)
        assert blocks[pid][2].startswith(("likely cause: ", "consequence of D1's cause")), pid
    assert blocks["D1"][1].startswith("key (")  # the key, the kill, what was found
    assert "raised ValueError: corrupt offset file" in blocks["D1"][1]
    assert blocks["M1"][1].startswith("load of key (")
    assert blocks["F2"][1].startswith("key (")
    assert "usual remedy: write the new value to a temporary file" in "\n".join(blocks["D1"])


def test_json_names_the_root_cause_and_each_property_has_its_own_evidence_and_time(
    checked: tuple[str, Path],
) -> None:
    document: dict[str, Any] = json.loads((checked[1] / "v.json").read_text())
    first = document["root_causes"][0]
    assert first["cause"] == "in-place-write"
    assert first["root"] == "D1"
    assert {"M1", "M2", "D4", "F2"} <= set(first["consequences"])
    details = document["details"]
    assert details["M1"]["diagnosis"]["consequence_of"] == "D1"
    assert details["D2"]["diagnosis"] is None  # passed
    # D1, D2, D4 and D5 share one campaign: each shows its time, and its own evidence.
    seconds = {pid: details[pid]["seconds"] for pid in ("D1", "D2", "D4", "D5")}
    assert len(set(seconds.values())) == 1, seconds
    assert seconds["D2"] > 0
    evidence = [details[pid]["evidence"] for pid in ("D1", "D2", "D4", "D5")]
    assert all(a != b for i, a in enumerate(evidence) for b in evidence[i + 1 :])
    assert details["D2"]["evidence"]["time shared with"] == "D1, D4, D5"
    assert details["D4"]["details"] != details["D1"]["details"]


def test_junit_messages_are_violations_and_markdown_rows_show_their_time(
    checked: tuple[str, Path],
) -> None:
    where = checked[1]
    (suite,) = ET.fromstring((where / "v.xml").read_bytes()).iter("testsuite")
    for case in suite.iter("testcase"):
        pid = (case.get("name") or "").split()[0]
        failure = case.find("failure")
        if failure is None:
            continue
        message = failure.get("message") or ""
        assert STATISTICS_FIRST.get(pid, "\0") not in message, (pid, message)
        assert "usual remedy: " in (failure.text or ""), pid
    page = (where / "v.md").read_text()
    assert page.index("### Likely causes") < page.index("| | ID | property |")
    d2 = next(line for line in page.splitlines() if line.startswith("| ✅ | D2 |"))
    assert "| 0.00 |" not in d2
    assert "time shared with D1, D4, D5" in d2
    html = (where / "v.html").read_text()
    assert html.index('id="failure-D1"') < html.index('id="failure-M1"')
