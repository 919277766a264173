"""Server stores without PostgreSQL: a tiny TCP key-value server (``_kv_server.py``) and its client.

Each factory declares its server (``factory.server``, a :class:`KVServer`), so the suite starts
it before any check, kills and restarts it under D2 and puts its fault proxy in front of it under
F2, in the quick profile as with ``--stress``, and stops it when the check ends. The client makes
no file I/O: everything it stores lives in the server.

- ``kv_fsync``: correct. The server appends each change to a log and fsyncs it before it replies.
- ``kv_snapshot`` (D2, server killed): the server keeps changes in memory and writes a snapshot
  every 5 s and at a clean stop; a SIGKILL forgets what it acknowledged since the last one.
- ``kv_swallowing`` (F2 and D2): the server is ``kv_fsync``'s, but the client acknowledges a save
  whose connection failed (it takes a lost connection for a lost reply), so a request that never
  reached the server is reported saved.

The server runs in its own session (its own process group) from a directory made at its first
start (under ``$ZOO_KV_ROOT`` when set: tests look for leftover processes there), which the
environment variable of its mode names, so every process started afterwards (workers, pools)
reaches and may restart the same one. Use them as ``zoo.kv_zoo:<name>`` with the ``tests``
folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Final

from lance_offsets._domain import check_key, check_offset
from lance_offsets._errors import StoreClosedError

Key = tuple[int, int]
Address = tuple[str, int]

#: The server program.
SERVER: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kv_server.py")
#: Seconds a start or a stop may take.
WAIT_SECONDS: Final = 30.0
#: Seconds a client waits for a connection or a reply.
TIMEOUT: Final = 10.0


def _alive(pid: int) -> bool:
    """Whether any thread of ``pid`` runs; a zombie (dead, not yet reaped) does not.

    Every thread counts: a killed server's main thread is a zombie while its other threads still
    exit, and they hold its listening socket open until the last one is gone.
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel whether the process exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(_running(f"/proc/{pid}/task/{thread}/stat") for thread in threads)


def _running(stat: str) -> bool:
    """Whether the thread whose ``/proc`` stat file is ``stat`` is neither gone nor a zombie."""
    try:
        with open(stat, encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[-1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


class KVServer:
    """The ``server`` declaration of a ``kv_zoo`` factory: start, stop (or kill) and route it.

    Everything about the running server is kept in its directory (``pid``, ``port``, ``route``),
    so any process of the run can stop, restart or route it, not only the one that started it.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.variable = f"ZOO_KV_{mode.upper()}"
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def root(self) -> str | None:
        """The server's directory, once started (here or by a process this one descends from)."""
        return os.environ.get(self.variable)

    def _file(self, name: str) -> str:
        root = self.root
        assert root is not None, "start() first"
        return os.path.join(root, name)

    def _read(self, name: str) -> str | None:
        with contextlib.suppress(FileNotFoundError), open(self._file(name), encoding="ascii") as f:
            return f.read().strip()
        return None

    def _write(self, name: str, text: str) -> None:
        temporary = self._file(name + ".tmp")
        with open(temporary, "w", encoding="ascii") as file:
            file.write(text + "\n")
        os.replace(temporary, self._file(name))

    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        if self.root is None:
            return None
        text = self._read("pid")
        return int(text) if text and _alive(int(text)) else None

    @property
    def address(self) -> Address:
        port = self._read("port")
        assert port is not None, "start() first"
        return ("127.0.0.1", int(port))

    def start(self) -> Address:
        if self.root is None:
            where = os.environ.get("ZOO_KV_ROOT")
            os.environ[self.variable] = tempfile.mkdtemp(prefix=f"zoo-kv-{self.mode}-", dir=where)
        if self.pid() is None:
            port = self._read("port")
            command = [sys.executable, SERVER, "--root", self._file(""), "--mode", self.mode]
            if port is not None:  # a restart: the same port, so every client finds it again
                command += ["--port", port]
            with open(self._file("server.log"), "ab") as log:
                proc = subprocess.Popen(
                    command,
                    start_new_session=True,  # its own process group: a kill takes all of it
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            self._children[proc.pid] = proc
            self._write("pid", str(proc.pid))
            self._wait_listening(proc)
            if self._read("route") is None:
                self.route(None)
        return self.address

    def _wait_listening(self, proc: subprocess.Popen[bytes]) -> None:
        give_up = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < give_up:
            if proc.poll() is not None:
                raise RuntimeError(f"the kv server exited ({proc.returncode}): see server.log")
            port = self._read("port")
            if port is not None:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                    return
            time.sleep(0.01)
        raise RuntimeError(f"the kv server did not listen within {WAIT_SECONDS:g} s")

    def stop(self, *, kill: bool = False) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
        give_up = time.monotonic() + WAIT_SECONDS
        child = self._children.pop(pid, None)
        if child is not None:
            child.wait(WAIT_SECONDS)
        while _alive(pid) and time.monotonic() < give_up:
            time.sleep(0.01)

    def route(self, address: Address | None) -> None:
        host, port = address or self.address
        self._write("route", f"{host} {port}")

    def routed(self) -> Address:
        """Where clients connect now (the server, or the proxy :meth:`route` named)."""
        text = self._read("route") if self.root is not None else None
        if text is None:
            raise RuntimeError(
                f"the kv server ({self.mode}) is not started: the suite starts a declared "
                f"server before any check ({self.variable} is not set)"
            )
        host, port = text.split()
        return host, int(port)


class KVStore:
    """The client: one connection per handle, opened at once and again after a failure."""

    def __init__(self, path: str, server: KVServer) -> None:
        digest = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogatepass"))
        self._namespace = digest.hexdigest()[:16]
        self._server = server
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._reader: Any = None
        self._closed = False
        self._call("PING")

    def _connect(self) -> None:
        conn = socket.create_connection(self._server.routed(), timeout=TIMEOUT)
        self._conn, self._reader = conn, conn.makefile("rb")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
                self._conn.close()
        self._conn = self._reader = None

    def _call(self, request: str) -> str:
        with self._lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            try:
                if self._conn is None:
                    self._connect()
                assert self._conn is not None
                self._conn.sendall(request.encode("ascii") + b"\n")
                reply: bytes = self._reader.readline()
                if not reply.endswith(b"\n"):
                    raise ConnectionError("the server closed the connection")
            except OSError:
                self._drop()  # the next call connects again
                raise
        text = reply.decode("ascii").strip()
        if text.startswith("ERR"):
            raise RuntimeError(f"kv server: {text}")
        return text

    def _change(self, request: str) -> None:
        self._call(request)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        t, c = check_key(topic_id, consumer_id)
        reply = self._call(f"GET {self._namespace} {t} {c}")
        return None if reply == "NONE" else int(reply.split()[1])

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        t, c = check_key(topic_id, consumer_id)
        self._change(f"SET {self._namespace} {t} {c} {check_offset(offset)}")

    def delete(self, topic_id: int, consumer_id: int) -> None:
        t, c = check_key(topic_id, consumer_id)
        self._change(f"DEL {self._namespace} {t} {c}")

    def list_all(self) -> dict[Key, int]:
        words = self._call(f"LIST {self._namespace}").split()[1:]
        found = {}
        for word in words:
            t, c, value = word.split(":")
            found[int(t), int(c)] = int(value)
        return found

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Swallowing(KVStore):
    def _change(self, request: str) -> None:
        # The defect: a failed connection is taken for a lost reply, "so the change went through".
        with contextlib.suppress(OSError):
            self._call(request)


class _HastyKVServer(KVServer):
    """A declaration whose restart returns once the server process is started, not listening.

    As many a hand-written ``start()`` does: the port is known, so why wait. Clients refused in
    the moment before the restarted server listens are the restart's doing, not the store's.
    """

    def __init__(self) -> None:
        super().__init__("fsync")
        self.variable = "ZOO_KV_HASTY"  # a server of its own, beside FSYNC's

    def _wait_listening(self, proc: subprocess.Popen[bytes]) -> None:
        if self._read("port") is None:  # the first start: nobody knows the port yet
            super()._wait_listening(proc)


FSYNC = KVServer("fsync")
SNAPSHOT = KVServer("snapshot")
HASTY = _HastyKVServer()


def kv_fsync(path: str) -> KVStore:
    """Correct: the server fsyncs its log before it replies."""
    return KVStore(path, FSYNC)


def kv_snapshot(path: str) -> KVStore:
    """The server keeps periodic snapshots only: a SIGKILL forgets acknowledged changes (D2)."""
    return KVStore(path, SNAPSHOT)


def kv_swallowing(path: str) -> KVStore:
    """The client acknowledges a change whose connection failed (F2, D2)."""
    return _Swallowing(path, FSYNC)


def kv_hasty(path: str) -> KVStore:
    """Correct (the fsync server), declared with a restart that does not wait for it to listen."""
    return KVStore(path, HASTY)


kv_fsync.server = FSYNC  # type: ignore[attr-defined]
kv_hasty.server = HASTY  # type: ignore[attr-defined]
kv_snapshot.server = SNAPSHOT  # type: ignore[attr-defined]
kv_swallowing.server = FSYNC  # type: ignore[attr-defined]
