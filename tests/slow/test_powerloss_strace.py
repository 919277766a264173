"""D3 at the system-call level: SQLite's I/O happens in C, out of the Python interposer's sight.

Recorded through the syscall shim where it can be built, else through strace: both feed the
same syscall model (``seam/_syscalls.py``; ``tests/slow/test_syscall_backend.py`` shows they give
the same trace).

SQLite with a rollback journal commits by unlinking the journal. With ``synchronous=FULL`` the
directory is not synced after that unlink, so a power cut can bring the journal back and roll an
acknowledged transaction back (SQLite's documentation says so, and offers ``EXTRA``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
from lance_offsets.stress._options import StressOptions
from lance_offsets.stress.powerloss._campaign import run_powerloss
from lance_offsets.stress.seam._shim import build


def strace_works() -> bool:
    """Return whether strace is installed and may trace here (ptrace can be forbidden)."""
    exe = shutil.which("strace")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    done = subprocess.run([exe, "-f", "-qq", "-o", os.devnull, "true"], check=False, timeout=60)
    return done.returncode == 0


pytestmark = [
    pytest.mark.usefixtures("zoo_importable"),
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    pytest.mark.skipif(
        build() is None and not strace_works(), reason="neither the syscall shim nor strace here"
    ),
]

#: How reports name the system-call level recorder this machine has.
TRACER = "the syscall shim" if build() is not None else "strace"

ZOO = "zoo.powerloss_zoo"


@pytest.fixture
def short(stress_options: StressOptions) -> StressOptions:
    return dataclasses.replace(stress_options, long=False, workdir=None)


def test_sqlite_extra_passes_at_the_system_call_level(short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:sqlite_extra", short)
    print(run.result.details)
    assert run.result.outcome == "passed", run.result.details
    assert f"traced by {TRACER}" in run.result.details
    assert run.states > 100


def test_sqlite_full_loses_a_commit_when_the_journal_unlink_is_undone(
    short: StressOptions,
) -> None:
    run = run_powerloss(f"{ZOO}:sqlite_full", short)
    print(run.result.details)
    assert run.result.outcome == "failed"
    assert "unlink offsets.sqlite-journal: UNDONE" in run.result.details
    assert "expected 5 (acknowledged)" in run.result.details


@pytest.mark.stress  # thousands of crash states: slower than the two above, and less telling
def test_sqlite_without_fsync_fails(short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:sqlite_off", short)
    assert run.result.outcome == "failed"
    assert f"traced by {TRACER}" in run.result.details
    assert "VIOLATION" in run.result.details


def test_sqlite_wal_full_passes(short: StressOptions) -> None:
    # WAL mode: every commit fsyncs the log; SQLite syncs the directory when it first syncs a
    # log it created. The -shm index is shared memory, left out (rebuilt on open).
    run = run_powerloss(f"{ZOO}:sqlite_wal_full", short)
    print(run.result.details)
    assert run.result.outcome == "passed", run.result.details
    assert "-shm" not in run.result.details


def test_sqlite_wal_off_loses_commits(short: StressOptions) -> None:
    run = run_powerloss(f"{ZOO}:sqlite_wal_off", short)
    assert run.result.outcome == "failed"
    assert f"traced by {TRACER}" in run.result.details
    # The violation leads; the counts per kind follow it.
    assert "lost or rewound an acknowledged offset" in run.result.details.splitlines()[1]
