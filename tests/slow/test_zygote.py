"""Workers forked from a warm template (``stress/workers/_zygote.py``): same verdicts, no leaks.

Real processes and real kills throughout: the template is a fork-server worker, its children are
SIGKILLed by pid, and process trees are read from ``/proc``. Every test prints its seed
(``stress seed: N``); replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile

import pytest
from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.crash import _cycle
from lance_offsets.stress.crash._campaign import SAVE_OVER, property_result, run_campaign
from lance_offsets.stress.seam import _shim
from lance_offsets.stress.workers._fleet import FORKED, ONE_PER_CYCLE, Fleet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)"),
]

THREADED = "_threaded_store:lockfile"


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    found[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # it exited meanwhile
    return found


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _parent_of(pid: int) -> int:
    return _parents()[pid]


@pytest.fixture
def fork_server() -> set[int]:
    """The processes this test process has before a fleet of the test's (the fork server)."""
    with Fleet(DEFAULT_SPEC) as fleet:  # starts the fork server, which outlives every fleet
        fleet.take(spare=False).kill()
    return _descendants(os.getpid())


def test_workers_are_children_of_the_template_and_judge_like_new_processes(
    stress_options: StressOptions,
) -> None:
    with Fleet(DEFAULT_SPEC) as fleet:
        first, second = fleet.take(), fleet.take()
        template = fleet._zygote
        assert template is not None
        assert template.proc is not None
        assert fleet.how == FORKED
        assert _parent_of(first.pid) == template.proc.pid == _parent_of(second.pid)
        assert first.pid != second.pid
        root = tempfile.mkdtemp(dir=stress_options.workdir)
        # The first child saves and keeps the store open; the second, a process that never
        # had it open, reads what the first acknowledged.
        first.send({"job": "loop", "path": root, "key": (1, 2), "start": 7})
        assert first.recv(60.0) == ("looping", 7)
        assert first.recv(60.0) == ("acked", 7)
        first.kill()
        second.send({"job": "verify", "path": root, "keys": [(1, 2)], "later": None})
        tag, read = second.recv(60.0)
        assert tag == "read"
        assert read["load(1, 2)"] >= 7
        second.kill()


def test_reference_store_passes_and_a_torn_store_fails_d1_via_the_template(
    stress_options: StressOptions, zoo_importable: None
) -> None:
    good = run_campaign(DEFAULT_SPEC, stress_options, only=(SAVE_OVER,), random_kills=2)
    print(good)
    assert good.workers == FORKED
    assert (good.violations, good.errors) == ([], [])
    assert good.points >= 10
    passed = property_result("D1", good)
    assert passed.outcome == "passed", passed.details
    assert passed.evidence["workers"] == FORKED
    torn = run_campaign(
        "zoo.stress_crash_zoo:in_place",
        stress_options,
        only=(SAVE_OVER,),
        random_kills=2,
        until="D1",
    )
    print(torn)
    assert torn.workers == FORKED
    (d1,) = [v for v in torn.violations if v.prop == "D1"]  # until D1: the campaign stopped
    assert "corrupt offset file" in d1.text
    assert property_result("D1", torn).outcome == "failed"


def test_a_factory_that_starts_threads_gets_one_process_per_cycle(
    stress_options: StressOptions, zoo_importable: None
) -> None:
    said: list[str] = []
    options = dataclasses.replace(stress_options, progress=said.append)
    campaign = run_campaign(THREADED, options, only=(SAVE_OVER,), random_kills=2)
    print(campaign, said)
    why = f"{ONE_PER_CYCLE}: the factory started threads"
    assert campaign.workers.startswith(why)
    assert [line for line in said if line.startswith("workers: ")] == [
        f"workers: {campaign.workers}"
    ]
    assert (campaign.violations, campaign.errors) == ([], [])
    assert campaign.points >= 10
    result = property_result("D1", campaign)
    assert result.outcome == "passed", result.details
    assert str(result.evidence["workers"]).startswith(why)


@pytest.mark.parametrize("at", [1, 5, 20])  # after the counting run, mid-points, near the end
def test_a_template_killed_from_outside_is_replaced_and_the_campaign_goes_on(
    stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    killed: list[int] = []
    tick = _cycle.Run.tick

    def kill_the_template(run: _cycle.Run) -> None:
        tick(run)
        template = run.fleet._zygote
        if run.result.cycles == at and template is not None and template.proc is not None:
            killed.append(template.proc.pid)
            os.kill(template.proc.pid, signal.SIGKILL)  # a spare child may be pending

    monkeypatch.setattr(_cycle.Run, "tick", kill_the_template)
    said: list[str] = []
    options = dataclasses.replace(stress_options, progress=said.append)
    campaign = run_campaign(DEFAULT_SPEC, options, only=(SAVE_OVER,), random_kills=2)
    print(campaign, said)
    assert len(killed) == 1
    assert (campaign.violations, campaign.errors) == ([], [])
    assert campaign.cycles > at + 2  # it went on past the kill
    assert campaign.workers == f"{FORKED} (1 replaced after dying)"
    assert "workers: the template process died; started a new one (1)" in said


def test_close_leaves_no_process_behind(
    stress_options: StressOptions, fork_server: set[int]
) -> None:
    root = tempfile.mkdtemp(dir=stress_options.workdir)
    fleet = Fleet(DEFAULT_SPEC)
    held = fleet.take()  # handed out and never killed by its taker
    held.send({"job": "loop", "path": root, "key": (3, 4), "start": 1})
    assert held.recv(60.0) == ("looping", 1)
    fleet.take().kill()
    fleet.give_back(fleet.take())  # idle
    fleet.take()  # handed out, with a spare child requested behind it
    during = _descendants(os.getpid()) - fork_server
    assert len(during) >= 4, during  # the template and its live children
    fleet.close()
    assert _descendants(os.getpid()) - fork_server == set()


@pytest.mark.skipif(_shim.unavailable() is not None, reason=str(_shim.unavailable()))
def test_children_start_with_the_shim_unarmed_and_arm_it_themselves(
    stress_options: StressOptions,
) -> None:
    # Two children in a row count the same save through the preloaded shim: nothing armed or
    # recorded by one shows up in the next, and each one's arming works.
    counted = []
    with Fleet(DEFAULT_SPEC) as fleet:
        for _ in range(2):
            worker = fleet.take()
            path = tempfile.mkdtemp(dir=stress_options.workdir)
            job = {
                "job": "crash",
                "path": path,
                "setup": {(1, 1): 5},
                "key": (1, 1),
                "new": 6,
                "stop": None,
                "backend": "syscall",
            }
            worker.send(job)
            while (reply := worker.recv(60.0))[0] == "acked":
                pass
            worker.kill()
            tag, trace = reply
            assert tag == "done", reply
            counted.append([(op.kind, os.path.relpath(op.path, path)) for op in trace])
    assert counted[0], "the shim saw nothing"
    assert any(kind == "fsync" for kind, _ in counted[0])
    assert counted[0] == counted[1]


def test_a_factory_that_opens_a_descriptor_gets_one_process_per_cycle(
    zoo_importable: None,
) -> None:
    with Fleet("_descriptor_store:lockfile") as fleet:
        worker = fleet.take()
        worker.send({"job": "verify", "path": tempfile.mkdtemp(), "keys": [], "later": None})
        assert worker.recv(60.0)[0] == "read"
        worker.kill()
        print(fleet.how)
        assert fleet.how.startswith(f"{ONE_PER_CYCLE}: the factory opened descriptors")
        assert tempfile.gettempdir() in fleet.how  # names what it opened
        assert fleet._zygote is None
