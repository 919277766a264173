"""The pytest plugin: ``--store SPEC``, the conformance suite's options, ``--stress``, fixtures.

The conformance suite (``conformance/suite.py``: one test per property) reads its options here:
``--store``, ``--conformance-profile``, ``--conformance-seed``, ``--conformance-only``,
``--conformance-strict`` and ``--stress``. Under pytest-xdist the controller picks the seed and
hands it to every worker, so ``-n 2`` gives the outcome of a serial run. An option that would
select nothing (an unknown property, profile or store) is a usage error, never a green run. While
the suite runs, Ctrl-C and SIGTERM stop it as they stop ``lance-offsets check``: the property
under way is abandoned and cleaned up, pytest writes its reports, and the exit status is 130 or
143 (``lance_offsets/_interrupt.py``).

Fixtures for store authors (docs/conformance.md, "Fixtures for store authors"):
``offset_store_factory`` (the factory ``--store`` names, asyncio ones adapted),
``offset_store_dir`` (a fresh empty directory for one store) and ``kill_helper`` (a function in a
real process, SIGKILLed at a chosen moment).

Loaded through the ``pytest11`` entry point, so it must stay light: nothing heavy is imported at
module level (Hypothesis issue #3140 shows what a heavy plugin costs everyone); the imports happen
inside hooks and fixtures.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from lance_offsets.stress._options import StressOptions

    from ._capabilities import Factory
    from ._kill import KillHelper
    from ._results import PropertyResult

#: The option group every lance-offsets option lives in.
GROUP: Final = "lance-offsets"
#: The marker on each of the suite's tests, carrying its property ID.
PROPERTY_MARKER: Final = "lance_offsets_property"
#: Where an xdist controller hands its seed to the workers (``workerinput``).
_SEED_INPUT: Final = "lance_offsets_conformance_seed"
_SEED = pytest.StashKey[int]()
#: A suite test's outcome as the check gave it (passed, failed, unverified, not-applicable).
OUTCOME = pytest.StashKey[str]()
_SIGNALS = pytest.StashKey[contextlib.ExitStack]()
#: The signal that stopped this pytest process, if our handler did (pytest_keyboard_interrupt
#: is given no config to keep it in).
_stopped_by: list[int] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "lance-offsets conformance and stress suites")
    group.addoption(
        "--store",
        metavar="SPEC",
        default=None,
        help="store factory to check, as 'package.module:factory' (default: the reference "
        "lock-file store)",
    )
    group.addoption(
        "--conformance-profile",
        default="quick",
        metavar="NAME",
        help="Hypothesis profile of the conformance suite: quick, ci, thorough (default quick)",
    )
    group.addoption(
        "--conformance-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed of the whole conformance run, as 'lance-offsets check --seed': the same seed "
        "gives the same outcome per property, in any directory, with or without -n "
        "(default: fresh, printed)",
    )
    group.addoption(
        "--conformance-only",
        metavar="IDS",
        default=None,
        help="comma-separated property IDs the conformance suite checks, e.g. C1,D1,M1 "
        "(default: all); an unknown ID is a usage error",
    )
    group.addoption(
        "--conformance-tear-size",
        default="512",
        metavar="BYTES",
        help="the bytes a disk writes atomically in D3's and B1's power cuts, as "
        "'lance-offsets check --tear-size': 512 (default), 4096 or 1 (any byte)",
    )
    group.addoption(
        "--conformance-strict",
        action="store_true",
        default=False,
        help="an unverified property fails its test instead of being skipped, as "
        "'lance-offsets check --strict'",
    )
    group.addoption(
        "--stress",
        action="store_true",
        default=False,
        help="run the long versions of the conformance suite's multi-process properties "
        "(minutes), and the tests marked 'stress'",
    )
    group.addoption(
        "--stress-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="wall time of each timed run of the tests marked 'stress' (default 60; the "
        "conformance suite runs check's own, so that both give one verdict)",
    )
    group.addoption(
        "--stress-workers",
        type=int,
        default=4,
        metavar="N",
        help="worker processes in the concurrency runs of the tests marked 'stress' (default 4)",
    )
    group.addoption(
        "--stress-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed of the tests marked 'stress' (default: fresh, printed; the conformance suite "
        "takes --conformance-seed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stress: long stress run, selected with --stress")
    config.addinivalue_line(
        "markers", f"{PROPERTY_MARKER}(id): a test of the conformance suite checking property id"
    )
    if not config.pluginmanager.hasplugin("xdist"):  # the suite marks tests for --dist loadgroup
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's grouping")
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    if _SEED_INPUT in workerinput:  # an xdist worker: the controller chose
        config.stash[_SEED] = int(workerinput[_SEED_INPUT])
    else:
        from lance_offsets.stress._options import choose_seed

        seed: int | None = config.getoption("conformance_seed")
        config.stash[_SEED] = choose_seed() if seed is None else seed
    _validate(config)
    if _suite_asked(config):
        _arm_signals(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker checks with the controller's seed."""
    node.workerinput[_SEED_INPUT] = node.config.stash[_SEED]


def _suite_asked(config: pytest.Config) -> bool:
    """Whether this run names the conformance suite or one of its options."""
    named = any("lance_offsets.conformance.suite" in str(arg) for arg in config.args)
    return named or any(
        config.getoption(name)
        for name in ("store", "conformance_only", "conformance_strict", "conformance_seed")
    )


def _selected(config: pytest.Config) -> list[str] | None:
    from ._catalog import PROPERTIES

    only: str | None = config.getoption("conformance_only")
    if only is None:
        return None
    ids = [p.strip().upper() for p in only.split(",") if p.strip()]
    unknown = [p for p in ids if p not in PROPERTIES]
    if not ids or unknown:
        what = f"unknown property IDs {unknown}" if unknown else f"{only!r} names no property"
        raise pytest.UsageError(f"--conformance-only: {what}; known: {', '.join(PROPERTIES)}")
    return ids


def _tear(config: pytest.Config) -> int:
    from lance_offsets.stress._options import tear_size

    try:
        return tear_size(config.getoption("conformance_tear_size"))
    except ValueError as exc:
        raise pytest.UsageError(f"--conformance-tear-size: {exc}") from None


def _validate(config: pytest.Config) -> None:
    """Refuse, before any test runs, an option the suite cannot honour."""
    _selected(config)
    _tear(config)
    profile: str = config.getoption("conformance_profile")
    if profile != "quick":  # the default needs no import of Hypothesis to be known good
        from ._profiles import PROFILES

        if profile not in PROFILES:
            raise pytest.UsageError(
                f"--conformance-profile {profile!r} is unknown; known: {', '.join(PROFILES)}"
            )
    spec: str | None = config.getoption("store")
    if spec:
        from ._spec import SpecError, canonical_spec, cwd_importable, load_factory

        cwd_importable()
        try:
            load_factory(spec)
            # An exec: spec means the same program in every process, whatever its directory.
            config.option.store = canonical_spec(spec)
        except SpecError as exc:
            raise pytest.UsageError(f"--store: {exc}") from exc


def _arm_signals(config: pytest.Config) -> None:
    # SIGTERM would otherwise end pytest at once: no cleanup, no report. Only while the suite is
    # asked for: a store author's other tests keep pytest's own handling.
    if _SIGNALS in config.stash:
        return
    from lance_offsets._interrupt import stop_on_signals

    def on_stop(signum: int) -> None:
        # Asked when the signal comes: xdist registers its controller after this plugin is set up.
        if config.pluginmanager.hasplugin("dsession"):
            _stop_workers(signum)

    stack = contextlib.ExitStack()
    stack.enter_context(stop_on_signals(on_stop))
    config.stash[_SIGNALS] = stack


def _stop_workers(signum: int) -> None:
    """An xdist controller told to stop by SIGTERM: tell the processes below it, as Ctrl-C would.

    SIGTERM reaches the controller alone; without this each worker would finish its property
    before it heard of the shutdown. Ctrl-C reaches the whole process group, this process
    included, so it needs nothing; and the group is not ours to signal (under CI it may hold the
    runner's shell), hence each process below this one, which is what Ctrl-C would have reached.
    """
    import os
    import signal

    from ._runscope import descendants

    if signum == signal.SIGTERM:
        for pid in descendants():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)


def pytest_sessionstart(session: pytest.Session) -> None:
    if _SIGNALS in session.config.stash:
        # Wrapping the hook pytest installed when it configured itself (after this plugin did).
        from lance_offsets._interrupt import quiet_unraisable

        session.config.stash[_SIGNALS].enter_context(quiet_unraisable())


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SIGNALS in config.stash:
        config.stash[_SIGNALS].close()


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    from lance_offsets._interrupt import Interrupted

    if isinstance(excinfo.value, Interrupted):
        # pytest_keyboard_interrupt has no config: the session hook below reads it from here.
        _stopped_by.append(excinfo.value.signum)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Stopped by our handler: report it as the shell would (130 for SIGINT, 143 for SIGTERM), as
    # `lance-offsets check` does, not pytest's generic 2.
    if _stopped_by and exitstatus == pytest.ExitCode.INTERRUPTED:
        session.exitstatus = 128 + _stopped_by[-1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.get_closest_marker(PROPERTY_MARKER)]
    only = _selected(config)
    if only is not None and not ours:
        raise pytest.UsageError(
            "--conformance-only: the conformance suite is not among the collected tests (run "
            "'pytest --pyargs lance_offsets.conformance.suite', or import test_property from "
            "lance_offsets.conformance.suite in a test module)"
        )
    if ours:
        _arm_signals(config)
    if only is not None:
        dropped = [item for item in ours if _property_of(item) not in only]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item not in dropped]
    if config.getoption("stress"):
        return
    skip = pytest.mark.skip(reason="long stress run: pass --stress to run it")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


def _property_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker(PROPERTY_MARKER)
    return str(marker.args[0]) if marker is not None else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and OUTCOME in item.stash:
        # An attribute of the report: pytest-xdist carries it to the controller with the rest.
        report.lance_offsets = [_property_of(item), item.stash[OUTCOME]]
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """After the suite ran: its verdict in one line and the commands that replay it."""
    found: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            tagged = getattr(report, "lance_offsets", None)
            if tagged:
                found[str(tagged[0])] = str(tagged[1])
    if not found:
        return
    from ._catalog import property_ids

    counts = {o: sum(1 for v in found.values() if v == o) for o in sorted(set(found.values()))}
    run = ConformanceRun.from_config(config)
    terminalreporter.section("lance-offsets conformance")
    terminalreporter.write_line(
        f"{run.spec}: "
        + ", ".join(f"{n} {o.replace('-', ' ')}" for o, n in counts.items())
        + f" ({len(found)} of {len(property_ids())} properties, seed {run.seed})"
    )
    terminalreporter.write_line(f"replay: {run.replay()}")
    terminalreporter.write_line(f"same run: {run.check_command()}")


class ConformanceRun:
    """What the suite was asked for, and how it checks one property (as ``check`` does).

    :ivar spec: the store's factory spec; :ivar seed: the run's seed (one for every property
        and every xdist worker); :ivar stress: long multi-process runs.
    """

    def __init__(
        self,
        spec: str,
        profile: str,
        seed: int,
        *,
        stress: bool = False,
        strict: bool = False,
        only: list[str] | None = None,
        tear_size: int = 512,
    ) -> None:
        self.spec, self.profile, self.seed = spec, profile, seed
        self.stress, self.strict, self.only = stress, strict, only
        self.tear_size = tear_size

    @classmethod
    def from_config(cls, config: pytest.Config) -> ConformanceRun:
        from ._spec import DEFAULT_SPEC

        return cls(
            config.getoption("store") or DEFAULT_SPEC,
            config.getoption("conformance_profile"),
            config.stash[_SEED],
            stress=config.getoption("stress"),
            strict=config.getoption("conformance_strict"),
            only=_selected(config),
            tear_size=_tear(config),
        )

    def check(self, pid: str) -> PropertyResult:
        """Check ``pid`` with the function ``lance-offsets check`` runs, as one run of it."""
        from ._run import run_checks

        (result,) = run_checks(
            self.spec,
            profile=self.profile,
            only=[pid],
            stress=self.stress,
            seed=self.seed,
            tear_size=self.tear_size,
        )
        return result

    def _options(self, only: list[str] | None) -> list[str]:
        words = ["--conformance-profile", self.profile, "--conformance-seed", str(self.seed)]
        if only:
            words += ["--conformance-only", ",".join(only)]
        if self.stress:
            words.append("--stress")
        if self.strict:
            words.append("--conformance-strict")
        if self.tear_size != 512:
            words += ["--conformance-tear-size", str(self.tear_size)]
        return words

    def replay(self, pid: str | None = None) -> str:
        """The pytest command that asks for this run again (``pid``: that property alone)."""
        words = ["pytest", "--pyargs", "lance_offsets.conformance.suite", "--store", self.spec]
        words += self._options([pid] if pid else self.only)
        return " ".join(shlex.quote(w) for w in words)

    def check_command(self) -> str:
        """The ``lance-offsets check`` command that gives the same verdict."""
        words = ["lance-offsets", "check", self.spec, "--profile", self.profile]
        words += ["--seed", str(self.seed)]
        if self.only:
            words += ["--only", ",".join(self.only)]
        if self.stress:
            words.append("--stress")
        if self.strict:
            words.append("--strict")
        if self.tear_size != 512:
            words += ["--tear-size", str(self.tear_size)]
        return " ".join(shlex.quote(w) for w in words)


@pytest.fixture(scope="session")
def conformance_run(request: pytest.FixtureRequest) -> ConformanceRun:
    """The conformance run the command line asks for: store, profile, seed, stress, strict."""
    from ._spec import cwd_importable

    if request.config.getoption("store"):
        cwd_importable()  # `pytest --store mystore:factory` from the folder holding mystore.py
    run = ConformanceRun.from_config(request.config)
    print(f"conformance seed: {run.seed} (replay: {run.replay()})")
    return run


@pytest.fixture
def store_spec(request: pytest.FixtureRequest) -> str:
    """The factory spec under test: ``--store`` or the reference lock-file store."""
    from ._spec import DEFAULT_SPEC, cwd_importable

    spec: str | None = request.config.getoption("store")
    if spec:
        cwd_importable()  # `pytest --store mystore:factory` from the folder holding mystore.py
    return spec or DEFAULT_SPEC


@pytest.fixture
def offset_store_factory(store_spec: str) -> Factory:
    """The store factory under test: ``--store SPEC`` or the reference lock-file store.

    Loaded as the suite loads it: an ``async def`` factory, or one returning an asyncio store,
    comes back as a synchronous factory (docs/async.md); capability attributes read through.
    """
    from ._spec import load_factory

    return load_factory(store_spec)


@pytest.fixture
def offset_store_dir(tmp_path: Path) -> str:
    """A fresh, empty directory for one store (removed with pytest's other temporary files)."""
    directory = tmp_path / "store"
    directory.mkdir()
    return str(directory)


@pytest.fixture
def kill_helper() -> Iterator[KillHelper]:
    """Start functions in real processes and SIGKILL them at a chosen moment.

    ``child = kill_helper.start(target, *args)``, then ``child.kill_after(s)``,
    ``child.kill_when(condition)``, or with ``points=True`` ``child.kill_at("name")`` where the
    target calls ``point("name")``. Every child is reaped when the test ends.
    """
    from ._kill import KillHelper

    helper = KillHelper()
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def conformance_profile(request: pytest.FixtureRequest) -> str:
    """The Hypothesis profile name given with ``--conformance-profile``."""
    profile: str = request.config.getoption("conformance_profile")
    return profile


@pytest.fixture(scope="session")
def conformance_seed(request: pytest.FixtureRequest) -> int:
    """The seed every conformance property derives its own from.

    ``--conformance-seed``, or a fresh one chosen once per run (by the xdist controller, for
    every worker); the summary prints it, so a failure can be replayed.
    """
    return request.config.stash[_SEED]


@pytest.fixture
def stress_options(request: pytest.FixtureRequest, tmp_path: object) -> StressOptions:
    """Stress knobs from the command line: long when ``--stress`` was given, short otherwise."""
    from lance_offsets.stress._options import StressOptions, choose_seed

    config = request.config
    seed = config.getoption("stress_seed")
    if seed is None:
        seed = choose_seed()
    print(f"stress seed: {seed} (replay with --stress-seed {seed})")
    if config.getoption("stress"):
        return StressOptions.for_long_run(
            seconds=config.getoption("stress_seconds"),
            workers=config.getoption("stress_workers"),
            seed=seed,
            workdir=str(tmp_path),
            progress=print,
        )
    return StressOptions(
        seed=seed, workers=min(4, config.getoption("stress_workers")), workdir=str(tmp_path)
    )
