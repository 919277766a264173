"""The conformance suite: point it at any offset store factory (``pkg.module:attr``)."""

from __future__ import annotations

from ._capabilities import Capabilities as Capabilities
from ._capabilities import capabilities_of as capabilities_of
from ._catalog import PROPERTIES as PROPERTIES
from ._catalog import Property as Property
from ._results import PropertyResult as PropertyResult
from ._spec import DEFAULT_SPEC as DEFAULT_SPEC
from ._spec import SpecError as SpecError
from ._spec import load_factory as load_factory

__all__ = [
    "DEFAULT_SPEC",
    "PROPERTIES",
    "Capabilities",
    "Property",
    "PropertyResult",
    "SpecError",
    "capabilities_of",
    "load_factory",
]
