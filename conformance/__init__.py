"""The conformance suite: point it at any offset store factory (``pkg.module:attr``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._capabilities import Capabilities as Capabilities
from ._capabilities import capabilities_of as capabilities_of
from ._catalog import PROPERTIES as PROPERTIES
from ._catalog import Property as Property
from ._results import PropertyResult as PropertyResult
from ._spec import DEFAULT_SPEC as DEFAULT_SPEC
from ._spec import SpecError as SpecError
from ._spec import load_factory as load_factory

if TYPE_CHECKING:
    from ._machine import ContractViolation as ContractViolation
    from ._machine import StoreMachine as StoreMachine
    from ._machine import store_machine as store_machine
    from ._run import check_property as check_property
    from ._run import run_checks as run_checks

# The Hypothesis-based entry points load on first use, so the pytest plugin (a submodule, which
# imports this package first) stays light: importing it must not import hypothesis.
_LAZY = {
    "ContractViolation": "._machine",
    "StoreMachine": "._machine",
    "store_machine": "._machine",
    "check_property": "._run",
    "run_checks": "._run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPEC",
    "PROPERTIES",
    "Capabilities",
    "ContractViolation",
    "Property",
    "PropertyResult",
    "SpecError",
    "StoreMachine",
    "capabilities_of",
    "check_property",
    "load_factory",
    "run_checks",
    "store_machine",
]
