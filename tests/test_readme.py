"""The README's library examples run as written, twice in a row, from an empty directory.

A reader copies them into a file and runs it, then runs it again: the second run must work too
(no fixed directory left behind that breaks an assert) and must resume where the first stopped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _library_examples() -> list[str]:
    # The examples that use the library; the plug-in sketch for a user's own store (MyStore) is
    # a template, not a program.
    return [b for b in _BLOCK.findall(README.read_text()) if "LockFileOffsetStore.open(" in b]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_the_readme_has_both_library_examples() -> None:
    assert len(_library_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_a_readme_example_runs_twice(tmp_path: Path, index: int) -> None:
    code = _library_examples()[index]
    first = _run(code, tmp_path)
    assert first.returncode == 0, first.stderr
    second = _run(code, tmp_path)
    assert second.returncode == 0, second.stderr
    if index == 0:  # the consumer: every record once, then nothing on the restart
        assert first.stdout.splitlines() == [f"processing r{n}" for n in range(4)]
        assert second.stdout == ""
