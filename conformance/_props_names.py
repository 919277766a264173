"""S1, unsafe consumer names are rejected, for stores whose location includes a name.

The factory's ``open_named(path, name)`` is called with names that could escape the base
directory or are not portable. Each must raise ValueError, and nothing may appear outside the
base directory. Names with none of those pieces may be accepted or rejected; if accepted, what the
store creates must stay inside the base directory too.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any, Final

from hypothesis import given, note
from hypothesis import strategies as st

from ._context import CheckContext
from ._machine import ContractViolation

__all__ = ["UNSAFE_NAMES", "check_s1", "is_unsafe"]

#: Names every store with names must reject (docs/contract.md, S1). None climbs more than two
#: levels or is absolute: a broken store under test must not write outside the suite's sandbox
#: (the absolute case is added per example, pointing inside the sandbox).
UNSAFE_NAMES: Final = (
    "",
    ".",
    "..",
    "../x",
    "../../x",
    "..\\x",
    "a/b",
    "a\\b",
    "x/../..",
    "a\x00b",
    "a:b",
    "CON",
    "con",
    "Con.txt",
    "NUL",
    "nul.log",
    "PRN",
    "AUX",
    "COM1",
    "com9",
    "LPT1",
    "lpt9.x",
)

_RESERVED: Final = re.compile(r"(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?", re.IGNORECASE)


def is_unsafe(name: str) -> bool:
    """Whether the contract requires ``name`` to be rejected."""
    return (
        name in ("", ".", "..")
        or any(c in name for c in "/\\\x00:")
        or _RESERVED.fullmatch(name.rstrip(" ")) is not None
    )


def _names(absolute: str) -> st.SearchStrategy[str]:
    # Ordinary characters only, then at most one dangerous piece: generated names can never climb
    # out of the sandbox or start at the root, whatever a broken store does with them.
    plain = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\:")
    piece = st.sampled_from(["/", "\\", "..", "\x00", ":", "CON", "nul", "COM1"])
    return st.one_of(
        st.sampled_from([*UNSAFE_NAMES, absolute]),
        st.text(plain, min_size=1, max_size=10),
        st.tuples(st.text(plain, min_size=1, max_size=4), piece, st.text(plain, max_size=4)).map(
            "".join
        ),
    )


def _escaped(top: str, base: str) -> list[str]:
    """Everything under ``top`` that is neither inside ``base`` nor one of its parents."""
    allowed = {base}
    parent = os.path.dirname(base)
    while len(parent) > len(top):
        allowed.add(parent)
        parent = os.path.dirname(parent)
    found = []
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            full = os.path.join(folder, name)
            if full not in allowed and not full.startswith(base + os.sep):
                found.append(os.path.relpath(full, top))
    return sorted(found)


def _clean(top: str) -> None:
    for name in os.listdir(top):
        path = os.path.join(top, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def check_s1(ctx: CheckContext) -> str:
    """Unsafe names raise ValueError and create nothing outside the base directory."""
    open_named = ctx.caps.open_named
    assert open_named is not None  # the runner checked the "named" capability

    # Three levels between the sandbox's top and the base, so "../../x" stays inside the top.
    top = ctx.workspace.fresh_dir()
    absolute = os.path.join(top, "absolute")

    @ctx.settings
    @given(name=_names(absolute))
    def names(name: str) -> None:
        _clean(top)  # an example that failed early may have left its sandbox behind
        base = os.path.join(top, "l1", "l2", "base")
        os.makedirs(base)
        unsafe = is_unsafe(name) or name == absolute
        note(f"open_named(base, {name!r})  # {'unsafe' if unsafe else 'safe'}")
        store: Any = None
        try:
            store = ctx.workspace.track(open_named(base, name))
            store.save(1, 2, 3)
        except ValueError as exc:
            note(f"raised ValueError: {exc}")
        except Exception as exc:
            if unsafe:
                raise ContractViolation(
                    "S1",
                    f"open_named(base, {name!r}) raised {type(exc).__name__}: {exc}; "
                    "expected ValueError",
                ) from exc
            note(f"safe name refused with {type(exc).__name__}: allowed")
        else:
            if unsafe:
                raise ContractViolation(
                    "S1",
                    f"the unsafe consumer name {name!r} was accepted",
                    fact="unsafe-name-used",
                )
        finally:
            ctx.workspace.close_all()
        escaped = _escaped(top, base)
        if escaped:
            raise ContractViolation(
                "S1",
                f"open_named(base, {name!r}) created {escaped} outside the base directory",
                fact="unsafe-name-used",
            )

    names()
    return ""
