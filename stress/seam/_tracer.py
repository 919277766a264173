"""The recording core of the interposer: numbering, the fd table, fault injection, content reads.

``_interpose.py`` installs the wrappers and the audit hook; every wrapper funnels its operation
through :meth:`Tracer.run`, which numbers it, calls the harness before and after it, injects a
planned fault instead of performing it, and appends the :class:`TraceOp` record. The real
functions are captured here at import time, before any patching, so the tracer's own I/O (reading
file contents for the records) never traces itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final, Literal, NoReturn, TypeVar

from ._trace import OpKind, Trace, TraceOp

__all__ = [
    "CONTENT_KINDS",
    "REAL",
    "FaultPlan",
    "OnOp",
    "Phase",
    "StopAt",
    "Tracer",
    "busy",
    "guarded",
    "halt",
    "set_hold",
]

Phase = Literal["before", "after"]

#: Called with each operation right before it is performed (``"before"``: index assigned, content
#: None) and right after it completed or failed (``"after"``: the record as appended).
OnOp = Callable[[TraceOp, Phase], None]

#: Kinds whose records carry the file's whole content (regular files only), per ``_trace.py``.
CONTENT_KINDS: Final = frozenset(
    {"open", "write", "truncate", "fsync", "fdatasync", "close", "link"}
)

#: The unpatched functions, captured before anything can patch them.
REAL: Final = {
    name: getattr(os, name)
    for name in (
        "open",
        "write",
        "pwrite",
        "truncate",
        "ftruncate",
        "fsync",
        "fdatasync",
        "close",
        "replace",
        "rename",
        "remove",
        "unlink",
        "mkdir",
        "rmdir",
        "pread",
        "fstat",
        "stat",
        "link",
        "posix_fallocate",
        "copy_file_range",
        "sendfile",
        "symlink",
    )
    if hasattr(os, name)
}

_LOCAL = threading.local()
T = TypeVar("T")

#: While the syscall shim records beside the interposer (the witness of the same run), the
#: shim's ``lo_hold``: the interposer's own I/O (a content read by path) is kept out of it.
_HOLD: list[Callable[[int], int]] = []


def set_hold(hold: Callable[[int], int] | None) -> None:
    """Install (or, with None, remove) the witness's hold switch (``_shim.py``)."""
    _HOLD.clear()
    if hold is not None:
        _HOLD.append(hold)


@dataclasses.dataclass(frozen=True)
class StopAt:
    """A crash point: right ``phase`` operation ``index``, write ``message`` to ``fd`` and wait.

    The worker tells its parent (``message`` is a framed message on the parent's pipe) and
    blocks until the parent kills it. Decided where the operation is numbered: the interposer's
    Python, or the shim's C on whatever thread made the call, which needs no GIL.
    """

    index: int
    phase: Phase
    fd: int
    message: bytes


def halt(stop: StopAt) -> NoReturn:
    """Send ``stop``'s message and wait to be killed (the interposer's stop; the shim's is in C)."""
    view = memoryview(stop.message)
    while view:
        view = view[REAL["write"](stop.fd, view) :]
    while True:
        time.sleep(3600)


def busy() -> bool:
    """Return whether this thread is inside the tracer (its own I/O must not be traced)."""
    return bool(getattr(_LOCAL, "depth", 0))


class guarded:  # used like a function: ``with guarded():``
    """Mark this thread as inside the tracer for the duration of the block."""

    def __enter__(self) -> None:
        _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        _LOCAL.depth -= 1


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """Which operations fail instead of being performed (F2 fault injection).

    The first operation whose index is ``>= at`` and whose kind is in ``kinds`` (any kind when
    empty) raises ``OSError(error)`` instead of running; so do the next ones, ``times`` in all
    (``None``: every matching operation from then on, until :func:`set_fault` clears the plan).
    The failed operation is recorded with ``error`` set and changed nothing on disk.

    :ivar at: index of the first operation that may fail.
    :ivar error: the errno to raise (``errno.ENOSPC``, ``errno.EIO``, ``errno.EACCES``...);
        ``OSError`` picks the matching subclass (``PermissionError`` for EACCES).
    :ivar times: how many operations fail, or None for all from then on.
    :ivar kinds: only operations of these kinds count (e.g. ``("replace",)`` to imitate a
        Windows sharing violation on ``os.replace``); empty means any kind.
    :ivar winerror: set as the error's ``winerror`` attribute, as Windows would (32 is
        ERROR_SHARING_VIOLATION), so code that checks it takes its Windows path on any OS.

    A failed ``close`` still releases the descriptor, as Linux does when close reports an error;
    every other failed operation is not performed at all.
    """

    at: int = 0
    error: int = errno.EIO
    times: int | None = 1
    kinds: tuple[OpKind, ...] = ()
    winerror: int | None = None

    def describe(self) -> str:
        """One line for failure details: ``EIO at op >= 3 (replace), once``."""
        name = errno.errorcode.get(self.error, str(self.error))
        kinds = f" ({', '.join(self.kinds)})" if self.kinds else ""
        times = "from then on" if self.times is None else f"{self.times} time(s)"
        return f"{name} at op >= {self.at}{kinds}, {times}"


def _error_name(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return errno.errorcode.get(code, str(code))
    return type(exc).__name__


@contextlib.contextmanager
def _unwitnessed() -> Iterator[None]:
    """Keep this thread's calls out of the shim's records while it records beside us."""
    held = _HOLD[0](1) if _HOLD else 0
    try:
        yield
    finally:
        if _HOLD:
            _HOLD[0](held)


def read_content(fd: int | None, path: str) -> bytes | None:
    """Read the whole content the OS holds for a regular file: by ``fd`` if readable, else path.

    Reading by path is checked against the descriptor's inode, so a file renamed over or unlinked
    since it was opened yields None rather than some other file's bytes.
    """
    with guarded():
        try:
            inode = None
            if fd is not None:
                info = REAL["fstat"](fd)
                if not stat.S_ISREG(info.st_mode):
                    return None
                inode = (info.st_ino, info.st_dev)
                pread = REAL.get("pread")  # Windows has none: read by path there
                try:
                    if pread is not None:
                        return bytes(pread(fd, info.st_size, 0))
                except OSError:  # write-only descriptor: fall back to the path
                    pass
            if fd is not None and os.path.isdir("/proc/self/fd"):
                # The same file whatever its name: an O_TMPFILE has none, a renamed one another.
                return _read_path(f"/proc/self/fd/{fd}", inode)
            return _read_path(path, inode)
        except OSError:
            return None


def _read_path(path: str, inode: tuple[int, int] | None) -> bytes | None:
    """The content of the regular file at ``path`` (None: not that inode, or not a file)."""
    with _unwitnessed():
        by_path = REAL["open"](path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        info = REAL["fstat"](by_path)
        if not stat.S_ISREG(info.st_mode):
            return None
        if inode is not None and (info.st_ino, info.st_dev) != inode:
            return None
        chunks = []
        while chunk := os.read(by_path, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        with _unwitnessed():
            REAL["close"](by_path)


class Tracer:
    """The state of one ``traced()`` block: the trace, the fd table, the fault plan."""

    def __init__(
        self,
        root: str,
        on_op: OnOp | None,
        fail: FaultPlan | None,
        stop: StopAt | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self.trace = Trace()
        self.on_op = on_op
        self.fail = fail
        self.stop = stop
        self.fired = 0
        #: Open descriptors on paths under root: fd -> (path, is_dir).
        self.fds: dict[int, tuple[str, bool]] = {}
        # One operation at a time, so indices follow the order operations really happened in
        # (a store's background thread interleaves with its caller); re-entrant for on_op.
        self.lock = threading.RLock()
        #: Called before each operation is numbered: the writes it finds made since the last
        #: operation (through shared mappings) are recorded first (``record_write``).
        self.watch: Callable[[], None] | None = None

    def normalize(self, path: object, dir_fd: int | None = None) -> str | None:
        """Return the realpath-normalised absolute path, or None when it is not under root."""
        try:
            name = os.fsdecode(os.fspath(path))  # type: ignore[call-overload]
        except TypeError:
            return None
        if dir_fd is not None and not os.path.isabs(name):
            base = self.fds.get(dir_fd)
            if base is None:
                return None
            name = os.path.join(base[0], name)
        with guarded():
            absolute = os.path.abspath(name)
            if absolute.startswith("/proc/self/fd/") and absolute[14:].isdigit():
                # A descriptor's file reopened through /proc: that file (the shim says the same).
                try:
                    absolute = os.readlink(absolute)
                except OSError:
                    return None
            head, tail = os.path.split(absolute)
            full = os.path.join(os.path.realpath(head), tail) if tail else absolute
        if full == self.root or full.startswith(self.root + os.sep):
            return full
        return None

    def set_fault(self, plan: FaultPlan | None) -> None:
        with self.lock:
            self.fail = plan
            self.fired = 0

    def _fault(self, op: TraceOp) -> OSError | None:
        plan = self.fail
        if plan is None or op.index < plan.at or (plan.kinds and op.kind not in plan.kinds):
            return None
        if plan.times is not None and self.fired >= plan.times:
            return None
        self.fired += 1
        message = f"{os.strerror(plan.error)} (injected by the stress interposer at op {op.index})"
        error = OSError(plan.error, message, op.path)
        if plan.winerror is not None:
            error.winerror = plan.winerror  # type: ignore[attr-defined]
        return error

    def run(
        self,
        kind: OpKind,
        path: str,
        perform: Callable[[], T],
        *,
        target: str | None = None,
        is_dir: bool = False,
        flags: int = 0,
        fd: int | None = None,
        fd_of_result: bool = False,
        note: str = "",
        call: str = "",
        record_fd: bool = False,
    ) -> T:
        """Run one operation: number it, announce it, perform (or fail) it, record it.

        :param fd: the descriptor to read content from (content is read before a close).
        :param fd_of_result: the result is a new descriptor (``os.open``): register it.
        :param call: the function's name, where the model needs it (``copy_file_range``).
        :param record_fd: the record names the descriptor (an O_TMPFILE's, a link's: VOCAB19).
        """
        with self.lock, guarded():
            if self.watch is not None:
                self.watch()
            pre = TraceOp(len(self.trace), kind, path, target, is_dir, flags, note=note, call=call)
            self._announce(pre, "before")
            wants_content = kind in CONTENT_KINDS and not is_dir
            content = read_content(fd, path) if wants_content and kind == "close" else None
            try:
                result = self._perform(pre, perform)
            except BaseException as exc:
                failed = dataclasses.replace(pre, error=_error_name(exc))
                self.trace.append(failed)
                self._announce(failed, "after")
                raise
            if fd_of_result:
                fd = result  # type: ignore[assignment]
                assert isinstance(fd, int)
                self.fds[fd] = (path, is_dir or stat.S_ISDIR(REAL["fstat"](fd).st_mode))
                is_dir = self.fds[fd][1]
                wants_content = not is_dir
            if wants_content and kind != "close":
                content = read_content(fd, path)
            done = dataclasses.replace(pre, is_dir=is_dir, content=content)
            if record_fd and fd is not None:
                done = dataclasses.replace(done, fd=fd)
            self.trace.append(done)
            self._announce(done, "after")
            return result

    def record_write(self, path: str, content: bytes | None, note: str) -> None:
        """Record a write no call made: bytes stored through a shared mapping (``call="mmap"``)."""
        with self.lock, guarded():
            op = TraceOp(len(self.trace), "write", path, content=content, note=note, call="mmap")
            self._announce(dataclasses.replace(op, content=None), "before")
            self.trace.append(op)
            self._announce(op, "after")

    def _announce(self, op: TraceOp, phase: Phase) -> None:
        """Tell the harness (``on_op``), and stop here if this is the crash point."""
        if self.on_op is not None:
            self.on_op(op, phase)
        stop = self.stop
        if stop is not None and (stop.index, stop.phase) == (op.index, phase):
            halt(stop)

    def _perform(self, op: TraceOp, perform: Callable[[], T]) -> T:
        fault = self._fault(op)
        if fault is not None:
            if op.kind == "close":
                perform()
            raise fault
        return perform()

    def seen(self, kind: OpKind, path: str, target: str | None, flags: int) -> None:
        """Record an operation only the audit hook saw (C code): before it runs, no content.

        The harness gets its ``"before"`` call, and a planned fault is raised from the hook
        (which aborts the operation); there is no ``"after"`` and the record is appended at once,
        marked ``note="audit"``, because an audit hook never learns how the operation ended.
        """
        with self.lock, guarded():
            if self.watch is not None:
                self.watch()
            op = TraceOp(len(self.trace), kind, path, target, False, flags, note="audit")
            self._announce(op, "before")
            fault = self._fault(op)
            self.trace.append(
                op if fault is None else dataclasses.replace(op, error=_error_name(fault))
            )
            if fault is not None:
                raise fault

    def forget(self, fd: int) -> None:
        """Drop ``fd`` from the table: it was just reopened outside the root.

        An untraced close (C code, a function bound before patching) leaves a stale entry, and
        the OS reuses the lowest free number: without this, writes to the new file would be
        recorded against the old path.
        """
        self.fds.pop(fd, None)

    def moved(self, src: str, dst: str) -> None:
        """Follow a rename in the fd table (a descriptor keeps its file, which has a new name)."""
        prefix = src + os.sep
        for fd, (path, is_dir) in list(self.fds.items()):
            if path == src:
                self.fds[fd] = (dst, is_dir)
            elif path.startswith(prefix):
                self.fds[fd] = (dst + path[len(src) :], is_dir)
