"""The syscall backend end to end: crash points and I/O faults inside SQLite's C code.

A correct SQLite store passes D1, D2, D4, D5 and F2 with crash points and faults counted; the
zoo's ``journal_off`` is torn by a kill between two page writes (D1, the call named) and
``swallows_io_errors`` returns from a failed commit (F2). A pure-Python zoo store fails the same
way through either backend. Every test prints its seed; replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.crash._campaign import SAVE_OVER, property_result, run_campaign
from lance_offsets.stress.seam._shim import build, unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.skipif(build() is None, reason=f"no syscall backend here: {unavailable()}"),
]

ZOO = "zoo.sqlite_zoo"


def test_a_correct_sqlite_store_passes_with_crash_points_from_the_shim(
    stress_options: StressOptions,
) -> None:
    results = run_properties(f"{ZOO}:wal_full", ["D1", "D2", "D4", "D5", "F2"], stress_options)
    for result in results:
        print(result.id, result.outcome, result.evidence, result.details)
    assert [r.outcome for r in results] == ["passed"] * 5, [r.details for r in results]
    for result in results[:4]:
        assert int(result.evidence["crash points killed"]) > 0
        assert result.evidence["tracing"] == "syscall shim"
    f2 = results[4]
    assert int(f2.evidence["faulted saves"]) > 0
    assert int(f2.evidence["sync faults"]) > 0  # the WAL's fdatasync was made to fail
    assert f2.evidence["tracing"] == "syscall shim"


def test_a_kill_inside_a_commit_without_journal_tears_the_database(
    stress_options: StressOptions,
) -> None:
    campaign = run_campaign(
        f"{ZOO}:journal_off", stress_options, only=(SAVE_OVER,), random_kills=0, until="D1"
    )
    result = property_result("D1", campaign)
    print(stress_options.seed, result.details)
    assert result.outcome == "failed"
    assert "killed" in result.details
    assert "pwrite64 offsets.sqlite (4096 bytes at" in result.details
    assert "malformed" in result.details


def test_a_store_that_swallows_sqlite_errors_fails_f2(stress_options: StressOptions) -> None:
    (result,) = run_properties(f"{ZOO}:swallows_io_errors", ["F2"], stress_options)
    print(result.details)
    assert result.outcome == "failed"
    assert "the save returned" in result.details
    assert "pwrite64" in result.details or "fdatasync" in result.details


@pytest.mark.parametrize("backend", ["python", "syscall"])
def test_both_backends_catch_a_pure_python_store_writing_in_place(
    stress_options: StressOptions, backend: str
) -> None:
    options = dataclasses.replace(stress_options, backend=backend)
    campaign = run_campaign(
        "zoo.stress_crash_zoo:in_place", options, only=(SAVE_OVER,), random_kills=0, until="D1"
    )
    result = property_result("D1", campaign)
    print(backend, options.seed, result.details)
    assert campaign.backend == backend
    assert result.outcome == "failed"
    assert "killed " in result.details  # a crash point, not a random kill


def test_both_backends_see_the_same_save_of_a_pure_python_store(
    stress_options: StressOptions,
) -> None:
    # The same operations, numbered alike: the interposer's os-level calls are the shim's
    # libc calls (the shim adds no call of its own and misses none the store makes).
    seen = {}
    for backend in ("python", "syscall"):
        options = dataclasses.replace(stress_options, backend=backend)
        campaign = run_campaign(
            "zoo.stress_crash_zoo:careful", options, only=(SAVE_OVER,), random_kills=0
        )
        assert campaign.violations == [], campaign
        assert campaign.errors == [], campaign
        seen[backend] = campaign.points
    print(seen)
    assert seen["python"] == seen["syscall"] > 0


def test_a_store_neither_backend_sees_is_unverified_for_f2(stress_options: StressOptions) -> None:
    (result,) = run_properties(
        "zoo.powerloss_zoo:in_memory_claiming_durable", ["F2"], stress_options
    )
    print(result.details)
    assert result.outcome == "unverified"
    assert "the syscall shim saw no file-system call" in result.details
