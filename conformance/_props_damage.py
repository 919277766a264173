"""F1, corruption is loud: damage the stored bytes with every handle closed, then read.

Generic damage needs no help from the store: walk every non-empty file under the location and
empty it, cut it to half its length, or overwrite it with garbage of the same length. The garbage
is ``0xff`` bytes (never valid UTF-8, and it destroys any magic header) or ``?`` characters (no
digit, no letter, no JSON, hex or base64 value). Format-aware damage comes from the factory's
``damage`` mapping. After damage, opening, ``load`` and ``list_all`` may each raise (any
exception), or return the committed values; never None or a missing entry for a committed key,
never a number nobody saved.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

from hypothesis import given, note
from hypothesis import strategies as st

from ._context import CheckContext, NotApplicable
from ._machine import ContractViolation
from ._strategies import Key, keys, offsets

__all__ = ["GENERIC_DAMAGE", "check_f1", "stored_files"]

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
    try:
        store = ctx.workspace.open(path)
    except Exception as exc:
        note(f"opening raised {type(exc).__name__}: loud, fine")
        return
    for key, offset in sorted(committed.items()):
        try:
            got = store.load(*key)
        except Exception as exc:
            note(f"load{key} raised {type(exc).__name__}: loud, fine")
            continue
        if got != offset:
            nobody = "None for a committed key" if got is None else "a number nobody saved"
            raise ContractViolation(
                "F1", f"after {what}, load{key} returned {got!r} ({nobody}); committed {offset}"
            )
    try:
        listing: Any = store.list_all()
    except Exception as exc:
        note(f"list_all() raised {type(exc).__name__}: loud, fine")
        return
    wrong = {k: v for k, v in dict(listing).items() if committed.get(k) != v}
    missing = sorted(set(committed) - set(listing))
    if wrong or missing:
        raise ContractViolation(
            "F1",
            f"after {what}, list_all() silently gave wrong entries {wrong!r} and dropped "
            f"committed keys {missing!r}; committed {committed!r}",
        )


def _commit(ctx: CheckContext, committed: dict[Key, int], *, noted: bool = True) -> str:
    path = ctx.workspace.fresh_dir()
    with ctx.workspace.open(path) as store:
        for key, offset in committed.items():
            store.save(*key, offset)
            if noted:
                note(f"save{(*key, offset)}")
    ctx.workspace.close_all()
    return path


def check_f1(ctx: CheckContext) -> str:
    """Generic damage of every kind, to one file or to all, then format-aware damage."""
    probe = _commit(ctx, {(1, 1): 1}, noted=False)
    generic = bool(stored_files(probe))
    if not generic and not ctx.caps.damage:
        raise NotApplicable(
            "the store leaves no files under its location and its factory has no 'damage' "
            "mapping, so nothing can be damaged"
        )
    committed_st = st.dictionaries(keys(ctx.caps), offsets(ctx.caps), min_size=1, max_size=4)

    @ctx.settings
    @given(committed=committed_st, data=st.data())
    def damaged(committed: dict[Key, int], data: st.DataObject) -> None:
        path = _commit(ctx, committed)
        try:
            kinds = [*(["generic"] if generic else []), *(["aware"] if ctx.caps.damage else [])]
            if data.draw(st.sampled_from(kinds), label="damage") == "generic":
                files = stored_files(path)
                how = data.draw(st.sampled_from(sorted(GENERIC_DAMAGE)), label="how")
                chosen = data.draw(
                    st.one_of(st.just(files), st.sampled_from(files).map(lambda f: [f])),
                    label="files",
                )
                for file in chosen:
                    _damage_file(file, how)
                shown = [os.path.relpath(f, path) for f in chosen]
                what = f"{how} damage to {shown} (of {len(files)} files)"
            else:
                name = data.draw(st.sampled_from(sorted(ctx.caps.damage)), label="damage name")
                key = data.draw(st.sampled_from(sorted(committed)), label="damaged key")
                ctx.caps.damage[name](path, key)
                what = f"format-aware damage {name!r} to key {key}"
            note(what)
            _judge(ctx, path, committed, what)
        finally:
            ctx.workspace.close_all()

    damaged()
    return "" if generic else "generic damage not applicable (no files); format-aware only"
