"""The D3 oracle: expectations from ack marks, the verdict on a recovered store (no processes)."""

from __future__ import annotations

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._powerloss import workload
from lance_offsets.stress._powerloss_oracle import (
    Expectation,
    Observation,
    Step,
    expectations,
    judge,
    parse_mark,
)
from lance_offsets.stress._trace import TraceOp

A, B = (1, 2), (3, 4)
KEYS = [A, B]
SAVED = {A: {5, 6}, B: {9}}


def marks(*notes: str) -> list[TraceOp]:
    return [TraceOp(i, "mark", "/root", note=n) for i, n in enumerate(notes)]


def test_mark_notes_round_trip() -> None:
    for step in (Step("save", A, 5), Step("delete", B), Step("save", (0, 2**64 - 1), 2**64 - 1)):
        for phase in ("begin", "ack", "fail"):
            assert parse_mark(step.note(phase)) == (phase, step)
    assert parse_mark("fail save 1 2 5: OSError(28)") == ("fail", Step("save", A, 5))
    assert parse_mark("something else") is None
    assert parse_mark("ack rename 1 2 3") is None


def test_expectations_follow_begin_and_ack() -> None:
    trace = marks(
        Step("save", A, 5).note("begin"),
        Step("save", A, 5).note("ack"),
        Step("save", A, 6).note("begin"),
        Step("save", A, 6).note("fail") + ": boom",
        Step("delete", A).note("begin"),
        Step("delete", A).note("ack"),
    )
    found = expectations(trace, KEYS)
    assert len(found) == len(trace) + 1
    assert found[0].allowed(A) == {None}
    assert found[1].allowed(A) == {None, 5}  # first save in flight
    assert found[1].may_be_loud(A)
    assert found[2].allowed(A) == {5}
    assert not found[2].may_be_loud(A)
    assert found[4].allowed(A) == {5, 6}  # a failed save stays in flight: its effect is unknown
    assert found[5].allowed(A) == {5, 6, None}
    assert found[6].allowed(A) == {None}  # the acknowledged delete must stay deleted
    assert found[6].allowed(B) == {None}


def test_states_holding_acknowledged_or_in_flight_values_pass() -> None:
    want = Expectation(((A, 5), (B, None)), ((A, (6,)),))
    for value in (5, 6):
        seen = Observation(loads={A: value, B: None}, listing={A: value})
        assert judge(seen, want, KEYS, SAVED) == []


@pytest.mark.parametrize(
    ("loads", "complaint"),
    [
        ({A: None, B: None}, "lost (1, 2): found absent, expected 5 (acknowledged)"),
        ({A: 7, B: None}, "invented (1, 2) = 7, a value nobody saved"),
        ({A: 5, B: 9}, "went back in time for (3, 4): found 9, expected absent"),
    ],
)
def test_lost_invented_and_stale_values_fail(
    loads: dict[tuple[int, int], int | None], complaint: str
) -> None:
    want = Expectation(((A, 5), (B, None)))
    listing = {k: v for k, v in loads.items() if v is not None}
    problems = judge(Observation(loads=loads, listing=listing), want, KEYS, SAVED)
    assert len(problems) == 1  # the listing agreeing with the load adds no second complaint
    assert complaint in problems[0]


def test_loud_errors_are_acceptable_only_where_nothing_acknowledged_is_at_stake() -> None:
    first_save_in_flight = Expectation(((A, None), (B, 9)), ((A, (5,)),))
    seen = Observation(loads={B: 9}, load_errors={A: "ValueError('corrupt')"}, listing_error="x")
    assert judge(seen, first_save_in_flight, KEYS, SAVED) == []
    overwrite_in_flight = Expectation(((A, 5), (B, 9)), ((A, (6,)),))
    problems = judge(seen, overwrite_in_flight, KEYS, SAVED)
    assert problems == ["load(1, 2) raised ValueError('corrupt'); expected 5 (acknowledged) or 6 "
                        "(in flight)"]  # fmt: skip
    nothing_loud = Observation(loads={A: 5, B: 9}, listing_error="OSError()")
    assert "though every load worked" in judge(nothing_loud, overwrite_in_flight, KEYS, SAVED)[0]


def test_a_loud_open_fails_only_when_an_acknowledged_value_is_lost() -> None:
    seen = Observation(open_error="ValueError('bad header')")
    assert judge(seen, Expectation(((A, None), (B, None)), ((A, (5,)),)), KEYS, SAVED) == []
    problems = judge(seen, Expectation(((A, 5), (B, None))), KEYS, SAVED)
    assert problems == ["opening the store raised ValueError('bad header'); lost (1, 2): "
                        "5 (acknowledged)"]  # fmt: skip


def test_list_all_extra_keys_and_a_store_that_cannot_save_again_fail() -> None:
    want = Expectation(((A, 5), (B, None)))
    extra = Observation(loads={A: 5, B: None}, listing={A: 5, (7, 7): 1})
    assert "a key nobody saved" in judge(extra, want, KEYS, SAVED)[0]
    stuck = Observation(loads={A: 5, B: None}, listing={A: 5}, resave_error="save raised EIO")
    assert "cannot save again: save raised EIO" in judge(stuck, want, KEYS, SAVED)[0]


def test_workloads_save_over_values_delete_and_replay_from_the_seed() -> None:
    short = workload(StressOptions(seed=1))
    assert {s.kind for s in short} == {"save", "delete"}
    assert len({s.key for s in short}) < len([s for s in short if s.kind == "save"])  # overwrites
    long_one = workload(StressOptions(long=True, seed=7))
    assert long_one == workload(StressOptions(long=True, seed=7))
    assert long_one != workload(StressOptions(long=True, seed=8))
    values = [(s.key, s.value) for s in long_one if s.kind == "save"]
    assert len(values) == len(set(values))  # every saved value is distinct per key
