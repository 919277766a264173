"""The pytest door of the conformance suite: its options, and what it refuses (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS

MEMORY = "lance_offsets.conformance.reference:memory"
#: Claims durability, keeps offsets in memory: no tracer sees a save, so F2 is unverified.
UNSEEN = "zoo.powerloss_zoo:in_memory_claiming_durable"


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
    return subprocess.run(
        [*command, "--rootdir", str(cwd), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=cwd,
        env=env,
    )


def _suite(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _pytest(cwd, "--pyargs", "lance_offsets.conformance.suite", *args)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--conformance-only", "C1,C9"], "--conformance-only: unknown property IDs ['C9']"),
        (["--conformance-only", " , "], "--conformance-only: ' , ' names no property"),
        (["--conformance-profile", "fast"], "--conformance-profile 'fast' is unknown"),
        (["--store", "no_such_module:factory"], "--store: "),
    ],
)
def test_an_option_that_would_select_nothing_is_a_usage_error(
    tmp_path: Path, args: list[str], said: str
) -> None:
    done = _suite(tmp_path, *args)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert said in done.stderr, done.stderr
    assert "passed" not in done.stdout


def test_only_without_the_suite_collected_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    done = _pytest(tmp_path, "test_other.py", "--conformance-only", "C1")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "the conformance suite is not among the collected tests" in done.stderr


def test_only_selects_and_the_summary_replays(tmp_path: Path) -> None:
    done = _suite(
        tmp_path,
        "--store",
        MEMORY,
        "--conformance-only",
        "C2,P1",
        "--conformance-profile",
        "smoke",
        "--conformance-seed",
        "12",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped, 22 deselected" in done.stdout
    assert "P1 not applicable: store does not claim persistent" in done.stdout
    assert (
        f"replay: pytest --pyargs lance_offsets.conformance.suite --store {MEMORY} "
        "--conformance-profile smoke --conformance-seed 12 --conformance-only C2,P1"
    ) in done.stdout
    assert (
        f"same run: lance-offsets check {MEMORY} --profile smoke --seed 12 --only C2,P1"
    ) in done.stdout


def test_an_unverified_property_is_a_skip_or_under_strict_a_failure(tmp_path: Path) -> None:
    plain = _suite(
        tmp_path, "--store", UNSEEN, "--conformance-only", "F2", "--conformance-seed", "1"
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "SKIPPED" in plain.stdout
    assert "F2 unverified:" in plain.stdout
    strict = _suite(
        tmp_path,
        "--store",
        UNSEEN,
        "--conformance-only",
        "F2",
        "--conformance-seed",
        "1",
        "--conformance-strict",
    )
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "1 failed, 23 deselected" in strict.stdout
    assert "--conformance-strict: unverified fails" in strict.stdout


def test_a_store_authors_own_test_module_runs_every_property(tmp_path: Path) -> None:
    # The one line a store author writes in their own tests folder.
    (tmp_path / "test_offsets.py").write_text(
        "from lance_offsets.conformance.suite import test_property  # noqa: F401\n"
    )
    done = _pytest(tmp_path, "test_offsets.py", "--store", MEMORY, "--conformance-profile", "smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 passed, 12 skipped" in done.stdout, done.stdout
    assert "24 of 24 properties" in done.stdout


def test_the_tear_size_is_the_checks_own(tmp_path: Path) -> None:
    refused = _suite(tmp_path, "--conformance-tear-size", "3")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--conformance-tear-size: tear size '3' is not one of" in refused.stderr
    done = _suite(
        tmp_path, "--conformance-only", "D3", "--conformance-tear-size", "1", "--conformance-seed=2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--conformance-tear-size 1" in done.stdout
    assert "lance-offsets check lance_offsets.conformance.reference:lockfile" in done.stdout
    assert "--tear-size 1" in done.stdout
