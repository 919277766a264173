"""The syscall backend end to end: crash points and I/O faults inside SQLite's C code.

A correct SQLite store passes D1, D2, D4, D5 and F2 with crash points and faults counted; the
zoo's ``journal_off`` is torn by a kill between two page writes (D1, the call named) and
``swallows_io_errors`` returns from a failed commit (F2). With a rollback journal, the correct
``delete_extra`` is judged on damaged databases too, and ``delete_full`` loses a commit to a power
cut (D3). A pure-Python zoo store fails the same
way through either backend. Every test prints its seed; replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.crash._campaign import (
    SAVE_OVER,
    damages,
    property_result,
    run_campaign,
)
from lance_offsets.stress.powerloss._campaign import workload
from lance_offsets.stress.powerloss._recording import attempt, record_strace
from lance_offsets.stress.seam._shim import build, unavailable
from lance_offsets.stress.seam._trace import TraceOp
from test_powerloss_strace import strace_works

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
        # The shim judges, saying what the interposer missed of the same run (SQLite's I/O).
        tracing = str(result.evidence["tracing"])
        assert tracing.startswith("syscall shim (the Python interposer missed"), tracing
        assert "fdatasync call" in tracing
    f2 = results[4]
    assert int(f2.evidence["faulted saves"]) > 0
    assert int(f2.evidence["sync faults"]) > 0  # the WAL's fdatasync was made to fail
    assert f2.evidence["tracing"] == "syscall shim"


def test_a_rollback_journal_store_is_judged_loud_on_damage_and_passes(
    stress_options: StressOptions,
) -> None:
    # In DELETE mode a save writes the database file itself, so the damage points damage it after
    # the kill. SQLite refuses a damaged database at open: one reply, no handle to close. Every
    # damaged crash must be judged (loud is right); none may be taken for a store blocked on a
    # lock (that wait cost 12 s per damage and judged nothing).
    campaign = run_campaign(f"{ZOO}:delete_extra", stress_options, only=(SAVE_OVER,))
    print(stress_options.seed, campaign.backend, campaign.damaged, campaign.errors)
    assert campaign.violations == [], [v.text for v in campaign.violations]
    assert campaign.errors == []
    assert campaign.backend == "syscall"
    assert campaign.damaged == len(damages())


def test_a_rollback_journal_whose_unlink_is_not_synced_loses_a_commit_to_a_power_cut(
    stress_options: StressOptions,
) -> None:
    passed, failed = (
        run_properties(f"{ZOO}:delete_extra", ["D3"], stress_options),
        run_properties(f"{ZOO}:delete_full", ["D3"], stress_options),
    )
    print(stress_options.seed, passed[0].details, failed[0].details, sep="\n")
    assert passed[0].outcome == "passed", passed[0].details
    assert failed[0].outcome == "failed"
    assert "unlink offsets.sqlite-journal: UNDONE" in failed[0].details
    assert "LOST OR REWOUND AN ACKNOWLEDGED OFFSET" in failed[0].details


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


def _seen(trace: list[TraceOp], root: str, *, until: str = "") -> list[tuple[str, str, str]]:
    """Kinds and paths under ``root`` (and rename targets), up to the mark ``until``."""
    seen: list[tuple[str, str, str]] = []
    for op in trace:
        if op.kind == "mark" and op.note == until:
            break
        if op.kind != "mark" or op.note not in ("trace start", "trace end"):
            target = _pidless(os.path.relpath(op.target, root)) if op.target else ""
            seen.append((op.kind, _pidless(os.path.relpath(op.path, root)), target))
    return seen


def _pidless(name: str) -> str:
    """``name`` without the process id a store's first open puts in its temporary file."""
    return re.sub(r"\.\d+\.tmp", ".PID.tmp", name)


#: Files whose first bytes SQLite draws at random on each run (the rollback journal's nonce, the
#: WAL's salts): two runs write the same lengths there, never the same bytes.
_RANDOM_HEADERS = ("-journal", "-wal")


@pytest.mark.skipif(not strace_works(), reason="strace is not installed or may not trace")
@pytest.mark.parametrize("spec", [f"{ZOO}:wal_full", "zoo.powerloss_zoo:sqlite_extra"])
def test_the_shim_and_strace_feed_the_syscall_model_the_same_trace(
    spec: str, tmp_path: Path
) -> None:
    # One model (seam/_syscalls.py), two feeders: the shim's records (contents read from the
    # files) and strace's lines (contents rebuilt from the bytes written) give the same trace.
    steps = workload(StressOptions(seed=1))
    (tmp_path / "strace").mkdir()
    shim = attempt(spec, steps, str(tmp_path / "shim"), "syscall")
    assert not isinstance(shim, str), shim
    shim_root, _, recorded = shim
    strace_root = os.path.realpath(tmp_path / "strace" / "store")
    os.mkdir(strace_root)
    traced = record_strace(spec, strace_root, steps, str(tmp_path / "strace"))
    assert "trace" in traced, traced
    a: list[TraceOp] = recorded["trace"]
    b: list[TraceOp] = traced["trace"]
    b = b[: next(i for i, op in enumerate(b) if op.note == "trace end")]  # then: the snapshot
    b = [op for op in b if op.note != "trace start"]
    print(len(a), "records through the shim,", len(b), "through strace")
    assert _seen(a, shim_root) == _seen(b, strace_root)
    assert any(op.kind in {"fdatasync", "fsync"} for op in a)
    for x, y in zip(a, b, strict=True):
        if x.content is None or x.path.endswith(_RANDOM_HEADERS):
            assert (x.content is None) == (y.content is None)
            assert len(x.content or b"") == len(y.content or b""), (x, y)
        else:
            assert x.content == y.content, (str(x), str(y))


@pytest.mark.skipif(not strace_works(), reason="strace is not installed or may not trace")
def test_the_shim_and_strace_model_lmdbs_o_dsync_meta_page_alike(tmp_path: Path) -> None:
    # LMDB writes its meta page through an O_DSYNC descriptor: both feeders model that write as
    # durable when it returns (a write, then an fdatasync). strace also sees an open and close
    # the shim cannot (made inside glibc), so the durable operations are compared.
    pytest.importorskip("lmdb", reason="py-lmdb is not installed (pip install lmdb)")
    spec, steps = "zoo.lmdb_zoo:correct", workload(StressOptions(seed=1))
    (tmp_path / "strace").mkdir()
    shim = attempt(spec, steps, str(tmp_path / "shim"), "syscall")
    assert not isinstance(shim, str), shim
    strace_root = os.path.realpath(tmp_path / "strace" / "store")
    os.mkdir(strace_root)
    traced = record_strace(spec, strace_root, steps, str(tmp_path / "strace"))
    assert "trace" in traced, traced

    def durable(trace: list[TraceOp], root: str) -> list[tuple[str, str, bytes | None]]:
        kinds = ("write", "fdatasync", "fsync", "rename", "unlink", "truncate")
        end = next((i for i, op in enumerate(trace) if op.note == "trace end"), len(trace))
        return [
            (op.kind, os.path.relpath(op.path, root), op.content)
            for op in trace[:end]
            if op.kind in kinds
        ]

    a, b = durable(shim[2]["trace"], shim[0]), durable(traced["trace"], strace_root)
    print([x[:2] for x in a])
    assert a == b
    assert ("fdatasync", "data.mdb") in [x[:2] for x in a]
    assert not any("lock.mdb" in x[1] for x in a)  # shared memory: left out by both
