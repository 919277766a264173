"""The ``kill_helper`` fixture's engine: a function in a real process, SIGKILLed when you choose.

For store authors' own crash tests (docs/conformance.md, "Fixtures for store authors")::

    def writer(point, path):            # runs in a spawned process
        store = my_factory(path)
        store.save(1, 1, 5)
        point("saved")                  # stops here until the parent says go or kills it
        store.save(1, 1, 6)

    def test_kill_after_first_save(kill_helper, offset_store_dir):
        child = kill_helper.start(writer, offset_store_dir, points=True)
        child.kill_at("saved")          # SIGKILL exactly there
        assert my_factory(offset_store_dir).load(1, 1) == 5

Without ``points=True`` the target is called with its arguments alone, and the moment is chosen
from outside: :meth:`Child.kill_after` (seconds) or :meth:`Child.kill_when` (a condition the parent
polls, e.g. "the store holds offset 100"). Processes are started with the stress kit's spawn
context (``multiprocess``, so closures and lambdas work too) and are always reaped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from lance_offsets.stress.workers._procs import context, kill, reap, start

from lance_offsets._interrupt import quiet_child

__all__ = ["Child", "KillHelper"]

#: How often :meth:`Child.kill_when` re-evaluates its condition.
POLL_SECONDS: Final = 0.005
#: Default wait for a point or a condition before the helper gives up (a hung child).
WAIT_SECONDS: Final = 60.0


def _run_with_points(conn: Any, target: Callable[..., object], *args: Any) -> None:
    quiet_child()

    def point(name: str) -> None:
        conn.send(name)
        conn.recv()  # "go"; or never, when the parent kills here

    target(point, *args)
    conn.send(None)  # the target returned: no more points


def _run_plain(target: Callable[..., object], *args: Any) -> None:
    quiet_child()
    target(*args)


class Child:
    """One started process; every method that ends it waits for it and releases it."""

    def __init__(self, proc: Any, conn: Any | None) -> None:
        self.process = proc
        self._conn = conn
        self.points_passed: list[str] = []

    @property
    def exitcode(self) -> int | None:
        """``None`` while it runs; ``-9`` after a SIGKILL; the target's exit status otherwise."""
        code: int | None = self.process.exitcode
        return code

    def kill(self) -> None:
        """SIGKILL it now (if it still runs) and wait for it."""
        kill(self.process)

    def kill_after(self, seconds: float) -> None:
        """Let it run ``seconds``, then SIGKILL it (if it has not ended by then)."""
        self.process.join(seconds)
        self.kill()

    def kill_when(self, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
        """SIGKILL it as soon as ``condition()`` (polled in this process) is true.

        :raises AssertionError: the child ended, or ``timeout`` passed, with the condition false.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.process.is_alive():
                raise AssertionError(f"the child ended (exit {self.exitcode}) before the moment")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the moment did not come within {timeout} s")
            time.sleep(POLL_SECONDS)
        self.kill()

    def kill_at(self, name: str, timeout: float = WAIT_SECONDS) -> None:
        """Let it pass every point until ``point(name)``, and SIGKILL it there.

        :raises AssertionError: it returned or hung without reaching ``name``.
        """
        if self._conn is None:
            raise TypeError("kill_at needs a child started with points=True")
        while True:
            if not self._conn.poll(timeout):
                self.kill()
                raise AssertionError(f"no point reached within {timeout} s (waiting for {name!r})")
            try:
                reached = self._conn.recv()
            except EOFError:
                reached = None
            if reached == name:
                self.kill()
                return
            if reached is None:
                self.process.join(timeout)
                raise AssertionError(f"the child ended without reaching point {name!r}")
            self.points_passed.append(reached)
            self._conn.send("go")

    def join(self, timeout: float = WAIT_SECONDS) -> int | None:
        """Let it run to its end, passing every point; return its exit code."""
        deadline = time.monotonic() + timeout
        while self._conn is not None and self.process.is_alive():
            if self._conn.poll(POLL_SECONDS):
                try:
                    reached = self._conn.recv()
                except EOFError:
                    break
                if reached is None:
                    break
                self.points_passed.append(reached)
                self._conn.send("go")
            if time.monotonic() > deadline:
                break
        self.process.join(max(0.0, deadline - time.monotonic()))
        return self.exitcode


class KillHelper:
    """Starts children and reaps every one of them at the end of the test."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, target: Callable[..., object], *args: Any, points: bool = False) -> Child:
        """Start ``target(*args)`` (or ``target(point, *args)`` with ``points``) in a process."""
        ctx = context()
        conn = None
        if points:
            conn, theirs = ctx.Pipe()
            proc = ctx.Process(target=_run_with_points, args=(theirs, target, *args), daemon=True)
        else:
            proc = ctx.Process(target=_run_plain, args=(target, *args), daemon=True)
        start(proc)
        child = Child(proc, conn)
        self._children.append(child)
        return child

    def close(self) -> None:
        """Reap every child still running (the fixture's teardown)."""
        for child in self._children:
            reap(child.process)
            if child._conn is not None:
                child._conn.close()
        self._children.clear()
