"""File objects whose bytes are traced when they reach the OS.

``open``/``io.open``/``os.fdopen`` on a path under the traced root return the usual stack
(``TextIOWrapper`` over a ``Buffered*`` over a raw file) built here around :class:`TracedFileIO`,
a ``FileIO`` whose ``write``, ``truncate`` and ``close`` are recorded. The buffered layer calls
the raw methods by name, so a write is recorded when a flush (explicit, on close, or because the
buffer filled) hands the bytes to the OS, not when Python code calls ``write``: exactly what a
kill or a power cut can observe.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, Final

from ._tracer import Tracer, busy

__all__ = ["REAL_OPEN", "TracedFileIO", "traced_open"]

#: The real ``io.open`` (also ``builtins.open``), captured before patching.
REAL_OPEN: Final = io.open

_ACTIVE: Callable[[], Tracer | None] = lambda: None  # noqa: E731 - replaced by _interpose


def set_active_getter(getter: Callable[[], Tracer | None]) -> None:
    """Let ``_interpose`` tell this module which tracer is active (avoids an import cycle)."""
    global _ACTIVE  # noqa: PLW0603 - one process-wide switch, set once at import
    _ACTIVE = getter


def _flags_for(mode: str) -> int:
    """Return the ``os.O_*`` flags ``FileIO`` uses for ``mode`` (the model needs O_TRUNC)."""
    plus = "+" in mode
    flags = os.O_RDWR if plus else (os.O_RDONLY if "r" in mode else os.O_WRONLY)
    if "w" in mode:
        flags |= os.O_CREAT | os.O_TRUNC
    elif "x" in mode:
        flags |= os.O_CREAT | os.O_EXCL
    elif "a" in mode:
        flags |= os.O_CREAT | os.O_APPEND
    return flags | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class TracedFileIO(io.FileIO):
    """A raw file whose open, writes, truncations and close are recorded by ``tracer``."""

    def __init__(  # noqa: PLR0917 - mirrors FileIO's positional signature
        self,
        tracer: Tracer,
        file: int | str,
        path: str,
        mode: str,
        closefd: bool,
        opener: Any,
    ) -> None:
        self._tracer = tracer
        self._path = path
        if isinstance(file, int):  # os.fdopen / open(fd): the descriptor was traced when opened
            io.FileIO.__init__(self, file, mode, closefd)
        else:
            tracer.run(
                "open",
                path,
                lambda: io.FileIO.__init__(self, file, mode, closefd, opener=opener),
                flags=_flags_for(mode),
            )
            tracer.fds[self.fileno()] = (path, False)

    def _recording(self) -> Tracer | None:
        tracer = self._tracer
        return tracer if _ACTIVE() is tracer and not busy() and not self.closed else None

    def write(self, data: Any, /) -> int:
        tracer = self._recording()
        if tracer is None:
            return io.FileIO.write(self, data)
        fd = self.fileno()
        return tracer.run("write", self._path, lambda: io.FileIO.write(self, data), fd=fd)

    def truncate(self, size: int | None = None, /) -> int:
        tracer = self._recording()
        if tracer is None:
            return io.FileIO.truncate(self, size)
        fd = self.fileno()
        return tracer.run("truncate", self._path, lambda: io.FileIO.truncate(self, size), fd=fd)

    def close(self) -> None:
        tracer = self._recording()
        if tracer is None or not self.closefd:
            io.FileIO.close(self)
            return
        fd = self.fileno()
        path = tracer.fds.get(fd, (self._path, False))[0]  # renamed since it was opened?
        try:
            tracer.run("close", path, lambda: io.FileIO.close(self), fd=fd)
        finally:
            tracer.fds.pop(fd, None)


def traced_open(  # noqa: PLR0917 - io.open's own signature
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> Any:
    """Drop-in ``io.open``: traced file objects for paths (or traced fds) under the root."""
    tracer = _ACTIVE()
    path: str | None = None
    if tracer is not None and not busy():
        if isinstance(file, int):
            entry = tracer.fds.get(file)
            path = entry[0] if entry is not None and not entry[1] else None
        elif not isinstance(file, bool):
            path = tracer.normalize(file)
    # Anything unusual (a mode open() rejects, text with buffering=0...) goes to the real open,
    # so callers get the real error message.
    chars = set(mode)
    if (
        tracer is None
        or path is None
        or len(chars) != len(mode)
        or chars - set("rwxab+t")
        or len(chars & set("rwxa")) != 1
        or {"b", "t"} <= chars
        or ("b" in chars and (encoding or errors or newline is not None))
        or (buffering == 0 and "b" not in chars)
    ):
        opened = REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
        if tracer is not None and not isinstance(file, int):
            tracer.forget(opened.fileno())
        return opened
    raw_mode = next(iter(chars & set("rwxa"))) + ("+" if "+" in chars else "")
    raw = TracedFileIO(
        tracer, file if isinstance(file, int) else os.fspath(file), path, raw_mode, closefd, opener
    )
    try:
        line_buffering = buffering == 1 or (buffering < 0 and raw.isatty())
        if buffering in (1, -1):
            size = getattr(os.fstat(raw.fileno()), "st_blksize", 0)
            buffering = size if size > 1 else io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            return raw
        buffered: Any
        if "+" in chars:
            buffered = io.BufferedRandom(raw, buffering)
        elif "r" in chars:
            buffered = io.BufferedReader(raw, buffering)
        else:
            buffered = io.BufferedWriter(raw, buffering)
        if "b" in chars:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline, line_buffering)
        setattr(text, "mode", mode)  # noqa: B010 - io.open sets it too; typeshed says read-only
    except BaseException:
        raw.close()
        raise
    return text
