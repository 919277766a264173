"""The check report: outcomes, evidence, the JSON file, exit status, bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lance_offsets.conformance._check import report_json
from lance_offsets.conformance._results import PropertyResult, evidence_text

MEMORY = "lance_offsets.conformance.reference:memory"
#: A correct store whose I/O happens in C (sqlite3): the Python interposer sees none of it.
C_IO_STORE = "zoo.powerloss_zoo:sqlite_extra"


def _check(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lance_offsets", "check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=cwd,  # not the checkout: `-m` would import the source folder over the install
    )


def test_json_carries_outcome_and_evidence_per_property() -> None:
    results = [
        PropertyResult("D1", "passed", 1.5, "", {"crash points killed": 40, "random kills": 6}),
        PropertyResult("F2", "unverified", 0.2, "the interposer saw no file operations"),
        PropertyResult("S1", "not-applicable", 0.0, "store does not claim named"),
    ]
    document = report_json("x:y", results, 2.0, seed=7, profile="quick")
    assert document["seed"] == 7
    assert document["profile"] == "quick"
    assert document["properties"] == {"D1": "passed", "F2": "unverified", "S1": "not-applicable"}
    assert document["counts"] == {"failed": 0, "unverified": 1, "passed": 1, "not-applicable": 1}
    assert document["details"]["D1"]["evidence"] == {"crash points killed": 40, "random kills": 6}
    assert document["details"]["F2"]["outcome"] == "unverified"
    assert "no file operations" in document["details"]["F2"]["details"]
    json.dumps(document)  # serialisable as it is


def test_evidence_reads_as_one_line() -> None:
    text = evidence_text({"states explored": 12345, "exhaustive": "yes", "seconds": 0.12345})
    assert text == "states explored 12,345, exhaustive yes, seconds 0.123"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--only", ""], "names no property"),
        (["--only", " , "], "names no property"),
        (["--only", "C1,Z9"], "unknown property IDs ['Z9']"),
        (["--json", "/no/such/dir/x.json"], "no such directory /no/such/dir"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path: Path, args: list[str], said: str) -> None:
    done = _check(tmp_path, MEMORY, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("lance-offsets: error: check: "), done.stderr
    assert said in done.stderr
    assert "checking" not in done.stdout  # nothing ran
    assert list(tmp_path.iterdir()) == []  # and nothing was written


@pytest.mark.usefixtures("zoo_importable")
def test_unverified_passes_a_plain_check_and_fails_a_strict_one(tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    plain = _check(tmp_path, C_IO_STORE, "--only", "F2", "--seed", "3", "--json", str(out))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "F2 unverified:" in plain.stdout
    assert "0 failed, 1 unverified" in plain.stdout
    assert "replay with --seed 3" in plain.stdout
    document = json.loads(out.read_text())
    assert document["properties"] == {"F2": "unverified"}
    assert document["details"]["F2"]["details"]  # the reason is in the report
    strict = _check(tmp_path, C_IO_STORE, "--only", "F2", "--seed", "3", "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "they fail it (--strict)" in strict.stdout
