"""A correct store whose module starts a thread when imported: a template must not fork it.

Realistic: a metrics or keep-alive thread started at import. Forking a process with threads
copies one thread and whatever locks the others held, so a fleet given this spec starts one
process per cycle instead of forking children from a template (``stress/workers/_zygote.py``).
Importable as ``_threaded_store:lockfile`` with the ``tests`` folder on the path.
"""

from __future__ import annotations

import threading
import time

from lance_offsets.conformance.reference import lockfile as _reference


def _keep_alive() -> None:
    while True:
        time.sleep(3600)


threading.Thread(target=_keep_alive, name="metrics", daemon=True).start()

lockfile = _reference
