"""D3 end to end: real worker and verifier processes, real files, the bug zoo and our own stores.

Each check prints its seed (the ``stress_options`` fixture) and, on failure, the crash state.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lance_offsets.conformance._diagnosis import diagnose
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.powerloss import _campaign as _powerloss
from lance_offsets.stress.powerloss import _recording, _verifier
from lance_offsets.stress.powerloss._campaign import PowerLossRun, check_d3, run_powerloss
from lance_offsets.stress.seam._shim import build


def strace_works() -> bool:
    """Return whether strace is installed and may trace here (ptrace can be forbidden)."""
    exe = shutil.which("strace")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    done = subprocess.run([exe, "-f", "-qq", "-o", os.devnull, "true"], check=False, timeout=60)
    return done.returncode == 0


STRACE = strace_works()
#: The syscall shim builds here: C stores and confirmations are recorded through it.
SHIM = build() is not None
#: How a D3 report names the system-call level recorder this machine has, if any.
SYSCALL_TRACER = "the syscall shim" if SHIM else "strace" if STRACE else None

pytestmark = [
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="D3 is modelled on Linux only so far"
    ),
]

ZOO = "zoo.powerloss_zoo"
DEFECTIVE = ("no_file_fsync", "no_dir_fsync", "fsync_target_after_rename", "rename_before_sync")


@pytest.fixture
def short(stress_options: StressOptions) -> StressOptions:
    """The short version whatever ``--stress`` says: these tests pin the default check.

    The scratch directory is left to the check (tmpfs when there is one): it only holds crash
    states, and the verifier's saves fsync, which costs nothing there.
    """
    return dataclasses.replace(stress_options, long=False, workdir=None)


def passed(run: PowerLossRun) -> bool:
    print(run.result.details)
    return run.result.outcome == "passed"


@pytest.mark.parametrize("spec", ["lance_offsets.conformance.reference:lockfile", f"{ZOO}:correct"])
def test_correct_stores_pass_exhaustively(spec: str, short: StressOptions) -> None:
    run = run_powerloss(spec, short)
    assert passed(run), run.result.details
    assert run.exploration is not None
    assert run.exploration.sampled_points == 0  # a correct save protocol is small: exhaustive
    assert run.states > 50
    assert run.directories > 10
    evidence = dict(run.result.evidence)
    # With the shim preloaded, it recorded the same run beside the interposer, which judged
    # because both saw the same operations.
    tracing = str(evidence.pop("tracing", ""))
    assert tracing.startswith("python interposer (the syscall shim saw the same") or not SHIM
    assert evidence == {
        "crash points": run.exploration.points,
        "states explored": run.states,
        "exhaustive": "yes",
        "tracer": "interposer",
        "tear size": 512,
    }


def test_a_listing_wrong_with_no_power_cut_is_not_blamed_on_one(short: StressOptions) -> None:
    # swapped_listing is durable, and its list_all swaps topic and consumer (C6). Each verifier
    # first lists a new store no power cut touched; that listing is wrong too, so no crash
    # state is judged by its listing, and the details say why, pointing at C6.
    run = run_powerloss(f"{ZOO}:swapped_listing", short)
    assert passed(run), run.result.details
    assert "list_all() is wrong on a new store no power cut touched" in run.result.details
    assert "see C6" in run.result.details
    control = run_powerloss(f"{ZOO}:correct", short)  # a right listing is never set aside
    assert "list_all() is wrong" not in control.result.details


#: What each defect's printed crash state must show: the step whose loss broke D3.
#: The likely cause each defect's failure names (conformance/_diagnosis.py).
MISSING_STEP = {
    "no_file_fsync": "file-not-fsynced-before-rename",
    "no_dir_fsync": "directory-not-fsynced",
    "fsync_target_after_rename": "file-not-fsynced-before-rename",
    "rename_before_sync": "file-not-fsynced-before-rename",
}

LOST_STEP = {
    "no_file_fsync": "unsynced data",
    "no_dir_fsync": "-> 1-2.offset: UNDONE",
    "fsync_target_after_rename": "replace 1-2.offset.tmp -> 1-2.offset: persisted",
    "rename_before_sync": "replace 1-2.offset.tmp -> 1-2.offset: persisted",
}


@pytest.mark.parametrize("name", DEFECTIVE)
def test_each_defect_fails_d3_with_the_crash_state_printed(name: str, short: StressOptions) -> None:
    result = check_d3(f"{ZOO}:{name}", short)
    print(result.details)
    assert result.outcome == "failed"
    assert "power cut after operation #" in result.details
    assert "VIOLATION" in result.details
    assert "(acknowledged)" in result.details
    assert f"seed {short.seed}" in result.details
    assert LOST_STEP[name] in result.details
    if SYSCALL_TRACER:  # the interposer judged only because the shim saw the same run
        assert result.evidence["tracer"] == "interposer"
        assert "the syscall shim saw the same" in str(result.evidence["tracing"])
    # The first line is the worst state's violation and where the cut was; the counts follow.
    first, second = result.details.splitlines()[:2]
    assert "(acknowledged)" in first
    assert "(a power cut after #" in first
    assert " crash states violate D3: " in second
    assert diagnose([result])["D3"].likely[0].cause.id == MISSING_STEP[name], result.artifacts


def test_what_the_first_open_makes_is_undone_unless_its_parent_is_fsynced(
    short: StressOptions,
) -> None:
    # The trace starts at the empty directory: the open's own mkdir of data/ is a crash point.
    run = run_powerloss(f"{ZOO}:mkdir_at_open", short)
    print(run.result.details)
    assert run.result.outcome == "failed"
    assert "found absent, expected 5 (acknowledged)" in run.result.details.splitlines()[0]
    assert "#0 mkdir data: UNDONE" in run.result.details
    causes = diagnose([run.result])["D3"].likely
    assert causes[0].cause.id == "directory-not-fsynced", run.result.artifacts
    control = run_powerloss(f"{ZOO}:mkdir_at_open_fsynced", short)
    assert passed(control), control.result.details


@pytest.mark.skipif(SYSCALL_TRACER is None, reason="needs the syscall shim or strace for fsyncs")
def test_fsyncs_hidden_from_the_interposer_are_not_blamed(short: StressOptions) -> None:
    # The store calls fsync through a name bound at import: the interposer's trace shows no
    # sync at all, so its crash states lose data; the shim (libc's fsync) shows every sync.
    run = run_powerloss(f"{ZOO}:correct_bound_fsync", short)
    assert passed(run), run.result.details
    assert f"traced by {SYSCALL_TRACER}" in run.result.details
    if SHIM:  # the shim's witness showed what the interposer missed: the shim judged
        assert "the Python interposer missed" in str(run.result.evidence["tracing"])


@pytest.mark.skipif(not SHIM, reason="the syscall shim cannot be built here (no C compiler?)")
@pytest.mark.parametrize("name", ["correct", "no_dir_fsync", "no_file_fsync"])
def test_a_python_store_gets_the_same_verdict_through_the_interposer_and_the_shim(
    name: str, short: StressOptions
) -> None:
    # One seam, two backends: the shim sees the same store calls from libc, and the model
    # judges the same protocol the same way.
    runs = {
        backend: run_powerloss(f"{ZOO}:{name}", dataclasses.replace(short, backend=backend))
        for backend in ("python", "syscall")
    }
    for backend, run in runs.items():
        print(backend, run.result.outcome, run.result.evidence, run.result.details[:400])
    python, shim = runs["python"].result, runs["syscall"].result
    assert python.evidence["tracer"] == "interposer"
    assert shim.evidence["tracer"] == "syscall shim"
    assert python.outcome == shim.outcome
    assert python.outcome == ("passed" if name == "correct" else "failed")


def test_a_store_hanging_on_a_crash_state_is_reported_with_that_state(
    short: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store spins on open while a lock file exists; a power cut can bring one back. Each
    # state it hangs on costs STATE_SECONDS (shortened here), then a new verifier goes on.
    monkeypatch.setattr(_verifier, "STATE_SECONDS", 1.0)
    run = run_powerloss(f"{ZOO}:lock_file_spin", short)
    details = run.result.details
    print(details)
    assert run.result.outcome == "failed"
    # Bounded: after MAX_HANGS states it stops trying (the report keeps the simplest of them).
    assert any(v.problems[0].kind == "hung" for _, v in run.failures)
    first = details.splitlines()[1]  # after the violation itself, the counts
    assert "hung or died opening or reading the state in " in first
    facts = {f["fact"] for f in run.result.artifacts["findings"]}
    assert "hung-after-power-cut" in facts  # waiting for a lock file nobody holds
    assert "the store hung opening/reading this state, in opening the store (a lock held" in details
    assert "[HUNG OR DIED OPENING OR READING THE STATE]" in details
    assert "files left: LOCK=b''" in details  # the state is named: its files, what was undone
    assert "power cut after operation #" in details
    assert "states not verified: the store hung or died on 3 states first" in details
    assert "trace (the worker's file-system operations and marks, numbered):" in details


def test_a_store_hanging_in_the_workload_is_reported_with_the_call_and_files(
    short: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recording, "PROCESS_SECONDS", 3.0)
    run = run_powerloss(f"{ZOO}:delete_spins", short)
    details = run.result.details
    print(details)
    assert run.result.outcome == "failed"
    assert "still running after 3.0 s" in details
    assert "in delete(4294967295, 18446744073709551615)" in details  # the call in flight
    assert "files then: 1-2.offset=" in details  # what the store had left on disk


def test_not_applicable_when_not_claimed_unverified_when_not_traceable(
    short: StressOptions,
) -> None:
    # By capability: the memory store claims no durability, so nothing is started.
    (memory,) = run_properties("lance_offsets.conformance.reference:memory", ["D3"], short)
    assert memory.outcome == "not-applicable"
    assert "durable" in memory.details
    # By trace: this one claims durability but writes no file the interposer could see, nor
    # strace: claimed, and not exercised.
    (claimed,) = run_properties(f"{ZOO}:in_memory_claiming_durable", ["D3"], short)
    assert claimed.outcome == "unverified"
    assert claimed.evidence["states explored"] == 0
    assert "no file-system write" in claimed.details
    assert claimed.seconds > 0


@pytest.mark.stress
@pytest.mark.parametrize(
    "spec",
    [
        "lance_offsets.conformance.reference:lockfile",
        "lance_offsets.conformance.reference:hooked_lockfile",
        f"{ZOO}:correct",
    ],
)
def test_long_workload_passes_on_correct_stores(spec: str, stress_options: StressOptions) -> None:
    run = run_powerloss(spec, dataclasses.replace(stress_options, workdir=None))
    assert passed(run), run.result.details


@pytest.mark.stress
@pytest.mark.parametrize("name", DEFECTIVE)
def test_long_workload_fails_each_defect(name: str, stress_options: StressOptions) -> None:
    result = check_d3(f"{ZOO}:{name}", dataclasses.replace(stress_options, workdir=None))
    print(result.details[:4000])
    assert result.outcome == "failed"


def _fingerprint(run: PowerLossRun) -> tuple[object, ...]:
    """What a run found, its timing left out: the same states must get the same verdicts."""
    details = re.sub(r"[\d.]+ s \(\d+ states/s\)", "T", run.result.details)
    failing = sorted(
        # The problems name the state's directory under a scratch directory of random name.
        (state.point, state.tree, re.sub(r"\S*/states-\w+/", "", str(verdict.problems)))
        for state, verdict in run.failures
    )
    return run.result.outcome, run.states, run.directories, run.result.evidence, details, failing


@pytest.mark.parametrize("name", ["correct", "fsync_target_after_rename"])
def test_verifiers_in_parallel_check_the_same_states_with_the_same_verdicts(
    name: str, stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long run splits each batch of directories between one verifier per core: it must check
    # exactly what one verifier checks, and find the same.
    options = dataclasses.replace(stress_options, long=True, workdir=None)
    busy: set[int] = set()
    observe = _verifier._Verifier.observe

    def spy(self: _verifier._Verifier, dirs: list[str], prepare: object) -> object:
        busy.add(id(self))
        return observe(self, dirs, prepare)  # type: ignore[arg-type]

    monkeypatch.setattr(_verifier._Verifier, "observe", spy)
    runs = {}
    for lanes in (1, 2):
        busy.clear()
        monkeypatch.setattr(_powerloss, "lanes_for", lambda long, n=lanes: n)
        runs[lanes] = run_powerloss(f"{ZOO}:{name}", options)
        assert len(busy) == lanes  # each lane verified some of the states
    print(runs[2].result.details[:2000])
    assert _fingerprint(runs[1]) == _fingerprint(runs[2])


def test_parallel_verifiers_verify_no_fewer_states_of_a_store_that_hangs(
    stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each lane gives up after MAX_HANGS hangs of its own: every state one verifier reaches
    # before giving up, a lane reaches too.
    monkeypatch.setattr(_verifier, "STATE_SECONDS", 1.0)
    options = dataclasses.replace(stress_options, long=True, workdir=None)
    runs = {}
    for lanes in (1, 2):
        monkeypatch.setattr(_powerloss, "lanes_for", lambda long, n=lanes: n)
        runs[lanes] = run_powerloss(f"{ZOO}:lock_file_spin", options)
        assert runs[lanes].result.outcome == "failed"
    print(runs[2].result.details[:1500])
    one, two = (runs[n].result.evidence["states explored"] for n in (1, 2))
    assert int(two) >= int(one) > 0
    assert runs[1].states == runs[2].states
    assert "in each of its 2 verifier processes" in runs[2].result.details
    assert {v.problems[0].kind for _, v in runs[2].failures} == {"hung"}


def test_crash_states_are_written_to_fast_scratch_and_the_workload_runs_in_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The states are the model's output (tmpfs: the verifier's fsyncs cost nothing); the store's
    # own run stays on the file system the caller chose.
    fast, work = tmp_path / "fast", tmp_path / "work"
    fast.mkdir()
    work.mkdir()
    monkeypatch.setattr(_powerloss, "_fast_scratch", lambda: str(fast))
    written: list[str] = []
    observe = _verifier.Lanes.observe

    def spy(self: _verifier.Lanes, dirs: list[str], prepare: object) -> object:
        written.extend(dirs)
        return observe(self, dirs, prepare)  # type: ignore[arg-type]

    recorded: list[str] = []
    attempt = _recording.attempt

    def spied_attempt(spec: str, steps: object, where: str, backend: str) -> object:
        recorded.append(where)
        return attempt(spec, steps, where, backend)  # type: ignore[arg-type]

    monkeypatch.setattr(_verifier.Lanes, "observe", spy)
    monkeypatch.setattr(_recording, "attempt", spied_attempt)
    options = StressOptions(seed=1, workdir=str(work))
    run = run_powerloss(f"{ZOO}:correct", options)
    assert passed(run)
    assert written
    assert all(d.startswith(str(fast) + os.sep) for d in written)
    assert recorded
    assert all(d.startswith(str(work) + os.sep) for d in recorded)
    assert list(fast.iterdir()) == list(work.iterdir()) == []  # both removed after


def test_scratch_left_by_a_dead_run_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    for name, pid in (("lance-d3-dead", dead.stdout.strip()), ("lance-d3-live", os.getpid())):
        (tmp_path / name / "states").mkdir(parents=True)
        (tmp_path / name / "owner.pid").write_text(str(pid))
    (tmp_path / "lance-d3-new").mkdir()  # no owner yet: being created, left alone
    _powerloss._remove_stale_scratch(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lance-d3-live", "lance-d3-new"]


def test_running_out_of_memory_is_unverified_not_a_failure(
    short: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(_powerloss, "_explore_and_verify", exhausted)
    run = run_powerloss(f"{ZOO}:correct", short)
    assert run.result.outcome == "unverified"
    assert "ran out of memory" in run.result.details
