"""I/O faults (F2): the reference stores pass; stores that lie, destroy or hang on errors fail.

Every test prints its seed (``stress seed: N``); replay with ``--stress-seed N``.
"""

from __future__ import annotations

import re

import pytest
from lance_offsets.conformance._spec import DEFAULT_SPEC
from lance_offsets.stress._faults import check_f2
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress._runner import run_properties

pytestmark = pytest.mark.slow

ZOO = "zoo.stress_crash_zoo"


def test_store_under_test_keeps_its_old_value_on_io_errors(
    store_spec: str, stress_options: StressOptions
) -> None:
    (result,) = run_properties(store_spec, ["F2"], stress_options)
    print(result.details)
    if store_spec == DEFAULT_SPEC:
        assert result.outcome == "passed", result.details
        assert "faulted saves" in result.details
    else:  # --store SPEC: not applicable to a store that claims no persistence
        assert result.outcome in ("passed", "not-applicable"), result.details


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize("factory", ["careful", "windows_retry"])
def test_correct_zoo_stores_pass(stress_options: StressOptions, factory: str) -> None:
    result = check_f2(f"{ZOO}:{factory}", stress_options)
    print(result.details)
    assert result.outcome == "passed", result.details
    # every operation (lock, temp open, write, fsync, close, replace...) x 3 errors x (once, for
    # good), plus 3 sharing-violation runs: 63 where the directory is fsynced, fewer on Windows
    found = re.search(r"seed (\d+): (\d+) faulted saves", result.details)
    assert found, result.details
    assert int(found[1]) == stress_options.seed
    assert int(found[2]) >= 5 * 3 * 2 + 3


@pytest.mark.usefixtures("zoo_importable")
@pytest.mark.parametrize(
    ("factory", "finding"),
    [
        ("swallows_errors", "the save returned\na fresh handle then found"),
        ("truncates_first", "a fresh handle then found raised ValueError: corrupt offset file"),
        ("retries_forever", "the save did not end within 1 s (an unbounded retry?)"),
    ],
)
def test_zoo_store_fails_f2(stress_options: StressOptions, factory: str, finding: str) -> None:
    result = check_f2(f"{ZOO}:{factory}", stress_options, bound=1.0)
    print(result.details)
    assert result.outcome == "failed"
    assert finding in result.details
    assert f"replay with --stress-seed {stress_options.seed}" in result.details
    assert "fault " in result.details
