"""The lance-offsets command in real subprocesses: entry points, stdin, locks held elsewhere.

Every child runs with a timeout (DEADLINE) and is reaped by subprocess.run; nothing is random.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import portalocker
import pytest

from lance_offsets import CollectingCommitHook, HookedOffsetStore, LockFileOffsetStore, __version__

pytestmark = pytest.mark.slow

#: Longest any child may run before the test fails instead of hanging.
DEADLINE = 60.0


def cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lance_offsets ARGV`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "lance_offsets", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_installed_script_and_module_agree() -> None:
    script = shutil.which("lance-offsets")
    assert script is not None, "the console script is not installed (pip install -e .)"
    installed = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    module = cli("--version")
    assert installed.returncode == module.returncode == 0
    assert installed.stdout == module.stdout == f"lance-offsets {__version__}\n"


def test_round_trip_through_pipes(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    for argv in (("billing", "1", "2", "42"), ("billing", "7", str(2**64 - 1), "0")):
        assert cli("set", str(source), *argv).returncode == 0
    assert cli("set", str(source), "audit", "3", "4", str(2**64 - 1)).returncode == 0
    exported = cli("export", str(source))
    assert exported.returncode == 0, exported.stderr
    imported = cli("import", str(target), "-", "--merge", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == "imported <stdin>: 3 set, 0 deleted, 0 unchanged in 2 consumer(s)\n"
    listed = cli("ls", str(target))
    assert listed.stdout == cli("ls", str(source)).stdout
    assert len(listed.stdout.splitlines()) == 4
    assert json.loads(cli("export", str(target)).stdout) == json.loads(exported.stdout)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("get", "{base}", "billing", "1", "x"), 2, "argument CONSUMER_ID: consumer id must be"),
        (("set", "{base}", "../up", "1", "2", "3"), 2, "invalid consumer name '../up'"),
        (("get", "{base}", "billing", "1", "2"), 1, "no offset stored for consumer 'billing'"),
        (("import", "{base}", "-", "--merge"), 1, "<stdin>: not valid JSON"),
        (("ls", "{base}/nowhere"), 1, "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, argv: tuple[str, ...], code: int, message: str
) -> None:
    result = cli(*(a.format(base=tmp_path) for a in argv), stdin="{not json")
    assert result.returncode == code
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert ": error: " in last
    assert message in last
    assert os.listdir(tmp_path) == []


def test_lock_held_by_this_process_times_out_the_cli(tmp_path: Path) -> None:
    assert cli("set", str(tmp_path), "billing", "1", "2", "42").returncode == 0
    lock_path = tmp_path / "billing" / "topic-1-consumer-2.lock"
    with open(lock_path, "a+b") as held:
        portalocker.lock(held, portalocker.LOCK_EX)
        blocked = cli("set", str(tmp_path), "billing", "1", "2", "43", "--lock-timeout", "0.3")
        removed = cli("rm", str(tmp_path), "billing", "1", "2", "--lock-timeout", "0.3")
        # Reading takes no lock: get still answers while a writer holds the key.
        read = cli("get", str(tmp_path), "billing", "1", "2")
        portalocker.unlock(held)
    for result in (blocked, removed):
        assert result.returncode == 1
        assert result.stderr.startswith("lance-offsets: error: could not lock topic_id=1")
        assert str(lock_path) in result.stderr
    assert read.stdout == "42\n"
    assert cli("set", str(tmp_path), "billing", "1", "2", "43").returncode == 0
    assert cli("get", str(tmp_path), "billing", "1", "2").stdout == "43\n"


def test_previous_offset_sees_another_process_save(tmp_path: Path) -> None:
    hook = CollectingCommitHook()
    with HookedOffsetStore(LockFileOffsetStore.open(tmp_path, "c"), [hook]) as store:
        store.save(1, 2, 10)
        assert cli("set", str(tmp_path), "c", "1", "2", "20").stdout.endswith(": 10 -> 20\n")
        store.save(1, 2, 30)
        assert cli("rm", str(tmp_path), "c", "1", "2").returncode == 0
        store.save(1, 2, 40)
    assert [(c.offset, c.previous_offset) for c in hook.commits()] == [
        (10, None),
        (30, 20),
        (40, None),
    ]


def test_everyday_commands_do_not_import_the_suite(tmp_path: Path) -> None:
    # `check` is wired lazily: ls must not pay for Hypothesis, pytest or the conformance suite.
    probe = (
        "import sys\n"
        "from lance_offsets._cli import main\n"
        f"assert main(['ls', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('hypothesis', 'pytest')\n"
        "               or m.startswith('lance_offsets.conformance'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_check_runs_through_the_cli(tmp_path: Path) -> None:
    report = tmp_path / "verdict.json"
    result = cli(
        "check",
        "lance_offsets.conformance.reference:hooked_lockfile",
        "--only",
        "H1,H2,H3",
        "--profile",
        "smoke",
        "--json",
        str(report),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(report.read_text())
    assert verdict["properties"] == {"H1": "passed", "H2": "passed", "H3": "passed"}


def _without_permission_override(argv: list[str]) -> list[str]:
    """Run ``argv`` so that file permissions apply: root bypasses them unless the override goes."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *argv]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize(
    "command",
    [
        ["get", "billing", "7", "1"],
        ["rm", "billing", "7", "1"],
        ["rm", "billing", "--all"],
        ["import", "IMPORT", "--merge", "--dry-run"],
    ],
)
def test_a_base_directory_the_user_cannot_enter_is_an_error(
    tmp_path: Path, command: list[str]
) -> None:
    base = tmp_path / "offsets"
    with LockFileOffsetStore.open(base, "billing") as store:
        store.save(7, 1, 100)
    source = tmp_path / "in.json"
    entry = {"topic_id": 7, "consumer_id": 1, "offset": 5}
    source.write_text(json.dumps({"format": "lance-offsets/1", "consumers": {"billing": [entry]}}))
    argv = [str(source) if word == "IMPORT" else word for word in command]
    argv.insert(1, str(base))
    base.chmod(0)
    try:
        done = subprocess.run(
            _without_permission_override([sys.executable, "-m", "lance_offsets", *argv]),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
    finally:
        base.chmod(0o755)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "permission denied" in done.stderr
    assert "nothing removed" not in done.stdout
    with LockFileOffsetStore.open(base, "billing") as store:
        assert store.load(7, 1) == 100


def test_directory_commands_load_no_database_driver(tmp_path: Path) -> None:
    # Store URLs are parsed for every command; only a database URL may load its driver.
    probe = (
        "import sys\n"
        "from lance_offsets._cli import main\n"
        f"assert main(['ls', {str(tmp_path)!r}]) == 0\n"
        f"assert main(['set', {tmp_path.as_uri()!r}, 'billing', '1', '2', '3']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite3', 'psycopg')))\n"
        f"assert main(['ls', {'sqlite:' + str(tmp_path / 'o.sqlite3')!r}]) == 1\n"
        "print('sqlite3' in sys.modules, 'psycopg' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["[]", "True False"]  # sqlite:, never psycopg
