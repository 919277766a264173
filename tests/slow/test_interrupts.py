"""Ctrl-C and SIGTERM at seeded moments of a check, a pytest run and a CLI command (issue 18).

Each point starts the command in a session of its own, sends SIGINT to its process group (what
Ctrl-C does) or SIGTERM to it alone (what CI runners and ``timeout`` do) after a seeded delay, and
then demands: the exit status 130 or 143, one line saying so and no traceback, the reports asked
for written with what finished, and nothing left behind: no process of its session, nothing in
its temporary directory, no crash-state scratch on tmpfs. The delays are drawn per point from
the seed (printed); a point that finished before its signal is counted, not judged.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from lance_offsets.conformance._catalog import property_ids

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="process groups and signals are POSIX"),
]

#: Seconds a stopped command may take to exit before the test calls it a hang. The figure the
#: tests print is what matters; this bound only keeps a hang from stalling the suite.
HANG_SECONDS = 30.0
#: Property selections that put the signal in every kind of work: Hypothesis machines with a
#: helper in another process, a timed concurrent run, the crash campaign (with its warm
#: template), power loss, faults, batches, and properties checked at once. Each with the seconds
#: the whole command takes on an idle machine, start-up included; the delays stay below.
SELECTIONS: list[tuple[list[str], float]] = [
    (["--only", "C1,C5,P2"], 1.8),
    (["--only", "M1"], 2.5),
    (["--only", "D1,D2"], 1.4),
    (["--only", "C1,D3"], 1.1),
    (["--only", "C1,F2"], 1.4),
    (["--only", "B1"], 1.4),
    (["--only", "C1,M1,D1,F2", "--workers", "2"], 3.2),
]


def _seed() -> int:
    seed = int(os.environ.get("LANCE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"interrupt points drawn with seed {seed} (replay: LANCE_TEST_SEED={seed})")
    return seed


def _abandoned_states() -> set[str]:
    """Crash-state scratch on tmpfs whose owner is gone: what an interrupted run left there."""
    left = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/dev/shm"):
            if not name.startswith("lance-d3-"):
                continue
            try:
                pid = int(Path("/dev/shm", name, "owner.pid").read_text())
                os.kill(pid, 0)
            except ProcessLookupError:
                left.add(name)
            except (OSError, ValueError):
                continue
    return left


def _session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes of session ``sid``: what the command left running."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[3]) == sid:
            found.append(f"{name} {stat[: stat.rfind(b')') + 1].decode(errors='replace')}")
    return found


@dataclass
class Stop:
    """What one interrupted command did."""

    finished_first: bool
    code: int | None
    seconds: float
    stdout: str
    stderr: str
    left: list[str]


def _interrupt(
    command: list[str], delay: float, sig: int, tmp: Path, cwd: Path, *, ready: str = ""
) -> Stop:
    """Run ``command``, signal it after ``delay`` s, and report how it ended and what it left.

    :param ready: the delay counts from when stdout has shown this text, not from the start:
        on a loaded machine Python alone may take a second to start, and a signal before the
        command armed its handlers is Python's business, not ours.
    """
    tmp.mkdir()
    before = _abandoned_states()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    shown = ""
    while ready and ready not in shown and proc.stdout is not None:
        char = proc.stdout.read(1)
        if not char:
            break
        shown += char
    time.sleep(delay)
    sent = time.monotonic()
    finished_first = proc.poll() is not None
    if not finished_first:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole foreground group
        else:
            os.kill(proc.pid, sig)
    try:
        stdout, stderr = proc.communicate(timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{command} did not stop within {HANG_SECONDS:g} s of {sig!r}:\n{stderr}")
    stdout = shown + stdout
    seconds = time.monotonic() - sent
    left = []
    for _ in range(20):  # a process killed by its parent's cleanup may take a moment to go
        left = _session_processes(proc.pid)
        if not left:
            break
        time.sleep(0.1)
    left += [f"temporary {p}" for p in tmp.iterdir() if not p.name.startswith("pytest-of-")]
    left += [f"tmpfs {name}" for name in _abandoned_states() - before]
    return Stop(finished_first, proc.returncode, seconds, stdout, stderr, left)


def _judge_one_line(stop: Stop, sig: int, what: str) -> None:
    assert stop.code == 128 + sig, f"{what}: exit {stop.code}\n{stop.stdout}\n{stop.stderr}"
    assert "Traceback" not in stop.stderr + stop.stdout, f"{what}:\n{stop.stderr}"
    assert not stop.left, f"{what}: left behind {stop.left}"


@pytest.fixture
def points() -> random.Random:
    return random.Random(_seed())


def test_check_stops_cleanly_at_any_moment(
    tmp_path: Path, points: random.Random, request: pytest.FixtureRequest
) -> None:
    long = request.config.getoption("stress")
    count = 28 if long else 8
    stopped, hit, slowest = 0, 0, 0.0
    for n in range(count):
        selection: list[str]
        if long:
            selection, typical = [], 12.0  # the whole quick check
        else:
            selection, typical = points.choice(SELECTIONS)
        # From the header line (Python's own start-up is not ours to handle); to 80% of the
        # typical time: most land mid-run.
        delay = points.uniform(0.0, 0.8 * typical)
        sig = points.choice([signal.SIGINT, signal.SIGTERM])
        report = tmp_path / f"verdict-{n}.json"
        junit = tmp_path / f"verdict-{n}.xml"
        command = [sys.executable, "-m", "lance_offsets", "check", *selection]
        command += ["--seed", str(n), "--json", str(report), "--junit", str(junit)]
        what = f"point {n}: {signal.Signals(sig).name} after {delay:.2f} s of {command[3:]}"
        stop = _interrupt(command, delay, sig, tmp_path / f"tmp-{n}", tmp_path, ready="checking ")
        print(f"{what}: exit {stop.code} in {stop.seconds:.2f} s, left {len(stop.left)}")
        if stop.finished_first:
            assert stop.code == 0, stop.stdout + stop.stderr
            continue
        assert not stop.left, f"{what}: left behind {stop.left}"
        if " in " in stop.stdout and "(seed " in stop.stdout:
            # The run had printed its verdict: the signal came as it wound down. The first one
            # is ignored then; in Python's last milliseconds (its signal handling already torn
            # down) the signal's default ends it, as a shell reports it: 128 + the signal.
            assert stop.code in (0, -sig), f"{what}: exit {stop.code}"
            assert "Traceback" not in stop.stderr, stop.stderr
            continue
        hit += 1
        slowest = max(slowest, stop.seconds)
        _judge_one_line(stop, sig, what)
        lines = stop.stderr.splitlines()
        said = [line for line in lines if "interrupted by" in line]
        assert said == [
            f"lance-offsets: error: check: interrupted by {signal.Signals(sig).name} after "
            + said[0].split(" after ", 1)[1]
        ], lines
        assert all(line.startswith(("[", "  ..")) for line in lines if line not in said), lines
        document = json.loads(report.read_text())
        assert document["interrupted"] == signal.Signals(sig).name
        asked = document["only"] if document["only"] is not None else property_ids()
        assert sorted(list(document["properties"]) + document["not_run"]) == sorted(asked)
        assert document["not_run"], "an interrupted run leaves something not run"
        cases = list(ET.parse(junit).getroot().iter("testcase"))
        assert len(cases) == len(asked)  # one case per property asked for, run or not
        skips = [c.find("skipped") for c in cases]
        messages = [s.get("message", "") for s in skips if s is not None]
        marked = sum("not run: the check was interrupted" in m for m in messages)
        assert marked == len(document["not_run"])
        stopped += 1
    print(f"{count} points, {hit} interrupted mid-run, slowest stop {slowest:.2f} s, leftovers 0")
    assert hit >= count // 2, "most points should land while the check runs"


# Long (a pytest run of the suite, interrupted at four points): CI's pass of the tests marked
# stress runs it; test_check_stops_cleanly_at_any_moment keeps interrupts in the default run.
@pytest.mark.stress
def test_the_pytest_suite_stops_cleanly_and_writes_its_junit(
    tmp_path: Path, points: random.Random
) -> None:
    for n in range(4):
        # From pytest's first dot (the first test's result, or xdist's "bringing up nodes...":
        # pytest and its plugins are loaded and ours armed the signals by then); the rest of
        # the six properties take about four seconds more.
        delay = points.uniform(0.0, 3.5)
        sig = points.choice([signal.SIGINT, signal.SIGTERM])
        junit = tmp_path / f"junit-{n}.xml"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        command += ["--pyargs", "lance_offsets.conformance.suite", "--conformance-seed", str(n)]
        command += ["--conformance-only", "C1,C2,M1,D1,D3,F2", f"--junitxml={junit}"]
        command += ["--rootdir", str(tmp_path)]
        if n % 2:  # xdist: the controller, and workers that hear SIGTERM only through it
            command += ["-n", "2"]
        what = f"pytest point {n}: {signal.Signals(sig).name} after {delay:.2f} s {command[-2:]}"
        stop = _interrupt(command, delay, sig, tmp_path / f"tmp-{n}", tmp_path, ready=".")
        print(f"{what}: exit {stop.code} in {stop.seconds:.2f} s, left {len(stop.left)}")
        if stop.finished_first or stop.code in (0, 1):
            continue
        _judge_one_line(stop, sig, what)
        assert junit.exists(), f"{what}: no JUnit file\n{stop.stdout}"


def _hold_lock(path: str, ready: str) -> None:
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        Path(ready).touch()
        time.sleep(60)


def test_a_cli_command_waiting_forever_stops_with_one_line(tmp_path: Path) -> None:
    # `set --lock-timeout forever` on a key another process holds waits until the holder lets
    # go: Ctrl-C must end it with one line, the old value intact and no temporary file left.
    from lance_offsets import LockFileOffsetStore

    base = tmp_path / "offsets"
    with LockFileOffsetStore.open(str(base), "billing") as store:
        store.save(7, 1, 100)
    lock = base / "billing" / "topic-7-consumer-1.lock"
    ready = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_interrupts import _hold_lock; _hold_lock({str(lock)!r}, {str(ready)!r})",
        ],
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        for sig in (signal.SIGINT, signal.SIGTERM):
            command = [sys.executable, "-m", "lance_offsets", "set", str(base), "billing"]
            command += ["7", "1", "5", "--lock-timeout", "forever"]
            stop = _interrupt(command, 1.5, sig, tmp_path / f"tmp-{sig}", tmp_path)
            print(f"set: {signal.Signals(sig).name}: exit {stop.code} in {stop.seconds:.2f} s")
            _judge_one_line(stop, sig, "set")
            assert stop.stderr.splitlines() == [
                f"lance-offsets: error: set: interrupted by {signal.Signals(sig).name}"
            ]
            assert sorted(p.name for p in (base / "billing").iterdir()) == [
                "topic-7-consumer-1.lock",
                "topic-7-consumer-1.offset",
            ]
    finally:
        holder.kill()
        holder.wait()
    with LockFileOffsetStore.open(str(base), "billing") as store:
        assert store.load(7, 1) == 100
