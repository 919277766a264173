"""Warm worker processes for crash and fault runs: one starting while another works.

Every crash cycle kills a worker, so cycles are bounded by how fast a new process is ready. A
:class:`Fleet` keeps one spare starting in the background while the current worker runs, and
starts workers with ``forkserver`` where the platform has it: each is forked from a clean server
process (not from the test process: no inherited handles, threads or caches, like spawn) that has
already imported the worker module, about ten times faster than spawn. Windows has only spawn.
Whatever the method, a worker builds its store from the spec string in its own process.

On POSIX a fleet goes one step further (``_zygote.py``): one fork-server worker, the template,
builds the factory once and forks a child per cycle, ready with no import and no factory build.
When the template sees that forking it is unsafe (the factory started threads, or opened
descriptors), the fleet says so (:attr:`Fleet.how`) and starts one process per cycle as above;
a template that dies is replaced (:attr:`Fleet.restarts`).

On Linux the forkserver is started with the syscall shim (``_shim.py``) in ``LD_PRELOAD``, so
every worker can trace a store whose I/O happens in C; the shim is passive until a worker arms
it, and the parent's own environment is left as it was.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Final

import multiprocess

from lance_offsets._interrupt import raise_if_interrupted, signals_held

from ._procs import fit_socket_paths, kill, reap, start
from ._zygote import Zygote

__all__ = ["FORKED", "ONE_PER_CYCLE", "START_METHOD", "Fleet", "Worker", "WorkerGone"]

#: How workers start: forkserver (a clean server process forks them) where available, else spawn.
START_METHOD: Final = "spawn" if sys.platform == "win32" else "forkserver"

#: Seconds a new worker may take to import and build its factory (the machine may be loaded).
READY_SECONDS: Final = 120.0
#: Seconds a killed worker's pipe may stay open (a driver it started still dying) before the
#: parent goes on regardless.
GONE_SECONDS: Final = 5.0
#: How workers start, as the fleet reports it (:attr:`Fleet.how`; campaign evidence "workers").
FORKED: Final = "forked from a warm template"
ONE_PER_CYCLE: Final = "one process per cycle"


class WorkerGone(RuntimeError):
    """A worker died, hung past its deadline, or answered ``("error", text)``."""


def _context() -> Any:
    fit_socket_paths(multiprocess)
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
        with signals_held():  # the server's children call quiet_child; it never does
            forkserver.ensure_running()
    finally:
        os.chdir(here)
        if before is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = before


class Worker:
    """One worker process and the parent's end of its pipe.

    Either a process this parent started (``proc``) or a child of a template (``zygote``), which
    the parent kills by pid and the template reaps.
    """

    def __init__(
        self, conn: Any, pid: int, *, proc: Any = None, zygote: Zygote | None = None
    ) -> None:
        self.conn = conn
        self.pid = pid
        self.proc = proc
        self.zygote = zygote
        self.ready = False

    @classmethod
    def start(cls, ctx: Any, spec: str) -> Worker:
        """A new process that builds the factory itself (it says "ready" when it has)."""
        from ._jobs import serve

        conn, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(child, spec), name="stress-worker", daemon=True)
        start(proc)
        child.close()
        return cls(conn, proc.pid, proc=proc)

    def _exitcode(self) -> int | None:
        return self.proc.exitcode if self.proc is not None else None

    def send(self, message: object) -> None:
        self.conn.send(message)

    def recv(self, timeout: float, waiting_for: str = "") -> tuple[str, Any]:
        """The next message, or :class:`WorkerGone` if none came within ``timeout`` seconds.

        :param waiting_for: what the worker was asked to do ("the faulted save of 5"), named in
            the error so a hang report says what hung, not only which process.
        """
        doing = f" while waiting for {waiting_for}" if waiting_for else ""
        raise_if_interrupted()  # every campaign waits here: a swallowed signal stops it here
        try:
            if not self.conn.poll(timeout):
                raise WorkerGone(f"worker {self.pid} sent nothing for {timeout:g} s{doing}")
            message: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerGone(f"worker {self.pid} died ({self._exitcode()}){doing}") from exc
        if message[0] == "error":
            raise WorkerGone(f"worker {self.pid} failed{doing}: {message[1]}")
        if message[0] == "driver error":  # a broken driver: the run's error, not the store's
            from lance_offsets.conformance._driver import DriverError

            raise DriverError(message[1])
        return message

    def drain(self, *, until_gone: bool = False) -> list[tuple[str, Any]]:
        """Every message already sent (a killed worker's last acknowledgements).

        :param until_gone: the worker was killed: read on until the end of file, which comes
            once every process holding the worker's end is gone too. A driver store the worker
            started holds it (``conformance/_driver_proc.py``) and dies with the worker: no
            judge may look at the directory before it is gone. Bounded by :data:`GONE_SECONDS`.
        """
        messages = []
        deadline = time.monotonic() + (GONE_SECONDS if until_gone else 0.0)
        try:
            while self.conn.poll(max(0.0, deadline - time.monotonic())):
                messages.append(self.conn.recv())
        except (EOFError, OSError):
            pass
        return messages

    def kill(self) -> list[tuple[str, Any]]:
        """Kill from outside (SIGKILL; TerminateProcess on Windows) and release everything.

        Returns once the process is gone, its locks released.

        :returns: the messages it sent before it died that nobody had read yet.
        """
        if self.proc is not None:
            kill(self.proc)
        elif self.zygote is not None:
            self.zygote.kill(self.pid)
        messages = self.drain(until_gone=True)
        self.close()
        return messages

    def close(self) -> None:
        if self.proc is not None:
            reap(self.proc)
        elif self.zygote is not None:  # a child has nothing to finish: killing is stopping
            self.zygote.kill(self.pid)
        self.conn.close()


class Fleet:
    """Workers for one store spec; :meth:`take` returns a ready one and starts the next.

    :param warm: fork workers from a template where the platform can (False: one fork-server
        process per worker, the path the bench compares against).
    :param note: told once how workers start when it is not the fast way, and of every
        template that died and was replaced (a campaign's progress).
    """

    def __init__(
        self, spec: str, *, warm: bool = True, note: Callable[[str], None] | None = None
    ) -> None:
        self.spec = spec
        self._ctx = _context()
        self._spare: Worker | None = None
        self._idle: list[Worker] = []
        self._note = note or (lambda text: None)
        # Windows has no fork; the template needs fork and Unix sockets that carry descriptors.
        self._warm = warm and START_METHOD == "forkserver"
        self._zygote: Zygote | None = None
        self._retired: list[Zygote] = []
        self.started = 0
        #: How workers start: FORKED, or ONE_PER_CYCLE with the reason.
        self.how = FORKED if self._warm else ONE_PER_CYCLE
        #: Templates that died and were replaced.
        self.restarts = 0

    def _start(self) -> Worker:
        self.started += 1
        return Worker.start(self._ctx, self.spec)

    def _template(self) -> Zygote | None:
        """The running template, started (and waited for) if needed; None: fall back."""
        if self._zygote is not None and not self._zygote.dead:
            return self._zygote
        if self._zygote is not None:  # it died: replace it, and say so
            # Its children still in use are killed by their workers (or at close), not now.
            self._zygote.close(children=False)
            self._retired.append(self._zygote)
            self.restarts += 1
            self._note(f"workers: the template process died; started a new one ({self.restarts})")
        self.started += 1
        zygote = Zygote(self._ctx, self.spec)
        try:
            why = zygote.ready(READY_SECONDS)
        except (OSError, EOFError, TimeoutError, RuntimeError) as exc:
            zygote.close()
            raise WorkerGone(f"store {self.spec!r}: the template did not start: {exc}") from exc
        if why:
            zygote.close()
            self._warm = False
            self.how = f"{ONE_PER_CYCLE}: {why}"
            self._note(f"workers: {self.how}")
            return None
        self._zygote = zygote
        return zygote

    def _forked(self, spare: bool) -> Worker | None:
        """A child of the template (and the next one requested if ``spare``); None: fall back."""
        for _ in range(2):  # a template that died is replaced once per take
            zygote = self._template()
            if zygote is None:
                return None
            child = zygote.collect(READY_SECONDS)
            if child is not None:
                if spare:
                    zygote.request()
                pid, conn = child
                return Worker(conn, pid, zygote=zygote)
        raise WorkerGone(f"store {self.spec!r}: the template died twice in a row")

    def take(self, *, fresh: bool = True, spare: bool = True) -> Worker:
        """A ready worker: a new one (``fresh``: it never opened a store), or an idle one.

        :param spare: start the next worker meanwhile (False for a one-off job: D3's record,
            which starts no template for it either: one process costs less than two).
        """
        if not fresh and self._idle:
            return self._idle.pop()
        worker = None
        if self._warm and (spare or self._zygote is not None):
            worker = self._forked(spare)
        if worker is None:
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
        """Stop every worker this fleet started (the template kills what it forked)."""
        for worker in [*self._idle, *([self._spare] if self._spare else [])]:
            worker.kill()
        self._idle.clear()
        self._spare = None
        for zygote in [*self._retired, *([self._zygote] if self._zygote else [])]:
            zygote.close()
        self._retired.clear()
        self._zygote = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
