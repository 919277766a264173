"""A correct store whose module opens a file when imported: a template must not fork it.

Realistic: a log or a connection opened at import. Every child forked from a template would
share that descriptor (its offset, its locks, its socket), which separate processes never do,
so a fleet given this spec starts one process per cycle (``stress/workers/_zygote.py``).
Importable as ``_descriptor_store:lockfile`` with the ``tests`` folder on the path.
"""

from __future__ import annotations

import tempfile

from lance_offsets.conformance.reference import lockfile as _reference

_LOG = tempfile.TemporaryFile()  # noqa: SIM115 - open for the module's life, gone with it

lockfile = _reference
