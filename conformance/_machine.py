"""The stateful machine: a store driven by random programs and compared with a dict model.

Rules save, save_many (B1, where the store has it), load, delete, list_all, reopen the store
(P1), open a second live handle (P2),
save or delete from another process (P2), and re-commit a handle's own last offset after another
writer moved the key (P2). Every wrong answer is blamed on the property it demonstrates
(:meth:`StoreMachine._blame`), so a failure names its ID; a machine built with ``focus`` reports
only the properties in it and discards examples where a property outside the focus broke first
(counted in :attr:`StoreMachine.tally`), which is how ``check`` gives one verdict per property.
Every step is ``note()``-d and kept: a failure reads as a short script.
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NoReturn

from hypothesis import note, reject
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from ._capabilities import Capabilities, Factory, capabilities_of
from ._catalog import PROPERTIES
from ._profiles import Tally
from ._props_batch import BatchRules, batch_of
from ._remote import RemoteStore
from ._spec import load_factory, prepared
from ._strategies import Key, near_collisions, offsets
from ._strategies import keys as key_strategy
from ._workspace import Workspace, close_quietly

__all__ = ["MACHINE_PLANS", "ContractViolation", "StoreMachine", "spec_of", "store_machine"]

#: Property -> rule families it needs beyond save/load. Properties not listed are not checked
#: by the machine. ``remote`` is dropped for a store that does not claim ``shared``.
MACHINE_PLANS: dict[str, frozenset[str]] = {
    "C1": frozenset({"delete"}),
    "C2": frozenset({"delete"}),
    "C3": frozenset({"delete"}),
    "C4": frozenset({"delete"}),
    "C5": frozenset({"delete"}),
    "C6": frozenset({"delete", "list_all"}),
    "P1": frozenset({"delete", "list_all", "reopen"}),
    "P2": frozenset({"delete", "list_all", "second", "remote", "recommit"}),
    # No reopen: kills and power cuts inside a batch (the stress half) test what persists.
    "B1": frozenset({"batch", "delete", "list_all", "second"}),
}

#: How many other keys a C5 check reloads around each write.
_ISOLATION_SAMPLE = 12
_REMOTE = "another process"
#: Store steps kept for a report Hypothesis gives none for (a flaky failure).
_KEPT_STEPS = 40
#: Model entries shown in a violation message.
_MODEL_SHOWN = 8
#: ``_blame``'s "the operation was a read" (a write passes what the key held before it).
_READ: Any = object()
#: ``_blame``'s "the call raised" in place of an answer.
_RAISED: Any = object()
#: Store operations a raising call may be replayed with on a fresh store (P2's demonstration).
_REPLAYED = frozenset({"save", "delete", "load", "list_all", "save_many"})
#: Steps of both handles shown with a call that raised only beside another handle.
_BOTH_STEPS = 12


class ContractViolation(AssertionError):
    """The store broke property :attr:`property_id`; the message says how.

    ``property_id`` is a catalog ID, or one of a store author's own properties (then ``title``
    names it; see :meth:`StoreMachine.violation`). ``fact`` names what the failure demonstrates,
    when the check knows (a finding of ``_diagnosis.py``: the report then says its likely cause).
    """

    def __init__(
        self, property_id: str, message: str, title: str | None = None, *, fact: str = ""
    ) -> None:
        known = PROPERTIES.get(property_id)
        title = title or (known.title if known else "a property of your own")
        super().__init__(f"[{property_id} {title}] {message}")
        self.property_id = property_id
        self.fact = fact


def spec_of(factory: object) -> str | None:
    """Return the ``pkg.module:attr`` string that imports ``factory`` again, if there is one."""
    driver = getattr(factory, "exec_spec", None)  # a driver's factory: its exec: spec
    if isinstance(driver, str):
        return driver
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None)
    if not module or not name or "<" in name or module == "__main__":
        return None
    spec = f"{module}:{name}"
    try:
        loaded = load_factory(spec)  # seen through sync_factory, which keeps it as __wrapped__
    except ValueError:
        return None
    same = loaded is factory or getattr(loaded, "__wrapped__", None) is factory
    return spec if same else None


def _runner_draw(make: Callable[[Capabilities], st.SearchStrategy[Any]]) -> Any:
    # st.runner() is the machine instance: strategies follow the store's declared ranges.
    return st.runner().flatmap(lambda machine: make(machine.caps))


class StoreMachine(RuleBasedStateMachine):
    """The machine for one store; build concrete ones with :func:`store_machine`."""

    factory: ClassVar[Factory]
    caps: ClassVar[Capabilities]
    focus: ClassVar[frozenset[str]]
    families: ClassVar[frozenset[str]]
    workspace: ClassVar[Workspace]
    remote: ClassVar[RemoteStore | None] = None
    #: Examples run and discarded by this class (one class per property run).
    tally: ClassVar[Tally]

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.tally.within_budget()
        self.tally.examples += 1
        self.steps: list[str] = []
        self.tally.steps = self.steps
        self.path = self.workspace.fresh_dir()
        self.model: dict[Key, int] = {}
        self.seen: list[Key] = []
        self.step = 0
        self.handles: dict[str, Any] = {}
        self.opened_at: dict[str, int] = {}
        self.last_writer: dict[Key, str] = {}
        self.written_at: dict[Key, int] = {}
        # Per handle name: what it last saw or was told of each key (its possibly stale view)
        # and the offsets it committed itself. They tell a stale handle (P2) from a wrong one.
        self.views: dict[str, dict[Key, int]] = {}
        self.committed: dict[str, dict[Key, int]] = {}
        self.generation = 0
        self.remote_open = False
        self.names: dict[str, str] = {}
        self._open("A", "C1")

    # -- extension point: properties of your own (docs/conformance.md) ---------------------
    #
    # Subclass the class store_machine() returns and add Hypothesis @rule/@invariant methods.
    # They may read self.handles (slot -> open handle, "A" always there), self.model (key ->
    # offset every handle must see), self.path (the store's directory) and self.caps, and report
    # a failure with self.violation(); the built-in rules keep model and handles up to date.

    def violation(self, property_id: str, message: str, title: str | None = None) -> NoReturn:
        """Fail the example as a violation of ``property_id`` (yours: not in the catalog)."""
        self._note(f"[{property_id}] {message}")
        found = ContractViolation(property_id, message, title)
        self.tally.bad_news(found)
        raise found

    # -- bookkeeping -------------------------------------------------------------------------

    def _note(self, line: str) -> None:
        note(line)
        self.steps.append(line)
        del self.steps[:-_KEPT_STEPS]

    def _open(self, slot: str, pid: str, purpose: str = "", fact: str = "") -> None:
        self.generation += 1
        name = f"{slot}{self.generation}"
        what = f"factory(path) for {name}" + (f", {purpose}," if purpose else "")
        factory = self.workspace.factory
        self.handles[slot] = self._call(pid, what, factory, self.path, fact=fact)
        self.names[slot] = name
        self.opened_at[name] = self.step
        self.views[name] = dict(self.model)  # a new handle must see everything committed
        self.committed[name] = {}

    def _name(self, slot: str) -> str:
        return self.names[slot]

    def _violate(self, pid: str, message: str, fact: str = "") -> None:
        if pid in self.focus:
            shown = dict(sorted(self.model.items())[:_MODEL_SHOWN])
            hidden = len(self.model) - len(shown)
            more = f" and {hidden} more" if hidden else ""
            found = ContractViolation(
                pid, f"{message}\nmodel (what the store holds): {shown}{more}", fact=fact
            )
            self.tally.bad_news(found)
            raise found
        # Another property broke first; this example says nothing about the focus property.
        self.tally.bad_news()
        self.tally.discarded += 1
        self.tally.broke_first[pid] += 1
        self._note(f"(outside the focus: [{pid}] {message})")
        reject()

    def _blame(self, slot: str, key: Key, got: object, default: str, before: object = _READ) -> str:
        """The property a wrong answer ``got`` for ``key`` through ``slot`` demonstrates.

        :param before: for the read-back of a save or delete, what the key held before it; left
            out for a read.

        A read by a handle opened after the key's last write must see it (P1). A handle whose
        view of the key another writer changed since it last saw it, and that answers with its
        old view, or whose write did not take effect over the other's, demonstrates that it
        does not see other handles' writes (P2), whatever the wrong answer would say alone
        (an ignored re-commit reads back like a lost write, C3) -- provided a handle opened now
        gets the key right, which tells "this handle is stale" from "the store is wrong for
        everyone" (a store that drops lower offsets drops them for a fresh handle too: C3).
        Anything else: ``default``.
        """
        name = self._name(slot)
        seen = self.views[name].get(key)
        if before is _READ:
            written = self.written_at.get(key)
            if written is not None and self.opened_at[name] > written:
                return "P1"
            suspect = seen != self.model.get(key) and (got is _RAISED or got == seen)
        else:
            suspect = seen != before and got in (seen, before)
        if suspect and self._fresh_handle_agrees(key, write=before is not _READ):
            return "P2"
        return default

    def _fresh_handle_agrees(self, key: Key, *, write: bool) -> bool:
        """Whether a handle opened now loads ``key`` as the model says.

        With ``write``, it first writes the model's value itself. Runs only on a failure path.
        """
        expected = self.model.get(key)
        try:
            probe = self.workspace.factory(self.path)
        except Exception:
            return False
        try:
            if write and expected is None:
                probe.delete(*key)
            elif write and expected is not None:
                probe.save(*key, expected)
            return bool(probe.load(*key) == expected)
        except Exception:
            return False
        finally:
            close_quietly(probe)

    def _never_written_reads_as(self, slot: str, key: Key) -> object:
        """What ``slot`` loads for a key nobody wrote in this example.

        None when there is no such key to try, or the load raises. Runs only on a failure path.
        """
        untouched = [
            k for k in (*self.seen, (0, 0), (0, 1)) if k != key and k not in self.last_writer
        ]
        if not untouched:
            return None
        try:
            return self.handles[slot].load(*untouched[0])
        except Exception:
            return None

    def _stale_why(self, slot: str, key: Key, before: object = _READ) -> str:
        """The history behind a P2 blame, for the message."""
        seen = self.views[self._name(slot)].get(key)
        value = self.model.get(key) if before is _READ else before
        writer = self.last_writer.get(key, "?")
        return (
            f" ({writer} changed it to {value!r} after {self._name(slot)} saw {seen!r}; "
            "a handle opened now gets it right)"
        )

    def _call(
        self,
        pid: str | Callable[[], str],
        what: str,
        fn: Callable[..., Any],
        *args: object,
        fact: str = "",
    ) -> Any:
        """``fn(*args)``; if it raises, a violation of ``pid`` (a callable: blamed only then).

        ``fact``: what that violation demonstrates, when raising here says it (``_diagnosis.py``).
        """
        self.tally.running = what
        self.tally.within_budget()
        try:
            return fn(*args)
        except Exception as exc:
            blamed = pid if isinstance(pid, str) else pid()
            message = f"{what} raised {type(exc).__name__}: {exc}"
            if blamed != "P2" and (beside := self._raised_beside_other(fn, args)):
                blamed, message, fact = "P2", f"{message}{beside}", "raised-beside-other-handle"
            self._violate(blamed, message, fact)
            raise  # unreachable: _violate raises

    def _raised_beside_other(self, fn: Callable[..., Any], args: tuple[object, ...]) -> str:
        """Why a call that raised demonstrates P2, or "" when it does not.

        It does when another handle (or the other process) had the store open, and the same
        call succeeds on a fresh store holding the same offsets with no other handle open: the
        raising handle acted on something it read before the other one changed the store (a
        next free id, a set of keys cached at open). Runs only on a failure path.
        """
        call = self._replayable(fn, args)
        if call is None:
            return ""
        who, op, op_args = call
        others = [self._name(s) for s in sorted(self.handles) if self._name(s) != who]
        if who != _REMOTE and self.remote is not None and self.remote_open:
            others.append(_REMOTE)
        if not others or not self._succeeds_alone(op, op_args):
            return ""
        names = (who, *others)
        steps = [line for line in self.steps if any(n in line for n in names)][-_BOTH_STEPS:]
        return (
            f", while {' and '.join(others)} had the store open; the same {op} on a fresh store "
            "holding the same offsets, with no other handle open, returned: the handle acts on "
            "what it read before another handle changed the store (a next free id, a set of "
            "keys, cached when it opened)\nsteps of both handles (latest last):\n"
            + "\n".join(f"  {line}" for line in steps)
        )

    def _replayable(
        self, fn: Callable[..., Any], args: tuple[object, ...]
    ) -> tuple[str, str, tuple[object, ...]] | None:
        """``(who, operation, arguments)`` of a data call the machine can replay, else None."""
        name = getattr(fn, "__name__", "")
        if self.remote is not None and fn == self.remote.call:
            op = str(args[0]) if args else ""
            return (_REMOTE, op, args[1:]) if op in _REPLAYED else None
        owner = getattr(fn, "__self__", None)
        for slot, handle in self.handles.items():
            if handle is owner and name in _REPLAYED:
                return self._name(slot), name, args
        return None

    def _succeeds_alone(self, op: str, args: tuple[object, ...]) -> bool:
        """Whether ``op(*args)`` returns on a fresh store holding the model, alone there."""
        path = self.workspace.fresh_dir()
        try:
            probe = self.workspace.factory(path)
        except Exception:
            return False
        try:
            for key, offset in sorted(self.model.items()):
                probe.save(*key, offset)
            getattr(probe, op)(*args)
        except Exception:
            return False
        else:
            return True
        finally:
            close_quietly(probe)
            shutil.rmtree(path, ignore_errors=True)

    def _pick(self, which: int) -> str:
        return "B" if which == 1 and "B" in self.handles else "A"

    def _saw(self, slot: str, key: Key, value: int | None) -> None:
        view = self.views[self._name(slot)]
        if value is None:
            view.pop(key, None)
        else:
            view[key] = value

    def _wrote(self, key: Key, slot: str | None) -> None:
        """Record a write to ``key`` by handle ``slot`` (None: another process)."""
        self.last_writer[key] = _REMOTE if slot is None else self._name(slot)
        self.written_at[key] = self.step
        if slot is None:
            return
        value = self.model.get(key)
        self._saw(slot, key, value)
        mine = self.committed[self._name(slot)]
        if value is None:
            mine.pop(key, None)
        else:
            mine[key] = value

    def _snapshot(self, slot: str, key: Key) -> dict[Key, int | None]:
        if "C5" not in self.focus:
            return {}
        store = self.handles[slot]
        known = dict.fromkeys(self.seen)
        # The keys a naive encoding confuses with this one first, then the most recent others.
        colliding = [k for k in near_collisions(key, self.caps) if k in known]
        recent = [k for k in reversed(known) if k != key and k not in colliding]
        others = (colliding + recent)[:_ISOLATION_SAMPLE]
        found = {k: self._call("C5", f"load{k}", store.load, *k) for k in others}
        for k, value in found.items():
            self._saw(slot, k, value)
        return found

    def _check_isolation(self, slot: str, key: Key, before: dict[Key, int | None], op: str) -> None:
        store = self.handles[slot]
        for other, was in before.items():
            now = self._call("C5", f"load{other}", store.load, *other)
            if now != was:
                self._violate(
                    "C5",
                    f"{op} on key {key} changed key {other} from {was!r} to {now!r} "
                    f"(decimal spellings {key[0]}{key[1]} / {other[0]}{other[1]})",
                    "read-other-keys-value",
                )

    def _compare_listing(self, slot: str, got: object, when: str, fact: str = "") -> None:
        """``got`` (a ``list_all`` result) must equal the model; ``fact``: what a C6 blame shows."""
        if not isinstance(got, dict):
            self._violate("C6", f"list_all() {when} returned {type(got).__name__}, not a dict")
            return
        if got == self.model:
            return
        wrong = sorted(set(got) ^ set(self.model) | {k for k in got if got[k] != self.model.get(k)})
        blamed = {self._blame(slot, k, got.get(k), "C6") for k in wrong}
        pid = blamed.pop() if len(blamed) == 1 else "C6"
        shown = {k: (got.get(k), self.model.get(k)) for k in wrong[:6]}
        self._violate(
            pid,
            f"list_all() on handle {self._name(slot)} {when} disagrees with the model on "
            f"{len(wrong)} key(s); (got, expected): {shown}",
            {"P2": "stale-view", "C6": fact}.get(pid, ""),
        )

    # -- keys --------------------------------------------------------------------------------

    @initialize(target=keys)
    def extreme_keys(self) -> Any:
        top_t, top_c = self.caps.topic_id_max, self.caps.consumer_id_max
        extremes = [(0, 0), (top_t, top_c), (0, top_c), (top_t, 0)]
        # The classic collision of f"{t}{c}" file names, present from the first step.
        extremes += [k for k in [(1, 23), (12, 3)] if k[0] <= top_t and k[1] <= top_c]
        self.seen.extend(extremes)
        self._note(f"keys_0.. = {extremes}")
        return multiple(*extremes)

    @rule(target=keys, key=_runner_draw(key_strategy))
    def new_key(self, key: Key) -> Key:
        self.seen.append(key)
        return key

    @rule(target=keys, key=keys)
    def colliding_keys(self, key: Key) -> Any:
        found = near_collisions(key, self.caps)[:4]
        self._note(f"near-colliding keys of {key}: {found}")
        self.seen.extend(found)
        return multiple(*found)

    # -- operations --------------------------------------------------------------------------

    @rule(key=keys, offset=_runner_draw(offsets), which=st.integers(0, 1))
    def save(self, key: Key, offset: int, which: int) -> None:
        self.step += 1
        slot = self._pick(which)
        name = self._name(slot)
        store = self.handles[slot]
        held = self.model.get(key)
        pid = "C1" if key not in self.model else "C3"
        if slot == "B":
            self._load("A", key, "warm A's cache, so P2 is about a warm handle")
        before = self._snapshot(slot, key)
        self._note(f"{name}.save{(*key, offset)}")
        self._call(pid, f"{name}.save{(*key, offset)}", store.save, *key, offset)
        self.model[key] = offset
        got = self._call(pid, f"{name}.load{key} after the save", store.load, *key)
        if got != offset:
            pid = self._blame(slot, key, got, pid, held)
            why = self._stale_why(slot, key, held) if pid == "P2" else ""
            done = f"{name}.save{(*key, offset)} returned"
            fact = "write-lost-over-other" if pid == "P2" else ""
            if pid == "C3" and held is not None and offset < held and got == held:
                fact = "lower-save-ignored"
            self._violate(pid, f"{done}, then load{key} gave {got!r}{why}", fact)
        self._wrote(key, slot)
        self._check_isolation(slot, key, before, f"save{(*key, offset)}")

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), which=st.integers(0, 1))
    def overwrite(self, data: st.DataObject, which: int) -> None:
        # A stored key saved again, often lower: a reset is legitimate (C3), and random keys
        # would rarely hit the same key twice.
        key = data.draw(st.sampled_from(sorted(self.model)), label="stored key")
        current = self.model[key]
        offset = data.draw(
            st.one_of(st.just(0), st.integers(0, current), offsets(self.caps)), label="offset"
        )
        self.save(key, offset, which)

    @rule(key=keys, which=st.integers(0, 1))
    def extreme_offsets(self, key: Key, which: int) -> None:
        # Every extreme must round-trip, and a random draw reaches 2**64 - 1 only now and then:
        # a store that passes offsets through a float (exact only below 2**53) would go unseen
        # in a short run. One rule saves them all, in a row, on one key.
        top = self.caps.offset_max
        for offset in sorted(o for o in {0, 1, 2**53 + 1, top - 1, top} if 0 <= o <= top):
            self.save(key, offset, which)

    @precondition(lambda self: "delete" in self.families)
    @rule(key=keys, which=st.integers(0, 1))
    def delete(self, key: Key, which: int) -> None:
        self.step += 1
        slot = self._pick(which)
        store = self.handles[slot]
        name = self._name(slot)
        state = "present" if key in self.model else "absent"
        before = self._snapshot(slot, key)
        self._note(f"{name}.delete{key}  # key {state}")
        fact = "delete-absent-raised" if state == "absent" else ""
        self._call("C4", f"{name}.delete{key} of an {state} key", store.delete, *key, fact=fact)
        previous = self.model.pop(key, None)
        got = self._call("C4", f"{name}.load{key} after the delete", store.load, *key)
        if got is not None:
            # The old value still there: delete did nothing (C4) -- unless a key never written
            # reads as that value too, which demonstrates absent != None (C2), as does anything
            # else.
            kept = got == previous and self._never_written_reads_as(slot, key) != got
            pid = self._blame(slot, key, got, "C4" if kept else "C2", previous)
            why = self._stale_why(slot, key, previous) if pid == "P2" else ""
            done = f"{name}.delete{key} returned"
            fact = {"P2": "write-lost-over-other", "C2": "absent-read-as-value"}.get(pid, "")
            self._violate(pid, f"{done}, then load{key} gave {got!r}, not None{why}", fact)
        self._wrote(key, slot)
        self._check_isolation(slot, key, before, f"delete{key}")

    @rule(key=keys, which=st.integers(0, 1))
    def load(self, key: Key, which: int) -> None:
        self._load(self._pick(which), key)

    def _load(self, slot: str, key: Key, why: str = "") -> None:
        name = self._name(slot)
        expected = self.model.get(key)
        default = "C2" if expected is None else "C3"
        what = f"{name}.load{key}"
        raised = lambda: self._blame(slot, key, _RAISED, default)  # noqa: E731
        got = self._call(raised, what, self.handles[slot].load, *key)
        self._note(f"{what} -> {got!r}{f'  # {why}' if why else ''}")
        if got != expected:
            pid = self._blame(slot, key, got, default)
            stale = self._stale_why(slot, key) if pid == "P2" else ""
            fact = {"P2": "stale-view", "P1": "reopen-misses-commit"}.get(pid, "")
            if pid == "C2" and expected is None and got is not None:
                fact = "absent-read-as-value"
            self._violate(pid, f"{what} gave {got!r}, expected {expected!r}{stale}", fact)
        self._saw(slot, key, got)

    @precondition(lambda self: "list_all" in self.families)
    @rule(which=st.integers(0, 1))
    def list_all(self, which: int) -> None:
        slot = self._pick(which)
        store = self.handles[slot]
        first = self._call("C6", "list_all()", store.list_all)
        self._note(f"{self._name(slot)}.list_all() -> {first!r}")
        self._compare_listing(slot, first, "")
        if not isinstance(first, dict):
            return
        first.clear()
        first[(0, 0)] = 12345  # the caller may mutate its copy; the store must not notice
        second = self._call("C6", "list_all()", store.list_all)
        if second is first:
            self._violate("C6", "list_all() returned the same dict object twice", "listing-shared")
        self._compare_listing(
            slot, second, "after the caller mutated an earlier result", "listing-shared"
        )

    @precondition(lambda self: "reopen" in self.families)
    @rule()
    def reopen(self) -> None:
        self.step += 1
        close_quietly(self.handles.pop("A"))
        self._open("A", "P1")
        self._note(f"reopen: A closed, new handle {self._name('A')} = factory(path)")
        for key, offset in sorted(self.model.items()):
            got = self._call("P1", f"load{key} after reopen", self.handles["A"].load, *key)
            if got != offset:
                message = f"after reopen load{key} gave {got!r}, committed {offset!r}"
                self._violate("P1", message, "reopen-misses-commit")
        listing = self._call("P1", "list_all() after reopen", self.handles["A"].list_all)
        self._compare_listing("A", listing, "right after reopen")

    @precondition(lambda self: "second" in self.families and "B" not in self.handles)
    @rule()
    def open_second(self) -> None:
        self.step += 1
        # LMDB and RocksDB refuse a second handle on a path by design: a true P2 finding, said
        # as such, with the way to declare it.
        self._open(
            "B",
            "P2",
            "a second handle on the same path in this process (a store that refuses one by "
            "design declares handles_per_process = 1, and P2 is then checked through another "
            "process)",
            "second-handle-refused",
        )
        self._note(f"open second live handle {self._name('B')} = factory(path)")

    @precondition(lambda self: "B" in self.handles)
    @rule()
    def close_second(self) -> None:
        self._note(f"{self._name('B')}.close()")
        close_quietly(self.handles.pop("B"))

    @precondition(lambda self: "remote" in self.families and self.remote is not None)
    @rule(key=keys, offset=st.one_of(st.none(), _runner_draw(offsets)))
    def from_another_process(self, key: Key, offset: int | None) -> None:
        assert self.remote is not None
        self.step += 1
        if not self.remote_open:
            opening = "factory(path) in another process"
            self._call("P2", opening, self.remote.call, "open", self.path)
            self.remote_open = True
        self._load("A", key, "warm A's cache first")
        if offset is None:
            self._note(f"other process: delete{key}")
            self._call("C4", f"delete{key} in another process", self.remote.call, "delete", *key)
            self.model.pop(key, None)
        else:
            self._note(f"other process: save{(*key, offset)}")
            pid = "C1" if key not in self.model else "C3"
            what = f"save{(*key, offset)} in another process"
            self._call(pid, what, self.remote.call, "save", *key, offset)
            self.model[key] = offset
        self._wrote(key, None)
        self._load("A", key, "after another process's write")

    def _recommits(self) -> list[tuple[str, Key]]:
        return [
            (slot, key)
            for slot in sorted(self.handles)
            for key in sorted(self.committed[self._name(slot)])
        ]

    @precondition(lambda self: "recommit" in self.families and bool(self._recommits()))
    @rule(data=st.data())
    def recommit(self, data: st.DataObject) -> None:
        # An idle consumer commits its position again after another writer moved the key: a
        # store that skips a save equal to what this handle last wrote ("dirty check") loses
        # it. One rule does both writes, so the P2 machine meets this often.
        slot, key = data.draw(st.sampled_from(self._recommits()), label="handle, key")
        offset = self.committed[self._name(slot)][key]
        others = []
        if "second" in self.families:  # not for a store that declares one handle per process
            if "B" not in self.handles:
                self.open_second()
            others.append("B" if slot == "A" else "A")
        if "remote" in self.families and self.remote is not None:
            others.append(_REMOTE)
        other = data.draw(st.sampled_from(others), label="other writer")
        moved = data.draw(
            st.one_of(st.none(), offsets(self.caps).filter(lambda o: o != offset)), label="moved to"
        )
        if other == _REMOTE:
            self.from_another_process(key, moved)
        elif moved is None:
            self.delete(key, "AB".index(other))
        else:
            self.save(key, moved, "AB".index(other))
        self._note(f"{self._name(slot)} re-commits its own last offset {offset} for {key}")
        self.save(key, offset, "AB".index(slot))

    # -- invariants and teardown -------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        if "list_all" not in self.families:
            return
        for slot in sorted(self.handles):
            listing = self._call("C6", "list_all()", self.handles[slot].list_all)
            self._compare_listing(slot, listing, "(invariant after the step)")

    def teardown(self) -> None:
        for slot in sorted(self.handles):
            close_quietly(self.handles.pop(slot))
        if self.remote is not None and self.remote_open:
            self._call("P2", "close() in another process", self.remote.call, "close")
        shutil.rmtree(self.path, ignore_errors=True)


class BatchStoreMachine(BatchRules, StoreMachine):
    """The machine with ``save_many`` rules (B1)."""


def _families(caps: Capabilities, wanted: Iterable[str], spec: str | None) -> frozenset[str]:
    families = set(wanted)
    if not caps.persistent:
        families -= {"reopen", "second", "remote"}
    if caps.one_handle:
        families.discard("second")  # declared: a second handle here would be refused by design
    if not caps.shared or spec is None:
        families.discard("remote")
    if not families & {"second", "remote"}:
        families.discard("recommit")  # nobody else to move the key
    return frozenset(families)


def store_machine(
    factory: Factory | str,
    *,
    focus: Iterable[str] | None = None,
    spec: str | None = None,
    workdir: str | None = None,
    tally: Tally | None = None,
) -> type[StoreMachine]:
    """Return a machine class for ``factory`` (a callable or a ``pkg.module:attr`` string).

    One line puts it in a test suite: ``TestMyStore = store_machine(my_factory).TestCase``.

    :param focus: property IDs to report (default: every property the machine checks). Examples
        where another property broke first are discarded, so the verdict is about the focus.
    :param spec: import string of the factory, for the cross-process part of P2; found from the
        factory itself when it is a module-level callable.
    :param workdir: where fresh directories are made (default: the system temp directory).
    :param tally: where to count examples run and discarded (default: a new one, readable as
        the class's ``tally``).
    """
    if isinstance(factory, str):
        spec = spec or factory
        factory = load_factory(factory)
    else:
        # An asyncio factory given as an object (docs/async.md), a flush-acknowledged one, a
        # watched process's timing: as load_factory prepares a spec's.
        factory = prepared(factory)
    spec = spec or spec_of(factory)
    caps = capabilities_of(factory)
    ids = frozenset(MACHINE_PLANS) if focus is None else frozenset(focus)
    unknown = ids - set(MACHINE_PLANS)
    if unknown:
        raise ValueError(
            f"the machine does not check {sorted(unknown)}; it checks {list(MACHINE_PLANS)}"
        )
    families = _families(caps, (f for pid in ids for f in MACHINE_PLANS[pid]), spec)
    if "batch" in families and not batch_of(factory, workdir):
        families -= {"batch"}  # B1 is not applicable; the other rules still run
    workspace = Workspace(factory, workdir)
    atexit.register(workspace.cleanup)
    remote = RemoteStore(spec) if "remote" in families and spec is not None else None
    if remote is not None:
        atexit.register(remote.stop)
    name = getattr(factory, "__name__", "Store")
    name = name if name[:1].isupper() else name.title()
    # The batch rules only where B1 is checked: a machine without them draws exactly the programs
    # it drew before save_many existed (same seed, same programs, same time).
    bases = (BatchStoreMachine,) if "batch" in families else (StoreMachine,)
    return type(
        f"{''.join(c for c in name if c.isalnum())}Machine",
        bases,
        {
            "factory": staticmethod(factory),
            "caps": caps,
            "focus": ids,
            "families": families,
            "workspace": workspace,
            "remote": remote,
            "tally": Tally() if tally is None else tally,
        },
    )
