"""Race windows widened on purpose: seeded, bounded pauses inside the store's own calls (M1, M2).

A lock that does not exclude (a held lock file unlinked by a delete, a lock file opened just
before another process unlinks it, a read-modify-write under a lock that is per process) lets
two writers in only when their critical sections overlap, and a fast save is over in a fraction
of a millisecond: left to chance, a two-second run catches it in some runs and not in others.
So each worker pauses, now and then, at the places where such sections are open:

- right after it opens a file under the store's directory (between opening a lock file and
  locking it; between reading a shared file and rewriting it);
- right before a rename or replace (the end of a critical section: everything is written, the
  lock, if any, is still held);
- right before an unlink or remove (between an unlock and the unlink of the lock file, or the
  delete's own section).

The worker sees those calls through the seam's Python interposer
(:func:`lance_offsets.stress.seam._interpose.traced`, its ``on_op`` callback); a store whose I/O
is made in C (SQLite, LMDB) passes none of them and runs as before. The pauses are drawn from the
run's seed, per worker, in the order of its calls: the same seed pauses the same calls for the
same time. Each is at most :data:`LONGEST` seconds and a worker stops at the run's deadline as
before, so a run lasts as long as it did; it makes fewer operations, each a wider window.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Final

from ..seam._trace import TraceOp
from ..seam._tracer import Phase

__all__ = ["AFTER", "BEFORE", "CHANCE", "LONGEST", "Widener"]

#: Calls a worker may pause right after (once they succeeded).
AFTER: Final = frozenset({"open"})
#: Calls a worker may pause right before.
BEFORE: Final = frozenset({"rename", "replace", "unlink"})
#: The chance that one such call pauses, and the longest pause, in seconds.
CHANCE: Final = 0.3
LONGEST: Final = 0.003


class Widener:
    """The ``on_op`` of one worker's tracing block: pauses at seeded calls.

    :ivar paused: how many calls paused; :ivar seconds: for how long in all; :ivar where: the
        pauses by place (``"after open"``, ``"before replace"``...).
    """

    def __init__(self, seed: int, workload: str, worker: int) -> None:
        self._rng = random.Random(f"{seed}:{workload}:{worker}:widen")
        self.paused = 0
        self.seconds = 0.0
        self.where: Counter[str] = Counter()

    def pause(self) -> float:
        """Draw the next pause: 0.0 (none) or its length; the draws follow the seed alone."""
        chance, length = self._rng.random(), self._rng.uniform(0.0, LONGEST)
        return length if chance < CHANCE else 0.0

    def __call__(self, op: TraceOp, phase: Phase) -> None:
        if op.is_dir:
            return
        chosen = BEFORE if phase == "before" else AFTER
        if op.kind not in chosen or op.error is not None:
            return
        length = self.pause()
        if length:
            self.paused += 1
            self.seconds += length
            self.where[f"{phase} {op.kind}"] += 1
            time.sleep(length)
