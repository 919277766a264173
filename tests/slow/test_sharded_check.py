"""The shards of a run, merged, give the verdict of one machine with the same seed.

Real ``lance-offsets check`` runs in subprocesses on a broken store (``in_place`` writes its offset
file in place: D1, D3, D4, F2 and two single-process properties fail, D2 and D5 pass), with the
crash campaign's properties, D3's power-loss model and F2's injected faults among those checked:
their verdicts are seeded and do not depend on timing, so the merged verdict must equal the
unsharded one property for property. And a shard stopped by SIGTERM, as a CI runner stops a job,
stays visible in the merge: its not-run property, the signal and the exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.conformance._catalog import PROPERTIES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("zoo_importable")]

STORE = "zoo.stress_crash_zoo:in_place"
SELECTION = "C1,C7,D1,D2,D3,D4,D5,F2,H1,S1"
SEED = 7
SHARDS = 3


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Crash and fault directories of a failing run are kept: under this test's folder, not /tmp.
    scratch = cwd / "scratch"
    scratch.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "lance_offsets", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch)},
    )


def _check(cwd: Path, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        cwd,
        "check",
        STORE,
        "--profile",
        "smoke",
        "--only",
        SELECTION,
        "--seed",
        str(SEED),
        "--json",
        out,
        *extra,
    )


def _rows(stdout: str) -> list[tuple[str, str]]:
    """(ID, outcome) of each table row ``check`` or ``report merge`` printed."""
    rows = []
    for line in stdout.splitlines():
        pid = line[:4].strip()
        if pid in PROPERTIES and line[5:].startswith(PROPERTIES[pid].title):
            rows.append((pid, line[5 + max(50, len(PROPERTIES[pid].title)) :].split()[0]))
    return rows


def test_merged_shards_are_the_verdict_of_one_run(tmp_path: Path) -> None:
    print(f"seed {SEED}, store {STORE}, {SHARDS} shards of {SELECTION}")
    one = _check(tmp_path, "one.json")
    assert one.returncode == 1, one.stdout + one.stderr
    shard_files = []
    for k in range(1, SHARDS + 1):
        done = _check(tmp_path, f"shard-{k}.json", "--shard", f"{k}/{SHARDS}")
        assert done.returncode in (0, 1), done.stdout + done.stderr
        shard_files.append(f"shard-{k}.json")
    merged = _cli(
        tmp_path,
        "report",
        "merge",
        *shard_files,
        "--json",
        "merged.json",
        "--junit",
        "merged.xml",
    )
    assert merged.returncode == one.returncode, merged.stdout + merged.stderr

    alone: dict[str, Any] = json.loads((tmp_path / "one.json").read_text())
    joined: dict[str, Any] = json.loads((tmp_path / "merged.json").read_text())
    assert joined["properties"] == alone["properties"]
    assert joined["counts"] == alone["counts"]
    assert joined["replay"] == alone["replay"]
    assert {alone["properties"][p] for p in ("D1", "D3", "C7")} == {"failed"}
    for pid in ("D2", "D5", "H1"):
        assert alone["properties"][pid] == "passed", alone["details"][pid]["details"]
    assert alone["properties"]["S1"] == "not-applicable"
    # F2 planned its faults from the crash campaign's counted save, as on one machine: the
    # campaign's properties and F2 ran in one shard.
    for document in (alone, joined):
        assert document["details"]["F2"]["evidence"]["save counted by"] == "the crash campaign"
    holders = [
        f for f in shard_files if "D1" in json.loads((tmp_path / f).read_text())["properties"]
    ]
    assert len(holders) == 1
    held = json.loads((tmp_path / holders[0]).read_text())["properties"]
    assert {"D1", "D2", "D4", "D5", "F2"} <= set(held)
    # The table and closing line read as one run's.
    assert [pid for pid, _ in _rows(one.stdout)] == list(alone["properties"])
    assert _rows(merged.stdout) == _rows(one.stdout)
    summary = "4 passed, 5 failed, 0 unverified, 1 not applicable"
    assert summary in one.stdout
    assert summary in merged.stdout
    assert (tmp_path / "merged.xml").read_bytes().count(b"<failure ") == 5


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a child is POSIX")
def test_an_interrupted_shard_stays_visible_in_the_merge(tmp_path: Path) -> None:
    # Two shards of the reference store: 1/2 runs C1 then M1 (a 2 s concurrent run), and is
    # stopped by SIGTERM once C1's row is out, as a CI runner stops a job that runs out of time.
    base = [
        "check",
        "--profile",
        "smoke",
        "--only",
        "C1,C2,C3,M1,M2",
        "--seed",
        str(SEED),
    ]
    print(f"seed {SEED}")
    whole = _cli(tmp_path, *base, "--shard", "2/2", "--json", "shard-2.json")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    stopped = subprocess.Popen(
        [sys.executable, "-m", "lance_offsets", *base, "--shard", "1/2", "--json", "shard-1.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert stopped.stdout is not None
        for line in stopped.stdout:
            assert not line.startswith("M1 "), "M1 finished before the signal"
            if line.startswith("C1 "):
                stopped.send_signal(signal.SIGTERM)
                break
        stopped.communicate(timeout=60)
    finally:
        stopped.kill()
        stopped.wait()
    assert stopped.returncode == 143
    shard = json.loads((tmp_path / "shard-1.json").read_text())
    assert shard["interrupted"] == "SIGTERM"
    assert shard["not_run"] == ["M1"]
    merged = _cli(tmp_path, "report", "merge", "shard-1.json", "shard-2.json", "--json", "m.json")
    assert merged.returncode == 143, merged.stdout + merged.stderr
    assert "shard 1/2 (shard-1.json) was interrupted by SIGTERM; not run: M1" in merged.stdout
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["interrupted"] == "SIGTERM"
    assert document["not_run"] == ["M1"]
    assert list(document["properties"]) == ["C1", "C2", "C3", "M2"]
