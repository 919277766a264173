"""B1, batch saves: the machine's ``save_many`` rules and what decides whether B1 applies.

B1 applies to a store whose handles have ``save_many(mapping)``. In one process (these rules) it
requires: the batch returns, then every key of it loads its new offset on that handle, and every
handle and process sees them (the machine's invariant compares ``list_all`` with the model); a
batch with one bad entry raises ``TypeError``/``ValueError`` and changes no key. Kills and power
cuts inside a batch are the multi-process half (``lance_offsets.stress``), judged by what the
factory declares: ``batch_atomic = True`` (all keys old or all new) or per-key durable (the
default: each key old or new, none torn or invented).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from ._capabilities import Capabilities, Factory
from ._strategies import Key, offsets
from ._strategies import keys as key_strategy

__all__ = ["BatchRules", "batch_of", "has_save_many"]

#: Keys in one drawn batch: several, few enough to shrink (and each costs a store an fsync).
_MAX_BATCH = 4
#: One bad entry of a refused batch, by kind: (key, offset) and the error it must raise.
_BAD_ENTRIES: tuple[tuple[Any, Any, type[Exception]], ...] = (
    ((2**32, 0), 1, ValueError),  # topic one past u32
    ((0, 2**64), 1, ValueError),  # consumer one past u64
    ((2**32 - 1, 2**64 - 1), 2**64, ValueError),  # offset one past u64, on the last key
    ((2**32 - 1, 2**64 - 1), -1, ValueError),
    ((2**32 - 1, 2**64 - 1), 1.0, TypeError),
    ((2**32 - 1, 2**64 - 1), "7", TypeError),
    ((2**32 - 1, True), 3, TypeError),
)


def has_save_many(store: object) -> bool:
    """Whether a store handle offers a batch save."""
    return callable(getattr(store, "save_many", None))


def batch_of(factory: Factory, workdir: str | None = None) -> bool:
    """Whether ``factory``'s stores have ``save_many``: declared (``batch``), else one probe.

    The probe opens one handle in a scratch directory it removes; a factory that cannot open
    there (a server store whose location is not a directory) counts as "no batch".
    """
    declared = getattr(factory, "batch", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(factory, type):
        return has_save_many(factory)
    scratch = tempfile.mkdtemp(prefix="lance-batch-probe-", dir=workdir)
    try:
        store = factory(scratch)
    except Exception:
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        return has_save_many(store)
    finally:
        with contextlib.suppress(Exception):
            store.close()


class BatchRules:
    """The machine's ``save_many`` rules (mixed into ``StoreMachine``; blamed on B1)."""

    if TYPE_CHECKING:
        caps: ClassVar[Capabilities]
        families: ClassVar[frozenset[str]]
        handles: dict[str, Any]
        model: dict[Key, int]
        seen: list[Key]
        step: int

        def _pick(self, which: int) -> str: ...
        def _name(self, slot: str) -> str: ...
        def _note(self, line: str) -> None: ...
        def _call(self, pid: Any, what: str, fn: Any, *args: object, fact: str = "") -> Any: ...
        def _violate(self, pid: str, message: str, fact: str = "") -> None: ...
        def _blame(
            self, slot: str, key: Key, got: object, default: str, before: object = ...
        ) -> str: ...
        def _wrote(self, key: Key, slot: str | None) -> None: ...
        def _fresh_handle_agrees(self, key: Key, *, write: bool) -> bool: ...

    def _batch_keys(self, data: st.DataObject) -> list[Key]:
        known = sorted(set(self.seen) | set(self.model))
        some = st.sampled_from(known) if known else key_strategy(self.caps)
        drawn = data.draw(
            st.lists(st.one_of(some, key_strategy(self.caps)), max_size=_MAX_BATCH, unique=True),
            label="batch keys",
        )
        self.seen.extend(k for k in drawn if k not in self.seen)
        return drawn

    @precondition(lambda self: "batch" in self.families)
    @rule(data=st.data(), which=st.integers(0, 1))
    def save_many(self, data: st.DataObject, which: int) -> None:
        self.step += 1
        slot = self._pick(which)
        name = self._name(slot)
        batch = {
            k: data.draw(offsets(self.caps), label=f"offset of {k}") for k in self._batch_keys(data)
        }
        held = {k: self.model.get(k) for k in batch}
        for key in batch:
            # Warm the handle first: a read cache that save updates and save_many forgets is the
            # classic batch bug, and shows only on a key the handle has read.
            self._call("C3", f"{name}.load{key} before save_many", self.handles[slot].load, *key)
        what = f"{name}.save_many({batch})"
        self._note(what)
        self._call("B1", what, self.handles[slot].save_many, dict(batch))
        self.model.update(batch)
        for key, offset in batch.items():
            got = self._call(
                "B1", f"{name}.load{key} after save_many", self.handles[slot].load, *key
            )
            if got != offset:
                pid = self._blame(slot, key, got, "B1", held[key])
                # A handle opened now sees the batch: this one answers from what it kept.
                stale = pid == "B1" and self._fresh_handle_agrees(key, write=False)
                fact = "stale-view" if stale or pid == "P2" else ""
                message = f"{what} returned, then load{key} gave {got!r}, not {offset}"
                self._violate(pid, message, fact)
            self._wrote(key, slot)

    @precondition(lambda self: "batch" in self.families)
    @rule(data=st.data(), which=st.integers(0, 1), bad=st.sampled_from(_BAD_ENTRIES))
    def refused_batch(
        self, data: st.DataObject, which: int, bad: tuple[Any, Any, type[Exception]]
    ) -> None:
        # The bad entry comes last, in insertion and in key order: a store that writes each key
        # as it validates it has written the others before it meets the bad one.
        slot = self._pick(which)
        name = self._name(slot)
        bad_key, bad_offset, expected = bad
        batch: dict[Any, Any] = {
            k: data.draw(offsets(self.caps), label=f"offset of {k}")
            for k in self._batch_keys(data)
            if k != bad_key
        }
        batch[bad_key] = bad_offset
        what = f"{name}.save_many({batch})"
        self._note(f"{what}  # one bad entry: must raise {expected.__name__}, change nothing")
        try:
            self.handles[slot].save_many(batch)
        except (TypeError, ValueError):
            # Either is a refusal; which one each bad value must raise is C7's business, and a
            # store with a narrower domain may call a contract-valid part out of range.
            pass
        except Exception as exc:
            self._violate(
                "B1", f"{what} raised {type(exc).__name__}: {exc}, not {expected.__name__}"
            )
        else:
            self._violate("B1", f"{what} returned: a batch with a bad entry must raise")
        for key in batch:
            if key == bad_key:
                continue
            got = self._call(
                "B1", f"{name}.load{key} after the refused batch", self.handles[slot].load, *key
            )
            if got != self.model.get(key):
                self._violate(
                    "B1",
                    f"{what} raised, yet load{key} gave {got!r}, not {self.model.get(key)!r}: "
                    "the batch changed a key before it was refused",
                    "refused-call-changed-state",
                )
