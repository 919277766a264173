"""The processes of the D3 check: the traced worker and the fresh verifier.

The traced worker is a fleet worker (``workers/_fleet.py``, job ``record``: forked from a clean
server with the syscall shim preloaded), or, where no shim can be built, an interpreter under
strace (``python -m`` this module). It hands its result back as a pickle file in the check's
scratch directory. The verifier, spawned (``_procs.py``) for the whole check, gets directories
and sends back :class:`~._oracle.Observation` over a pipe. Both import the store by its spec
string. Plain data only (trees, trace records, observations), so nothing but our own modules is
needed to read them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any, Final

from lance_offsets._interrupt import quiet_child

from ..seam._record import tracing
from ..seam._strace import mark_path
from ..workers._jobs import uncrashed_listing
from ._fsmodel import snapshot
from ._oracle import Key, Observation, Step

__all__ = [
    "FRESH_KEY",
    "FRESH_VALUE",
    "Progress",
    "last_doing",
    "observe",
    "progress_path",
    "record",
    "record_for_strace",
    "run_steps",
    "verify",
]

#: A key and value no workload uses, for the "can save again" probe.
FRESH_KEY: Final[Key] = (4242, 4242)
FRESH_VALUE: Final = 424242


def run_steps(store: Any, steps: list[Step], mark: Callable[[str], None]) -> None:
    for call in _calls(steps):
        for step in call:
            mark(step.note("begin"))
        try:
            if call[0].batch:
                store.save_many({step.key: step.value for step in call})
            elif call[0].kind == "save":
                assert call[0].value is not None
                store.save(*call[0].key, call[0].value)
            else:
                store.delete(*call[0].key)
        except Exception as exc:  # any failure leaves the call in flight
            for step in call:
                mark(step.note("fail") + f": {exc!r}")
        else:
            for step in call:
                mark(step.note("ack"))


def _calls(steps: list[Step]) -> list[list[Step]]:
    """The store calls of a workload: one step each, or the steps of one batch together."""
    calls: list[list[Step]] = []
    for step in steps:
        if step.batch and calls and calls[-1][0].batch == step.batch:
            calls[-1].append(step)
        else:
            calls.append([step])
    return calls


class Progress:
    """The worker's last mark, kept in ``OUT.doing``, for a parent that kills it when it hangs.

    The trace itself dies with the worker; this file says which call was in flight.
    """

    def __init__(self, out: str) -> None:
        # Outside the traced root: neither tracer records these writes.
        self._fd = os.open(progress_path(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def __call__(self, note: str) -> None:
        data = note.encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


def progress_path(out: str) -> str:
    return out + ".doing"


def record(
    factory: Callable[[str], Any], root: str, steps: list[Step], out: str, backend: str
) -> None:
    """Fleet worker: run ``steps`` on the store through the seam's ``backend``; pickle to ``out``.

    ``root`` is a new, empty directory; the trace starts before the store's first open on it.
    The pickle holds the tree before and after, the trace, and the files the shim saw mapped
    shared and writable (``mapped``); or ``error``, the traceback of what went wrong.
    """
    progress = Progress(out)
    mapped: list[str] = []
    try:
        # From the empty directory on: what the first open creates (a data directory, a lock
        # file, a database) is part of the workload, and a power cut can undo it.
        initial = snapshot(root)
        # Through the interposer, the shim records the same run beside it (the witness), so the
        # parent can tell whether the interposer saw every operation (seam/_record.py).
        block, mark = tracing(root, backend, on_map=mapped.append, witness=backend == "python")

        def both(note: str) -> None:
            progress(note)
            mark(note)

        with block as trace:
            store = factory(root)
            run_steps(store, steps, both)
            progress("close()")
            store.close()
        result: dict[str, Any] = {
            "initial": initial,
            "trace": trace,  # a Trace: the witness's view goes with it
            "mapped": mapped,
            "final": snapshot(root),
        }
    except Exception:
        result = {"error": traceback.format_exc()}
    with open(out, "wb") as fh:
        pickle.dump(result, fh)


def _strace_mark(note: str) -> None:
    # A failed open of a path that cannot exist: strace records it, nothing else happens.
    with contextlib.suppress(OSError):
        os.close(os.open(mark_path(note), os.O_RDONLY))


def record_for_strace(spec: str, root: str, steps: list[Step], out: str) -> None:
    """Worker run under strace: marks are failed opens (``_strace.py``); pickles the tree."""
    from lance_offsets.conformance._spec import load_factory

    progress = Progress(out)

    def both(note: str) -> None:
        progress(note)
        _strace_mark(note)

    try:
        factory = load_factory(spec)
        result: dict[str, Any] = {"initial": snapshot(root)}  # empty: the first open is traced
        _strace_mark("trace start")
        store = factory(root)
        run_steps(store, steps, both)
        progress("close()")
        store.close()
        _strace_mark("trace end")
        result["final"] = snapshot(root)
    except Exception:
        result = {"error": traceback.format_exc()}
    with open(out, "wb") as fh:
        pickle.dump(result, fh)


def verify(spec: str, conn: Any, keys: list[Key], progress: str) -> None:
    """Verifier: open the store on each directory it is sent; send back what it saw.

    The parent sends batches of ``(index, directory)`` pairs over ``conn`` (None: stop), as it
    writes the crash states out one batch at a time, and gets ``("seen", index, obs)`` back for
    each. Before every store call the verifier overwrites ``progress`` with a pickled note
    (``(directory, "load(1, 2)")``): a file, not a message, so the parent is not woken for each
    call; if the store hangs on one state, the parent kills this process and reads there
    where it hung.
    """
    from lance_offsets.conformance._spec import load_factory

    quiet_child()
    factory = load_factory(spec)
    # Plain pickle over the pipe: the connection's own pickler (dill) is many times slower.
    listing = listing_problem(factory, keys, os.path.dirname(progress))
    conn.send_bytes(pickle.dumps(("ready", -1, listing)))
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            batch = pickle.loads(conn.recv_bytes())
            if batch is None:
                return
            for index, where in batch:
                obs = observe(factory, where, keys, functools.partial(_doing, fd, where))
                conn.send_bytes(pickle.dumps(("seen", index, obs)))
    finally:
        os.close(fd)


def listing_problem(factory: Any, keys: list[Key], scratch: str | None = None) -> str | None:
    """How ``list_all`` is wrong on a new store no power cut touched, or None (right, or unknown).

    Each key gets a value of its own on an empty store in a temporary directory
    (:func:`~..workers._jobs.uncrashed_listing`); a listing wrong there is the store's own (C6).
    The directory is made in ``scratch`` (the run's), so a run stopped meanwhile removes it.
    """
    state = {key: n + 1 for n, key in enumerate(keys)}
    where = tempfile.mkdtemp(prefix="fresh-list-", dir=scratch)
    try:
        listed = uncrashed_listing(factory, where, state)
    except Exception:  # no demonstration: every listing stays judged
        return None
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if listed == state:
        return None
    return (
        f"list_all() is wrong on a new store no power cut touched: after saving {state} it gave "
        f"{listed} (the store's own listing: see C6); no power cut was blamed for it"
    )


#: Bytes of one progress note: each overwrites the last in one ``pwrite`` (no truncation).
_NOTE_BYTES: Final = 4096


def _doing(fd: int, where: str, what: str) -> None:
    note = pickle.dumps((where, what[:1024]))
    os.pwrite(fd, note.ljust(_NOTE_BYTES, b"\0"), 0)


def last_doing(progress: str) -> tuple[str, str] | None:
    """Return the verifier's last progress note in ``progress``, if it left a whole one.

    The note is the directory it was on and the store call it was making.
    """
    try:
        with open(progress, "rb") as fh:
            note: tuple[str, str] = pickle.load(fh)  # stops at its end: the padding is left
    except Exception:  # absent, or cut short by the kill: where it was is unknown
        return None
    return note


def observe(factory: Any, where: str, keys: list[Key], doing: Callable[[str], None]) -> Observation:
    obs = Observation()
    doing("opening the store")
    try:
        store = factory(where)
    except Exception as exc:
        obs.open_error = repr(exc)
        return obs
    try:
        for key in keys:
            doing(f"load{key}")
            try:
                obs.loads[key] = store.load(*key)
            except Exception as exc:
                obs.load_errors[key] = repr(exc)
        doing("list_all()")
        try:
            obs.listing = dict(store.list_all())
        except Exception as exc:
            obs.listing_error = repr(exc)
        doing("saving again")
        obs.resave_error = _resave(store, [k for k in keys if k in obs.loads])
    finally:
        doing("close()")
        try:
            store.close()
        except Exception as exc:
            obs.resave_error = obs.resave_error or f"close() raised {exc!r}"
    return obs


def _resave(store: Any, keys: list[Key]) -> str | None:
    for key in [*keys, FRESH_KEY]:
        try:
            store.save(*key, FRESH_VALUE)
            got = store.load(*key)
        except Exception as exc:
            return f"save{key} = {FRESH_VALUE} raised {exc!r}"
        if got != FRESH_VALUE:
            return f"save{key} = {FRESH_VALUE} returned, then load{key} gave {got}"
    return None


if __name__ == "__main__":
    # ``python -m lance_offsets.stress.powerloss._workers ARGS.pickle``: the strace'd worker.
    with open(sys.argv[1], "rb") as _fh:
        record_for_strace(*pickle.load(_fh))
