"""A loopback TCP proxy the suite puts between a store and its server, with faults on command.

Threads, not asyncio: each connection is two blocking pumps (client to server, server to
client), so a fault is a state the pumps consult at every chunk, and a connection is cut by
``shutdown`` from any thread, which wakes a pump blocked in ``recv``. Only loopback addresses are
accepted, on both sides.

Faults (:meth:`FaultProxy.fault`, until :meth:`FaultProxy.clear`):

``drop``
    every open connection is closed on both sides at once, and new ones are closed as soon as
    accepted: the client sees its connection reset, whatever it was doing.
``delay``
    each chunk waits ``delay_seconds`` before it is forwarded, both ways.
``stall``
    nothing is forwarded (bytes wait in the kernel's buffers) until the fault clears.
``cut``
    requests still reach the server, but a reply chunk is thrown away and the connection
    closed: the server did the work, the client never hears of it. This is the fault that makes
    an acknowledgement lost in flight. Which reply: the next one of each connection, or, with
    ``cut_after=(low, high)``, one drawn per connection (seeded) after ``low..high`` replies
    passed, so connections made during the fault get through their start-up and lose a reply
    at some later point of their conversation (a commit's, a query's...).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Final, Literal

from ._declaration import Address

__all__ = ["FAULT_KINDS", "FaultKind", "FaultProxy"]

FaultKind = Literal["drop", "delay", "stall", "cut"]
#: Every fault the proxy can inject, in the order campaigns cycle through them.
FAULT_KINDS: Final[tuple[FaultKind, ...]] = ("cut", "drop", "stall", "delay")
#: Bytes read per chunk.
CHUNK: Final = 65536


def _loopback(address: Address) -> Address:
    host, port = address
    if not socket.inet_aton(socket.gethostbyname(host))[0] == 127:
        raise ValueError(f"the fault proxy only talks to loopback addresses, not {host}")
    return host, port


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; faults are injected with :meth:`fault`.

    :ivar counts: how many connections each fault broke (``cut``, ``drop``) or held up
        (``stall``, ``delay``), for the evidence of a verdict.
    """

    def __init__(
        self,
        upstream: Address,
        *,
        delay_seconds: float = 0.05,
        cut_after: tuple[int, int] = (0, 0),
        seed: int = 0,
    ) -> None:
        self.upstream = _loopback(upstream)
        self.delay_seconds = delay_seconds
        self.cut_after = cut_after
        self._rng = random.Random(seed)
        self.counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.connections = 0
        self._mode: FaultKind | None = None
        self._flowing = threading.Condition()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._spawn(self._accept, "proxy-accept")

    @property
    def address(self) -> Address:
        """Where clients connect."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def mode(self) -> FaultKind | None:
        """The fault in force, or None."""
        return self._mode

    def fault(self, kind: FaultKind) -> None:
        """Start fault ``kind`` (replacing any other); ``drop`` closes every connection now."""
        with self._flowing:
            self._mode = kind
        if kind == "drop":
            self._drop_all()

    def clear(self) -> None:
        """End the fault: traffic flows normally again (stalled bytes are forwarded)."""
        with self._flowing:
            self._mode = None
            self._flowing.notify_all()

    def close(self) -> None:
        """Stop accepting, close every connection, wait for the pumps."""
        self._closed = True
        self.clear()
        address = self.address
        # close() alone does not wake a thread blocked in accept(); shutdown() does (Linux), and
        # a connection of our own does everywhere.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=1):
            pass
        with contextlib.suppress(OSError):
            self._listener.close()
        self._drop_all()
        for thread in self._threads:
            thread.join(5.0)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _drop_all(self) -> None:
        with self._lock:
            victims = list(self._open)
        for sock in victims:
            self._shut(sock)
        if victims and self._mode == "drop":
            self.counts["drop"] += len(victims) // 2

    def _shut(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._closed:
                client.close()
                return
            if self._mode == "drop":
                self.counts["drop"] += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()  # the server is down: the client sees its connection close
                continue
            server.settimeout(None)
            self.connections += 1
            with self._lock:
                self._open.update((client, server))
            pumps = [2]  # the last pump out closes both sockets: no fd is closed under the other
            self._spawn(self._pump, "proxy-up", client, server, None, pumps)
            self._spawn(self._pump, "proxy-down", server, client, [-1], pumps)

    def _hold(self) -> FaultKind | None:
        """Wait while stalled; return the fault in force after that."""
        with self._flowing:
            stalled = False
            while self._mode == "stall" and not self._closed:
                if not stalled:
                    self.counts["stall"] += 1
                    stalled = True
                self._flowing.wait(0.5)
            return self._mode

    def _cut(self, mode: FaultKind | None, replies: list[int]) -> bool:
        """Whether this reply is the one a cut loses (the request got through: it is its reply)."""
        if mode != "cut":
            replies[0] = -1  # the next cut draws afresh
            return False
        if replies[0] < 0:
            replies[0] = self._rng.randint(*self.cut_after)
        if replies[0] == 0:
            self.counts["cut"] += 1
            return True
        replies[0] -= 1
        return False

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        replies: list[int] | None,
        pumps: list[int],
    ) -> None:
        """Forward ``source`` to ``sink``; ``replies`` (server to client only) counts down to a cut.

        ``replies[0]`` is -1 outside a cut, else how many more replies pass before one is cut.
        """
        try:
            while True:
                try:
                    data = source.recv(CHUNK)
                except OSError:
                    return
                if not data:
                    return
                mode = self._hold()
                if mode == "drop":
                    return
                if mode == "delay":
                    self.counts["delay"] += 1
                    time.sleep(self.delay_seconds)
                if replies is not None and self._cut(mode, replies):
                    return
                try:
                    sink.sendall(data)
                except OSError:
                    return
        finally:
            for sock in (source, sink):
                self._shut(sock)
            with self._lock:
                pumps[0] -= 1
                last = pumps[0] == 0
                if last:
                    self._open.difference_update((source, sink))
            if last:
                source.close()
                sink.close()
