"""The suite itself: reference verdicts, capabilities, the CLI's JSON, a light plugin."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lance_offsets.conformance import PROPERTIES, check_property, run_checks, store_machine
from lance_offsets.conformance._catalog import property_ids
from lance_offsets.conformance._check import report_json
from lance_offsets.conformance._profiles import PROFILES, Tally
from lance_offsets.conformance._run import failure_text
from lance_offsets.conformance.reference import memory

from lance_offsets import MemoryOffsetStore

MEMORY = "lance_offsets.conformance.reference:memory"


def test_memory_store_passes_or_is_not_applicable() -> None:
    results = run_checks(MEMORY, profile="smoke", only=property_ids("conformance"))
    verdict = {r.id: r.outcome for r in results}
    assert {p for p, o in verdict.items() if o == "failed"} == set(), results
    # Missing capabilities are reported, never passed.
    for pid in ("P1", "P2", "F1", "S1"):
        assert verdict[pid] == "not-applicable"


def test_lockfile_store_passes_the_machine_properties() -> None:
    for pid in ("C5", "P1", "F1"):
        result = check_property(
            "lance_offsets.conformance.reference:lockfile", pid, profile="smoke"
        )
        assert result.outcome == "passed", result


def test_json_lists_every_property_of_the_catalog() -> None:
    results = run_checks(MEMORY, profile="smoke", only=["C1", "P1"])
    document = report_json(MEMORY, results, 1.0)
    assert document["store"] == MEMORY
    assert document["properties"] == {"C1": "passed", "P1": "not-applicable"}
    assert set(document["details"]) == {"C1", "P1"}
    assert set(PROPERTIES) >= set(document["properties"])


def test_check_command_exit_status_and_json(tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lance_offsets",
            "check",
            MEMORY,
            "--only",
            "C1,C2,P1",
            "--profile",
            "smoke",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,  # not the checkout: `-m` would import the source folder over the install
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "C2   absent keys load as None" in done.stdout
    assert json.loads(out.read_text())["properties"]["P1"] == "not-applicable"


def test_plugin_import_is_light(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lance_offsets.conformance._plugin"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: `-c` would import the source folder over the install
    )
    assert "hypothesis" not in done.stderr


# The one line a third party writes to get the machine into their suite (settings: few examples).
MemoryMachine = store_machine(memory)
MemoryMachine.TestCase.settings = PROFILES["smoke"]
TestMemoryMachine = MemoryMachine.TestCase


def undeclared_memory(path: str) -> MemoryOffsetStore:
    """The memory store, claiming nothing: held to everything, so P1 must fail."""
    del path
    return MemoryOffsetStore()


class NarrowStore(MemoryOffsetStore):
    """A correct store with a narrower domain than the contract, which it declares."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        if isinstance(offset, int) and not isinstance(offset, bool) and 2**63 <= offset < 2**64:
            raise ValueError("this store keeps offsets in a signed 64-bit column")
        super().save(topic_id, consumer_id, offset)


def narrow(path: str) -> NarrowStore:
    del path
    return NarrowStore()


narrow.persistent = False  # type: ignore[attr-defined]
narrow.offset_max = 2**63 - 1  # type: ignore[attr-defined]


def test_a_store_that_declares_nothing_is_held_to_everything() -> None:
    result = check_property(undeclared_memory, "P1", profile="smoke")
    assert result.outcome == "failed", result
    assert "[P1 " in result.details


def test_declared_ranges_narrow_the_strategies() -> None:
    for pid in ("C1", "C3", "C7"):
        assert check_property(narrow, pid, profile="smoke").outcome == "passed"
    narrow.offset_max = 2**64 - 1  # type: ignore[attr-defined]
    try:
        assert check_property(narrow, "C3", profile="smoke").outcome == "failed"
    finally:
        narrow.offset_max = 2**63 - 1  # type: ignore[attr-defined]


# -- discards, evidence, readable failures ------------------------------------------------------


def test_every_example_is_counted_and_a_pass_reports_it() -> None:
    for pid in ("C1", "C7", "H1"):  # a machine and two Hypothesis tests
        result = check_property(MEMORY, pid, profile="smoke")
        assert result.outcome == "passed", result
        assert result.evidence["discarded"] == 0, result
        assert int(result.evidence["examples"]) >= PROFILES["smoke"].max_examples, result


def test_a_run_that_discards_most_examples_is_no_verdict(zoo_importable: None) -> None:
    # A zero for absent keys (C2) breaks most C4 examples first: C4 is hardly exercised. How
    # many depends on the draws; the rule must hold for each run, and bite on most.
    results = [check_property("zoo.defects:ZeroForAbsent", "C4", seed=s) for s in (0, 1, 2)]
    for result in results:
        examples, discarded = result.evidence["examples"], result.evidence["discarded"]
        assert isinstance(discarded, int)
        assert isinstance(examples, int)
        if discarded * 2 > examples:
            assert result.outcome == "unverified", result
            why = f"{discarded} of {examples} examples discarded because C2 broke first"
            assert why in result.details, result
        else:
            assert result.outcome == "passed", result
    assert sum(r.outcome == "unverified" for r in results) >= 2, results


def test_a_time_dependent_store_is_reported_as_such_with_its_steps(
    zoo_importable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's cache is trusted for one clock tick. Time stands still until the cache has
    # served its first stale answer, then moves on a tick per read: the failure Hypothesis
    # found does not happen again when it replays the same steps.
    from zoo import machine_zoo
    from zoo._base import DirStore

    moving: list[bool] = []
    ticks = itertools.count(1)
    monkeypatch.setattr(machine_zoo, "clock", lambda: float(next(ticks)) if moving else 0.0)
    cached_load = machine_zoo.TickingCache.load

    def load(store: machine_zoo.TickingCache, topic_id: int, consumer_id: int) -> int | None:
        got = cached_load(store, topic_id, consumer_id)
        if got != DirStore.load(store, topic_id, consumer_id):
            moving.append(True)
        return got

    monkeypatch.setattr(machine_zoo.TickingCache, "load", load)
    result = check_property(machine_zoo.TickingCache, "C4", profile="smoke")
    assert result.outcome == "failed", result
    first = result.details.splitlines()[0]
    assert first.startswith("[C4 delete is idempotent] the store's behaviour was time-dependent")
    assert "A1.delete(" in result.details  # the store's own steps, not only Hypothesis' words
    assert "Store steps of the last example" in result.details


def test_a_slow_failure_stops_the_run_soon_after_it_and_reports_it(
    zoo_importable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HeldLock keeps a lock from open to close: a second handle waits 0.5 s, then raises.
    # Shrinking replays that wait again and again (with a real busy timeout of 15 s, one
    # property's run took a quarter of an hour). The budget stops the run 0.2 s (here) after its
    # first violation and reports the latest failure with the steps that made it.
    from lance_offsets.conformance import _profiles
    from zoo import machine_zoo

    monkeypatch.setattr(_profiles, "BAD_NEWS_SECONDS", 0.2)  # under one wait
    result = check_property(machine_zoo.HeldLock, "P2", profile="ci")
    print(result.details)
    assert result.outcome == "failed", result
    lines = result.details.splitlines()
    assert lines[0].startswith("ContractViolation: [P2 open handles see other handles' writes]")
    assert "a second handle on the same path in this process" in lines[0]
    assert "TimeoutError" in lines[0]
    assert "is locked by another handle" in lines[0]
    assert "Store steps of the example (latest last):" in lines
    assert lines[-1].startswith("(the run stopped 0.2 s after its first violation, after ")
    assert int(result.evidence["examples"]) < 50  # the ci profile's 50 were not all run


def test_without_a_violation_the_budget_never_starts() -> None:
    tally = Tally()
    tally.within_budget()  # no bad news: nothing to stop, inside Hypothesis or not
    assert tally.bad_news_at is None
    assert not tally.stopped
    tally.bad_news()
    assert tally.bad_news_at is not None
    assert tally.latest is None
    tally.within_budget()  # within the budget, and outside any Hypothesis test anyway
    assert not tally.stopped


def test_an_error_that_is_no_verdict_names_the_property_and_the_running_step() -> None:
    tally = Tally(steps=["A1.save(1, 2, 3)", "A1.load(1, 2) -> 3"], running="A1.list_all()")
    text = failure_text(RuntimeError("pipe closed"), "C6", tally)
    lines = text.splitlines()
    assert lines[0] == (
        "[C6 list_all is exact and fresh] the check stopped on an error while running "
        "A1.list_all():"
    )
    assert lines[1] == "RuntimeError: pipe closed"
    assert "A1.load(1, 2) -> 3" in lines


def test_an_example_database_is_opt_in_and_kept_per_store_and_property(
    tmp_path: Path, zoo_importable: None
) -> None:
    check_property(MEMORY, "C1", profile="quick", seed=1)
    assert not Path(".hypothesis", "examples").exists()  # none by default (cwd: a fresh dir)
    database = tmp_path / "db"
    result = check_property(
        "zoo.defects:ConcatenatedNames", "C5", profile="quick", seed=1, database=str(database)
    )
    assert result.outcome == "failed", result
    [store] = database.iterdir()
    assert store.name.startswith("zoo.defects_ConcatenatedNames-")
    assert [p.name for p in store.iterdir()] == ["C5"]
    assert any(f.is_file() for f in (store / "C5").rglob("*"))  # the failure was saved


def unopenable(path: str) -> MemoryOffsetStore:
    """A factory that always raises: every machine example breaks C1 before anything else."""
    raise OSError(f"cannot open {path}")


def test_a_run_that_discards_every_example_is_no_verdict_either() -> None:
    result = check_property(unopenable, "P1", profile="smoke")
    assert result.outcome == "unverified", result
    examples = result.evidence["examples"]
    assert result.evidence["discarded"] == examples, result.evidence
    assert f"{examples} of {examples} examples discarded because C1 broke first" in result.details
