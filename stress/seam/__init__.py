"""The fault seam: every backend that sees a store's file-system calls, and the trace they share.

Backends: the Python interposer (``_interpose``, ``_tracedio``), the ``LD_PRELOAD`` syscall shim
(``_shim``, ``_shim_c``) and the strace recorder (``_strace``). They number calls and inject
faults through one :class:`~lance_offsets.stress.seam._tracer.Tracer` and record
:class:`~lance_offsets.stress.seam._trace.TraceOp` events that every campaign consumes.
"""
