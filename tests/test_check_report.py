"""The check report: outcomes, evidence, the JSON file, exit status, bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lance_offsets.conformance._check import report_json
from lance_offsets.conformance._report import Verdict, report_junit, report_markdown
from lance_offsets.conformance._results import PropertyResult, evidence_text

MEMORY = "lance_offsets.conformance.reference:memory"
#: A store whose saves neither tracing backend can see (it keeps offsets in memory, yet claims
#: durability): F2 cannot inject a fault. (SQLite, whose I/O is in C, is now traced by the shim.)
C_IO_STORE = "zoo.powerloss_zoo:in_memory_claiming_durable"


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
    assert document["schema"] == "lance-offsets-check/1"
    assert document["ended"] >= document["started"]
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
    assert "they do not fail it" in plain.stdout


def _verdict(strict: bool = False) -> Verdict:
    results = [
        PropertyResult("C1", "passed", 0.5, "", {"examples": 20, "discarded": 0}),
        PropertyResult(
            "C5", "failed", 1.25, "ContractViolation: [C5 key isolation] a|b\n```\nsteps"
        ),
        PropertyResult("F2", "unverified", 0.2, "the interposer saw no file operations"),
        PropertyResult("S1", "not-applicable", 0.0, "store does not claim named"),
    ]
    return Verdict("pkg.mod:factory", results, 2.0, 9, "quick", strict=strict)


def test_markdown_has_a_row_per_property_and_each_counterexample() -> None:
    page = report_markdown(_verdict())
    assert "**1 passed, 1 failed, 1 unverified, 1 not applicable**" in page
    assert "lance-offsets check pkg.mod:factory --profile quick --seed 9" in page
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4  # header, then one per property
    assert "| C1 | round trip | passed | 0.50 | examples 20, discarded 0 |" in page
    assert "a\\|b" not in page.split("<details>")[0]  # the failure is not in the table
    # The counterexample is fenced by more backticks than it holds, so it cannot break out.
    assert "````text\nContractViolation: [C5 key isolation] a|b\n```\nsteps\n````" in page
    assert "- **F2** unverified: the interposer saw no file operations" in page


@pytest.mark.parametrize("strict", [False, True])
def test_junit_has_a_case_per_property_failures_carry_the_counterexample(strict: bool) -> None:
    root = ET.fromstring(report_junit(_verdict(strict)))
    (suite,) = root.iter("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [
        "C1 round trip",
        "C5 key isolation",
        "F2 I/O errors leave the old value",
        "S1 unsafe consumer names rejected",
    ]
    failure = cases["C5 key isolation"].find("failure")
    assert failure is not None
    assert failure.text is not None
    assert "steps" in failure.text
    assert "--seed 9" in failure.text
    f2 = cases["F2 I/O errors leave the old value"]
    assert (f2.find("failure") is not None) is strict
    assert (f2.find("skipped") is not None) is not strict
    assert suite.get("failures") == ("2" if strict else "1")
    assert suite.get("skipped") == ("1" if strict else "2")
    assert suite.get("tests") == "4"


def test_check_writes_all_three_reports_and_progress(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    done = _check(
        tmp_path,
        MEMORY,
        "--only",
        "C1,P1",
        "--profile",
        "smoke",
        "--seed",
        "5",
        "--json",
        "v.json",
        "--markdown",
        str(summary),
        "--junit",
        "v.xml",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("[")
    ]
    assert done.stderr.splitlines()[-1].startswith("[2/2] P1 not-applicable")
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["schema"] == "lance-offsets-check/1"
    assert document["seed"] == 5
    # The replay asks for exactly this run again, --only included (issue 18).
    assert document["replay"].endswith("--only C1,P1 --profile smoke --seed 5")
    assert document["only"] == ["C1", "P1"]
    assert document["interrupted"] is None
    assert document["not_run"] == []
    # Nothing failed: no cause to give, none invented.
    assert document["root_causes"] == []
    assert [d["diagnosis"] for d in document["details"].values()] == [None, None]
    assert "Likely causes" not in done.stdout
    assert summary.read_text().startswith("# earlier step\n## lance-offsets check: ")
    root = ET.fromstring((tmp_path / "v.xml").read_bytes())
    assert [c.get("name") for c in root.iter("testcase")] == [
        "C1 round trip",
        "P1 reopen sees every commit",
    ]


@pytest.mark.usefixtures("zoo_importable")
def test_a_real_failure_reads_in_markdown_and_junit(tmp_path: Path) -> None:
    # A store that answers 0 for absent keys (zoo.defects:ZeroForAbsent) fails C2 for real; both
    # CI files must name the property and carry its shrunk steps.
    from zoo.defects import has_readable_steps  # importable through the fixture

    done = _check(
        tmp_path,
        "zoo.defects:ZeroForAbsent",
        *("--only", "C2", "--seed", "1", "--markdown", "v.md", "--junit", "v.xml"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    page = (tmp_path / "v.md").read_text()
    assert "| ❌ | C2 | absent keys load as None | failed |" in page
    # The folded block's summary line leads with the violation itself.
    assert (
        "<summary><b>C2 absent keys load as None: failed</b>: ContractViolation: "
        "[C2 absent keys load as None] "
    ) in page
    assert "[C2 absent keys load as None]" in page
    assert has_readable_steps(page)
    (suite,) = ET.fromstring((tmp_path / "v.xml").read_bytes()).iter("testsuite")
    assert suite.get("failures") == "1"
    (case,) = suite.iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    assert failure.text is not None
    assert case.get("name") == "C2 absent keys load as None"
    assert "[C2 absent keys load as None]" in (failure.get("message") or "")
    assert has_readable_steps(failure.text)


def test_an_interrupted_run_marks_what_did_not_run_in_every_report() -> None:
    from lance_offsets.conformance._html import report_html

    results = [
        PropertyResult("C1", "passed", 0.5, "", {"examples": 20}),
        PropertyResult("M1", "failed", 2.0, "load of key (1, 2) raised ValueError"),
    ]
    verdict = Verdict(
        "pkg.mod:factory",
        results,
        3.0,
        9,
        "quick",
        only=("C1", "M1", "D3", "F2"),
        interrupted="SIGTERM",
        not_run=("D3", "F2"),
    )
    assert verdict.summary().endswith(", 2 not run (interrupted by SIGTERM)")
    markdown = report_markdown(verdict)
    assert "**Interrupted by SIGTERM after 2 properties: these did not run" in markdown
    assert "| D3 | acknowledged survives power loss | not run |" in markdown
    root = ET.fromstring(report_junit(verdict))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"
    assert suite.get("skipped") == "2"
    skipped = {}
    for case in root.iter("testcase"):
        mark = case.find("skipped")
        if mark is not None:
            skipped[case.get("name", "")] = mark.get("message", "")
    assert sorted(skipped) == [
        "D3 acknowledged survives power loss",
        "F2 I/O errors leave the old value",
    ]
    assert all("interrupted by SIGTERM" in message for message in skipped.values())
    page = report_html(verdict)
    assert 'class="stopped"' in page
    assert page.count('<tr class="not-run"') == 2


def test_the_tear_size_reaches_d3_and_the_replay(tmp_path: Path) -> None:
    done = _check(tmp_path, "--only", "D3", "--tear-size", "4k", "--seed", "3", "--json", "v.json")
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["tear_size"] == 4096
    assert document["details"]["D3"]["evidence"]["tear size"] == 4096
    assert document["replay"].endswith("--only D3 --profile quick --seed 3 --tear-size 4096")
    refused = _check(tmp_path, "--only", "D3", "--tear-size", "100")
    assert refused.returncode == 2
    assert "tear size '100' is not one of 512, 4096 (4k) or 1 (byte-level)" in refused.stderr
