"""History files: a worker killed at any instant keeps every record it completed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lance_offsets.stress.concurrency._history import HistoryWriter, read_worker

pytestmark = pytest.mark.slow

#: A writer that records operations as fast as it can until it is killed.
WRITER = textwrap.dedent(
    """
    import sys
    from lance_offsets.stress.concurrency._history import HistoryWriter
    writer = HistoryWriter(sys.argv[1], 7)
    writer.ready()
    seq = 0
    while True:
        seq += 1
        writer.invoke(seq, "save", (1, 23), 7 * 2**32 + seq)
        writer.ok(seq)
        seq += 1
        writer.invoke(seq, "load", (12, 3), None)
        writer.ok(seq, None if seq % 3 else seq - 1)
    """
)


def test_killed_writer_keeps_every_complete_record(tmp_path: Path) -> None:
    path = tmp_path / "history-7.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        give_up = time.monotonic() + 60
        while (not path.exists() or path.stat().st_size < 50_000) and time.monotonic() < give_up:
            assert proc.poll() is None, "the writer died on its own"
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL / TerminateProcess, at whatever point the writer is
        proc.wait(30)
    size = path.stat().st_size
    assert size >= 50_000
    history = read_worker(path, 7)
    assert history.ready
    assert not history.done
    ops = history.ops
    assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
    assert all(op.complete is not None and op.outcome == "ok" for op in ops[:-1])
    # Every complete line made it: the parse covers the file up to at most one torn line.
    lines = path.read_bytes().split(b"\n")
    complete_lines = len(lines) - 1  # the part after the last newline is empty or torn
    assert complete_lines == 1 + sum(1 if op.complete is None else 2 for op in ops)
    for op in ops:
        if op.kind == "save":
            assert op.value == 7 * 2**32 + op.seq
        elif op.complete is not None:
            assert op.result == (None if op.seq % 3 else op.seq - 1)


def test_torn_last_line_is_ignored_and_the_call_is_indeterminate(tmp_path: Path) -> None:
    path = tmp_path / "history-3.jsonl"
    writer = HistoryWriter(path, 3)
    writer.ready()
    writer.invoke(1, "save", (1, 23), 5)
    writer.ok(1)
    writer.invoke(2, "delete", (1, 23), None)
    writer.close()
    with open(path, "ab") as handle:  # a kill in the middle of writing the completion
        handle.write(b'{"e":"ok","s":2,"r":nu')
    ops = read_worker(path, 3).ops
    assert [(op.seq, op.outcome, op.complete is None) for op in ops] == [
        (1, "ok", False),
        (2, "info", True),
    ]


def test_missing_file_reads_as_a_worker_that_never_started(tmp_path: Path) -> None:
    history = read_worker(os.fspath(tmp_path / "nothing.jsonl"), 0)
    assert (history.ops, history.ready, history.done) == ([], False, False)
