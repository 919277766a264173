"""Server stores in the quick profile, without PostgreSQL: the zoo's own TCP key-value server.

Real parts: the server is a real process (``tests/zoo/_kv_server.py``) in its own session, killed
with SIGKILL and restarted by the suite, reached through the suite's real TCP proxy; the checks
run through the real ``lance-offsets check`` command. Each test looks for leftover processes by
the directory the server was given (``ZOO_KV_ROOT``): none may outlive the check, whether it
ended normally, failed, or was stopped by SIGTERM. Seeded (``LANCE_TEST_SEED``, printed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.crash._campaign import OPEN_RANDOM_KILLS, SHORT_RANDOM_KILLS
from lance_offsets.stress.servers import server_of
from lance_offsets.stress.servers._campaigns import declared_server
from lance_offsets.stress.servers._connfaults import QUICK_FAULTS, check_connection_faults
from lance_offsets.stress.servers._crash import QUICK_KILLS, check_server_crash

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.skipif(sys.platform == "win32", reason="the zoo's server runs in a POSIX session"),
]

ZOO = "zoo.kv_zoo"
#: Seconds a check may take before the test calls it a hang (a quick D2 and F2: about 7 s).
DEADLINE = 120.0


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("LANCE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed {value} (replay: LANCE_TEST_SEED={value})")
    return value


@pytest.fixture
def kv_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the zoo's servers keep their directories; whatever runs there is killed after."""
    root = tmp_path / "kv"
    root.mkdir()
    monkeypatch.setenv("ZOO_KV_ROOT", str(root))
    servers = ("ZOO_KV_FSYNC", "ZOO_KV_SNAPSHOT")  # where a started server is; each test its own
    for name in servers:
        monkeypatch.delenv(name, raising=False)
    yield root
    for name in servers:
        os.environ.pop(name, None)
    for pid in _processes_under(root):  # a failed test must not leave a server to the others
        os.kill(pid, signal.SIGKILL)


def _processes_under(root: Path) -> list[int]:
    """Live processes whose command line names ``root``: a zoo server started there."""
    found = []
    marker = str(root).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            command = Path("/proc", name, "cmdline").read_bytes()
            state = Path("/proc", name, "stat").read_bytes()
        except OSError:
            continue
        if marker in command and state[state.rfind(b")") + 2 :].split()[0] != b"Z":
            found.append(int(name))
    return found


def _left(root: Path) -> list[int]:
    """The processes still running under ``root`` a moment after the check (it reaps first)."""
    for _ in range(20):
        left = _processes_under(root)
        if not left:
            return []
        time.sleep(0.1)
    return left


def _check(name: str, seed: int, cwd: Path) -> dict[str, dict[str, object]]:
    report = cwd / f"{name}.json"
    command = [sys.executable, "-m", "lance_offsets", "check", f"{ZOO}:{name}"]
    command += ["--only", "D2,F2", "--seed", str(seed), "--json", str(report)]
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    print(done.stdout[-4000:], done.stderr[-2000:])
    assert done.returncode in (0, 1), done.stderr
    details: dict[str, dict[str, object]] = json.loads(report.read_text())["details"]
    return details


@pytest.mark.parametrize(
    ("name", "outcomes"),
    [("kv_fsync", ("passed", "passed")), ("kv_snapshot", ("failed", "passed"))],
)
def test_the_quick_check_kills_and_cuts_the_server_and_stops_it(
    name: str, outcomes: tuple[str, str], seed: int, kv_root: Path, tmp_path: Path
) -> None:
    d2, f2 = _check(name, seed, tmp_path).values()
    assert (d2["outcome"], f2["outcome"]) == outcomes, (d2["details"], f2["details"])
    evidence = d2["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["fault"] == "server killed"
    assert evidence["server kills"] == QUICK_KILLS
    assert evidence["commits acknowledged before a kill"] > 0
    details = str(d2["details"])
    if outcomes[0] == "failed":
        # An acknowledged save the restarted server forgot: the violation leads, with the kill.
        assert details.splitlines()[0].startswith("history of key"), details
        assert "not linearizable" in details.splitlines()[0]
        assert "server killed" in details
    else:
        assert details.startswith(f"D2 under server killed (seed {seed}): {QUICK_KILLS} fault(s)")
    faults = f2["evidence"]
    assert isinstance(faults, dict)
    assert faults["fault"] == "connection faults"
    assert faults["connection cut after the request, before the reply"] > 0
    assert _left(kv_root) == [], "a server process outlived the check"
    assert list(kv_root.iterdir()), "the server was started under ZOO_KV_ROOT"


def test_a_restart_that_returns_before_the_server_listens_is_no_failure(
    seed: int, kv_root: Path, stress_options: StressOptions
) -> None:
    # The declaration's restart returns at once: for a moment every call is refused. A kill's
    # window stays open until a fresh handle answers, so a correct store passes (it failed D2
    # with "raised ConnectionRefusedError" when the window closed as start() returned).
    options = dataclasses.replace(stress_options, long=False, seed=seed, workers=2)
    factory = _factory("kv_hasty")
    server = server_of(factory)
    assert server is not None
    with declared_server(factory) as why:
        assert why is None
        result = check_server_crash(f"{ZOO}:kv_hasty", server, options)
    print(result.details)
    assert result.outcome == "passed", result.details
    assert _left(kv_root) == []


def test_a_client_that_takes_a_lost_connection_for_an_acknowledgement_fails_f2(
    seed: int, kv_root: Path, stress_options: StressOptions
) -> None:
    options = dataclasses.replace(stress_options, long=False, seed=seed, workers=2)
    factory = _factory("kv_swallowing")
    server = server_of(factory)
    assert server is not None
    with declared_server(factory) as why:
        assert why is None
        result = check_connection_faults(f"{ZOO}:kv_swallowing", server, options)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert f"F2 under connection faults (seed {seed}): {QUICK_FAULTS} fault(s)" in result.details
    assert _left(kv_root) == []


def test_a_check_stopped_by_sigterm_leaves_no_server(
    seed: int, kv_root: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "lance_offsets", "check", f"{ZOO}:kv_fsync", "--only", "D2"]
    proc = subprocess.Popen(
        [*command, "--seed", str(seed)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    give_up = time.monotonic() + DEADLINE
    while not _processes_under(kv_root) and time.monotonic() < give_up and proc.poll() is None:
        time.sleep(0.05)
    assert _processes_under(kv_root), "the check never started the server"
    time.sleep(random.Random(seed).uniform(0.2, 1.5))  # somewhere in the campaigns
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=DEADLINE)
    print(stdout[-2000:], stderr[-2000:])
    assert proc.returncode in (0, 128 + signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    assert _left(kv_root) == [], "a server process outlived the interrupted check"


def _factory(name: str) -> object:
    from lance_offsets.conformance._spec import load_factory

    return load_factory(f"{ZOO}:{name}")


def test_the_runner_stops_the_server_it_held_and_a_failing_block_too(
    seed: int, kv_root: Path, stress_options: StressOptions
) -> None:
    options = dataclasses.replace(stress_options, long=False, seed=seed, workers=2, seconds=0.5)
    (result,) = run_properties(f"{ZOO}:kv_fsync", ["M1"], options)
    assert result.outcome == "passed", result.details
    assert list(kv_root.iterdir()), "the runner started the declared server"
    assert _left(kv_root) == [], "the runner left its server running"

    factory = _factory("kv_fsync")

    def fails_mid_run() -> None:
        with declared_server(factory) as why:
            assert why is None
            assert _processes_under(kv_root)
            with declared_server(factory):  # a nested block uses the server, leaves it running
                pass
            assert _processes_under(kv_root)
            raise RuntimeError("mid-run")

    with pytest.raises(RuntimeError, match="mid-run"):
        fails_mid_run()
    assert _left(kv_root) == []


#: A long crash campaign of 40 cycles on ``kv_fsync``, in a process of its own: the crash
#: campaign's workers fork from a server process that keeps the environment it started with, and
#: one started by an earlier test here would not know where this test's key-value server is.
LONG_CAMPAIGN = """
import json, sys
from lance_offsets.conformance._spec import load_factory
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.crash._campaign import property_result, run_campaign
from lance_offsets.stress.servers._campaigns import declared_server

spec = "zoo.kv_zoo:kv_fsync"
with declared_server(load_factory(spec)):
    campaign = run_campaign(spec, StressOptions(long=True, cycles=40, seed=int(sys.argv[1])))
d2 = property_result("D2", campaign)
print(json.dumps({"points": campaign.points, "random kills": campaign.random_kills,
                  "skipped": campaign.skipped_kills, "errors": campaign.errors,
                  "evidence": d2.evidence, "details": d2.details}))
"""


def test_a_long_crash_campaign_skips_client_kills_that_reach_nothing(
    seed: int, kv_root: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LONG_CAMPAIGN, str(seed)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    campaign = json.loads(done.stdout.splitlines()[-1])
    print(campaign["details"])
    assert campaign["errors"] == []
    assert campaign["points"] == 0  # the client makes no file operation
    # The short run's client kills (and those during open) stay, the rest of the 40 are skipped.
    assert campaign["random kills"] == SHORT_RANDOM_KILLS + OPEN_RANDOM_KILLS
    assert campaign["skipped"] == 40 - SHORT_RANDOM_KILLS
    assert campaign["evidence"]["random kills skipped (out of reach)"] == 40 - SHORT_RANDOM_KILLS
    skipped = f"{40 - SHORT_RANDOM_KILLS} random kills skipped: the store declares its server"
    assert skipped in campaign["details"]
    assert _left(kv_root) == []
