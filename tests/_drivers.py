"""The reference driver stores (examples/drivers/), built once per source for the whole test run.

Each is built the way its README builds it (its ``build.sh``), in a copy of its folder under the
system temporary directory named by the hash of its sources, so pytest-xdist workers and later
sessions reuse one build, and a changed source builds anew. A toolchain that is missing skips
the test that needs it, with the reason; ``.ci/run`` installs the toolchains from Debian.
"""

from __future__ import annotations

import fcntl
import hashlib
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import pytest

#: examples/drivers in the checkout.
DRIVERS: Final = Path(__file__).resolve().parents[1] / "examples" / "drivers"
#: The shared Rust protocol folder the Rust drivers compile in.
SHARED: Final = "rust_protocol"
#: folder -> (the toolchain it needs, the program build.sh makes)
BUILT: Final = {
    "rust_seed": ("rustc", "target/rust-seed-driver"),
    "rust_fixed": ("rustc", "target/rust-fixed-driver"),
    "go_store": ("go", "target/go-store-driver"),
}


def _sources(folder: str) -> list[Path]:
    names = [folder] + ([SHARED] if folder.startswith("rust_") else [])
    return [
        path
        for name in names
        for path in sorted((DRIVERS / name).iterdir())
        if path.is_file() and path.suffix in (".rs", ".go", ".mod", ".sh")
    ]


def program(folder: str) -> str:
    """The built driver program of ``examples/drivers/<folder>`` (skips without its toolchain)."""
    tool, made = BUILT[folder]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not found: install it (Debian: rustc, golang-go) to build {folder}")
    digest = hashlib.sha256()
    for path in _sources(folder):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    home = (
        Path(tempfile.gettempdir())
        / "lance-offsets-drivers"
        / f"{folder}-{digest.hexdigest()[:16]}"
    )
    built = home / folder / made
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse
        if not built.exists():
            for name in {folder, SHARED} if folder.startswith("rust_") else {folder}:
                shutil.copytree(
                    DRIVERS / name,
                    home / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("target"),
                )
            done = subprocess.run(
                ["sh", str(home / folder / "build.sh")],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{folder}/build.sh failed:\n{done.stdout}\n{done.stderr}"
    return str(built)


def node_store() -> str:
    """``node`` and the Node.js store's script, as the words of an exec: spec."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: install Node.js (Debian: nodejs) to check the Node.js store")
    return f"{node} {DRIVERS / 'node_store' / 'store.js'}"


def py_driver(*flags: str) -> str:
    """The exec: spec of tests/drivers/py_driver.py with ``flags``."""
    script = Path(__file__).resolve().parent / "drivers" / "py_driver.py"
    return "exec:" + shlex.join([sys.executable, str(script), *flags])
