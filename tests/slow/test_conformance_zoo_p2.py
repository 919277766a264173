"""Zoo stores whose defect only shows from another handle or process fail P2; stores broken in
another way are not blamed on P2; the other process's death names the call it was running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lance_offsets.conformance import check_property
from lance_offsets.conformance._diagnosis import diagnose
from lance_offsets.conformance._remote import RemoteError, RemoteStore
from zoo import defects, machine_zoo
from zoo.defects import has_readable_steps

P2 = sorted(
    [f"zoo.defects:{name}" for name, pid in defects.EXPECTED.items() if pid == "P2"]
    + [f"zoo.machine_zoo:{name}" for name, pid in machine_zoo.EXPECTED.items() if pid == "P2"]
)


#: The likely cause the report gives for each (conformance/_diagnosis.py).
CAUSE = {
    "zoo.defects:StaleCache": "stale-cache",
    "zoo.defects:CacheOnlyListing": "stale-cache",
    "zoo.machine_zoo:DirtyCheck": "skips-unchanged-save",
}


@pytest.mark.parametrize("spec", P2)
def test_stale_handles_fail_p2(spec: str) -> None:
    result = check_property(spec, "P2", profile="smoke")
    assert result.outcome == "failed", result
    assert "[P2 " in result.details
    assert has_readable_steps(result.details), result.details
    diagnosis = diagnose([result])["P2"]
    assert diagnosis.likely[0].cause.id == CAUSE[spec], result.artifacts


@pytest.mark.parametrize("name", ["NextIdAtOpen", "KeySetAtOpen"])
def test_a_save_that_raises_beside_another_handle_fails_p2(name: str) -> None:
    # The handle acts on what it read at open (the next free id, the key set): its save raises
    # once another handle changed the store, and only then. That is P2's finding, shown with
    # both handles' steps; C1, which has one handle only, passes.
    spec = f"zoo.open_snapshot_zoo:{name}"
    result = check_property(spec, "P2", profile="smoke")
    assert result.outcome == "failed", result
    first = result.details.splitlines()[0]
    assert first.startswith("ContractViolation: [P2 open handles see other handles' writes]")
    assert "raised FileExistsError" in first, first
    assert " had the store open; the same save on a fresh store holding the same offsets" in first
    assert "steps of both handles (latest last):" in result.details
    assert has_readable_steps(result.details), result.details
    assert diagnose([result])["P2"].likely[0].cause.id == "acts-on-open-snapshot"
    assert check_property(spec, "C1", profile="smoke").outcome == "passed"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_skipped_recommit_fails_p2_in_the_quick_profile(seed: int) -> None:
    # An idle consumer re-commits after another writer moved the key; the dirty check drops it.
    print(f"seed {seed}")
    result = check_property("zoo.machine_zoo:DirtyCheck", "P2", profile="quick", seed=seed)
    assert result.outcome == "failed", result
    assert "[P2 " in result.details
    assert "re-commits its own last offset" in result.details, result.details
    assert has_readable_steps(result.details), result.details


@pytest.mark.parametrize(("name", "broken"), [("MonotonicOnly", "C3"), ("ZeroForAbsent", "C2")])
def test_a_store_wrong_for_every_handle_is_not_blamed_on_p2(name: str, broken: str) -> None:
    # Dropping a lower offset is wrong for a fresh handle too: what a stale handle shows then
    # demonstrates the store's own property, and the P2 run discards it.
    for seed in (0, 1, 2):
        result = check_property(f"zoo.defects:{name}", "P2", profile="quick", seed=seed)
        assert result.outcome != "failed", (seed, result)
        if result.outcome == "unverified":
            assert f"because {broken}" in result.details, (seed, result)


def test_the_other_process_dying_names_the_call() -> None:
    remote = RemoteStore("os:_exit")  # "opening a store" ends the child with status 3
    try:
        with pytest.raises(RemoteError, match=r"child process died during open\(3,\)"):
            remote.call("open", 3)
    finally:
        remote.stop()
