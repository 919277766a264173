"""Properties checked at once (``check --workers N``): N worker processes, one property each.

Each worker is a spawned process that runs ``target(conn, *args)``: it receives a property ID
over its pipe, answers with ``("result", PropertyResult)`` (or ``("error", text)``), and stops
on None. Pipes and nothing else: no queues, so no semaphores for a resource tracker to account
for when Ctrl-C ends the workers mid-property (``concurrent.futures``' pool left it printing
``KeyError`` lines then). A worker that dies or breaks gets its property reported
``unverified``: the suite's own process failing is no verdict on the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lance_offsets._interrupt import raise_if_interrupted

from ._results import PropertyResult

__all__ = ["run_pool"]


def _broken(pid: str, why: str) -> PropertyResult:
    return PropertyResult(
        pid,
        "unverified",
        0.0,
        f"the worker process checking {pid} {why}: that is the suite's failure, not the store's",
    )


def _received(pid: str, kind: str, value: Any) -> PropertyResult:
    """A worker's answer as a result; a broken driver stops the run, naming it."""
    if kind == "result":
        result: PropertyResult = value
        return result
    if kind == "driver error":
        from ._driver import DriverError

        raise DriverError(value)
    return _broken(pid, f"failed: {value}")


def run_pool(
    target: Callable[..., None],
    args: Sequence[object],
    ids: Sequence[str],
    workers: int,
    *,
    started: Callable[[str], None] | None = None,
    finished: Callable[[PropertyResult], None] | None = None,
) -> dict[str, PropertyResult]:
    """Check ``ids`` over ``workers`` processes; every result, by ID, as each arrives."""
    from lance_offsets.stress.workers._procs import context, reap, start
    from multiprocess.connection import wait

    ctx = context()
    todo = list(ids)
    done: dict[str, PropertyResult] = {}
    busy: dict[Any, tuple[Any, str]] = {}  # connection -> (process, property it checks)
    procs: list[Any] = []

    def hand_out(conn: Any, proc: Any) -> None:
        if not todo:
            conn.send(None)
            return
        pid = todo.pop(0)
        conn.send(pid)
        busy[conn] = (proc, pid)
        if started:
            started(pid)

    def record(result: PropertyResult) -> None:
        done[result.id] = result
        if finished:
            finished(result)

    def start_worker() -> None:
        conn, theirs = ctx.Pipe()
        # Not a daemon: a property's check starts processes of its own.
        proc = ctx.Process(target=target, args=(theirs, *args), name="check-worker")
        start(proc)
        theirs.close()
        procs.append(proc)
        hand_out(conn, proc)

    try:
        for _ in range(min(workers, len(todo))):
            start_worker()
        while busy:
            ready = wait(list(busy), timeout=0.5)
            raise_if_interrupted()  # as in a serial run: nothing finished after a signal counts
            for conn in ready:
                proc, pid = busy.pop(conn)
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    proc.join(1.0)
                    record(_broken(pid, f"died (exit code {proc.exitcode})"))
                    if todo:
                        start_worker()  # in its place, for the properties still to check
                    continue
                record(_received(pid, kind, value))
                hand_out(conn, proc)
    finally:
        for proc in procs:
            reap(proc)
    return done
