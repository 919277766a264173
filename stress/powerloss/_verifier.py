"""D3's verifier processes: fresh processes that open the store on each crash state written out.

Each verifier is spawned (``workers/_procs.py``: nothing cached from the traced worker, which it
never saw) and opens every directory it is sent with a new store handle
(:func:`~._workers.verify`). A long run keeps one per core (:class:`Lanes`): the states of a
batch are split between them. They are started before the workload is recorded, so importing
the store overlaps the recording.

Each lane has its own hang budget (:data:`MAX_HANGS`), so what it verifies depends on its own
states only: the same seed verifies the same states, and every state one verifier would have
verified before giving up on a hanging store is verified too (a lane has met no more hangs by
then than the single verifier had).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import pickle
from collections.abc import Callable
from typing import Any, Final

from lance_offsets._interrupt import raise_if_interrupted

from ..workers._procs import JOIN_SECONDS, context, running
from ._oracle import Key, Observation
from ._recording import PROCESS_SECONDS
from ._workers import last_doing, verify

__all__ = ["MAX_HANGS", "MIN_SPLIT", "STATE_SECONDS", "Lanes", "VerifierError", "lanes_for"]

#: Seconds the verifier may spend on one crash state (open, read, save again) without progress
#: before the store counts as hung on it.
STATE_SECONDS: Final = 30.0
#: States the store may hang or die on before a verifier stops trying the rest (each hang costs
#: :data:`STATE_SECONDS`; the lanes wait for theirs at the same time).
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


class _Verifier:
    """One fresh verifier process (nothing cached from the worker), fed batches of directories.

    A state the store hangs on (no progress for :data:`STATE_SECONDS`) or dies on gets an
    observation saying so, and a new verifier carries on with the states after it, until
    :data:`MAX_HANGS` such states; the states left after that stay None (not verified).
    """

    def __init__(self, spec: str, keys: list[Key], scratch: str, lane: int) -> None:
        self.spec, self.keys = spec, keys
        self.hangs = 0
        self.progress = os.path.join(scratch, f"verifier-progress-{lane}.pickle")
        self._stack: contextlib.ExitStack | None = None
        self._conn: Any = None
        self._ready = False
        #: How ``list_all`` is wrong on an uncrashed store (``_workers.listing_problem``), or None.
        self.listing_wrong: str | None = None

    @property
    def exhausted(self) -> bool:
        return self.hangs >= MAX_HANGS

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
            _tag, _index, listing = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            code = self._exitcode()
            self.close()
            raise VerifierError(
                f"the verifier process exited with code {code} (importing the store?)"
            ) from None
        self._ready = True
        self.listing_wrong = self.listing_wrong or listing

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
        if not self.exhausted:
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
        for i in range(prepared, len(dirs) if not self.exhausted else prepared):
            prepare(i)  # each written, in case a fresh verifier must carry on
        start = 0
        while start < len(dirs) and not self.exhausted:
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
        self.hangs += 1
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
            raise_if_interrupted()
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
    """The verifier processes of one check; see the module docstring.

    A batch of directories is cut into one contiguous slice per lane; each lane's slice is
    written out and verified by its own process (the first in the calling thread, the others
    in threads that mostly wait on their pipes), so every core opens states at once.
    """

    def __init__(self, spec: str, keys: list[Key], scratch: str, count: int) -> None:
        self._lanes = [_Verifier(spec, keys, scratch, n) for n in range(count)]
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(count - 1, thread_name_prefix="d3-lane")
            if count > 1
            else None
        )

    @property
    def count(self) -> int:
        return len(self._lanes)

    @property
    def listing_wrong(self) -> str | None:
        """How ``list_all`` is wrong with no power cut at all, as a started lane found; or None."""
        return next((lane.listing_wrong for lane in self._lanes if lane.listing_wrong), None)

    @property
    def exhausted(self) -> bool:
        """Whether every lane met :data:`MAX_HANGS` states the store hung on: verify no more."""
        return all(lane.exhausted for lane in self._lanes)

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
        if self._pool is None or len(dirs) < MIN_SPLIT:
            willing = [lane for lane in self._lanes if not lane.exhausted] or self._lanes
            return willing[0].observe(dirs, prepare)
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
