"""The pytest plugin: ``--store SPEC``, the ``--stress`` family of options, and fixtures.

Fixtures for store authors (docs/conformance.md, "Fixtures for store authors"):
``offset_store_factory`` (the factory ``--store`` names, asyncio ones adapted),
``offset_store_dir`` (a fresh empty directory for one store) and ``kill_helper`` (a function in a
real process, SIGKILLed at a chosen moment).

Loaded through the ``pytest11`` entry point, so it must stay light: nothing heavy is imported at
module level (Hypothesis issue #3140 shows what a heavy plugin costs everyone); the imports happen
inside hooks and fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from lance_offsets.stress._options import StressOptions

    from ._capabilities import Factory
    from ._kill import KillHelper

#: The option group every lance-offsets option lives in.
GROUP: Final = "lance-offsets"


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
        help="seed of the conformance suite's Hypothesis runs, to replay a verdict (default: "
        "fresh, printed)",
    )
    group.addoption(
        "--stress",
        action="store_true",
        default=False,
        help="run the long multi-process stress versions (tests marked 'stress')",
    )
    group.addoption(
        "--stress-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="wall time of each timed stress run (default 60)",
    )
    group.addoption(
        "--stress-workers",
        type=int,
        default=4,
        metavar="N",
        help="worker processes in concurrency runs (default 4)",
    )
    group.addoption(
        "--stress-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed for every random choice of the stress runs (default: fresh, printed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stress: long stress run, selected with --stress")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("stress"):
        return
    skip = pytest.mark.skip(reason="long stress run: pass --stress to run it")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


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

    ``--conformance-seed``, or a fresh one; each test prints it, so a failure can be replayed.
    """
    from lance_offsets.stress._options import choose_seed

    seed: int | None = request.config.getoption("conformance_seed")
    return choose_seed() if seed is None else seed


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
