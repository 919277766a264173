"""What a factory declares about the server its store talks to (its ``server`` attribute)."""

from __future__ import annotations

import multiprocessing
import sys
from typing import Protocol, runtime_checkable

__all__ = ["Address", "ServerDeclaration", "in_worker_process", "server_of"]

#: Where a server (or the proxy in front of it) listens: ``(host, port)``.
Address = tuple[str, int]


@runtime_checkable
class ServerDeclaration(Protocol):
    """How the suite runs the server behind a store; the factory's ``server`` attribute.

    The suite calls these from the process that runs the check; handles it opens afterwards with
    ``factory(path)`` must reach the server at the address last given to :meth:`route`.
    """

    def start(self) -> Address:
        """Start the server if it is not running (a restart after :meth:`stop`); its address.

        Returns once it accepts connections. The address stays the same across restarts.
        """
        ...

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: cleanly, or with ``kill`` by SIGKILL of its whole process group.

        A kill gives the server no chance to flush anything: what it acknowledged must already
        be durable. Returns once no process of the server is left.
        """
        ...

    def route(self, address: Address | None) -> None:
        """Make handles the factory opens from now on connect to ``address`` (None: the server)."""
        ...


def server_of(factory: object) -> ServerDeclaration | None:
    """The factory's server declaration, or None; a ``server`` lacking the methods raises."""
    server = getattr(factory, "server", None)
    if server is None:
        return None
    if not isinstance(server, ServerDeclaration):
        raise TypeError(
            f"'server' on {factory!r} must have start(), stop(kill=...) and route(address)"
        )
    return server


def in_worker_process() -> bool:
    """Whether this process was started by ``multiprocessing`` or ``multiprocess``.

    Such a process belongs to a run another process holds (a ``check --workers`` pool process, a
    campaign's worker): it uses the declared server, but neither starts its own nor stops it.
    """
    if multiprocessing.parent_process() is not None:
        return True
    other = sys.modules.get("multiprocess")
    return other is not None and other.parent_process() is not None
