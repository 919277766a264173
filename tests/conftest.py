"""What every test of the project shares."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _outside_the_checkout(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every test runs from an empty directory of its own. Children started with `python -c` or
    # `-m` put their working directory first on sys.path, and from the checkout that would import
    # the source folder lance_offsets/ (which does not hold conformance/ and stress/) over the
    # installed wheel tox tests; and a test that writes a relative path cannot litter the checkout.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


#: The tests folder: the bug zoo is importable from here as ``zoo.*``.
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def zoo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``zoo.*`` importable by spec string here and in worker processes.

    Spawned workers inherit ``sys.path``; plain subprocesses (the strace'd power-loss worker)
    inherit the environment, hence both.
    """
    monkeypatch.syspath_prepend(TESTS)
    paths = [TESTS, *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
