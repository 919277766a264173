"""What one run of the suite leaves outside its own memory, and its removal when interrupted.

A run (``lance-offsets check``, or one property under pytest) makes scratch directories and
starts processes: workers, warm templates, verifiers, a fork server, the store's own server. Each
part reaps what it starts and removes what it makes on its way out, also when a
:class:`KeyboardInterrupt` unwinds it. This scope is the backstop for whatever a part could not:
every scratch directory of the run lives under :attr:`RunScope.root` (each part is given it as its
working directory), and when the run ends by an
exception the scope kills every process started since it opened and removes the root. A run that
ends normally keeps the root only if a failure kept its evidence there (a crash directory, a
concurrent history), which the report names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["RunScope", "children", "descendants", "run_scope"]

#: Seconds to wait for killed processes to be gone before the scope gives up on them.
GONE_SECONDS: Final = 2.0


def _proc_parents() -> dict[int, int] | None:
    """Every process's parent, read from /proc; None where there is no /proc (macOS, Windows)."""
    if not os.path.isdir("/proc/self"):
        return None
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # gone meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses; the fields after its last
        # ")" are fixed: state, then the parent's pid.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    return parents


def children() -> set[int]:
    """The live processes this one started itself (not their children)."""
    parents = _proc_parents()
    if parents is None:
        return {child.pid for child in _known_children() if child.pid is not None}
    return {pid for pid, parent in parents.items() if parent == os.getpid()}


def descendants(pid: int | None = None) -> set[int]:
    """The live (not zombie) processes below ``pid`` (default: this process)."""
    root = os.getpid() if pid is None else pid
    parents = _proc_parents()
    if parents is None:
        return {child.pid for child in _known_children() if child.pid is not None}
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found


def _known_children() -> list[Any]:
    """Process objects this process started through multiprocess or multiprocessing."""
    import multiprocessing

    objects = list(multiprocessing.active_children())
    with contextlib.suppress(ImportError):
        import multiprocess

        objects += list(multiprocess.active_children())
    return objects


def _stop(before: set[int]) -> None:
    """Kill every process started below this one since ``before`` was taken; reap our own."""
    if sys.platform == "win32":
        for child in _known_children():
            with contextlib.suppress(OSError, ValueError):
                child.kill()
        return
    # Twice: a process may fork (a template making a worker) while the first pass kills.
    for _ in range(2):
        for pid in descendants() - before:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    objects = {child.pid: child for child in _known_children()}
    deadline = time.monotonic() + GONE_SECONDS
    while time.monotonic() < deadline:
        left = descendants() - before
        if not left:
            break
        for pid in left & set(objects):
            objects[pid].join(0.05)  # its owner's own reap, so its object knows it ended
        time.sleep(0.02)
    for child in objects.values():  # their zombies: reaped through their objects
        with contextlib.suppress(OSError, ValueError, AssertionError):
            child.join(0)


#: prctl(2)'s PR_SET_CHILD_SUBREAPER (Linux 3.4+).
_PR_SET_CHILD_SUBREAPER: Final = 36


def _subreaper(on: bool) -> bool:
    """Adopt (or stop adopting) orphaned descendants; whether the system let us (Linux only).

    A worker that dies before the processes it started leaves them to init, out of reach of
    :func:`descendants`; while this process is their subreaper they come to it instead, and
    an interrupted run can still find and kill them before it removes what they write to.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _reap_adopted() -> None:
    """Reap the zombies of orphans this process adopted (none of its own Process objects')."""
    parents = _proc_parents()
    if parents is None:
        return
    ours = {child.pid for child in _known_children()}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] == b"Z" and int(fields[1]) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(name), os.WNOHANG)


class RunScope:
    """A run's scratch root and the processes it had before it started.

    :ivar root: the directory every scratch directory of the run is made in.
    """

    def __init__(self, workdir: str | None = None) -> None:
        self.adopting = _subreaper(True)
        self.before = descendants()
        # Not the processes' TMPDIR: one that outlives the run (a fork server) would keep a
        # temporary directory that no longer exists, and hand it to every process it forks.
        self.root = tempfile.mkdtemp(prefix="lance-offsets-run-", dir=workdir)

    def close(self, *, interrupted: bool) -> None:
        """End the run: after an interruption remove everything; else keep kept evidence only."""
        try:
            if interrupted:
                _stop(self.before)
                shutil.rmtree(self.root, ignore_errors=True)
                from lance_offsets.stress.powerloss._campaign import remove_abandoned_states

                remove_abandoned_states()
                return
            with contextlib.suppress(OSError):  # not empty: a failure kept its evidence there
                os.rmdir(self.root)
        finally:
            if self.adopting:
                _subreaper(False)
                _reap_adopted()


@contextlib.contextmanager
def run_scope(workdir: str | None = None) -> Iterator[RunScope]:
    """A :class:`RunScope` for the block: cleaned as interrupted if the block raises."""
    scope = RunScope(workdir)
    try:
        yield scope
    except BaseException:
        scope.close(interrupted=True)
        raise
    scope.close(interrupted=False)
