"""The seam's one backend choice (``stress/seam/_record.py``): the two views of one counting run.

``choose_backend`` gets records from a campaign's own ``record`` function; here that function
returns traces as a worker would (the interposer's, with the shim's view of the same run in
``Trace.syscall``), and the test checks which view the campaign goes on with, and what the
evidence says. The worker side (a real run seen twice) is in ``tests/test_shim.py`` and
``tests/slow/test_seam_fidelity.py``.
"""

from __future__ import annotations

import pytest
from lance_offsets.stress.seam._record import Backend, choose_backend, disagreement, until_mark
from lance_offsets.stress.seam._trace import OpKind, Trace, TraceOp

ROOT = "/store"


def ops(*steps: tuple[OpKind, str], audit: int = -1, call: bool = False) -> list[TraceOp]:
    return [
        TraceOp(
            i,
            kind,
            f"{ROOT}/{name}",
            note="audit" if i == audit else "",
            call=kind if call else "",
        )
        for i, (kind, name) in enumerate(steps)
    ]


SAVE: list[tuple[OpKind, str]] = [
    ("open", "k.tmp"),
    ("write", "k.tmp"),
    ("fsync", "k.tmp"),
    ("close", "k.tmp"),
    ("replace", "k.tmp"),
    ("open", ""),
    ("fsync", ""),
    ("close", ""),
]
#: The shim's view of the same save: rename(2) where Python said os.replace.
SYSCALLS: list[tuple[OpKind, str]] = [("rename", n) if k == "replace" else (k, n) for k, n in SAVE]


def witnessed(python: list[TraceOp], syscall: list[TraceOp] | None) -> Trace:
    trace = Trace(python)
    trace.syscall = syscall
    return trace


def test_the_same_operations_in_both_views_agree() -> None:
    assert disagreement(ops(*SAVE), ops(*SYSCALLS, call=True)) is None


def test_calls_the_interposer_missed_are_counted_by_kind() -> None:
    bound = [step for step in SAVE if step != ("fsync", "k.tmp")]  # `from os import fsync`
    assert disagreement(ops(*bound), ops(*SYSCALLS, call=True)) == (
        "the Python interposer missed 1 fsync call"
    )
    fewer = [step for step in bound if step[0] != "write"]
    assert disagreement(ops(*fewer), ops(*SYSCALLS)) == (
        "the Python interposer missed 1 write call and 1 fsync call"
    )


def test_a_call_seen_only_through_an_audit_hook_is_no_agreement() -> None:
    # Same kinds and paths, but the hook never learns how the call ended nor what it left.
    assert disagreement(ops(*SAVE, audit=4), ops(*SYSCALLS)) == (
        "saw 1 only through audit hooks (bound at import, or made in C)"
    )


def test_the_same_counts_in_another_order_name_where_the_views_part() -> None:
    swapped = [SYSCALLS[1], SYSCALLS[0], *SYSCALLS[2:]]
    assert disagreement(ops(*SAVE), ops(*swapped)) == (
        "the views part at operation 0: open k.tmp (interposer), write k.tmp (syscall shim)"
    )


class Recorder:
    """A campaign's ``record``: what its worker returned through each backend."""

    def __init__(self, python: Trace, syscall: list[TraceOp] | str) -> None:
        self.replies: dict[Backend, Trace | str] = {"python": python}
        self.replies["syscall"] = syscall if isinstance(syscall, str) else Trace(syscall)
        self.asked: list[Backend] = []

    def __call__(self, backend: Backend) -> Trace | str:
        self.asked.append(backend)
        return self.replies[backend]


def blind(trace: Trace) -> str | None:
    return None if trace else "saw nothing"


def test_agreeing_views_keep_the_interposer_and_say_it_was_confirmed() -> None:
    record = Recorder(witnessed(ops(*SAVE), ops(*SYSCALLS)), ops(*SYSCALLS))
    chosen = choose_backend(record, blind)
    assert (chosen.backend, record.asked) == ("python", ["python"])
    assert chosen.judged == "python interposer (the syscall shim saw the same 8 operations)"


def test_disagreeing_views_go_on_with_the_shims_record_and_say_why() -> None:
    bound = [step for step in SAVE if step[0] not in ("write", "fsync")]
    record = Recorder(witnessed(ops(*bound), ops(*SYSCALLS)), ops(*SYSCALLS, call=True))
    chosen = choose_backend(record, blind)
    assert (chosen.backend, record.asked) == ("syscall", ["python", "syscall"])
    assert chosen.counted is not None
    assert [op.kind for op in chosen.counted] == [kind for kind, _ in SYSCALLS]
    assert chosen.judged == (
        "syscall shim (the Python interposer missed 1 write call and 2 fsync calls)"
    )


def test_a_view_that_missed_calls_never_judges_even_without_a_shim_to_count_again() -> None:
    bound = [step for step in SAVE if step[0] != "fsync"]
    record = Recorder(witnessed(ops(*bound), ops(*SYSCALLS)), "no shim in this worker")
    chosen = choose_backend(record, blind)
    assert chosen.counted is None
    assert chosen.unseen == (
        "the Python interposer missed 2 fsync calls, and the syscall shim is unavailable: "
        "no shim in this worker"
    )


@pytest.mark.parametrize("forced", ["python", "syscall"])
def test_a_forced_backend_is_used_alone_and_named(forced: Backend) -> None:
    record = Recorder(witnessed(ops(*SAVE), None), ops(*SYSCALLS))
    chosen = choose_backend(record, blind, forced)
    assert (chosen.backend, record.asked) == (forced, [forced])
    assert chosen.judged.endswith("(forced)")


def test_without_a_syscall_view_the_interposer_judges_unless_it_saw_nothing() -> None:
    unwitnessed = witnessed(ops(*SAVE), None)
    unwitnessed.unwitnessed = "the syscall backend needs Linux"
    chosen = choose_backend(Recorder(unwitnessed, ops(*SYSCALLS)), blind)
    assert chosen.backend == "python"
    assert chosen.judged == (
        "python interposer (no syscall view to compare with: the syscall backend needs Linux)"
    )
    nothing = Recorder(witnessed([], None), ops(*SYSCALLS))
    chosen = choose_backend(nothing, blind)
    assert (chosen.backend, nothing.asked) == ("syscall", ["python", "syscall"])
    assert chosen.judged == "syscall shim (the Python interposer saw none of the store's I/O)"


def test_both_views_are_cut_at_their_first_mark_for_a_campaign_that_plans_up_to_the_ack() -> None:
    python = [*ops(*SAVE), TraceOp(8, "mark", ROOT, note="ack"), TraceOp(9, "close", ROOT)]
    trace = witnessed(python, [*ops(*SYSCALLS), TraceOp(8, "mark", ROOT, note="ack")])
    cut = until_mark(trace)
    assert cut == ops(*SAVE)
    assert cut.syscall == ops(*SYSCALLS)
    assert disagreement(cut, cut.syscall) is None
