"""Verdicts rest on what reached the kernel, and the shim never needs the GIL (issue 19, 1 and 2).

Class 1: a store that binds its file-system functions at import (``zoo.bound_zoo``) escapes the
Python interposer. The syscall shim records the same counting run beside it; the views differ,
the shim's judges, and the evidence says which view judged and why. A correct such store
passes; without its directory fsync it fails D3 with a counterexample made of its own calls.

Class 2: a C library whose open and save run on its own I/O thread, joined while the caller holds
the GIL (``zoo.cthread_zoo``), is numbered, faulted and stopped by the shim in C: real verdicts,
passed for the correct library and failed for the broken ones (the commit adding the zoo shows
the old shim hanging on it, every property "failed" with no violation).

Every test prints its seed; replay with ``--stress-seed N``.
"""

from __future__ import annotations

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.seam._shim import build, unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.skipif(build() is None, reason=f"no syscall shim here: {unavailable()}"),
]


def test_a_correct_store_bound_at_import_passes_on_the_shims_view(
    stress_options: StressOptions,
) -> None:
    results = run_properties("zoo.bound_zoo:all_bound", ["D1", "D3", "F2"], stress_options)
    for result in results:
        print(result.id, result.outcome, result.evidence, result.details, sep="\n")
    assert [r.outcome for r in results] == ["passed"] * 3, [r.details for r in results]
    d1, d3, f2 = results
    tracing = str(d1.evidence["tracing"])
    # The interposer saw the opens and the rename only through audit hooks, and none of the
    # writes and fsyncs: the shim's view of the same run judged.
    assert tracing.startswith("syscall shim (the Python interposer missed 1 write call, 2 fsync")
    assert "only through audit hooks" in tracing
    assert d3.evidence["tracer"] == "syscall shim"
    assert int(f2.evidence["sync faults"]) > 0  # the fsyncs it binds were faulted too


def test_without_its_directory_fsync_it_fails_d3_on_its_own_calls(
    stress_options: StressOptions,
) -> None:
    (result,) = run_properties("zoo.bound_zoo:no_dir_fsync", ["D3"], stress_options)
    print(result.details)
    assert result.outcome == "failed"
    assert result.evidence["tracer"] == "syscall shim"
    first = result.details.splitlines()[0]
    assert "lost (1, 2): found absent, expected 5 (acknowledged)" in first
    # The counterexample is the store's own rename (rename(2), as the shim saw it; the
    # interposer would say "replace"), undone; no data it fsynced is said to be dropped.
    assert ": UNDONE" in result.details
    undone = [line for line in result.details.splitlines() if line.endswith(": UNDONE")]
    assert undone[0].lstrip().split()[1] == "rename", undone
    assert "unsynced data" not in result.details


def test_a_store_that_binds_only_fsync_gets_its_crash_points_from_the_shim(
    stress_options: StressOptions,
) -> None:
    # No audit event betrays a bound fsync: only the comparison of the two views shows it.
    (result,) = run_properties("zoo.bound_zoo:fsync_bound_no_dir_fsync", ["D1"], stress_options)
    print(result.evidence)
    assert result.outcome == "passed", result.details
    assert result.evidence["tracing"] == "syscall shim (the Python interposer missed 1 fsync call)"


@pytest.mark.parametrize(
    ("store", "properties", "expected"),
    [
        ("correct", ["D1", "D3", "F2"], ["passed", "passed", "passed"]),
        ("in_place", ["D1"], ["failed"]),
        ("ignores_fsync_errors", ["F2"], ["failed"]),
    ],
)
def test_a_library_joining_its_io_thread_under_the_gil_gets_real_verdicts(
    stress_options: StressOptions, store: str, properties: list[str], expected: list[str]
) -> None:
    results = run_properties(f"zoo.cthread_zoo:{store}", properties, stress_options)
    for result in results:
        print(result.id, result.outcome, result.evidence, result.details, sep="\n")
    assert [r.outcome for r in results] == expected, [r.details for r in results]
    for result in results:
        assert "hung" not in result.details
        assert "sent nothing" not in result.details
    if store == "correct":
        assert int(results[0].evidence["crash points killed"]) > 0
        assert int(results[2].evidence["sync faults"]) > 0
    if store == "in_place":
        assert "killed " in results[0].details  # at a crash point inside the I/O thread's save
    if store == "ignores_fsync_errors":
        assert "save() returned" in results[0].details
