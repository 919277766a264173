"""The ``kill_helper`` fixture with real processes, and the worked example of
docs/conformance.md section 9 run as its reader runs it (pytest in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lance_offsets.conformance._kill import KillHelper

from lance_offsets import LockFileOffsetStore


def _writer(point: Callable[[str], None], path: str) -> None:
    with LockFileOffsetStore.open(path, "w") as store:
        for offset in range(1, 6):
            store.save(1, 1, offset)
            point(f"saved {offset}")


def _forever(path: str) -> None:
    with LockFileOffsetStore.open(path, "w") as store:
        offset = 0
        while True:
            offset += 1
            store.save(1, 1, offset)


def _load(path: str) -> int | None:
    with LockFileOffsetStore.open(path, "w") as store:
        return store.load(1, 1)


def test_kill_at_a_point(kill_helper: KillHelper, offset_store_dir: str) -> None:
    child = kill_helper.start(_writer, offset_store_dir, points=True)
    child.kill_at("saved 3")
    assert child.exitcode == -9
    assert child.points_passed == ["saved 1", "saved 2"]
    assert _load(offset_store_dir) == 3  # killed right there: no later save happened


def test_kill_when_a_condition_holds(kill_helper: KillHelper, offset_store_dir: str) -> None:
    child = kill_helper.start(_forever, offset_store_dir)
    child.kill_when(lambda: (_load(offset_store_dir) or 0) >= 20)
    assert child.exitcode == -9
    settled = _load(offset_store_dir)
    assert settled is not None
    assert settled >= 20
    assert _load(offset_store_dir) == settled  # dead: nothing moves any more


def test_kill_after_and_a_point_never_reached(
    kill_helper: KillHelper, offset_store_dir: str
) -> None:
    child = kill_helper.start(_forever, offset_store_dir)
    child.kill_after(0.2)
    assert child.exitcode == -9
    finished = kill_helper.start(_writer, offset_store_dir, points=True)
    with pytest.raises(AssertionError, match="without reaching point 'saved 9'"):
        finished.kill_at("saved 9")
    assert finished.exitcode == 0
    assert finished.points_passed == [f"saved {n}" for n in range(1, 6)]


# -- the worked example of docs/conformance.md, run as its reader would run it ----------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def _worked_example() -> str:
    # The python block after "A worked example" in section 9: the docs are what is run.
    text = DOCS.read_text(encoding="utf-8")
    after = text[text.index("A worked example, `test_mystore.py`") :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match, "docs/conformance.md lost its worked example"
    return match.group(1)


def test_worked_example_runs_on_an_async_store(tmp_path: Path) -> None:
    (tmp_path / "test_mystore.py").write_text(_worked_example())
    spec = "lance_offsets.conformance.reference:async_lockfile"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--store", spec],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
