"""Running the properties: one verdict per property, serially or over worker processes.

This is what ``lance-offsets check`` and the pytest plugin call, and what anyone can call without
pytest::

    from lance_offsets.conformance import run_checks
    for result in run_checks("mypkg.store:factory", profile="quick"):
        print(result.id, result.outcome, result.details)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn

from hypothesis.errors import Flaky, Unsatisfiable
from lance_offsets.stress._options import DEFAULT_TEAR_SIZE

from lance_offsets._interrupt import quiet_child, raise_if_interrupted

from . import _profiles
from ._capabilities import Factory, capabilities_of
from ._catalog import PROPERTIES, property_ids
from ._context import CheckContext, Unverified
from ._diagnosis import FINDINGS, finding
from ._driver import DriverError
from ._hang import StoreHung, hang_result
from ._machine import MACHINE_PLANS, ContractViolation, spec_of, store_machine
from ._profiles import (
    DEFAULT_PROFILE,
    BudgetSpent,
    Tally,
    profile_settings,
    run_settings,
)
from ._results import Outcome, PropertyResult
from ._runscope import run_scope
from ._spec import SpecError, canonical_spec, load_factory, prepared
from ._watch import watching
from ._workspace import Workspace

__all__ = ["CHECKS", "check_property", "failure_text", "run_checks"]

#: Where each single-process property is checked that the machine does not cover.
CHECKS: Final[dict[str, str]] = {
    "C7": "._props_api:check_c7",
    "C8": "._props_api:check_c8",
    "F1": "._props_damage:check_f1",
    "H1": "._props_hooks:check_h1",
    "H2": "._props_hooks:check_h2",
    "H3": "._props_hooks:check_h3",
    "S1": "._props_names:check_s1",
}

#: Why P2 does not apply to a store that allows one open handle at a time, anywhere.
ONE_AT_A_TIME: Final = (
    "the store allows one open handle at a time (handles_per_process = 1 and not shared): "
    "there is never another open handle to see a write"
)

#: Stress properties that exist in the catalog but whose check is not written yet fail with this.
NOT_IMPLEMENTED: Final = "not implemented yet"


#: Tail of a traceback shown when a failure carries no steps of its own.
_TRACEBACK_LINES: Final = 6


def _title(pid: str) -> str:
    return f"[{pid} {PROPERTIES[pid].title}]"


def _notes(exc: BaseException) -> list[str]:
    return [str(n) for n in getattr(exc, "__notes__", ())]


def _steps(tally: Tally | None) -> list[str]:
    if tally is None or not tally.steps:
        return []
    return ["Store steps of the last example the suite ran (latest last):", *tally.steps]


def failure_text(exc: BaseException, pid: str | None = None, tally: Tally | None = None) -> str:
    """A failure report that leads with the property, the store's steps and its state.

    A :class:`ContractViolation` says what the store did and the model; Hypothesis' notes are the
    shrunk steps. Any other error (the store raised where no check expected it, a harness part
    broke) is titled with the property and the store operation that was running, and shows the
    suite's own record of the steps when Hypothesis gives none.
    """
    if isinstance(exc, Flaky) and pid is not None:
        return _flaky_text(exc, pid, tally)
    message = f"{type(exc).__name__}: {exc}"
    lines = []
    if pid is not None and not isinstance(exc, ContractViolation):
        running = f" while running {tally.running}" if tally is not None and tally.running else ""
        lines.append(f"{_title(pid)} the check stopped on an error{running}:")
    lines.append(message)
    notes = _notes(exc)
    lines.extend(notes)
    if not notes:
        lines.extend(_steps(tally))
        lines.extend(traceback.format_exception(exc)[-_TRACEBACK_LINES:])
    return "\n".join(lines).rstrip()


def _findings(exc: BaseException) -> dict[str, Any]:
    """The artifacts of a failure: what its violation demonstrates, when the check said."""
    fact = getattr(exc, "fact", "") if isinstance(exc, ContractViolation) else ""
    if not fact:
        return {}
    return {FINDINGS: [finding(fact, str(exc))]}


def _flaky_text(exc: BaseException, pid: str, tally: Tally | None) -> str:
    lines = [
        f"{_title(pid)} the store's behaviour was time-dependent: the same steps passed once and "
        "failed once (or drew differently), so the failure could not be replayed or shrunk. "
        "Look for time, caches with expiry, background threads or state kept across handles.",
    ]
    for failure in list(getattr(exc, "exceptions", ()))[:2]:
        lines.append(f"One run failed with {type(failure).__name__}: {failure}")
        lines.extend(_notes(failure))
    lines.extend(_notes(exc))
    lines.extend(_steps(tally))
    first = str(exc).strip().splitlines()[:1]
    lines.append(f"(Hypothesis reported {type(exc).__name__}: {first[0] if first else ''})")
    return "\n".join(lines).rstrip()


def _run_machine(ctx: CheckContext, pid: str) -> str:
    from hypothesis import stateful

    # Older Hypothesis releases leave this function unannotated, newer ones annotate it; through
    # Any, mypy --strict accepts both. Its signature is (class, *, settings).
    run_machine: Any = stateful.run_state_machine_as_test
    if pid == "P2" and ctx.caps.one_handle and not (ctx.caps.shared and ctx.spec):
        # P2 needs a second handle, and the only place left for one is another process.
        why = "it does not claim shared" if not ctx.caps.shared else "no import spec"
        raise Unverified(
            "P2 needs a second handle: the store allows one per process, and another process "
            f"cannot open one ({why})"
        )
    machine = store_machine(
        ctx.factory,
        focus=[pid],
        spec=ctx.spec,
        workdir=ctx.workspace.root,
        tally=ctx.settings.tally,
    )
    try:
        # The machine counts its own examples; the plain settings do not count them again.
        run_machine(ctx.settings.seeded(machine), settings=ctx.settings.plain())
    finally:
        if machine.remote is not None:
            machine.remote.stop()
        machine.workspace.cleanup()
    notes = []
    if pid == "P2" and "second" not in machine.families:
        notes.append(
            "the same-process part was not checked: the store declares one handle per process"
        )
    if pid == "P2" and "remote" not in machine.families:
        why = "store does not claim shared" if not ctx.caps.shared else "factory has no import spec"
        notes.append(f"the other-process part was not checked: {why}")
    return "; ".join(notes)


def _budget_spent(tally: Tally) -> NoReturn:
    """End a run stopped :data:`~._profiles.BAD_NEWS_SECONDS` after its first violation.

    Raises its latest violation of the property (a failure, shown with the steps that made it),
    or, when only other properties broke, :class:`Unverified`: what ran is too little to pass.
    """
    stopped = (
        f"(the run stopped {_profiles.BAD_NEWS_SECONDS:g} s after its first violation, after "
        f"{tally.examples} examples: each replay of the store's failing path was slow, so this "
        "example may not be the smallest)"
    )
    if tally.latest is not None:
        found, steps = tally.latest
        found.__notes__ = [  # type: ignore[attr-defined]  # set by hand: 3.10 has no add_note
            "Store steps of the example (latest last):",
            *steps,
            stopped,
        ]
        raise found
    culprits = ", ".join(pid for pid, _ in tally.broke_first.most_common()) or "another property"
    raise Unverified(
        f"{tally.discarded} of {tally.examples} examples discarded because {culprits} broke "
        f"first: fix that, then check again {stopped}"
    )


def _checker(pid: str) -> Callable[[CheckContext], str]:
    if pid in MACHINE_PLANS:
        return lambda ctx: _run_machine(ctx, pid)
    module_name, _, func = CHECKS[pid].partition(":")
    module = importlib.import_module(module_name, __package__)
    return getattr(module, func)  # type: ignore[no-any-return]


def check_property(
    factory: Factory | str,
    pid: str,
    *,
    profile: str = DEFAULT_PROFILE,
    spec: str | None = None,
    workdir: str | None = None,
    seed: int | None = None,
    database: str | None = None,
) -> PropertyResult:
    """Check one single-process property (C*, P*, F1, H*, S1) and return its verdict.

    :param seed: run seed: the property's Hypothesis seed is derived from it and ``pid``, so the
        same seed gives the same verdict in any directory (None: fresh; derandomized profiles
        need none).
    :param database: directory for a Hypothesis example database kept per store and property
        (default: the ``LANCE_OFFSETS_EXAMPLE_DB`` environment variable, else no database).
    """
    if isinstance(factory, str):
        factory = canonical_spec(factory)
        spec = spec or factory
        factory = load_factory(factory)
    else:
        factory = prepared(factory)  # an asyncio factory given as an object (docs/async.md)
    start = time.monotonic()
    caps = capabilities_of(factory)
    missing = caps.missing(PROPERTIES[pid].needs)
    if missing:
        return PropertyResult(
            pid, "not-applicable", 0.0, f"store does not claim {', '.join(missing)}"
        )
    if pid == "P2" and caps.one_at_a_time:
        return PropertyResult(pid, "not-applicable", 0.0, ONE_AT_A_TIME)
    settings = run_settings(
        profile, pid=pid, seed=seed, spec=spec or spec_of(factory), database=database
    )
    tally = settings.tally
    with Workspace(factory, workdir) as workspace, watching(tally):
        ctx = CheckContext(factory, caps, spec, settings, workspace)
        try:
            try:
                details = _checker(pid)(ctx)
            except (BudgetSpent, Exception):
                if not tally.stopped:
                    raise
                _budget_spent(tally)  # raises what the handlers below turn into the verdict
        except StoreHung as hung:  # a call into the store did not return (here: _remote.py's)
            report = dataclasses.replace(
                hung.report, running=tally.running, steps=tuple(tally.steps)
            )
            result = hang_result(pid, report)
        except Unsatisfiable:
            # Every example broke another property first: the same "no verdict" as most did.
            why = tally.too_few_kept() or (
                "every example was discarded because another property broke first: fix that, "
                "then check again"
            )
            result = PropertyResult(pid, "unverified", 0.0, why)
        except Unverified as why:
            result = PropertyResult(pid, "unverified", 0.0, str(why))
        except Exception as exc:
            result = PropertyResult(
                pid, "failed", 0.0, failure_text(exc, pid, tally), artifacts=_findings(exc)
            )
        else:
            blocked = tally.too_few_kept()
            outcome: Outcome = "unverified" if blocked else "passed"
            result = PropertyResult(pid, outcome, 0.0, "; ".join(filter(None, [blocked, details])))
        # The tally counts examples for every property; the workspace adds what a check did
        # beyond them (damaged states, warm handles, helper handles in another process).
        evidence = {
            **(tally.evidence() if tally.examples else {}),
            **workspace.evidence,
        }
    return dataclasses.replace(result, seconds=time.monotonic() - start, evidence=evidence)


def _say_on_stderr(line: str) -> None:
    # Long runs take minutes: say what is happening on stderr, away from the verdict table.
    print(f"  .. {line}", file=sys.stderr, flush=True)


def default_stress_options(
    stress: bool,
    seed: int | None = None,
    *,
    workdir: str | None = None,
    say: Callable[[str], None] | None = None,
    tear_size: int = DEFAULT_TEAR_SIZE,
) -> Any:
    """The multi-process runs' options every door uses, so one seed gives one verdict.

    :param say: where a long run's progress lines go (default: stderr).
    :param tear_size: the bytes a disk writes atomically, for D3's and B1's power cuts.
    """
    from lance_offsets.stress._options import StressOptions, choose_seed

    chosen = choose_seed() if seed is None else seed
    if not stress:
        return StressOptions(
            seconds=2.0, workers=2, seed=chosen, workdir=workdir, tear_size=tear_size
        )
    return StressOptions.for_long_run(
        seed=chosen, progress=say or _say_on_stderr, workdir=workdir, tear_size=tear_size
    )


def _run_stress(spec: str, ids: list[str], stress: bool, options: Any) -> list[PropertyResult]:
    from lance_offsets.stress._runner import run_properties

    if options is None:
        options = default_stress_options(stress)
    results = []
    for pid in ids:
        start = time.monotonic()
        try:
            results.extend(run_properties(spec, [pid], options))
        except Exception as exc:
            seconds = time.monotonic() - start
            missing = _stress_check_missing(pid)
            if missing:  # a check not written yet is never a pass
                why = f"{NOT_IMPLEMENTED} ({missing})"
                results.append(PropertyResult(pid, "failed", seconds, why))
                continue
            # The campaigns turn what the store does into verdicts: an exception out of one is
            # the suite's own failure, shown whole, never the store's.
            why = f"the check of {pid} raised: that is the suite's failure, not the store's"
            text = f"{why}\n{failure_text(exc)}"
            results.append(PropertyResult(pid, "unverified", seconds, text))
    return results


def _stress_check_missing(pid: str) -> str:
    """Why the stress check of ``pid`` cannot be found, or "" when it exists."""
    from lance_offsets.stress._runner import CHECKS as STRESS_CHECKS

    module_name, _, func = STRESS_CHECKS[pid].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return f"no module {module_name}"
        return ""
    return "" if hasattr(module, func) else f"{module_name} has no {func}"


def _one(
    spec: str,
    pid: str,
    profile: str,
    stress: bool,
    options: Any,
    *,
    seed: int | None = None,
    database: str | None = None,
    workdir: str | None = None,
) -> PropertyResult:
    """Check ``pid`` in this process's check child, where every store call is bounded.

    This process never calls the store: a store that hangs (or kills its process) costs the
    child, never the run (``_bounded.py``).
    """
    return _Job(spec, profile, stress, options, seed, database, workdir).check(pid)


def _one_here(
    spec: str,
    pid: str,
    profile: str,
    stress: bool,
    options: Any,
    *,
    seed: int | None = None,
    database: str | None = None,
    workdir: str | None = None,
) -> PropertyResult:
    if PROPERTIES[pid].suite == "conformance":
        return check_property(
            spec, pid, profile=profile, seed=seed, database=database, workdir=workdir
        )
    return _run_stress(spec, [pid], stress, options)[0]


def run_checks(
    spec: str,
    *,
    profile: str = DEFAULT_PROFILE,
    only: Iterable[str] | None = None,
    stress: bool = False,
    workers: int = 1,
    stress_options: Any = None,
    seed: int | None = None,
    progress: Callable[[PropertyResult], None] | None = None,
    database: str | None = None,
    started: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
    tear_size: int = DEFAULT_TEAR_SIZE,
) -> list[PropertyResult]:
    """Check every property of the catalog (or ``only`` those) on the store ``spec`` names.

    :param profile: Hypothesis profile: ``quick``, ``ci``, ``thorough`` (or ``smoke``).
    :param stress: run the long versions of the multi-process properties.
    :param workers: properties checked at once, each in its own process (1: in this process).
    :param seed: seed of the whole run (default: fresh): the multi-process runs use it and each
        conformance property derives its Hypothesis seed from it, so passing it back replays the
        same choices and gives the same verdict in any directory.
    :param progress: called with each result as it is known.
    :param started: called with each property's ID as its check starts.
    :param say: where long runs' progress lines go (default: stderr, each prefixed with "..").
    :param tear_size: the bytes a disk writes atomically in D3's and B1's power cuts (512, 4096,
        or 1 for byte-level tears).
    :param database: directory for an opt-in Hypothesis example database, kept per store and
        property (default: the ``LANCE_OFFSETS_EXAMPLE_DB`` environment variable, else none).
    :returns: results in catalog order, whatever order they finished in.
    """
    ids = property_ids() if only is None else [p for p in property_ids() if p in set(only)]
    unknown = set(only or ()) - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown property IDs {sorted(unknown)}; known: {', '.join(PROPERTIES)}")
    profile_settings(profile)  # an unknown profile fails before any work
    if not ids:
        return []  # an empty shard (check --shard K/N): no server to start, nothing to run
    spec = canonical_spec(spec)  # an exec: spec, made to mean the same program everywhere
    factory = load_factory(spec)
    try:  # here, not in the check child: a bad declaration is the caller's error, said once
        capabilities_of(factory)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"store spec {spec!r}: {exc}") from exc
    if seed is None:
        from lance_offsets.stress._options import choose_seed

        seed = choose_seed()
    # Everything the run makes goes under one scratch root; Ctrl-C, SIGTERM or a crash of the
    # run removes it and every process the run started (conformance/_runscope.py).
    with contextlib.ExitStack() as stack:
        scope = stack.enter_context(run_scope())
        if getattr(factory, "server", None) is not None:
            # A declared server runs before any check, so every process the checks start
            # inherits where it listens, and stops when the run ends, however it ends
            # (stress/servers).
            from lance_offsets.stress.servers._campaigns import declared_server

            stack.enter_context(declared_server(factory))
        if stress_options is None and any(PROPERTIES[p].suite != "conformance" for p in ids):
            # One options object (one seed) for the whole run: D1, D2, D4 and D5 then share one
            # crash campaign (stress/crash/_campaign.py caches it by spec and seed), not four.
            stress_options = default_stress_options(
                stress, seed, workdir=scope.root, say=say, tear_size=tear_size
            )
        if workers <= 1:
            results = []
            for pid in ids:
                raise_if_interrupted()  # a signal a store's code swallowed stops the run here
                if started:
                    started(pid)
                result = _one(
                    spec,
                    pid,
                    profile,
                    stress,
                    stress_options,
                    seed=seed,
                    database=database,
                    workdir=scope.root,
                )
                # A signal may have reached a helper process first (they leave at once), and
                # the check may have taken the helper's death, or a KeyboardInterrupt that
                # Hypothesis wrapped, for the store's failure: a result made after the signal
                # is no verdict.
                raise_if_interrupted()
                if progress:
                    progress(result)
                results.append(result)
            return results
        return _parallel(
            spec,
            ids,
            profile=profile,
            stress=stress,
            options=stress_options,
            workers=workers,
            progress=progress,
            started=started,
            seed=seed,
            database=database,
            workdir=scope.root,
        )


def _parallel(
    spec: str,
    ids: list[str],
    *,
    profile: str,
    stress: bool,
    options: Any,
    workers: int,
    progress: Callable[[PropertyResult], None] | None,
    started: Callable[[str], None] | None = None,
    seed: int | None = None,
    database: str | None = None,
    workdir: str | None = None,
) -> list[PropertyResult]:
    # Properties are independent (each makes its own directories), so worker processes give the
    # verdict of a serial run; tests/slow/test_conformance_reference.py compares the two.
    from ._pool import run_pool

    job = _Job(spec, profile, stress, options, seed, database, workdir)
    done = run_pool(_check_in_worker, (job,), ids, workers, started=started, finished=progress)
    return [done[pid] for pid in ids]


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every ``--workers`` process checks its properties with."""

    spec: str
    profile: str
    stress: bool
    options: Any
    seed: int | None
    database: str | None
    workdir: str | None

    def check(self, pid: str) -> PropertyResult:
        """Check ``pid`` in this process's check child (bounded).

        A conformance check uses the run's declared server, if any, only while no server
        campaign kills or cuts it (the stress runner takes its own turns).
        """
        from lance_offsets.stress.servers._campaigns import server_turn

        from ._bounded import check_bounded

        if PROPERTIES[pid].suite != "conformance":
            return check_bounded(self, pid)
        with server_turn(exclusive=False):
            return check_bounded(self, pid)

    def check_here(self, pid: str) -> PropertyResult:
        """Check ``pid`` in this very process (what the check child runs)."""
        return _one_here(
            self.spec,
            pid,
            self.profile,
            self.stress,
            self.options,
            seed=self.seed,
            database=self.database,
            workdir=self.workdir,
        )


def _check_in_worker(conn: Any, job: _Job) -> None:
    """A ``--workers`` process: check each property it is sent, until it is sent None."""
    quiet_child()
    while True:
        pid = conn.recv()
        if pid is None:
            return
        try:
            reply: tuple[str, object] = ("result", job.check(pid))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        except DriverError as exc:  # the run's error, raised again where the run is in charge
            reply = ("driver error", str(exc))
        conn.send(reply)
