"""What every test of the project shares."""

from __future__ import annotations

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
