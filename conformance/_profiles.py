"""Hypothesis profiles of the suite: ``quick`` (the default of ``check``), ``ci``, ``thorough``.

Every profile sets ``deadline=None``: the machines drive real files on loaded CI machines, where a
slow fsync says nothing about correctness. ``too_slow`` and ``filter_too_much`` are suppressed for
the same reason (a store may take milliseconds per call, and the key bundles are drawn sparsely).
"""

from __future__ import annotations

from typing import Final

from hypothesis import HealthCheck, Phase, settings

__all__ = ["DEFAULT_PROFILE", "PROFILES", "profile_settings"]

#: The profile ``lance-offsets check`` uses when given no ``--profile``.
DEFAULT_PROFILE: Final = "quick"

_SUPPRESSED: Final = (HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large)
# No "explain" phase: its coverage lines point into the suite, not at the store's defect.
_PHASES: Final = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


def _profile(
    examples: int, steps: int, *, derandomize: bool = False, print_blob: bool = False
) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=_SUPPRESSED,
        phases=_PHASES,
        report_multiple_bugs=False,
        print_blob=print_blob,
    )


#: Name -> settings. ``ci`` is derandomized so a CI verdict is reproducible run to run.
PROFILES: Final[dict[str, settings]] = {
    # The reference store passes every property in well under 60 s on 2 cores.
    "quick": _profile(20, 20),
    "ci": _profile(50, 30, derandomize=True, print_blob=True),
    "thorough": _profile(400, 60),
    # Few examples: enough for a broken store to fail fast in the project's own default tests.
    "smoke": _profile(15, 15, derandomize=True),
}

for _name, _settings in PROFILES.items():
    settings.register_profile(f"lance-offsets-{_name}", _settings)


def profile_settings(name: str) -> settings:
    """Return the settings of profile ``name``; an unknown name raises ValueError naming them."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {name!r}; choose one of {known}") from None
