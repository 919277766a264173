"""The file-system interposer: see every durable step a Python store takes, number it, stop it.

Inside :func:`traced`, this process's ``os`` functions a store must call to be durable
(``open write pwrite truncate ftruncate fsync fdatasync close replace rename remove unlink mkdir
rmdir link posix_fallocate copy_file_range sendfile symlink``), ``fcntl.fcntl(fd, F_FULLFSYNC)``,
``open``/``io.open`` (hence ``os.fdopen`` and ``pathlib.Path.open/write_text/write_bytes``) and
``mmap.mmap`` are replaced by wrappers that record each operation on a path under ``root`` as a
:class:`~lance_offsets.stress.seam._trace.TraceOp`. ``os.makedirs`` calls ``os.mkdir`` through
the module, so it records one ``mkdir`` per level it creates. An ``O_TMPFILE`` open records the
directory, and the unnamed file is ``<dir>/#tmpfile-<fd>`` until ``os.link`` of
``/proc/self/fd/<fd>`` names it; writes through a shared writable mapping are diffed at every
recorded operation (``_tracedmap.py``); a symbolic link is a call nothing models (``unknown``).
Everything is restored when the block exits.

Limits, and what covers them:

- The wrappers replace *module attributes*. A store that bound a function early
  (``from os import fsync``, ``_fsync = os.fsync`` at import) calls the original and is not
  traced. The ``sys.addaudithook`` hook still sees the ``open``, ``os.rename`` (also raised by
  ``os.replace``), ``os.remove``, ``os.mkdir``, ``os.rmdir`` and ``os.truncate`` events such code
  raises, and records them with ``note="audit"`` (before they run; no content; no "after").
  Writes and fsyncs raise no audit event: random-time kills (``_crash.py``) cover those.
- I/O made by C extensions (SQLite, say) raises no events for writes either; the same holds.
- Descriptors opened before the block, or by untraced code, are unknown: their operations are
  not recorded.

Audit hooks cannot be removed, so one is installed the first time :func:`traced` runs and does
nothing while no block is active.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import mmap
import os
import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final

from . import _tracedio, _tracedmap
from ._trace import OpKind, Trace, TraceOp
from ._tracer import REAL, FaultPlan, OnOp, Phase, StopAt, Tracer, busy, guarded

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None  # type: ignore[assignment]

__all__ = ["FaultPlan", "OnOp", "Phase", "TraceOp", "active", "mark", "set_fault", "traced"]

_STATE: list[Tracer] = []  # the active tracer, if any (a list: no global statement needed)
_HOOK_INSTALLED: list[bool] = []

#: Audit events the hook turns into records, and the kind each becomes.
_AUDITED: Final[dict[str, OpKind]] = {
    "open": "open",
    "os.rename": "rename",
    "os.remove": "unlink",
    "os.mkdir": "mkdir",
    "os.rmdir": "rmdir",
    "os.truncate": "truncate",
}


def _active() -> Tracer | None:
    return _STATE[0] if _STATE else None


_tracedio.set_active_getter(_active)


def _tracing() -> Tracer | None:
    """Return the tracer to record with: active, and this thread not already inside it."""
    return _STATE[0] if _STATE and not busy() else None


def active() -> bool:
    """Return whether a :func:`traced` block is active in this process."""
    return bool(_STATE)


def mark(note: str) -> None:
    """Append a ``kind="mark"`` record (``"ack save 1 2 5"``) to the active trace, if any."""
    tracer = _active()
    if tracer is None:
        return
    with tracer.lock:
        tracer.trace.append(TraceOp(len(tracer.trace), "mark", tracer.root, note=note))


def set_fault(plan: FaultPlan | None) -> None:
    """Replace the active block's fault plan (None clears it: "the fault cleared")."""
    tracer = _active()
    if tracer is None:
        raise RuntimeError("set_fault() needs an active traced() block")
    tracer.set_fault(plan)


# --- wrappers around os functions -------------------------------------------------------------


def _fd_op(kind: OpKind, real: Callable[..., Any], call: str = "") -> Callable[..., Any]:
    """Wrap ``real(fd, ...)`` for traced descriptors (write, fsync, ftruncate...).

    :param call: the function's name in the record, where the model needs it (VOCAB19).
    """

    def wrapper(fd: int, *args: Any, **kwargs: Any) -> Any:
        tracer = _tracing()
        number = fd
        if not isinstance(fd, int) and hasattr(fd, "fileno"):  # os.fsync(file_object) works too
            number = fd.fileno()
        entry = tracer.fds.get(number) if tracer is not None and isinstance(number, int) else None
        if tracer is None or entry is None:
            return real(fd, *args, **kwargs)
        path, is_dir = entry
        perform = lambda: real(fd, *args, **kwargs)  # noqa: E731
        return tracer.run(kind, path, perform, fd=number, is_dir=is_dir, call=call)

    wrapper.__name__ = wrapper.__qualname__ = real.__name__
    wrapper.__doc__ = real.__doc__
    return wrapper


_TMPFILE: Final = getattr(os, "O_TMPFILE", 0)


def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    tracer = _tracing()
    full = tracer.normalize(path, dir_fd) if tracer is not None else None
    if tracer is None or full is None:
        fd: int = REAL["open"](path, flags, mode, dir_fd=dir_fd)
        if tracer is not None:
            tracer.forget(fd)
        return fd

    def perform() -> int:
        fd: int = REAL["open"](path, flags, mode, dir_fd=dir_fd)
        return fd

    if _TMPFILE and flags & _TMPFILE == _TMPFILE:  # an unnamed file in the directory ``full``
        fd = tracer.run("open", full, perform, flags=flags, fd_of_result=True, record_fd=True)
        tracer.fds[fd] = (os.path.join(full, f"#tmpfile-{fd}"), False)
        return fd
    is_dir = os.path.isdir(full)
    return tracer.run("open", full, perform, flags=flags, is_dir=is_dir, fd_of_result=True)


def _close(fd: int) -> None:
    tracer = _tracing()
    entry = tracer.fds.get(fd) if tracer is not None else None
    if tracer is None or entry is None:
        REAL["close"](fd)
        return
    try:
        tracer.run("close", entry[0], lambda: REAL["close"](fd), fd=fd, is_dir=entry[1])
    finally:
        tracer.fds.pop(fd, None)


def _truncate(path: Any, length: int) -> None:
    if isinstance(path, int):
        _fd_op("truncate", REAL["truncate"])(path, length)
        return
    tracer = _tracing()
    full = tracer.normalize(path) if tracer is not None else None
    if tracer is None or full is None:
        REAL["truncate"](path, length)
        return
    tracer.run("truncate", full, lambda: REAL["truncate"](path, length))


def _path_op(kind: OpKind, real: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``real(path, ...)`` (remove, unlink, mkdir, rmdir)."""

    def wrapper(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> Any:
        tracer = _tracing()
        full = tracer.normalize(path, dir_fd) if tracer is not None else None
        if tracer is None or full is None:
            return real(path, *args, dir_fd=dir_fd, **kwargs)
        perform = lambda: real(path, *args, dir_fd=dir_fd, **kwargs)  # noqa: E731
        return tracer.run(kind, full, perform, is_dir=kind in ("mkdir", "rmdir"))

    wrapper.__name__ = wrapper.__qualname__ = real.__name__
    wrapper.__doc__ = real.__doc__
    return wrapper


def _move_op(kind: OpKind, real: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``os.rename``/``os.replace``; the fd table follows the move."""

    def wrapper(
        src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None
    ) -> None:
        tracer = _tracing()

        def perform() -> None:
            real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

        if tracer is None:
            perform()
            return
        full_src = tracer.normalize(src, src_dir_fd)
        full_dst = tracer.normalize(dst, dst_dir_fd)
        if full_src is None and full_dst is None:
            perform()
            return
        source = full_src or os.path.abspath(os.fsdecode(src))
        dest = full_dst or os.path.abspath(os.fsdecode(dst))
        tracer.run(kind, source, perform, target=dest, is_dir=os.path.isdir(source))
        tracer.moved(source, dest)
        if _tracedmap.ACTIVE:
            _tracedmap.ACTIVE[0].moved(source, dest)

    wrapper.__name__ = wrapper.__qualname__ = real.__name__
    wrapper.__doc__ = real.__doc__
    return wrapper


def _proc_fd(path: Any) -> int | None:
    """The descriptor ``/proc/self/fd/N`` names (how Python links an O_TMPFILE), else None."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
    for prefix in ("/proc/self/fd/", "/dev/fd/"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return int(text[len(prefix) :])
    return None


def _link(
    src: Any,
    dst: Any,
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> None:
    """``os.link``: a new entry ``dst`` for ``src``'s file (a descriptor's, through /proc)."""
    tracer = _tracing()

    def perform() -> None:
        REAL["link"](
            src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks
        )

    if tracer is None:
        perform()
        return
    new = tracer.normalize(dst, dst_dir_fd)
    fd = _proc_fd(src)
    old = tracer.normalize(src, src_dir_fd) if fd is None else None
    if new is None and old is None and (fd is None or fd not in tracer.fds):
        perform()
        return
    where = new or os.path.abspath(os.fsdecode(dst))
    tracer.run("link", where, perform, target=old, fd=fd, call="link", record_fd=True)
    if fd is not None and fd in tracer.fds:
        tracer.fds[fd] = (where, False)  # the unnamed file goes by its new name now


def _copy_file_range(
    src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None
) -> int:
    """``os.copy_file_range``: a write of ``dst`` (its whole content after)."""
    tracer = _tracing()
    entry = tracer.fds.get(dst) if tracer is not None else None
    copied: int

    def perform() -> int:
        done: int = REAL["copy_file_range"](src, dst, count, offset_src, offset_dst)
        return done

    if tracer is None or entry is None:
        return perform()
    copied = tracer.run("write", entry[0], perform, fd=dst, call="copy_file_range")
    return copied


def _symlink(
    src: Any, dst: Any, target_is_directory: bool = False, *, dir_fd: int | None = None
) -> None:
    """``os.symlink``: a name the model does not follow, recorded as ``unknown``."""
    tracer = _tracing()
    full = tracer.normalize(dst, dir_fd) if tracer is not None else None

    def perform() -> None:
        REAL["symlink"](src, dst, target_is_directory, dir_fd=dir_fd)

    if tracer is None or full is None:
        perform()
        return
    note = f"to {os.fsdecode(src)}"
    tracer.run("unknown", full, perform, note=note, call="symlink")


def _fcntl(fd: Any, cmd: int, arg: Any = 0, /) -> Any:
    real = _REAL_FCNTL
    full_fsync = getattr(fcntl, "F_FULLFSYNC", None)
    if full_fsync is None or cmd != full_fsync:
        return real(fd, cmd, arg)
    number = fd if isinstance(fd, int) else fd.fileno()
    return _fd_op("fsync", lambda n: real(n, cmd, arg))(number)


_REAL_FCNTL: Final = fcntl.fcntl if fcntl is not None else None


def _patches() -> list[tuple[Any, str, Any]]:
    patches: list[tuple[Any, str, Any]] = [
        (os, "open", _open),
        (os, "close", _close),
        (os, "truncate", _truncate),
        (os, "remove", _path_op("unlink", REAL["remove"])),
        (os, "unlink", _path_op("unlink", REAL["unlink"])),
        (os, "mkdir", _path_op("mkdir", REAL["mkdir"])),
        (os, "rmdir", _path_op("rmdir", REAL["rmdir"])),
        (os, "rename", _move_op("rename", REAL["rename"])),
        (os, "replace", _move_op("replace", REAL["replace"])),
        (builtins, "open", _tracedio.traced_open),
        (io, "open", _tracedio.traced_open),
        (mmap, "mmap", _tracedmap.TracedMmap),
    ]
    optional = [("link", _link), ("copy_file_range", _copy_file_range), ("symlink", _symlink)]
    patches += [(os, name, wrapper) for name, wrapper in optional if name in REAL]
    fd_kinds: list[tuple[str, OpKind, str]] = [
        ("write", "write", ""),
        ("pwrite", "write", ""),
        ("ftruncate", "truncate", ""),
        ("fsync", "fsync", ""),
        ("fdatasync", "fdatasync", ""),
        ("posix_fallocate", "truncate", "posix_fallocate"),
        ("sendfile", "write", "sendfile"),
    ]
    patches += [
        (os, name, _fd_op(kind, REAL[name], call)) for name, kind, call in fd_kinds if name in REAL
    ]
    if fcntl is not None:
        patches.append((fcntl, "fcntl", _fcntl))
    # Python 3.10's pathlib binds io.open and these os functions into its accessor class at
    # import, so Path.write_text, Path.rename, ... would bypass the patches above (3.11 and later
    # call os.* at call time). Guarded by tests/test_interpose.py's pathlib cases on 3.10.
    accessor = getattr(pathlib, "_NormalAccessor", None)
    if accessor is not None:  # pragma: no cover - Python 3.10 only
        ours = {name: fn for owner, name, fn in patches if owner is os}
        # staticmethod: the accessor's attributes are called through an instance, and a plain
        # function would receive that instance as its first argument.
        patches.append((accessor, "open", staticmethod(_tracedio.traced_open)))
        patches += [
            (accessor, name, staticmethod(ours[name]))
            for name in ("mkdir", "unlink", "rmdir", "rename", "replace")
            if name in ours
        ]
    return patches


# --- the audit hook ---------------------------------------------------------------------------


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audit event of the process (imports included): return at once when idle.
    if not _STATE or event not in _AUDITED or busy():
        return
    tracer = _STATE[0]
    kind = _AUDITED[event]
    first = args[0] if args else None
    if first is None or isinstance(first, (int, bool)):
        return  # an fd (open(fd), ftruncate): untraceable by path
    with guarded():
        full = tracer.normalize(first)
        target = tracer.normalize(args[1]) if kind == "rename" else None
    if full is None and target is None:
        return
    flags = args[2] if kind == "open" and len(args) > 2 and isinstance(args[2], int) else 0
    tracer.seen(kind, full or os.fsdecode(first), target, flags)


@contextlib.contextmanager
def traced(
    root: str | os.PathLike[str],
    *,
    on_op: OnOp | None = None,
    fail: FaultPlan | None = None,
    stop: StopAt | None = None,
) -> Iterator[Trace]:
    """Record every file-system operation on paths under ``root`` while the block runs.

    Yields the trace, a list the records are appended to as operations complete (see
    ``_trace.py``: records describe completed operations; ``content`` is the file's whole content
    after open/write/truncate/fsync/fdatasync, and just before close).

    :param on_op: called as ``on_op(op, "before")`` right before each operation is performed
        (index assigned, content None) and ``on_op(op, "after")`` right after it completed or
        failed (the record as appended, ``error`` set on failure). The crash harness stops the
        worker in it to be killed right before or after operation ``op.index``. File-system
        calls it makes are not traced. Operations seen only by the audit hook
        (``note="audit"``) get the "before" call only.
    :param fail: a :class:`FaultPlan`: operations it selects raise instead of running.
    :param stop: a crash point: there, the worker tells its parent and waits to be killed.
    :raises RuntimeError: a block is already active in this process (one at a time).
    """
    if _STATE:
        raise RuntimeError("traced() blocks do not nest: one trace per process at a time")
    if not _HOOK_INSTALLED:
        sys.addaudithook(_audit)
        _HOOK_INSTALLED.append(True)
    tracer = Tracer(os.fspath(root), on_op, fail, stop)
    mappings = _tracedmap.Mappings(tracer)
    tracer.watch = mappings.diff
    patches = _patches()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    _STATE.append(tracer)
    _tracedmap.ACTIVE.append(mappings)
    try:
        yield tracer.trace
        mappings.diff()  # what the last stores through a mapping left
    finally:
        _STATE.clear()
        _tracedmap.ACTIVE.clear()
        for owner, name, original in saved:
            setattr(owner, name, original)


def describe(trace: list[TraceOp]) -> str:
    """Render the trace one record a line, for failure details."""
    return "\n".join(str(op) for op in trace)
