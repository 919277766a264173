"""Client-server faults: a declared server killed and restarted, and a fault-injecting TCP proxy.

A store factory may carry a ``server`` attribute (:class:`ServerDeclaration`): how the suite
starts, kills and restarts the server the store talks to, where it listens, and how the factory is
pointed at another address (the proxy). With one declared, ``check --stress`` adds two campaigns:

* server crash (:mod:`._crash`, under D2, fault kind "server killed"): the server's whole process
  group is SIGKILLed at seeded times while handles commit, then restarted; a fresh handle and the
  history checker must find every acknowledged commit;
* connection faults (:mod:`._connfaults`, under F2): the store's traffic goes through
  :class:`._proxy.FaultProxy`, which drops connections, delays, stalls, and cuts them after a
  request reached the server but before its reply reached the client.

Operations a fault touched are indeterminate in the history (:func:`._run.excuse`), exactly as
a killed worker's last call: they may have taken effect or not, and nothing else is excused.
"""

from __future__ import annotations

from ._declaration import Address, ServerDeclaration, server_of

__all__ = ["Address", "ServerDeclaration", "server_of"]
