"""The fault seam: every backend that sees a store's file-system calls, and the trace they share.

Backends: the Python interposer (``_interpose``, ``_tracedio``) and the ``LD_PRELOAD`` syscall shim
(``_shim``, ``_shim_c``). They number calls and inject faults through one
:class:`~lance_offsets.stress.seam._tracer.Tracer` and record
:class:`~lance_offsets.stress.seam._trace.TraceOp` events. Every campaign records through one call
and one backend choice (``_record``). System-call level records become the power-loss model's
trace in one place (``_syscalls``), fed by the shim or, as a fallback, by strace (``_strace``).
"""
