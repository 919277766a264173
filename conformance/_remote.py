"""A store handle in another process, driven over a pipe (P2 "from another process").

The child rebuilds the factory from its spec string, as every cross-process part of the suite does
(docs/conformance.md), so it exercises exactly what a second consumer process would. One child
serves a whole run: spawning one per Hypothesis example would cost more than the example.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from lance_offsets._interrupt import quiet_child

__all__ = ["RemoteError", "RemoteStore"]

#: How long the parent waits for one reply before it declares the child stuck.
REPLY_SECONDS: Final = 60.0


class RemoteError(RuntimeError):
    """The child's store raised, or the child stopped answering."""


def _serve(spec: str, conn: Any) -> None:
    # Runs in the child. Import here, not at module level, so the parent pays nothing for it.
    from ._driver import DriverError
    from ._spec import load_factory

    quiet_child()
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
        self.spec = spec
        self._proc: Any = None
        self._conn: Any = None

    def start(self) -> None:
        """Spawn the child (spawn on every platform: what macOS and Windows do)."""
        from lance_offsets.stress.workers._procs import context, start

        ctx = context()
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(self.spec, child_conn), name="conformance-remote", daemon=True
        )
        start(self._proc)
        child_conn.close()

    @property
    def started(self) -> bool:
        """Whether the child was started and not yet stopped."""
        return self._proc is not None

    def call(self, op: str, *args: object) -> Any:
        """Run ``store.op(*args)`` in the child (``open``/``close`` manage its handle)."""
        if self._proc is None:
            self.start()
        try:
            self._conn.send((op, args))
            if not self._conn.poll(REPLY_SECONDS):
                raise RemoteError(
                    f"child process gave no answer to {op}{args} in {REPLY_SECONDS} s"
                )
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            # The child died (the store crashed its process, or it was killed): say which call
            # it was running and how it ended, not just "EOFError" from the pipe.
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

    def stop(self) -> None:
        """Ask the child to close its handle and exit; reap it whatever state it is in."""
        if self._proc is None:
            return
        from lance_offsets.stress.workers._procs import reap

        with contextlib.suppress(Exception):
            self._conn.send(("stop", ()))
            self._proc.join(5.0)
        reap(self._proc)
        self._conn.close()
        self._proc = None
        self._conn = None
