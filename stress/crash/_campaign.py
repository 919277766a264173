"""Crash points and random-time kills: D1, D2, D4 and D5 on any store named by a spec.

One campaign serves the four properties (the runner asks for each; the campaign runs once per
spec and seed). For each scenario (a save over an old value, a first save, a delete, and an open
of a new handle over committed data), a worker first counts the operations the change makes (the
interposer's trace); then, for every operation ``k`` and phase (before/after), a fresh worker sets
up the old state, starts the change, stops itself right before or after operation ``k``, and the
parent kills it from outside. The next worker, a process that never had the store open, judges
the directory (``_judge.py``) before it takes its own turn. Random-time kills of a tight save loop,
and of a loop of opens, cover what the interposer cannot see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from typing import Final

from lance_offsets.conformance._diagnosis import FINDINGS, finding
from lance_offsets.conformance._results import PropertyResult

from .._options import StressOptions
from ..seam._record import Backend, remember_save
from ..seam._trace import TraceOp
from ..workers._fleet import WorkerGone
from ._cycle import Campaign, Found, Run, Scenario, label, points
from ._judge import LOCK_WAIT_BOUND, Violation

__all__ = [
    "DELETE",
    "FIRST_SAVE",
    "OPEN",
    "SAVE_OVER",
    "Campaign",
    "check_d1",
    "check_d2",
    "check_d4",
    "check_d5",
    "damages",
    "evidence",
    "property_result",
    "run_campaign",
]

Key = tuple[int, int]

#: The scenarios, by name (``run_campaign(only=...)`` takes these).
SAVE_OVER: Final = "save over an old value"
FIRST_SAVE: Final = "first save"
DELETE: Final = "delete"
OPEN: Final = "open over committed data"
#: Random-time kills during open (a loop of open, load, close over committed data).
OPEN_RANDOM_KILLS: Final = 2
#: Random-time kills in a short run (the crash points all run once whatever the length).
SHORT_RANDOM_KILLS: Final = 6
#: Kill-verify cycles of a long run when ``StressOptions.cycles`` is 0.
LONG_CYCLES: Final = 2000


def _scenarios(run: Run, key: Key, other: Key) -> list[Scenario]:
    old, new, other_value = run.value(), run.value(), run.value()
    while new == old:
        new = run.value()
    return [
        Scenario(SAVE_OVER, {other: other_value, key: old}, key, new),
        Scenario(FIRST_SAVE, {other: other_value}, key, new),
        Scenario(DELETE, {other: other_value, key: old}, key, None),
        Scenario(OPEN, {other: other_value, key: old}, key, None, "open"),
    ]


def _garble_line(old: bytes) -> bytes:
    """The middle complete line overwritten with ``?`` (its newline kept): one damaged record.

    F1's damage is whole-file; a log keeps its line structure after this one, so a replay that
    skips a bad record and goes on shows itself (a line-based store without records raises).
    """
    ends = [i for i, byte in enumerate(old) if byte == ord("\n")]
    if not ends:
        return b"?" * len(old)
    middle = (len(ends) - 1) // 2
    start = ends[middle - 1] + 1 if middle else 0
    return old[:start] + b"?" * (ends[middle] - start) + old[ends[middle] :]


def damages() -> dict[str, Callable[[bytes], bytes]]:
    """What is done to a file a killed save left: F1's generic damage, and one garbled record.

    Imported when first needed: the conformance module imports Hypothesis, which a stress-only
    process need not load, nor every worker the fork server makes from it (each fork of a
    larger process costs more: a campaign ran three times slower with it loaded at import).
    """
    from lance_offsets.conformance._props_damage import GENERIC_DAMAGE

    return {**GENERIC_DAMAGE, "a line garbled": _garble_line}


def _kept(trace: list[TraceOp], where: str) -> list[str]:
    """Files the counted change wrote (or renamed into place) that its clean close kept.

    Those are the store's data, which F1 damages only as a clean close leaves them; a file the
    close removes (a journal, SQLite's WAL) is crash-recovery state whose torn or damaged tail a
    library may by design read as the end of the log, as after any crash.
    """
    wrote = set()
    for op in trace:
        if op.kind == "mark":
            break  # what follows is close()
        if op.error is None and op.kind in ("write", "truncate", "rename", "replace"):
            wrote.add(os.path.relpath(op.target or op.path, where))
    return sorted(name for name in wrote if os.path.isfile(os.path.join(where, name)))


def _damage_points(run: Run, plans: dict[str, tuple[Scenario, list[TraceOp], str]]) -> None:
    """Kill a save over an old value, then damage a file it wrote; read: loud or correct (D4).

    One seeded crash point and file per kind of :func:`damages` (emptied, cut, garbage...).
    """
    if SAVE_OVER not in plans:
        return
    scenario, trace, where = plans[SAVE_OVER]
    targets, where_points = _kept(trace, where), points(trace)
    if not targets or not where_points:
        return
    for how, damage in damages().items():
        op, phase = run.rng.choice(where_points)
        text = label(op, phase, trace, where)
        target = run.rng.choice(targets)
        run.damage_point(scenario, op, phase, text, trace, target=target, damage=(how, damage))


Plans = dict[str, tuple[Scenario, list[TraceOp], str]]


def _crash_points(run: Run, key: Key, other: Key, only: Collection[str], total: int) -> Plans:
    """Count each scenario's operations, then kill at every point of each; the counted plans.

    One pass in a short run; in a long one, passes with fresh values (same operations) until
    half of ``total`` cycles are done.
    """
    plans: Plans = {}
    for scenario in _scenarios(run, key, other):
        if not only or scenario.name in only:
            counted = run.count_ops(scenario)
            if counted is not None:
                plans[scenario.name] = (scenario, *counted)
                if scenario.name == SAVE_OVER:  # F2 plans its faults from this same trace
                    same = (run.fleet.spec, run.options.backend, run.options.seed, key)
                    backend: Backend = "syscall" if run.backend == "syscall" else "python"
                    remember_save(same, backend, counted[0], run.result.unseen, run.result.tracing)
    if not any(points(trace) for _, trace, _ in plans.values()):
        return plans  # nothing traced: only random kills can test this store
    passes = 0
    # A long run stops repeating once a pass found violations: the verdict cannot improve.
    while passes == 0 or (run.result.cycles < total // 2 and not run.result.violations):
        fresh = {s.name: s for s in _scenarios(run, key, other)} if passes else {}
        for name, (counted_with, trace, where) in plans.items():
            scenario = fresh.get(name, counted_with)
            for op, phase in points(trace):
                text = label(op, phase, trace, where)
                if passes == 0 and "[after fsync, before rename]" in text:
                    run.result.named.append(f"{name}: {text}")
                run.crash_point(scenario, op, phase, text, trace)
        passes += 1
    _damage_points(run, plans)
    return plans


def _client_out_of_reach(spec: str, plans: Plans) -> str:
    """Why client kills can reach nothing the server campaigns leave out, or "" when they can.

    They cannot when the store declares its server and the seam saw no file operation in the
    counted save: what it stores lives in the server, which the server campaigns kill (D2) and
    cut off (F2); killing the client again and again only repeats the short run's kills.
    """
    if SAVE_OVER not in plans or points(plans[SAVE_OVER][1]):
        return ""
    from lance_offsets.conformance._spec import load_factory

    from ..servers import server_of

    if server_of(load_factory(spec)) is None:
        return ""
    return (
        "the store declares its server and its client made no file operation in the counted "
        "save (the seam's trace of it is empty), so a client kill reaches nothing of what the "
        "server keeps: the server campaigns decide D2 (server killed) and F2 (connection "
        f"faults); the short run's {SHORT_RANDOM_KILLS} client kills stay (a client that "
        "acknowledges before its request is sent shows in them)"
    )


def run_campaign(
    spec: str,
    options: StressOptions,
    *,
    only: Collection[str] = (),
    random_kills: int | None = None,
    bound: float = LOCK_WAIT_BOUND,
    until: str | None = None,
) -> Campaign:
    """Run the crash points (all, once per pass) and random kills on the store ``spec`` names.

    A short run (``options.long`` False) makes one pass and a few random kills; a long one makes
    passes with fresh values and random kills, half each, until ``options.cycles`` (default
    2,000) kill-verify cycles are done, or stops after the first pass and a few random kills
    if that pass found violations (a failed verdict cannot get better).

    :param only: run only the scenarios with these names (all when empty), for quick tests.
    :param random_kills: how many random-time kills instead of the default for the length.
    :param bound: D5's bound on a later save's wait after a kill, seconds.
    :param until: stop at the first violation of this property (a test that expects one).
    """
    result = Campaign(seed=options.seed, bound=bound)
    run = Run(spec, options, result, bound, until)
    started = time.monotonic()
    try:
        key = (run.rng.randrange(2**32), run.rng.randrange(2**64))
        other = (key[0], key[1] ^ 1)
        total = (options.cycles or LONG_CYCLES) if options.long else 0
        plans = _crash_points(run, key, other, only, total)
        kills = SHORT_RANDOM_KILLS
        if options.long and not result.violations:
            kills = max(total - result.cycles, SHORT_RANDOM_KILLS)
            result.skipped_why = _client_out_of_reach(spec, plans)
            if result.skipped_why:
                result.skipped_kills, kills = kills - SHORT_RANDOM_KILLS, SHORT_RANDOM_KILLS
        if random_kills is not None:
            kills = random_kills
        for _ in range(kills):
            run.random_kill(key)
        if not only or OPEN in only:
            for _ in range(OPEN_RANDOM_KILLS):
                run.random_open_kill(key, other)
    except WorkerGone as exc:
        result.errors.append(f"harness: {exc}")
    except Found:
        pass
    finally:
        run.finish()
        result.seconds = time.monotonic() - started
    return result


_CACHE: dict[tuple[str, int, bool, int], Campaign] = {}


def _campaign(spec: str, options: StressOptions) -> Campaign:
    """The campaign for ``spec`` and these options, run once for all four properties."""
    key = (spec, options.seed, options.long, options.cycles)
    if key not in _CACHE:
        _CACHE.clear()  # one spec at a time: keep memory flat across a long session
        _CACHE[key] = run_campaign(spec, options)
    return _CACHE[key]


#: The properties one campaign decides.
_SHARED: Final = ("D1", "D2", "D4", "D5")


def _summary(c: Campaign) -> str:
    rate = c.cycles / c.seconds if c.seconds else 0.0
    traced = " (crash points from the syscall shim)" if c.backend == "syscall" else ""
    text = (
        f"one campaign for {', '.join(_SHARED)}, seed {c.seed}{traced}: {c.points} crash-point "
        f"kills, {c.random_kills} random kills, "
        f"{c.cycles} kill-verify cycles in {c.seconds:.1f} s ({rate:.1f}/s)"
    )
    if c.unreached:
        text += (
            f", {c.unreached} points not reached (the store's operations differ from run to run:"
            " its behaviour is timing-dependent)"
        )
    return text


def _verdict(pid: str, spec: str, options: StressOptions) -> PropertyResult:
    # Every property of the campaign shows the campaign's time, and its evidence says the time
    # is shared: a row of 0.00 s would read as "did not run".
    return property_result(pid, _campaign(spec, options))


#: The properties crash points are there for: with none reached, a pass says little.
_NEEDS_POINTS: Final = frozenset({"D1", "D2", "D4"})


def _judged(c: Campaign, pid: str) -> dict[str, int | float | str]:
    """What the campaign judged for ``pid`` alone (the rest of the evidence is shared)."""
    count = c.judged.get(pid, 0)
    if pid == "D1":
        return {"points not reached": c.unreached, "states judged old or new": count}
    if pid == "D2":
        return {"states with an acknowledged change judged": count}
    if pid == "D4":
        return {"states judged for leftovers": count, "damaged after a kill": c.damaged}
    return {"later saves timed": count, "longest later save (s)": round(c.max_wait, 3)}


def evidence(c: Campaign, pid: str = "D1") -> dict[str, int | float | str]:
    """What campaign ``c`` exercised, as property ``pid``'s evidence.

    The kills are shared; what was judged for ``pid`` is its own. The time of each of the four
    is the campaign's (said by "time shared with").
    """
    shown: dict[str, int | float | str] = {
        "crash points killed": c.points,
        "random kills": c.random_kills,
        "cycles": c.cycles,
        **_judged(c, pid),
        "tracing": c.tracing or _TRACING.get(c.backend, "none"),
        "workers": c.workers,
    }
    if c.refused:
        shown["changes that raised uncrashed (C1)"] = len(c.refused)
    if c.skipped_why:
        shown["random kills skipped (out of reach)"] = c.skipped_kills
    shown["time shared with"] = ", ".join(p for p in _SHARED if p != pid)
    return shown


#: How evidence names each backend.
_TRACING: Final = {"python": "python interposer", "syscall": "syscall shim"}


def _findings(pid: str, c: Campaign, found: list[Violation]) -> list[dict[str, str]]:
    """What ``pid``'s violations demonstrate, the most frequent first (``_diagnosis.py``)."""
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    for violation in found:
        if violation.fact:
            counts[violation.fact] = counts.get(violation.fact, 0) + 1
            shown.setdefault(violation.fact, violation.headline)
    facts = sorted(counts, key=lambda fact: -counts[fact])
    if c.hung and c.errors:
        facts.insert(0, "hung")
        shown["hung"] = c.errors[0]
    return [finding(fact, shown[fact]) for fact in facts]


def _headline(pid: str, c: Campaign, found: list[Violation]) -> str:
    """The failure's first line: the violation itself, or the error that stopped the campaign."""
    if found:
        more = f" (and {len(found) - 1} more violation(s) of {pid})" if len(found) > 1 else ""
        return f"{found[0].headline or found[0].text.splitlines()[0]}{more}"
    return c.errors[0]


def property_result(pid: str, c: Campaign) -> PropertyResult:
    """The verdict on property ``pid`` (D1, D2, D4 or D5) from campaign ``c``'s findings.

    A failure found any way (crash point or random kill) fails, and its details lead with the
    violation. A property that needs crash points (D1, D2, D4) and reached none, with no
    violation, is "unverified", not passed: only random kills ran, and a few of those in a tight
    loop prove little.
    """
    found = [v for v in c.violations if v.prop == pid]
    lines = [_summary(c)]
    if pid == "D1" and c.named:
        lines.append("named points: " + "; ".join(c.named[:3]))
    if pid == "D5":
        lines.append(f"longest later save after a kill: {c.max_wait:.3f} s (bound {c.bound:g} s)")
    shown = evidence(c, pid)
    if c.refused:
        # The store's own operation failed with nothing crashed or faulted: a C1 finding, which
        # C1 reports. Here it only says which cycles judged nothing, never fails a D property.
        lines.append(
            f"{len(c.refused)} change(s) raised with no crash or fault, so their cycles judged "
            f"nothing (the store's own error: see C1), e.g. {c.refused[0]}"
        )
    if c.list_wrong:
        lines.append(c.list_wrong)
    if c.skipped_why:
        lines.append(f"{c.skipped_kills} random kills skipped: {c.skipped_why}")
    if not found and not c.errors:
        if pid in _NEEDS_POINTS and c.points == 0:
            unseen = c.unseen or "the syscall backend was not tried"
            why = (
                "no crash point reached: the store's I/O is not visible to the Python interposer "
                f"(C extension?), and {unseen}; {c.random_kills} random kills found nothing"
            )
            return PropertyResult(pid, "unverified", c.seconds, "\n".join([why, *lines]), shown)
        return PropertyResult(pid, "passed", c.seconds, "\n".join(lines), shown)
    lines.insert(0, _headline(pid, c, found))
    lines += [error for error in c.errors if error != lines[0]]
    lines.append(
        f"{len(found)} violation(s) of {pid}; replay with the same seed: "
        f"check --seed {c.seed}, pytest --stress-seed {c.seed}"
    )
    for violation in found[:3]:
        lines += ["---", violation.text]
    if c.kept:
        lines.append(f"crash directories kept under {c.kept}")
    artifacts = {FINDINGS: _findings(pid, c, found)}
    return PropertyResult(pid, "failed", c.seconds, "\n".join(lines), shown, artifacts)


def check_d1(spec: str, options: StressOptions) -> PropertyResult:
    """D1: a process killed at any point of a save or delete leaves the old or the new value."""
    return _verdict("D1", spec, options)


def check_d2(spec: str, options: StressOptions) -> PropertyResult:
    """D2: a change acknowledged before the kill survives it."""
    return _verdict("D2", spec, options)


def check_d4(spec: str, options: StressOptions) -> PropertyResult:
    """D4: crash leftovers never show up as keys or values and never block a later save."""
    return _verdict("D4", spec, options)


def check_d5(spec: str, options: StressOptions) -> PropertyResult:
    """D5: a lock holder killed mid-save stops another process for at most a bounded time."""
    return _verdict("D5", spec, options)
