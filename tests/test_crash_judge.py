"""What a fresh process must find after a crash, judged without processes (crash/_judge.py)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest
from lance_offsets.conformance._diagnosis import FINDINGS
from lance_offsets.stress.crash._campaign import property_result
from lance_offsets.stress.crash._cycle import Campaign, label, points
from lance_offsets.stress.crash._judge import Crash, judge, listing
from lance_offsets.stress.crash._points import removed_before_replaced
from lance_offsets.stress.seam._trace import TraceOp

K, N = (7, 42), (7, 43)


def _crash(acked: bool = False, new: int | None = 20) -> Crash:
    allowed = (new,) if acked else (10, new)
    return Crash(
        "save over", "/d", K, allowed, acked, {N: 5, K: 10}, "killed after op #3", previous=(10,)
    )


def _read(value: Any, listed: Any = None, neighbour: int = 5) -> dict[str, Any]:
    if listed is None:
        listed = {N: neighbour} if value is None else {N: neighbour, K: value}
    return {f"load{K}": value, f"load{N}": neighbour, "list_all": listed}


def _saved(later: int = 30, seconds: float = 0.01, error: str | None = None) -> dict[str, Any]:
    return {"seconds": seconds, "error": error, **_read(later)}


def _props(
    crash: Crash,
    read: dict[str, Any],
    saved: dict[str, Any] | None = None,
    blocked: str | None = None,
) -> list[str]:
    found, _ = judge(crash, read, saved, later=30, blocked=blocked, bound=1.0)
    return [v.prop for v in found]


@pytest.mark.parametrize("value", [10, 20])
def test_old_or_new_then_a_working_later_save_is_clean(value: int) -> None:
    found, seconds = judge(_crash(), _read(value), _saved(), later=30, blocked=None)
    assert found == []
    assert seconds == 0.01


def test_each_finding_lands_on_its_property() -> None:
    torn = "raised CorruptOffsetError: corrupt offset"
    assert _props(_crash(), _read(torn, listed=f"raised {torn}"), _saved()) == ["D1", "D4"]
    assert _props(_crash(), _read(None), _saved()) == ["D1"]  # absent: neither value
    assert _props(_crash(), _read(99), _saved()) == ["D1"]  # nobody wrote 99
    assert _props(_crash(), _read(10, neighbour=6), _saved()) == ["D1", "D4"]
    assert _props(_crash(acked=True), _read(10), _saved()) == ["D2"]
    assert _props(_crash(), _read(10, listed={N: 5, K: 10, (0, 0): 1}), _saved()) == ["D4"]
    assert _props(_crash(), _read(10), _saved(error="FileExistsError: tmp")) == ["D4"]
    assert _props(_crash(), _read(10), _saved(error="TimeoutError: lock held")) == ["D5"]
    assert _props(_crash(), _read(10), _saved(seconds=1.5)) == ["D5"]
    assert _props(_crash(), _read(10), None, blocked="did not return within 1 s") == ["D5"]
    assert _props(_crash(), {}, None, blocked="reading did not finish") == ["D5"]
    assert _props(_crash(), {"open": "raised OSError: leftover"}) == ["D4"]


def test_a_later_save_that_fails_on_a_fresh_store_too_is_not_blamed_on_the_crash() -> None:
    # Blame by demonstration: the verifier repeats a failed later save on a new, empty store.
    raised = _saved(error="OverflowError: Python int too large")
    assert _props(_crash(), _read(10), {**raised, "fresh error": None}) == ["D4"]
    assert _props(_crash(), _read(10), {**raised, "fresh error": "OverflowError: too large"}) == []


def test_a_save_loop_keeps_the_last_acknowledged_value_or_the_next() -> None:
    crash = Crash(
        "save loop",
        "/d",
        K,
        (5, 6),
        True,
        {},
        "random kill",
        previous=(None,),
        previous_span=range(1, 5),
    )
    assert _props(crash, {f"load{K}": 6, "list_all": {K: 6}}) == []
    assert _props(crash, {f"load{K}": 3, "list_all": {K: 3}}) == ["D2"]
    assert _props(crash, {f"load{K}": None, "list_all": {}}) == ["D2"]
    assert _props(crash, {f"load{K}": 7, "list_all": {K: 7}}) == ["D1"]


def test_a_violation_tells_the_whole_story() -> None:
    crash = _crash()
    crash.files = "k.offset (0 bytes: b'')"
    crash.context = ["#2 write k.offset.tmp"]
    (violation,), _ = judge(crash, _read(None), _saved(), later=30, blocked=None)
    assert violation.text.splitlines() == [
        "scenario save over: key (7, 42), killed after op #3",
        "expected 10 or 20 (not acknowledged); found absent (neither value)",
        "files after the kill: k.offset (0 bytes: b'')",
        "#2 write k.offset.tmp",
    ]


def test_crash_points_and_their_labels() -> None:
    trace = [
        TraceOp(0, "open", "/d/k.tmp", content=b""),
        TraceOp(1, "write", "/d/k.tmp", content=b"5\n"),
        TraceOp(2, "fsync", "/d/k.tmp", content=b"5\n"),
        TraceOp(3, "close", "/d/k.tmp", content=b"5\n"),
        TraceOp(4, "replace", "/d/k.tmp", target="/d/k"),
        TraceOp(5, "mark", "/d", note="ack save 7 42 5"),
        TraceOp(6, "unlink", "/d/x", note="audit"),
    ]
    assert [(op.index, phase) for op, phase in points(trace)] == [
        (0, "before"),
        (0, "after"),
        (1, "before"),
        (1, "after"),
        (2, "before"),
        (2, "after"),
        (3, "before"),
        (3, "after"),
        (4, "before"),
        (4, "after"),
        (6, "before"),
    ]
    between = [
        (op.index, phase)
        for op, phase in points(trace)
        if "[after fsync, before rename]" in label(op, phase, trace, "/d")
    ]
    assert between == [(2, "after"), (3, "before"), (3, "after"), (4, "before")]
    assert label(trace[4], "before", trace, "/d").startswith(
        "killed before op #4 replace k.tmp -> k"
    )


def test_listing_shows_what_a_crash_left(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "k.offset.tmp").write_bytes(b"12")
    (tmp_path / "big").write_bytes(b"x" * 100)
    assert listing(str(tmp_path)) == (
        f"big (100 bytes: {b'x' * 64!r}...); sub/k.offset.tmp (2 bytes: b'12')"
    )
    assert listing(str(tmp_path / "sub" / "none")) == "(no files)"


# -- what each finding demonstrates, and the line a report leads with ---------------------------


def _facts(crash: Crash, read: dict[str, Any], saved: dict[str, Any] | None = None) -> list[str]:
    found, _ = judge(crash, read, saved, later=30, blocked=None, bound=1.0)
    return [f"{v.prop}:{v.fact}" for v in found]


def test_each_finding_records_what_it_demonstrates() -> None:
    torn = "raised CorruptOffsetError: corrupt offset"
    assert _facts(_crash(), _read(torn, listed=f"raised {torn}"), _saved()) == [
        "D1:kill-left-key-unreadable",
        "D4:listing-raises-on-torn-file",  # the torn file itself, not a leftover
    ]
    assert _facts(_crash(), _read(99), _saved()) == ["D1:kill-left-wrong-value"]
    assert _facts(_crash(acked=True), _read(10), _saved()) == ["D2:acked-lost-after-kill"]
    leftover = _read(10, listed={N: 5, K: 10, (0, 0): 1})
    assert _facts(_crash(), leftover, _saved()) == ["D4:listing-shows-leftover"]
    blocked = _saved(error="FileExistsError: tmp")
    assert _facts(_crash(), _read(10), blocked) == ["D4:later-save-fails-after-kill"]
    assert _facts(_crash(), _read(10), _saved(seconds=1.5)) == ["D5:stale-lock-waits"]
    # A listing that agrees with what the loads read adds nothing: the changed neighbour is D1's.
    assert _facts(_crash(), _read(10, neighbour=6), _saved()) == [
        "D1:kill-changed-other-key",
        "D4:kill-changed-other-key",
    ]


def test_a_key_gone_after_a_kill_is_a_removal_only_when_the_change_removed_something() -> None:
    # Nothing removed: the old value, acknowledged by the save that set it up, was never written.
    assert _facts(_crash(), _read(None), _saved()) == ["D1:acked-lost-after-kill"]
    removed = dataclasses.replace(_crash(), removed_first=True)
    assert _facts(removed, _read(None), _saved()) == ["D1:kill-left-key-absent"]


def test_removed_before_replaced_reads_the_change_trace() -> None:
    trace = [
        TraceOp(0, "unlink", "/d/k"),
        TraceOp(1, "open", "/d/k.tmp", content=b""),
        TraceOp(2, "write", "/d/k.tmp", content=b"5\n"),
        TraceOp(3, "replace", "/d/k.tmp", target="/d/k"),
    ]
    assert [removed_before_replaced(trace, cut) for cut in range(5)] == [
        False,  # nothing removed yet
        True,
        True,
        True,
        False,  # renamed back: the new value is in place
    ]
    temp_then_rename = trace[1:]
    assert not any(removed_before_replaced(temp_then_rename, cut) for cut in range(4))


def test_a_headline_names_the_key_the_kill_and_what_was_found() -> None:
    (violation,), _ = judge(_crash(), _read(99), _saved(), later=30, blocked=None)
    assert violation.headline == (
        "key (7, 42) (save over, killed after op #3): 99 (a value nobody wrote); "
        "expected 10 or 20 (not acknowledged)"
    )


def _campaign() -> Campaign:
    crash = _crash()
    torn = "raised CorruptOffsetError: corrupt offset"
    found, _ = judge(crash, _read(torn, listed=f"raised {torn}"), _saved(), later=30, blocked=None)
    campaign = Campaign(seed=7, cycles=51, points=43, random_kills=8, seconds=3.25, damaged=5)
    campaign.violations = found * 2
    campaign.judged = {"D1": 46, "D2": 8, "D4": 51, "D5": 46}
    campaign.max_wait = 0.012
    return campaign


def test_each_crash_property_shows_its_own_evidence_and_the_shared_time() -> None:
    campaign = _campaign()
    results = {pid: property_result(pid, campaign) for pid in ("D1", "D2", "D4", "D5")}
    for pid, result in results.items():
        assert result.seconds == 3.25, pid  # the campaign's time on each, never 0.00
        others = ", ".join(p for p in results if p != pid)
        assert result.evidence["time shared with"] == others
    assert results["D1"].evidence["states judged old or new"] == 46
    assert results["D2"].evidence["states with an acknowledged change judged"] == 8
    assert results["D4"].evidence["states judged for leftovers"] == 51
    assert results["D4"].evidence["damaged after a kill"] == 5
    assert results["D5"].evidence["later saves timed"] == 46
    assert results["D5"].evidence["longest later save (s)"] == 0.012
    own = [
        {k: v for k, v in r.evidence.items() if k != "time shared with"} for r in results.values()
    ]
    assert all(a != b for i, a in enumerate(own) for b in own[i + 1 :])


def test_a_crash_failure_leads_with_its_violation_and_records_its_findings() -> None:
    result = property_result("D4", _campaign())
    first, second = result.details.splitlines()[:2]
    assert first.startswith("key (7, 42) (save over, killed after op #3): list_all() = raised ")
    assert first.endswith("(and 1 more violation(s) of D4)")
    assert second.startswith("one campaign for D1, D2, D4, D5, seed 7: 43 crash-point kills")
    (found,) = result.artifacts[FINDINGS]
    assert found["fact"] == "listing-raises-on-torn-file"
    assert property_result("D2", _campaign()).outcome == "passed"
