"""D3's first step: record what the workload did to the store's files, through the one seam.

The workload runs in a fleet worker (``workers/_fleet.py``: forked from a clean server, with the
syscall shim preloaded) through :func:`~..seam._record.tracing`, the same seam the crash points
and F2 record through, and the backend is chosen by :func:`~..seam._record.choose_backend`: the
Python interposer first; the syscall shim when the interposer's trace does not explain the
directory the store left (its I/O is in C). The shim's records go through the syscall model
(``seam/_syscalls.py``: ``O_DSYNC``, shared-memory files left out, writable mappings refused).
Where the shim cannot be built (no C compiler), or its trace does not explain the directory
either (I/O glibc makes internally, a static binary), strace feeds the same model instead.

A trace is trusted only if replaying it rebuilds, byte for byte, the directory the worker left.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Final

from ..seam._record import Backend, choose_backend
from ..seam._syscalls import MAX_TRACE_BYTES, SyscallError, data_only, from_shim
from ..seam._trace import Trace, TraceOp
from ..workers._fleet import Fleet, WorkerGone
from ..workers._jobs import NO_SHIM
from ._fsmodel import ModelError, Tree, UnknownCall, replay
from ._oracle import Key, Step, parse_mark
from ._workers import progress_path

__all__ = [
    "PROCESS_SECONDS",
    "Recording",
    "Refused",
    "attempt",
    "record_strace",
    "recording",
]

#: Seconds the traced worker may take before the check gives up on it (a hung store).
PROCESS_SECONDS: Final = 120.0

#: Operations that change what a power cut can leave; a trace with none saw no store I/O.
_WRITING: Final = frozenset({"write", "truncate", "rename", "replace", "unlink", "mkdir", "link"})

#: How reports name each way of recording.
TRACERS: Final = {"python": "the Python interposer", "syscall": "the syscall shim"}
STRACE: Final = "strace"


@dataclass(frozen=True)
class Recording:
    root: str
    initial: Tree
    trace: list[TraceOp]
    #: Who recorded it: one of :data:`TRACERS`' values, or :data:`STRACE`.
    tracer: str
    #: Where this recording's crash states are written out.
    work: str = ""
    #: Values durable before the trace began, per key (F2's setup, ``_faulted.py``); D3's
    #: workload starts from an empty store.
    committed: tuple[tuple[Key, int], ...] = ()
    #: Which view judged and why (``syscall shim (the Python interposer missed 1 fsync call)``).
    judged: str = ""


#: No recording to explore: the outcome ("failed", "unverified") and why.
Refused = tuple[str, str]
_Attempt = tuple[str, str, dict[str, Any]]  # root, work directory, what the worker recorded


def recording(
    spec: str, steps: list[Step], scratch: str, seed: int, forced: str = "auto"
) -> Recording | Refused:
    """Trace the workload through the seam's chosen backend, or say why it cannot be.

    :param forced: the options' ``backend``: ``"auto"``, or one backend only (tests compare).
    """
    missing: list[str] = []

    def record(backend: Backend) -> _Attempt | str:
        done = attempt(spec, steps, os.path.join(scratch, backend), backend)
        if isinstance(done, str):
            missing.append(done)
        return done

    chosen = choose_backend(record, _blind, forced, views=_views)
    if chosen.counted is None:  # a forced shim that is missing (a run never raises here)
        return "unverified", chosen.unseen
    root, work, recorded = chosen.counted
    if "error" in recorded:
        return "failed", f"the power-loss worker failed (seed {seed}):\n{recorded['error']}"
    reason = _blind(chosen.counted)
    if reason is None:
        tracer = TRACERS[chosen.backend]
        return Recording(
            root, recorded["initial"], recorded["trace"], tracer, work, judged=chosen.judged
        )
    if missing:
        reason += f"; no syscall shim here: {missing[0]}"
    elif chosen.unseen:
        reason += f"; through the syscall shim too: {chosen.unseen}"
    if forced != "auto":
        return "unverified", reason
    # strace sees what the shim cannot: calls glibc makes internally (stdio's fopen, fwrite and
    # fclose reach the kernel without passing the exported functions the shim wraps), static
    # binaries, raw system calls; and it needs no C compiler.
    return _strace_recording(spec, steps, os.path.join(scratch, STRACE), seed, reason)


def _views(attempt: _Attempt) -> Trace | None:
    """The interposer's trace of an attempt, with the shim's view of the same run beside it."""
    trace = attempt[2].get("trace")
    return trace if isinstance(trace, Trace) else None


def _blind(attempt: _Attempt) -> str | None:
    root, _, recorded = attempt
    if "error" in recorded:
        return None  # the campaign reports the failure, whatever the backend
    if "refused" in recorded:
        return str(recorded["refused"])
    return untraceable(recorded, root)


def attempt(spec: str, steps: list[Step], work: str, backend: Backend) -> _Attempt | str:
    """Run the workload once in a fleet worker through ``backend``; a string: no shim here."""
    os.mkdir(work)
    root = os.path.realpath(os.path.join(work, "store"))
    os.mkdir(root)
    recorded = _in_worker(spec, root, steps, work, backend)
    if "unavailable" in recorded:
        return str(recorded["unavailable"])
    if backend == "syscall" and "error" not in recorded:
        # Shared-memory files (LMDB's lock.mdb, SQLite's -shm) are no data: left out.
        recorded["initial"] = data_only(recorded["initial"])
        recorded["final"] = data_only(recorded["final"])
        try:
            recorded["trace"] = from_shim(
                recorded["trace"], root, recorded["initial"], recorded["mapped"]
            )
        except SyscallError as exc:
            recorded["refused"] = str(exc)
    return root, work, recorded


def _in_worker(spec: str, root: str, steps: list[Step], work: str, backend: str) -> dict[str, Any]:
    out = os.path.join(work, "trace.pickle")
    job = {"job": "record", "path": root, "steps": steps, "out": out, "backend": backend}
    with Fleet(spec) as fleet:
        try:
            worker = fleet.take(spare=False)
        except WorkerGone as exc:
            return {"error": str(exc)}
        try:
            worker.send(job)
            tag, payload = worker.recv(PROCESS_SECONDS, "the traced workload")
        except WorkerGone as exc:
            hung = "sent nothing" in str(exc)
            why = f"the traced worker was still running after {PROCESS_SECONDS} s" if hung else ""
            return {"error": (why or str(exc)) + (_workload_hang(out, root, steps) if hung else "")}
        finally:
            worker.kill()
    if tag == NO_SHIM:
        return {"unavailable": str(payload)}
    with open(out, "rb") as fh:
        recorded: dict[str, Any] = pickle.load(fh)
    return recorded


def _strace_recording(
    spec: str, steps: list[Step], work: str, seed: int, reason: str
) -> Recording | Refused:
    os.mkdir(work)
    root = os.path.realpath(os.path.join(work, "store"))
    os.mkdir(root)
    recorded = record_strace(spec, root, steps, work)
    if "unavailable" in recorded:
        return "unverified", f"{reason}; strace cannot help: {recorded['unavailable']}"
    if "error" in recorded:
        return "failed", f"the strace'd worker failed (seed {seed}):\n{recorded['error']}"
    incomplete = untraceable(recorded, root)
    if incomplete:
        return "unverified", f"{reason}; under strace too: {incomplete}"
    return Recording(root, recorded["initial"], recorded["trace"], STRACE, work)


def record_strace(spec: str, root: str, steps: list[Step], scratch: str) -> dict[str, Any]:
    """Run the workload under strace in a fresh interpreter; return tree and parsed trace."""
    from ..seam._strace import StraceError, parse, strace_command

    out, log = os.path.join(scratch, "strace.pickle"), os.path.join(scratch, "strace.log")
    args = os.path.join(scratch, "strace-args.pickle")
    with open(args, "wb") as fh:
        pickle.dump((spec, root, steps, out), fh)
    try:
        command = strace_command(log)
    except StraceError as exc:
        return {"unavailable": str(exc)}
    worker = [sys.executable, "-m", "lance_offsets.stress.powerloss._workers", args]
    try:
        done = subprocess.run(
            [*command, *worker],
            cwd=scratch,
            capture_output=True,
            timeout=PROCESS_SECONDS,
            check=False,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired:
        hang = _workload_hang(out, root, steps)
        return {"error": f"the strace'd worker ran longer than {PROCESS_SECONDS} s{hang}"}
    if not os.path.exists(out):
        tail = done.stderr.decode(errors="replace")[-600:]
        return {"unavailable": f"strace exited with code {done.returncode}: {tail}"}
    with open(out, "rb") as fh:
        recorded: dict[str, Any] = pickle.load(fh)
    if "error" not in recorded:
        recorded["initial"] = data_only(recorded["initial"])
        recorded["final"] = data_only(recorded["final"])
        try:
            with open(log, encoding="latin-1") as fh:
                recorded["trace"] = parse(fh, root, recorded["initial"], cwd=scratch)
        except StraceError as exc:
            return {"unavailable": str(exc)}
    return recorded


def _workload_hang(out: str, root: str, steps: list[Step]) -> str:
    """Say where a traced worker hung: the call in flight (its last mark) and the files then."""
    try:
        with open(progress_path(out), encoding="utf-8") as fh:
            note = fh.read()
    except OSError:
        note = ""
    parsed = parse_mark(note)
    if parsed is None:
        where = "in close()" if note == "close()" else "before the first call (opening the store?)"
    elif parsed[0] == "begin":
        where = f"in {parsed[1]}"
    else:
        where = f"after {parsed[1]} returned"
    files = ", ".join(
        f"{os.path.relpath(os.path.join(d, n), root)}={os.path.getsize(os.path.join(d, n))} bytes"
        for d, _, names in os.walk(root)
        for n in sorted(names)
    )
    calls = ", ".join(str(step) for step in steps)
    return (
        f" (the store hung during the traced workload ({calls}), {where}, before any crash "
        f"state existed; files then: {files or '(none)'}: a lock never released? an unbounded "
        "retry?)"
    )


def _child_env() -> dict[str, str]:
    """Return the strace'd worker's environment: this process's ``sys.path`` as PYTHONPATH.

    Spawned workers inherit ``sys.path``; a plain subprocess needs it spelled out (the CLI puts
    the working directory there, which is where a user's store module usually is).
    """
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def untraceable(recorded: dict[str, Any], root: str) -> str | None:
    """Return why the recorded trace cannot be trusted to hold all the store's I/O, if it cannot."""
    trace: list[TraceOp] = recorded["trace"]
    held = sum(len(c) for c in {id(op.content): op.content or b"" for op in trace}.values())
    if held > MAX_TRACE_BYTES:
        return (
            f"the trace holds {held >> 20} MiB of file contents, more than the "
            f"{MAX_TRACE_BYTES >> 20} MiB the model may hold"
        )
    audit = [op for op in trace if op.note == "audit"]
    if audit:
        return (
            "the store calls file-system functions the interposer cannot wrap (bound at import "
            f"or made from C), so its fsyncs would be invisible; first: {audit[0]}"
        )
    if not any(op.kind in _WRITING and op.error is None for op in trace):
        return (
            f"the trace shows no file-system write under {root}: the store's I/O cannot be traced "
            "(a C extension or a server?)"
        )
    return _unexplained(trace, root, recorded)


def _unexplained(trace: list[TraceOp], root: str, recorded: dict[str, Any]) -> str | None:
    """Why replaying ``trace`` does not rebuild the directory the worker left, or None."""
    # Byte for byte; otherwise some I/O went unseen (C code, mmap) and the model would judge a
    # store it cannot see. A call the recorder saw and the model does not know is named.
    try:
        replayed = dict(replay(trace, root, recorded["initial"]))
    except UnknownCall as exc:
        return str(exc)
    except ModelError as exc:
        return f"the trace cannot be replayed on the directory it started from: {exc}"
    final = dict(recorded["final"])
    for path in sorted(set(replayed) | set(final)):
        on_disk, traced = final.get(path, _ABSENT), replayed.get(path, _ABSENT)
        if on_disk != traced:
            return (
                f"the trace does not explain the directory the store left: {path} holds "
                f"{_short(on_disk)} on disk, {_short(traced)} by the trace (I/O the tracer "
                "cannot see)"
            )
    return None


_ABSENT: Final = b"<absent>"


def _short(content: bytes | None) -> str:
    if content == _ABSENT:
        return "nothing"
    if content is None:
        return "a directory"
    return repr(content) if len(content) < 40 else f"{len(content)} bytes"
