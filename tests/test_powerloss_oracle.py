"""The D3 oracle: expectations from ack marks, the verdict on a recovered store (no processes).

The rule and the report's order are pinned twice: on handmade observations, and on real crash
states: a zoo store's saves traced in this process by the interposer, every state the file-system
model finds written out, and the store opened on each (no worker processes needed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lance_offsets.stress._options import StressOptions, tear_size
from lance_offsets.stress.powerloss._campaign import workload
from lance_offsets.stress.powerloss._findings import StateFindings
from lance_offsets.stress.powerloss._fsmodel import CrashState, Tree, explore, materialise
from lance_offsets.stress.powerloss._fstree import snapshot
from lance_offsets.stress.powerloss._oracle import (
    KINDS,
    SHOWN_FAILURES,
    Expectation,
    Failure,
    Findings,
    Observation,
    Step,
    Verdict,
    counts,
    expectations,
    judge,
    parse_mark,
    report,
    shown,
)
from lance_offsets.stress.powerloss._workers import observe, run_steps
from lance_offsets.stress.seam._interpose import mark, traced
from lance_offsets.stress.seam._trace import TraceOp

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
    assert not found[1].at_stake(A)  # nothing acknowledged yet: a loud error loses nothing
    assert found[2].allowed(A) == {5}
    assert found[2].at_stake(A)
    assert found[4].allowed(A) == {5, 6}  # a failed save stays in flight: its effect is unknown
    assert found[5].allowed(A) == {5, 6, None}
    assert found[6].allowed(A) == {None}  # the acknowledged delete must stay deleted
    assert found[6].allowed(B) == {None}


def test_batch_marks_name_their_batch_and_expectations_follow_it_to_its_last_ack() -> None:
    one, two = Step("save", A, 6, batch=1), Step("save", B, 9, batch=1)
    for phase in ("begin", "ack", "fail"):
        assert parse_mark(one.note(phase)) == (phase, one)
    trace = marks(
        Step("save", A, 5).note("ack"),
        one.note("begin"),
        two.note("begin"),
        one.note("ack"),
        two.note("ack"),
    )
    found = expectations(trace, KEYS)
    batch = ((1, ((A, 6), (B, 9))),)
    assert [e.batches for e in found] == [(), (), ((1, ((A, 6),)),), batch, batch, ()]
    # A batch that raised stays in flight: all or nothing still holds for an atomic store.
    assert expectations(marks(one.note("begin"), one.note("fail")), KEYS)[-1].batches == (
        (1, ((A, 6),)),
    )


def test_an_atomic_batch_half_done_is_a_split_naming_the_batch_and_each_key() -> None:
    batch = ((1, ((A, 6), (B, 9))),)
    inflight = Expectation(((A, 5), (B, None)), ((A, (6,)), (B, (9,))), batch)
    half = Observation(loads={A: 6, B: None}, listing={A: 6})
    assert not judge(half, inflight, KEYS, SAVED).problems  # per key: each old or new
    [split] = judge(half, inflight, KEYS, SAVED, atomic=True).problems
    assert split.kind == "split"
    assert "save_many batch 1 is half done" in split.text
    assert "(1, 2) new (6); (3, 4) old (absent)" in split.text
    wholes: list[dict[tuple[int, int], int | None]] = [{A: 5, B: None}, {A: 6, B: 9}]
    for whole in wholes:  # all old, all new
        seen = Observation(loads=whole, listing={k: v for k, v in whole.items() if v is not None})
        assert not judge(seen, inflight, KEYS, SAVED, atomic=True).problems
    # A key whose load raised says nothing of the batch (its own rule judges it).
    loud = Observation(loads={A: 6}, load_errors={B: "OSError()"}, listing_error="OSError()")
    assert [p.kind for p in judge(loud, inflight, KEYS, SAVED, atomic=True).problems] == []
    # Between the acks save_many has returned: the key acknowledged first pins the batch to new.
    returned = Expectation(((A, 6), (B, None)), ((B, (9,)),), batch)
    [late] = judge(half, returned, KEYS, SAVED, atomic=True).problems
    assert late.kind == "split"


def test_states_holding_acknowledged_or_in_flight_values_pass() -> None:
    want = Expectation(((A, 5), (B, None)), ((A, (6,)),))
    for value in (5, 6):
        seen = Observation(loads={A: value, B: None}, listing={A: value})
        assert judge(seen, want, KEYS, SAVED) == Verdict()


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
    problems = judge(Observation(loads=loads, listing=listing), want, KEYS, SAVED).problems
    assert len(problems) == 1  # the listing agreeing with the load adds no second complaint
    assert complaint in str(problems[0])
    assert problems[0].kind == ("invented" if "invented" in complaint else "lost")


def test_loud_errors_are_acceptable_only_where_nothing_acknowledged_is_at_stake() -> None:
    first_save_in_flight = Expectation(((A, None), (B, 9)), ((A, (5,)),))
    seen = Observation(loads={B: 9}, load_errors={A: "ValueError('corrupt')"}, listing_error="x")
    verdict = judge(seen, first_save_in_flight, KEYS, SAVED)
    assert verdict.problems == ()
    assert verdict.tolerated == ("load(1, 2) raised ValueError('corrupt')", "list_all() raised x")
    overwrite_in_flight = Expectation(((A, 5), (B, 9)), ((A, (6,)),))
    verdict = judge(seen, overwrite_in_flight, KEYS, SAVED)
    assert verdict.tolerated == ()  # list_all raised on the same damage: the load's verdict
    problems = verdict.problems
    assert [str(p) for p in problems] == [
        "load(1, 2) raised ValueError('corrupt'); expected 5 (acknowledged) or 6 (in flight)"
    ]
    assert problems[0].kind == "raised"


def test_list_all_raising_fails_only_when_it_hides_an_acknowledged_value() -> None:
    # The case: every load worked, list_all raised, nothing acknowledged: acceptable.
    nothing_loud = Observation(loads={A: None, B: None}, listing_error="OSError()")
    nothing_acked = Expectation(((A, None), (B, None)), ((A, (5,)),))
    assert judge(nothing_loud, nothing_acked, KEYS, SAVED) == Verdict(
        tolerated=("list_all() raised OSError()",)
    )
    acked = Observation(loads={A: 5, B: None}, listing_error="OSError()")
    (problem,) = judge(acked, Expectation(((A, 5), (B, None))), KEYS, SAVED).problems
    assert problem.kind == "raised"
    assert "though every load worked; hides (1, 2): 5 (acknowledged)" in str(problem)


def test_a_loud_open_fails_only_when_an_acknowledged_value_is_lost() -> None:
    seen = Observation(open_error="ValueError('bad header')")
    nothing_acked = judge(seen, Expectation(((A, None), (B, None)), ((A, (5,)),)), KEYS, SAVED)
    assert nothing_acked == Verdict(
        tolerated=("opening the store raised ValueError('bad header')",)
    )
    problems = judge(seen, Expectation(((A, 5), (B, None))), KEYS, SAVED).problems
    assert [str(p) for p in problems] == [
        "opening the store raised ValueError('bad header'); acknowledged values unreadable: "
        "(1, 2): 5 (acknowledged)"
    ]


def test_list_all_extra_keys_a_store_that_cannot_save_again_and_a_hang_fail() -> None:
    want = Expectation(((A, 5), (B, None)))
    extra = Observation(loads={A: 5, B: None}, listing={A: 5, (7, 7): 1})
    (problem,) = judge(extra, want, KEYS, SAVED).problems
    assert (problem.kind, "a key nobody saved" in str(problem)) == ("invented", True)
    stuck = Observation(loads={A: 5, B: None}, listing={A: 5}, resave_error="save raised EIO")
    (problem,) = judge(stuck, want, KEYS, SAVED).problems
    assert (problem.kind, str(problem)) == (
        "stuck",
        "the recovered store cannot save again: save raised EIO",
    )
    (problem,) = judge(Observation(hung="load(1, 2)"), want, KEYS, SAVED).problems
    assert problem.kind == "hung"
    assert "hung opening/reading this state, in load(1, 2) (a lock held by" in str(problem)


def test_problems_in_one_state_come_most_serious_first() -> None:
    want = Expectation(((A, 5), (B, None)))
    seen = Observation(loads={A: None, B: 77}, listing={B: 77}, resave_error="EIO")
    kinds = [p.kind for p in judge(seen, want, KEYS, SAVED).problems]
    assert kinds == ["lost", "invented", "stuck"]
    assert list(KINDS) == ["lost", "invented", "split", "raised", "hung", "stuck"]


def test_workloads_save_over_values_delete_and_replay_from_the_seed() -> None:
    short = workload(StressOptions(seed=1))
    assert {s.kind for s in short} == {"save", "delete"}
    assert len({s.key for s in short}) < len([s for s in short if s.kind == "save"])  # overwrites
    long_one = workload(StressOptions(long=True, seed=7))
    assert long_one == workload(StressOptions(long=True, seed=7))
    assert long_one != workload(StressOptions(long=True, seed=8))
    values = [(s.key, s.value) for s in long_one if s.kind == "save"]
    assert len(values) == len(set(values))  # every saved value is distinct per key


# --- real crash states: zoo saves traced here, the model's states written out, the store opened

Protocol = Callable[[str, str, bytes], None]


def no_sync_at_all(directory: str, target: str, data: bytes) -> None:
    """The zoo's protocol with both syncs left out: empty targets, and renames undone."""
    from zoo.powerloss_zoo import _write

    _write(target + ".tmp", data, sync=False)
    os.replace(target + ".tmp", target)


def _zoo_protocol(name: str) -> Protocol:
    """A save protocol of the power-loss zoo (``_correct``, ``_no_file_fsync``, ...)."""
    import zoo.powerloss_zoo

    protocol: Protocol = getattr(zoo.powerloss_zoo, name)
    return protocol


@dataclass
class Judged:
    failures: list[Failure]
    tolerated: list[CrashState]
    states: int
    text: str
    expected: list[Expectation]
    seen_by: dict[Tree, Observation]
    #: What the failing states demonstrate (``_findings.py``), as the check records it.
    facts: list[str]


def judged_crash_states(tmp_path: Path, protocol: Protocol) -> Judged:
    """Trace the short D3 workload on a zoo file store saving with ``protocol``; judge every
    crash state the model finds, opening the real store on each one written out."""
    from zoo.powerloss_zoo import ZooFileStore

    root = os.path.realpath(tmp_path / "store")
    os.mkdir(root)
    steps = workload(StressOptions(seed=1))
    initial = snapshot(root)
    with traced(root) as recorded:
        run_steps(ZooFileStore(root, protocol), steps, mark)
    trace = list(recorded)
    found = explore(trace, root, initial, seed=1, budget=48)
    keys = sorted({s.key for s in steps})
    seen_by: dict[Tree, Observation] = {}
    for number, tree in enumerate(dict.fromkeys(s.tree for s in found.states)):
        where = str(tmp_path / f"state-{number}")
        os.mkdir(where)
        materialise(tree, where)
        seen_by[tree] = observe(lambda p: ZooFileStore(p, protocol), where, keys, lambda _: None)
    expected = expectations(trace, keys)
    saved = {k: {s.value for s in steps if s.key == k and s.value is not None} for k in keys}
    failures, tolerated = [], []
    facts = StateFindings(trace, root)
    for state in found.states:
        verdict = judge(seen_by[state.tree], expected[state.point + 1], keys, saved)
        if verdict.problems:
            failures.append((state, verdict))
            facts.add(state, verdict)
        elif verdict.tolerated:
            tolerated.append(state)
    text = ""
    if failures:
        text = report(
            failures,
            trace,
            expected,
            seen_by=seen_by,
            keys=keys,
            checked=len(found.states),
            tolerated=len(tolerated),
            summary="(test)",
        )
    shown = [f["fact"] for f in facts.findings()]
    return Judged(failures, tolerated, len(found.states), text, expected, seen_by, shown)


KEYS_SHORT = sorted({s.key for s in workload(StressOptions(seed=1))})


@pytest.fixture
def zoo(zoo_importable: None) -> None:
    """The zoo's file store, importable (its protocols are the ones above)."""


@pytest.mark.usefixtures("zoo")
def test_a_careful_store_has_no_violation_in_any_real_crash_state(tmp_path: Path) -> None:
    found = judged_crash_states(tmp_path, _zoo_protocol("_correct"))
    assert found.states > 50
    assert found.failures == []
    assert found.tolerated == []  # a careful store never even needs to be loud


@pytest.mark.usefixtures("zoo")
def test_an_empty_file_left_by_an_unacknowledged_save_may_raise(tmp_path: Path) -> None:
    found = judged_crash_states(tmp_path, _zoo_protocol("_no_file_fsync"))
    # Before the first save is acknowledged, its empty target makes load raise: loud, nothing
    # acknowledged at stake, so acceptable and counted; after the acknowledgement it is a loss.
    loud_with_nothing_acked = [
        s
        for s in found.tolerated
        if found.seen_by[s.tree].load_errors
        and not any(found.expected[s.point + 1].at_stake(k) for k in KEYS_SHORT)
    ]
    assert loud_with_nothing_acked
    failing = {(s.point, s.tree) for s, _ in found.failures}
    assert not any((s.point, s.tree) in failing for s in loud_with_nothing_acked)
    kinds = {p.kind for _, v in found.failures for p in v.problems}
    assert "raised" in kinds
    first = found.text.splitlines()[0]
    assert f"of {found.states:,} crash states violate D3: " in first
    assert (
        f"raised in {len(found.tolerated):,} states with nothing acknowledged at stake: " in first
    )
    assert first.endswith("acceptable")


@pytest.mark.usefixtures("zoo")
def test_the_report_counts_each_kind_and_shows_the_most_serious_states_first(
    tmp_path: Path,
) -> None:
    found = judged_crash_states(tmp_path, no_sync_at_all)
    lost = sum(1 for _, v in found.failures if any(p.kind == "lost" for p in v.problems))
    raised = sum(1 for _, v in found.failures if any(p.kind == "raised" for p in v.problems))
    # Both kinds happen: renames undone, and empty targets.
    assert lost
    assert raised
    first = found.text.splitlines()[0]
    assert f"lost or rewound an acknowledged offset in {lost:,} states; " in first
    assert first.index("lost or rewound") < first.index("where an acknowledged offset was at stake")
    headings = [line for line in found.text.splitlines() if line.startswith("crash state after")]
    ranks = [next(i for i, w in enumerate(KINDS.values()) if w.upper() in h) for h in headings]
    assert ranks[0] == 0  # a lost acknowledged offset leads, though loud states are many too
    assert ranks == sorted(ranks)
    assert len([r for r in ranks if r == 0]) == SHOWN_FAILURES
    shown_points = [s.point for s, v in shown(found.failures) if v.worst == 0]
    assert len(set(shown_points)) == len(shown_points)  # distinct crash points
    assert "raised" in {p.kind for _, v in shown(found.failures) for p in v.problems}


def test_findings_count_every_failure_and_keep_only_what_a_report_shows(tmp_path: Path) -> None:
    # Thousands of failing states must not all be held (each holds a tree): the tally keeps
    # counts for all and, per kind, the states ``shown`` would pick from the full list.
    found = judged_crash_states(tmp_path, no_sync_at_all)
    findings = Findings()
    for state, verdict in found.failures:
        findings.add(state, verdict)
    assert findings.failed == len(found.failures)
    assert len(findings.kept) <= SHOWN_FAILURES * len(KINDS) < len(found.failures)
    assert shown(findings.kept) == shown(found.failures)
    assert counts(findings, 0) == counts(found.failures, 0)


def in_place(directory: str, target: str, data: bytes) -> None:
    """Rewrite the key's own file, fsynced, never renamed (the directory never fsynced)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.usefixtures("zoo")
@pytest.mark.parametrize(
    ("protocol", "facts"),
    [
        ("_correct", []),
        ("_no_dir_fsync", ["rename-undone"]),
        ("_no_file_fsync", ["power-cut-dropped-renamed-data"]),
        ("_fsync_target_after_rename", ["power-cut-dropped-renamed-data"]),
    ],
)
def test_failing_states_say_which_durability_step_is_missing(
    tmp_path: Path, protocol: str, facts: list[str]
) -> None:
    found = judged_crash_states(tmp_path, _zoo_protocol(protocol))
    assert found.facts == facts


@pytest.mark.usefixtures("zoo")
def test_a_file_rewritten_in_place_shows_its_torn_rewrite_and_its_undone_creation(
    tmp_path: Path,
) -> None:
    found = judged_crash_states(tmp_path, in_place)
    # Its creation undone (no directory fsync ever), and the live state mid-rewrite: a state
    # that kept everything and still fails shows what a kill would show too.
    assert set(found.facts) == {"create-undone", "power-cut-tore-file-in-place"}


def test_the_tear_size_is_512_4096_or_any_byte_and_a_wrong_one_is_named() -> None:
    assert StressOptions(seed=1).tear_size == 512
    assert [tear_size(t) for t in ("512", "4096", "4k", "1")] == [512, 4096, 4096, 1]
    for wrong in ("513", "0", "sector", ""):
        with pytest.raises(ValueError, match=f"tear size '{wrong}' is not one of") as caught:
            tear_size(wrong)
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="tear_size 3 is not one of 512, 4096, 1"):
        StressOptions(seed=1, tear_size=3)
