"""The conformance suite as pytest tests: one per property of the contract, all of them.

Run it on your store without writing a test::

    pytest --pyargs lance_offsets.conformance.suite --store mypkg.store:factory [--stress]

or from your own test folder, with a one-line module (pytest collects imported tests)::

    from lance_offsets.conformance.suite import test_property  # noqa: F401

Each test checks one property exactly as ``lance-offsets check`` does (the same function, the same
seed, the same profile), so the same command line gives the same outcome per property through
either door: the single-process properties, the multi-process ones (M1, M2, D1-D5, F2, B1) and
the power-loss one, short runs by default and the long versions with ``--stress``. A failed
property is a failed test with its counterexample; unverified and not-applicable ones are skipped
with the reason (with ``--conformance-strict`` an unverified one fails). Options: see the
"lance-offsets" group of ``pytest --help`` and docs/conformance.md.
"""

from __future__ import annotations

import pytest

# Absolute imports: pytest may import this file under another name (``conformance.suite``, from
# an editable install's source folder), and the plugin's objects must be the plugin's own.
from lance_offsets.conformance._catalog import PROPERTIES, property_ids
from lance_offsets.conformance._plugin import OUTCOME, PROPERTY_MARKER, ConformanceRun
from lance_offsets.conformance._progress import CRASH_CAMPAIGN
from lance_offsets.conformance._results import evidence_text

__all__ = ["test_property"]


def _param(pid: str) -> object:
    marks = [getattr(pytest.mark, PROPERTY_MARKER)(pid)]
    if pid in CRASH_CAMPAIGN:
        # One crash campaign decides these four; with `-n N --dist loadgroup` one worker runs
        # it once instead of each worker running it again (the verdict is the same either way).
        marks.append(pytest.mark.xdist_group("lance-offsets-crash-campaign"))
    return pytest.param(pid, id=pid, marks=marks)


@pytest.mark.parametrize("property_id", [_param(pid) for pid in property_ids()])
def test_property(
    property_id: str,
    conformance_run: ConformanceRun,
    request: pytest.FixtureRequest,
) -> None:
    """One property of docs/contract.md on the store under test."""
    from lance_offsets.conformance._driver import DriverError

    try:
        result = conformance_run.check(property_id)
    except DriverError as exc:  # the driver broke the protocol: no verdict, one clear error
        pytest.exit(f"lance-offsets: {exc}", returncode=2)
    request.node.stash[OUTCOME] = result.outcome  # for the summary (xdist's controller too)
    title = f"{property_id} {PROPERTIES[property_id].title}"
    print(f"{title}: {result.outcome} in {result.seconds:.2f} s")
    if result.evidence:
        print(f"evidence: {evidence_text(result.evidence)}")
    print(f"replay: {conformance_run.replay(property_id)}")
    if result.outcome == "failed":
        pytest.fail(f"[{title}] {result.details}", pytrace=False)
    if result.outcome == "unverified":
        reason = f"{property_id} unverified: {result.details}"
        if conformance_run.strict:
            pytest.fail(f"{reason}\n(--conformance-strict: unverified fails)", pytrace=False)
        pytest.skip(reason)
    if result.outcome == "not-applicable":
        pytest.skip(f"{property_id} not applicable: {result.details}")
    if result.details:
        print(result.details)
