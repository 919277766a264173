"""One verdict through every door: ``lance-offsets check`` and the pytest suite agree (issue 18).

For stores with known defects and a correct one, the same seed and profile go through
``lance-offsets check --json`` and through ``pytest --pyargs lance_offsets.conformance.suite``
(with pytest-xdist spreading the properties over two workers, and pytest's own ``--junitxml``),
and every property must get the same outcome: failed is a failed test, unverified and
not-applicable are skips that say which, passed is passed, one JUnit case per property.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lance_offsets.conformance._catalog import property_ids

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = TESTS.parent / "examples"

#: Store -> the properties it must fail (the zoo's own documentation says why).
STORES = {
    # Rewrites its offset file in place: torn by a kill, lost by a power cut, read half-written.
    "zoo.stress_crash_zoo:in_place": {"D1", "D3", "D4", "M1", "M2", "F2"},
    # A per-process threading.Lock: right within one process, lost updates across two.
    "zoo.stress_concurrency_zoo:thread_locked": {"M1"},
    # Correct, and laid out unlike ours (one JSON document for every key).
    "jsonfile_store:factory": set(),
}


def _run(command: list[str], where: Path) -> subprocess.CompletedProcess[str]:
    """Run one door's command with the zoo and the examples importable; 0 or 1 (verdicts) only."""
    path = os.pathsep.join([str(TESTS), str(EXAMPLES), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=where,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


def _check(spec: str, seed: int, where: Path, *extra: str) -> dict[str, str]:
    report = where / f"check-{spec.replace(':', '-')}.json"
    command = [sys.executable, "-m", "lance_offsets", "check", spec, "--profile", "smoke"]
    command += ["--seed", str(seed), "--json", str(report), *extra]
    _run(command, where)
    outcomes: dict[str, str] = json.loads(report.read_text())["properties"]
    return outcomes


def _pytest(spec: str, seed: int, where: Path, *extra: str) -> tuple[dict[str, str], str]:
    junit = where / f"pytest-{spec.replace(':', '-')}.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2"]
    command += ["--pyargs", "lance_offsets.conformance.suite", "--store", spec]
    command += ["--conformance-profile", "smoke", "--conformance-seed", str(seed)]
    command += [f"--junitxml={junit}", "--rootdir", str(where), *extra]
    done = _run(command, where)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        pid = case.get("name", "").removeprefix("test_property[").removesuffix("]")
        failure, skipped = case.find("failure"), case.find("skipped")
        if failure is not None:
            outcomes[pid] = "failed"
        elif skipped is not None:
            message = skipped.get("message", "")
            outcomes[pid] = "unverified" if f"{pid} unverified:" in message else "not-applicable"
            assert "unverified" in message or "not applicable" in message, message
        else:
            outcomes[pid] = "passed"
    return outcomes, done.stdout


# Long (three stores, every property through both doors: 90 s of worker time): run by CI's pass of
# the tests marked stress; tests/test_suite_door.py covers the pytest door in the default run.
@pytest.mark.stress
@pytest.mark.parametrize("spec", sorted(STORES))
def test_check_and_the_pytest_suite_give_one_verdict(spec: str, tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}: lance-offsets check {spec} --profile smoke --seed {seed}")
    by_check = _check(spec, seed, tmp_path)
    by_pytest, summary = _pytest(spec, seed, tmp_path)
    assert list(by_pytest) != [], summary
    assert sorted(by_pytest) == sorted(property_ids()), "one test case per property"
    assert by_pytest == by_check, summary
    assert {pid for pid, o in by_check.items() if o == "failed"} >= STORES[spec]
    if not STORES[spec]:
        assert "failed" not in by_check.values()
    assert f"--conformance-seed {seed}" in summary  # the summary says how to replay it
