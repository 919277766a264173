"""Stores in any language: a store that runs as a program, driven over JSON lines (docs/drivers.md).

``exec:'./my-driver --flag'`` names a *driver*: a program that keeps offsets the way its author's
store does and answers the suite's requests on stdin/stdout, one JSON object per line. The suite
sees it through :class:`DriverStore`, an ordinary store object whose every method is one request
to one driver process, so every check that drives a Python store drives a driver unchanged: the
machines, the Hypothesis properties, the crash, fault and power-loss campaigns (their workers
open handles like any store's, and the driver processes they start are traced and killed with
them: ``_driver_proc.py``).

One process per handle: ``factory(path)`` starts the program, sends ``open`` with the directory,
and reads the store's declared capabilities from the answer; ``close()`` asks it to close and
waits for it to exit. Offsets, topic ids and consumer ids travel as decimal strings, so every u64
survives JavaScript. Errors come back as the contract's kinds and are raised as the exceptions a
Python store raises for them. Types are this side's business (a Rust ``u64`` cannot hold a bool,
so the suite never sends one: ``TypeError`` here); ranges are the driver's (``"4294967296"`` as a
topic id must come back as ``invalid_argument``).

A driver that breaks the protocol (dies, hangs past :data:`SECONDS_ENV`, prints something that is
not an answer) raises :class:`DriverError`: a harness error naming the driver, the request, what
came back and the tail of its stderr. It derives from ``BaseException`` on purpose: the checks
treat every ``Exception`` a store raises as something to judge, and a broken driver must reach
the top as what it is, never as a verdict on the store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shlex
import shutil
import struct
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from typing import IO, Any, Final

from lance_offsets._domain import MAX_CONSUMER_ID, MAX_OFFSET, MAX_TOPIC_ID
from lance_offsets._errors import (
    CorruptOffsetError,
    LockTimeoutError,
    OffsetStoreError,
    StoreClosedError,
)

from . import _driver_proc

__all__ = [
    "EXEC_PREFIX",
    "PROTOCOL",
    "DriverError",
    "DriverFactory",
    "DriverStore",
    "driver_factory",
    "is_exec_spec",
    "resolve_exec_spec",
    "unseen_drivers",
]

#: The protocol version this side speaks (docs/drivers.md); sent with ``open``.
PROTOCOL: Final = 1
#: Specs naming a driver start with this.
EXEC_PREFIX: Final = "exec:"
#: Environment variable: seconds a driver may take to answer one request (default below).
SECONDS_ENV: Final = "LANCE_OFFSETS_DRIVER_SECONDS"
#: Default of :data:`SECONDS_ENV`: far above any answer a working store gives, and below the
#: bound the suite puts on a store call, so a silent driver is named as the driver it is.
DEFAULT_SECONDS: Final = 25.0
#: Seconds a driver may take to exit after answering ``close``.
EXIT_SECONDS: Final = 5.0
#: Bytes of a driver's stderr shown in a harness error.
STDERR_TAIL: Final = 1500
#: The error kinds of the protocol.
KINDS: Final = ("invalid_argument", "corrupt", "lock_timeout", "closed", "io")
#: Capabilities a driver may declare in its answer to ``open``, with their defaults.
FLAGS: Final = {
    "persistent": True,
    "shared": True,
    "durable": True,
    "named": False,
    "save_many": False,
    "batch_atomic": False,
}
LIMITS: Final = {
    "topic_id_max": MAX_TOPIC_ID,
    "consumer_id_max": MAX_CONSUMER_ID,
    "offset_max": MAX_OFFSET,
}

Key = tuple[int, int]


class DriverError(BaseException):
    """A driver broke the protocol: the harness's error, never a verdict on the store.

    Not an ``Exception``: see the module's documentation.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# -- the errors a driver reports, raised as a Python store raises them ------------------------


class DriverArgumentError(OffsetStoreError, ValueError):
    """A driver refused an argument (``invalid_argument``)."""


class DriverCorruptError(CorruptOffsetError):
    """A driver found stored bytes that are not an offset (``corrupt``)."""

    def __init__(self, message: str, *, key: Key | None = None, path: str | None = None) -> None:
        OffsetStoreError.__init__(self, message, key=key, path=path)
        self.content = b""
        self.reason = message


class DriverLockTimeoutError(LockTimeoutError):
    """A driver's lock wait timed out (``lock_timeout``)."""

    def __init__(self, message: str, *, key: Key | None = None, path: str | None = None) -> None:
        OffsetStoreError.__init__(self, message, key=key, path=path)
        self.timeout = float("nan")


class DriverClosedError(StoreClosedError):
    """A driver said the handle is closed (``closed``)."""

    def __init__(self, message: str, *, key: Key | None = None, path: str | None = None) -> None:
        OffsetStoreError.__init__(self, message, key=key, path=path)


# -- specs --------------------------------------------------------------------------------------


def is_exec_spec(spec: str) -> bool:
    """Whether ``spec`` names a driver program (``exec:...``) rather than a Python factory."""
    return spec.startswith(EXEC_PREFIX)


def _argv(spec: str) -> list[str]:
    """The command of an ``exec:`` spec, split as a POSIX shell splits words.

    :raises ValueError: no command, or quotes that do not close.
    """
    try:
        argv = shlex.split(spec[len(EXEC_PREFIX) :])
    except ValueError as exc:
        raise ValueError(f"store spec {spec!r}: {exc}") from None
    if not argv:
        raise ValueError(f"store spec {spec!r} names no program: write exec:'./my-driver --flag'")
    return argv


def resolve_exec_spec(spec: str, cwd: str | None = None) -> str:
    """``spec`` with its program found and relative paths made absolute, from ``cwd``.

    Workers run in other directories than the one the spec was given in: the program (a
    relative ``./target/driver``, or a name found on ``PATH``) and every argument naming an
    existing file or directory relative to ``cwd`` (``node store.js``) become absolute, so the
    spec means the same program wherever it is run. A spec resolved already comes back equal.

    :raises ValueError: no command, or a program that is not there or not executable.
    """
    where = cwd or os.getcwd()
    argv = _argv(spec)
    program = argv[0]
    if os.sep in program:
        found = os.path.normpath(os.path.join(where, program))
        if not os.path.isfile(found):
            raise ValueError(f"store spec {spec!r}: no program {found!r}")
        if not os.access(found, os.X_OK):
            raise ValueError(f"store spec {spec!r}: {found!r} is not executable")
    else:
        located = shutil.which(program)
        if located is None:
            raise ValueError(f"store spec {spec!r}: no program {program!r} on PATH")
        found = located
    return EXEC_PREFIX + shlex.join([found, *(_absolute(word, where) for word in argv[1:])])


def _absolute(word: str, where: str) -> str:
    """``word`` made absolute from ``where`` when it names something there (not an option)."""
    if word.startswith("-") or os.path.isabs(word):
        return word
    candidate = os.path.join(where, word)
    return os.path.normpath(candidate) if os.path.exists(candidate) else word


# -- one driver process -------------------------------------------------------------------------


def _seconds() -> float:
    text = os.environ.get(SECONDS_ENV)
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{SECONDS_ENV}={text!r}: must be a positive number of seconds")
    return value


def _shown(request: Mapping[str, object]) -> str:
    return json.dumps(request, separators=(",", ":"))


class _Process:
    """One running driver and the conversation with it: a request, then its answer."""

    def __init__(self, spec: str, argv: list[str]) -> None:
        self.spec = spec
        self.seconds = _seconds()
        self.next_id = 0
        self.pending = b""
        #: The first protocol break: the process was killed then, and every later request fails
        #: with it (a handle's close after a break ends quietly: the break is the error).
        self.failure: DriverError | None = None
        try:
            self.proc, self.stderr = _driver_proc.start(argv, PROTOCOL)
        except OSError as exc:
            raise DriverError(f"driver {spec!r} could not be started: {exc}") from None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    # The error every protocol problem becomes.
    def broken(self, request: Mapping[str, object] | None, what: str) -> DriverError:
        asked = f" answering {_shown(request)}" if request is not None else ""
        tail = self.stderr_tail()
        stderr = f"; its stderr ends with:\n{tail}" if tail else "; its stderr is empty"
        error = DriverError(f"driver {self.spec!r} broke the protocol{asked}: {what}{stderr}")
        if self.failure is None:
            self.failure = error
        self.kill()
        return error

    def stderr_tail(self) -> str:
        try:
            size = os.fstat(self.stderr.fileno()).st_size
            self.stderr.seek(max(0, size - STDERR_TAIL))
            data = self.stderr.read()
        except (OSError, ValueError):
            return ""
        text = data.decode(errors="replace").rstrip()
        return "\n".join(f"  | {line}" for line in text.splitlines())

    def _status(self) -> str:
        with contextlib.suppress(Exception):
            self.proc.wait(0.5)
        code = self.proc.returncode
        if code is None:
            return "closed its stdout and still runs"
        if code < 0:
            return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def ask(self, request: dict[str, object]) -> object:
        """Send ``request`` (its ``id`` is set); return the ``ok`` of its answer, or raise."""
        if self.failure is not None:
            raise DriverError(self.failure.message)
        ordered = {"id": self.next_id, **request}  # the id first: easier to read in a log
        request.clear()
        request.update(ordered)
        self.next_id += 1
        line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        try:
            self.stdin.write(line)
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self.broken(request, f"it {self._status()} before reading it") from None
        answer = self._line(request)
        try:
            reply = json.loads(answer)
        except ValueError:
            raise self.broken(request, f"it wrote {_cut(answer)}, which is not JSON") from None
        if not isinstance(reply, dict):
            raise self.broken(request, f"it wrote {_cut(answer)}, not a JSON object")
        if reply.get("id") != request["id"]:
            raise self.broken(
                request,
                f"it answered id {reply.get('id')!r} (expected {request['id']}): {_cut(answer)}",
            )
        if "error" in reply:
            raise self._error(request, reply["error"], answer)
        if "ok" not in reply:
            raise self.broken(request, f"its answer has neither 'ok' nor 'error': {_cut(answer)}")
        return reply["ok"]

    def _line(self, request: Mapping[str, object]) -> bytes:
        deadline = time.monotonic() + self.seconds
        fd = self.stdout.fileno()
        poller = select.poll()  # not select(): a busy worker may hold descriptors past 1024
        poller.register(fd, select.POLLIN)
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.broken(request, f"no answer within {self.seconds:g} s ({SECONDS_ENV})")
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                partial = f" after writing {_cut(self.pending)}" if self.pending else ""
                raise self.broken(request, f"it {self._status()}{partial}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def _error(self, request: Mapping[str, Any], error: object, answer: bytes) -> BaseException:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise self.broken(request, f"its error is not {{'kind', 'message'}}: {_cut(answer)}")
        kind, message = error.get("kind"), error["message"]
        path = error.get("path")
        if kind not in KINDS or (path is not None and not isinstance(path, str)):
            raise self.broken(request, f"unknown error kind {kind!r} (one of {', '.join(KINDS)})")
        key = _key_of(request)
        if kind == "invalid_argument":
            return DriverArgumentError(message, key=key, path=path)
        if kind == "corrupt":
            return DriverCorruptError(message, key=key, path=path)
        if kind == "lock_timeout":
            return DriverLockTimeoutError(message, key=key, path=path)
        if kind == "closed":
            return DriverClosedError(message, key=key, path=path)
        name = error.get("errno")
        code = getattr(errno, name, errno.EIO) if isinstance(name, str) else errno.EIO
        return OSError(code, message, path) if path else OSError(code, message)

    def finish(self) -> None:
        """After ``close`` was answered: the driver must exit by itself, soon."""
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()
        try:
            self.proc.wait(EXIT_SECONDS)
        except Exception:  # subprocess.TimeoutExpired
            raise self.broken(
                None, f"it still ran {EXIT_SECONDS:g} s after answering close"
            ) from None
        self.release()
        if self.proc.returncode != 0:
            raise self.broken(None, f"it {self._status()} after answering close")

    def kill(self) -> None:
        """Stop it now, whatever it is doing (a handle dropped unclosed, a broken driver)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(EXIT_SECONDS)
        self.release()

    def release(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _cut(data: bytes, limit: int = 200) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


def _key_of(request: Mapping[str, Any]) -> Key | None:
    try:
        return int(request["topic_id"]), int(request["consumer_id"])
    except (KeyError, ValueError, TypeError):
        return None


def _int(name: str, value: object) -> str:
    """An argument as the protocol carries it; TypeError for what is not an int (bool included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    return str(int(value))


# -- the store and its factory ------------------------------------------------------------------


class DriverStore:
    """One handle on a driver store: one driver process, spoken to over its stdin and stdout."""

    def __init__(self, factory: DriverFactory, path: str, name: str | None = None) -> None:
        self._spec = factory.spec
        self._path = os.path.abspath(path)
        self._closed = False
        self._proc = _Process(factory.spec, factory.argv)
        # A handle dropped without close (a worker's abandoned store) must not leave its process.
        self._finalizer = weakref.finalize(self, self._proc.kill)
        request: dict[str, object] = {"op": "open", "protocol": PROTOCOL, "path": self._path}
        if name is not None:
            request["name"] = name
        try:
            hello = self._proc.ask(request)
        except BaseException:
            self._closed = True
            self._finalizer()
            raise
        factory.learn(_capabilities(self._proc, request, hello))

    def __repr__(self) -> str:
        return f"DriverStore({self._spec!r}, {self._path!r})"

    def _ask(self, request: dict[str, object]) -> object:
        if self._closed:
            raise StoreClosedError(repr(self))
        return self._proc.ask(request)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        request = {"op": "load", **_key(topic_id, consumer_id)}
        found = self._ask(request)
        return None if found is None else _offset(self._proc, request, found)

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        request = {"op": "save", **_key(topic_id, consumer_id)}
        request["offset"] = _int("offset", offset)
        self._done(request)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._done({"op": "delete", **_key(topic_id, consumer_id)})

    def list_all(self) -> dict[Key, int]:
        request: dict[str, object] = {"op": "list_all"}
        listed = self._ask(request)
        if not isinstance(listed, list):
            raise self._proc.broken(request, f"list_all answered {listed!r}, not a list")
        found: dict[Key, int] = {}
        for entry in listed:
            if not isinstance(entry, list) or len(entry) != 3:
                raise self._proc.broken(
                    request, f"{entry!r} is not [topic_id, consumer_id, offset]"
                )
            topic, consumer, offset = (_offset(self._proc, request, part) for part in entry)
            if (topic, consumer) in found:
                raise self._proc.broken(request, f"key ({topic}, {consumer}) is listed twice")
            found[(topic, consumer)] = offset
        return found

    def _done(self, request: dict[str, object]) -> None:
        answer = self._ask(request)
        if answer is not None:
            raise self._proc.broken(request, f"'ok' must be null here, not {answer!r}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.failure is not None:  # broken already: that was the error, once
            self._finalizer()
            return
        try:
            answer = self._proc.ask({"op": "close"})
        except DriverError:
            self._finalizer()
            raise
        except BaseException:  # the store's own error on close: reported, and the process ends
            self._finalizer.detach()
            self._proc.finish()
            raise
        self._finalizer.detach()
        if answer is not None:
            raise self._proc.broken({"op": "close"}, f"'ok' must be null here, not {answer!r}")
        self._proc.finish()

    def __enter__(self) -> DriverStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DriverBatchStore(DriverStore):
    """A handle of a driver that declared ``save_many``."""

    def __enter__(self) -> DriverBatchStore:
        return self

    def save_many(self, offsets: Mapping[Key, int]) -> None:
        if not isinstance(offsets, Mapping):
            raise TypeError(
                "save_many takes a mapping {(topic_id, consumer_id): offset}, "
                f"not {type(offsets).__name__}"
            )
        entries = []
        for key, offset in offsets.items():
            if not isinstance(key, tuple) or len(key) != 2:
                raise TypeError(f"a save_many key must be a (topic_id, consumer_id) tuple: {key!r}")
            parts = _key(*key)
            entries.append([parts["topic_id"], parts["consumer_id"], _int("offset", offset)])
        self._done({"op": "save_many", "offsets": entries})


def _key(topic_id: object, consumer_id: object) -> dict[str, object]:
    return {"topic_id": _int("topic_id", topic_id), "consumer_id": _int("consumer_id", consumer_id)}


def _offset(proc: _Process, request: Mapping[str, object], value: object) -> int:
    """A number of an answer: a string of decimal digits (any size: judging it is the checks')."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise proc.broken(request, f'{value!r} is not a decimal string such as "42"')
    return int(value)


def _capabilities(proc: _Process, request: Mapping[str, object], hello: object) -> dict[str, Any]:
    """The capabilities an answer to ``open`` declares, with the defaults filled in."""
    if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL:
        raise proc.broken(
            request, f'open must answer {{"protocol": {PROTOCOL}, ...}}, not {hello!r}'
        )
    declared = hello.get("capabilities", {})
    if not isinstance(declared, dict):
        raise proc.broken(request, f"'capabilities' must be an object, not {declared!r}")
    caps: dict[str, Any] = dict(FLAGS)
    caps.update(LIMITS)
    for name, value in declared.items():
        if name in FLAGS:
            if not isinstance(value, bool):
                raise proc.broken(request, f"capability {name!r} must be true or false")
            caps[name] = value
        elif name in LIMITS:
            number = _offset(proc, request, value)
            if not 0 < number <= LIMITS[name]:
                raise proc.broken(request, f"capability {name!r} must be in 1..{LIMITS[name]}")
            caps[name] = number
        else:
            known = ", ".join([*FLAGS, *LIMITS])
            raise proc.broken(request, f"unknown capability {name!r} (known: {known})")
    return caps


class DriverFactory:
    """``exec:`` spec -> handles; capabilities learnt from the driver's answer to ``open``.

    The capability attributes the suite reads (``persistent``, ``batch``, ``open_named``, ...)
    are the driver's declarations. Reading one before any handle was opened opens one, in a
    scratch directory, to ask; building the factory starts nothing (a warm template builds it
    and must not hold a process or a descriptor).
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.argv = _argv(spec)
        self._caps: dict[str, Any] | None = None
        self.__name__ = self.__qualname__ = spec

    @property
    def exec_spec(self) -> str:
        """The spec that builds this factory again, in any process (``spec_of``)."""
        return self.spec

    def __repr__(self) -> str:
        return f"DriverFactory({self.spec!r})"

    def __call__(self, path: str) -> DriverStore:
        store = DriverStore(self, path)
        return _with_batch(self, store)

    def learn(self, caps: dict[str, Any]) -> None:
        """Keep what the first handle declared; a later handle declaring otherwise is an error."""
        if self._caps is None:
            self._caps = caps
        elif caps != self._caps:
            changed = sorted(k for k in caps if caps[k] != self._caps[k])
            raise DriverError(
                f"driver {self.spec!r} declared other capabilities on a later open ({changed}): "
                "a driver's capabilities must not change between handles"
            )

    def _declared(self) -> dict[str, Any]:
        if self._caps is None:
            scratch = tempfile.mkdtemp(prefix="lance-offsets-driver-probe-")
            try:
                DriverStore(self, scratch).close()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        assert self._caps is not None
        return self._caps

    @property
    def persistent(self) -> bool:
        return bool(self._declared()["persistent"])

    @property
    def shared(self) -> bool:
        return bool(self._declared()["shared"])

    @property
    def durable(self) -> bool:
        return bool(self._declared()["durable"])

    @property
    def batch(self) -> bool:
        return bool(self._declared()["save_many"])

    @property
    def batch_atomic(self) -> bool:
        return bool(self._declared()["batch_atomic"])

    @property
    def topic_id_max(self) -> int:
        return int(self._declared()["topic_id_max"])

    @property
    def consumer_id_max(self) -> int:
        return int(self._declared()["consumer_id_max"])

    @property
    def offset_max(self) -> int:
        return int(self._declared()["offset_max"])

    @property
    def open_named(self) -> Callable[[str, str], DriverStore] | None:
        if not self._declared()["named"]:
            return None
        return self._open_named

    def _open_named(self, path: str, name: str) -> DriverStore:
        return _with_batch(self, DriverStore(self, path, name))


def _with_batch(factory: DriverFactory, store: DriverStore) -> DriverStore:
    """``store`` with ``save_many`` when its driver declared it (B1 looks for the method)."""
    if factory._declared()["save_many"]:
        store.__class__ = DriverBatchStore
    return store


def _static(path: str) -> bool:
    """Whether ``path`` is an ELF program with no dynamic loader (``PT_INTERP``): a static one.

    The syscall shim is preloaded by the dynamic loader, so it never runs in such a program (Go
    links statically and makes its system calls itself). A script is judged by its interpreter.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            if head.startswith(b"#!"):
                words = head[2:].split(b"\n", 1)[0].split()
                if not words:
                    return False
                program = os.fsdecode(words[0])
                if os.path.basename(program) == "env" and len(words) > 1:
                    program = shutil.which(os.fsdecode(words[1])) or program
                return program != path and _static(program)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only; anything else: unknown
                return False
            little = head[5] == 1
            order = "<" if little else ">"
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except (OSError, struct.error, IndexError):
        return False
    kinds = [struct.unpack_from(order + "I", table, i * phentsize)[0] for i in range(phnum)]
    return 3 not in kinds  # PT_INTERP


def unseen_drivers() -> str:
    """Why the syscall shim cannot see the drivers this process loaded ("" when it can).

    Campaigns add it to "the shim saw nothing", so an ``unverified`` says the true reason.
    """
    reasons = [
        f"the driver program {factory.argv[0]!r} is statically linked: the syscall shim, "
        "preloaded by the dynamic loader, never runs in it (Go's runtime makes its system "
        "calls itself); D3 falls back to strace, every other I/O property is unverified"
        for factory in _FACTORIES.values()
        if _static(factory.argv[0])
    ]
    return "; ".join(reasons)


_FACTORIES: dict[str, DriverFactory] = {}


def driver_factory(spec: str) -> DriverFactory:
    """The factory of an ``exec:`` spec (resolved from the working directory); one per spec.

    :raises ValueError: the spec names no program, or one that is not there.
    """
    resolved = resolve_exec_spec(spec)
    factory = _FACTORIES.get(resolved)
    if factory is None:
        factory = _FACTORIES[resolved] = DriverFactory(resolved)
    return factory
