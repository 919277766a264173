"""The syscall-level backend: an ``LD_PRELOAD`` shim that sees a store's I/O made in C.

The Python interposer (``_interpose.py``) sees only what a store does through Python's ``os`` and
``io``; SQLite, LMDB or a Rust extension write through libc directly. The shim (C source in
``_shim_c.py``) is compiled once per user with the system C compiler into a cache directory keyed
by the source's hash, and preloaded into the crash and fault workers from exec (``_fleet.py``
starts their forkserver with it). It stays passive until :func:`syscall_traced` arms it inside a
worker; then every file-system call on a path under the store's directory, from any thread,
comes back here through a ctypes callback and goes through the same :class:`Tracer` as the
Python interposer's: the same numbering, :class:`FaultPlan`, ``on_op`` stop hook and
:class:`TraceOp` records, so the crash and fault judges and their reports work unchanged. The
records also carry each file's content after the call and the descriptor, and shared writable
mappings are reported (``on_map``): the power-loss check (D3) records C stores through the shim
too, its records turned into the model's trace by ``_syscalls.py``.

Linux only (``/proc/self/fd`` names descriptors; ``LD_PRELOAD`` is the ELF loader's). No C
compiler, another OS, or workers started before the shim was built: the backend is unavailable
and :func:`unavailable` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Final

from ._shim_c import KINDS, MAPPED, SOURCE
from ._trace import OpKind, TraceOp
from ._tracer import CONTENT_KINDS, FaultPlan, OnOp, Tracer, read_content

__all__ = ["build", "loaded", "mark", "syscall_traced", "unavailable"]

#: Environment variable naming the shim's cache directory (default: the user's cache dir).
CACHE_ENV: Final = "LANCE_OFFSETS_SHIM_CACHE"
_PATH_MAX: Final = 4096


class _Op(ctypes.Structure):
    _fields_ = [  # ctypes reads this class attribute
        ("index", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("phase", ctypes.c_int),
        ("fd", ctypes.c_int),
        ("flags", ctypes.c_int),
        ("err", ctypes.c_int),
        ("is_dir", ctypes.c_int),
        ("pad", ctypes.c_int),
        ("offset", ctypes.c_longlong),
        ("size", ctypes.c_longlong),
        ("call", ctypes.c_char_p),
        ("path", ctypes.c_char * _PATH_MAX),
        ("target", ctypes.c_char * _PATH_MAX),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Op))
_BUILT: dict[str, str | None] = {}  # "path" -> the built .so, or None with "why"


def _cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lance-offsets"
    )


def build() -> str | None:
    """The compiled shim's path, compiling it on first use; None when it cannot be had here.

    Cached per source hash, so a changed shim is rebuilt and concurrent builders (pytest-xdist
    workers) each write their own temp file and rename it into place.
    """
    if "path" in _BUILT:
        return _BUILT["path"]
    _BUILT["path"], _BUILT["why"] = _build()
    return _BUILT["path"]


def _build() -> tuple[str | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, f"the syscall backend needs Linux (LD_PRELOAD, /proc), not {sys.platform}"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, "the syscall backend needs a C compiler (cc) to build its shim; none found"
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    folder = _cache_dir()
    target = os.path.join(folder, f"syscall-shim-{digest}.so")
    if os.path.exists(target):
        return target, None
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            source = os.path.join(work, "shim.c")
            with open(source, "w") as handle:
                handle.write(SOURCE)
            built = os.path.join(work, "shim.so")
            done = subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-o", built, source, "-ldl"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                return None, f"the shim did not compile: {done.stderr.strip()[-400:]}"
            os.replace(built, target)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the shim could not be built in {folder}: {exc}"
    return target, None


def unavailable() -> str | None:
    """Why this process's workers get no syscall backend, or None when they do (it is built)."""
    build()
    return _BUILT.get("why")


def loaded() -> ctypes.CDLL | None:
    """The shim in this process (preloaded from exec), or None when it was not preloaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.lo_begin.argtypes = [ctypes.c_char_p, ctypes.c_char_p, _CALLBACK]
    except (OSError, AttributeError):
        return None
    return lib


_ACTIVE: list[_Bridge] = []


class _Bridge:
    """Turns the shim's before/after reports into the :class:`Tracer`'s numbering and records."""

    def __init__(self, tracer: Tracer, on_map: Callable[[str], None] | None) -> None:
        self.tracer = tracer
        self.on_map = on_map
        self.next = 0
        self.errors: list[str] = []
        self.callback = _CALLBACK(self._report)  # kept alive while armed

    def number(self) -> int:
        with self.tracer.lock:
            self.next += 1
            return self.next - 1

    def _report(self, raw: ctypes._Pointer[_Op]) -> int:
        try:
            return self._handle(raw.contents)
        except BaseException as exc:  # an exception cannot cross into C: report it later
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return 0

    def _op(self, c: _Op) -> TraceOp:
        tracer = self.tracer
        path = tracer.normalize(os.fsdecode(c.path)) or os.fsdecode(c.path)
        target = tracer.normalize(os.fsdecode(c.target)) if c.target else None
        kind: OpKind = KINDS[c.kind]
        call = (c.call or b"").decode()
        sizes = []
        if c.size >= 0:
            sizes.append(f"{c.size} bytes")
        if c.offset >= 0:
            sizes.append(f"at {c.offset}")
        note = " ".join(sizes)
        return TraceOp(
            c.index, kind, path, target, bool(c.is_dir), c.flags, call=call, note=note, fd=c.fd
        )

    def _handle(self, c: _Op) -> int:
        tracer = self.tracer
        if c.kind == MAPPED:  # no operation: a note for the power-loss model, never numbered
            if self.on_map is not None:
                self.on_map(tracer.normalize(os.fsdecode(c.path)) or os.fsdecode(c.path))
            return 0
        if c.phase == 0:
            c.index = self.number()
            op = self._op(c)
            if tracer.on_op is not None:
                tracer.on_op(op, "before")
            with tracer.lock:
                fault = tracer.fault_for(op)
            if op.kind == "close" and not op.is_dir:  # read before the descriptor goes away
                content = read_content(c.fd, op.path)
                tracer.pending[op.index] = content
            return 0 if fault is None else fault.errno or errno.EIO
        op = self._op(c)
        content = tracer.pending.pop(op.index, None)
        if op.kind in CONTENT_KINDS and not op.is_dir and not c.err and op.kind != "close":
            content = read_content(c.fd if c.fd >= 0 else None, op.path)
        error = errno.errorcode.get(c.err, str(c.err)) if c.err else None
        done = dataclasses.replace(op, content=content, error=error)
        with tracer.lock:
            tracer.trace.append(done)
        if tracer.on_op is not None:
            tracer.on_op(done, "after")
        return 0


@contextlib.contextmanager
def syscall_traced(
    root: str,
    *,
    on_op: OnOp | None = None,
    fail: FaultPlan | None = None,
    on_map: Callable[[str], None] | None = None,
) -> Iterator[list[TraceOp]]:
    """Arm the preloaded shim for calls on paths under ``root``; yield the live trace.

    The same contract as :func:`~lance_offsets.stress.seam._interpose.traced`. The trace is
    sorted by index on exit (threads may finish their calls out of order).

    :param on_map: called with the path of each file the store maps shared and writable (its
        writes through the mapping are invisible to any tracer), once the mapping exists.

    :raises RuntimeError: the shim is not preloaded in this process.
    """
    lib = loaded()
    if lib is None:
        raise RuntimeError("the syscall shim is not preloaded in this process")
    tracer = Tracer(root, on_op, fail)
    bridge = _Bridge(tracer, on_map)
    _ACTIVE.append(bridge)
    real, given = tracer.root.encode(), os.path.abspath(root).encode()
    lib.lo_begin(real, given, bridge.callback)
    try:
        yield tracer.trace
    finally:
        lib.lo_end()
        _ACTIVE.remove(bridge)
        tracer.trace.sort(key=lambda op: op.index)
        if bridge.errors:
            raise RuntimeError(f"the syscall shim's callback failed: {bridge.errors[0]}")


def mark(note: str) -> None:
    """Append a harness note to the active syscall trace (as ``_interpose.mark`` does)."""
    if _ACTIVE:
        bridge = _ACTIVE[-1]
        op = TraceOp(bridge.number(), "mark", bridge.tracer.root, note=note)
        with bridge.tracer.lock:
            bridge.tracer.trace.append(op)
