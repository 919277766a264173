"""The wheel holds only ``lance_offsets`` and imports the same way as the editable install.

The repository keeps ``conformance/`` and ``stress/`` at the top level, but
installed they must live under ``lance_offsets`` so we squat no generic top-level names.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Modules every install must provide under these exact names.
IMPORTS = (
    "lance_offsets",
    "lance_offsets.conformance",
    "lance_offsets.conformance.reference",
    "lance_offsets.conformance._plugin",
    "lance_offsets.stress",
    "lance_offsets.stress._runner",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("lance_offsets-*.whl")
    return built


def test_wheel_holds_no_top_level_package_but_lance_offsets(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"lance_offsets"}, sorted(top)
    assert "lance_offsets/py.typed" in names
    assert "lance_offsets/conformance/__init__.py" in names
    assert "lance_offsets/stress/__init__.py" in names
    assert not any(n.startswith(("tests/", "conformance/", "stress/")) for n in names)


def test_wheel_holds_every_module_of_the_source_tree(wheel: Path) -> None:
    # pyproject lists the packages one by one (package-dir maps the top-level folders), so a new
    # subpackage left off the list would install without its modules.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
        for installed, folder in (
            ("lance_offsets", "lance_offsets"),
            ("lance_offsets/conformance", "conformance"),
            ("lance_offsets/stress", "stress"),
        )
        for path in (ROOT / folder).rglob("*.py")
    }
    assert sorted(expected - names) == []


def _import_locations(python_path: str | None, cwd: Path) -> dict[str, str]:
    code = (
        "import importlib, json\n"
        f"names = {IMPORTS!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n"
    )
    env = {"PYTHONPATH": python_path} if python_path else {}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**_base_env(), **env},
    )
    import json

    locations: dict[str, str] = json.loads(out.stdout)
    return locations


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_wheel_and_editable_import_the_same_names(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    from_wheel = _import_locations(str(site), tmp_path)
    for name, location in from_wheel.items():
        assert Path(location).is_relative_to(site), (name, location)

    # The development install (editable, or the wheel under tox) answers to the same names.
    installed = _import_locations(None, tmp_path)
    assert installed.keys() == from_wheel.keys()
    suffixes = {n: Path(p).relative_to(site).as_posix() for n, p in from_wheel.items()}
    assert suffixes["lance_offsets.conformance"] == "lance_offsets/conformance/__init__.py"
    assert suffixes["lance_offsets.stress._runner"] == "lance_offsets/stress/_runner.py"
