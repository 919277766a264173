"""``lance-offsets bench`` end to end, the store half cut short (the suite half takes minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lance_offsets._cli import main

# Long for what it asserts (the store half of the bench, cut short, still starts every store):
# run by CI's pass of the tests marked stress.
pytestmark = [pytest.mark.slow, pytest.mark.stress]


def test_bench_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The store half only, cut short: the suite half runs the whole quick check (minutes).
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "--only",
            "stores",
            "--calls",
            "3",
            "--seconds",
            "0.2",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
            "--png",
            str(tmp_path / "b.png"),
        ]
    )
    assert code == 0
    names = [f["name"] for f in json.loads(out.read_text())]
    assert "list_all of 10,000 keys" in names
    assert "8 processes, one key" in names
    assert "goals met" in capsys.readouterr().out
