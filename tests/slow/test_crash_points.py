"""Crash points and random kills (D1, D2, D4, D5): the reference stores pass, each zoo store fails.

Every test prints its seed (``stress seed: N``); replay with ``--stress-seed N``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
from lance_offsets.conformance._diagnosis import diagnose
from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties
from lance_offsets.stress.crash import _cycle as _crashrun
from lance_offsets.stress.crash._campaign import (
    OPEN,
    OPEN_RANDOM_KILLS,
    SAVE_OVER,
    check_d1,
    check_d2,
    check_d4,
    check_d5,
    damages,
    property_result,
    run_campaign,
)

pytestmark = pytest.mark.slow

ZOO = "zoo.stress_crash_zoo"


@pytest.mark.timeout(3600)  # with --stress: 2,000 kill cycles, several minutes
def test_store_under_test_passes_every_crash_property(
    store_spec: str, stress_options: StressOptions
) -> None:
    results = run_properties(store_spec, ["D1", "D2", "D4", "D5"], stress_options)
    for result in results:
        print(result.id, result.outcome, result.details)
    if store_spec == DEFAULT_SPEC:
        assert [r.outcome for r in results] == ["passed"] * 4, [r.details for r in results]
        assert "after fsync, before rename" in results[0].details
    else:  # --store SPEC: what the store does not claim is not applicable, the rest passes
        # (or is unverified: a store whose I/O the interposer cannot see gets no crash point)
        assert {r.outcome for r in results} <= {"passed", "unverified", "not-applicable"}, results
    for result in results:
        if result.outcome != "not-applicable":
            assert int(result.evidence["cycles"]) > 0


@pytest.mark.usefixtures("zoo_importable")
def test_careful_zoo_store_passes(stress_options: StressOptions) -> None:
    campaign = run_campaign(f"{ZOO}:careful", stress_options, only=(SAVE_OVER,), random_kills=2)
    assert campaign.violations == []
    assert campaign.errors == []
    assert campaign.points >= 10  # lock, temp open, write, fsync, close, replace, dir fsync...
    assert campaign.random_kills == 2
    result = property_result("D1", campaign)
    assert result.outcome == "passed", result.details
    assert result.evidence == {
        "crash points killed": campaign.points,
        "random kills": 2,
        "cycles": campaign.cycles,
        "points not reached": campaign.unreached,
        "states judged old or new": campaign.judged["D1"],
        # The interposer judges because the shim, recording the same run, saw the same calls.
        "tracing": "python interposer (the syscall shim saw the same 10 operations)",
        "workers": "forked from a warm template",
        "time shared with": "D2, D4, D5",
    }
    # Every undamaged crash was judged old-or-new, and the later save after it timed; damaged
    # ones only loud-or-correct (D4); D2 only those killed after the acknowledgement.
    plain = campaign.cycles - campaign.damaged
    assert campaign.judged["D1"] == plain
    assert campaign.judged["D5"] == plain
    assert campaign.judged.get("D2", 0) < plain  # kills before the ack are not D2's
    assert campaign.judged["D4"] == campaign.cycles
    assert result.seconds == campaign.seconds > 0


@pytest.mark.usefixtures("zoo_importable")
def test_a_save_the_store_raises_on_uncrashed_is_its_own_fault_not_a_crash_finding(
    tmp_path: pathlib.Path,
) -> None:
    # SignedBigint raises OverflowError on offsets of 2**63 and above (C1 fails it). Seed 3
    # starts one random save loop in that range: the loop ends on the store's own error, with
    # nothing killed mid-save. That must neither stop the campaign as a harness failure nor
    # fail D1-D5: the cycle judges nothing and the verdict says why, pointing at C1.
    options = StressOptions(seed=3, workdir=str(tmp_path))
    campaign = run_campaign("zoo.defects:SignedBigint", options, only=(SAVE_OVER,), random_kills=20)
    print(options.seed, campaign)
    assert campaign.errors == []
    assert campaign.violations == []
    assert len(campaign.refused) == 1, campaign.refused
    assert "save of 9884925757868003054: OverflowError" in campaign.refused[0]
    assert campaign.random_kills == 19  # the 20th loop was never killed: it had ended
    for pid in ("D1", "D2", "D4", "D5"):
        result = property_result(pid, campaign)
        assert result.outcome == "passed", result.details
        assert "1 change(s) raised with no crash or fault" in result.details
        assert "see C1" in result.details
        assert result.evidence["changes that raised uncrashed (C1)"] == 1


@pytest.mark.usefixtures("zoo_importable")
def test_a_listing_wrong_with_no_crash_at_all_is_not_blamed_on_a_crash(
    stress_options: StressOptions,
) -> None:
    # SwappedListing's list_all swaps topic and consumer (C6 fails it). Every crash's listing
    # is then wrong too; a store no crash touched, listed by a fresh worker, shows it is the
    # store's own listing. D4 must not fail for it, and the verdict says why, pointing at C6.
    campaign = run_campaign("zoo.defects:SwappedListing", stress_options, only=(SAVE_OVER,))
    print(stress_options.seed, campaign.list_wrong, [v.text for v in campaign.violations[:1]])
    assert campaign.errors == []
    assert campaign.violations == []
    assert campaign.damaged == len(damages())  # damaged crashes judged, their listing aside
    assert "list_all() is wrong on a new store no crash touched" in campaign.list_wrong
    assert "see C6" in campaign.list_wrong
    result = property_result("D4", campaign)
    assert result.outcome == "passed", result.details
    assert campaign.list_wrong in result.details


def test_a_listing_right_on_an_uncrashed_store_keeps_every_crash_judged() -> None:
    # The demonstration is only asked when a judgement includes a listing: a store whose
    # leftover temp file shows up in list_all still fails D4 (its uncrashed listing is right).
    campaign = run_campaign(
        f"{ZOO}:temp_listed", StressOptions(seed=5), only=(SAVE_OVER,), random_kills=0, until="D4"
    )
    assert campaign.list_wrong == ""
    assert property_result("D4", campaign).outcome == "failed"


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_whose_io_no_crash_point_reaches_is_unverified_not_passed(
    stress_options: StressOptions,
) -> None:
    # SQLite writes from C: the Python interposer sees none of its I/O. With the syscall
    # backend kept out (as on a machine without it), no crash point exists and only random
    # kills run. Finding nothing then says little: D1, D2, D4 are "unverified".
    options = dataclasses.replace(stress_options, backend="python")
    campaign = run_campaign(
        "zoo.powerloss_zoo:sqlite_extra", options, only=(SAVE_OVER,), random_kills=2
    )
    print(stress_options.seed, campaign)
    assert campaign.points == 0
    assert campaign.random_kills == 2
    assert campaign.violations == []
    for pid in ("D1", "D2", "D4"):
        result = property_result(pid, campaign)
        assert result.outcome == "unverified", result.details
        assert result.details.startswith("no crash point reached: the store's I/O is not visible")
        assert "2 random kills found nothing" in result.details
        assert "the syscall backend was not tried" in result.details
        assert result.evidence["crash points killed"] == 0
        assert result.evidence["random kills"] == 2
    # D5 is about the later save after any kill: random kills exercise it.
    assert property_result("D5", campaign).outcome == "passed"


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "prop", "finding", "cause"),
    [
        ("in_place", "D1", "corrupt offset file", "in-place-write"),
        (
            "acked_before_written",
            "D2",
            "the acknowledged change was lost",
            "acknowledged-before-durable",
        ),
        ("temp_listed", "D4", "list_all() = raised ValueError", "leftover-listed"),
        ("exclusive_temp", "D4", "raised FileExistsError", "leftover-blocks"),
        ("stale_lock", "D5", "did not return within 1 s", "stale-lock-file"),
    ],
)
def test_zoo_store_fails_its_property(
    stress_options: StressOptions, factory: str, prop: str, finding: str, cause: str
) -> None:
    campaign = run_campaign(
        f"{ZOO}:{factory}", stress_options, only=(SAVE_OVER,), random_kills=3, bound=1.0, until=prop
    )
    broken = [v for v in campaign.violations if v.prop == prop]
    assert broken, f"{factory} passed {prop}: {campaign}"
    assert len(broken) == 1  # it stopped there, and that crash was judged once
    text = broken[0].text
    print(text)
    assert finding in text
    assert "killed" in text or "random kill" in text
    assert "expected " in text
    assert "files after the kill: " in text
    # The report leads with the violation and names the likely cause from this evidence.
    result = property_result(prop, campaign)
    assert result.details.splitlines()[0] == broken[0].headline
    assert finding in broken[0].headline
    diagnosis = diagnose([result])[prop]
    assert diagnosis.likely[0].cause.id == cause, result.artifacts


@pytest.mark.usefixtures("zoo_importable")
def test_a_store_that_hangs_is_reported_with_what_it_was_doing(
    stress_options: StressOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_crashrun, "STEP_SECONDS", 2.0)  # the parent's wait for each answer
    campaign = run_campaign(f"{ZOO}:leaked_lock", stress_options, only=(SAVE_OVER,), random_kills=0)
    (error,) = campaign.errors
    print(error)
    assert error.startswith("harness: scenario save over an old value: setting up ")
    assert "then the change (save " in error
    assert "the store hung for 2 s (a lock held by a crashed process?" in error
    assert ".lock (0 bytes: b'')" in error  # the files it left name the culprit
    result = property_result("D1", campaign)
    assert result.outcome == "failed"
    assert error in result.details
    assert result.details.splitlines()[0] == error  # what stopped it leads
    assert diagnose([result])["D1"].likely[0].cause.id == "unbounded-wait"


@pytest.mark.usefixtures("zoo_importable")
def test_a_failure_reads_well(stress_options: StressOptions) -> None:
    campaign = run_campaign(
        f"{ZOO}:in_place", stress_options, only=(SAVE_OVER,), random_kills=0, until="D1"
    )
    result = property_result("D1", campaign)
    print(result.details)
    assert result.outcome == "failed"
    assert f"pytest --stress-seed {stress_options.seed}" in result.details
    assert "scenario save over an old value" in result.details
    assert "killed after op #1 open" in result.details
    assert "expected old " in result.details
    assert property_result("D5", campaign).outcome == "passed"


@pytest.mark.stress
@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "prop"),
    [
        ("in_place", "D1"),
        ("acked_before_written", "D2"),
        ("temp_listed", "D4"),
        ("exclusive_temp", "D4"),
        ("stale_lock", "D5"),
    ],
)
def test_zoo_store_fails_the_full_check(
    stress_options: StressOptions, factory: str, prop: str
) -> None:
    options = dataclasses.replace(stress_options, long=False)
    check = {"D1": check_d1, "D2": check_d2, "D4": check_d4, "D5": check_d5}[prop]
    result = check(f"{ZOO}:{factory}", options)
    print(result.details)
    assert result.outcome == "failed"


@pytest.mark.usefixtures("zoo_importable")
def test_a_kill_during_open_that_breaks_the_store_fails_d2(stress_options: StressOptions) -> None:
    """An open that rewrites its config in place, killed between truncate and write: D2."""
    campaign = run_campaign("zoo.beyond_zoo:config_rewrite", stress_options, only=(OPEN,))
    result = property_result("D2", campaign)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert diagnose([result])["D2"].likely[0].cause.id == "open-rewrites"
    assert "scenario open over committed data" in result.details
    assert "killed after op #3 open store.json" in result.details
    assert "found reopening the store raised ValueError: corrupt store config" in result.details
    assert "store.json (0 bytes: b'')" in result.details
    for pid in ("D1", "D4", "D5"):  # the store keeps every other crash property
        assert property_result(pid, campaign).outcome == "passed"


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("spec", [f"{ZOO}:careful", DEFAULT_SPEC])
def test_correct_stores_survive_kills_during_open(stress_options: StressOptions, spec: str) -> None:
    """The control: every crash point of an open, and random kills in a loop of opens."""
    campaign = run_campaign(spec, stress_options, only=(OPEN,), random_kills=0)
    assert campaign.violations == [], [v.text for v in campaign.violations]
    assert campaign.errors == []
    assert campaign.points >= 1  # the factory's mkdir at least
    assert campaign.random_kills == OPEN_RANDOM_KILLS


@pytest.mark.usefixtures("zoo_importable")
def test_a_log_replay_that_skips_damaged_records_after_a_kill_fails_d4(
    stress_options: StressOptions,
) -> None:
    """A log a clean close empties (F1 never damages it): damaged after a kill, silently lost."""
    campaign = run_campaign(
        "zoo.beyond_zoo:skipping_log", stress_options, only=(SAVE_OVER,), random_kills=0
    )
    result = property_result("D4", campaign)
    print(result.details)
    assert result.outcome == "failed", result.details
    assert diagnose([result])["D4"].likely[0].cause.id == "replay-skips-damage"
    assert "damage after the kill: " in result.details
    assert "offsets.log" in result.details
    assert "(None for a committed key)" in result.details
    assert int(result.evidence["damaged after a kill"]) >= 1
    for pid in ("D1", "D2", "D5"):  # undamaged, the log keeps every crash property
        assert property_result(pid, campaign).outcome == "passed", pid


@pytest.mark.usefixtures("zoo_importable")
def test_correct_stores_are_loud_or_correct_on_damage_after_a_kill(
    stress_options: StressOptions,
) -> None:
    """The control: one file per key, damaged after a kill, raises or reads right."""
    campaign = run_campaign(f"{ZOO}:careful", stress_options, only=(SAVE_OVER,), random_kills=0)
    assert campaign.violations == [], [v.text for v in campaign.violations]
    assert campaign.damaged >= 1


def test_one_garbled_line_keeps_the_others() -> None:
    garble = damages()["a line garbled"]
    assert garble(b"a 1\nb 2\nc 3\n") == b"a 1\n???\nc 3\n"
    assert garble(b"12\n") == b"??\n"
    assert garble(b"torn") == b"????"
    assert {"emptied", "cut to half"} <= set(damages())  # F1's generic damage, reused
