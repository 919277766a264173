"""What a fresh process must find after a crash, judged without processes (crash/_judge.py)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from lance_offsets.stress.crash._cycle import label, points
from lance_offsets.stress.crash._judge import Crash, judge, listing
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
