"""What a fresh process must find after a crash, and which property each finding breaks.

A crash leaves a directory; a fresh worker reads it (``verify`` job in ``_worker.py``) and, once
the values are known, saves a later value. :func:`judge` turns those reports into violations of
D1 (old or new, nothing else), D2 (an acknowledged change survived), D4 (leftovers never show up
as keys or values and never block a later save) and D5 (the later save did not wait long on a
lock the killed worker held). A kill during open (nothing new; everything committed before it
was acknowledged) breaks D2 by any loss, loud or silent: see :attr:`Crash.loud`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "LOCK_WAIT_BOUND",
    "Crash",
    "Violation",
    "judge",
    "judge_damaged",
    "judge_damaged_hang",
    "listing",
]

Key = tuple[int, int]

#: D5: a save in another process may wait this long after a lock holder was killed, no longer.
LOCK_WAIT_BOUND: Final = 10.0


@dataclass(frozen=True)
class Violation:
    """One broken property, with the whole story needed to replay and understand it.

    :ivar headline: one line saying what the store did wrong, on which key, at which kill (what
        a report shows first).
    :ivar fact: what it demonstrates, as a finding of ``conformance/_diagnosis.py``.
    """

    prop: str
    text: str
    headline: str = ""
    fact: str = ""


@dataclass
class Crash:
    """One injected crash, waiting for its fresh-process verdict.

    :ivar where: the crash point, readable (``"after op #3 fsync ...offset.tmp"``) or
        ``"random kill after 12.3 ms"``.
    :ivar allowed: the values ``key`` may hold (None: absent).
    :ivar acked: the change was acknowledged before the kill (``allowed`` says what that allows).
    :ivar setup: the other keys and their values, which the crash must not touch.
    :ivar previous: values the key held before an acknowledged change (finding one is D2), with
        ``previous_span`` for a save loop's earlier values.
    """

    scenario: str
    path: str
    key: Key
    allowed: tuple[int | None, ...]
    acked: bool
    setup: dict[Key, int]
    where: str
    previous: tuple[int | None, ...] = ()
    previous_span: range = range(0)
    files: str = ""
    context: list[str] = field(default_factory=list)
    expected_text: str = ""
    #: The property a loud failure (open or load raising) breaks, when not the default (D4 for
    #: an open, D1 for a load): D2 where everything at stake was acknowledged (a kill during
    #: open), since loud is acceptable only when nothing acknowledged is at stake (D3's rule).
    loud: str = ""
    #: The damage done to the files the kill left ("emptied a.offset"), when there was some:
    #: then only loud-or-correct is asked (:func:`judge_damaged`), and no later save.
    damage: str = ""
    #: The kill fell after the change removed (or renamed away) a file and before it renamed
    #: one back under that name (``_points.removed_before_replaced``).
    removed_first: bool = False

    def lost(self, found: object) -> bool:
        """Whether ``found`` is a value from before the acknowledged change (D2)."""
        if not self.acked:
            return False
        return found in self.previous or (isinstance(found, int) and found in self.previous_span)

    def expected(self) -> str:
        if self.expected_text:
            return self.expected_text
        shown = " or ".join("absent" if v is None else str(v) for v in self.allowed)
        return f"{shown} ({'acknowledged' if self.acked else 'not acknowledged'})"


def listing(path: str) -> str:
    """The files under ``path``, relative, with sizes and short contents: what a crash left."""
    rows = []
    for folder, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            full = os.path.join(folder, name)
            try:
                with open(full, "rb") as f:
                    data = f.read(65)
            except OSError as exc:
                rows.append(f"{os.path.relpath(full, path)} (unreadable: {exc.strerror})")
                continue
            shown = repr(data) if len(data) <= 64 else f"{data[:64]!r}..."
            rows.append(f"{os.path.relpath(full, path)} ({os.path.getsize(full)} bytes: {shown})")
    return "; ".join(rows) or "(no files)"


def _story(crash: Crash, found: str) -> str:
    lines = [
        f"scenario {crash.scenario}: key {crash.key}, {crash.where}",
        f"expected {crash.expected()}; found {found}",
        f"files after the kill: {crash.files}",
        *crash.context,
    ]
    return "\n".join(lines)


def _found(prop: str, crash: Crash, found: str, fact: str, *, value: bool = True) -> Violation:
    """A violation of ``prop``: the story, and a headline naming the key, the kill and ``found``.

    :param value: whether ``found`` is about the key's value (then the headline says what was
        expected), not about a later save or a wait.
    """
    expected = f"; expected {crash.expected()}" if value else ""
    headline = f"key {crash.key} ({crash.scenario}, {crash.where}): {found}{expected}"
    return Violation(prop, _story(crash, found), headline, fact)


def _value(crash: Crash, read: dict[str, Any], out: list[Violation]) -> Any:
    """Judge the crashed key's value (D1/D2); return it, or a string when reading failed."""
    found = read.get(f"load{crash.key}")
    if isinstance(found, str):  # "raised CorruptOffsetError: ..."
        prop = crash.loud or "D1"
        fact = "open-lost-committed" if prop == "D2" else "kill-left-key-unreadable"
        out.append(_found(prop, crash, f"load {found}", fact))
        return found
    if found in crash.allowed:
        return found
    if crash.lost(found):
        fact = "open-lost-committed" if crash.loud == "D2" else "acked-lost-after-kill"
        out.append(_found("D2", crash, f"{found} (the acknowledged change was lost)", fact))
    elif found is None:
        # Gone with neither value: the change removed the old file before replacing it, or,
        # when it removed nothing, the old value (acknowledged by the save that set it up) had
        # never been written: it was acknowledged before it was durable.
        fact = "kill-left-key-absent" if crash.removed_first else "acked-lost-after-kill"
        out.append(_found("D1", crash, "absent (neither value)", fact))
    else:
        out.append(_found("D1", crash, f"{found} (a value nobody wrote)", "kill-left-wrong-value"))
    return found


def judge(
    crash: Crash,
    read: dict[str, Any],
    saved: dict[str, Any] | None,
    *,
    later: int | None,
    blocked: str | None,
    bound: float = LOCK_WAIT_BOUND,
    trust_list: bool = True,
) -> tuple[list[Violation], float | None]:
    """Violations found by a fresh process's ``read`` and ``saved`` reports on ``crash``.

    :param later: the value the fresh process saved after reading (None: it did not try).
    :param blocked: set when the later save did not return within the bound (D5).
    :param bound: how long the later save may wait for a lock a killed worker held (D5).
    :param trust_list: False when ``list_all`` is wrong on a store no crash touched: what it
        lists then shows the store's own listing (C6's business), not the crash's leftovers.
    :returns: the violations and the time the later save took.
    """
    out: list[Violation] = []
    if blocked is not None and not read:  # even reading waited on the killed worker's lock
        return [_found("D5", crash, blocked, "stale-lock-waits", value=False)], None
    if "open" in read:
        prop = crash.loud or "D4"
        fact = "open-lost-committed" if prop == "D2" else "open-fails-after-kill"
        out.append(_found(prop, crash, f"reopening the store {read['open']}", fact))
        return out, None
    found = _value(crash, read, out)
    for key, value in crash.setup.items():
        if key != crash.key and read.get(f"load{key}") != value:
            got = read.get(f"load{key}")
            text = f"untouched key {key} now {got}, was {value}"
            out.append(_found("D1", crash, text, "kill-changed-other-key", value=False))
    listed = read.get("list_all")
    expected = {k: v for k, v in crash.setup.items() if k != crash.key}
    if isinstance(found, int):
        expected[crash.key] = found
    wrong_list = isinstance(listed, str) or (listed != expected and not isinstance(found, str))
    if wrong_list and trust_list:
        text = f"list_all() = {listed}, load says {expected}"
        out.append(_found("D4", crash, text, _listing_fact(crash, read, listed), value=False))
    if blocked is not None:
        out.append(_found("D5", crash, blocked, "stale-lock-waits", value=False))
        return out, None
    if saved is None or later is None:
        return out, None
    after = _judge_later(crash, saved, later, expected, bound, trust_list=trust_list)
    return out + after, saved["seconds"]


def _judge_later(
    crash: Crash,
    saved: dict[str, Any],
    later: int,
    expected: dict[Any, int],
    bound: float,
    *,
    trust_list: bool,
) -> list[Violation]:
    """What the later save after the crash shows: it returned in time and reads back (D4, D5)."""
    seconds: float = saved["seconds"]
    error = saved["error"]
    if error is not None and ("Timeout" in error or seconds > bound):
        text = f"a later save in another process failed after {seconds:.2f} s: {error}"
        return [_found("D5", crash, text, "stale-lock-waits", value=False)]
    if error is not None and saved.get("fresh error") is not None:
        # The same save fails on a new, empty store: the store's own save is at fault (C1),
        # not the crash's leftovers, so this cycle shows nothing about D4.
        return []
    if error is not None:
        text = f"a later save ({later}) in another process raised {error}"
        return [_found("D4", crash, text, "later-save-fails-after-kill", value=False)]
    if seconds > bound:
        text = f"a later save waited {seconds:.2f} s (bound {bound:g} s)"
        return [_found("D5", crash, text, "stale-lock-waits", value=False)]
    listed_right = saved.get("list_all") == {**expected, crash.key: later}
    if saved.get(f"load{crash.key}") != later or not (listed_right or not trust_list):
        text = (
            f"after a later save of {later}: load {saved.get(f'load{crash.key}')}, "
            f"list_all() {saved.get('list_all')}"
        )
        return [_found("D4", crash, text, "later-save-fails-after-kill", value=False)]
    return []


def _listing_fact(crash: Crash, read: dict[str, Any], listed: object) -> str:
    """What a wrong listing after a kill demonstrates (a finding of ``_diagnosis.py``).

    Raising where the crashed key's own load raised is the torn file itself, not a leftover; a
    listing that agrees with what every load read adds nothing to their complaint (D1's). Else
    the listing shows something no load does: a leftover taken for data.
    """
    if isinstance(listed, str) and isinstance(read.get(f"load{crash.key}"), str):
        return "listing-raises-on-torn-file"
    loads = {
        key: value
        for key in {crash.key, *crash.setup}
        if isinstance(value := read.get(f"load{key}"), int)
    }
    if listed == loads:
        return "kill-changed-other-key"
    return "listing-shows-leftover"


def judge_damaged(
    crash: Crash, read: dict[str, Any], *, trust_list: bool = True
) -> list[Violation]:
    """D4 after a kill and damage to the files it left: loud, or correct (F1's rule).

    ``trust_list`` as for :func:`judge`: False when ``list_all`` is wrong with no crash at all.

    Opening, a load or ``list_all`` may raise; what returns must be a value the crash allows (for
    the killed key) or the committed one (for the others): never None for a committed key,
    never a number nobody saved. A replay that skips a damaged record and hands out an older
    value, or stops there and drops every later record, is silent corruption from a leftover.
    """
    if "open" in read:
        return []  # loud
    expected: dict[Key, tuple[int | None, ...]] = {
        key: (value,) for key, value in crash.setup.items() if key != crash.key
    }
    expected[crash.key] = crash.allowed
    problems = []
    for key, allowed in expected.items():
        found = read.get(f"load{key}")
        if isinstance(found, str) or found in allowed:
            continue  # raised (loud) or correct
        shown = " or ".join("absent" if v is None else str(v) for v in allowed)
        what = "None for a committed key" if found is None else "a number nobody saved then"
        if found is not None and key == crash.key and crash.lost(found):
            what = "an older value: the acknowledged change was dropped"
        problems.append(f"load{key} returned {found} ({what}); expected {shown} or an error")
    listed = read.get("list_all")
    if isinstance(listed, dict) and trust_list:
        wrong = {k: v for k, v in listed.items() if v not in expected.get(k, ())}
        missing = [k for k, allowed in expected.items() if None not in allowed and k not in listed]
        if wrong or missing:
            problems.append(f"list_all() silently gave {wrong} and dropped {missing}")
    if not problems:
        return []
    text = _story(crash, "; ".join(problems))
    headline = f"key {crash.key} ({crash.where}, then {crash.damage}): {problems[0]}"
    return [
        Violation(
            "D4",
            f"{text}\ndamage after the kill: {crash.damage}",
            headline,
            "damaged-leftover-silent",
        )
    ]


def judge_damaged_hang(crash: Crash, seconds: float) -> Violation:
    """D4: a fresh process reading a damaged crash state did not finish within ``seconds``.

    F1's rule asks for loud or correct; a hang is neither (the consumer waits forever on a
    leftover). Judged only where no undamaged state blocked the reader (see the campaign).
    """
    found = (
        f"opening and reading the damaged store in a fresh process did not finish within "
        f"{seconds:g} s: it hung on the leftover (a hang is neither loud nor correct)"
    )
    headline = f"key {crash.key} ({crash.where}, then {crash.damage}): {found}"
    text = f"{_story(crash, found)}\ndamage after the kill: {crash.damage}"
    return Violation("D4", text, headline, "hung")
