"""A throw-away PostgreSQL cluster from the machine's own binaries, and its server declaration.

initdb and pg_ctl refuse to run as root, and CI runs as root: there the cluster is created and
run as the ``postgres`` account (``runuser``), in a directory that account owns. The server listens
on a free loopback port with ``fsync=on`` and ``synchronous_commit=on`` (durability is what the
stores are checked for). :class:`PostgresServer` is the ``server`` declaration of the reference
``postgres`` factory: the suite kills its whole process group (pg_ctl makes the postmaster a
session leader; each backend, the WAL writer and the checkpointer are its children) and restarts
it,
and points the factory at a proxy by rewriting the DSN file the factory reads at every open.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import multiprocessing
import multiprocessing.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from ._declaration import Address, in_worker_process

__all__ = ["Cluster", "FallbackCluster", "PostgresServer", "find_bindir", "temporary_cluster"]

#: Seconds pg_ctl waits for the server to accept connections (crash recovery included).
START_SECONDS: Final = 60
#: Seconds a killed process group may take to disappear.
GONE_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Cluster:
    """A running temporary cluster."""

    dsn: str
    data_dir: str
    log_file: str


def find_bindir() -> str | None:
    """Return a directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(done.stdout.strip())
    # Debian and Ubuntu keep the server binaries out of PATH, one directory per major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for folder in candidates:
        if all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner() -> list[str]:
    """The command prefix that runs PostgreSQL's binaries as a non-root account."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: cannot start PostgreSQL as postgres")
    return [runuser, "-u", "postgres", "--"]


def _dsn(host: str, port: int) -> str:
    return f"host={host} port={port} user=postgres dbname=postgres connect_timeout=10"


class PostgresServer:
    """A temporary cluster the suite may kill and restart; the ``server`` of a factory.

    Nothing happens until :meth:`start`. The cluster lives in a new temporary directory, on one
    port for its whole life; :meth:`close` stops it and removes the directory. ``dsn_file`` holds
    the DSN handles should use now: the server's own, or the proxy's after :meth:`route`.
    """

    def __init__(self, bindir: str | None = None) -> None:
        self._bindir = bindir
        self._root: str | None = None
        self._port = 0
        self._owner = os.getpid()  # only the process that made the cluster stops it
        self.kills = 0

    @property
    def made(self) -> bool:
        """Whether the cluster exists (made here, or adopted)."""
        return self._root is not None

    @property
    def available(self) -> bool:
        """Whether this machine has the server binaries."""
        return (self._bindir or find_bindir()) is not None

    @property
    def address(self) -> Address:
        """Where the server listens (valid once started)."""
        return ("127.0.0.1", self._port)

    @property
    def dsn(self) -> str:
        """The server's own DSN (not the proxy's)."""
        return _dsn(*self.address)

    @property
    def dsn_file(self) -> str:
        """The file naming the DSN handles use now (see :meth:`route`)."""
        assert self._root is not None, "start() first"
        return os.path.join(self._root, "dsn")

    @property
    def cluster(self) -> Cluster:
        """The running cluster, as ``tests/_postgres.py`` hands it out."""
        assert self._root is not None, "start() first"
        return Cluster(self.dsn, self._path("data"), self._path("server.log"))

    def _path(self, name: str) -> str:
        assert self._root is not None
        return os.path.join(self._root, name)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_as_owner(), *args], check=True, capture_output=True, text=True)

    def _tool(self, name: str) -> str:
        bindir = self._bindir or find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self._bindir = bindir
        return os.path.join(bindir, name)

    def _create(self) -> None:
        root = tempfile.mkdtemp(prefix="lance-offsets-pg-")
        if _as_owner():
            shutil.chown(root, user="postgres", group=None)
        self._root = root
        initdb = self._tool("initdb")
        # --no-sync: the cluster's files need not survive a power cut, only a server kill.
        self._run(initdb, "-D", self._path("data"), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        self._run("mkdir", self._path("sock"))
        self._port = _free_port()
        with open(self._path("port"), "w", encoding="ascii") as file:
            file.write(f"{self._port}\n")
        self.route(None)

    def adopt(self, root: str) -> bool:
        """Take over the cluster another process of this run made in ``root``; whether it was one.

        The adopting process may kill, restart and route it; only the maker removes it.
        """
        try:
            with open(os.path.join(root, "port"), encoding="ascii") as file:
                port = int(file.read())
        except (OSError, ValueError):
            return False
        if not os.path.isdir(os.path.join(root, "data")):
            return False
        self._root, self._port, self._owner = root, port, -1
        return True

    def running(self) -> bool:
        """Whether the postmaster of the cluster is alive."""
        return self._root is not None and self._postmaster() is not None

    def _postmaster(self) -> int | None:
        try:
            with open(self._path("data/postmaster.pid"), encoding="ascii") as file:
                pid = int(file.readline())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def processes(self) -> list[int]:
        """The server's processes now: the postmaster, then its children (empty when down)."""
        pid = self._postmaster() if self._root is not None else None
        return [] if pid is None else [pid, *_children(pid)]

    def start(self) -> Address:
        """Create the cluster on first use, start the server if not running; its address."""
        if self._root is None:
            self._create()
        if not self.running():
            options = (
                f"-p {self._port} -k {self._path('sock')} -c listen_addresses=127.0.0.1 "
                "-c fsync=on -c synchronous_commit=on -c max_connections=200"
            )
            self._run(self._tool("pg_ctl"), "-D", self._path("data"), "-l",
                      self._path("server.log"), "-w", "-t", str(START_SECONDS), "-o", options,
                      "start")  # fmt: skip
        return self.address

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server fast, or SIGKILL its whole process group and wait until it is gone."""
        if self._root is None:
            return
        if not kill:
            subprocess.run(
                [*_as_owner(), self._tool("pg_ctl"), "-D", self._path("data"), "-m", "fast",
                 "-w", "stop"],
                check=False, capture_output=True,
            )  # fmt: skip
            return
        # Each backend calls setsid(), so the postmaster's group holds it alone: the server's
        # processes are the postmaster and its children, all killed at once, none warned.
        victims = self.processes()
        if not victims:
            return
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        self.kills += 1
        give_up = time.monotonic() + GONE_SECONDS
        while time.monotonic() < give_up and any(_alive(v) for v in victims):
            time.sleep(0.01)
        # A killed postmaster that no init reaps stays a zombie, which the next postmaster's
        # kill(pid, 0) takes for a live server: its lock files go, as a reboot would remove them.
        for lock in [self._path("data/postmaster.pid"), *glob.glob(self._path("sock/.s.PGSQL.*"))]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)

    def route(self, address: Address | None) -> None:
        """Write the DSN handles use from now on: ``address``, or the server's own when None."""
        host, port = address or self.address
        temporary = self.dsn_file + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(_dsn(host, port) + "\n")
        os.replace(temporary, self.dsn_file)

    def close(self) -> None:
        """Stop the server and remove its directory (only in the process that created it)."""
        if self._root is None or os.getpid() != self._owner:
            return
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None


def _state(stat: str) -> list[str]:
    # The fields after the parenthesised command name: state, ppid, pgrp, ...
    return stat.rsplit(")", 1)[-1].split()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return _state(file.read())[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel, zombies included
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by the postgres account
        return True


class FallbackCluster(PostgresServer):
    """The temporary cluster a factory falls back to when its environment names no server.

    The factory reads a DSN from the environment variable ``dsn_variable``, or from the file
    that ``file_variable`` names (re-read at every open). Starting the cluster points
    ``file_variable`` at its DSN file, so every handle opened afterwards, here or in a process
    started later, reaches it (or the proxy :meth:`route` named). It is stopped and removed
    when the process that started it exits. It refuses to start when the environment names
    another server: the suite kills and proxies only a server it runs, and the factory must
    keep using the one it was given.
    """

    def __init__(self, dsn_variable: str, file_variable: str, bindir: str | None = None) -> None:
        super().__init__(bindir)
        self.dsn_variable = dsn_variable
        self.file_variable = file_variable

    @staticmethod
    def in_worker_process() -> bool:
        """Whether this process was started by ``multiprocessing`` or ``multiprocess``."""
        return in_worker_process()

    def start(self) -> Address:
        configured = os.environ.get(self.file_variable) or os.environ.get(self.dsn_variable)
        mine = self.dsn_file if self.made else None
        # A process of the run (a check --workers pool worker) adopts its parent's cluster.
        if configured and mine is None and self._adopts(configured):
            mine = self.dsn_file
        if configured and configured != mine:
            raise RuntimeError(
                f"the postgres factory is configured for another server ({self.dsn_variable} or "
                f"{self.file_variable} is set): the suite kills and proxies only a server it "
                "starts itself; unset them to let the factory start its own temporary cluster"
            )
        if mine is None and in_worker_process():
            # A worker's own cluster would hold data its siblings never see, and die unstopped
            # with the worker: the process that starts the workers starts the server first.
            raise RuntimeError(
                "the postgres factory's temporary cluster is started by the process that starts "
                f"the workers (none was: {self.file_variable} is not set in this worker)"
            )
        address = super().start()
        os.environ[self.file_variable] = self.dsn_file
        if mine is None:
            atexit.register(self.close)
            # A pool worker (check --workers) ends through os._exit: no atexit, but this runs.
            multiprocessing.util.Finalize(self, self.close, exitpriority=10)
        return address

    def _adopts(self, configured: str) -> bool:
        return os.path.basename(configured) == "dsn" and self.adopt(os.path.dirname(configured))


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; none where there is no /proc)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                    fields = _state(file.read())
            except OSError:
                continue
            if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
                found.append(int(entry))
    return found


@contextlib.contextmanager
def temporary_cluster(bindir: str | None = None) -> Iterator[Cluster]:
    """Start a cluster in a new temporary directory; stop it and remove the directory after."""
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server.cluster
    finally:
        server.close()
