"""H1-H3, post-commit hooks, on any store.

A store that has ``add_hook`` is tested as it is; any other is wrapped in
:class:`lance_offsets.HookedOffsetStore`, so the properties hold for the wrapper over that store
(its ``previous_offset`` after reopen depends on what the inner store persists). Hooks here are
plain recorders, so nothing depends on our hook classes.

Blame: a save that raises before any hook ran, without our injected hook failure anywhere in
its exception, is the store's own failure (an offset it cannot store, say): that example is void,
and the verdict's details name the property that covers it ("see C1") instead of blaming hooks.
Helper handles (H2's other handle, H3's probe) come from the workspace: in another process, or
skipped, when the store refuses a second handle in this process.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

from hypothesis import given, note, reject
from hypothesis import strategies as st

from lance_offsets._domain import MAX_OFFSET

from ._context import CheckContext
from ._hang import StoreHung
from ._machine import ContractViolation
from ._strategies import Key, keys, offsets
from ._workspace import RemoteHandle, close_quietly, helper_handle

__all__ = ["PROBE_SECONDS", "check_h1", "check_h2", "check_h3"]

#: Seconds H3's probe in another process may wait inside a hook: a store that holds its lock
#: while hooks run keeps it waiting until then (and the hook, and the save, wait for the probe).
PROBE_SECONDS: Final = 5.0


class _Recorder:
    """A hook that appends ``(name, info, value seen by the probe)`` to a shared log."""

    def __init__(self, name: str, log: list[tuple[str, Any, object]], probe: Any = None) -> None:
        self.name = name
        self.log = log
        self.probe = probe

    def on_commit(self, info: Any) -> None:
        seen: object = None
        if self.probe is not None:
            try:
                seen = self.probe.load(info.topic_id, info.consumer_id)
            except Exception as exc:  # the probe is ours: its failure must not look like a hook's
                seen = f"<probe raised {type(exc).__name__}>"
            except StoreHung as hung:  # waiting for a lock the store holds while hooks run
                seen = f"<probe raised: it hung for {hung.report.bound:g} s>"
        self.log.append((self.name, info, seen))


class _InjectedFailure(RuntimeError):
    """What :class:`_FailingHook` raises, so a save's error can be traced back to it."""


class _FailingHook:
    def on_commit(self, info: Any) -> None:
        raise _InjectedFailure(f"hook failure injected by the conformance suite at {info.offset}")


def _carries_injected(exc: object, depth: int = 0) -> bool:
    """Whether ``exc`` is, wraps, chains or lists our injected hook failure."""
    if isinstance(exc, _InjectedFailure):
        return True
    if depth > 4:
        return False
    inner: list[object] = []
    if isinstance(exc, BaseException):
        inner = [exc.__cause__, exc.__context__, *exc.args, *vars(exc).values()]
        inner.extend(getattr(exc, "exceptions", ()))  # an ExceptionGroup
    elif isinstance(exc, (list, tuple)):
        inner = list(exc)
    return any(_carries_injected(i, depth + 1) for i in inner if i is not None)


def _store_failed(
    ctx: CheckContext, call: str, exc: BaseException, log: list[tuple[str, Any, object]]
) -> None:
    """Void the example when ``call`` raised on its own, before any hook and not for one."""
    if not log and not _carries_injected(exc):
        ctx.workspace.outside(call, exc, "C1", when=" before any hook ran")


def _hooked(ctx: CheckContext, path: str, hooks: list[Any]) -> Any:
    store = ctx.workspace.open(path)
    if not hasattr(store, "add_hook"):
        from lance_offsets import HookedOffsetStore

        store = ctx.workspace.track(HookedOffsetStore(store))
    for hook in hooks:
        returned = store.add_hook(hook)
        store = store if returned is None else returned
    return store


def _program(ctx: CheckContext, extra: list[str]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    pool = st.lists(keys(ctx.caps), min_size=1, max_size=3, unique=True)

    def ops(pool_keys: list[Key]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
        key = st.sampled_from(pool_keys)
        op = st.one_of(
            st.tuples(st.just("save"), key, offsets(ctx.caps)),
            st.tuples(st.just("save"), key, offsets(ctx.caps)),
            st.tuples(st.just("delete"), key),
            st.tuples(st.just("load"), key),
            *(st.tuples(st.just(name), key, offsets(ctx.caps)) for name in extra),
        )
        return st.lists(op, min_size=1, max_size=12)

    return pool.flatmap(ops)


def _expect_commit(
    log: list[tuple[str, Any, object]],
    names: list[str],
    key: Key,
    offset: int,
    *,
    previous: int | None,
    pid: str,
) -> None:
    got = [name for name, _, _ in log]
    if got != names:
        raise ContractViolation(
            "H1", f"save{(*key, offset)} called hooks {got}, expected each once, in order: {names}"
        )
    for _, info, _ in log:
        if (info.topic_id, info.consumer_id, info.offset) != (*key, offset):
            raise ContractViolation("H1", f"save{(*key, offset)} gave the hook {info!r}")
        # A datetime (ours) or seconds since the epoch: the contract names the field, not its type.
        stamp = info.timestamp
        if isinstance(stamp, bool) or not isinstance(stamp, (datetime.datetime, int, float)):
            raise ContractViolation("H1", f"CommitInfo.timestamp is {stamp!r}, not a time")
        if pid == "H2" and info.previous_offset != previous:
            raise ContractViolation(
                "H2",
                f"save{(*key, offset)}: previous_offset={info.previous_offset!r}, but the "
                f"store held {previous!r} before",
                fact="previous-offset-wrong",
            )


def _run(ctx: CheckContext, pid: str, program: list[tuple[Any, ...]]) -> None:
    path = ctx.workspace.fresh_dir()
    log: list[tuple[str, Any, object]] = []
    names = ["first", "second"]
    store = _hooked(ctx, path, [_Recorder(n, log) for n in names])
    model: dict[Key, int] = {}
    for op, key, *rest in program:
        log.clear()
        if op == "save":
            call = f"save{(*key, rest[0])}"
            note(call)
            try:
                store.save(*key, rest[0])
            except Exception as exc:
                _store_failed(ctx, call, exc, log)
                names_run = [n for n, _, _ in log]
                raise ContractViolation(
                    pid,
                    f"{call} called hooks {names_run} and then raised {type(exc).__name__}: "
                    f"{exc}; hooks announced a commit the caller was told failed",
                    fact="hook-on-failed-save",
                ) from exc
            _expect_commit(log, names, key, rest[0], previous=model.get(key), pid=pid)
            model[key] = rest[0]
        elif op == "other":  # another handle on the same location, without hooks
            if _other_saves(ctx, path, key, rest[0]):
                model[key] = rest[0]
        elif op == "reopen":
            note("reopen: close the hooked store, open it again with the same hooks")
            store.close()
            try:
                store = _hooked(ctx, path, [_Recorder(n, log) for n in names])
            except Exception as exc:
                ctx.workspace.outside("factory(path)", exc, "P1", when=" on reopen")
        else:
            note(f"{op}{key}")
            try:
                getattr(store, op)(*key)
            except Exception as exc:  # C2/C4 judge load and delete; this example is void
                note(f"{op}{key} raised {type(exc).__name__}: {exc} (not a hook property)")
                reject()
            if op == "delete":
                model.pop(key, None)
            if log:
                raise ContractViolation(
                    "H1",
                    f"{op}{key} called hooks: {[n for n, _, _ in log]}",
                    fact="hook-on-non-save",
                )


def _other_saves(ctx: CheckContext, path: str, key: Key, offset: int) -> bool:
    """Save through a helper handle; False when the store allows none."""
    other = helper_handle(ctx, path, "H2's other handle")
    if other is None:
        return False
    call = f"save{(*key, offset)}"
    note(f"other handle: {call}")
    try:
        other.save(*key, offset)
    except Exception as exc:
        ctx.workspace.outside(call, exc, "C1", when=" on the other handle")
    finally:
        close_quietly(other)
    return True


def check_h1(ctx: CheckContext) -> str:
    """Each successful save calls every hook once, in order, with the right CommitInfo."""

    @ctx.settings
    @given(program=_program(ctx, []))
    def once_in_order(program: list[tuple[Any, ...]]) -> None:
        try:
            _run(ctx, "H1", program)
        finally:
            ctx.workspace.close_all()

    return ctx.workspace.run(once_in_order)


def check_h2(ctx: CheckContext) -> str:
    """previous_offset is what the store held, across deletes, other handles and reopens."""
    extra = ["reopen", "other"] if ctx.caps.persistent else []

    @ctx.settings
    @given(program=_program(ctx, extra))
    def previous(program: list[tuple[Any, ...]]) -> None:
        try:
            _run(ctx, "H2", program)
        finally:
            ctx.workspace.close_all()

    within = "" if ctx.caps.persistent else "checked within one handle only: not persistent"
    return ctx.workspace.run(previous, within)


def _commit_of(exc: BaseException, key: Key) -> Any:
    """The CommitInfo for ``key`` the exception carries (a hook failure after a commit), or None."""
    for c in [*vars(exc).values(), *exc.args]:
        if (getattr(c, "topic_id", None), getattr(c, "consumer_id", None)) == key and hasattr(
            c, "offset"
        ):
            return c
    return None


def _refused_save_calls_no_hook(store: Any, log: list[Any], key: Key, offset: object) -> None:
    """A save the store refuses (bad argument, closed handle) must call no hook."""
    log.clear()
    note(f"save{(*key, offset)}  # must be refused, or it committed")
    try:
        store.save(*key, offset)
    except Exception as exc:
        info = _commit_of(exc, key)
        if info is None:
            if log:
                names = [n for n, _, _ in log]
                raise ContractViolation(
                    "H3",
                    f"save{(*key, offset)} failed ({type(exc).__name__}) yet called {names}",
                    fact="hook-on-failed-save",
                ) from exc
        elif type(info.offset) is not int or not 0 <= info.offset <= MAX_OFFSET:
            raise ContractViolation(
                "H3",
                f"save{(*key, offset)} failed, yet hooks announced a commit of {info!r}",
                fact="hook-on-failed-save",
            ) from exc
    # Returned, or raised for a failing hook after a real commit: accepting is C7's or C8's
    # finding, and hooks after a real commit are right.


def check_h3(ctx: CheckContext) -> str:
    """Failed saves call no hook; hooks run after the commit; a failing hook is loud."""
    probe_hung: list[str] = []  # why the probe is no longer opened, once it hung

    @ctx.settings
    @given(
        key=keys(ctx.caps),
        first=offsets(ctx.caps),
        second=offsets(ctx.caps),
        bad=st.sampled_from([-1, True, 1.5, None, 2**64]),
    )
    def failures(key: Key, first: int, second: int, bad: object) -> None:
        path = ctx.workspace.fresh_dir()
        try:
            log: list[tuple[str, Any, object]] = []
            probe = _Recorder("first", log)
            store = _hooked(ctx, path, [probe, _FailingHook(), _Recorder("second", log)])
            probe.probe = _probe(ctx, path, probe_hung)  # opened after the one under test
            note("hooks: first (reads the key from another handle), failing, second")
            call = f"save{(*key, first)}"
            note(call)
            try:
                store.save(*key, first)
            except Exception as exc:
                _store_failed(ctx, call, exc, log)
                if getattr(_commit_of(exc, key), "offset", None) != first:
                    raise ContractViolation(
                        "H3",
                        f"a hook failed and save{(*key, first)} raised "
                        f"{type(exc).__name__}: {exc}, which does not carry the CommitInfo: "
                        "the caller cannot tell the offset was committed",
                        fact="hook-failure-mishandled",
                    ) from exc
            else:
                raise ContractViolation(
                    "H3",
                    "a hook raised and save() returned: hook failure lost",
                    fact="hook-failure-mishandled",
                )
            if [n for n, _, _ in log] != ["first", "second"]:
                raise ContractViolation(
                    "H3",
                    f"with a failing hook in the middle, hooks ran: {[n for n, _, _ in log]}",
                    fact="hook-failure-mishandled",
                )
            # Before the commit only if the probe sees it afterwards (else that is P2's finding),
            # and only if the probe could read at all inside the hook (a store may hold its lock
            # while hooks run, and then a probe in another process waits it out).
            seen = log[0][2]
            if isinstance(seen, str) and seen.startswith("<probe raised"):
                ctx.workspace.aside(
                    "probe failed",
                    f"H3's probe could not read inside the hook ({seen}): whether hooks run "
                    "after the commit was not checked",
                )
                if "hung" in seen and not probe_hung:  # each try would wait as long again
                    probe_hung.append(
                        "H3's probe hung once inside a hook, so it was not opened again: whether "
                        "hooks run after the commit was not checked"
                    )
            elif _probe_sees(probe.probe, key, first) and seen != first:
                raise ContractViolation(
                    "H3",
                    f"the hook ran before the commit: another handle read {seen!r}, saving {first}",
                    fact="hook-before-commit",
                )
            try:
                got = store.load(*key)
            except Exception as exc:
                ctx.workspace.outside(f"load{key}", exc, "C1", when=" after a committed save")
            if got != first:
                raise ContractViolation(
                    "H3",
                    f"after the hook failed, load{key} gave {got!r}; the commit of {first} "
                    "was lost",
                )
            log.clear()
            _refused_save_calls_no_hook(store, log, key, bad)
            store.close()
            note(f"closed; save{(*key, second)} must fail and call no hook")
            _refused_save_calls_no_hook(store, log, key, second)
        finally:
            ctx.workspace.close_all()

    return ctx.workspace.run(failures)


def _probe(ctx: CheckContext, path: str, hung: list[str]) -> Any:
    """H3's probe on ``path`` (a helper handle), or None: not persistent, refused, hung once."""
    if hung:
        ctx.workspace.aside("probe hung", hung[0])
        return None
    if not ctx.caps.persistent:
        return None
    # Here when the store allows: a probe in another process costs a process per run. A probe
    # here that waits for a lock the save holds while hooks run is a helper's hang: H3 is then
    # unverified, never failed (conformance/_hang.py).
    probe = helper_handle(ctx, path, "H3's probe")
    if isinstance(probe, RemoteHandle):
        # It may wait for a lock the store holds while hooks run, until its bound.
        probe.bound = min(ctx.caps.call_seconds, PROBE_SECONDS)
    return probe


def _probe_sees(probe: Any, key: Key, offset: int) -> bool:
    if probe is None:
        return False
    try:
        return bool(probe.load(*key) == offset)
    except Exception:  # our helper failed: say nothing about the hook
        return False
