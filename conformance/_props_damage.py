"""F1, corruption is loud: damage the stored bytes, then read, cold and warm.

Generic damage needs no help from the store: walk every non-empty file under the location and
empty it, cut it to half its length, or overwrite it with garbage of the same length. The garbage
is ``0xff`` bytes (never valid UTF-8, and it destroys any magic header) or ``?`` characters (no
digit, no letter, no JSON, hex or base64 value). Format-aware damage comes from the factory's
``damage`` mapping. After damage, opening, ``load`` and ``list_all`` may each raise (any
exception), or return the committed values; never None or a missing entry for a committed key,
never a number nobody saved.

Cold: every handle is closed while the bytes are damaged, then a new handle reads. Warm: handle A
saves and loads every key and stays open; handle B commits a newer value of each and closes; the
bytes are damaged; A must raise or give B's values. A store whose open handle falls back to the
value it remembers when the file stops parsing ("last known good") hands out an offset older than
what was committed: the consumer replays, silently. A lives in another process when the store has
an import spec and claims ``shared``, so B never needs a second handle in this process (LMDB,
RocksDB refuse one), and a store that crashes on bytes damaged under an open mapping (SIGBUS)
takes down only that child: dying is loud. Otherwise A is here and B is a helper handle (see
``_workspace``). For the same reason the cold variant's new handle reads in that child too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Final

from hypothesis import example, given, note, reject
from hypothesis import strategies as st

from ._context import CheckContext, Unverified
from ._machine import ContractViolation
from ._remote import RemoteError
from ._strategies import Key, keys, offsets
from ._workspace import RemoteHandle, close_quietly

__all__ = ["GENERIC_DAMAGE", "check_f1", "stored_files"]

#: What the enumerated examples commit before damaging: two keys, so a store with a file per key
#: has two files to damage one at a time and together.
_ENUMERATED_COMMITS: Final = {(1, 23): 5, (4, 56): 7_890_123}

#: Generic damage: name -> new bytes from the old ones.
GENERIC_DAMAGE: Final[dict[str, Callable[[bytes], bytes]]] = {
    "emptied": lambda old: b"",
    "cut to half": lambda old: old[: len(old) // 2],
    "0xff garbage": lambda old: b"\xff" * len(old),
    "'?' garbage": lambda old: b"?" * len(old),
}


def stored_files(path: str) -> list[str]:
    """Every non-empty regular file under ``path``, sorted (empty ones cannot be damaged)."""
    found = []
    for folder, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            if os.path.isfile(full) and os.path.getsize(full) > 0:
                found.append(full)
    return sorted(found)


def _damage_file(path: str, how: str) -> None:
    with open(path, "rb") as file:
        old = file.read()
    with open(path, "wb") as file:
        file.write(GENERIC_DAMAGE[how](old))


def _judge(ctx: CheckContext, path: str, committed: dict[Key, int], what: str) -> None:
    """Cold: a new handle reads the damaged store, in another process when the store allows."""
    # A store that maps its file (LMDB) may die of SIGBUS on damaged bytes: in a child that is a
    # loud failure, here it would end the whole run.
    spec = ctx.spec if ctx.caps.shared else None
    ctx.settings.tally.running = f"a new handle opening and reading the store after {what}"
    try:
        store: Any = ctx.workspace.remote_handle(spec, path) if spec else ctx.workspace.open(path)
    except Exception as exc:
        note(f"opening raised {type(exc).__name__}: loud, fine")
        return
    try:
        _judge_handle(store, committed, what, who="a new handle's ")
    finally:
        # Closed before the next damage is judged: a store may allow one handle at a time.
        if spec:
            _close_remote(ctx, store)
        else:
            close_quietly(store)


def _close_remote(ctx: CheckContext, store: Any) -> None:
    try:
        store.close()
    except Exception:  # the child died on the damage, or its close raised: start afresh
        ctx.workspace.stop_remote()


def _judge_handle(
    store: Any,
    committed: dict[Key, int],
    what: str,
    *,
    who: str,
    stale: dict[Key, int] | None = None,
) -> None:
    """``store`` must raise or give ``committed``; ``stale``: what it saved, replaced since."""
    stale = stale or {}
    for key, offset in sorted(committed.items()):
        try:
            got = store.load(*key)
        except Exception as exc:
            note(f"{who}load{key} raised {type(exc).__name__}: loud, fine")
            if isinstance(store, RemoteHandle) and not isinstance(exc, RemoteError):
                return  # the process holding the handle died (on the damage): nothing to ask
            continue
        if got != offset:
            if key in stale and got == stale[key]:
                nobody = (
                    f"the value this warm handle saved itself before another handle committed "
                    f"{offset}: it fell back to a stale value it remembered instead of raising"
                )
                fact = "warm-fallback"
            elif got is None:
                nobody, fact = "None for a committed key", "damage-read-as-absent"
            else:
                nobody, fact = "a number nobody saved", "damage-read-as-value"
            raise ContractViolation(
                "F1",
                f"after {what}, {who}load{key} returned {got!r} ({nobody}); committed {offset}",
                fact=fact,
            )
    try:
        listing: Any = store.list_all()
    except Exception as exc:
        note(f"{who}list_all() raised {type(exc).__name__}: loud, fine")
        return
    wrong = {k: v for k, v in dict(listing).items() if committed.get(k) != v}
    missing = sorted(set(committed) - set(listing))
    if wrong or missing:
        stale_ones = {k: v for k, v in wrong.items() if stale.get(k) == v}
        because = f" (stale values this handle saved before: {stale_ones!r})" if stale_ones else ""
        fact = (
            "warm-fallback"
            if stale_ones
            else "damage-read-as-value"
            if wrong
            else "damage-read-as-absent"
        )
        raise ContractViolation(
            "F1",
            f"after {what}, {who}list_all() silently gave wrong entries {wrong!r}{because} and "
            f"dropped committed keys {missing!r}; committed {committed!r}",
            fact=fact,
        )


def _save_all(ctx: CheckContext, store: Any, values: dict[Key, int], who: str = "") -> None:
    for key, offset in sorted(values.items()):
        call = f"save{(*key, offset)}"
        note(f"{who}{call}")
        try:
            store.save(*key, offset)
        except Exception as exc:
            ctx.workspace.outside(call, exc, "C1")


def _commit(ctx: CheckContext, committed: dict[Key, int], *, noted: bool = True) -> str:
    path = ctx.workspace.fresh_dir()
    with ctx.workspace.open(path) as store:
        if noted:
            _save_all(ctx, store, committed)
        else:
            for key, offset in committed.items():
                store.save(*key, offset)
    ctx.workspace.close_all()
    return path


#: One kind of damage: ``("generic", how)`` (:data:`GENERIC_DAMAGE`) or ``("aware", name)``
#: (the factory's ``damage`` mapping).
Kind = tuple[str, str]
#: Damages a store under a path, one way after another: yields what it did each time and puts
#: the bytes back before the next.
Damages = Callable[[str], Iterator[str]]


def _kinds(ctx: CheckContext, generic: bool) -> list[Kind]:
    """Every kind of damage F1 can do to this store, in a fixed order."""
    found = [("generic", how) for how in sorted(GENERIC_DAMAGE)] if generic else []
    return found + [("aware", name) for name in sorted(ctx.caps.damage)]


def _drawn(
    ctx: CheckContext, committed: dict[Key, int], data: st.DataObject, generic: bool
) -> Damages:
    """One damage, as Hypothesis chooses."""

    def damage(path: str) -> Iterator[str]:
        kinds = [*(["generic"] if generic else []), *(["aware"] if ctx.caps.damage else [])]
        if data.draw(st.sampled_from(kinds), label="damage") == "generic":
            files = stored_files(path)
            if not files:  # a warm store may hold everything in memory until close
                yield "no damage: the store had no files yet"
                return
            how = data.draw(st.sampled_from(sorted(GENERIC_DAMAGE)), label="how")
            chosen = data.draw(
                st.one_of(st.just(files), st.sampled_from(files).map(lambda f: [f])),
                label="files",
            )
            for file in chosen:
                _damage_file(file, how)
            shown = [os.path.relpath(f, path) for f in chosen]
            yield f"{how} damage to {shown} (of {len(files)} files)"
            return
        name = data.draw(st.sampled_from(sorted(ctx.caps.damage)), label="damage name")
        key = data.draw(st.sampled_from(sorted(committed)), label="damaged key")
        ctx.caps.damage[name](path, key)
        yield f"format-aware damage {name!r} to key {key}"

    return damage


def _every(ctx: CheckContext, committed: dict[Key, int], kind: Kind) -> Damages:
    """Damage of one ``kind``, done every way it can be, the bytes put back between two.

    Generic damage hits each file alone, then all of them; the factory's own, each key.
    """

    def damage(path: str) -> Iterator[str]:
        snapshot = _snapshot(path)
        if kind[0] == "aware":
            for key in sorted(committed):
                ctx.caps.damage[kind[1]](path, key)
                yield f"format-aware damage {kind[1]!r} to key {key}"
                _put_back(snapshot)
            return
        files = stored_files(path)
        if not files:
            yield "no damage: the store had no files yet"
            return
        for chosen in [*([f] for f in files), *([files] if len(files) > 1 else [])]:
            for file in chosen:
                _damage_file(file, kind[1])
            shown = [os.path.relpath(f, path) for f in chosen]
            yield f"{kind[1]} damage to {shown} (of {len(files)} files)"
            _put_back(snapshot)

    return damage


def _put_back(snapshot: dict[str, bytes]) -> None:
    for file, content in snapshot.items():
        with open(file, "wb") as out:
            out.write(content)


def _cold(ctx: CheckContext, committed: dict[Key, int], damages: Damages) -> None:
    path = _commit(ctx, committed)
    for what in damages(path):
        note(what)
        ctx.workspace.count("damaged states")
        _judge(ctx, path, committed, what)


def _newer(
    ctx: CheckContext, committed: dict[Key, int], data: st.DataObject | None
) -> dict[Key, int]:
    """A different offset for every key: what handle B commits over A's.

    Without ``data`` (an enumerated example), the next one up (down from the largest).
    """
    newest = {}
    for key, old in sorted(committed.items()):
        new = old if data is None else data.draw(offsets(ctx.caps), label=f"newer{key}")
        newest[key] = new if new != old else (old + 1 if old < ctx.caps.offset_max else old - 1)
    return newest


def _warm(
    ctx: CheckContext,
    committed: dict[Key, int],
    damages: Damages,
    data: st.DataObject | None,
) -> None:
    path = ctx.workspace.fresh_dir()
    # Another process sees this one's commits only if the store claims shared.
    spec = ctx.spec if ctx.caps.shared else None
    remote = spec is not None
    try:
        warm: Any = ctx.workspace.remote_handle(spec, path) if spec else ctx.workspace.open(path)
    except Exception as exc:  # our helper process, or an open that P1 and P2 judge
        ctx.workspace.aside(
            "warm open",
            f"the warm handle could not be opened ({type(exc).__name__}: {exc}): "
            "those warm examples were skipped",
        )
        reject()
    who = "the warm handle's "
    try:
        _save_all(ctx, warm, committed, who="warm handle A (stays open): ")
        for key in sorted(committed):
            try:
                warm.load(*key)
            except Exception as exc:
                ctx.workspace.outside(f"load{key}", exc, "C1")
        newest = _newer(ctx, committed, data)
        other = _handle_b(ctx, path, remote)
        if other is None:
            reject()
        _save_all(ctx, other, newest, who="handle B: ")
        close_quietly(other)  # a close that raises is C8's finding
        note("handle B closed")
        snapshot = _snapshot(path)
        done = damages(path)
        while True:
            try:
                what = next(done, None)
            except Exception as exc:  # a format-aware damage that needs every handle closed
                ctx.workspace.aside(
                    "warm damage",
                    f"format-aware damage raised {type(exc).__name__} while a handle was open "
                    f"({exc}): those warm examples were skipped",
                )
                reject()
            if what is None:
                break
            note(what)
            ctx.workspace.count("warm")
            ctx.workspace.count("damaged states")
            ctx.settings.tally.running = f"the warm handle reading the store after {what}"
            try:
                _judge_handle(warm, newest, what, who=who, stale=committed)
            except ContractViolation:
                _unless_blind(ctx, warm, newest, snapshot, committed)
                raise
    finally:
        if remote:
            _close_remote(ctx, warm)


def _handle_b(ctx: CheckContext, path: str, remote: bool) -> Any | None:
    """Handle B: here (A is in the child), or a helper beside A; None when there is none."""
    if not remote:
        return ctx.workspace.second_handle(
            path, spec=None, one_handle=ctx.caps.one_handle, part="F1's warm variant"
        )
    try:
        return ctx.workspace.open(path)
    except Exception as exc:  # beside a handle in another process: P2 and M1 judge that
        ctx.workspace.aside(
            "warm B",
            f"a handle here could not be opened while the warm handle was open in another "
            f"process ({type(exc).__name__}: {exc}): F1's warm variant was not checked",
        )
        return None


def _snapshot(path: str) -> dict[str, bytes]:
    found = {}
    for folder, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as file:
                found[full] = file.read()
    return found


def _unless_blind(
    ctx: CheckContext,
    warm: Any,
    newest: dict[Key, int],
    snapshot: dict[str, bytes],
    stale: dict[Key, int],
) -> None:
    """Void the example if the warm handle gives its own old values even with the bytes back.

    A handle that never rereads (a per-handle cache) gives what it saved itself (``stale``)
    whatever the bytes hold: that is P2's finding, and damage had nothing to do with it. A
    handle wrong otherwise (None, say, from the damaged read it kept) stays F1's.
    """
    _put_back(snapshot)
    try:
        wrong = {k: got for k, v in sorted(newest.items()) if (got := warm.load(*k)) != v}
    except Exception:
        return  # it raises with the bytes intact: whatever that is, the damage verdict stands
    if wrong and all(stale.get(k) == got for k, got in wrong.items()):
        message = (
            f"with the damaged bytes put back, the warm handle still gave {wrong!r} instead of "
            f"{newest!r}: it does not see another handle's commits; see P2"
        )
        note(message)
        ctx.workspace.aside("warm blind", message)
        ctx.workspace.count("examples void: the store failed elsewhere")
        reject()


def check_f1(ctx: CheckContext) -> str:
    """Generic damage of every kind, to one file or to all, then format-aware damage; cold, warm."""
    probe = _commit(ctx, {(1, 1): 1}, noted=False)
    generic = bool(stored_files(probe))
    if not generic and not ctx.caps.damage:
        raise Unverified(
            "the store leaves no files under its location and its factory has no 'damage' "
            "mapping, so nothing can be damaged"
        )
    committed_st = st.dictionaries(keys(ctx.caps), offsets(ctx.caps), min_size=1, max_size=4)
    warm_ok = (ctx.spec is not None and ctx.caps.shared) or not ctx.caps.one_handle
    if not warm_ok:
        ctx.workspace.aside(
            "helper",
            "the store declares one handle per process, and it has no import spec or does not "
            "claim shared: F1's warm variant was not checked",
        )
    kinds = _kinds(ctx, generic)
    temperatures = [False, True] if warm_ok else [False]

    @ctx.settings
    @given(
        committed=committed_st,
        warm=st.booleans() if warm_ok else st.just(False),
        every=st.none(),
        data=st.data(),
    )
    def damaged(
        committed: dict[Key, int], warm: bool, every: Kind | None, data: st.DataObject | None
    ) -> None:
        # ``every``: an enumerated example (below), which damages every way of one kind and
        # draws nothing; else Hypothesis chooses one damage.
        if every is not None:
            damages = _every(ctx, committed, every)
        else:
            assert data is not None  # Hypothesis' own examples always draw
            damages = _drawn(ctx, committed, data, generic)
        try:
            if warm:
                _warm(ctx, committed, damages, None if every else data)
            else:
                _cold(ctx, committed, damages)
            if every:
                ctx.workspace.count(f"kinds tried {'warm' if warm else 'cold'}")
        finally:
            ctx.workspace.close_all()

    # Stratified: every kind of damage, cold and warm, in every run, however few examples the
    # profile gives (a store silent on one kind alone, an emptied file read as an empty store,
    # passed half the quick runs while it was left to the draw); Hypothesis' examples follow.
    enumerated = _ENUMERATED_COMMITS
    for kind in reversed(kinds):
        for warm in reversed(temperatures):
            damaged = example(committed=enumerated, warm=warm, every=kind, data=None)(damaged)

    details = "" if generic else "generic damage not applicable (no files); format-aware only"
    return ctx.workspace.run(damaged, details)
