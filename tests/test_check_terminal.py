"""What ``lance-offsets check`` looks like on a real terminal and in a log (issue 18)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _terminal import screen

#: Fast, and it reaches a Hypothesis property, a timed multi-process run and a crash campaign.
ARGS = ["check", "--only", "C1,M1,D1,C2", "--profile", "smoke", "--seed", "3"]
ROW = re.compile(r"^(C1|M1|D1|C2) +\S")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_every_row_starts_its_own_line_on_a_terminal(tmp_path: Path) -> None:
    import pty

    main, child = pty.openpty()
    os.set_blocking(main, False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lance_offsets", *ARGS],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,  # one terminal for both, as `lance-offsets check` in a shell
        cwd=tmp_path,
    )
    os.close(child)
    chunks = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except BlockingIOError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
            continue
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(30) == 0
    raw = b"".join(chunks).decode()
    assert "\r" in raw  # it did draw a live progress line
    lines = screen(raw)
    rows = [line for line in lines if ROW.match(line)]
    assert [row.split()[0] for row in rows] == ["C1", "C2", "M1", "D1"], lines
    # No progress text survives on the screen, and none shares a line with a row.
    assert not [line for line in lines if "elapsed" in line], lines
    # Read as a log (split at carriage returns too, as `script` output is), each row is whole.
    pieces = [piece.strip() for piece in re.split(r"[\r\n]", raw)]
    assert all(row.strip() in pieces for row in rows)


def test_in_a_log_stderr_has_whole_progress_lines_and_stdout_the_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lance_offsets", *ARGS],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stderr
    rows = [line.split()[0] for line in done.stdout.splitlines() if ROW.match(line)]
    assert rows == ["C1", "C2", "M1", "D1"]  # catalog order, whatever order --only named
    progress = done.stderr.splitlines()
    assert [line.split()[1] for line in progress] == ["C1", "C2", "M1", "D1"]
    assert all(line.startswith(f"[{n}/4] ") for n, line in enumerate(progress, 1))
    # The first property teaches nothing about the multi-process ones: no guess is made.
    assert "not timed yet" in progress[0]
