"""What every property check receives, and how a check says it could not exercise its property."""

from __future__ import annotations

from dataclasses import dataclass

from ._capabilities import Capabilities, Factory
from ._profiles import RunSettings
from ._workspace import Workspace

__all__ = ["CheckContext", "Unverified"]


class Unverified(Exception):
    """Raised by a check that finds, at run time, that it cannot exercise its property here.

    The store claims the property (else the check would not run), so the verdict is
    ``unverified`` with this reason, never ``not-applicable``, which is kept for what a store
    does not claim.
    """


@dataclass
class CheckContext:
    """One store under test.

    :ivar factory: the store factory.
    :ivar caps: its declared capabilities.
    :ivar spec: its import string, for child processes; None when it has none.
    :ivar settings: the Hypothesis settings of the chosen profile; as a decorator they also seed
        the test and count its examples (:class:`RunSettings`).
    :ivar workspace: fresh directories and handle bookkeeping for this check.
    """

    factory: Factory
    caps: Capabilities
    spec: str | None
    settings: RunSettings
    workspace: Workspace
