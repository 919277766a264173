"""The reference driver stores (examples/drivers/), built and checked as their READMEs do.

Each README's first shell block builds its driver and runs ``lance-offsets check`` on it; these
tests run that block for the two Rust stores (the seed must fail on its known defects, the fixed
store must pass everything), and shorter checks of the Node.js and Go stores (a full Node.js
check starts a ``node`` per handle: minutes, so it is marked ``stress``). Builds are shared by the
whole run (``tests/_drivers.py``). Seeded: every check runs with ``--seed 1``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from _drivers import DRIVERS, node_store, program  # noqa: E402  (importable once the path is set)
from lance_offsets.conformance import load_factory  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drivers are traced on Linux"),
]

#: What the seed fails, each for a defect docs/lockfile.md lists (docs/drivers.md's table).
SEED_DEFECTS = {"P2", "H2", "M1", "M2", "D3", "D4", "F1", "F2", "S1"}
#: The acceptance: the seed fails at least these (no directory fsync, a damaged file read as
#: absent, its cache, its lock-file unlink).
SEED_MUST_FAIL = {"D3", "F1", "P2", "M2"}


def _check(spec: str, *args: str, cwd: Path | None = None) -> dict[str, object]:
    """``lance-offsets check SPEC --seed 1 --json`` in a child; the verdict it wrote."""
    out = Path(cwd or Path.cwd()) / "verdict.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lance_offsets",
            "check",
            spec,
            "--seed",
            "1",
            "--json",
            str(out),
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode in (0, 1), f"check exited {done.returncode}:\n{done.stderr[-3000:]}"
    verdict: dict[str, object] = json.loads(out.read_text())
    verdict["exit"] = done.returncode
    verdict["stdout"] = done.stdout
    return verdict


def _outcomes(verdict: dict[str, object], outcome: str) -> set[str]:
    properties = verdict["properties"]
    assert isinstance(properties, dict)
    return {pid for pid, got in properties.items() if got == outcome}


def _first_block(readme: Path) -> list[str]:
    text = readme.read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, f"{readme} has no shell block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _run_readme(folder: str, tmp_path: Path) -> dict[str, object]:
    """The README's first block, run from a copy of the folder whose driver is built already."""
    made = Path(program(folder))
    here = tmp_path / folder
    shutil.copytree(made.parents[1], here)  # the built folder: its build.sh, sources and target/
    shutil.copytree(made.parents[2] / "rust_protocol", tmp_path / "rust_protocol")
    lines = _first_block(DRIVERS / folder / "README.md")
    assert lines[0] == "sh build.sh", lines
    build = subprocess.run(
        ["sh", "build.sh"], cwd=here, capture_output=True, text=True, timeout=600, check=False
    )
    assert build.returncode == 0, build.stderr
    words = lines[1].split()
    assert words[:2] == ["lance-offsets", "check"], lines
    assert words[2].startswith("exec:./target/"), lines
    return _check(words[2], cwd=here)


def test_the_seed_fails_on_its_known_defects_and_nothing_else(tmp_path: Path) -> None:
    verdict = _run_readme("rust_seed", tmp_path)
    failed = _outcomes(verdict, "failed")
    assert verdict["exit"] == 1
    assert failed >= SEED_MUST_FAIL, failed
    assert failed <= SEED_DEFECTS, f"a failure no known defect explains: {failed - SEED_DEFECTS}"
    for pid in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "P1", "D1", "D2", "D5"):
        assert pid in _outcomes(verdict, "passed"), (pid, verdict["properties"])
    details = verdict["details"]
    assert isinstance(details, dict)
    # Seen inside the driver: crash points counted by the shim in the driver's own process.
    crash = details["D1"]["evidence"]
    assert crash["crash points killed"] > 0
    assert crash["tracing"].startswith("syscall shim")
    assert "directory is not fsynced" in json.dumps(details["D3"])
    assert "silently" in details["F1"]["details"]


def test_the_fixed_seed_passes_everything(tmp_path: Path) -> None:
    verdict = _run_readme("rust_fixed", tmp_path)
    assert verdict["exit"] == 0, verdict["stdout"]
    properties = verdict["properties"]
    assert isinstance(properties, dict)
    assert _outcomes(verdict, "passed") == set(properties), properties
    details = verdict["details"]
    assert isinstance(details, dict)
    crash = details["D1"]["evidence"]
    assert crash["crash points killed"] > 0
    assert "syscall shim" in crash["tracing"]
    assert details["F2"]["evidence"]["faulted saves"] > 0
    assert details["B1"]["evidence"]["batch crash points killed"] > 0


@pytest.mark.stress
def test_the_fixed_seed_passes_everything_under_stress(tmp_path: Path) -> None:
    spec = "exec:" + program("rust_fixed")
    verdict = _check(spec, "--stress", cwd=tmp_path)
    assert verdict["exit"] == 0, verdict["stdout"]


def test_node_round_trips_the_largest_key_and_offset(tmp_path: Path) -> None:
    factory = load_factory("exec:" + node_store())
    with factory(str(tmp_path)) as store:
        store.save(2**32 - 1, 2**64 - 1, 2**64 - 1)
        assert store.load(2**32 - 1, 2**64 - 1) == 2**64 - 1
        assert store.list_all() == {(2**32 - 1, 2**64 - 1): 2**64 - 1}
    with factory(str(tmp_path)) as again:
        assert again.load(2**32 - 1, 2**64 - 1) == 2**64 - 1
    lossy = load_factory("exec:" + node_store() + " --lossy")
    with lossy(str(tmp_path / "lossy")) as store:
        store.save(2**32 - 1, 2**64 - 1, 2**64 - 1)
        assert store.load(2**32 - 1, 2**64 - 1) == 2**64  # the defect: a JSON number


def test_node_store_is_seen_and_its_lossy_variant_fails_c1(tmp_path: Path) -> None:
    verdict = _check("exec:" + node_store(), "--only", "C1,D1,F2", cwd=tmp_path)
    assert _outcomes(verdict, "passed") == {"C1", "D1", "F2"}, verdict["properties"]
    details = verdict["details"]
    assert isinstance(details, dict)
    assert details["D1"]["evidence"]["crash points killed"] > 0  # libuv goes through libc
    lossy = _check("exec:" + node_store() + " --lossy", "--only", "C1", cwd=tmp_path)
    assert _outcomes(lossy, "failed") == {"C1"}


@pytest.mark.stress
def test_node_store_passes_everything_that_applies(tmp_path: Path) -> None:
    verdict = _check("exec:" + node_store(), cwd=tmp_path)
    assert verdict["exit"] == 0
    assert _outcomes(verdict, "not-applicable") == {"S1", "B1"}
    assert _outcomes(verdict, "unverified") == set()


def test_go_store_io_is_unverified_with_the_reason_or_seen_by_strace(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace not found: D3's fallback for a static driver (Debian: strace)")
    spec = "exec:" + program("go_store")
    verdict = _check(spec, "--only", "D1,D2,D4,F2,D3,P2", cwd=tmp_path)
    details = verdict["details"]
    assert isinstance(details, dict)
    for pid in ("D1", "D2", "D4", "F2"):
        assert verdict["properties"][pid] == "unverified", (pid, details[pid])  # type: ignore[index]
        assert "is statically linked" in details[pid]["details"]
    assert verdict["properties"]["D3"] == "passed"  # type: ignore[index]
    assert details["D3"]["evidence"]["tracer"] == "strace"
    assert verdict["properties"]["P2"] == "passed"  # type: ignore[index]
    # In place: D3 sees the unsynced write through strace; random kills catch an emptied file
    # only when one lands inside a save (no crash point can be aimed there).
    broken = _check(spec + " --in-place", "--only", "D1,D3", cwd=tmp_path)
    assert broken["properties"]["D3"] == "failed", broken["properties"]  # type: ignore[index]
    assert broken["properties"]["D1"] in ("failed", "unverified")  # type: ignore[index]


@pytest.mark.parametrize("folder", ["rust_seed", "rust_fixed", "node_store", "go_store"])
def test_every_readme_starts_with_a_block_that_builds_and_checks(folder: str) -> None:
    lines = _first_block(DRIVERS / folder / "README.md")
    assert len(lines) == 2, lines
    assert lines[1].startswith("lance-offsets check "), lines
    assert "exec:" in lines[1], lines
    build = lines[0].split()
    assert build in (["sh", "build.sh"], ["node", "--check", "store.js"]), build
