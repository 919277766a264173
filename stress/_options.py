"""Knobs of a stress run, shared by ``pytest --stress``, ``check --stress`` and the short runs."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT_TEAR_SIZE", "TEAR_SIZES", "StressOptions", "choose_seed", "tear_size"]


def choose_seed() -> int:
    """Return a fresh seed; every run prints the seed it used so a failure can be replayed."""
    return random.SystemRandom().randrange(2**32)


def _ignore(_: str) -> None:
    pass


#: The tear sizes D3 and B1 can model, in bytes: a 512-byte sector (the default), a 4 KiB one
#: (most current drives), and any byte (the pessimistic, byte-level model).
TEAR_SIZES: Final = (512, 4096, 1)
#: The tear size a run models unless asked otherwise: a 512-byte sector.
DEFAULT_TEAR_SIZE: Final = 512


def tear_size(text: str) -> int:
    """Parse a tear size (``--tear-size``): ``512``, ``4096`` (or ``4k``) or ``1`` (any byte).

    :raises ValueError: with a one-line message naming the value and the sizes allowed.
    """
    value = text.strip().lower()
    size = 4096 if value in ("4k", "4kib") else int(value) if value.isdigit() else None
    if size not in TEAR_SIZES:
        raise ValueError(
            f"tear size {text!r} is not one of 512, 4096 (4k) or 1 (byte-level): bytes a disk "
            "writes atomically"
        )
    return size


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
    :ivar tear_size: the bytes a disk writes atomically, for D3's and B1's power cuts: an
        unsynced write is torn only at a multiple of it (one of :data:`TEAR_SIZES`: 512, the
        default; 4096; 1 for byte-level tears).
    """

    long: bool = False
    seconds: float = 2.0
    workers: int = 4
    seed: int = field(default_factory=choose_seed)
    cycles: int = 0
    progress: Callable[[str], None] = _ignore
    workdir: str | None = None
    backend: str = "auto"
    tear_size: int = DEFAULT_TEAR_SIZE

    def __post_init__(self) -> None:
        if self.tear_size not in TEAR_SIZES:
            raise ValueError(
                f"tear_size {self.tear_size!r} is not one of {', '.join(map(str, TEAR_SIZES))}"
            )

    @classmethod
    def for_long_run(cls, **overrides: object) -> StressOptions:
        """The defaults of a ``--stress`` run: 60 s runs, 4 workers, 2,000 kill cycles."""
        values: dict[str, object] = {"long": True, "seconds": 60.0, "cycles": 2000}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
