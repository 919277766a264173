"""The worker side of crash and fault runs: jobs a worker process performs on request.

A worker rebuilds the store from its factory spec in its own process, says ``ready``, then serves
jobs sent through its pipe, one reply message (or several, for jobs that report progress) each.
The parent (``_fleet.py``) kills workers from outside; nothing here cleans up after a kill, on
purpose: the point is to leave whatever a kill leaves.

Jobs (dicts with a ``"job"`` name):

``crash``
    Open the store, set up the old state (untraced), then inside :func:`traced` run the action
    (save or delete; or, with ``"action": "open"``, close and open a new handle over it), send
    ``("acked", value)`` once a save or delete returned, and close the store. When the job's
    ``stop`` point ``(index, phase)`` is reached, send ``("stopped", (index, phase))`` and block
    until killed (the message is written by the backend that numbers the operation, the shim's
    C code included: no Python runs on a store's own thread); otherwise reply ``("done",
    trace)`` (a counting run, or a point never reached). A counting run through the interposer
    has the shim record beside it where it is preloaded: ``trace.syscall`` is that view.
``loop``
    Save increasing values forever, sending ``("acked", value)`` after each save returned (a save
    that raises ends the loop: ``("raised", (error, value))``); with
    ``"action": "open"``, commit ``setup`` and then open, read and close the store forever.
``batch``
    As ``crash``, with ``save_many(batch)`` over ``setup`` as the change (B1).
``verify``
    From a fresh handle: reply ``("read", found)`` with the values of the keys and
    ``list_all()``; then, if asked, save a later value and reply ``("saved", report)`` with the
    time the save took and what reads back (D4, D5).
``listing``
    Save the job's ``state`` on a new store at ``path`` and reply ``("listed", list_all())``:
    whether the store lists right with no crash at all (D4 blames a crash only then).
``fault``
    Set up the old value, run one action under a fault plan (the job's ``action``: ``save`` by
    default, ``delete`` or ``load`` of the key, or ``open``: a new handle over the committed
    data), reply ``("faulted", outcome)``; on ``"continue"`` save a later value on the same
    handle (a new one after an open) and reply ``("later", outcome)``; if that save raised, the
    outcome says what the handle's load answered and whether a reopened handle saves (fail-stop);
    on anything else, close the handle and reply ``("later", None)``. Each of the two saves is
    watched: one still running after the job's ``bound`` seconds sends ``("stuck", report)``
    (where it is blocked, the last operations) and the parent kills it.

``record``
    D3's workload (``powerloss/_workers.record``): save and delete through the job's backend,
    with marks, and pickle the trees before and after and the trace to the job's ``out``; reply
    ``("recorded", out)``.

``crash``, ``fault`` and ``record`` jobs trace through the seam (``seam/_record.tracing``) with
the backend their ``"backend"`` names: ``"python"`` (the default: the interposer) or
``"syscall"`` (the preloaded shim, for I/O made in C). A worker asked for the shim without
having it replies ``("no shim", why)``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from lance_offsets.conformance._spec import load_factory
from multiprocess.reduction import ForkingPickler

from lance_offsets._interrupt import quiet_child

from ..powerloss._fstree import snapshot
from ..seam import _shim
from ..seam._record import tracing
from ..seam._trace import TraceOp
from ..seam._tracer import FaultPlan, StopAt

__all__ = ["serve", "serve_jobs", "uncrashed_listing"]

Key = tuple[int, int]
Reply = tuple[str, Any]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read(store: Any, keys: list[Key]) -> dict[str, Any]:
    """Load each key and list_all; an exception is reported as text, in place of the value."""
    found: dict[str, Any] = {}
    for key in keys:
        try:
            found[f"load{key}"] = store.load(*key)
        except Exception as exc:  # any failure is a finding to report
            found[f"load{key}"] = f"raised {_describe(exc)}"
    try:
        found["list_all"] = dict(store.list_all())
    except Exception as exc:  # same
        found["list_all"] = f"raised {_describe(exc)}"
    return found


def _setup(store: Any, state: dict[Key, int]) -> None:
    for key, value in state.items():
        store.save(*key, value)


NO_SHIM = "no shim"
#: The reply of a job whose driver store broke the protocol (``conformance/_driver.py``).
DRIVER_ERROR = "driver error"


def _no_shim(job: dict[str, Any]) -> Reply | None:
    if job.get("backend") == "syscall" and _shim.loaded() is None:
        why = "this worker was started without the syscall shim preloaded (LD_PRELOAD)"
        return (NO_SHIM, _shim.unavailable() or why)
    return None


def _stop_at(conn: Any, stop: tuple[int, str] | None) -> StopAt | None:
    """Crash point ``stop`` (index, phase): ``("stopped", stop)``, framed as ``conn.send`` would.

    The seam writes the message itself at the point (the shim from C, on whatever thread made
    the call), so it is prepared here, once, as the bytes the parent's ``recv`` reads.
    """
    if stop is None:
        return None
    index, phase = stop
    payload = bytes(ForkingPickler.dumps(("stopped", (index, phase))))
    framed = struct.pack("!i", len(payload)) + payload
    return StopAt(index, "before" if phase == "before" else "after", conn.fileno(), framed)


def _crash(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    if (missing := _no_shim(job)) is not None:
        return missing
    stop = _stop_at(conn, job["stop"])
    store = factory(job["path"])
    _setup(store, job["setup"])
    key, new = job["key"], job["new"]
    opening = job.get("action") == "open"
    if opening:
        store.close()  # committed and closed: the traced change is a new handle's open
    block, note = _block(job, stop)
    with block as trace:
        try:
            if opening:
                store = factory(job["path"])
            elif new is None:
                store.delete(*key)
            else:
                store.save(*key, new)
        except Exception as exc:  # reported: the parent decides what it means
            return ("raised", (_describe(exc), list(trace)))
        if not opening:  # an open acknowledges nothing new: all it finds was committed before
            note(f"ack {'delete' if new is None else 'save'} {key[0]} {key[1]} {new}")
            conn.send(("acked", new))
        _linger(conn, job, trace)
        store.close()
    return ("done", trace)


def _block(job: dict[str, Any], stop: StopAt | None) -> Any:
    """The tracing block of a crash or batch job: a counting run (no stop) has the witness.

    No contents: crash points need indices, kinds and paths only.
    """
    counting = stop is None
    backend = job.get("backend", "python")
    return tracing(job["path"], backend, stop=stop, witness=counting, contents=False)


def _linger(conn: Any, job: dict[str, Any], trace: list[TraceOp]) -> None:
    """Let a store's background writer show itself: sleep the job's ``linger`` seconds.

    A counting run (no ``stop``) that lingers reports ``("lingered", n)``: the ``n`` operations
    traced meanwhile, all another thread's (this one only slept). With none, the parent kills
    this change's crash points without lingering: the same operations come in the same order.
    """
    seconds = job.get("linger", 0.0)
    if not seconds:
        return
    before = len(trace)
    time.sleep(seconds)
    if job.get("stop") is None:
        conn.send(("lingered", len(trace) - before))


def _batch(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    """B1's crash job: ``crash`` with ``save_many(batch)`` over ``setup`` as the change.

    Sends ``("acked", None)`` once the batch returned.
    """
    if (missing := _no_shim(job)) is not None:
        return missing
    stop = _stop_at(conn, job["stop"])
    store = factory(job["path"])
    _setup(store, job["setup"])
    block, note = _block(job, stop)
    with block as trace:
        try:
            store.save_many(job["batch"])
        except Exception as exc:  # reported: the parent decides what it means
            return ("raised", (_describe(exc), list(trace)))
        note("ack save_many")
        conn.send(("acked", None))
        time.sleep(job.get("linger", 0.0))  # let a store's background writer show itself
        store.close()
    return ("done", trace)


def _loop(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    if job.get("action") == "open":
        return _open_loop(factory, conn, job)
    store = factory(job["path"])
    key, value = job["key"], job["start"]
    conn.send(("looping", value))
    while True:
        try:
            store.save(*key, value)
        except Exception as exc:  # the store's own error: the parent reports it as the store's
            return ("raised", (_describe(exc), value))
        conn.send(("acked", value))
        value += 1


def _open_loop(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    """Commit the job's ``setup``, then open, read and close the store forever (kill during open).

    Each round sends ``("opened", count)``; the parent kills the process at a random time, most
    likely inside the factory, the longest part of a round.
    """
    store = factory(job["path"])
    _setup(store, job["setup"])
    store.close()
    conn.send(("looping", 0))
    rounds = 0
    while True:
        store = factory(job["path"])
        store.load(*job["key"])
        store.close()
        rounds += 1
        conn.send(("opened", rounds))


def _verify(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    try:
        store = factory(job["path"])
    except Exception as exc:  # a store that cannot reopen is a finding
        return ("read", {"open": f"raised {_describe(exc)}"})
    conn.send(("read", _read(store, job["keys"])))
    later = job.get("later")
    if later is None:
        store.close()
        return ("saved", None)
    key, value = later
    start = time.monotonic()
    try:
        store.save(*key, value)
        error = None
    except Exception as exc:  # reported
        error = _describe(exc)
    seconds = time.monotonic() - start
    report = {"seconds": seconds, "error": error, **_read(store, job["keys"])}
    store.close()
    if error is not None:
        report["fresh error"] = _save_fresh(factory, job["path"], key, value)
    return ("saved", report)


def uncrashed_listing(factory: Callable[[str], Any], path: str, state: dict[Key, int]) -> Any:
    """Save ``state`` on a new, empty store at ``path``; return its ``list_all`` (or why not).

    Blame by demonstration, as :func:`_save_fresh`: a listing wrong where no crash or power cut
    ever happened is the store's own (C6), not what a crash left (D3, D4).
    """
    store = factory(path)
    try:
        _setup(store, state)
        try:
            return dict(store.list_all())
        except Exception as exc:  # reported
            return f"raised {_describe(exc)}"
    finally:
        store.close()


def _listing(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    return ("listed", uncrashed_listing(factory, job["path"], job["state"]))


def _save_fresh(factory: Callable[[str], Any], path: str, key: Key, value: int) -> str | None:
    """The same save on a new, empty store beside ``path``: how it failed, or None.

    Blame by demonstration: a save that fails on a store no crash ever touched shows the store's
    own save at fault (C1), not what the crash left (D4).
    """
    fresh = tempfile.mkdtemp(prefix="fresh-", dir=os.path.dirname(path))
    try:
        store = factory(fresh)
        try:
            store.save(*key, value)
        finally:
            store.close()
    except Exception as exc:  # reported: the judge decides what it means
        return _describe(exc)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return None


def _blocked_at(thread: int) -> list[str]:
    """The innermost frames of ``thread`` below this module's job function: where the store is."""
    frame = sys._current_frames().get(thread)
    if frame is None:
        return []
    stack = traceback.extract_stack(frame)
    ours = [i for i, f in enumerate(stack) if f.filename == __file__]
    frames = stack[ours[-1] + 1 :] if ours else list(stack)
    return [
        f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"
        for f in frames[-5:]
    ]


class _Watchdog:
    """Sends ``("stuck", report)`` if a watched save is still running at its deadline.

    A hung save cannot answer, and the parent that kills it learns nothing: this thread tells it
    where the save is blocked (a lock never released on the error path names its own line). One
    thread per worker, armed and disarmed per save: starting a thread per save cost more than
    the faulted saves themselves on a loaded machine. The report is sent while holding
    ``cond``, and :meth:`disarm` takes it, so the job's own reply never interleaves with it on
    the pipe (a pipe is not thread-safe).
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cond = threading.Condition()
        self.deadline: float | None = None
        self.thread = 0
        self.trace: list[TraceOp] = []
        threading.Thread(target=self._run, name="stress-watchdog", daemon=True).start()

    def arm(self, seconds: float, trace: list[TraceOp]) -> None:
        """Watch this thread's next ``seconds``; ``trace`` is what it records meanwhile."""
        with self.cond:
            self.deadline = time.monotonic() + seconds
            self.thread = threading.get_ident()
            self.trace = trace
            self.cond.notify()

    def disarm(self) -> None:
        """The save ended: stay silent (waits for a report being sent to be complete)."""
        with self.cond:
            self.deadline = None

    def _run(self) -> None:
        with self.cond:
            while True:
                if self.deadline is None:
                    self.cond.wait()
                elif (left := self.deadline - time.monotonic()) > 0:
                    self.cond.wait(left)
                else:
                    self.deadline = None
                    trace = list(self.trace)
                    report = {
                        "blocked at": _blocked_at(self.thread),
                        "failed": [op for op in trace if op.error][:3],
                        "trace": trace[-6:],
                    }
                    self.conn.send(("stuck", report))


_WATCHDOG: list[_Watchdog] = []  # this worker's one watchdog, started by its first fault job


def _watchdog(conn: Any) -> _Watchdog:
    if not _WATCHDOG:
        _WATCHDOG.append(_Watchdog(conn))
    return _WATCHDOG[0]


def _act(factory: Callable[[str], Any], store: Any, job: dict[str, Any]) -> tuple[Any, Any]:
    """Run the job's faulted action; return the handle to go on with and what it returned.

    ``open`` builds a new handle over the directory (the old one was closed before the block);
    the handle is None when the open raised.
    """
    key, action = job["key"], job.get("action", "save")
    if action == "open":
        return factory(job["path"]), None
    if action == "load":
        return store, store.load(*key)
    if action == "delete":
        store.delete(*key)
        return store, None
    store.save(*key, job["new"])
    return store, None


def _fault(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    """One action (save, delete, load or open) under a fault plan; then a later save.

    With no plan (``None``) this is the counting run: the reply's trace lists the operations.
    With ``"snapshot"`` the outcome carries the directory's tree as set up, before the action
    (``"initial"``): F2 hands a faulted trace to the power-loss explorer from there.
    """
    if (missing := _no_shim(job)) is not None:
        return missing
    store: Any = factory(job["path"])
    _setup(store, job["setup"])
    key = job["key"]
    opening = job.get("action") == "open"
    if opening:
        store.close()  # the committed state is on disk; the faulted open starts from it
        store = None
    initial = snapshot(job["path"]) if job.get("snapshot") else None
    plan: FaultPlan | None = job["plan"]
    bound: float = job["bound"]
    watch = _watchdog(conn)
    block, _ = tracing(job["path"], job.get("backend", "python"), fail=plan)
    outcome: dict[str, Any]
    with block as trace:
        watch.arm(bound, trace)
        start = time.monotonic()
        try:
            store, returned = _act(factory, store, job)
            outcome = {"raised": None, "returned": returned}
        except Exception as exc:  # the expected path, reported
            outcome = {"raised": _describe(exc)}
        finally:
            watch.disarm()
        outcome["seconds"] = time.monotonic() - start
        outcome["trace"] = list(trace)
    if initial is not None:
        outcome["initial"] = initial
    if opening and store is not None:
        # What the opened handle reads once the fault cleared: the committed values, or a lie.
        # The later save then takes a new handle: a library may fall back to a read-only
        # handle when opening for writing failed (SQLite does), loud on its first write.
        outcome["read"] = _read(store, [key, *job["setup"]])
        store.close()
        store = None
    conn.send(("faulted", outcome))
    if conn.recv() != "continue":
        _close_quietly(store)  # a store holding a lock until close must not keep it
        return ("later", None)
    return ("later", _later(factory, store, job, watch))


def _later(
    factory: Callable[[str], Any], store: Any, job: dict[str, Any], watch: _Watchdog
) -> dict[str, Any]:
    """The fault job's later save, watched: on the same handle (a new one after an open)."""
    key, later = job["key"], job["later"]
    watch.arm(job["bound"], [])
    try:
        if store is None:  # after a faulted open, a new handle must work once the fault cleared
            store = factory(job["path"])
        store.save(*key, later)
        result: dict[str, Any] = {"raised": None, "load": store.load(*key)}
    except Exception as exc:  # reported
        result = {"raised": _describe(exc)}
        if store is not None:  # the handle refused: fail-stop, if it stays loud and a reopen works
            result["fail-stop"] = _fail_stop(factory, store, job)
            store = None
    finally:
        watch.disarm()
    if store is not None:
        store.close()
    return result


def _close_quietly(store: Any) -> None:
    if store is not None:
        with contextlib.suppress(Exception):  # a close after a fault: nothing left to report
            store.close()


def _fail_stop(factory: Callable[[str], Any], store: Any, job: dict[str, Any]) -> dict[str, Any]:
    """After the later save raised on the faulted handle: what the handle and a reopen do.

    A fail-stop handle (LMDB after ``MDB_PANIC``) refuses every call until reopened: its load
    raises, or at least answers the committed value; the handle is closed, and a new one on the
    same directory must save and load the later value.
    """
    key, later = job["key"], job["later"]
    report: dict[str, Any] = {}
    try:
        report["load"] = store.load(*key)
    except Exception as exc:  # the expected answer of a fail-stop handle
        report["load"] = f"raised {_describe(exc)}"
    try:
        store.close()
    except Exception as exc:  # reported: a handle that cannot even close
        report["close"] = f"raised {_describe(exc)}"
    try:
        fresh = factory(job["path"])
    except Exception as exc:  # reported
        report["reopen"] = _describe(exc)
        return report
    try:
        fresh.save(*key, later)
        report["reopened"] = None
        report["reopened load"] = fresh.load(*key)
    except Exception as exc:  # reported
        report["reopened"] = _describe(exc)
    finally:
        _close_quietly(fresh)
    return report


def _record(factory: Callable[[str], Any], conn: Any, job: dict[str, Any]) -> Reply:
    if (missing := _no_shim(job)) is not None:
        return missing
    from ..powerloss._workers import record

    record(factory, job["path"], job["steps"], job["out"], job.get("backend", "python"))
    return ("recorded", job["out"])


_JOBS: dict[str, Callable[[Callable[[str], Any], Any, dict[str, Any]], Reply]] = {
    "crash": _crash,
    "loop": _loop,
    "verify": _verify,
    "fault": _fault,
    "record": _record,
    "batch": _batch,
    "listing": _listing,
}


def serve(conn: Any, spec: str) -> None:
    """Run in a worker process: build the factory from ``spec``, then serve jobs until told to stop.

    A job that raises is answered with ``("error", text)`` and the worker keeps serving.
    """
    quiet_child()
    try:
        factory = load_factory(spec)
    except Exception as exc:  # the parent reports it with the spec
        conn.send(("error", _describe(exc)))
        return
    conn.send(("ready", None))
    serve_jobs(conn, factory)


def serve_jobs(conn: Any, factory: Callable[[str], Any]) -> None:
    """Serve jobs from ``conn`` with ``factory`` until the parent says stop (None) or is gone.

    The loop of :func:`serve`, shared with the children of a warm template (``_zygote.py``),
    which inherit the factory their template built. A store that runs as a program (a driver,
    docs/drivers.md) is started holding this worker's end of ``conn``: the parent then knows it
    gone with the worker, and the crash point inside it reaches the parent through it. A driver
    that broke the protocol is answered ``("driver error", text)``, never as the store's doing.
    """
    from lance_offsets.conformance._driver import DriverError
    from lance_offsets.conformance._driver_proc import prepare_worker

    prepare_worker(factory, conn.fileno())
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to serve
            return
        if job is None:
            return
        try:
            reply = _JOBS[job["job"]](factory, conn, job)
        except Exception as exc:  # reported; the worker stays usable
            reply = ("error", _describe(exc))
        except DriverError as exc:  # the harness's problem: the parent raises it as such
            reply = (DRIVER_ERROR, str(exc))
        conn.send(reply)
