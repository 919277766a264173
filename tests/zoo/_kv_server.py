"""A tiny key-value server over TCP, the server half of ``kv_zoo``'s stores (standard library only).

Run as a program: ``python _kv_server.py --root DIR --mode fsync|snapshot [--port N]``. It
listens on 127.0.0.1 (port ``N``, or a free one), writes ``DIR/port`` once it accepts
connections, and answers one request per line, one reply per line:

``SET ns t c v`` / ``DEL ns t c`` / ``ADD ns t c delta``  ->  ``OK``
``GET ns t c``  ->  ``VAL v`` or ``NONE``
``LIST ns``  ->  ``LIST t:c:v t:c:v ...``

``ns`` is a namespace (one per store location). Requests are served one at a time under one lock,
so every reply reflects every request answered before it.

Durability is the mode:

``fsync``
    every change is appended to ``DIR/log`` and fsynced before the reply; a start replays the
    log (a torn last line, never acknowledged, is cut off first). A SIGKILL loses nothing
    acknowledged.
``snapshot``
    changes live in memory; the whole map is written to ``DIR/snapshot`` (temporary file,
    fsync, rename) every ``--snapshot-seconds`` and at a clean stop (SIGTERM), as a server that
    keeps only periodic snapshots does. A SIGKILL forgets every change acknowledged since the
    last snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import threading
import time
from typing import Any

Data = dict[str, int]


class _State:
    def __init__(self, root: str, mode: str) -> None:
        self.root = root
        self.mode = mode
        self.lock = threading.Lock()
        self.data: Data = {}
        self.log_fd = -1
        if mode == "fsync":
            self._replay()
        else:
            self._load_snapshot()

    # -- the fsync mode: an append-only log, synced before each reply --------------------------
    def _replay(self) -> None:
        path = os.path.join(self.root, "log")
        try:
            with open(path, "rb") as file:
                content = file.read()
        except FileNotFoundError:
            content = b""
        whole = content[: content.rfind(b"\n") + 1]
        for line in whole.decode("ascii").splitlines():
            self._apply(line.split())
        self.log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if len(whole) != len(content):  # a torn line that was never acknowledged
            os.ftruncate(self.log_fd, len(whole))
        os.fsync(self.log_fd)
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # -- the snapshot mode: memory, written out now and then ----------------------------------
    def _load_snapshot(self) -> None:
        try:
            with open(os.path.join(self.root, "snapshot"), encoding="ascii") as file:
                self.data = {key: int(value) for key, value in json.load(file).items()}
        except FileNotFoundError:
            pass

    def snapshot(self) -> None:
        with self.lock:
            text = json.dumps(self.data)
        temporary = os.path.join(self.root, "snapshot.tmp")
        with open(temporary, "w", encoding="ascii") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, os.path.join(self.root, "snapshot"))

    # -- requests --------------------------------------------------------------------------------
    def _apply(self, words: list[str]) -> None:
        command, key = words[0], " ".join(words[1:4])
        if command == "SET":
            self.data[key] = int(words[4])
        elif command == "ADD":
            self.data[key] = self.data.get(key, 0) + int(words[4])
        elif command == "DEL":
            self.data.pop(key, None)

    def answer(self, line: str) -> str:
        words = line.split()
        if not words:
            return "ERR empty request"
        command = words[0]
        with self.lock:
            if command in ("SET", "ADD", "DEL") and len(words) == (4 if command == "DEL" else 5):
                if self.log_fd >= 0:
                    os.write(self.log_fd, (line.strip() + "\n").encode("ascii"))
                    os.fsync(self.log_fd)
                self._apply(words)
                return "OK"
            if command == "GET" and len(words) == 4:
                value = self.data.get(" ".join(words[1:4]))
                return "NONE" if value is None else f"VAL {value}"
            if command == "LIST" and len(words) == 2:
                prefix = words[1] + " "
                found = [
                    key[len(prefix) :].replace(" ", ":") + f":{value}"
                    for key, value in self.data.items()
                    if key.startswith(prefix)
                ]
                return " ".join(["LIST", *found])
            if command == "PING":
                return "PONG"
        return f"ERR bad request {line.strip()!r}"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        state: _State = self.server.state  # type: ignore[attr-defined]
        for raw in self.rfile:
            reply = state.answer(raw.decode("ascii", "replace"))
            self.wfile.write(reply.encode("ascii") + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a restart takes the same port while old connections linger
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--mode", choices=("fsync", "snapshot"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--snapshot-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    state = _State(args.root, args.mode)
    server = _Server(("127.0.0.1", args.port), _Handler)
    server.state = state  # type: ignore[attr-defined]

    def stop(*_: Any) -> None:
        # A clean stop: the snapshot mode writes what it has (SIGKILL gives it no chance).
        if args.mode == "snapshot":
            state.snapshot()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    if args.mode == "snapshot":

        def every() -> None:
            while True:
                time.sleep(args.snapshot_seconds)
                state.snapshot()

        threading.Thread(target=every, daemon=True).start()
    port = server.server_address[1]
    temporary = os.path.join(args.root, "port.tmp")
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{port}\n")
    os.replace(temporary, os.path.join(args.root, "port"))
    server.serve_forever()


if __name__ == "__main__":
    main()
