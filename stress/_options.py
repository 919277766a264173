"""Knobs of a stress run, shared by ``pytest --stress``, ``check --stress`` and the short runs."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["StressOptions", "choose_seed"]


def choose_seed() -> int:
    """Return a fresh seed; every run prints the seed it used so a failure can be replayed."""
    return random.SystemRandom().randrange(2**32)


def _ignore(_: str) -> None:
    pass


@dataclass(frozen=True)
class StressOptions:
    """How hard and how long to push a store.

    :ivar long: False for the short versions plain ``check`` runs (seconds in all); True for
        ``pytest --stress`` and ``check --stress`` (thousands of kill cycles, minute-long runs).
    :ivar seconds: wall time of each timed run (concurrency, random-time kills).
    :ivar workers: worker processes in concurrency runs.
    :ivar seed: the seed every random choice derives from; printed with every failure.
    :ivar cycles: kill-verify cycles for crash-point runs; 0 means the default for ``long``.
    :ivar progress: called with one-line progress reports (ops/s, kills, violations).
    :ivar workdir: where to make scratch directories; None means the system temp directory.
    :ivar backend: what traces a store's I/O for crash points and faults: ``"auto"`` (the Python
        interposer; the syscall shim when the interposer saw nothing), ``"python"`` or
        ``"syscall"`` (one only: tests and benchmarks compare them).
    """

    long: bool = False
    seconds: float = 2.0
    workers: int = 4
    seed: int = field(default_factory=choose_seed)
    cycles: int = 0
    progress: Callable[[str], None] = _ignore
    workdir: str | None = None
    backend: str = "auto"

    @classmethod
    def for_long_run(cls, **overrides: object) -> StressOptions:
        """The defaults of a ``--stress`` run: 60 s runs, 4 workers, 2,000 kill cycles."""
        values: dict[str, object] = {"long": True, "seconds": 60.0, "cycles": 2000}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
