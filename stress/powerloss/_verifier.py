"""D3's verifier processes: fresh processes that open the store on each crash state written out.

Each verifier is spawned (``workers/_procs.py``: nothing cached from the traced worker, which it
never saw) and opens every directory it is sent with a new store handle
(:func:`~._workers.verify`). A long run keeps one per core (:class:`Lanes`): the states of a
batch are split between them, and they share one hang budget. They are started before the
workload is recorded, so importing the store overlaps the recording.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any, Final

from ..workers._procs import JOIN_SECONDS, context, running
from ._oracle import Key, Observation
from ._recording import PROCESS_SECONDS
from ._workers import last_doing, verify

__all__ = ["MAX_HANGS", "MIN_SPLIT", "STATE_SECONDS", "Lanes", "VerifierError", "lanes_for"]

#: Seconds the verifier may spend on one crash state (open, read, save again) without progress
#: before the store counts as hung on it.
STATE_SECONDS: Final = 30.0
#: States the store may hang or die on before the verifiers stop trying the rest (each hang
#: costs :data:`STATE_SECONDS`).
MAX_HANGS: Final = 3
#: Directories written before a verifier is told of them (it starts on them meanwhile).
_CHUNK: Final = 16
#: Directories a batch needs before it is split between lanes (each gets two chunks at least).
MIN_SPLIT: Final = 2 * _CHUNK
#: Verifier processes of a long run at most: two cores are what this project plans for, and
#: each more costs a spawn (a fresh interpreter importing the store) for a share of the states.
MAX_LANES: Final = 2


def lanes_for(long: bool) -> int:
    """Verifier processes for a run: one per core for a long run; one for a short one.

    A short run has a few dozen distinct directories (milliseconds of verifying): a second
    process would cost more to start than it saves.
    """
    if not long:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux: D3 is unverified there anyway
        cores = os.cpu_count() or 1
    return max(1, min(MAX_LANES, cores))


class VerifierError(RuntimeError):
    pass


class _HangBudget:
    """States the store hung or died on, counted across every lane of one check."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hangs = 0

    def spend(self) -> None:
        with self._lock:
            self.hangs += 1

    @property
    def exhausted(self) -> bool:
        return self.hangs >= MAX_HANGS


class _Verifier:
    """One fresh verifier process (nothing cached from the worker), fed batches of directories.

    A state the store hangs on (no progress for :data:`STATE_SECONDS`) or dies on gets an
    observation saying so, and a new verifier carries on with the states after it, until the
    budget's :data:`MAX_HANGS` such states; the states left after that stay None (not verified).
    """

    def __init__(
        self, spec: str, keys: list[Key], scratch: str, budget: _HangBudget, lane: int
    ) -> None:
        self.spec, self.keys, self.budget = spec, keys, budget
        self.progress = os.path.join(scratch, f"verifier-progress-{lane}.pickle")
        self._stack: contextlib.ExitStack | None = None
        self._conn: Any = None
        self._ready = False

    def spawn(self) -> None:
        """Start a verifier without waiting for it: it imports the store meanwhile."""
        parent, child = context().Pipe()
        self._stack = contextlib.ExitStack()
        args = (self.spec, child, self.keys, self.progress)
        proc = self._stack.enter_context(running(verify, *args, name="verify"))
        child.close()
        self._conn, self._proc, self._ready = parent, proc, False

    def _start(self) -> None:
        """Have a verifier ready to take directories."""
        if self._stack is None:
            self.spawn()
        if self._ready:
            return
        # Starting a process and importing the store is not the store hanging on a state:
        # that gets the worker's allowance, each state after it STATE_SECONDS.
        if not self._conn.poll(PROCESS_SECONDS):
            self.close()
            raise VerifierError(f"no progress for {PROCESS_SECONDS:g} s (importing the store?)")
        try:
            self._conn.recv_bytes()
        except (EOFError, OSError):
            code = self._exitcode()
            self.close()
            raise VerifierError(
                f"the verifier process exited with code {code} (importing the store?)"
            ) from None
        self._ready = True

    def _exitcode(self) -> int | None:
        self._proc.join(JOIN_SECONDS)
        code: int | None = self._proc.exitcode
        return code

    def close(self) -> None:
        """Stop the verifier (``running`` reaps it: terminate, then kill)."""
        if self._stack is not None:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send_bytes(pickle.dumps(None))
            self._conn.close()
            self._stack.close()
        self._stack = self._conn = None

    def observe(self, dirs: list[str], prepare: Callable[[int], None]) -> list[Observation | None]:
        """Observe the store on each of ``dirs``; ``prepare(i)`` writes ``dirs[i]`` out first.

        Directories are written and sent a chunk at a time, so the verifier opens the first
        while the next are written.
        """
        seen: list[Observation | None] = [None] * len(dirs)
        prepared = 0
        if not self.budget.exhausted:
            self._start()
            with contextlib.suppress(OSError):  # a verifier that died: found when collecting
                for begin in range(0, len(dirs), _CHUNK):
                    for i in range(begin, min(begin + _CHUNK, len(dirs))):
                        prepare(i)
                        prepared = i + 1
                    self._conn.send_bytes(
                        pickle.dumps(list(enumerate(dirs[begin:prepared], begin)))
                    )
                    self._drain(seen)
        for i in range(prepared, len(dirs) if not self.budget.exhausted else prepared):
            prepare(i)  # each written, in case a fresh verifier must carry on
        start = 0
        while start < len(dirs) and not self.budget.exhausted:
            if self._stack is None:  # a fresh one, after a hang
                self._start()
                self._conn.send_bytes(pickle.dumps(list(enumerate(dirs[start:], start))))
            stopped = self._collect(seen)
            if stopped is None:
                return seen
            start = self._stopped(dirs, seen, start, stopped)
        return seen

    def _stopped(
        self, dirs: list[str], seen: list[Observation | None], start: int, stopped: str
    ) -> int:
        """Record the state a stopped verifier was on; return where a fresh one carries on."""
        doing = last_doing(self.progress)
        self.close()  # killed on the way out when it hung
        index = dirs.index(doing[0], start) if doing and doing[0] in dirs[start:] else -1
        if doing is None or index < 0 or seen[index] is not None:
            # It stopped outside any store call of this batch: the verifier itself failed.
            raise VerifierError(f"{stopped} between two crash states")
        if stopped == "hung":
            seen[index] = Observation(hung=doing[1])
        else:
            seen[index] = Observation(died=f"{doing[1]}: {stopped}")
        self.budget.spend()
        return index + 1

    def _drain(self, seen: list[Observation | None]) -> None:
        """Take the observations already sent, without waiting (the pipe must not fill up)."""
        with contextlib.suppress(EOFError, OSError):
            while self._conn.poll(0):
                _tag, index, obs = pickle.loads(self._conn.recv_bytes())
                seen[index] = obs

    def _collect(self, seen: list[Observation | None]) -> str | None:
        """Receive observations until the last one; None, "hung", or why the verifier died."""
        while seen[-1] is None:
            # Read at call time: tests shorten it on this module.
            if not self._conn.poll(STATE_SECONDS):
                return "hung"
            try:
                _tag, index, obs = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                return f"the verifier process exited with code {self._exitcode()}"
            seen[index] = obs
        return None


def _shifted(prepare: Callable[[int], None], offset: int, index: int) -> None:
    prepare(offset + index)


class Lanes:
    """The verifier processes of one check, sharing one hang budget; see the module docstring.

    A batch of directories is cut into one contiguous slice per lane; each lane's slice is
    written out and verified by its own process (the first in the calling thread, the others
    in threads that mostly wait on their pipes), so every core opens states at once.
    """

    def __init__(self, spec: str, keys: list[Key], scratch: str, count: int) -> None:
        self.budget = _HangBudget()
        self._lanes = [_Verifier(spec, keys, scratch, self.budget, n) for n in range(count)]
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(count - 1, thread_name_prefix="d3-lane")
            if count > 1
            else None
        )

    @property
    def exhausted(self) -> bool:
        """Whether the store hung or died on :data:`MAX_HANGS` states: verify no more."""
        return self.budget.exhausted

    def spawn(self) -> None:
        """Start every lane's process without waiting: they import the store meanwhile."""
        for lane in self._lanes:
            lane.spawn()

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def observe(self, dirs: list[str], prepare: Callable[[int], None]) -> list[Observation | None]:
        """What the store showed on each of ``dirs`` (None: not verified); as one verifier."""
        count = len(self._lanes)
        if self._pool is None or len(dirs) < count * MIN_SPLIT // 2:
            return self._lanes[0].observe(dirs, prepare)
        cuts = [len(dirs) * n // count for n in range(count + 1)]
        futures = [
            self._pool.submit(
                lane.observe,
                dirs[cuts[n] : cuts[n + 1]],
                functools.partial(_shifted, prepare, cuts[n]),
            )
            for n, lane in enumerate(self._lanes[1:], 1)
        ]
        try:
            seen = self._lanes[0].observe(dirs[: cuts[1]], prepare)
        finally:
            # The caller removes the directories once this returns: no lane may still use them.
            concurrent.futures.wait(futures)
        for future in futures:
            seen += future.result()
        return seen
