"""The syscall-level backend: an ``LD_PRELOAD`` shim that sees a store's I/O made in C.

The Python interposer (``_interpose.py``) sees only what a store does through Python's ``os`` and
``io`` at call time; SQLite, LMDB, a Rust extension, or Python code that bound ``os.fsync`` when
it was imported, reach libc without it. The shim (C source in ``_shim_c.py``) is compiled once
per user with the system C compiler into a cache directory keyed by the source's hash, and
preloaded into the crash and fault workers from exec (``_fleet.py`` starts their forkserver with
it). It stays passive until :func:`syscall_traced` arms it inside a worker; then every
file-system call on a path under the store's directory, from any thread, is numbered, faulted
(:class:`FaultPlan`), stopped at a crash point (:class:`StopAt`) and recorded in C, with no call
back into Python: a store's own threads never wait for the GIL (a C library that joins its I/O
thread under the GIL would deadlock against a callback). Python takes the records from the
shim's buffer outside the store's calls, whenever the live trace is read and at the end, and
turns them into the same :class:`TraceOp` records the interposer makes, so the crash and fault
judges and their reports work unchanged. The records also carry each file's content after the
call and the descriptor; writes through shared writable mappings are diffed at every recorded
call and recorded as ``write`` (``call="mmap"``), and each such mapping is reported (``on_map``):
the power-loss check (D3) records C stores through the shim too, its records turned into the
model's trace by ``_syscalls.py``.

Linux only (``/proc/self/fd`` names descriptors; ``LD_PRELOAD`` is the ELF loader's). No C
compiler, another OS, or workers started before the shim was built: the backend is unavailable
and :func:`unavailable` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Final, SupportsIndex, overload

from ._shim_c import KINDS, LAUNCHER, MAPPED, SOURCE
from ._syscalls import SHARED_MEMORY
from ._trace import OpKind, Trace, TraceOp
from ._tracer import FaultPlan, StopAt, Tracer, set_hold

__all__ = [
    "CHANNEL_ENV",
    "attach_channel",
    "build",
    "build_launcher",
    "loaded",
    "mark",
    "syscall_traced",
    "unavailable",
]

#: Environment variable naming the shim's cache directory (default: the user's cache dir).
CACHE_ENV: Final = "LANCE_OFFSETS_SHIM_CACHE"
#: Environment variable naming the channel's descriptors a driver store's process inherited
#: from its worker (:func:`attach_channel`); the shim reads it when it is loaded.
CHANNEL_ENV: Final = "LANCE_OFFSETS_SHIM_CHANNEL"


#: A record's fixed part as the shim writes it (``struct lo_rec`` in ``_shim_c.py``): index,
#: kind, fd, flags, err, is_dir; offset, size, content length (-1: none); the lengths of the
#: call's name, the note, the path and the target, which follow it, then the content.
_RECORD: Final = struct.Struct("=6i3q4I")
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
    flags = ["-shared", "-fPIC", "-O2", "-pthread"]
    return _compile(SOURCE, "syscall-shim", ".so", flags=flags, libs=["-ldl"], what="shim")


def _compile(
    text: str, stem: str, suffix: str, *, flags: list[str], libs: list[str], what: str
) -> tuple[str | None, str | None]:
    """Compile C ``text`` into the cache (named by its hash); its path, or None and why not."""
    if not sys.platform.startswith("linux"):
        return None, f"the syscall backend needs Linux (LD_PRELOAD, /proc), not {sys.platform}"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, f"the syscall backend needs a C compiler (cc) to build its {what}; none found"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = _cache_dir()
    target = os.path.join(folder, f"{stem}-{digest}{suffix}")
    if os.path.exists(target):
        return target, None
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            source = os.path.join(work, "source.c")
            with open(source, "w") as handle:
                handle.write(text)
            built = os.path.join(work, "built")
            done = subprocess.run(
                [compiler, *flags, "-o", built, source, *libs],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                return None, f"the {what} did not compile: {done.stderr.strip()[-400:]}"
            os.replace(built, target)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the {what} could not be built in {folder}: {exc}"
    return target, None


def build_launcher() -> str | None:
    """The compiled launcher (``_shim_c.LAUNCHER``), built on first use; None where it cannot be."""
    if "launcher" not in _BUILT:
        _BUILT["launcher"], _ = _compile(
            LAUNCHER, "driver-launcher", "", flags=["-O2"], libs=[], what="launcher"
        )
    return _BUILT["launcher"]


def unavailable() -> str | None:
    """Why this process's workers get no syscall backend, or None when they do (it is built)."""
    build()
    return _BUILT.get("why")


_LIB: list[ctypes.CDLL] = []


def loaded() -> ctypes.CDLL | None:
    """The shim in this process (preloaded from exec), or None when it was not preloaded."""
    if _LIB:
        return _LIB[0]
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.lo_begin.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    lib.lo_plan.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_int]
    lib.lo_stop.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
    lib.lo_stop.argtypes.append(ctypes.c_size_t)
    lib.lo_mark.argtypes = [ctypes.c_char_p]
    lib.lo_take.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.lo_take.restype = ctypes.c_longlong
    lib.lo_free.argtypes = [ctypes.c_void_p]
    lib.lo_hold.argtypes = [ctypes.c_int]
    lib.lo_chan_attach.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    _LIB.append(lib)
    return lib


def attach_channel(control: int, records: int) -> bool:
    """Make this process's shim number, decide and record through a channel.

    A store that runs as a program of its own (a driver, ``conformance/_driver_proc.py``) is
    started with the shim preloaded, both descriptors inherited and :data:`CHANNEL_ENV` naming
    them (``"CONTROL,RECORDS"``): its shim shares the block's state with this one (the index
    counter, the fault plan, the crash point, the armed root) and appends its records to
    ``records``, which :func:`syscall_traced` takes here as if this process had made the calls.
    Call it before any block is armed; False: no shim here, or the channel is not usable
    (nothing changed).

    :param control: a file (empty: it is sized and cleared here) that holds the shared state.
    :param records: a file the records are appended to.
    """
    lib = loaded()
    if lib is None:
        return False
    return bool(lib.lo_chan_attach(control, records, 1) == 0)


def _kinds_mask(plan: FaultPlan) -> tuple[int, int]:
    """The plan's kinds as the shim's bit mask, and whether any kind counts."""
    mask = 0
    for kind in plan.kinds:
        if kind in KINDS:
            mask |= 1 << KINDS.index(kind)
    return mask, 0 if plan.kinds else 1


class _Live(Trace):
    """The live trace of an armed shim: reading it takes the records the shim made meanwhile."""

    def __init__(self, pull: Callable[[], None]) -> None:
        super().__init__()
        self._pull: Callable[[], None] | None = pull

    def fresh(self) -> None:
        if self._pull is not None:
            self._pull()

    def __len__(self) -> int:
        self.fresh()
        return super().__len__()

    def __iter__(self) -> Iterator[TraceOp]:
        self.fresh()
        return super().__iter__()

    @overload
    def __getitem__(self, i: SupportsIndex) -> TraceOp: ...
    @overload
    def __getitem__(self, i: slice) -> list[TraceOp]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> TraceOp | list[TraceOp]:
        self.fresh()
        return super().__getitem__(i)

    def settle(self) -> None:
        """The block ended: take the last records, sort them by index, and stop pulling."""
        self.fresh()
        self._pull = None
        self.sort(key=lambda op: op.index)


class _Session:
    """One armed block: takes the shim's records and turns them into :class:`TraceOp`."""

    def __init__(self, lib: ctypes.CDLL, root: str, on_map: Callable[[str], None] | None) -> None:
        self.lib = lib
        self.tracer = Tracer(root, None, None)  # for its path normalisation only
        self.on_map = on_map
        self.lock = threading.Lock()
        self.trace = _Live(self.pull)

    def pull(self) -> None:
        """Append the records the shim made since the last pull (from any thread)."""
        with self.lock:
            where = ctypes.c_void_p()
            size = self.lib.lo_take(ctypes.byref(where))
            if size < 0:
                self.lib.lo_free(where)
                raise RuntimeError("the syscall shim ran out of memory and lost records")
            if not size:
                self.lib.lo_free(where)
                return
            data = ctypes.string_at(where, size)
            self.lib.lo_free(where)
            list.extend(self.trace, self._records(data))

    def _records(self, data: bytes) -> Iterator[TraceOp]:
        view, at = memoryview(data), 0
        while at < len(data):
            fields = _RECORD.unpack_from(data, at)
            at += _RECORD.size
            index, kind, fd, flags, err, is_dir, offset, size, length, *sizes = fields
            texts = []
            for n in sizes:
                texts.append(bytes(view[at : at + n]))
                at += n
            content = bytes(view[at : at + length]) if length >= 0 else None
            at += max(length, 0)
            call, note, path, target = (
                texts[0].decode(),
                texts[1].decode(errors="replace"),
                *[os.fsdecode(t) for t in texts[2:]],
            )
            full = self.tracer.normalize(path) or path
            if kind == MAPPED:  # no operation: a note for the power-loss model, never numbered
                if self.on_map is not None:
                    self.on_map(full)
                continue
            op_kind: OpKind = KINDS[kind]
            if op_kind != "mark":
                note = ", ".join(t for t in (_sizes(size, offset), note) if t)
            yield TraceOp(
                index,
                op_kind,
                full,
                (self.tracer.normalize(target) or target) if target else None,
                bool(is_dir),
                flags,
                content,
                errno.errorcode.get(err, str(err)) if err else None,
                note,
                "" if op_kind == "mark" else call,
                fd,
            )


def _sizes(size: int, offset: int) -> str:
    """A syscall record's note: how much it moved, and where (``"4096 bytes at 8192"``)."""
    words = []
    if size >= 0:
        words.append(f"{size} bytes")
    if offset >= 0:
        words.append(f"at {offset}")
    return " ".join(words)


_ACTIVE: list[_Session] = []


@contextlib.contextmanager
def syscall_traced(
    root: str,
    *,
    fail: FaultPlan | None = None,
    on_map: Callable[[str], None] | None = None,
    stop: StopAt | None = None,
    contents: bool = True,
    witness: bool = False,
) -> Iterator[Trace]:
    """Arm the preloaded shim for calls on paths under ``root``; yield the live trace.

    The same contract as :func:`~lance_offsets.stress.seam._interpose.traced`, with the crash
    point given as a :class:`StopAt` (decided in C: no Python runs on the store's threads). The
    trace is sorted by index on exit (threads may finish their calls out of order).

    :param on_map: called with the path of each file the store maps shared and writable, when
        the records are taken.
    :param contents: record each file's whole content after each call (D3 and F2's judge need
        them; a counting run for crash points does not).
    :param witness: the shim records beside the Python interposer (the same run seen twice):
        the interposer's own content reads are kept out of the shim's records.
    :raises RuntimeError: the shim is not preloaded in this process, or already armed.
    """
    lib = loaded()
    if lib is None:
        raise RuntimeError("the syscall shim is not preloaded in this process")
    if _ACTIVE:
        raise RuntimeError("syscall_traced() blocks do not nest: one per process at a time")
    session = _Session(lib, root, on_map)
    real, given = session.tracer.root.encode(), os.path.abspath(root).encode()
    lib.lo_begin(real, given, 1 if contents else 0, "\n".join(SHARED_MEMORY).encode())
    if fail is not None:
        mask, anything = _kinds_mask(fail)
        times = -1 if fail.times is None else fail.times
        lib.lo_plan(fail.at, fail.error, times, mask, anything)
    if stop is not None:
        phase = 0 if stop.phase == "before" else 1
        lib.lo_stop(stop.index, phase, stop.fd, stop.message, len(stop.message))
    _ACTIVE.append(session)
    if witness:
        set_hold(lib.lo_hold)
    try:
        yield session.trace
    finally:
        lib.lo_end()
        if witness:
            set_hold(None)
        _ACTIVE.remove(session)
        session.trace.settle()


def mark(note: str) -> None:
    """Append a harness note to the active syscall trace, numbered like a call."""
    if _ACTIVE:
        _ACTIVE[-1].lib.lo_mark(note.encode())
