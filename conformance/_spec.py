"""Loading a store factory from its ``pkg.module:attr`` import string (docs/conformance.md).

Every part of the suites (machines, checks, stress workers in their own processes) gets its
factory here, so this is where an asyncio factory (``async def``, or returning an asyncio store)
is adapted to the synchronous calls they make: see :func:`lance_offsets._aio_sync.sync_factory`
and docs/async.md.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Final

from lance_offsets._aio_sync import sync_factory

from ._acknowledge import acknowledged
from ._capabilities import Factory
from ._driver import driver_factory, is_exec_spec, resolve_exec_spec

__all__ = [
    "DEFAULT_SPEC",
    "SpecError",
    "canonical_spec",
    "cwd_importable",
    "load_factory",
    "prepared",
    "sync_factory",
]

#: The store ``lance-offsets check`` tests when given no SPEC: the reference lock-file store.
DEFAULT_SPEC: Final = "lance_offsets.conformance.reference:lockfile"


class SpecError(ValueError):
    """A factory spec could not be imported or does not name a callable."""


def load_factory(spec: str) -> Factory:
    """Import ``pkg.module:attr`` (attr may be dotted) and return the callable it names.

    ``exec:'./program --flag'`` names a driver instead: a store that runs as a program of its
    own, whose factory starts one process per handle (:mod:`._driver`, docs/drivers.md).

    The callable comes back through :func:`sync_factory`: synchronous stores it makes are
    returned untouched, asyncio ones are driven on a private loop. Loading one spec twice gives
    the same object.
    For a factory declaring ``acknowledge = "flush"``, the callable whose handles flush after
    each write (:mod:`._acknowledge`); in a watched process, one whose calls are timed
    (:mod:`._watch`).
    """
    if is_exec_spec(spec):  # a store that runs as a program of its own (docs/drivers.md)
        try:
            return driver_factory(spec)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise SpecError(
            f"store spec {spec!r} must look like 'package.module:factory' or exec:'./my-driver'"
        )
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"store spec {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SpecError(f"store spec {spec!r}: {module_name!r} has no {attr_path!r}") from None
    if not callable(target):
        raise SpecError(f"store spec {spec!r} names {type(target).__name__}, not a callable")
    # An asyncio store is driven on a private loop; a store acknowledged by flush() is checked
    # through handles that flush each write; in a process that checks under a watch
    # (conformance/_bounded.py), every call it makes is timed.
    return prepared(target)


def prepared(factory: object) -> Factory:
    """``factory`` as every check calls it: synchronous, acknowledged, timed where watched.

    Idempotent: a factory prepared already comes back as it is.
    """
    from ._watch import WatchedFactory, watched

    if isinstance(factory, WatchedFactory):
        return factory
    return watched(acknowledged(sync_factory(factory)))  # type: ignore[arg-type]


def canonical_spec(spec: str) -> str:
    """``spec`` as every process of a run can use it, wherever it runs.

    An ``exec:`` spec has its program and the relative paths among its arguments made absolute
    (:func:`~._driver.resolve_exec_spec`); an import spec is returned as it is.

    :raises SpecError: an ``exec:`` spec that names no program, or one that is not there.
    """
    if not is_exec_spec(spec):
        return spec
    try:
        return resolve_exec_spec(spec)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def cwd_importable() -> None:
    """Let specs name modules in the working directory, as ``python -m`` would.

    ``lance-offsets check mystore:factory`` and ``pytest --store mystore:factory`` run from the
    folder that holds ``mystore.py`` should find it; spawned workers inherit ``sys.path``.
    Appended, not prepended: run from a checkout of this repository, a prepended working
    directory would make workers import the source folder ``lance_offsets/`` (which does not hold
    ``conformance/`` and ``stress/``) instead of the installed package.
    """
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
