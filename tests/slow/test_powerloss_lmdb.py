"""D3 on LMDB (py-lmdb) through the syscall shim: O_DSYNC meta pages, lock file out, writemap.

A correct LMDB environment passes; ``sync=False`` and ``metasync=False`` lose acknowledged
commits; ``writemap=True`` writes through a mapping no tracer can see, so D3 says unverified.
Where the shim cannot be built, strace records instead (the same syscall model).
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.powerloss._campaign import run_powerloss
from lance_offsets.stress.seam._shim import build
from test_powerloss_strace import strace_works

pytest.importorskip("lmdb", reason="py-lmdb is not installed (pip install lmdb)")

pytestmark = [
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the shim is Linux only"),
    pytest.mark.skipif(
        build() is None and not strace_works(), reason="neither the syscall shim nor strace here"
    ),
]

#: The system-call level recorder this machine has (the shim, when it can be built).
TRACER = "syscall shim" if build() is not None else "strace"

ZOO = "zoo.lmdb_zoo"


@pytest.fixture
def short(stress_options: StressOptions) -> StressOptions:
    return dataclasses.replace(stress_options, long=False, workdir=None)


def test_correct_lmdb_passes(short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:correct", short)
    print(run.result.details)
    assert run.result.outcome == "passed", run.result.details
    assert run.result.evidence["tracer"] == TRACER
    assert run.states > 50
    assert "lock.mdb" not in run.result.details


@pytest.mark.parametrize("name", ["no_sync", "no_metasync"])
def test_lmdb_without_its_syncs_loses_an_acknowledged_commit(
    name: str, short: StressOptions
) -> None:
    run = run_powerloss(f"{ZOO}:{name}", short)
    print(run.result.details)
    assert run.result.outcome == "failed"
    assert run.result.evidence["tracer"] == TRACER
    # The violation leads; the counts per kind follow it.
    assert "lost or rewound an acknowledged offset" in run.result.details.splitlines()[1]


def test_lmdb_as_it_comes_loses_everything_when_the_creation_of_its_file_is_undone(
    short: StressOptions,
) -> None:
    # LMDB creates data.mdb at the first open and never fsyncs the directory: D3 records from
    # before that open, and a power cut after an acknowledged commit can undo the creation.
    run = run_powerloss(f"{ZOO}:no_dir_fsync_at_open", short)
    print(run.result.details)
    assert run.result.outcome == "failed"
    assert "open data.mdb b'': UNDONE" in run.result.details
    assert "found absent, expected 5 (acknowledged)" in run.result.details.splitlines()[0]


def test_lmdb_writemap_is_unverified_with_the_reason(short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:writemap", short)
    assert run.result.outcome == "unverified"
    assert "data.mdb through a shared writable mapping" in run.result.details
