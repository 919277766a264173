"""The check's progress line and its estimate of the time left (conformance/_progress.py)."""

from __future__ import annotations

import io
import time

import pytest
from _terminal import screen
from lance_offsets.conformance._progress import Estimate, ProgressLine, duration, kind
from lance_offsets.conformance._results import PropertyResult


def test_kinds_group_what_takes_alike() -> None:
    assert kind("C1") == kind("P2") == kind("F1") == "hypothesis"
    assert kind("D1") == kind("D5") == "crash campaign"
    assert kind("M1") == kind("M2") == "timed run"
    assert len({kind("D3"), kind("F2"), kind("B1")}) == 3


def test_durations_read_as_estimates() -> None:
    assert [duration(s) for s in (0.4, 42, 89, 200, 3900)] == [
        "0 s",
        "42 s",
        "89 s",
        "3 min",
        "1 h 5 min",
    ]


def test_nothing_is_guessed_before_its_kind_ran() -> None:
    estimate = Estimate(["C1", "C2", "D3"], timed_seconds=60)
    assert estimate.text() == "time left not known yet (C1, C2, D3 not timed yet)"
    estimate.finished("C1", 4.0)
    # C2 is like C1; D3 is like nothing that ran: a floor, and the line says so.
    assert estimate.left() == (4.0, ["D3"])
    assert estimate.text() == "at least 4 s left (D3 not timed yet)"
    estimate.finished("D3", 100.0)
    assert estimate.text() == "about 4 s left"
    estimate.finished("C2", 1.0)
    assert estimate.text() == ""


def test_a_timed_run_counts_its_seconds_before_it_ran() -> None:
    estimate = Estimate(["M1", "M2", "B1"], timed_seconds=60)
    assert estimate.left() == (120.0, ["M1", "M2", "B1"])
    assert estimate.text().startswith("at least 2 min left")
    # While M1 runs, the time it has had comes off.
    assert estimate.left({"M1": 45.0})[0] == 75.0


def test_the_crash_campaign_is_paid_once_in_a_serial_run() -> None:
    # Under --stress the campaign takes minutes for D1 and nothing for D2, D4, D5, which read it:
    # an estimate that averaged them would be off by the campaign's length.
    serial = Estimate(["D1", "D2", "D4", "D5"], timed_seconds=60)
    serial.finished("D1", 250.0)
    assert serial.text() == "about 0 s left"
    # Properties checked at once each run the campaign in their own process.
    parallel = Estimate(["D1", "D2", "D4", "D5"], timed_seconds=60, workers=3)
    parallel.finished("D1", 250.0)
    assert parallel.left() == (250.0, [])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _result(pid: str, seconds: float = 1.0) -> PropertyResult:
    return PropertyResult(pid, "passed", seconds)


def test_rows_never_share_a_line_with_the_progress_on_a_terminal() -> None:
    # stdout and stderr are one terminal: what each writes lands in one stream, in order.
    screen_bytes = _Tty()
    progress = ProgressLine(
        Estimate(["C1", "C2", "M1"], timed_seconds=2), screen_bytes, screen_bytes
    )
    try:
        progress.started("C1")
        progress.finished(_result("C1"), "C1   round trip   passed")
        progress.started("C2")
        progress.line("  .. a long run's own progress line")
        progress.finished(_result("C2"), "C2   absent keys   passed")
        progress.started("M1")
        time.sleep(1.3)  # the live line is redrawn meanwhile (the elapsed time moves)
        progress.finished(_result("M1", 2.1), "M1   concurrent   passed")
    finally:
        progress.close()
    raw = screen_bytes.getvalue()
    assert "running M1" in raw  # it was shown while M1 ran
    assert screen(raw) == [
        "C1   round trip   passed",
        "  .. a long run's own progress line",
        "C2   absent keys   passed",
        "M1   concurrent   passed",
        "",
    ]
    # Read as a log, split at every carriage return and newline, each row is a piece of its own.
    pieces = [p.strip() for p in raw.replace("\r", "\n").split("\n")]
    for row in (
        "C1   round trip   passed",
        "C2   absent keys   passed",
        "M1   concurrent   passed",
    ):
        assert row in pieces


@pytest.mark.parametrize("columns", [30, 200])
def test_the_progress_line_fits_the_terminal(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((columns, 24)))
    out = _Tty()
    out.fileno = lambda: 2  # type: ignore[method-assign]
    ids = ["C1", "C2", "C3", "C4", "M1", "M2", "D1", "D3"]
    progress = ProgressLine(Estimate(ids, timed_seconds=60), out, out)
    progress.started("C1")
    progress.close()
    drawn = [p for p in out.getvalue().split("\r") if p.strip()]
    assert drawn
    assert all(len(p) < columns for p in drawn)


def test_a_log_gets_one_line_per_property_and_no_carriage_returns() -> None:
    out, err = io.StringIO(), io.StringIO()
    progress = ProgressLine(Estimate(["C1", "D3"], timed_seconds=2), out, err)
    progress.started("C1")
    progress.finished(_result("C1"), "C1 row")
    progress.line("  .. note")
    progress.started("D3")
    progress.finished(_result("D3"), "D3 row")
    progress.close()
    assert out.getvalue() == "C1 row\nD3 row\n"
    assert "\r" not in err.getvalue()
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("[1/2] C1 passed, ")
    assert lines[0].endswith("(D3 not timed yet)")
    assert lines[1] == "  .. note"
    assert lines[2].startswith("[2/2] D3 passed, ")


def test_a_copy_in_another_process_never_waits_for_the_lock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A progress callback travels to --workers processes inside the run's options (pickled by
    # dill, which keeps a lock's state). Pickled while the redraw held the lock, the copy's
    # lock was held by a thread that does not exist there: `check --stress` hung at its first
    # progress line. A copy is a writer of whole lines, with no lock.
    import threading

    import dill  # type: ignore[import-untyped]

    estimate = Estimate(["M1"], timed_seconds=2)
    progress = ProgressLine(estimate, io.StringIO(), io.StringIO(), live=False)
    with progress._lock:
        copy = dill.loads(dill.dumps(progress))
    said = threading.Thread(target=copy.line, args=("  .. M1: 5.0 s, 812 ops",), daemon=True)
    said.start()
    said.join(10)
    assert not said.is_alive(), "the copy waited for a lock held in another process"
    assert capsys.readouterr().err == "  .. M1: 5.0 s, 812 ops\n"
