"""Starting a driver store's process so that the suite sees it and it never outlives its owner.

A driver (docs/drivers.md) is a program: each handle is one process, started by whichever process
of the suite opens the handle (the check, a property's helper, a stress worker). Three things are
arranged at the start, none of which the driver's author has to do anything for:

* **It dies with its owner.** On Linux it runs through a small launcher that asks the kernel for
  SIGKILL when its parent dies (``PR_SET_PDEATHSIG``, kept across ``exec``): the crash campaign
  SIGKILLs a worker, and the driver that worker started is killed in the same instant instead of
  finishing a save after the judge looked. The death signal belongs to the thread that started
  the process, so processes are started from the main thread, or from one thread kept for it.
* **Its owner's pipe is held open by it** (the *lifeline*, a worker's end of its pipe to the
  campaign, inherited at the same descriptor number): the campaign waits for the end of file on
  its side after a kill, which comes only once the worker and every driver it started are gone,
  so no judge ever reads a directory a dying driver still writes. The same descriptor is where
  the syscall shim writes its crash-point message from inside the driver.
* **Its I/O is seen.** Where this process has the syscall shim loaded (every stress worker on
  Linux), the driver is started with the shim preloaded and a *channel* (two unnamed files,
  inherited): the traced block armed in the worker numbers, faults, stops and records the
  driver's calls as its own (``stress/seam/_shim.py``, :func:`attach_channel`).

The launcher is compiled with the shim (``_shim.build_launcher``); without a C compiler the
death signal is asked for from ``preexec_fn`` (slower: a full fork per start).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO, Any, Final

__all__ = ["DRIVER_ENV", "prepare_worker", "set_lifeline", "start"]

#: Set in every driver's environment to the protocol version the harness speaks.
DRIVER_ENV: Final = "LANCE_OFFSETS_DRIVER"
#: prctl(2)'s PR_SET_PDEATHSIG.
_PR_SET_PDEATHSIG: Final = 1

_LIFELINE: dict[int, int] = {}  # pid -> the descriptor every driver of that process inherits


def set_lifeline(fd: int) -> None:
    """Every driver this process starts from now on holds ``fd`` open (a worker's parent pipe)."""
    _LIFELINE[os.getpid()] = fd


def prepare_worker(factory: object, fd: int) -> None:
    """Ready a stress worker whose store is a driver: its lifeline, and its channel now.

    Now, not at the first start: a job may start its first driver inside an armed block (D3's
    recording opens the store there), and a shim armed on its own cannot join a channel.
    """
    if isinstance(getattr(factory, "exec_spec", None), str):
        set_lifeline(fd)
        _channel()


class _Channel:
    """This process's shim channel: the two unnamed files every driver it starts inherits."""

    def __init__(self, control: IO[bytes], records: IO[bytes], shim: str) -> None:
        self.control = control
        self.records = records
        self.shim = shim

    @property
    def fds(self) -> tuple[int, int]:
        return self.control.fileno(), self.records.fileno()


_CHANNELS: dict[int, _Channel | None] = {}


def _channel() -> _Channel | None:
    """The channel of this process (made on first use), or None where the shim is not loaded."""
    pid = os.getpid()
    if pid in _CHANNELS:
        return _CHANNELS[pid]
    channel = None
    from lance_offsets.stress.seam import _shim

    shim = _shim.build() if _shim.loaded() is not None else None
    if shim is not None:
        # Open for the life of the process: every driver it starts inherits them.
        control = tempfile.TemporaryFile()  # noqa: SIM115
        records = tempfile.TemporaryFile()  # noqa: SIM115
        if _shim.attach_channel(control.fileno(), records.fileno()):
            channel = _Channel(control, records, shim)
        else:
            control.close()
            records.close()
    _CHANNELS[pid] = channel
    return channel


def _launcher() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    from lance_offsets.stress.seam._shim import build_launcher

    return build_launcher()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _popen(argv: list[str], protocol: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env[DRIVER_ENV] = str(protocol)
    fds: list[int] = []
    channel = _channel()
    if channel is not None:
        from lance_offsets.stress.seam._shim import CHANNEL_ENV

        preload = env.get("LD_PRELOAD", "")
        if channel.shim not in preload.split():
            env["LD_PRELOAD"] = f"{channel.shim} {preload}".strip()
        env[CHANNEL_ENV] = "{},{}".format(*channel.fds)
        fds.extend(channel.fds)
    else:
        env.pop("LANCE_OFFSETS_SHIM_CHANNEL", None)  # a worker's own, never a stranger's
    lifeline = _LIFELINE.get(os.getpid())
    if lifeline is not None:
        fds.append(lifeline)
    command = argv
    preexec: Callable[[], None] | None = None
    launcher = _launcher()
    if launcher is not None:
        command = [launcher, str(os.getpid()), *argv]
    elif sys.platform.startswith("linux"):
        preexec = _die_with_parent
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        pass_fds=tuple(fds),
        preexec_fn=preexec,  # noqa: PLW1509 - only without the launcher: prctl, nothing else
        bufsize=0,
    )


class _Starter:
    """A thread kept to start drivers for threads that may end (their death signal is theirs)."""

    def __init__(self) -> None:
        self.requests: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        threading.Thread(target=self._run, name="lance-offsets-driver-starter", daemon=True).start()

    def _run(self) -> None:
        while True:
            job, answer = self.requests.get()
            try:
                answer.put((True, job()))
            except BaseException as exc:  # handed back to the thread that asked
                answer.put((False, exc))

    def call(self, job: Callable[[], Any]) -> Any:
        answer: queue.Queue[Any] = queue.Queue()
        self.requests.put((job, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value


_STARTERS: dict[int, _Starter] = {}
_STARTERS_LOCK = threading.Lock()


def start(argv: list[str], protocol: int) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start the driver ``argv``; its process and the file its stderr goes to.

    :raises OSError: the program could not be started.
    """
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the driver's, closed with its handle
    try:
        if threading.current_thread() is threading.main_thread():
            proc = _popen(argv, protocol, stderr)
        else:
            with _STARTERS_LOCK:
                starter = _STARTERS.get(os.getpid())
                if starter is None:
                    starter = _STARTERS[os.getpid()] = _Starter()
            proc = starter.call(lambda: _popen(argv, protocol, stderr))
    except BaseException:
        with contextlib.suppress(OSError):
            stderr.close()
        raise
    return proc, stderr
