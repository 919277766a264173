"""What every property check receives, and how a check says a property does not apply."""

from __future__ import annotations

from dataclasses import dataclass

from ._capabilities import Capabilities, Factory
from ._profiles import RunSettings
from ._workspace import Workspace

__all__ = ["CheckContext", "NotApplicable"]


class NotApplicable(Exception):
    """Raised by a check that finds, at run time, that its property cannot be checked here."""


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
