"""Warm worker processes for crash and fault runs: one starting while another works.

Every crash cycle kills a worker, so cycles are bounded by how fast a new process is ready. A
:class:`Fleet` keeps one spare starting in the background while the current worker runs, and
starts workers with ``forkserver`` where the platform has it: each is forked from a clean server
process (not from the test process: no inherited handles, threads or caches, like spawn) that has
already imported the worker module, about ten times faster than spawn. Windows has only spawn.
Whatever the method, a worker builds its store from the spec string in its own process.

On Linux the forkserver is started with the syscall shim (``_shim.py``) in ``LD_PRELOAD``, so
every worker can trace a store whose I/O happens in C; the shim is passive until a worker arms
it, and the parent's own environment is left as it was.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Final

import multiprocess

from ._procs import kill, reap

__all__ = ["START_METHOD", "Fleet", "Worker", "WorkerGone"]

#: How workers start: forkserver (a clean server process forks them) where available, else spawn.
START_METHOD: Final = "spawn" if sys.platform == "win32" else "forkserver"

#: Seconds a new worker may take to import and build its factory (the machine may be loaded).
READY_SECONDS: Final = 120.0


class WorkerGone(RuntimeError):
    """A worker died, hung past its deadline, or answered ``("error", text)``."""


def _context() -> Any:
    ctx = multiprocess.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        # Our worker module, and the main script (pytest's, the CLI's), which every child would
        # otherwise import again. Not the store's module: it could start threads in the server,
        # and forking a process with threads is unsafe. Each worker imports the store itself.
        ctx.set_forkserver_preload(["__main__", "lance_offsets.stress.workers._jobs"])
        _start_forkserver_outside_checkouts()
    return ctx


def _start_forkserver_outside_checkouts() -> None:
    # The server runs `python -c`, whose sys.path starts with its working directory, and the
    # preload imports happen there (multiprocess does not apply the parent's sys.path first). Run
    # from a checkout of this repository with the package installed as a wheel, the source
    # folder lance_offsets/ (which lacks conformance/ and stress/) would shadow the install in
    # the server and in every worker forked from it. Started from the temp directory, it cannot.
    import os
    import tempfile

    from multiprocess import forkserver

    from ..seam._shim import build

    here = os.getcwd()
    before = os.environ.get("LD_PRELOAD")
    shim = build()
    os.chdir(tempfile.gettempdir())
    try:
        if shim is not None:  # the server is exec'd with it; its forks inherit the mapping
            os.environ["LD_PRELOAD"] = f"{shim} {before}" if before else shim
        forkserver.ensure_running()
    finally:
        os.chdir(here)
        if before is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = before


class Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, spec: str) -> None:
        from ._jobs import serve

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, spec), name="stress-worker", daemon=True)
        self.proc.start()
        child.close()
        self.ready = False

    def send(self, message: object) -> None:
        self.conn.send(message)

    def recv(self, timeout: float, waiting_for: str = "") -> tuple[str, Any]:
        """The next message, or :class:`WorkerGone` if none came within ``timeout`` seconds.

        :param waiting_for: what the worker was asked to do ("the faulted save of 5"), named in
            the error so a hang report says what hung, not only which process.
        """
        doing = f" while waiting for {waiting_for}" if waiting_for else ""
        try:
            if not self.conn.poll(timeout):
                raise WorkerGone(f"worker {self.proc.pid} sent nothing for {timeout:g} s{doing}")
            message: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerGone(f"worker {self.proc.pid} died ({self.proc.exitcode}){doing}") from exc
        if message[0] == "error":
            raise WorkerGone(f"worker {self.proc.pid} failed{doing}: {message[1]}")
        return message

    def drain(self) -> list[tuple[str, Any]]:
        """Every message already sent (a killed worker's last acknowledgements)."""
        messages = []
        try:
            while self.conn.poll(0):
                messages.append(self.conn.recv())
        except (EOFError, OSError):
            pass
        return messages

    def kill(self) -> list[tuple[str, Any]]:
        """Kill from outside (SIGKILL; TerminateProcess on Windows) and release everything.

        :returns: the messages it sent before it died that nobody had read yet.
        """
        kill(self.proc)
        messages = self.drain()
        self.close()
        return messages

    def close(self) -> None:
        reap(self.proc)
        self.conn.close()


class Fleet:
    """Workers for one store spec; :meth:`take` returns a ready one and starts the next."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._ctx = _context()
        self._spare: Worker | None = None
        self._idle: list[Worker] = []
        self.started = 0

    def _start(self) -> Worker:
        self.started += 1
        return Worker(self._ctx, self.spec)

    def take(self, *, fresh: bool = True, spare: bool = True) -> Worker:
        """A ready worker: a new one (``fresh``: it never opened a store), or an idle one.

        :param spare: start the next worker meanwhile (False for a one-off job: D3's record).
        """
        if not fresh and self._idle:
            return self._idle.pop()
        worker = self._spare or self._start()
        self._spare = self._start() if spare else None
        if not worker.ready:
            started = time.monotonic()
            try:
                worker.recv(READY_SECONDS)
            except WorkerGone as exc:
                worker.kill()
                raise WorkerGone(f"store {self.spec!r}: worker did not start: {exc}") from exc
            worker.ready = True
            self.startup_seconds = time.monotonic() - started
        return worker

    def give_back(self, worker: Worker) -> None:
        """Keep a live, idle worker for jobs that need no fresh process."""
        self._idle.append(worker)

    def close(self) -> None:
        """Stop every worker this fleet started."""
        for worker in [*self._idle, *([self._spare] if self._spare else [])]:
            worker.kill()
        self._idle.clear()
        self._spare = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
