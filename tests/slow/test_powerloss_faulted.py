"""Faults and power cuts together: D3's explorer on a hand-made faulted trace, real verifiers.

The trace is what a store of ``zoo.powerloss_zoo`` (one decimal file per key, replaced through a
temporary file) does when its first fsync fails with EIO: the fault harness (F2) hands such a
trace to :func:`judge_faulted_trace`. Fresh verifier processes open the store on every state.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.powerloss._faulted import judge_faulted_trace
from lance_offsets.stress.powerloss._oracle import Step
from lance_offsets.stress.seam._trace import TraceOp

pytestmark = [
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="D3 is modelled on Linux"),
]

ROOT = "/faulted/store"
KEY = (1, 2)
TARGET = f"{ROOT}/1-2.offset"
TEMP = f"{TARGET}.tmp"


def faulted_save(*, rewrite: bool) -> list[TraceOp]:
    """save(1, 2) = 60 over 5: the temp file's fsync fails, is retried, and the save returns.

    With ``rewrite`` the store writes its bytes again before retrying (what F2 asks for).
    """
    step = Step("save", KEY, 60)
    ops = [
        TraceOp(0, "mark", ROOT, note=step.note("begin")),
        TraceOp(0, "open", TEMP, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, content=b""),
        TraceOp(0, "write", TEMP, content=b"60\n"),
        TraceOp(0, "fsync", TEMP, content=b"60\n", error="EIO"),
    ]
    if rewrite:
        ops.append(TraceOp(0, "write", TEMP, content=b"60\n"))
    ops += [
        TraceOp(0, "fsync", TEMP, content=b"60\n"),
        TraceOp(0, "close", TEMP, content=b"60\n"),
        TraceOp(0, "replace", TEMP, target=TARGET),
        TraceOp(0, "fsync", ROOT, is_dir=True),
        TraceOp(0, "mark", ROOT, note=step.note("ack")),
    ]
    return ops


@pytest.mark.parametrize("rewrite", [False, True], ids=["retried-sync", "written-again"])
def test_a_save_acknowledged_after_a_retried_fsync_is_shown_to_lose_its_offset(
    rewrite: bool, stress_options: StressOptions
) -> None:
    options = dataclasses.replace(stress_options, long=False, workdir=None)
    run = judge_faulted_trace(
        "zoo.powerloss_zoo:correct",
        faulted_save(rewrite=rewrite),
        root=ROOT,
        initial=(("1-2.offset", b"5\n"),),
        keys=[KEY],
        options=options,
        committed={KEY: 5},
    )
    result = run.result
    print(result.details)
    if rewrite:
        assert result.outcome == "passed", result.details
        return
    assert result.outcome == "failed", result.details
    # The old offset is at stake from the rename on, the acknowledged 60 after the ack: the
    # file holds what the failed sync lost (zeros), or those torn with the new bytes.
    assert result.details.splitlines()[0].startswith("load(1, 2) raised")
    assert "crash state after #8 mark: ack save 1 2 60" in result.details
    assert "expected 60 (acknowledged)" in result.details
    assert "what the failed sync #3 lost is old bytes" in result.details
    assert [f["fact"] for f in result.artifacts["findings"]] == ["fsync-error-ignored"]
