"""``lance-offsets bench --driver SPEC``: a driver store beside the Python reference store.

A driver (docs/drivers.md) pays a process start per handle and a pipe round trip per call; the
goals say that must not dominate: its quick check within 2x of the reference store's quick
check, and its ``--stress`` crash campaign within 1.5x of the reference's kill-verify cycles per
second. Both stores are measured in one run, one after the other, on the same disk and seed.
"""

from __future__ import annotations

from ._bench_store import Figure
from ._bench_suite import REFERENCE, quick_check_seconds

__all__ = ["CAMPAIGN_CYCLES", "driver_figures"]

#: Kill-verify cycles of each ``--stress`` campaign measured (the long options, fewer cycles).
CAMPAIGN_CYCLES = 300


def driver_figures(root: str, spec: str, *, seed: int) -> list[Figure]:
    """The driver's quick check and crash campaign beside the reference store's."""
    from .conformance._spec import canonical_spec
    from .stress._options import StressOptions
    from .stress.crash._campaign import run_campaign

    spec = canonical_spec(spec)  # the checks run in scratch directories of their own
    reference = quick_check_seconds(root)
    driver = quick_check_seconds(root, spec)
    ratio = driver / reference
    figures = [
        Figure(
            "drivers",
            "quick check, driver",
            driver,
            "s",
            "reference store's quick check",
            reference,
            ratio,
            "<= 2.00x",
            ratio <= 2.0,
        )
    ]
    options = StressOptions.for_long_run(seed=seed, workdir=root, cycles=CAMPAIGN_CYCLES)
    rates = {}
    for store in (REFERENCE, spec):
        campaign = run_campaign(store, options)
        rates[store] = campaign.cycles / campaign.seconds
    slower = rates[REFERENCE] / rates[spec]
    figures.append(
        Figure(
            "drivers",
            f"--stress kill-verify cycles, driver ({CAMPAIGN_CYCLES} cycles)",
            rates[spec],
            "cycles/s",
            "reference store's",
            rates[REFERENCE],
            slower,
            "<= 1.50x slower",
            slower <= 1.5,
        )
    )
    return figures
