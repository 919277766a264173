"""Every call into the store, timed, in the process that runs a check (``_bounded.py`` starts it).

Once :func:`install` ran, every factory the process loads comes back :func:`watched`: opening a
handle, and every call on one (``load``, ``save``, ``close``, ``__enter__``...), goes through a
thin proxy that writes into a :class:`CallClock` shared with the process in charge when the call
started, on which thread, with what bound, and says what it is. A watchdog thread here reads the
clock: a call still running past its bound is reported, with the thread's stack and the store
calls before it, to the process in charge, which then stops this one (the hung thread cannot be
stopped from inside, and it may hold locks the next check would need). A thread that holds the
interpreter lock while it blocks stops the watchdog too: the process in charge then reads the
clock itself and takes the stacks from outside (``_hang.request_stack_dump``).

Without :func:`install` (``check_property`` called in the caller's own process) nothing is
wrapped and nothing is timed, except the helper process's calls, which ``_remote.py`` bounds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from ._capabilities import call_seconds_of
from ._hang import HangReport, Role, python_stack

__all__ = [
    "CallClock",
    "WatchedFactory",
    "helper_calls",
    "install",
    "installed",
    "marked",
    "watched",
    "watching",
]

#: Store calls remembered for a hang report.
_RECENT: Final = 8
#: How often the watchdog looks at the clock, seconds.
_TICK: Final = 0.1
#: Characters of a call's description the clock keeps.
TEXT_BYTES: Final = 240

# CallClock slots.
_STARTED, _ACTIVE, _BOUND = 0, 1, 2
_THREAD, _ROLE, _SEQ, _REMOTE = 0, 1, 2, 3
_ROLES: Final[dict[int, Role]] = {0: "", 1: "store", 2: "helper"}
_CODES: Final[dict[Role, int]] = {"": 0, "store": 1, "helper": 2}


class CallClock:
    """Shared memory: the running call's start, bound, thread, role and description.

    Written here before and after each store call, read by the process in charge without
    asking (a hung process cannot answer). ``times`` holds ``time.monotonic()`` values, the
    same clock in every process of a machine.
    """

    def __init__(self, times: Any, ids: Any, text: Any) -> None:
        self.times = times  # started (0: no call running), last activity, bound
        self.ids = ids  # thread, role code, call sequence number, remote (1: another process)
        self.text = text

    @classmethod
    def new(cls, ctx: Any) -> CallClock:
        """A clock in fresh shared memory of the multiprocess context ``ctx``."""
        return cls(ctx.RawArray("d", 3), ctx.RawArray("Q", 4), ctx.RawArray("c", TEXT_BYTES))

    def parts(self) -> tuple[Any, Any, Any]:
        """What a child process is given to rebuild the clock."""
        return self.times, self.ids, self.text

    # -- read (either side) --------------------------------------------------------------------

    @property
    def started(self) -> float:
        """When the running call started; 0.0 when none runs."""
        return float(self.times[_STARTED])

    @property
    def active(self) -> float:
        """The last time a store call started or ended."""
        return float(self.times[_ACTIVE])

    @property
    def bound(self) -> float:
        return float(self.times[_BOUND])

    @property
    def thread(self) -> int:
        return int(self.ids[_THREAD])

    @property
    def role(self) -> Role:
        return _ROLES.get(int(self.ids[_ROLE]), "store")

    @property
    def seq(self) -> int:
        return int(self.ids[_SEQ])

    @property
    def remote(self) -> bool:
        """Whether the running call is made by a helper process (which bounds it itself)."""
        return bool(self.ids[_REMOTE])

    @property
    def call(self) -> str:
        return bytes(self.text.value).decode("utf-8", "replace")

    # -- write (the checking side) ---------------------------------------------------------------

    def begin(self, call: _Call) -> None:
        """``call`` runs (again, for an outer call a helper's inside it has ended)."""
        self.times[_STARTED] = 0.0  # not running while the fields change
        self.text.value = call.text.encode("utf-8", "replace")[: TEXT_BYTES - 1]
        self.ids[_THREAD] = call.thread
        self.ids[_ROLE] = _CODES[call.role]
        self.ids[_REMOTE] = int(call.remote)
        self.ids[_SEQ] = self.ids[_SEQ] + 1
        self.times[_BOUND] = call.bound
        self.times[_ACTIVE] = time.monotonic()
        self.times[_STARTED] = call.started  # last: it counts as running once all is said

    def end(self) -> None:
        self.times[_STARTED] = 0.0
        self.times[_ACTIVE] = time.monotonic()

    def touch(self) -> None:
        """Progress that is no store call (a new example starts)."""
        self.times[_ACTIVE] = time.monotonic()


@dataclass(frozen=True)
class _Call:
    """One timed call, as :class:`CallClock` shows it while it runs."""

    text: str
    role: Role
    bound: float
    remote: bool
    started: float
    thread: int


class _State(threading.local):
    def __init__(self) -> None:
        self.calls: list[_Call] = []  # this thread's timed calls, outermost first
        self.helper = False


class _Installed:
    """What :func:`install` set up in this process."""

    def __init__(self, clock: CallClock) -> None:
        self.clock = clock
        self.recent: deque[str] = deque(maxlen=_RECENT)
        self.tally: Any = None  # the running check's Tally (its steps and running call)
        self.local = _State()
        self.reported = 0  # the call sequence number last reported hung


_INSTALLED: list[_Installed] = []


def installed() -> bool:
    """Whether store calls are timed in this process."""
    return bool(_INSTALLED)


def install(clock: CallClock, report: Callable[[HangReport], None]) -> None:
    """Time every store call of this process on ``clock``; ``report`` hangs (from a thread)."""
    if _INSTALLED:
        raise RuntimeError("store calls are timed in this process already")
    state = _Installed(clock)
    _INSTALLED.append(state)
    threading.Thread(
        target=_watchdog, args=(state, report), name="conformance-watchdog", daemon=True
    ).start()


def _watchdog(state: _Installed, report: Callable[[HangReport], None]) -> None:
    clock = state.clock
    while True:
        time.sleep(_TICK)
        started, seq = clock.started, clock.seq
        if not started or clock.remote or seq == state.reported:
            continue  # a helper process's call is bounded where it is made (_remote.py)
        seconds = time.monotonic() - started
        if seconds <= clock.bound:
            continue
        state.reported = seq
        tally = state.tally
        report(
            HangReport(
                call=clock.call,
                role=clock.role,
                seconds=seconds,
                bound=clock.bound,
                stack=python_stack(clock.thread),
                recent=tuple(state.recent),
                running=str(getattr(tally, "running", "") or ""),
                steps=tuple(getattr(tally, "steps", ()) or ()),
            )
        )


@contextlib.contextmanager
def watching(tally: Any) -> Iterator[None]:
    """While a check runs: its tally's steps and running call go into hang reports."""
    if not _INSTALLED:
        yield
        return
    state = _INSTALLED[0]
    state.tally, before = tally, state.tally
    state.recent.clear()
    try:
        yield
    finally:
        state.tally = before


@contextlib.contextmanager
def helper_calls() -> Iterator[None]:
    """Handles opened in this block are helpers, never the store under test.

    A hang of theirs makes the property unverified, not failed.
    """
    if not _INSTALLED:
        yield
        return
    local = _INSTALLED[0].local
    local.helper, before = True, local.helper
    try:
        yield
    finally:
        local.helper = before


@contextlib.contextmanager
def marked(call: str, role: Role, bound: float, *, remote: bool = False) -> Iterator[None]:
    """Time one store call.

    A call inside another (a hook's read inside a save) belongs to the outer one, unless it is
    a helper's inside the store's (H3's probe reading in a hook): then the helper's is timed on
    its own while it runs, so a probe that waits for the store's own lock is the helper's hang.
    """
    if not _INSTALLED:
        yield
        return
    state = _INSTALLED[0]
    calls = state.local.calls
    own = not calls or calls[-1].role != role or calls[-1].remote != remote
    if own:
        timed = _Call(call, role, bound, remote, time.monotonic(), threading.get_ident())
        calls.append(timed)
        state.clock.begin(timed)
    outcome = "raised"
    try:
        yield
        outcome = "returned"
    finally:
        if own:
            calls.pop()
            if calls:
                # The outer call runs on; the time the helper's call took inside it is not the
                # store's (the hook waited for our probe), so its start moves by that much.
                spent = time.monotonic() - timed.started
                calls[-1] = replace(calls[-1], started=calls[-1].started + spent)
                state.clock.begin(calls[-1])
            else:
                state.clock.end()
        state.recent.append(f"{call} {outcome}")


def _shown(args: tuple[Any, ...]) -> str:
    text = ", ".join(repr(a) for a in args)
    return text if len(text) <= 120 else text[:117] + "..."


class _Watched:
    """A handle whose every call is timed (:func:`marked`); otherwise the handle itself."""

    def __init__(self, store: Any, label: str, role: Role, bound: float) -> None:
        self._lance_store = store
        self._lance_label = label
        self._lance_role = role
        self._lance_bound = bound

    def _lance_call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with marked(
            f"{self._lance_label}.{name}({_shown(args)})", self._lance_role, self._lance_bound
        ):
            return fn(*args)

    def _lance_same(self, result: Any) -> Any:
        """``result`` as this proxy when it is the wrapped handle itself, else watched too."""
        if result is self._lance_store:
            return self
        if result is None or not hasattr(result, "load"):
            return result
        return _Watched(result, self._lance_label, self._lance_role, self._lance_bound)

    def load(self, *args: Any) -> Any:
        return self._lance_call("load", self._lance_store.load, args)

    def save(self, *args: Any) -> Any:
        return self._lance_call("save", self._lance_store.save, args)

    def delete(self, *args: Any) -> Any:
        return self._lance_call("delete", self._lance_store.delete, args)

    def list_all(self) -> Any:
        return self._lance_call("list_all", self._lance_store.list_all, ())

    def close(self) -> Any:
        return self._lance_call("close", self._lance_store.close, ())

    def __enter__(self) -> Any:
        return self._lance_same(self._lance_call("__enter__", self._lance_store.__enter__, ()))

    def __exit__(self, *exc_info: Any) -> Any:
        return self._lance_call("__exit__", self._lance_store.__exit__, exc_info)

    def __getattr__(self, name: str) -> Any:
        # save_many, flush, add_hook and whatever else the store has (or lacks) show through.
        value = getattr(self._lance_store, name)
        if name.startswith("__") or not callable(value):
            return value

        def timed(proxy: _Watched, *args: Any) -> Any:
            result = proxy._lance_call(name, value, args)
            return proxy._lance_same(result) if name == "add_hook" else result

        timed.__name__ = timed.__qualname__ = name
        return types.MethodType(timed, self)  # a bound method, as the handle's own would be

    def __repr__(self) -> str:
        return repr(self._lance_store)


class WatchedFactory:
    """``factory`` with its opens timed and its handles watched; capabilities read through."""

    def __init__(self, factory: Callable[[str], Any]) -> None:
        self.__wrapped__ = factory
        self._lance_bound = call_seconds_of(factory)
        self._lance_opened = 0
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(factory, name, None)
            if value is not None:
                setattr(self, name, value)

    def _lance_role(self) -> Role:
        return "helper" if _INSTALLED and _INSTALLED[0].local.helper else "store"

    def __call__(self, path: str) -> Any:
        self._lance_opened += 1
        label = f"h{self._lance_opened}"
        role = self._lance_role()
        with marked(f"factory({os.path.basename(path)!r}) -> {label}", role, self._lance_bound):
            store = self.__wrapped__(path)
        return _Watched(store, label, role, self._lance_bound)

    def _lance_named(self, opener: Callable[..., Any]) -> Callable[..., Any]:
        def open_named(path: str, name: str) -> Any:
            self._lance_opened += 1
            label = f"h{self._lance_opened}"
            role = self._lance_role()
            with marked(f"open_named(path, {name!r}) -> {label}", role, self._lance_bound):
                store = opener(path, name)
            return _Watched(store, label, role, self._lance_bound)

        return open_named

    def _lance_damage(self, name: str, damage: Callable[..., Any]) -> Callable[..., Any]:
        def damaged(*args: Any) -> Any:
            with marked(f"damage {name!r}{args!r}", "store", self._lance_bound):
                return damage(*args)

        return damaged

    def __getattr__(self, name: str) -> Any:
        # Reached only for names not set above: the capability attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.__wrapped__, name)
        if name == "open_named" and callable(value):
            return self._lance_named(value)
        if name == "damage" and isinstance(value, dict):
            return {key: self._lance_damage(key, fn) for key, fn in value.items()}
        return value

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


_WATCHED: dict[int, tuple[object, WatchedFactory]] = {}


def watched(factory: Callable[[str], Any]) -> Callable[[str], Any]:
    """``factory`` timed (when :func:`install` ran here; else itself); one wrapper per factory."""
    if not _INSTALLED or isinstance(factory, WatchedFactory):
        return factory
    kept = _WATCHED.get(id(factory))
    if kept is None or kept[0] is not factory:
        kept = (factory, WatchedFactory(factory))
        _WATCHED[id(factory)] = kept
    return kept[1]
