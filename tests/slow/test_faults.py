"""I/O faults (F2): the reference stores pass; stores that lie, destroy or hang on errors fail.

Every test prints its seed (``stress seed: N``); replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._faults import check_f2
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties

pytestmark = pytest.mark.slow

ZOO = "zoo.stress_crash_zoo"
FAULT_ZOO = "zoo.fault_zoo"


def _count(result: PropertyResult, name: str) -> int:
    """An evidence count, checked to be one."""
    value = result.evidence[name]
    assert isinstance(value, int), result.evidence
    return value


EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples")


def test_store_under_test_keeps_its_old_value_on_io_errors(
    store_spec: str, stress_options: StressOptions
) -> None:
    (result,) = run_properties(store_spec, ["F2"], stress_options)
    print(result.details)
    if store_spec == DEFAULT_SPEC:
        assert result.outcome == "passed", result.details
        assert "faulted saves" in result.details
        assert _count(result, "faulted saves") == int(result.details.split()[2])
        assert _count(result, "sync faults") > 0  # the file and directory fsyncs were hit
    else:  # --store SPEC: no persistence claimed, or no file operation the interposer can fail
        assert result.outcome in ("passed", "unverified", "not-applicable"), result.details


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("factory", ["careful", "windows_retry"])
def test_correct_zoo_stores_pass(stress_options: StressOptions, factory: str) -> None:
    result = check_f2(f"{ZOO}:{factory}", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    # every operation (lock, temp open, write, fsync, close, replace...) x 3 errors x (once, for
    # good), plus 3 sharing-violation runs: 63 where the directory is fsynced, fewer on Windows
    found = re.search(r"seed (\d+): (\d+) faulted saves", result.details)
    assert found, result.details
    assert int(found[1]) == stress_options.seed
    assert int(found[2]) >= 5 * 3 * 2 + 3


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "finding"),
    [
        ("swallows_errors", "the save returned\na fresh handle then found"),
        ("truncates_first", "a fresh handle then found raised ValueError: corrupt offset file"),
        ("retries_forever", "the faulted save did not return within 1 s after the fault"),
    ],
)
def test_zoo_store_fails_f2(stress_options: StressOptions, factory: str, finding: str) -> None:
    result = check_f2(f"{ZOO}:{factory}", stress_options, bound=1.0)
    print(result.details)
    assert result.outcome == "failed"
    assert finding in result.details
    assert f"replay with --stress-seed {stress_options.seed}" in result.details
    assert "fault " in result.details


@pytest.mark.parametrize(
    "spec",
    [
        "lance_offsets.conformance.reference:lockfile",
        "lance_offsets.conformance.reference:hooked_lockfile",
        "jsonfile_store:factory",
    ],
)
def test_reference_stores_raise_on_every_failed_sync(
    stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    """The control for the sync rule: stores that raise on a failed fsync pass, syncs included."""
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.setenv("PYTHONPATH", EXAMPLES)
    result = check_f2(spec, stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    assert _count(result, "sync faults") >= 2 * 3 * 2  # file and directory, 3 errors, 2 plans
    assert _count(result, "hangs") == 0
    assert _count(result, "plans not run") == 0


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_that_writes_again_after_a_failed_fsync_passes(
    stress_options: StressOptions,
) -> None:
    """No false alarm: the rewrite makes the pages dirty again, so its fsync means something."""
    result = check_f2(f"{FAULT_ZOO}:rewrites_after_failed_fsync", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    assert _count(result, "sync faults") >= 2 * 3 * 2


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "synced"),
    [
        ("swallows_file_fsync", "fsync of /"),
        ("best_effort_dir_sync", "fsync of directory /"),
        ("ignored_fsync_result", "fsync of /"),
    ],
)
def test_a_save_that_returns_after_a_failed_sync_fails_f2(
    stress_options: StressOptions, factory: str, synced: str
) -> None:
    """A fresh handle reads the new value from the page cache: only the sync rule sees these."""
    result = check_f2(f"{FAULT_ZOO}:{factory}", stress_options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert synced in result.details
    assert "and save() returned: the offset is not durable (the error was swallowed)" in (
        result.details
    )
    assert "a fresh handle then found" not in result.details  # the old rule alone passed them
    assert _count(result, "sync faults") >= 1
    assert f"replay with --stress-seed {stress_options.seed}" in result.details


@pytest.mark.usefixtures("zoo_importable")
def test_a_retried_fsync_is_named_as_proving_nothing(stress_options: StressOptions) -> None:
    result = check_f2(f"{FAULT_ZOO}:ignored_fsync_result", stress_options)
    print(result.details)
    assert re.search(r"the later successful fsync \(op #\d+\) proves nothing", result.details)


@pytest.mark.usefixtures("zoo_importable")
def test_a_lock_leaked_on_the_error_path_is_reported_readably(
    stress_options: StressOptions,
) -> None:
    result = check_f2(f"{FAULT_ZOO}:leaks_lock_on_error", stress_options, bound=1.0)
    print(result.details)
    assert result.outcome == "failed", result.details
    details = result.details
    assert "sent nothing" not in details  # the worker's watchdog told us more than a timeout
    assert "fault ENOSPC at op >= 0" in details  # the plan
    assert "injected into: #0 open " in details  # the operation it hit
    assert "faulted save of" in details  # the values
    assert "later save of" in details
    assert "the later save did not return within 1 s after the fault: a lock leaked" in details
    assert "in locked: self.mutex.acquire()" in details  # where it is blocked
    assert "time-dependent: judged by a 1 s deadline" in details
    # the stuck worker is replaced and the run goes on, bounded: it says what it skipped
    assert _count(result, "hangs") == 2
    assert _count(result, "faulted saves") == 2
    found = re.search(r"stopped after 2 hangs: (\d+) fault plan\(s\) not run", details)
    assert found, details
    assert int(found[1]) == _count(result, "plans not run") > 0


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_whose_saves_cannot_be_traced_is_unverified(
    stress_options: StressOptions,
) -> None:
    """SQLite claims persistence, but its I/O happens in C: with only the Python interposer (as on
    a machine without the syscall backend), not a pass, not "not applicable"."""
    options = dataclasses.replace(stress_options, backend="python")
    (result,) = run_properties("zoo.powerloss_zoo:sqlite_extra", ["F2"], options)
    print(result.details)
    assert result.outcome == "unverified", result.details
    assert "the interposer saw no file operations" in result.details
    assert _count(result, "faulted saves") == 0
