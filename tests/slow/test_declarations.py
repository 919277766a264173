"""A correct store that allows one open handle at a time (an exclusive lock from open to close,
as embedded databases take) passes every property that applies: no check opens a second handle
beside the first, in this process or another, once the store declares it.

The store here waits for the lock (tests/zoo/exclusive_waits.py), so a second handle opened
anyway would hang; tests/slow/test_exclusive_store.py runs the whole check, through the CLI, on
the one that refuses a second handle at once.
"""

from __future__ import annotations

from lance_offsets.conformance import run_checks
from lance_offsets.conformance._catalog import property_ids
from lance_offsets.conformance._run import ONE_AT_A_TIME


def test_a_store_locked_from_open_to_close_passes_all_that_applies(zoo_importable: None) -> None:
    # ExclusiveWaits waits for the lock with no deadline: a second handle opened beside the
    # first anywhere (a helper, a verifier, a warm reader) would hang, and the hang would show.
    results = {r.id: r for r in run_checks("zoo.exclusive_waits:ExclusiveWaits", seed=1)}
    assert list(results) == property_ids()
    for result in results.values():
        print(result.id, result.outcome, result.details.splitlines()[:1])
    absent = {pid for pid, r in results.items() if r.outcome == "not-applicable"}
    assert absent == {"P2", "M1", "M2", "D5", "S1", "B1"}, results
    assert results["P2"].details == ONE_AT_A_TIME
    assert {r.outcome for pid, r in results.items() if pid not in absent} == {"passed"}, results
    # The parts that need a second handle beside the first say they were not checked.
    for pid in ("C7", "C8", "H2", "H3"):
        assert "was not checked" in results[pid].details, results[pid]
    assert "F1's warm variant was not checked" in results["F1"].details
