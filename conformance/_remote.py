"""A store handle in another process, driven over a pipe (P2 "from another process").

The child rebuilds the factory from its spec string, as every cross-process part of the suite does
(docs/conformance.md), so it exercises exactly what a second consumer process would. One child
serves a whole run: spawning one per Hypothesis example would cost more than the example.

Every call is bounded by the factory's ``call_seconds``: a call that does not return in time is
a hang (:class:`~._hang.StoreHung`, with the child's stacks), never a raise, and the child is
stopped (a new one starts on the next call).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from lance_offsets._interrupt import quiet_child

from ._hang import HangReport, Role, StackPipe, StoreHung, arm_stack_dump, dumped_stack

__all__ = ["RemoteError", "RemoteStore"]


class RemoteError(RuntimeError):
    """The child's store raised, or the child stopped answering."""


def _serve(spec: str, conn: Any, stacks: Any) -> None:
    # Runs in the child. Import here, not at module level, so the parent pays nothing for it.
    from ._driver import DriverError
    from ._spec import load_factory

    quiet_child()
    arm_stack_dump(stacks)  # a call that hangs is shown where it is blocked
    factory = load_factory(spec)
    store: Any = None
    while True:
        op, args = conn.recv()
        if op == "stop":
            break
        try:
            reply: object = None
            if op == "open":
                if store is not None:
                    store.close()
                store = factory(*args)
            elif op == "close":
                if store is not None:
                    store.close()
                store = None
            else:
                reply = getattr(store, op)(*args)
            conn.send(("ok", reply))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except DriverError as exc:  # a broken driver: the parent raises it as the run's error
            conn.send(("driver error", str(exc)))
    if store is not None:
        with contextlib.suppress(Exception):
            store.close()
    conn.close()


class RemoteStore:
    """A child process holding one handle of the store ``spec`` names.

    Start it with :meth:`start`; always :meth:`stop` it (it is reaped even if it hangs).
    """

    def __init__(self, spec: str) -> None:
        from ._capabilities import call_seconds_of
        from ._spec import load_factory

        self.spec = spec
        #: How long one call may take (the factory's ``call_seconds``).
        self.bound = call_seconds_of(load_factory(spec))
        self._proc: Any = None
        self._conn: Any = None
        self._stacks: StackPipe | None = None

    def start(self) -> None:
        """Spawn the child (spawn on every platform: what macOS and Windows do)."""
        from lance_offsets.stress.workers._procs import context, start

        ctx = context()
        self._stacks = StackPipe(ctx)
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            args=(self.spec, child_conn, self._stacks.writer),
            name="conformance-remote",
            daemon=True,
        )
        start(self._proc)
        child_conn.close()
        self._stacks.started()

    @property
    def started(self) -> bool:
        """Whether the child was started and not yet stopped."""
        return self._proc is not None

    def call(self, op: str, *args: object, role: Role = "store", bound: float | None = None) -> Any:
        """Run ``store.op(*args)`` in the child (``open``/``close`` manage its handle).

        :param role: who makes the call (``"helper"``: a handle a check opened beside the one
            under test), for the hang report.
        :param bound: seconds for this call, if not :attr:`bound`.
        :raises StoreHung: the call did not return in time (the child is stopped).
        """
        from ._watch import marked

        if self._proc is None:
            self.start()
        what = "factory(path)" if op == "open" else f"{op}{args}"
        seconds = self.bound if bound is None else bound
        with marked(what, role, seconds, remote=True):
            try:
                self._conn.send((op, args))
                began = time.monotonic()
                if not self._conn.poll(seconds):
                    self._hung(what, role, time.monotonic() - began, seconds)
                status, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                # The child died (the store crashed its process, or it was killed): say which
                # call it was running and how it ended, not just "EOFError" from the pipe.
                code = self._proc.exitcode
                ended = f"exit code {code}" if code is not None else "no exit code yet"
                raise RemoteError(
                    f"child process died during {op}{args} ({ended}; {type(exc).__name__})"
                ) from exc
        if status == "error":
            raise RemoteError(f"{op}{args} in the child process raised {value}")
        if status == "driver error":
            from ._driver import DriverError

            raise DriverError(value)
        return value

    def _hung(self, what: str, role: Role, seconds: float, bound: float) -> None:
        """Stop the stuck child and raise its hang, with where it was blocked."""
        assert self._stacks is not None  # started with the process
        text = self._stacks.request(self._proc.pid)
        self.stop(kill=True)
        raise StoreHung(
            HangReport(
                call=what,
                role=role,
                seconds=seconds,
                bound=bound,
                where="another process",
                stack=dumped_stack(text, None),
            )
        )

    def stop(self, *, kill: bool = False) -> None:
        """Ask the child to close its handle and exit; reap it whatever state it is in.

        :param kill: do not ask (a hung child would not listen): kill it at once.
        """
        if self._proc is None:
            return
        from lance_offsets.stress.workers._procs import kill as kill_now
        from lance_offsets.stress.workers._procs import reap

        if kill:
            kill_now(self._proc)
        with contextlib.suppress(Exception):
            self._conn.send(("stop", ()))
            self._proc.join(5.0)
        reap(self._proc)
        self._conn.close()
        self._proc = None
        self._conn = None
        if self._stacks is not None:
            self._stacks.close()
            self._stacks = None
