"""The reference driver stores (examples/drivers/), built and checked as their READMEs do.

Each README's first shell block builds its driver and runs ``lance-offsets check`` on it. In the
default run the Rust stores' blocks run with ``--only`` the properties the assertions need (the
seed must fail on its known defects, the fixed store pass), with short checks of the Node.js and
Go stores; the whole blocks, as written, and the fixed store under ``--stress`` are marked
``stress`` (a full check takes 20 s for a Rust driver, two minutes for Node.js, which starts a
``node`` per handle). Builds are shared by the whole run (``tests/_drivers.py``). Seeded: every
check runs with ``--seed 1``.
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
from lance_offsets.conformance import load_factory, run_checks  # noqa: E402
from lance_offsets.stress._options import StressOptions  # noqa: E402

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


def _run_readme(folder: str, tmp_path: Path, *only: str) -> dict[str, object]:
    """The README's first block, run from a copy of the folder (built already: this rebuilds).

    :param only: property IDs for ``--only`` (a check of the default run keeps to the ones its
        assertions need; the whole block, as written, runs under ``--stress``).
    """
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
    return _check(words[2], *(["--only", ",".join(only)] if only else []), cwd=here)


def _crash_points_in_the_driver(verdict: dict[str, object]) -> None:
    """Seen inside the driver: crash points the shim counted in the driver's own process."""
    details = verdict["details"]
    assert isinstance(details, dict)
    crash = details["D1"]["evidence"]
    assert crash["crash points killed"] > 0
    assert crash["tracing"].startswith("syscall shim")


def test_the_seed_fails_on_its_known_defects(tmp_path: Path) -> None:
    verdict = _run_readme("rust_seed", tmp_path, *sorted(SEED_MUST_FAIL | {"F2", "S1", "D1"}))
    assert verdict["exit"] == 1
    assert _outcomes(verdict, "failed") == SEED_MUST_FAIL | {"F2", "S1"}, verdict["properties"]
    assert _outcomes(verdict, "passed") == {"D1"}
    _crash_points_in_the_driver(verdict)
    details = verdict["details"]
    assert isinstance(details, dict)
    assert "directory is not fsynced" in json.dumps(details["D3"])
    assert "silently" in details["F1"]["details"]
    assert "lock does not exclude" in json.dumps(details["M2"])


@pytest.mark.stress
def test_the_seeds_readme_fails_on_its_known_defects_and_nothing_else(tmp_path: Path) -> None:
    verdict = _run_readme("rust_seed", tmp_path)
    failed = _outcomes(verdict, "failed")
    assert verdict["exit"] == 1
    assert failed >= SEED_MUST_FAIL, failed
    assert failed <= SEED_DEFECTS, f"a failure no known defect explains: {failed - SEED_DEFECTS}"
    for pid in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "P1", "D1", "D2", "D5"):
        assert pid in _outcomes(verdict, "passed"), (pid, verdict["properties"])


def test_the_fixed_seed_passes(tmp_path: Path) -> None:
    only = ("P2", "D1", "D3", "F1", "F2", "S1", "B1")
    verdict = _run_readme("rust_fixed", tmp_path, *only)
    assert verdict["exit"] == 0, verdict["stdout"]
    assert _outcomes(verdict, "passed") == set(only), verdict["properties"]
    _crash_points_in_the_driver(verdict)
    details = verdict["details"]
    assert isinstance(details, dict)
    assert details["F2"]["evidence"]["faulted saves"] > 0
    assert details["B1"]["evidence"]["batch crash points killed"] > 0
    assert details["D3"]["evidence"]["tracer"] == "syscall shim"


@pytest.mark.stress
def test_the_fixed_seeds_readme_passes_everything(tmp_path: Path) -> None:
    verdict = _run_readme("rust_fixed", tmp_path)
    assert verdict["exit"] == 0, verdict["stdout"]
    properties = verdict["properties"]
    assert isinstance(properties, dict)
    assert _outcomes(verdict, "passed") == set(properties), properties


@pytest.mark.stress
def test_the_fixed_seed_passes_everything_under_stress(stress_options: StressOptions) -> None:
    """``check --stress``, each timed run as long as ``--stress-seconds`` says (60 s: the CLI's)."""
    spec = "exec:" + program("rust_fixed")
    results = run_checks(spec, stress=True, stress_options=stress_options, seed=stress_options.seed)
    assert len(results) == 24
    unpassed = {r.id: f"{r.outcome}: {r.details[:300]}" for r in results if r.outcome != "passed"}
    assert not unpassed, unpassed


def test_node_round_trips_the_largest_key_and_offset(tmp_path: Path) -> None:
    factory = load_factory("exec:" + node_store())
    with factory(str(tmp_path)) as store:
        store.save(2**32 - 1, 2**64 - 1, 2**64 - 1)
        assert store.load(2**32 - 1, 2**64 - 1) == 2**64 - 1
        assert store.list_all() == {(2**32 - 1, 2**64 - 1): 2**64 - 1}
    with factory(str(tmp_path)) as again:
        assert again.load(2**32 - 1, 2**64 - 1) == 2**64 - 1
    lossy = load_factory("exec:" + node_store() + " --lossy")  # what C1 fails it on
    with lossy(str(tmp_path / "lossy")) as store:
        store.save(2**32 - 1, 2**64 - 1, 2**64 - 1)
        assert store.load(2**32 - 1, 2**64 - 1) == 2**64  # the defect: a JSON number


@pytest.mark.stress
def test_node_store_is_seen(tmp_path: Path) -> None:
    verdict = _check("exec:" + node_store(), "--only", "D1", cwd=tmp_path)
    assert _outcomes(verdict, "passed") == {"D1"}, verdict["properties"]
    _crash_points_in_the_driver(verdict)  # libuv goes through libc


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
    verdict = _check(spec, "--only", "D1,F2,D3", cwd=tmp_path)
    details = verdict["details"]
    assert isinstance(details, dict)
    for pid in ("D1", "F2"):
        assert verdict["properties"][pid] == "unverified", (pid, details[pid])  # type: ignore[index]
        assert "is statically linked" in details[pid]["details"]
    assert verdict["properties"]["D3"] == "passed"  # type: ignore[index]
    assert details["D3"]["evidence"]["tracer"] == "strace"
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


def test_the_whole_driver_on_the_protocol_page_works(tmp_path: Path) -> None:
    page = (DRIVERS.parents[1] / "docs" / "drivers.md").read_text()
    block = re.search(r"```js\n(.*?)```", page, re.S)
    assert block, "docs/drivers.md lost its Node.js driver"
    script = tmp_path / "memory.js"
    script.write_text(block.group(1))
    spec = "exec:" + node_store().split()[0] + f" {script}"
    with load_factory(spec)(str(tmp_path)) as store:
        store.save(2**32 - 1, 2**64 - 1, 2**64 - 1)
        assert store.load(2**32 - 1, 2**64 - 1) == 2**64 - 1
        with pytest.raises(ValueError, match="out of range"):
            store.save(2**32, 0, 0)
    verdict = _check(spec, "--only", "C6,P1", cwd=tmp_path)
    assert verdict["properties"] == {"C6": "passed", "P1": "not-applicable"}
