"""The asyncio reference store through the suite's cross-process paths: the P2 child, the M1
workers, the D1-D5 crash cycles and the D3 power-loss worker all load the ``async def`` factory
from its spec in their own processes and drive it on a private loop (docs/async.md)."""

from __future__ import annotations

import random

from lance_offsets.conformance import run_checks

SPEC = "lance_offsets.conformance.reference:async_lockfile"


def test_async_reference_store_passes_the_cross_process_properties() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed} (replay: lance-offsets check {SPEC} --only P2,M1,D1,D3 --seed {seed})")
    results = run_checks(SPEC, profile="smoke", only=["P2", "M1", "D1", "D3"], seed=seed)
    for result in results:
        print(result.id, result.outcome, dict(result.evidence))
    assert [r.outcome for r in results] == ["passed"] * 4, results
    evidence = {r.id: r.evidence for r in results}
    assert int(evidence["D1"]["crash points killed"]) > 0  # the kills really happened
    assert int(evidence["D3"]["crash points"]) > 0
