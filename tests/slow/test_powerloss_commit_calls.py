"""D3 on stores that commit through ``link(2)`` or a shared writable mapping (``zoo.commit_zoo``).

Two ways, each with real verifier processes opening the real store on every crash state:

- the model and oracle on the trace the seam records for these protocols (VOCAB19: ``link``
  records, ``write`` records with ``call="mmap"``), built here step by step with the bytes the
  real store writes, through :func:`judge_faulted_trace`;
- end to end (``run_powerloss``: the recorder, the model, the verifiers), which needs the seam's
  recorder for ``link`` and mappings (helper seam19's branch).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.powerloss._campaign import run_powerloss
from lance_offsets.stress.powerloss._faulted import judge_faulted_trace
from lance_offsets.stress.powerloss._oracle import Step
from lance_offsets.stress.seam._trace import OpKind, TraceOp

pytestmark = [
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="D3 is modelled on Linux"),
]

ZOO = "zoo.commit_zoo"
ROOT = "/commit/store"
KEY = (1, 2)
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
LINK: OpKind = "link"  # type: ignore[assignment,unused-ignore]  # VOCAB19's kind (seam19)


@pytest.fixture
def short(stress_options: StressOptions) -> StressOptions:
    return dataclasses.replace(stress_options, long=False, workdir=None)


def op(kind: OpKind, rel: str, **fields: object) -> TraceOp:
    path = f"{ROOT}/{rel}" if rel else ROOT
    if isinstance(fields.get("target"), str):
        fields["target"] = f"{ROOT}/{fields['target']}"
    return TraceOp(0, kind, path, **fields)  # type: ignore[arg-type]


def marked(step: Step, ops: list[TraceOp]) -> list[TraceOp]:
    return [op("mark", "", note=step.note("begin")), *ops, op("mark", "", note=step.note("ack"))]


def link_save(value: int, seq: int, *, dir_sync: bool) -> list[TraceOp]:
    """``LinkCommitStore._commit`` of ``value`` as version ``seq``, as the seam records it."""
    tmp, data = f".tmp-1-{KEY[0]}-{KEY[1]}", f"{value}\n".encode()
    name = f"{KEY[0]}-{KEY[1]}.{seq:020d}"
    ops = [
        op("open", tmp, flags=CREATE, content=b""),
        op("write", tmp, content=data),
        op("fsync", tmp, content=data),
        op("close", tmp, content=data),
        op(LINK, name, target=tmp, content=data, call="link"),
        op("unlink", tmp),
    ]
    ops += [op("fsync", "", is_dir=True)] if dir_sync else []
    if seq > 1:
        ops.append(op("unlink", f"{KEY[0]}-{KEY[1]}.{seq - 1:020d}"))
    return marked(Step("save", KEY, value), ops)


def judged(spec: str, trace: list[TraceOp], options: StressOptions) -> str:
    result = judge_faulted_trace(
        spec, trace, root=ROOT, initial=(), keys=[KEY], options=options, tracer="VOCAB19"
    ).result
    print(result.details)
    return result.outcome


@pytest.mark.parametrize("dir_sync", [True, False], ids=["fsynced", "no-dir-fsync"])
def test_a_link_commit_is_judged_and_needs_its_directory_fsync(
    dir_sync: bool, short: StressOptions
) -> None:
    trace = link_save(5, 1, dir_sync=dir_sync) + link_save(60, 2, dir_sync=dir_sync)
    outcome = judged(f"{ZOO}:link_commit", trace, short)
    assert outcome == ("passed" if dir_sync else "failed")


def slots_after(tmp_path: Path, values: list[int]) -> list[bytes]:
    """The slot file's bytes after opening the real mmap store and after each save."""
    from zoo.commit_zoo import _FILE, mmap_msync

    store = mmap_msync(str(tmp_path))
    found = [(tmp_path / _FILE).read_bytes()]
    for value in values:
        store.save(*KEY, value)
        found.append((tmp_path / _FILE).read_bytes())
    store.close()
    return found


@pytest.mark.parametrize("msync", [True, False], ids=["msynced", "no-msync"])
def test_writes_through_a_mapping_are_judged_and_need_msync(
    msync: bool, short: StressOptions, tmp_path: Path
) -> None:
    sized, *saved = slots_after(tmp_path, [5, 60])
    name = "offsets.slots"
    trace = [
        op("open", name, flags=os.O_RDWR | os.O_CREAT, content=b""),
        op("truncate", name, content=sized, call="ftruncate"),
        op("fsync", name, content=sized),
        op("fsync", "", is_dir=True),
    ]
    for value, content in zip([5, 60], saved, strict=True):
        ops = [op("write", name, content=content, call="mmap")]
        ops += [op("fsync", name, content=content, call="msync")] if msync else []
        trace += marked(Step("save", KEY, value), ops)
    outcome = judged(f"{ZOO}:mmap_msync", trace, short)
    assert outcome == ("passed" if msync else "failed")


#: What each store's D3 verdict must be once the seam records link and mappings.
END_TO_END = {
    "link_commit": "passed",
    "link_commit_no_dir_fsync": "failed",
    "mmap_msync": "passed",
    "mmap_no_msync": "failed",
}


@pytest.mark.parametrize("name", sorted(END_TO_END))
def test_commit_call_stores_end_to_end(name: str, short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:{name}", short)
    print(run.result.details)
    assert run.result.outcome == END_TO_END[name]
    if name == "link_commit_no_dir_fsync":  # the counterexample undoes the store's own link
        assert re.search(r"#\d+ link\S* .*: UNDONE", run.result.details), run.result.details
