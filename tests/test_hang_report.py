"""Hang reports: the stacks a stuck process gives, the verdict each kind of hang gives, the bound.

The real hangs, crashes and stalls of zoo stores run in tests/slow/test_hangs.py; these are
the pieces they are made of, on real processes where a process is involved.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import multiprocess
import pytest
from lance_offsets.conformance import _bounded, check_property
from lance_offsets.conformance._capabilities import CALL_SECONDS, capabilities_of
from lance_offsets.conformance._diagnosis import FINDINGS, diagnose
from lance_offsets.conformance._hang import DUMP_SIGNAL, HangReport, StackPipe, hang_result
from lance_offsets.conformance._run import ONE_AT_A_TIME


def _stuck_child(writer: object, armed: Any) -> None:
    # Runs in a spawned process: armed like a check child, then blocked in a function whose
    # name the test looks for.
    from lance_offsets.conformance._hang import arm_stack_dump

    arm_stack_dump(writer)
    armed.set()

    def waiting_for_a_lock_that_never_comes() -> None:
        time.sleep(600)

    waiting_for_a_lock_that_never_comes()


@pytest.mark.skipif(DUMP_SIGNAL is None, reason="no signal to ask a process for its stacks")
def test_a_stuck_process_gives_its_stack_through_the_pipe() -> None:
    from lance_offsets.conformance._hang import dumped_stack

    ctx = multiprocess.get_context("spawn")
    stacks = StackPipe(ctx)
    armed = ctx.Event()
    proc = ctx.Process(target=_stuck_child, args=(stacks.writer, armed), daemon=True)
    proc.start()
    stacks.started()
    try:
        assert armed.wait(60)
        time.sleep(0.2)  # into the sleep
        text = stacks.request(proc.pid)
        stack = dumped_stack(text, None)
        print(text, stack, sep="\n")
        assert "waiting_for_a_lock_that_never_comes" in stack[-1], text
        assert "time.sleep(600)" in stack[-1]  # with its source line
        assert proc.is_alive()  # asking for stacks does not stop it
    finally:
        proc.kill()
        proc.join()
        stacks.close()


def test_a_crashing_process_leaves_its_stack_in_the_pipe() -> None:
    # faulthandler writes a fatal error's stack too: what "ended the process" reports show.
    from lance_offsets.conformance._hang import dumped_stack

    ctx = multiprocess.get_context("spawn")
    stacks = StackPipe(ctx)
    proc = ctx.Process(target=_crashing_child, args=(stacks.writer,), daemon=True)
    proc.start()
    stacks.started()
    proc.join(60)
    text = stacks.read(2.0)
    stacks.close()
    assert proc.exitcode == -signal.SIGSEGV, proc.exitcode
    stack = dumped_stack(text, None)
    assert any("reading_address_zero" in frame for frame in stack), text


def _crashing_child(writer: object) -> None:
    import ctypes

    from lance_offsets.conformance._hang import arm_stack_dump

    arm_stack_dump(writer)

    def reading_address_zero() -> None:
        ctypes.string_at(0)

    reading_address_zero()


REPORT = HangReport(call="h3.load(1, 2)", role="store", seconds=31.0, bound=30.0)


def test_a_store_hang_fails_with_what_hung_and_its_likely_cause() -> None:
    result = hang_result("C2", REPORT)
    assert result.outcome == "failed"
    first = result.details.splitlines()[0]
    assert first == (
        "[C2 absent keys load as None] the store hung: h3.load(1, 2) did not return within 30 s"
    )
    assert result.artifacts[FINDINGS][0]["fact"] == "hung"
    assert diagnose([result])["C2"].likely[0].cause.id == "unbounded-wait"


@pytest.mark.parametrize(
    ("role", "said"),
    [
        ("helper", "a helper handle the check opened hung"),
        ("", "the suite's own code made no progress"),
    ],
)
def test_a_hang_that_is_not_the_stores_is_unverified(role: str, said: str) -> None:
    call = "h2.load(1, 2)" if role else ""
    report = HangReport(call=call, role=role, seconds=130, bound=120)  # type: ignore[arg-type]
    result = hang_result("H3", report)
    assert result.outcome == "unverified", result
    assert said in result.details
    assert FINDINGS not in result.artifacts  # a hang of ours is no finding about the store


class _Declares:
    def __init__(self, seconds: object) -> None:
        self.call_seconds = seconds

    def __call__(self, path: str) -> object:
        raise AssertionError("never opened")


def test_call_seconds_is_declared_or_thirty() -> None:
    assert capabilities_of(_Declares(2)).call_seconds == 2.0
    assert capabilities_of(lambda path: None).call_seconds == CALL_SECONDS == 30.0


@pytest.mark.parametrize("bad", [0, -1, True, "30", None])
def test_a_bad_call_seconds_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=r"capability 'call_seconds' on .* must be a positive"):
        capabilities_of(_Declares(bad))


def test_one_handle_at_a_time_makes_p2_not_applicable(zoo_importable: None) -> None:
    result = check_property("zoo.exclusive_zoo:ExclusiveStore", "P2", profile="smoke")
    assert result.outcome == "not-applicable", result
    assert result.details == ONE_AT_A_TIME


def test_the_process_in_charge_never_opens_the_store(tmp_path: Path) -> None:
    # run_checks (what `check` and the pytest door call) checks in its check child: a factory
    # that leaves a file named for the process it runs in shows where the store was opened.
    module = textwrap.dedent(
        """
        import os
        from lance_offsets.conformance.reference import lockfile

        def factory(path):
            open(f"opened-{os.getpid()}", "w").close()
            return lockfile(path)
        """
    )
    code = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, os.getcwd())
        from lance_offsets.conformance import run_checks
        (result,) = run_checks("pidstore:factory", only=["C2"], seed=1, profile="smoke")
        print(result.outcome, os.path.exists(f"opened-{os.getpid()}"))
        """
    )
    (tmp_path / "pidstore.py").write_text(module)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["passed", "False"], done.stdout
    assert list(tmp_path.glob("opened-*")), "the store was opened: by the check child"


def test_a_bad_declaration_is_a_spec_error_before_any_check(tmp_path: Path) -> None:
    # Said once by the process in charge, as the command's usage error, not as 24 verdicts.
    (tmp_path / "badstore.py").write_text(
        "from lance_offsets.conformance.reference import lockfile\n"
        "def factory(path):\n    return lockfile(path)\n"
        "factory.call_seconds = -1\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "lance_offsets", "check", "badstore:factory", "--only", "C1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error" in line]
    assert line.startswith(
        "lance-offsets: error: check: store spec 'badstore:factory': capability 'call_seconds' on "
    ), line
    assert line.endswith("must be a positive number of seconds, got -1"), line


def _timed_calls(conn: Any) -> None:
    # In a spawned process, as a check child is: time calls, collect what the watchdog reports.
    from lance_offsets.conformance import _watch

    reports: list[HangReport] = []
    clock = _watch.CallClock.new(multiprocess.get_context("spawn"))
    _watch.install(clock, reports.append)
    with _watch.marked("h1.save(1, 2, 3)", "store", 0.5):
        # H3's probe in another process, inside the save's hook: its wait is not the store's.
        with _watch.marked("load(1, 2)", "helper", 10.0, remote=True):
            time.sleep(0.8)
        time.sleep(0.2)
    quiet = list(reports)
    with _watch.marked("h1.load(1, 2)", "store", 0.5):
        time.sleep(0.9)  # past the bound: the watchdog reports it while it runs
    conn.send((quiet, reports, clock.started))


def test_the_watchdog_reports_the_stores_call_and_not_a_helpers_wait_inside_it() -> None:
    ctx = multiprocess.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_timed_calls, args=(theirs,), daemon=True)
    proc.start()
    try:
        assert ours.poll(60)
        quiet, reports, started = ours.recv()
    finally:
        proc.join(10)
    assert quiet == []  # 1 s inside the save, 0.2 s of it the store's own: under its bound
    (report,) = reports
    assert (report.call, report.role, report.bound) == ("h1.load(1, 2)", "store", 0.5)
    assert report.seconds > 0.5
    assert report.stack[-1].endswith(
        "time.sleep(0.9)  # past the bound: the watchdog reports it while it runs"
    )
    assert report.recent == ("load(1, 2) returned", "h1.save(1, 2, 3) returned")
    assert started == 0.0  # no call running once the last one ended


@dataclasses.dataclass(frozen=True)
class _SleepingStressJob:
    """A multi-process check that deadlocks in the suite's own code (its whole tree asleep)."""

    workdir: str | None = None

    def check_here(self, pid: str) -> Any:
        threading.Event().wait()  # nobody sets it: no CPU used, no store call, forever


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU time is read from /proc")
def test_a_multi_process_check_whose_whole_tree_sleeps_is_unverified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stress check's store calls run in workers, so no call clock shows a stall there: what
    # shows it is the check child and everything below it using no CPU. (`check --stress` sat
    # in a deadlock of the suite's own for 7 minutes before this bound.)
    monkeypatch.setattr(_bounded, "STRESS_IDLE_SECONDS", 2.0)
    started = time.monotonic()
    result = _bounded.check_bounded(_SleepingStressJob(), "M1")
    print(result.details)
    assert result.outcome == "unverified", result.details
    assert time.monotonic() - started < 60
    assert "the suite's own code made no progress" in result.details
    assert "neither the check child nor any process it started used CPU" in result.details
    assert "_SleepingStressJob" in result.details or "check_here" in result.details  # its stack


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU time is read from /proc")
def test_the_cpu_time_of_a_tree_counts_its_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "sum(range(10**7)); input()"], stdin=subprocess.PIPE
    )
    try:
        time.sleep(1.5)
        with_child = _bounded.tree_cpu_ticks(os.getpid())
        assert with_child is not None
        alone = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[-1].split()[11])
        assert with_child > alone  # the child's ticks are in the tree's
    finally:
        child.communicate(b"\n", timeout=30)
    assert _bounded.tree_cpu_ticks(child.pid) is None  # gone
