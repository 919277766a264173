"""A warm template ("zygote") worker that forks a ready worker per kill-verify cycle (POSIX).

A fleet worker pays a process start, the store module's import and the factory build before it
is ready. The template is an ordinary fleet worker (forked from the fork server, with the syscall
shim preloaded) that builds the factory once and never calls it: it never opens a store, so each
child it forks is, like a new process, one that never had a store open, and is ready at once.

The child serves jobs with the worker's own loop (``_jobs.serve_jobs``) over a socket pair the
template makes per child; the template passes the parent's end over its own pipe (a Unix socket)
with ``SCM_RIGHTS`` (``multiprocess.reduction.send_handle``). The parent kills the child by pid;
the parent cannot wait for a grandchild, so the template reaps it on request and answers
``("gone", pid)`` only once ``waitpid`` returned: by then the kernel has closed every descriptor
of the child and so dropped its ``flock``/``fcntl`` locks, which a judge started any earlier could
still find taken. Why the template's reap rather than ``pidfd_open``: it is the same on every
POSIX system (pidfd is Linux-only, from 5.3), and a child is reaped only when the parent asks, so
its pid cannot be reused while the parent may still kill it by that pid.

The template refuses to fork when it can see that forking would be unsafe or would share state:
a thread the store's import or factory build started (a fork copies one thread and whatever locks
the others held), or a descriptor it opened (a connection every child would share). It then
answers ``("unsafe", why)`` and the fleet starts one process per cycle instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Final

from lance_offsets.conformance._spec import load_factory
from multiprocess.connection import Connection
from multiprocess.reduction import recv_handle, send_handle

from lance_offsets._interrupt import quiet_child

from ..seam import _interpose, _shim
from ._procs import start

__all__ = ["REAP_SECONDS", "Zygote", "template"]

#: Seconds the template may take to reap a killed child (a SIGKILLed process exits at once,
#: unless the kernel holds it in an uninterruptible wait; then the template counts as dead).
REAP_SECONDS: Final = 30.0
#: Seconds to wait for a killed child to disappear when its template is gone and cannot reap it.
ORPHAN_SECONDS: Final = 5.0


def _descriptors() -> dict[int, str]:
    """This process's open descriptors and what each names, where the system lists them.

    The listing's own descriptor is left out: it would take the lowest free number, which a
    descriptor opened meanwhile makes a new one, and then look new itself.
    """
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            listing = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            found = {}
            for name in os.listdir(listing):
                fd = int(name)
                if fd != listing:
                    try:
                        found[fd] = os.readlink(f"{where}/{fd}")
                    except OSError:  # /dev/fd entries are no links on every system
                        found[fd] = f"descriptor {fd}"
            return found
        finally:
            os.close(listing)
    return {}


def _unsafe(before: dict[int, str]) -> str:
    """Why forking this process per cycle is unsafe or unfair, or "" when nothing says so."""
    threads = threading.active_count()
    with contextlib.suppress(OSError):  # threads a C extension started, invisible to threading
        threads = max(threads, len(os.listdir("/proc/self/task")))
    if threads > 1:
        return f"the factory started threads ({threads} in the template after building it)"
    opened = sorted(set(_descriptors().items()) - set(before.items()))
    if opened:
        names = ", ".join(target for _, target in opened[:3])
        return f"the factory opened descriptors every child would share ({names})"
    return ""


def _child(fd: int, factory: Any) -> None:
    """Run in a forked child: serve jobs on ``fd`` as a fleet worker does."""
    from ._jobs import serve_jobs

    # Nothing armed in the template, and nothing recorded: it never traced. Disarm anyway, so a
    # child never reports into a callback it did not set up, and say so if the template did.
    lib = _shim.loaded()
    if lib is not None:
        lib.lo_end()
    if _interpose.active():
        raise RuntimeError("the template had a Python trace active when it forked")
    conn = Connection(fd)
    conn.send(("ready", None))
    serve_jobs(conn, factory)


def _fork(conn: Any, factory: Any) -> int:
    """Fork a child serving jobs; pass the parent its end of the child's socket pair."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs atexit hooks or finalizers
        code = 0
        try:
            conn.close()  # the template's pipe to the parent is not the child's business
            ours.close()
            _child(theirs.detach(), factory)
        except BaseException:  # whatever it was, the child must leave through os._exit
            code = 70
        finally:
            os._exit(code)
    theirs.close()
    conn.send(("forked", pid))
    send_handle(conn, ours.fileno(), 0)
    ours.close()  # the parent has its own copy now; later children must not inherit it
    return pid


def _reap(pid: int) -> int:
    """Kill (if still running) and reap a child of this process; its wait status."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return -1


def template(conn: Any, spec: str) -> None:
    """Run in the template process: build the factory, then fork children on request.

    Requests (one reply each, in order): ``"fork"`` -> ``("forked", pid)`` followed by the
    child's socket (``recv_handle``); ``("reap", pid)`` -> ``("gone", pid)``; None or the
    parent gone: kill and reap every child, and exit.
    """
    # Children stay zombies until reaped on request (their pids cannot be reused meanwhile),
    # which an ignored SIGCHLD would undo: the kernel would reap them at once.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    quiet_child()  # its forked children inherit it
    before = _descriptors()
    try:
        factory = load_factory(spec)
    except Exception as exc:  # the parent reports it with the spec
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    why = _unsafe(before)
    if why:
        conn.send(("unsafe", why))
        return
    conn.send(("ready", None))
    children: set[int] = set()
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            if request == "fork":
                children.add(_fork(conn, factory))
            else:
                _, pid = request
                _reap(pid)
                children.discard(pid)
                conn.send(("gone", pid))
    finally:
        for pid in children:
            _reap(pid)


class Zygote:
    """The parent's handle on one template process and the children it forked."""

    def __init__(self, ctx: Any, spec: str) -> None:
        self.conn, child = ctx.Pipe()  # duplex: a Unix socket, which can carry descriptors
        self.proc: Any = ctx.Process(target=template, args=(child, spec), name="stress-template")
        self.proc.daemon = True
        start(self.proc)
        child.close()
        #: Children forked and not yet known to be gone, by pid.
        self.live: set[int] = set()
        self.gone: set[int] = set()
        self.forked: deque[tuple[int, Any]] = deque()
        self.requested = 0
        self.dead = False

    def ready(self, timeout: float) -> str:
        """Wait for the template's factory; "" when it forks, else why it will not.

        :raises OSError, EOFError, TimeoutError: the template died or did not answer.
        """
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the template sent nothing for {timeout:g} s")
        tag, payload = self.conn.recv()
        if tag == "error":
            raise RuntimeError(payload)
        return "" if tag == "ready" else str(payload)

    def request(self) -> None:
        """Ask for one more child (collected later with :meth:`collect`).

        A template found dead here is replaced at the next take, as one found dead anywhere.
        """
        try:
            self.conn.send("fork")
        except (OSError, ValueError):
            self.dead = True
            return
        self.requested += 1

    def _next(self, deadline: float) -> None:
        """Read one reply of the template's; mark it dead if none comes by ``deadline``."""
        try:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                self.dead = True  # silent past its deadline: hung, as good as dead
                return
            tag, pid = self.conn.recv()
            if tag == "forked":
                self.live.add(pid)
                self.requested -= 1
                self.forked.append((pid, Connection(recv_handle(self.conn))))
            else:
                self.gone.add(pid)
        except (OSError, EOFError, ValueError):
            self.dead = True

    def collect(self, timeout: float) -> tuple[int, Any] | None:
        """The next requested child's pid and connection; None if the template is dead."""
        deadline = time.monotonic() + timeout
        while not self.forked and not self.dead:
            if not self.requested:
                self.request()
            self._next(deadline)
        return self.forked.popleft() if self.forked else None

    def kill(self, pid: int) -> None:
        """SIGKILL child ``pid`` now; return once it is gone (the template reaped it)."""
        if pid not in self.live:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # unreaped until we ask: the pid is still that child's
        if not self.dead:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("reap", pid))
            deadline = time.monotonic() + REAP_SECONDS
            while pid not in self.gone and not self.dead:
                self._next(deadline)
        if pid not in self.gone:  # the template died: init reaps the orphan; wait for that
            _wait_orphan(pid)
        self.gone.discard(pid)
        self.live.discard(pid)

    def close(self, *, children: bool = True) -> None:
        """Kill every child still live (unless not ``children``), then stop and reap the template.

        Closing twice is harmless: a replaced template is closed without its children first,
        and with them when the fleet closes.
        """
        if children:
            for pid in sorted(self.live):
                self.kill(pid)
        if self.proc is None:
            return
        if not self.dead:  # learn the pids of children forked but not yet collected
            while self.requested and not self.dead:
                self._next(time.monotonic() + REAP_SECONDS)
        for pid, conn in self.forked:  # never handed out: no worker will kill these
            conn.close()
            self.kill(pid)
        self.forked.clear()
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(REAP_SECONDS if not self.dead else 0.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(REAP_SECONDS)
        with contextlib.suppress(ValueError):
            self.proc.close()
        self.proc = None
        self.conn.close()
        self.dead = True


def _wait_orphan(pid: int) -> None:
    """Wait (bounded) until ``pid`` no longer runs: gone, or a zombie (its files are closed)."""
    deadline = time.monotonic() + ORPHAN_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    return
        time.sleep(0.005)
