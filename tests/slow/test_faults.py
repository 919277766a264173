"""I/O faults (F2): the reference stores pass; stores that lie, destroy or hang on errors fail.

Every test prints its seed (``stress seed: N``); replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from pathlib import Path

import pytest
from lance_offsets.conformance._diagnosis import diagnose
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.faults._campaign import check_f2
from lance_offsets.stress.faults._commit import Commit, Seen, demonstrated_commit, guessed_commit
from lance_offsets.stress.faults._judge import (
    allowed_after,
    injected,
    swallowed_syncs,
    sync_rule_applies,
)
from lance_offsets.stress.faults._plans import SAMPLED, action_plans, role, roles
from lance_offsets.stress.faults._powercut import EXPLORER
from lance_offsets.stress.seam._trace import TraceOp
from lance_offsets.stress.seam._tracer import FaultPlan

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
    ("factory", "finding", "cause"),
    [
        ("swallows_errors", "the save returned\na fresh handle then found", "error-swallowed"),
        (
            "truncates_first",
            "a fresh handle then found raised ValueError: corrupt offset file",
            "in-place-write",
        ),
        (
            "retries_forever",
            "the faulted save did not return within 1 s after the fault",
            "unbounded-wait",
        ),
    ],
)
def test_zoo_store_fails_f2(
    stress_options: StressOptions, factory: str, finding: str, cause: str
) -> None:
    result = check_f2(f"{ZOO}:{factory}", stress_options, bound=1.0)
    print(result.details)
    assert result.outcome == "failed"
    assert finding in result.details
    assert f"pytest --stress-seed {stress_options.seed}" in result.details
    assert "fault " in result.details
    # The first line is the violation (key, fault, what was wrong), statistics after it.
    first, second = result.details.splitlines()[:2]
    assert first.startswith("key (")
    assert ", fault " in first
    assert second.startswith(f"seed {stress_options.seed}: ")
    assert diagnose([result])["F2"].likely[0].cause.id == cause, result.artifacts


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
    assert f"pytest --stress-seed {stress_options.seed}" in result.details
    assert diagnose([result])["F2"].likely[0].cause.id == "fsync-error-ignored"


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
    assert diagnose([result])["F2"].likely[0].cause.id == "unbounded-wait"
    assert "a lock never released" in diagnose([result])["F2"].likely[0].cause.cause


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


# -- the sync rule on syscall-level traces (what SQLite does), judged without processes -------

_DIR = "/d"


def _op(index: int, kind: str, name: str = "", **fields: object) -> TraceOp:
    path = f"{_DIR}/{name}" if name else _DIR
    return TraceOp(index, kind, path, is_dir=not name, **fields)  # type: ignore[arg-type]


def _rollback_save(dir_sync_again: bool) -> list[TraceOp]:
    """SQLite's rollback-journal commit: the directory sync after creating the journal fails."""
    trace = [
        _op(0, "open", "db-journal", flags=os.O_CREAT | os.O_RDWR),
        _op(1, "write", "db-journal", content=b"j"),
        _op(2, "fdatasync", "db-journal", content=b"j"),
        _op(3, "open", flags=os.O_RDONLY),
        _op(4, "fdatasync", error="EIO"),  # ignored by SQLite: "many systems do not support"
        _op(5, "close"),
        _op(6, "write", "db", content=b"new"),
        _op(7, "fdatasync", "db", content=b"new"),
        _op(8, "unlink", "db-journal"),
    ]
    if dir_sync_again:  # synchronous=EXTRA
        trace += [_op(9, "open", flags=os.O_RDONLY), _op(10, "fdatasync"), _op(11, "close")]
    return trace


@pytest.mark.parametrize("dir_sync_again", [False, True])
def test_a_failed_directory_sync_after_creating_a_journal_is_not_a_lost_offset(
    dir_sync_again: bool,
) -> None:
    trace = _rollback_save(dir_sync_again)
    assert swallowed_syncs(trace, injected(trace, FaultPlan(at=4))) == []


def test_a_failed_sync_of_the_directory_renamed_into_still_counts() -> None:
    trace = [
        _op(0, "open", "k.tmp", flags=os.O_CREAT | os.O_WRONLY),
        _op(1, "write", "k.tmp", content=b"5\n"),
        _op(2, "fsync", "k.tmp", content=b"5\n"),
        _op(3, "close", "k.tmp", content=b"5\n"),
        _op(4, "replace", "k.tmp", target=f"{_DIR}/k"),
        _op(5, "open", flags=os.O_RDONLY),
        _op(6, "fsync", error="EIO"),
        _op(7, "close"),
    ]
    (line,) = swallowed_syncs(trace, injected(trace, FaultPlan(at=6)))
    assert line.startswith(f"fsync of directory {_DIR} failed with EIO and save() returned")
    # Redone: another change of the directory's entries, synced, commits the rename with it.
    trace += [_op(8, "unlink", "old.tmp"), _op(9, "open", flags=os.O_RDONLY), _op(10, "fsync")]
    assert swallowed_syncs(trace, injected(trace, FaultPlan(at=6))) == []


def test_a_journal_unlink_or_truncate_can_commit_a_save() -> None:
    ops = _rollback_save(dir_sync_again=True)
    assert guessed_commit(ops).index == 8  # the unlink: faults after it may leave the new value
    assert guessed_commit([_op(0, "write", "db", content=b"x")]).index == 1  # past the end


def test_a_failed_sync_with_nothing_left_unsynced_lost_nothing() -> None:
    # SQLite closing its last connection checkpoints: it syncs a WAL the commit already synced,
    # and ignores a failure there. The offset was durable before that sync.
    trace = [
        _op(0, "write", "db-wal", content=b"frame"),
        _op(1, "fdatasync", "db-wal", content=b"frame"),
        _op(2, "fdatasync", "db-wal", error="EIO"),
        _op(3, "close", "db-wal"),
    ]
    assert swallowed_syncs(trace, injected(trace, FaultPlan(at=2))) == []
    # The same failure with a write in between is a lost offset.
    trace.insert(2, _op(2, "write", "db-wal", content=b"frame2"))
    trace[3] = _op(3, "fdatasync", "db-wal", error="EIO")
    (line,) = swallowed_syncs(trace, injected(trace, FaultPlan(at=3)))
    assert "fdatasync of /d/db-wal failed with EIO and save() returned" in line


def test_a_checkpoint_sync_failure_after_the_wal_was_synced_is_not_a_lost_offset() -> None:
    # SQLite's last connection closing: the WAL (synced by the commit) is copied into the
    # database, whose sync fails; SQLite keeps the WAL, and the offset is durable there.
    def call(index: int, kind: str, name: str, **fields: object) -> TraceOp:
        return dataclasses.replace(_op(index, kind, name, **fields), call=kind)

    trace = [
        call(0, "write", "db-wal", content=b"frame"),
        call(1, "fdatasync", "db-wal", content=b"frame"),
        call(2, "write", "db", content=b"page"),
        call(3, "fdatasync", "db", error="EIO"),
    ]
    assert swallowed_syncs(trace, injected(trace, FaultPlan(at=3))) == []
    # Without the synced log it is a lost offset, and a Python store gets no such allowance.
    assert swallowed_syncs(trace[2:], injected(trace, FaultPlan(at=3)))
    python = [dataclasses.replace(op, call="") for op in trace]
    assert swallowed_syncs(python, injected(python, FaultPlan(at=3)))


BEYOND_ZOO = "zoo.beyond_zoo"


@pytest.mark.usefixtures("zoo_importable")
def test_a_delete_that_swallows_an_io_error_fails_f2(stress_options: StressOptions) -> None:
    """``try: os.unlink(f) except OSError: pass``: delete returns, the offset stays."""
    result = check_f2(f"{BEYOND_ZOO}:swallowing_delete", stress_options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert re.search(r"delete op #\d+ unlink \S+\.offset\n", result.details), result.details
    assert "the delete returned\na fresh handle then found" in result.details
    assert ", expected absent" in result.details
    assert _count(result, "faulted deletes") >= 1
    assert diagnose([result])["F2"].likely[0].cause.id == "error-swallowed"


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("spec", [f"{ZOO}:careful", "lance_offsets.conformance.reference:lockfile"])
def test_deletes_loads_and_opens_are_faulted_too(stress_options: StressOptions, spec: str) -> None:
    """The control: correct stores pass with faults in delete, load and open, all counted."""
    result = check_f2(spec, stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    for action in ("deletes", "loads", "opens"):
        assert _count(result, f"faulted {action}") >= 1, result.evidence
        assert f"faulted {action}" in result.details


@pytest.mark.slow
def test_sqlite_wal_store_passes_f2_beyond_save_through_the_syscall_shim(
    stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite opens read-only when opening for writing fails; the opened handle reads the
    committed values, and a new one saves: a correct store, through the syscall backend."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    options = dataclasses.replace(stress_options, backend="syscall")
    result = check_f2("zoo.sqlite_zoo:wal_full", options)
    print(result.details)
    if result.outcome == "unverified":
        pytest.skip(f"no syscall shim here: {result.details}")
    assert result.outcome == "passed", result.details
    assert _count(result, "faulted opens") >= 1
    assert _count(result, "faulted deletes") >= 1


def test_a_delete_that_returns_after_a_failed_directory_sync_is_not_durable() -> None:
    trace = [
        _op(0, "open", "k.lock", flags=os.O_CREAT | os.O_WRONLY),
        _op(1, "unlink", "k"),
        _op(2, "open", flags=os.O_RDONLY),
        _op(3, "fsync", error="EIO"),
        _op(4, "close"),
    ]
    failed = injected(trace, FaultPlan(at=3))
    (line,) = swallowed_syncs(trace, failed, what="delete")
    assert line.startswith(f"fsync of directory {_DIR} failed with EIO and delete() returned")
    assert "the deletion is not durable" in line
    assert swallowed_syncs(trace, failed) == []  # a save's rule: only renames count


def test_a_delete_commits_at_its_first_unlink() -> None:
    ops = [_op(0, "open", "k.lock"), _op(1, "unlink", "k"), _op(2, "unlink", "k.tmp")]
    assert guessed_commit(ops, "delete").index == 1  # the key is gone: a leftover's removal follows
    assert guessed_commit(ops).index == 2


# -- declarations respected (issue 19, class 4) ----------------------------------------------

#: A store holding an exclusive lock from open to close: declared, it passes every check
#: (``test_exclusive_store.py``, F2 included); undeclared, F2 must still read it right.
EXCLUSIVE = "zoo.exclusive_zoo"


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_that_refuses_a_second_process_without_saying_so_is_read_alone(
    stress_options: StressOptions,
) -> None:
    """The same store claiming ``shared``: F2 shows B is refused beside an unfaulted handle
    too (blame by demonstration: not the fault's doing), and reads with the handle gone."""
    result = check_f2(f"{EXCLUSIVE}:Undeclared", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    reads = str(result.evidence["fresh reads"])
    assert "could not open the store beside an open handle even with no fault" in reads
    assert "StoreLocked" in reads


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_that_claims_no_durability_is_not_held_to_the_sync_rule(
    stress_options: StressOptions,
) -> None:
    """The fsync it swallows would fail a durable store (``swallows_file_fsync``)."""
    result = check_f2(f"{FAULT_ZOO}:NotDurableSwallowsFileFsync", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    assert _count(result, "sync faults") >= 1


def test_the_sync_rule_applies_to_calls_that_acknowledge_offsets_only() -> None:
    """An open (or a load) that swallowed a failed sync saves no offset: nothing to lose."""
    trace = [
        _op(0, "open", "db", flags=os.O_RDWR),
        _op(1, "write", "db", content=b"recovered"),
        _op(2, "fsync", "db", error="EIO"),
        _op(3, "replace", "db", target=f"{_DIR}/db2"),
    ]
    failed = injected(trace, FaultPlan(at=2))
    assert swallowed_syncs(trace, failed, what="save")
    assert swallowed_syncs(trace, failed, what="open") == []
    assert swallowed_syncs(trace, failed, what="load") == []
    assert [sync_rule_applies(a, True) for a in ("save", "save_many", "delete")] == [True] * 3
    assert not sync_rule_applies("open", True)
    assert not sync_rule_applies("save", False)


# -- fail-stop (class 7) ----------------------------------------------------------------------


@pytest.mark.usefixtures("zoo_importable")
def test_a_fail_stop_handle_passes_f2(stress_options: StressOptions) -> None:
    """Refusing every call after a failed save until reopened: loud, and nothing lost."""
    result = check_f2(f"{FAULT_ZOO}:fail_stop", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    assert _count(result, "fail-stop handles") >= 1


@pytest.mark.usefixtures("zoo_importable")
def test_lmdb_after_a_failed_write_is_fail_stop_and_passes_f2(
    stress_options: StressOptions,
) -> None:
    """py-lmdb refuses every call with MDB_PANIC after a failed write: our LMDB control."""
    pytest.importorskip("lmdb")
    result = check_f2("zoo.lmdb_zoo:correct", stress_options)
    print(result.details)
    if result.outcome == "unverified":
        pytest.skip(f"no syscall shim here: {result.details}")
    assert result.outcome == "passed", result.details
    assert _count(result, "fail-stop handles") >= 1


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "finding"),
    [
        ("fail_stop_answers_from_memory", "yet the same handle then loaded "),
        ("acks_after_fault", "returned, a fresh handle found "),
    ],
)
def test_a_handle_that_misbehaves_quietly_after_the_fault_fails(
    stress_options: StressOptions, factory: str, finding: str
) -> None:
    result = check_f2(f"{FAULT_ZOO}:{factory}", stress_options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert finding in result.details
    assert diagnose([result])["F2"].likely[0].cause.id == "error-path-leaves-state"


# -- the commit point, demonstrated (class 12) -----------------------------------------------


@pytest.mark.usefixtures("zoo_importable")
def test_a_lock_file_unlinked_after_the_replace_does_not_move_the_commit(
    stress_options: StressOptions,
) -> None:
    """The save's last unlink is the lock file's; kills show it commits at the replace, so a
    failed directory fsync between the two may leave the new value."""
    result = check_f2(f"{FAULT_ZOO}:lock_unlinked_after_replace", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    commit = str(result.evidence["save commit"])
    # os.replace: "replace" in the interposer's view, rename(2) in the shim's
    named = r"demonstrated: op #\d+ (replace|rename) \S+\.offset\.tmp \(\d+ kill\(s\)\)"
    assert re.fullmatch(named, commit), commit


@pytest.mark.usefixtures("zoo_importable")
def test_the_same_lock_with_a_failed_directory_fsync_ignored_still_fails(
    stress_options: StressOptions,
) -> None:
    result = check_f2(f"{FAULT_ZOO}:lock_unlinked_ignores_dir_sync", stress_options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert "fsync of directory /" in result.details
    assert "and save() returned: the offset is not durable" in result.details


def _writes(n: int) -> list[TraceOp]:
    return [_op(i, "write", "db", content=b"x" * (i + 1)) for i in range(n)]


def test_the_commit_is_the_first_operation_after_which_a_fresh_handle_sees_the_change() -> None:
    ops = [*_writes(6), _op(6, "fsync", "db"), _op(7, "unlink", "lock")]
    killed: list[int] = []

    def seen_after(index: int) -> Seen:
        killed.append(index)
        return "new" if index >= 3 else "old"

    commit = demonstrated_commit(ops, seen_after)
    assert isinstance(commit, Commit)
    assert (commit.index, commit.demonstrated) == (3, True)
    assert len(killed) <= 4  # a binary search over the 7 operations that change something
    assert 6 not in killed  # a sync changes nothing a reader sees: never a candidate


def test_a_commit_the_kills_cannot_show_falls_back_to_the_guess() -> None:
    ops = [*_writes(2), _op(2, "replace", "t", target=f"{_DIR}/k")]
    assert demonstrated_commit(ops, lambda index: "unreached") == (
        "the kill after op #2 replace t was not reached"
    )
    late = demonstrated_commit(ops, lambda index: "old")  # visible only once it returned
    assert isinstance(late, Commit)
    assert late.index == len(ops)
    # Visible only after a sync: the change went where the trace cannot see (a mapping).
    synced = [*ops, _op(3, "fsync", "k")]
    hidden = demonstrated_commit(synced, lambda index: "new" if index == 3 else "old")
    assert hidden == (
        "a fresh handle sees the change after op #3 fsync k, not after op #2 replace t: the "
        "trace misses where it is made"
    )
    assert isinstance(demonstrated_commit([_op(0, "fsync", "k")], lambda index: "new"), str)


def test_with_a_demonstrated_commit_a_failed_sync_before_it_must_leave_the_old_value() -> None:
    failed = [_op(3, "fsync", "k.tmp", error="EIO")]
    guessed = allowed_after("save", True, failed, at=3, commit=5, old=1, new=2)
    shown = allowed_after("save", True, failed, at=3, commit=5, old=1, new=2, demonstrated=True)
    assert (guessed, shown) == ((1, 2), (1,))
    after = allowed_after("save", True, [_op(6, "open", error="EIO")], at=6, commit=5, old=1, new=2)
    assert after == (1, 2)


# -- stratified faults (class 6) --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_sample_of_a_long_action_faults_every_role(seed: int) -> None:
    """Forty writes and one directory sync: the sample never misses the sync."""
    ops = [*_writes(40), _op(40, "fsync"), _op(41, "close", "db")]
    plans = action_plans(ops, "delete", random.Random(seed), long=False)
    hit = {role(next(op for op in ops if op.index == plan.at)) for plan, _ in plans}
    assert hit == roles(ops) == {"write", "fsync of a directory", "close"}
    assert len(plans) == SAMPLED


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_bound_at_import_is_faulted_on_the_syscall_view(
    stress_options: StressOptions,
) -> None:
    """Every call bound at import (``from os import fsync``): the interposer misses its fsyncs,
    so F2 faults through the shim's view, which saw them, and every role is hit, the open of
    the directory included (a failed open has no descriptor to tell a directory by)."""
    result = check_f2("zoo.bound_zoo:all_bound", stress_options)
    print(result.details)
    if result.evidence.get("tracing") != "syscall shim":
        pytest.skip(f"no syscall view here: {result.evidence}")
    assert result.outcome == "passed", result.details
    judged = str(result.evidence["judged by"])
    assert judged.startswith("syscall shim (the Python interposer missed"), judged
    assert _count(result, "sync faults") >= 2 * 3 * 2  # file and directory, 3 errors, 2 plans
    assert str(result.evidence["save roles faulted"]).startswith("8 of 8 ")


@pytest.mark.usefixtures("zoo_importable")
def test_every_role_of_a_save_is_faulted(stress_options: StressOptions) -> None:
    result = check_f2(f"{ZOO}:careful", stress_options)
    assert result.outcome == "passed", result.details
    faulted = str(result.evidence["save roles faulted"])
    assert faulted.startswith("8 of 8 (close, close of a directory, fsync, fsync of a directory")
    assert "not faulted" not in faulted


# -- faults and power cuts together ----------------------------------------------------------


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("factory", ["retries_fsync", "rewrites_then_retries_fsync"])
def test_a_retried_fsync_is_shown_to_lose_data_by_a_power_cut(
    stress_options: StressOptions, factory: str
) -> None:
    """The power-loss explorer judges F2's faulted trace: a retry without writing again loses
    the offset in a crash state; writing the bytes again first keeps it in every state."""
    pytest.importorskip(EXPLORER.partition(":")[0], reason="the power-loss explorer (power19)")
    result = check_f2(f"{FAULT_ZOO}:{factory}", stress_options)
    print(result.details)
    explored = str(result.evidence["power cuts explored"])
    if factory == "rewrites_then_retries_fsync":
        assert result.outcome == "passed", result.details
        assert re.fullmatch(r"\d+ \(\d+ kept\)", explored), explored
        return
    assert result.outcome == "failed", result.details
    assert "shown by a power cut (the power-loss explorer):" in result.details
    assert "(acknowledged)" in result.details
    assert re.fullmatch(r"\d+ \(\d+ lost\)", explored), explored
    assert result.artifacts["crash_state"]
    assert diagnose([result])["F2"].likely[0].cause.id == "fsync-error-ignored"


@pytest.mark.usefixtures("zoo_importable")
def test_without_the_explorer_a_retried_fsync_still_fails_by_the_sync_rule(
    stress_options: StressOptions,
) -> None:
    result = check_f2(f"{FAULT_ZOO}:retries_fsync", stress_options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert re.search(r"the later successful fsync \(op #\d+\) proves nothing", result.details)
