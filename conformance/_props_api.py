"""C7 (domain errors change nothing) and C8 (close and context manager), as Hypothesis tests.

C8, precisely: (1) ``with factory(path) as s`` gives a usable store; (2) after the block, and
after ``close()``, a second ``close()`` does not raise; (3) after close, ``load``, ``save``,
``delete`` and ``list_all`` each raise (any exception), and a save attempted after close changes
nothing a new handle can see; (4) an exception inside the ``with`` block propagates (``__exit__``
does not swallow it) and the handle is closed; (5) with ``persistent``, what was saved inside the
block is visible to a new handle after it, and closing one handle leaves another open handle on the
same location working.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st

from ._context import CheckContext
from ._machine import ContractViolation
from ._strategies import CONTRACT_MAX, Key, bad_values, keys, offsets, wrong_types
from ._workspace import close_quietly, helper_handle

__all__ = ["check_c7", "check_c8"]

_ARG_NAMES = ("topic_id", "consumer_id", "offset")


def _committed(ctx: CheckContext) -> st.SearchStrategy[dict[Key, int]]:
    return st.dictionaries(keys(ctx.caps), offsets(ctx.caps), max_size=3)


def _fill(ctx: CheckContext, store: Any, committed: dict[Key, int]) -> None:
    for key, offset in committed.items():
        call = f"save{(*key, offset)}"
        note(call)
        try:
            store.save(*key, offset)
        except Exception as exc:  # a valid save failing is C1's finding, not this property's
            ctx.workspace.outside(call, exc, "C1")


def check_c7(ctx: CheckContext) -> str:
    """Every wrong type raises TypeError, every out-of-range int ValueError; nothing changes."""

    @ctx.settings
    @given(committed=_committed(ctx), data=st.data())
    def domain(committed: dict[Key, int], data: st.DataObject) -> None:
        path = ctx.workspace.fresh_dir()
        store = ctx.workspace.open(path)
        try:
            _fill(ctx, store, committed)
            target = data.draw(
                st.sampled_from(sorted(committed)) if committed else keys(ctx.caps), label="key"
            )
            valid: list[object] = [*target, data.draw(offsets(ctx.caps), label="offset")]
            # Every operation, every argument, both kinds of badness: 14 calls per example.
            for op, arity in (("save", 3), ("load", 2), ("delete", 2)):
                for where in range(arity):
                    for kind in ("type", "range"):
                        args: list[object] = valid[:arity]
                        if kind == "type":
                            args[where] = data.draw(wrong_types(), label="wrong type")
                            expected: type[Exception] = TypeError
                        else:
                            limit = CONTRACT_MAX[_ARG_NAMES[where]]
                            args[where] = data.draw(bad_values(limit), label="out of range")
                            expected = ValueError
                        _refused(ctx, store, path, committed, op=op, args=args, expected=expected)
        finally:
            ctx.workspace.close_all()

    return ctx.workspace.run(domain)


def _refused(
    ctx: CheckContext,
    store: Any,
    path: str,
    committed: dict[Key, int],
    *,
    op: str,
    args: list[object],
    expected: type[Exception],
) -> None:
    call = f"{op}({', '.join(map(repr, args))})"
    before = _observe(ctx, store, path, committed)
    note(call)
    try:
        getattr(store, op)(*args)
    except expected:
        pass
    except Exception as exc:
        raise ContractViolation(
            "C7", f"{call} raised {type(exc).__name__}: {exc}; expected {expected.__name__}"
        ) from exc
    else:
        fact = "wrong-type-accepted" if expected is TypeError else "out-of-range-accepted"
        raise ContractViolation("C7", f"{call} returned; expected {expected.__name__}", fact=fact)
    after = _observe(ctx, store, path, committed)
    for what, was in before.items():
        if after[what] != was:
            raise ContractViolation(
                "C7",
                f"after {call} raised, {what} gave {after[what]!r}; before it: {was!r}",
                fact="refused-call-changed-state",
            )


def _attempt(fn: Any, *args: object) -> object:
    try:
        return fn(*args)
    except Exception as exc:  # an error is an observation too; it must not change either
        return f"<raised {type(exc).__name__}>"


def _observe(ctx: CheckContext, store: Any, path: str, committed: dict[Key, int]) -> dict[str, Any]:
    """What the store shows, on this handle and (persistent) on a new one.

    C7 compares this before and after a refused call: the call must change nothing, whatever the
    store showed before (so a store broken elsewhere is not blamed here). The new handle is a
    helper: in another process, or skipped, when the store refuses a second one here.
    """
    seen: dict[str, Any] = {f"load{k}": _attempt(store.load, *k) for k in sorted(committed)}
    seen["list_all()"] = _attempt(store.list_all)
    if ctx.caps.persistent:
        other = helper_handle(ctx, path, "C7's view from a new handle")
        if other is not None:
            try:
                seen["list_all() on a new handle"] = _attempt(other.list_all)
            finally:
                close_quietly(other)
    return seen


def _saved_in_block_survives(other: Any, committed: dict[Key, int]) -> None:
    for key, offset in sorted(committed.items()):
        got = other.load(*key)
        if got != offset:
            raise ContractViolation(
                "C8",
                f"save{(*key, offset)} inside a with block; after it, a new handle loads "
                f"{got!r}: close() lost the commit",
            )


def _must_raise(what: str, fn: Any, *args: object) -> None:
    try:
        fn(*args)
    except Exception:
        return
    raise ContractViolation(
        "C8", f"{what} after close() returned instead of raising", fact="closed-handle-works"
    )


def check_c8(ctx: CheckContext) -> str:
    """Close is idempotent and final; the context manager closes and never swallows errors."""

    @ctx.settings
    @given(committed=_committed(ctx), late=st.tuples(keys(ctx.caps), offsets(ctx.caps)))
    def closing(committed: dict[Key, int], late: tuple[Key, int]) -> None:
        path = ctx.workspace.fresh_dir()
        try:
            with ctx.workspace.open(path) as store:
                if not hasattr(store, "save"):
                    raise ContractViolation("C8", f"__enter__ returned {store!r}, not a store")
                _fill(ctx, store, committed)
            note("with block left")
            _closed_refuses(store, late)
            # One handle at a time up to the last part: a store may allow one per process.
            failing = ctx.workspace.open(path)
            if not _exit_propagates(failing):
                raise ContractViolation("C8", "__exit__ swallowed an exception raised in the block")
            _must_raise("list_all() (after a with block that raised)", failing.list_all)
            if ctx.caps.persistent:
                other = ctx.workspace.open(path)
                _saved_in_block_survives(other, committed)
                _closing_another_keeps(ctx, path, other, late)
        finally:
            ctx.workspace.close_all()

    return ctx.workspace.run(closing)


def _closing_another_keeps(ctx: CheckContext, path: str, other: Any, late: tuple[Key, int]) -> None:
    first = helper_handle(ctx, path, "C8's close of a second handle")
    if first is None:
        return
    first.close()
    note("a second handle closed; the first must still work")
    key, offset = late
    call = f"save{(*key, offset)}"
    try:
        other.save(*key, offset)
    except Exception as exc:
        ctx.workspace.outside(call, exc, "C1", when=" on the handle left open")
    if other.load(*key) != offset:
        raise ContractViolation("C8", "closing one handle broke another open handle")


class _Marker(Exception):
    pass


def _raise_marker() -> None:
    raise _Marker


def _exit_propagates(store: Any) -> bool:
    try:
        with store:
            _raise_marker()
    except _Marker:
        return True
    return False


def _closed_refuses(store: Any, late: tuple[Key, int]) -> None:
    try:
        store.close()
    except Exception as exc:
        raise ContractViolation(
            "C8", f"close() after the with block raised {type(exc).__name__}: {exc}"
        ) from exc
    key, offset = late
    _must_raise(f"load{key}", store.load, *key)
    _must_raise(f"save{(*key, offset)}", store.save, *key, offset)
    _must_raise(f"delete{key}", store.delete, *key)
    _must_raise("list_all()", store.list_all)
