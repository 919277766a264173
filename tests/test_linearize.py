"""The history checker on handcrafted histories: it must accept exactly the linearizable ones."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lance_offsets.stress.concurrency import _linearize as linearize
from lance_offsets.stress.concurrency._findings import history_findings
from lance_offsets.stress.concurrency._history import Op, OpKind, Outcome
from lance_offsets.stress.concurrency._linearize import (
    check_history,
    first_unexplained,
    format_violations,
    shrink,
)

K = (1, 23)
_SEQ = itertools.count(1)
OTHER = (12, 3)


def op(
    worker: int,
    kind: OpKind,
    arg: int | None,
    start: float,
    end: float | None,
    *,
    outcome: Outcome = "ok",
    key: tuple[int, int] = K,
    error: str | None = None,
) -> Op:
    """A save of ``arg``, a load that returned ``arg``, or a delete, over [start, end]."""
    if end is None:
        outcome = "info"
    return Op(
        worker=worker,
        seq=next(_SEQ),
        kind=kind,
        key=key,
        value=arg if kind == "save" else None,
        invoke=start,
        complete=end,
        outcome=outcome,
        result=arg if kind == "load" and outcome == "ok" else None,
        error=error,
    )


def linearizable(ops: list[Op]) -> bool:
    return first_unexplained(ops) is None


# -- sequential histories ----------------------------------------------------------------------


def test_sequential_register_is_linearizable() -> None:
    h = [
        op(0, "load", None, 0, 1),
        op(0, "save", 5, 2, 3),
        op(1, "load", 5, 4, 5),
        op(1, "delete", None, 6, 7),
        op(0, "load", None, 8, 9),
        op(0, "delete", None, 10, 11),  # idempotent
        op(1, "save", 2, 12, 13),  # a lower offset is a legitimate reset
        op(0, "load", 2, 14, 15),
    ]
    assert linearizable(h)
    assert check_history(h) == []


def test_stale_read_is_not_linearizable() -> None:
    h = [op(0, "save", 1, 0, 1), op(1, "save", 2, 2, 3), op(2, "load", 1, 4, 5)]
    culprit = first_unexplained(h)
    assert culprit == h[2]
    [v] = check_history(h)
    assert v.kind == "not-linearizable"
    assert v.key == K
    assert set(v.excerpt) == set(h)


def test_read_none_after_acknowledged_save_is_a_lost_write() -> None:
    assert not linearizable([op(0, "save", 1, 0, 1), op(1, "load", None, 2, 3)])


def test_lost_update_seen_by_read_after_ack() -> None:
    # Two overlapping saves both acknowledged: either order is fine, but reads must agree on it.
    a, b = op(0, "save", 1, 0, 2), op(1, "save", 2, 1, 3)
    assert linearizable([a, b, op(2, "load", 1, 4, 5)])
    assert linearizable([a, b, op(2, "load", 2, 4, 5)])
    assert not linearizable([a, b, op(2, "load", 1, 4, 5), op(3, "load", 2, 6, 7)])


def test_read_of_deleted_value() -> None:
    h = [op(0, "save", 1, 0, 1), op(1, "delete", None, 2, 3), op(2, "load", 1, 4, 5)]
    assert not linearizable(h)
    # The same read overlapping the delete may have happened before it.
    assert linearizable([h[0], op(1, "delete", None, 2, 6), h[2]])


def test_read_sees_overlapping_save_before_it_returns() -> None:
    save = op(0, "save", 1, 0, 10)
    assert linearizable([save, op(1, "load", 1, 1, 2)])
    # Once a read saw the new value, a later read may not see the old (None) one.
    assert not linearizable([save, op(1, "load", 1, 1, 2), op(1, "load", None, 3, 4)])
    assert linearizable([save, op(1, "load", None, 1, 2), op(1, "load", 1, 3, 4)])


def test_equal_timestamps_count_as_overlapping() -> None:
    # A coarse clock can give one operation's completion the same reading as another's start.
    assert linearizable([op(0, "save", 1, 0, 1), op(1, "load", None, 1, 2)])
    assert not linearizable([op(0, "save", 1, 0, 1), op(1, "load", None, 1.001, 2)])


# -- indeterminate and failed operations ------------------------------------------------------


def test_indeterminate_save_may_take_effect_any_time_later() -> None:
    h = [op(0, "save", 1, 0, 1), op(1, "save", 2, 2, None), op(2, "load", 1, 50, 51)]
    assert linearizable(h)  # not yet
    assert linearizable([*h, op(2, "load", 2, 60, 61)])  # long after the worker died
    # ...but it takes effect once: the old value cannot come back.
    assert not linearizable([*h[:2], op(2, "load", 2, 60, 61), op(2, "load", 1, 70, 71)])


def test_indeterminate_save_cannot_be_read_before_its_invocation() -> None:
    assert not linearizable([op(0, "load", 7, 0, 1), op(1, "save", 7, 5, None)])


def test_indeterminate_delete_may_or_may_not_happen() -> None:
    base = [op(0, "save", 1, 0, 1), op(1, "delete", None, 2, None)]
    assert linearizable([*base, op(2, "load", 1, 5, 6)])
    assert linearizable([*base, op(2, "load", None, 5, 6)])
    assert not linearizable([*base, op(2, "load", None, 5, 6), op(2, "load", 1, 7, 8)])


def test_indeterminate_delete_takes_effect_at_most_once() -> None:
    h = [
        op(0, "save", 1, 0, 1),
        op(1, "delete", None, 2, None),
        op(2, "load", None, 5, 6),
        op(0, "save", 2, 7, 8),
    ]
    assert linearizable(h)
    assert not linearizable([*h, op(2, "load", None, 9, 10)])
    # Two killed deletes may clear it twice.
    assert linearizable([*h, op(3, "delete", None, 3, None), op(2, "load", None, 9, 10)])


def test_undocumented_exception_is_reported_and_its_effect_is_unknown() -> None:
    h = [
        op(0, "save", 1, 0, 1),
        op(1, "save", 2, 2, 3, outcome="info", error="FileNotFoundError: x.offset.tmp"),
        op(2, "load", 2, 4, 5),  # the save that raised did take effect: allowed, but...
    ]
    [v] = check_history(h)
    assert v.kind == "exception"
    assert "FileNotFoundError" in v.summary
    assert linearizable(h)


def test_exception_report_shows_the_operations_racing_it() -> None:
    rival = op(1, "save", 1, 0, 4)
    failed = op(2, "save", 2, 1, 3, outcome="info", error="FileNotFoundError: t.offset.tmp")
    unrelated = [op(3, "save", 3, 1, 3, key=OTHER), op(1, "load", 1, 5, 6)]
    [v] = check_history([rival, failed, *unrelated])
    assert v.excerpt == (failed, rival)


def test_documented_failure_must_have_no_effect() -> None:
    failed = op(1, "save", 2, 2, 3, outcome="fail", error="LockTimeoutError: busy")
    assert check_history([op(0, "save", 1, 0, 1), failed, op(2, "load", 1, 4, 5)]) == []
    [v] = check_history([op(0, "save", 1, 0, 1), failed, op(2, "load", 2, 4, 5)])
    assert v.kind == "unknown-value"
    assert "failed" in v.summary


# -- values nobody wrote, keys ------------------------------------------------------------------


def test_value_nobody_wrote_is_reported_directly() -> None:
    h = [op(0, "save", 4294967297, 0, 1), op(1, "load", 42949, 2, 3)]
    [v] = check_history(h)
    assert v.kind == "unknown-value"
    assert "42949" in v.summary
    assert "no worker ever saved" in v.summary


def test_value_saved_to_another_key_names_both_keys() -> None:
    h = [op(0, "save", 9, 0, 1, key=OTHER), op(1, "load", 9, 2, 3)]
    [v] = check_history(h)
    assert v.kind == "unknown-value"
    assert str(OTHER) in v.summary
    assert str(K) in v.summary


def test_keys_are_checked_independently() -> None:
    h = [
        op(0, "save", 1, 0, 1),
        op(0, "save", 2, 0, 1, key=OTHER),
        op(1, "load", 1, 2, 3),
        op(1, "load", None, 2, 3, key=OTHER),  # lost on OTHER only
    ]
    [v] = check_history(h)
    assert v.kind == "not-linearizable"
    assert v.key == OTHER


def test_flood_of_indeterminate_saves_is_undecided_not_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10 saves in flight for ever, each read later: 2**10 sets to consider at the first return.
    monkeypatch.setattr(linearize, "MAX_CONFIGS", 300)
    h = [op(w, "save", w + 1, w, None) for w in range(10)]
    h.append(op(20, "load", None, 50, 51))
    h.extend(op(21, "load", w + 1, 60 + 2 * w, 61 + 2 * w) for w in range(10))
    with pytest.raises(linearize.UndecidedError):
        first_unexplained(h)
    [v] = check_history(h)
    assert v.kind == "undecided"
    assert "not a pass" in v.summary
    monkeypatch.setattr(linearize, "MAX_CONFIGS", 200_000)
    assert check_history(h) == []


# -- shrinking and the report -------------------------------------------------------------------


def _long_history_with_stale_read(n: int) -> tuple[list[Op], Op]:
    h: list[Op] = []
    t = 0.0
    for i in range(n):
        # Two workers, overlapping save/load pairs that are all fine.
        h.append(op(0, "save", 2 * i + 1, t, t + 2))
        h.append(op(1, "load", 2 * i + 1, t + 1, t + 3))
        t += 4
    h.append(op(0, "save", 10**6, t, t + 1))
    stale = op(1, "load", 2 * n - 1, t + 2, t + 3)
    h.append(stale)
    h.extend(op(0, "save", 10**7 + i, t + 10 + 4 * i, t + 12 + 4 * i) for i in range(n))
    return h, stale


def test_shrink_finds_the_few_operations_that_matter() -> None:
    h, stale = _long_history_with_stale_read(500)
    excerpt = shrink(h)
    assert stale in excerpt
    assert len(excerpt) == 3  # the stale value's save, the newer save, the stale read
    assert not linearizable(excerpt)
    # Minimal: dropping any one operation makes it linearizable or loses a read's source.
    for i in range(len(excerpt)):
        rest = excerpt[:i] + excerpt[i + 1 :]
        assert linearizable(rest) or any(
            o.kind == "load" and o.result is not None and o.result not in {s.value for s in rest}
            for o in rest
        )


def test_excerpt_shows_operations_as_recorded() -> None:
    # The long save is still running when the stale read returns: the check treats it as
    # indeterminate, but the excerpt must show what was recorded (ok, completed at 10).
    old, new = op(0, "save", 1, 0, 1), op(1, "save", 2, 2, 10)
    seen_new, stale = op(2, "load", 2, 3, 4), op(2, "load", 1, 5, 6)
    excerpt = shrink([old, new, seen_new, stale, op(0, "load", 2, 11, 12)])
    assert sorted(excerpt, key=lambda o: o.invoke) == [old, new, seen_new, stale]
    assert not linearizable(excerpt)


def test_an_excerpt_keeps_the_delete_that_explains_its_load_of_none() -> None:
    # Seen in CI (M1 on stale_cache): worker 2 saves A, deletes, then loads None, all fine; worker
    # 0's cache then returns A after the delete. Shrinking once dropped the delete and worker 0's
    # stale load and showed "save A, load -> None" by one worker: a lost write that never
    # happened. The stale read is the fault, and the excerpt must say so.
    saved = op(2, "save", 7, 0, 1)
    deleted = op(2, "delete", None, 2, 3)
    emptied = op(2, "load", None, 4, 4.5)
    stale = op(0, "load", 7, 4.6, 5)
    excerpt = shrink([saved, deleted, emptied, stale])
    assert deleted in excerpt
    assert stale in excerpt
    assert not linearizable(excerpt)


def test_report_shows_seed_excerpt_and_counts() -> None:
    h, _ = _long_history_with_stale_read(20)
    errors = [
        op(2, "save", 10**8 + i, 1000 + i, 1000.5 + i, outcome="info", error="OSError: boom")
        for i in range(5)
    ]
    text = format_violations(check_history(h + errors), seed=1234, origin=0.0)
    assert "seed 1234" in text
    assert "--stress-seed 1234" in text
    assert "not linearizable" in text
    assert "load -> 39" in text
    assert "2 more exception violation(s)" in text


def test_long_busy_history() -> None:
    # 4 workers x 5,000 ops on one key, every op overlapping its neighbours: the sweep keeps only
    # operations in flight (benchmarks/bench_concurrency.py times it). A late stale read at the
    # end must still be found.
    h: list[Op] = []
    value = 0
    for i in range(5_000):
        for w in range(4):
            start = i * 4 + w
            if w == 0:
                value += 1
                h.append(op(w, "save", value, start, start + 3.5))
            else:
                # The last reader overlaps the save and may still see the previous value.
                seen = value - 1 if w == 3 and i % 2 else value
                h.append(op(w, "load", seen, start, start + 3.5))
    assert linearizable(h)
    stale = op(1, "load", value - 1, 4 * 5_000 + 10, 4 * 5_000 + 11)
    assert first_unexplained([*h, stale]) == stale


# -- agreement with brute force on small random histories ---------------------------------------


def _brute_force(ops: list[Op]) -> bool:
    """Try every subset of optional operations and every order real time allows."""
    must = [o for o in ops if o.outcome == "ok"]
    optional = [o for o in ops if o.outcome == "info"]

    def precedes(a: Op, b: Op) -> bool:
        return a.outcome == "ok" and a.complete is not None and a.complete < b.invoke

    for r in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, r):
            for order in itertools.permutations(must + list(chosen)):
                if any(precedes(order[i], order[j]) for i in range(len(order)) for j in range(i)):
                    continue
                state: int | None = None
                for o in order:
                    if o.kind == "save":
                        state = o.value
                    elif o.kind == "delete":
                        state = None
                    elif o.outcome == "ok" and o.result != state:
                        break
                else:
                    return True
    return False


@st.composite
def small_histories(draw: st.DrawFn, most: int = 6) -> list[Op]:
    n = draw(st.integers(1, most))
    ops = []
    for i in range(n):
        kinds: list[OpKind] = ["save", "load", "load", "delete"]
        outcomes: list[Outcome] = ["ok", "ok", "ok", "info", "fail"]
        kind = draw(st.sampled_from(kinds))
        start = draw(st.integers(0, 12))
        end = start + draw(st.integers(0, 6))
        outcome = draw(st.sampled_from(outcomes))
        # Saves write unique values; loads may return any of them, None, or one nobody wrote.
        arg = i + 1 if kind == "save" else draw(st.sampled_from([None, 1, 2, 3, 4, 99]))
        # An indeterminate operation either never completed (killed) or raised something
        # undocumented (completion time known, effect unknown).
        raised = outcome == "info" and draw(st.booleans())
        finished = end if outcome != "info" or raised else None
        error = "OSError: injected" if raised else None
        ops.append(op(i, kind, arg, start, finished, outcome=outcome, error=error))
    return ops


@settings(max_examples=200, deadline=None)
@given(small_histories())
def test_checker_agrees_with_brute_force(ops: list[Op]) -> None:
    assert linearizable(ops) == _brute_force([o for o in ops if o.outcome != "fail"])


@settings(max_examples=1000, deadline=None)
@given(small_histories(most=8))
def test_no_left_out_write_explains_an_excerpt(ops: list[Op]) -> None:
    # An excerpt is shown as proof, so it must fail for what it shows: adding back any of the
    # saves and deletes it left out never makes it linearizable.
    if linearizable(ops):
        return
    excerpt = shrink(ops, budget_seconds=1.0)
    assert not linearizable(excerpt)
    left_out = [o for o in ops if o.kind != "load" and o not in excerpt]
    for r in range(1, len(left_out) + 1):
        for back in itertools.combinations(left_out, r):
            assert not linearizable(excerpt + list(back)), (excerpt, back)


@pytest.mark.parametrize("seed", range(3))
def test_real_atomic_register_histories_are_linearizable(seed: int) -> None:
    # Simulate an atomic register: each op takes effect at a random instant inside its interval.
    rng = random.Random(seed)
    kinds: list[OpKind] = ["save", "load", "delete"]
    events = []
    for w in range(4):
        t = 0.0
        for s in range(300):
            start = t + rng.random()
            point = start + rng.random()
            end = point + rng.random()
            events.append((point, w, s, start, end, rng.choice(kinds)))
            t = end
    state: int | None = None
    h = []
    for _point, w, s, start, end, kind in sorted(events):
        value = w * 2**32 + s if kind == "save" else None
        if kind == "save":
            state = value
        elif kind == "delete":
            state = None
        killed = rng.random() < 0.02
        h.append(
            op(
                w,
                kind,
                value if kind == "save" else state if kind == "load" else None,
                start,
                None if killed else end,
            )
        )
    assert check_history(h) == []


# -- what a history's violations demonstrate (stress/concurrency/_findings.py) ------------------


def _facts(h: list[Op], refused: str = "") -> list[str]:
    return [f["fact"] for f in history_findings(check_history(h), h, refused_second=refused)]


def test_a_writer_raising_while_another_writes_the_key_shows_two_writers_at_once() -> None:
    rival = op(1, "save", 1, 0, 4)
    failed = op(2, "save", 2, 1, 3, outcome="info", error="FileNotFoundError: t.offset.tmp")
    torn_read = op(1, "load", None, 5, 6, outcome="info", error="ValueError: corrupt ''")
    # The read that raised parsed what the two wrote: no second cause for it.
    assert _facts([rival, failed, torn_read]) == ["two-writers-at-once"]
    (found,) = history_findings(check_history([rival, failed]), [rival, failed])
    assert found["shown"].endswith("while worker 1 ran save")


def test_a_writer_raising_alone_shows_nothing_certain_and_a_read_raising_a_torn_file() -> None:
    alone = op(2, "save", 2, 1, 3, outcome="info", error="OSError: disk full")
    assert _facts([op(0, "save", 1, 0, 0.5), alone]) == []
    read = op(1, "load", None, 2, 3, outcome="info", error="ValueError: corrupt ''")
    assert _facts([op(0, "save", 1, 0, 4), read]) == ["read-raised"]


def test_values_nobody_saved_and_values_of_another_key() -> None:
    assert _facts([op(0, "save", 4294967297, 0, 1), op(1, "load", 42949, 2, 3)]) == [
        "read-torn-value"
    ]
    assert _facts([op(0, "save", 9, 0, 1, key=OTHER), op(1, "load", 9, 2, 3)]) == [
        "read-other-keys-value"
    ]


def test_a_worker_that_never_sees_another_workers_save_is_a_stale_cache() -> None:
    # Worker 1 saved 1, worker 0 saved 2 after it; worker 1 keeps answering its own 1.
    stale = [op(1, "save", 1, 0, 1), op(0, "save", 2, 2, 3), op(1, "load", 1, 4, 5)]
    assert _facts(stale) == ["stale-own-value"]
    # The same stale answer from a store that did show worker 1 a new value once is a lost
    # update: its reads are fresh, so something overwrote the save.
    fresh_once = [
        op(1, "save", 1, 0, 1),
        op(0, "save", 3, 1.5, 1.8),
        op(1, "load", 3, 1.9, 1.95),
        op(0, "save", 2, 2, 3),
        op(1, "load", 3, 4, 5),
    ]
    assert _facts(fresh_once) == ["lost-update"]


def test_a_second_process_refused_is_said_when_the_workers_could_not_start() -> None:
    assert _facts([], refused="worker 1 could not open the store: AlreadyLocked") == [
        "second-process-refused"
    ]
