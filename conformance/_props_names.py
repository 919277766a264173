"""S1, unsafe consumer names are rejected, for stores whose location includes a name.

The factory's ``open_named(path, name)`` is called with names that could escape the base
directory or are not portable. Each must raise ValueError, and nothing may appear outside the
base directory. Names with none of those pieces may be accepted or rejected; if accepted, what the
store creates must stay inside the base directory too.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

from hypothesis import given, note
from hypothesis import strategies as st

from ._context import CheckContext
from ._machine import ContractViolation

__all__ = ["UNSAFE_NAMES", "check_s1", "is_unsafe"]

#: Names every store with names must reject (DESIGN.md section 3, S1).
UNSAFE_NAMES: Final = (
    "",
    ".",
    "..",
    "../x",
    "..\\x",
    "a/b",
    "a\\b",
    "/abs",
    "\\abs",
    "x/../..",
    "a\x00b",
    "a:b",
    "C:x",
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


def _names() -> st.SearchStrategy[str]:
    safe_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    piece = st.sampled_from(["/", "\\", "..", "\x00", ":", "CON", "nul", "COM1"])
    return st.one_of(
        st.sampled_from(UNSAFE_NAMES),
        st.text(safe_chars, min_size=1, max_size=10),
        st.tuples(st.text(safe_chars, max_size=4), piece, st.text(safe_chars, max_size=4)).map(
            "".join
        ),
    )


def _outside(sandbox: str, base: str) -> list[str]:
    return sorted(name for name in os.listdir(sandbox) if os.path.join(sandbox, name) != base)


def check_s1(ctx: CheckContext) -> str:
    """Unsafe names raise ValueError and create nothing outside the base directory."""
    open_named = ctx.caps.open_named
    assert open_named is not None  # the runner checked the "named" capability

    @ctx.settings
    @given(name=_names())
    def names(name: str) -> None:
        sandbox = ctx.workspace.fresh_dir()
        base = os.path.join(sandbox, "base")
        os.mkdir(base)
        unsafe = is_unsafe(name)
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
                raise ContractViolation("S1", f"the unsafe consumer name {name!r} was accepted")
        finally:
            ctx.workspace.close_all()
        escaped = _outside(sandbox, base)
        if escaped:
            raise ContractViolation(
                "S1", f"open_named(base, {name!r}) created {escaped} outside the base directory"
            )

    names()
    return ""
