"""Run mypy --strict on the whole project as the wheel lays it out.

The repository keeps ``conformance/`` and ``stress/`` at the top level, but they install as
``lance_offsets.conformance`` and ``lance_offsets.stress`` (pyproject's package-dir). mypy cannot
follow that mapping, so this script builds a throwaway tree of symbolic links in the installed
shape and points mypy at it; the tests and benchmarks are checked against the same tree.
Usage: ``python tools/typecheck.py [extra mypy arguments]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Installed package name -> folder in the repository (keep in step with pyproject.toml).
LAYOUT = {
    "lance_offsets": ROOT / "lance_offsets",
    "lance_offsets/conformance": ROOT / "conformance",
    "lance_offsets/stress": ROOT / "stress",
}


def _link_tree(dest: Path) -> None:
    for installed, source in LAYOUT.items():
        target = dest / installed
        target.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            if entry.name == "__pycache__" or (target / entry.name).exists():
                continue
            (target / entry.name).symlink_to(entry)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lance-offsets-typecheck-") as tmp:
        _link_tree(Path(tmp))
        env = dict(os.environ, MYPYPATH=tmp)
        mypy = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *sys.argv[1:],
        ]
        others = [str(ROOT / name) for name in ("tests", "benchmarks", "tools", "examples")]
        # Two runs: mypy takes either a package or files, and the tests are loose files.
        status = subprocess.call([*mypy, "-p", "lance_offsets"], env=env, cwd=tmp)
        existing = [p for p in others if any(Path(p).rglob("*.py"))]
        if existing:
            status |= subprocess.call([*mypy, *existing], env=env, cwd=tmp)
        return status


if __name__ == "__main__":
    sys.exit(main())
