"""A long temporary directory is the machine's business, not a verdict on the store.

multiprocessing binds Unix sockets under the temporary directory (a fork server's, descriptor
passing's), and their paths must fit ``sun_path`` (104 bytes on macOS, 108 on Linux). pytest's
own temporary paths, macOS's ``/var/folders/...`` and CI runners' work folders are long: there a
check once reported D2 and D5 **failed** with "OSError: AF_UNIX path too long" on a store that
keeps both (stress/workers/_procs.py, ``fit_socket_paths``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets"),
]


def test_a_check_under_a_long_temporary_directory_judges_the_store(tmp_path: Path) -> None:
    deep = tmp_path / ("t" * 60) / ("u" * 40)
    deep.mkdir(parents=True)
    assert len(str(deep)) > 108  # no Unix socket path under it could fit
    report = tmp_path / "verdict.json"
    command = [sys.executable, "-m", "lance_offsets", "check", "--only", "D1,D2,M1,D3,F2"]
    command += ["--profile", "smoke", "--seed", "1", "--workers", "2", "--json", str(report)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(deep)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AF_UNIX" not in done.stdout + done.stderr
    assert set(json.loads(report.read_text())["properties"].values()) == {"passed"}
