"""Operating-system errors in every ``lance-offsets`` command: one line, worded alike, no change.

Permission errors are real: the tests run as root, whose capabilities bypass file permissions,
so the command runs under ``setpriv`` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from
its bounding set (as an ordinary user it runs as it is). Read-only file systems and full disks
are real too: a read-only bind mount and a tiny tmpfs in a private mount namespace (``unshare``).
Each case checks the status, the exact line, that no traceback is printed and that nothing under
the directory changed. Each command is a fresh interpreter (about 0.1 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lance_offsets import LockFileOffsetStore
from lance_offsets._cli_os_errors import os_error_line

#: Longest any child may run before the test fails instead of hanging.
DEADLINE = 60.0
DENY = "run as a user who can write there, or fix its permissions"
UNREADABLE = "run as a user who can read it, or fix its permissions"
ROFS = "read-only file system; remount it read-write, or use a path on a writable one"
CLI = [sys.executable, "-m", "lance_offsets"]


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Snapshot every entry under root: its mode and, for files, its contents (we are root)."""
    snapshot: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            snapshot[os.path.relpath(path, root)] = (os.stat(path).st_mode, None)
        for name in filenames:
            path = os.path.join(dirpath, name)
            snapshot[os.path.relpath(path, root)] = (os.stat(path).st_mode, Path(path).read_bytes())
    return snapshot


def _without_override() -> list[str] | None:
    """The prefix that runs a command without root's permission override; None if impossible."""
    if os.geteuid() != 0:
        return []  # permissions already apply
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The prefix for a command that permissions apply to; skips where there is none."""
    prefix = _without_override()
    if prefix is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop the override")
    locked = tmp_path_factory.mktemp("probe") / "locked"
    locked.write_text("x")
    locked.chmod(0)
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", f"open({str(locked)!r})"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"permissions are not enforced here even with {prefix}: {probe.stderr[-200:]}")
    return prefix


def cli(
    prefix: list[str], *argv: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command, after checking status and the absence of a trace."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    prefix = "lance-offsets: error: "
    assert line.startswith(prefix), line
    return line[len(prefix) :]


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """A base directory with consumer 'billing' (keys (1, 2) and (1, 3)); modes loosened after."""
    root = tmp_path / "offsets"
    root.mkdir()
    with LockFileOffsetStore.open(root, "billing") as store:
        store.save(1, 2, 42)
        store.save(1, 3, 7)
    yield root
    # So that pytest can remove the tree when the tests do not run as root. Top-down: each
    # directory is opened up before the walk lists it.
    tmp_path.chmod(0o700)
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o600)


def offset_file(base: Path, consumer: str, topic: int, consumer_id: int) -> str:
    return str(base / consumer / f"topic-{topic}-consumer-{consumer_id}.offset")


# --- the wording, over errors the system really raises ----------------------------------------


def test_the_wording_of_errors_the_system_raises(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError) as not_dir:
        os.mkdir(a_file / "sub")
    assert os_error_line(not_dir.value, "make it", writing=True) == (
        f"cannot make it: {str(a_file / 'sub')!r}: a file is where a directory should be; "
        "check the path, or move that file away"
    )
    with pytest.raises(IsADirectoryError) as is_dir:
        os.open(tmp_path, os.O_WRONLY)
    named = f"write to {str(tmp_path)!r}"
    assert os_error_line(is_dir.value, named, writing=True) == (
        f"cannot {named}: a directory is where a file should be; check the path, or move it away"
    )
    with pytest.raises(FileNotFoundError) as missing:
        os.rename(tmp_path / "nothing.offset", tmp_path / "b")
    assert os_error_line(missing.value, "rename", writing=True) == (
        f"cannot rename: offset file {str(tmp_path / 'nothing.offset')!r} -> "
        f"{str(tmp_path / 'b')!r}: no such file or directory; check the path"
    )
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError) as unnamed:
            os.read(fd, 1)  # carries no file name: the caller's path is shown
    finally:
        os.close(fd)
    line = os_error_line(unnamed.value, "read it", writing=False, path="/x/k.lock")
    assert line.startswith("cannot read it: lock file '/x/k.lock': a directory is where")


def test_an_error_no_command_expected_is_still_one_line_in_the_same_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from lance_offsets._cli import _run

    missing = tmp_path / "gone"

    def handler(_args: argparse.Namespace) -> int:
        missing.read_text()  # a real FileNotFoundError no command words itself
        return 0

    assert _run(argparse.Namespace(handler=handler, command="ls")) == 1
    assert capsys.readouterr().err == (
        f"lance-offsets: error: cannot complete 'lance-offsets ls': {str(missing)!r}: "
        "no such file or directory; check the path\n"
    )


# --- permission denied, for real --------------------------------------------------------------


def test_set_in_a_consumer_directory_it_may_not_write(unprivileged: list[str], base: Path) -> None:
    (base / "billing").chmod(0o555)
    before = tree(base)
    line = error_line(cli(unprivileged, "set", str(base), "billing", "1", "2", "5"))
    tmp = offset_file(base, "billing", 1, 2) + ".tmp"
    assert line == (
        "cannot write the offset of consumer 'billing' topic 1 consumer id 2: "
        f"temp file {tmp!r}: permission denied; {DENY}"
    )
    assert tree(base) == before


def test_set_of_a_new_consumer_in_a_base_directory_it_may_not_write(
    unprivileged: list[str], base: Path
) -> None:
    base.chmod(0o555)
    before = tree(base)
    line = error_line(cli(unprivileged, "set", str(base), "audit", "1", "2", "5"))
    assert line == (
        f"cannot create the directory of consumer 'audit': {str(base / 'audit')!r}: "
        f"permission denied; {DENY}"
    )
    assert tree(base) == before


def test_get_of_an_unreadable_offset_file(unprivileged: list[str], base: Path) -> None:
    path = offset_file(base, "billing", 1, 2)
    os.chmod(path, 0)
    before = tree(base)
    line = error_line(cli(unprivileged, "get", str(base), "billing", "1", "2"))
    assert line == (
        "cannot read the offset of consumer 'billing' topic 1 consumer id 2: "
        f"offset file {path!r}: permission denied; {UNREADABLE}"
    )
    assert tree(base) == before


@pytest.mark.parametrize("which", [("1", "2"), ("--all",)])
def test_rm_in_a_consumer_directory_it_may_not_write(
    unprivileged: list[str], base: Path, which: tuple[str, ...]
) -> None:
    (base / "billing").chmod(0o555)
    before = tree(base)
    line = error_line(cli(unprivileged, "rm", str(base), "billing", *which))
    assert line == (
        "cannot remove the offset of consumer 'billing' topic 1 consumer id 2: "
        f"offset file {offset_file(base, 'billing', 1, 2)!r}: permission denied; {DENY}"
    )
    assert tree(base) == before


def test_rm_all_stopped_by_one_lock_file_says_what_it_removed(
    unprivileged: list[str], base: Path
) -> None:
    lock = offset_file(base, "billing", 1, 3)[: -len(".offset")] + ".lock"
    os.chmod(lock, 0o444)  # another user's lock file: this one may not open it to lock
    line = error_line(cli(unprivileged, "rm", str(base), "billing", "--all"))
    assert line == (
        "cannot remove the offset of consumer 'billing' topic 1 consumer id 3: "
        f"lock file {lock!r}: permission denied; {DENY}; 1 of 2 offset(s) removed before"
    )
    with LockFileOffsetStore.open(base, "billing") as store:
        assert store.list_all() == {(1, 3): 7}


def test_ls_of_a_base_directory_it_may_not_read(unprivileged: list[str], base: Path) -> None:
    base.chmod(0o300)  # may enter, may not list
    before = tree(base)
    result = cli(unprivileged, "ls", str(base))
    assert error_line(result) == (
        f"cannot list the consumers in base directory {str(base)!r}: "
        f"permission denied; {UNREADABLE}"
    )
    assert result.stdout == ""
    assert tree(base) == before


def test_ls_lists_around_files_and_consumers_it_may_not_read(
    unprivileged: list[str], base: Path
) -> None:
    with LockFileOffsetStore.open(base, "audit") as store:
        store.save(3, 0, 17)
    with LockFileOffsetStore.open(base, "cat") as store:
        store.save(9, 9, 99)
    unreadable = offset_file(base, "billing", 1, 2)
    os.chmod(unreadable, 0)
    (base / "audit").chmod(0)
    before = tree(base)
    result = cli(unprivileged, "ls", str(base))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "consumer  topic  consumer id  offset",
        "billing       1            3       7",
        "cat           9            9      99",
    ]
    assert result.stderr.splitlines() == [
        f"lance-offsets: error: cannot list the offsets of consumer 'audit': "
        f"{str(base / 'audit')!r}: permission denied; {UNREADABLE}",
        "lance-offsets: error: cannot read the offset of consumer 'billing' topic 1 consumer id 2: "
        f"offset file {unreadable!r}: permission denied; {UNREADABLE}",
    ]
    assert tree(base) == before


def test_a_base_directory_it_may_not_enter_is_not_missing(
    unprivileged: list[str], base: Path
) -> None:
    base.parent.chmod(0o600)  # the parent cannot be searched: base cannot even be looked at
    try:
        line = error_line(cli(unprivileged, "get", str(base), "billing", "1", "2"))
    finally:
        base.parent.chmod(0o755)
    assert line == f"cannot use base directory {str(base)!r}: permission denied; " + (
        "run as a user who has access to it, or fix its permissions"
    )


def test_export_into_a_folder_it_may_not_write(
    unprivileged: list[str], base: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    out.mkdir()
    out.chmod(0o555)
    target = out / "offsets.json"
    before = tree(tmp_path)
    line = error_line(cli(unprivileged, "export", str(base), "-o", str(target)))
    tmp = re.escape(repr(f"{target}.tmp-")[:-1])
    assert re.fullmatch(
        rf"cannot write the export to {re.escape(repr(str(target)))}: {tmp}[0-9]+': "
        rf"permission denied; {re.escape(DENY)}",
        line,
    ), line
    assert tree(tmp_path) == before


def test_import_of_a_file_it_may_not_read(
    unprivileged: list[str], base: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "backup.json"
    doc.write_text(json.dumps({"format": "lance-offsets/1", "consumers": {}}))
    doc.chmod(0)
    before = tree(tmp_path)
    line = error_line(cli(unprivileged, "import", str(base), str(doc), "--merge"))
    assert line == f"cannot read the import file {str(doc)!r}: permission denied; {UNREADABLE}"
    assert tree(tmp_path) == before


def test_import_into_a_consumer_it_may_not_write_changes_nothing(
    unprivileged: list[str], base: Path
) -> None:
    (base / "billing").chmod(0o555)
    before = tree(base)
    entries = [{"topic_id": 1, "consumer_id": 2, "offset": 5}]
    # The file also names a new, empty consumer: it must not be created either.
    doc = {"format": "lance-offsets/1", "consumers": {"billing": entries, "zeta": []}}
    result = cli(unprivileged, "import", str(base), "-", "--merge", stdin=json.dumps(doc))
    tmp = offset_file(base, "billing", 1, 2) + ".tmp"
    assert error_line(result) == (
        "import stopped after 0 of 1 change(s): cannot write the offset of consumer 'billing' "
        f"topic 1 consumer id 2: temp file {tmp!r}: permission denied; {DENY}; "
        "no offset was changed"
    )
    assert result.stdout == ""
    assert tree(base) == before


def test_import_lnc_of_files_it_may_not_read(
    unprivileged: list[str], base: Path, tmp_path: Path
) -> None:
    lnc = tmp_path / "lnc"
    lnc.mkdir()
    one = lnc / "app_5.offset"
    one.write_text(json.dumps({"consumer": "app", "topic_id": 5, "topic_name": None, "offset": 9}))
    one.chmod(0)
    before = tree(tmp_path)
    line = error_line(cli(unprivileged, "import-lnc", str(lnc), "--to", str(base)))
    assert line == (
        f"cannot read the lnc-client offset file {str(one)!r}: permission denied; {UNREADABLE}"
    )
    lnc.chmod(0o300)
    try:
        line = error_line(cli(unprivileged, "import-lnc", str(lnc), "--to", str(base)))
    finally:
        lnc.chmod(0o755)
    assert line == (
        f"cannot list the lnc-client offsets directory {str(lnc)!r}: "
        f"permission denied; {UNREADABLE}"
    )
    assert tree(tmp_path) == before


def test_bench_in_a_directory_it_may_not_write(unprivileged: list[str], tmp_path: Path) -> None:
    scratch = tmp_path / "disk"
    scratch.mkdir()
    scratch.chmod(0o555)
    before = tree(tmp_path)
    line = error_line(cli(unprivileged, "bench", "--dir", str(scratch), "--only", "stores"))
    where = re.escape(repr(str(scratch)))
    assert re.fullmatch(
        rf"cannot make a scratch directory in --dir {where}: "
        rf"{where[:-1]}/lance-bench-[^']+': permission denied; {re.escape(DENY)}",
        line,
    ), line
    assert tree(tmp_path) == before


def test_check_refuses_a_report_it_could_not_write_before_any_work(
    unprivileged: list[str], tmp_path: Path
) -> None:
    pytest.importorskip("hypothesis", reason="check needs the check extra")
    reports = tmp_path / "reports"
    reports.mkdir()
    reports.chmod(0o555)
    report = reports / "verdict.json"
    result = cli(unprivileged, "check", "--only", "C1", "--json", str(report))
    # A report that cannot be written is a bad argument, found before minutes of work: status 2.
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"lance-offsets: error: check: cannot write the --json report {str(report)!r}: "
        f"{str(reports)!r}: permission denied; {DENY}\n"
    )
    assert os.listdir(reports) == []


def test_sqlite_database_it_may_only_read(unprivileged: list[str], tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    url = "sqlite:///" + str(db).lstrip("/")
    assert cli([], "set", url, "billing", "1", "2", "42").returncode == 0
    db.chmod(0o444)
    before = tree(tmp_path)
    line = error_line(cli(unprivileged, "set", url, "billing", "1", "2", "5"))
    assert line == f"cannot use SQLite database {str(db)!r}: permission denied; {DENY}"
    assert tree(tmp_path) == before
    listed = cli(unprivileged, "ls", url)  # reading needs no write permission on the file
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines()[1].split() == ["billing", "1", "2", "42"]


# --- a file where a directory should be ----------------------------------------------------------


def test_a_file_where_a_directory_should_be(base: Path, tmp_path: Path) -> None:
    (base / "audit").write_text("not a consumer directory")
    before = tree(tmp_path)
    line = error_line(cli([], "set", str(base), "audit", "1", "2", "3"))
    assert line == (
        f"cannot create the directory of consumer 'audit': {str(base / 'audit')!r}: "
        "a file is where a directory should be; check the path, or move that file away"
    )
    below = base / "audit" / "offsets"
    line = error_line(cli([], "ls", str(below)))
    assert line == (
        f"cannot use base directory {str(below)!r}: a file is where a directory should be; "
        "check the path, or move that file away"
    )
    assert tree(tmp_path) == before


# --- a read-only file system, a full disk (private mount namespaces) -----------------------------


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless this process may make private mounts (root, unshare, mount)."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("unshare or mount (util-linux) is not installed")
    where = tmp_path_factory.mktemp("mountprobe")
    probe = _in_namespace(f"mount -t tmpfs -o size=64k none {where} && echo mounted")
    if probe.stdout.strip() != "mounted":
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.strip()[-200:]}")


def test_a_read_only_file_system_refuses_every_write(
    mounts: None, base: Path, tmp_path: Path
) -> None:
    db = tmp_path / "o.sqlite3"
    url = "sqlite:///" + str(db).lstrip("/")
    assert cli([], "set", url, "billing", "1", "2", "42").returncode == 0
    doc = tmp_path / "doc.json"
    entries = [{"topic_id": 1, "consumer_id": 2, "offset": 5}]
    doc.write_text(json.dumps({"format": "lance-offsets/1", "consumers": {"billing": entries}}))
    before = tree(tmp_path)
    commands = [
        ["set", str(base), "billing", "1", "2", "5"],
        ["set", str(base), "audit", "1", "2", "5"],
        ["rm", str(base), "billing", "--all"],
        ["import", str(base), str(doc), "--merge"],
        ["set", url, "billing", "1", "2", "5"],
    ]
    python = " ".join(map(repr, CLI))
    runs = "; ".join(
        f"{python} {' '.join(map(repr, argv))} 2>&1; echo status=$?" for argv in commands
    )
    result = _in_namespace(
        f"mount --bind {tmp_path} {tmp_path} && mount -o remount,bind,ro {tmp_path} && {runs}"
    )
    assert "Traceback" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[1::2] == ["status=1"] * len(commands), result.stdout + result.stderr
    lock = offset_file(base, "billing", 1, 2)[: -len(".offset")] + ".lock"
    assert lines[0::2] == [
        "lance-offsets: error: cannot write the offset of consumer 'billing' topic 1 consumer "
        f"id 2: lock file {lock!r}: {ROFS}",
        "lance-offsets: error: cannot create the directory of consumer 'audit': "
        f"{str(base / 'audit')!r}: {ROFS}",
        "lance-offsets: error: cannot remove the offset of consumer 'billing' topic 1 consumer "
        f"id 2: lock file {lock!r}: {ROFS}",
        "lance-offsets: error: import stopped after 0 of 1 change(s): cannot write the offset "
        f"of consumer 'billing' topic 1 consumer id 2: lock file {lock!r}: {ROFS}; "
        "no offset was changed",
        f"lance-offsets: error: cannot use SQLite database {str(db)!r}: {ROFS}",
    ]
    assert tree(tmp_path) == before


def test_a_full_disk_leaves_the_old_offset(mounts: None, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    python = " ".join(map(repr, CLI))
    offsets = disk / "offsets"
    result = _in_namespace(
        f"mount -t tmpfs -o size=64k none {disk} && mkdir {offsets} && "
        f"{python} set {offsets} billing 1 2 42 >/dev/null && "
        # Fill what is left (dd stops at the first ENOSPC), then try to move the offset.
        f"(dd if=/dev/zero of={disk}/filler bs=4096 2>/dev/null; true) && "
        f"{python} set {offsets} billing 1 2 5; echo status=$?; "
        f"cat {offsets}/billing/topic-1-consumer-2.offset; ls {offsets}/billing"
    )
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        "lance-offsets: error: cannot write the offset of consumer 'billing' topic 1 consumer "
        f"id 2: offset file {offset_file(offsets, 'billing', 1, 2)!r}: no space left on device; "
        "free some space there, then run the command again\n"
    )
    assert result.stdout.splitlines() == [
        "status=1",
        "42",
        "topic-1-consumer-2.lock",
        "topic-1-consumer-2.offset",
    ]
