"""The conformance suite as pytest tests, one per property, on the store ``--store`` names.

Run it on your store without writing a test::

    pytest --pyargs lance_offsets.conformance.suite --store mypkg.store:factory

or from your own test folder, with a one-line module (pytest collects imported tests)::

    from lance_offsets.conformance.suite import test_property  # noqa: F401

Single-process properties only; the multi-process ones run with ``lance-offsets check``.
"""

from __future__ import annotations

import pytest

from ._catalog import property_ids

__all__ = ["test_property"]


@pytest.mark.parametrize("property_id", property_ids("conformance"))
def test_property(
    property_id: str, store_spec: str, conformance_profile: str, conformance_seed: int
) -> None:
    """One property of docs/contract.md on the store under test."""
    from ._run import check_property

    print(
        f"conformance seed: {conformance_seed} (replay with --conformance-seed {conformance_seed})"
    )
    result = check_property(
        store_spec, property_id, profile=conformance_profile, seed=conformance_seed
    )
    if result.outcome in ("not-applicable", "unverified"):
        pytest.skip(f"{property_id} {result.outcome}: {result.details}")
    if result.outcome == "failed":
        pytest.fail(result.details, pytrace=False)
