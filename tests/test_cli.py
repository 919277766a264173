"""The lance-offsets command line, run in-process through main() on real directories.

tests/slow/test_cli_processes.py runs the command in real subprocesses (lock held by another
process, stdin, what start-up imports).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import NamedTuple

import portalocker
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lance_offsets import CorruptOffsetError, LockFileOffsetStore, SQLiteOffsetStore, __version__
from lance_offsets._cli import CHECK_MODULE, main
from lance_offsets._store_url import StoreUrlError, parse_store_url

U64 = 2**64 - 1
U32 = 2**32 - 1


class Result(NamedTuple):
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run the real main() and return its status and what it printed."""
    capsys.readouterr()  # drop anything printed before
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def tree(root: Path) -> dict[str, bytes | None]:
    """Snapshot every file (contents) and directory (None) under root."""
    snapshot: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            snapshot[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path):  # another test's socket, FIFO or dangling link
                snapshot[os.path.relpath(path, root)] = (
                    os.readlink(path).encode() if os.path.islink(path) else b""
                )
                continue
            with open(path, "rb") as handle:
                snapshot[os.path.relpath(path, root)] = handle.read()
    return snapshot


def sqlite_url(path: Path) -> str:
    """The ``sqlite:///abs/path`` URL of a path (``sqlite:///C:/x`` on Windows)."""
    return "sqlite:///" + path.as_posix().lstrip("/")


def seed_offsets(base: Path) -> None:
    with LockFileOffsetStore.open(base, "billing") as store:
        store.save(1, 2, 42)
        store.save(1, 10, 7)
        store.save(U32, U64, U64)
    with LockFileOffsetStore.open(base, "audit") as store:
        store.save(3, 0, 0)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--version")
    assert result.code == 0
    assert result.out == f"lance-offsets {__version__}\n"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys)
    assert result.code == 2
    assert "required: COMMAND" in result.err


def test_set_then_get_writes_the_rust_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(capsys, "set", str(tmp_path), "billing", "1", "2", "42")
    assert first.code == 0
    assert first.out == "consumer 'billing' topic 1 consumer id 2: none -> 42\n"
    second = run(capsys, "set", str(tmp_path), "billing", "1", "2", "5")
    assert second.out == "consumer 'billing' topic 1 consumer id 2: 42 -> 5\n"
    assert (tmp_path / "billing" / "topic-1-consumer-2.offset").read_bytes() == b"5\n"
    got = run(capsys, "get", str(tmp_path), "billing", "1", "2")
    assert (got.code, got.out, got.err) == (0, "5\n", "")


def test_extremes_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "set", str(tmp_path), "c", str(U32), str(U64), str(U64)).code == 0
    assert run(capsys, "get", str(tmp_path), "c", str(U32), str(U64)).out == f"{U64}\n"
    with LockFileOffsetStore.open(tmp_path, "c") as store:
        assert store.list_all() == {(U32, U64): U64}


def test_ls_lists_every_consumer_sorted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a consumer")
    (tmp_path / "a:b").mkdir()  # not a portable consumer name: no store wrote it
    (tmp_path / "billing" / "README").write_text("foreign file, ignored")
    result = run(capsys, "ls", str(tmp_path))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "consumer       topic           consumer id                offset",
        "audit              3                     0                     0",
        "billing            1                     2                    42",
        "billing            1                    10                     7",
        f"billing   {U32}  {U64}  {U64}",
    ]


def test_ls_json_and_consumer_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    result = run(capsys, "ls", str(tmp_path), "--consumer", "audit", "--json")
    assert result.code == 0
    assert json.loads(result.out) == [
        {"consumer": "audit", "topic_id": 3, "consumer_id": 0, "offset": 0}
    ]


def test_ls_unknown_consumer_fails_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    before = tree(tmp_path)
    result = run(capsys, "ls", str(tmp_path), "--consumer", "nobody")
    assert result.code == 1
    assert result.err == f"lance-offsets: error: no consumer 'nobody' under {str(tmp_path)!r}\n"
    assert tree(tmp_path) == before


def test_ls_lists_every_healthy_offset_and_one_error_line_per_damaged_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    billing = tmp_path / "billing"
    garbage = billing / "topic-5-consumer-5.offset"
    garbage.write_bytes(b"garbage")
    folder = billing / "topic-6-consumer-6.offset"  # a directory where a file should be
    folder.mkdir()
    before = tree(tmp_path)
    healthy = [
        "consumer       topic           consumer id                offset",
        "audit              3                     0                     0",
        "billing            1                     2                    42",
        "billing            1                    10                     7",
        f"billing   {U32}  {U64}  {U64}",
    ]
    damage = [
        f"lance-offsets: error: consumer 'billing': corrupt offset for topic_id=5 consumer_id=5, "
        f"file {str(garbage)!r}: not a decimal number (content b'garbage'); restore the file "
        "from a backup or set the offset explicitly with 'lance-offsets set'",
        "lance-offsets: error: cannot read the offset of consumer 'billing' topic 6 consumer id 6: "
        f"offset file {str(folder)!r}: a directory is where a file should be; check the path, or "
        "move it away",
    ]
    result = run(capsys, "ls", str(tmp_path))
    assert (result.code, result.out.splitlines(), result.err.splitlines()) == (1, healthy, damage)
    # stdout stays what a script parses: the JSON holds every healthy row and nothing else.
    as_json = run(capsys, "ls", str(tmp_path), "--consumer", "billing", "--json")
    assert (as_json.code, as_json.err.splitlines()) == (1, damage)
    assert json.loads(as_json.out) == [
        {"consumer": "billing", "topic_id": 1, "consumer_id": 2, "offset": 42},
        {"consumer": "billing", "topic_id": 1, "consumer_id": 10, "offset": 7},
        {"consumer": "billing", "topic_id": U32, "consumer_id": U64, "offset": U64},
    ]
    assert tree(tmp_path) == before
    # The library is as loud as ever: list_all raises on the damaged consumer (F1).
    folder.rmdir()
    with LockFileOffsetStore.open(tmp_path, "billing") as store, pytest.raises(CorruptOffsetError):
        store.list_all()


def test_ls_of_a_sqlite_store_lists_the_rows_beside_a_damaged_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "o.sqlite3"
    url = sqlite_url(db)
    for key, offset in (("1", "10"), ("2", "20"), ("3", "30")):
        assert run(capsys, "set", url, "billing", "7", key, offset).code == 0
    with contextlib.closing(sqlite3.connect(db)) as con:  # one row's checksum no longer matches
        con.execute(
            "UPDATE lance_offsets SET committed_offset = committed_offset + 1 "
            "WHERE consumer_id = ?",
            (2 - 2**63,),  # ids are stored shifted into the signed range (docs/databases.md)
        )
        con.commit()
    result = run(capsys, "ls", url)
    assert result.code == 1
    assert [line.split() for line in result.out.splitlines()[1:]] == [
        ["billing", "7", "1", "10"],
        ["billing", "7", "3", "30"],
    ]
    (line,) = result.err.splitlines()
    assert line.startswith(
        f"lance-offsets: error: consumer 'billing': corrupt offset database {str(db)!r} "
        "(topic_id=7 consumer_id=2): row checksum "
    )


def test_get_missing_key_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    before = tree(tmp_path)
    result = run(capsys, "get", str(tmp_path), "billing", "9", "9")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "lance-offsets: error: no offset stored for consumer 'billing' topic 9 consumer id 9\n"
    )
    absent = run(capsys, "get", str(tmp_path), "nobody", "1", "2")
    assert absent.code == 1
    assert "no directory for that consumer" in absent.err
    assert tree(tmp_path) == before  # reading never creates a consumer directory


def test_get_corrupt_exits_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    bad = tmp_path / "billing" / "topic-1-consumer-2.offset"
    bad.write_bytes(b"")
    result = run(capsys, "get", str(tmp_path), "billing", "1", "2")
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert "corrupt offset for topic_id=1 consumer_id=2" in line
    assert str(bad) in line


def test_set_repairs_a_corrupt_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    (tmp_path / "billing" / "topic-1-consumer-2.offset").write_bytes(b"4x\n")
    result = run(capsys, "set", str(tmp_path), "billing", "1", "2", "40")
    assert result.code == 0, result.err
    assert result.out.startswith("consumer 'billing' topic 1 consumer id 2: corrupt (")
    assert result.out.endswith(") -> 40\n")
    assert run(capsys, "get", str(tmp_path), "billing", "1", "2").out == "40\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "{base}", "billing", "-1", "2"],
        ["get", "{base}", "billing", str(U32 + 1), "2"],
        ["get", "{base}", "billing", "1", str(U64 + 1)],
        ["set", "{base}", "billing", "1", "2", "1.0"],
        ["set", "{base}", "billing", "1", "2", "0x10"],
        ["set", "{base}", "billing", "1", "2", "+5"],
        ["set", "{base}", "billing", "1", "2", " 5"],
        ["set", "{base}", "billing", "1", "2", "1_000"],
        ["set", "{base}", "billing", "1", "2", str(U64 + 1)],
        ["set", "{base}", "..", "1", "2", "3"],
        ["set", "{base}", "a/b", "1", "2", "3"],
        ["set", "{base}", "CON", "1", "2", "3"],
        ["set", "{base}", "x:y", "1", "2", "3"],
        ["set", "{base}", "", "1", "2", "3"],
        ["set", "{base}", "billing", "1", "2", "3", "--lock-timeout", "-1"],
        ["set", "{base}", "billing", "1", "2", "3", "--lock-timeout", "nan"],
        ["set", "{base}", "billing", "1", "2"],
        ["rm", "{base}", "billing"],
        ["rm", "{base}", "billing", "1"],
        ["rm", "{base}", "billing", "1", "2", "--all"],
        ["ls", "{base}", "--consumer", "../x"],
        ["frobnicate", "{base}"],
    ],
)
def test_usage_errors_exit_2_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    seed_offsets(tmp_path)
    before = tree(tmp_path.parent)
    result = run(capsys, *(a.format(base=tmp_path) for a in argv))
    assert result.code == 2
    assert result.err.splitlines()[-1].startswith("lance-offsets")
    assert ": error: " in result.err.splitlines()[-1]
    assert "Traceback" not in result.err
    assert tree(tmp_path.parent) == before


@pytest.mark.parametrize("command", [["ls"], ["get", "c", "1", "2"], ["set", "c", "1", "2", "3"]])
def test_missing_or_file_base_dir_exits_1_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "missing"
    result = run(capsys, command[0], str(missing), *command[1:])
    assert result.code == 1
    assert result.err == f"lance-offsets: error: base directory {str(missing)!r} does not exist\n"
    assert not missing.exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run(capsys, command[0], str(a_file), *command[1:])
    assert result.code == 1
    assert "is not a directory" in result.err


def test_rm_one_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    result = run(capsys, "rm", str(tmp_path), "billing", "1", "2")
    assert (result.code, result.out) == (
        0,
        "consumer 'billing' topic 1 consumer id 2: removed (was 42)\n",
    )
    again = run(capsys, "rm", str(tmp_path), "billing", "1", "2")
    assert again.code == 0
    assert again.out.endswith("no offset stored, nothing removed\n")
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        assert store.list_all() == {(1, 10): 7, (U32, U64): U64}
    before = tree(tmp_path)
    assert run(capsys, "rm", str(tmp_path), "nobody", "1", "2").code == 0
    assert tree(tmp_path) == before


def test_rm_all_works_over_corrupt_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    (tmp_path / "billing" / "topic-1-consumer-10.offset").write_bytes(b"\x00\x00")
    result = run(capsys, "rm", str(tmp_path), "billing", "--all")
    assert (result.code, result.out) == (0, "removed 3 offset(s) of consumer 'billing'\n")
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        assert store.list_all() == {}
    with LockFileOffsetStore.open(tmp_path, "audit") as store:
        assert store.list_all() == {(3, 0): 0}


def test_lock_timeout_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    lock_path = tmp_path / "billing" / "topic-1-consumer-2.lock"
    # flock locks belong to an open file description, so this separate open excludes the CLI's
    # own open of the same file even inside this process.
    with open(lock_path, "a+b") as held:
        portalocker.lock(held, portalocker.LOCK_EX)
        result = run(
            capsys, "set", str(tmp_path), "billing", "1", "2", "99", "--lock-timeout", "0.2"
        )
        portalocker.unlock(held)
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith("lance-offsets: error: could not lock topic_id=1 consumer_id=2")
    assert str(lock_path) in line
    assert run(capsys, "get", str(tmp_path), "billing", "1", "2").out == "42\n"


def test_check_is_wired_lazily(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec(CHECK_MODULE) is None:
        result = run(capsys, "check", "some.module:factory")
        assert result.code == 1
        assert result.err == (
            "lance-offsets: error: the 'check' command is not available in this installation "
            f"({CHECK_MODULE} is missing)\n"
        )
    else:
        result = run(capsys, "check", "--help")
        assert result.code == 0
        assert result.out.startswith("usage: lance-offsets check")
    top = run(capsys, "--help")
    assert top.code == 0
    assert "check" in top.out


def test_main_returns_codes_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    # main() is the console script's entry: it must return, not raise SystemExit, for --help too.
    assert main(["ls", "--help"]) == 0
    assert "STORE" in capsys.readouterr().out


def test_result_helper_sees_real_streams(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == Result(0, f"lance-offsets {__version__}\n", "")


# --- export and import -------------------------------------------------------------------------


def export_doc(base: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    result = run(capsys, "export", str(base), *extra)
    assert result.code == 0, result.err
    doc: dict[str, object] = json.loads(result.out)
    return doc


def test_export_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    (tmp_path / "empty").mkdir()
    assert export_doc(tmp_path, capsys) == {
        "format": "lance-offsets/1",
        "consumers": {
            "audit": [{"topic_id": 3, "consumer_id": 0, "offset": 0}],
            "billing": [
                {"topic_id": 1, "consumer_id": 2, "offset": 42},
                {"topic_id": 1, "consumer_id": 10, "offset": 7},
                {"topic_id": U32, "consumer_id": U64, "offset": U64},
            ],
            "empty": [],
        },
    }
    only = export_doc(tmp_path, capsys, "--consumer", "audit")
    assert only["consumers"] == {"audit": [{"topic_id": 3, "consumer_id": 0, "offset": 0}]}


def test_export_to_file_and_failed_export_keeps_the_old_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "offsets"
    base.mkdir()
    seed_offsets(base)
    out = tmp_path / "backup.json"
    result = run(capsys, "export", str(base), "-o", str(out))
    assert (result.code, result.out) == (0, "")
    assert result.err == f"exported 4 offset(s) of 2 consumer(s) to {out}\n"
    good = out.read_bytes()
    assert json.loads(good)["format"] == "lance-offsets/1"
    (base / "audit" / "topic-3-consumer-0.offset").write_bytes(b"-3\n")
    failed = run(capsys, "export", str(base), "-o", str(out))
    assert failed.code == 1
    assert "corrupt offset for topic_id=3 consumer_id=0" in failed.err
    assert out.read_bytes() == good  # a partial backup never replaces a good one
    assert sorted(os.listdir(tmp_path)) == ["backup.json", "offsets"]  # no temp file left


def test_round_trip_export_import_into_an_empty_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    seed_offsets(source)
    (source / "empty").mkdir()
    backup = tmp_path / "backup.json"
    assert run(capsys, "export", str(source), "-o", str(backup)).code == 0
    imported = run(capsys, "import", str(target), str(backup), "--merge")
    assert imported.code == 0, imported.err
    assert imported.err == f"imported {backup}: 4 set, 0 deleted, 0 unchanged in 3 consumer(s)\n"
    assert run(capsys, "ls", str(target)).out == run(capsys, "ls", str(source)).out
    offsets = {k: v for k, v in tree(source).items() if k.endswith(".offset")}
    assert {k: v for k, v in tree(target).items() if k.endswith(".offset")} == offsets
    assert (target / "empty").is_dir()
    # Importing again changes nothing and says so.
    again = run(capsys, "import", str(target), str(backup), "--replace")
    assert again.out == ""
    assert again.err.endswith(": 0 set, 0 deleted, 4 unchanged in 3 consumer(s)\n")


def test_import_merge_keeps_and_replace_deletes_unlisted_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    doc = tmp_path.parent / f"{tmp_path.name}-doc.json"
    doc.write_text(
        json.dumps(
            {
                "format": "lance-offsets/1",
                "consumers": {"billing": [{"topic_id": 1, "consumer_id": 2, "offset": 50}]},
            }
        )
    )
    merged = run(capsys, "import", str(tmp_path), str(doc), "--merge")
    assert merged.out == "set consumer 'billing' topic 1 consumer id 2: 42 -> 50\n"
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        assert store.list_all() == {(1, 2): 50, (1, 10): 7, (U32, U64): U64}
    replaced = run(capsys, "import", str(tmp_path), str(doc), "--replace")
    assert replaced.out.splitlines() == [
        "delete consumer 'billing' topic 1 consumer id 10 (was 7)",
        f"delete consumer 'billing' topic {U32} consumer id {U64} (was {U64})",
    ]
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        assert store.list_all() == {(1, 2): 50}
    with LockFileOffsetStore.open(tmp_path, "audit") as store:  # not named in the file: kept
        assert store.list_all() == {(3, 0): 0}


def test_import_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_offsets(tmp_path)
    doc = tmp_path.parent / f"{tmp_path.name}-doc.json"
    doc.write_text(
        json.dumps(
            {
                "format": "lance-offsets/1",
                "consumers": {
                    "billing": [{"topic_id": 1, "consumer_id": 2, "offset": 1}],
                    "newcomer": [{"topic_id": 5, "consumer_id": 5, "offset": 5}],
                },
            }
        )
    )
    before = tree(tmp_path)
    result = run(capsys, "import", str(tmp_path), str(doc), "--replace", "--dry-run")
    assert result.code == 0
    assert result.out.splitlines() == [
        "would set consumer 'billing' topic 1 consumer id 2: 42 -> 1",
        "would delete consumer 'billing' topic 1 consumer id 10 (was 7)",
        f"would delete consumer 'billing' topic {U32} consumer id {U64} (was {U64})",
        "would set consumer 'newcomer' topic 5 consumer id 5: none -> 5",
    ]
    assert (
        result.err
        == "dry run: 2 set, 2 deleted, 0 unchanged in 2 consumer(s); nothing was changed\n"
    )
    assert tree(tmp_path) == before


def test_import_overwrites_a_corrupt_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    (tmp_path / "billing" / "topic-1-consumer-2.offset").write_bytes(b"")
    doc = tmp_path.parent / f"{tmp_path.name}-doc.json"
    doc.write_text(
        '{"format": "lance-offsets/1", "consumers": '
        '{"billing": [{"topic_id": 1, "consumer_id": 2, "offset": 43}]}}'
    )
    result = run(capsys, "import", str(tmp_path), str(doc), "--merge")
    assert result.code == 0, result.err
    assert result.out.startswith("set consumer 'billing' topic 1 consumer id 2: corrupt (")
    assert run(capsys, "get", str(tmp_path), "billing", "1", "2").out == "43\n"


GOOD_ENTRY = '{"topic_id": 1, "consumer_id": 2, "offset": 3}'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not valid JSON: Expecting value at line 1 column 1"),
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"consumers": {}}', "unsupported format None"),
        ('{"format": "lance-offsets/2", "consumers": {}}', "unsupported format 'lance-offsets/2'"),
        ('{"format": "lance-offsets/1"}', "'consumers' is missing"),
        (
            '{"format": "lance-offsets/1", "consumers": {}, "extra": 1}',
            "unknown field(s) ['extra']",
        ),
        ('{"format": "lance-offsets/1", "consumers": []}', "'consumers' must be an object"),
        ('{"format": "lance-offsets/1", "consumers": {"a/b": []}}', "consumers['a/b']: invalid"),
        ('{"format": "lance-offsets/1", "consumers": {"CON": []}}', "reserved device name"),
        ('{"format": "lance-offsets/1", "consumers": {"x": {}}}', "consumers['x'] must be a list"),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": 1, "offset": 3}]}}',
            "consumers['x'][0] must be an object with exactly",
        ),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": 1, "consumer_id": 2, '
            '"offset": 3, "note": ""}]}}',
            "consumers['x'][0] must be an object with exactly",
        ),
        (
            f'{{"format": "lance-offsets/1", "consumers": {{"x": [{GOOD_ENTRY}, {{"topic_id": '
            f'1, "consumer_id": 2, "offset": 3.0}}]}}}}',
            "consumers['x'][1]: offset must be an int, not float",
        ),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": true, '
            '"consumer_id": 2, "offset": 3}]}}',
            "consumers['x'][0]: topic_id must be an int, not bool",
        ),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": 1, '
            f'"consumer_id": 2, "offset": {U64 + 1}}}]}}}}',
            f"consumers['x'][0]: offset must be in 0..{U64}",
        ),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": -1, '
            '"consumer_id": 2, "offset": 3}]}}',
            "topic_id must be in 0..4294967295, got -1",
        ),
        (
            '{"format": "lance-offsets/1", "consumers": {"x": [{"topic_id": 1, '
            '"consumer_id": 2, "offset": NaN}]}}',
            "NaN is not a valid offset",
        ),
        (
            f'{{"format": "lance-offsets/1", "consumers": {{"x": [{GOOD_ENTRY}, {GOOD_ENTRY}]}}}}',
            "consumers['x'][1]: topic 1 consumer id 2 is listed twice",
        ),
        (
            f'{{"format": "lance-offsets/1", "consumers": {{"x": [], "x": [{GOOD_ENTRY}]}}}}',
            "duplicate key 'x' in a JSON object",
        ),
        # A bad entry after good ones, in a later consumer: still nothing is applied.
        (
            f'{{"format": "lance-offsets/1", "consumers": {{"billing": [{GOOD_ENTRY}], '
            '"z": [{"topic_id": 1, "consumer_id": 2, "offset": "3"}]}}',
            "consumers['z'][0]: offset must be an int, not str",
        ),
    ],
)
def test_bad_import_files_exit_1_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    base = tmp_path / "offsets"
    base.mkdir()
    seed_offsets(base)
    doc = tmp_path / "doc.json"
    doc.write_text(content)
    before = tree(base)
    result = run(capsys, "import", str(base), str(doc), "--replace")
    assert (result.code, result.out) == (1, "")
    (line,) = result.err.splitlines()
    assert line.startswith(f"lance-offsets: error: {doc}: ")
    assert message in line
    assert line.endswith("; nothing was changed")
    assert tree(base) == before


def test_import_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "offsets"
    base.mkdir()
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"format": "caf\xe9"}')
    result = run(capsys, "import", str(base), str(not_utf8), "--merge")
    assert result.code == 1
    assert result.err == (
        f"lance-offsets: error: {not_utf8}: not UTF-8 text (invalid continuation byte at byte 15)\n"
    )
    missing = tmp_path / "missing.json"
    result = run(capsys, "import", str(base), str(missing), "--merge")
    assert result.code == 1
    assert result.err == (
        f"lance-offsets: error: cannot read the import file {str(missing)!r}: "
        "no such file or directory; check the path\n"
    )
    assert os.listdir(base) == []


def test_import_needs_an_explicit_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"format": "lance-offsets/1", "consumers": {}}')
    result = run(capsys, "import", str(tmp_path), str(doc))
    assert result.code == 2
    assert "one of the arguments --merge --replace is required" in result.err
    both = run(capsys, "import", str(tmp_path), str(doc), "--merge", "--replace")
    assert both.code == 2


def test_import_replace_with_an_empty_list_clears_that_consumer_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    doc = tmp_path.parent / f"{tmp_path.name}-doc.json"
    doc.write_text('{"format": "lance-offsets/1", "consumers": {"audit": []}}')
    merged = run(capsys, "import", str(tmp_path), str(doc), "--merge")
    assert (merged.code, merged.out) == (0, "")
    replaced = run(capsys, "import", str(tmp_path), str(doc), "--replace")
    assert replaced.out == "delete consumer 'audit' topic 3 consumer id 0 (was 0)\n"
    with LockFileOffsetStore.open(tmp_path, "audit") as store:
        assert store.list_all() == {}
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        assert len(store.list_all()) == 3


_names = st.text(alphabet="abcxyz-_.0", min_size=1, max_size=6).filter(
    lambda n: n not in (".", "..") and not n.endswith(".")
)
_offsets = st.dictionaries(
    st.tuples(st.integers(0, U32), st.integers(0, U64)), st.integers(0, U64), max_size=4
)


@settings(
    deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(_names, _offsets, max_size=3))
def test_export_import_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    wanted: dict[str, dict[tuple[int, int], int]],
) -> None:
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("target")
    for name, offsets in wanted.items():
        with LockFileOffsetStore.open(source, name) as store:
            for key, offset in offsets.items():
                store.save(*key, offset)
    exported = run(capsys, "export", str(source))
    assert exported.code == 0, exported.err
    doc = source.parent / f"{source.name}.json"
    doc.write_text(exported.out)
    assert run(capsys, "import", str(target), str(doc), "--replace").code == 0
    for name, offsets in wanted.items():
        with LockFileOffsetStore.open(target, name) as store:
            assert store.list_all() == offsets
    assert sorted(os.listdir(target)) == sorted(wanted)
    assert run(capsys, "export", str(target)).out == exported.out


def test_rm_all_of_an_unknown_consumer_exits_1_like_ls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    before = tree(tmp_path)
    result = run(capsys, "rm", str(tmp_path), "nosuch", "--all")
    assert result.code == 1
    assert result.err == f"lance-offsets: error: no consumer 'nosuch' under {str(tmp_path)!r}\n"
    assert run(capsys, "ls", str(tmp_path), "--consumer", "nosuch").code == 1
    assert tree(tmp_path) == before


def test_lock_timeout_forever_waits_and_other_words_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    result = run(
        capsys, "set", str(tmp_path), "billing", "1", "2", "43", "--lock-timeout", "forever"
    )
    assert result.code == 0, result.err
    assert run(capsys, "get", str(tmp_path), "billing", "1", "2").out == "43\n"
    for word in ("inf", "-1", "never"):
        bad = run(capsys, "get", str(tmp_path), "billing", "1", "2", "--lock-timeout", word)
        assert bad.code == 2
        assert f"or 'forever', got {word!r}" in bad.err


def test_export_into_a_missing_directory_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    target = tmp_path / "no" / "such" / "offsets.json"
    result = run(capsys, "export", str(tmp_path), "-o", str(target))
    assert result.code == 1
    assert result.err == (
        f"lance-offsets: error: cannot write {target}: no such directory {target.parent}\n"
    )
    assert ".tmp" not in result.err


def test_failed_import_lists_only_the_changes_it_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_offsets(tmp_path)
    document = {
        "format": "lance-offsets/1",
        "consumers": {
            "billing": [
                {"topic_id": 1, "consumer_id": 2, "offset": 50},
                {"topic_id": 1, "consumer_id": 10, "offset": 60},
            ]
        },
    }
    source = tmp_path / "in.json"
    source.write_text(json.dumps(document))
    base = tmp_path / "base"
    base.mkdir()
    seed_offsets(base)
    # Hold the second key's lock: the import applies the first change, then times out.
    with open(base / "billing" / "topic-1-consumer-10.lock", "a+b") as held:
        portalocker.lock(held, portalocker.LOCK_EX)
        result = run(capsys, "import", str(base), str(source), "--merge", "--lock-timeout", "0.2")
        portalocker.unlock(held)
    assert result.code == 1
    assert "consumer id 10" not in result.out  # never applied, so never announced
    assert result.out == "set consumer 'billing' topic 1 consumer id 2: 42 -> 50\n"
    assert "import stopped after 1 of 2 change(s)" in result.err
    with LockFileOffsetStore.open(base, "billing") as store:
        assert (store.load(1, 2), store.load(1, 10)) == (50, 7)


def test_rm_all_after_double_dash_says_where_it_belongs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "set", str(tmp_path), "--", "-x", "1", "1", "5").code == 0
    wrong = run(capsys, "rm", str(tmp_path), "--", "-x", "--all")
    assert wrong.code == 2
    assert "put it first: rm STORE --all -- CONSUMER" in wrong.err
    right = run(capsys, "rm", str(tmp_path), "--all", "--", "-x")
    assert (right.code, right.out) == (0, "removed 1 offset(s) of consumer '-x'\n")


# --- store URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        ("offsets", "directory", "offsets"),
        ("/var/lib/offsets", "directory", "/var/lib/offsets"),
        ("C:/offsets", "directory", "C:/offsets"),  # a drive letter is not a scheme
        ("notes:v2/offsets", "directory", "notes:v2/offsets"),  # no "//": a relative path
        ("file:///var/lib/offsets", "directory", "/var/lib/offsets"),
        ("file://localhost/var/lib/a%20b", "directory", "/var/lib/a b"),
        ("sqlite:///var/lib/o.sqlite3", "sqlite", "/var/lib/o.sqlite3"),
        ("SQLite:///var/lib/o.sqlite3", "sqlite", "/var/lib/o.sqlite3"),
        ("sqlite:data/o.sqlite3", "sqlite", "data/o.sqlite3"),
    ],
)
def test_store_urls_name_directories_and_sqlite_files(text: str, kind: str, path: str) -> None:
    url = parse_store_url(text)
    assert (url.kind, url.path, url.shown) == (kind, path, text)


def test_postgresql_urls_keep_libpq_parameters_and_take_schema_and_table() -> None:
    url = parse_store_url("postgres://app:s3cret@db:5433/offsets?sslmode=require&schema=lance")
    assert url.kind == "postgresql"
    assert (url.schema, url.table) == ("lance", "lance_offsets")
    assert url.conninfo == "postgres://app:s3cret@db:5433/offsets?sslmode=require"
    assert url.shown == "postgres://app:***@db:5433/offsets?sslmode=require&schema=lance"
    plain = parse_store_url("postgresql:///offsets?table=positions")
    assert (plain.schema, plain.table, plain.conninfo) == (
        "public",
        "positions",
        "postgresql:///offsets",
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty store"),
        ("redis://cache/0", "unsupported store URL 'redis://cache/0'"),
        ("sqlite://o.sqlite3", "names a local path, not a host ('o.sqlite3')"),
        ("sqlite:///o.sqlite3?mode=ro", "takes no '?' or '#' part"),
        ("file:///x#frag", "takes no '?' or '#' part"),
        ("sqlite://", "has no path"),
        ("sqlite::memory:", "an in-memory database keeps no offsets"),
        ("postgresql://u:pw@h/d?schema=a&schema=b", "give schema= once"),
        ("postgresql://h/d?table=", "give table= once"),
    ],
)
def test_bad_store_urls_are_named_and_rejected(text: str, says: str) -> None:
    with pytest.raises(StoreUrlError, match=re.escape(says)) as caught:
        parse_store_url(text)
    assert "pw" not in str(caught.value)  # a password never reaches a message


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "redis://cache/0"],
        ["get", "sqlite://{base}/o.sqlite3?mode=ro", "billing", "1", "2"],
        ["set", "sqlite://db.example/o.sqlite3", "billing", "1", "2", "3"],
        ["import", "mysql://db/offsets", "{base}/doc.json", "--merge"],
    ],
)
def test_bad_store_urls_exit_2_naming_the_url_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    seed_offsets(tmp_path)
    before = tree(tmp_path.parent)
    result = run(capsys, *(a.format(base=tmp_path) for a in argv))
    assert result.code == 2
    last = result.err.splitlines()[-1]
    assert last.startswith(f"lance-offsets {argv[0]}: error: argument STORE: ")
    assert argv[1].format(base=tmp_path) in last
    assert tree(tmp_path.parent) == before


def test_every_command_works_on_a_sqlite_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "offsets.sqlite3"
    url = sqlite_url(db)
    assert run(capsys, "set", url, "billing", "1", "2", "42").out == (
        "consumer 'billing' topic 1 consumer id 2: none -> 42\n"
    )
    assert run(capsys, "set", url, "billing", str(U32), str(U64), str(U64)).code == 0
    assert run(capsys, "set", url, "audit", "3", "0", "0").code == 0
    with SQLiteOffsetStore.open(db, "billing") as store:  # what the library reads back
        assert store.list_all() == {(1, 2): 42, (U32, U64): U64}
    assert run(capsys, "get", url, "billing", "1", "2") == Result(0, "42\n", "")
    listing = run(capsys, "ls", url, "--json")
    assert json.loads(listing.out) == [
        {"consumer": "audit", "topic_id": 3, "consumer_id": 0, "offset": 0},
        {"consumer": "billing", "topic_id": 1, "consumer_id": 2, "offset": 42},
        {"consumer": "billing", "topic_id": U32, "consumer_id": U64, "offset": U64},
    ]
    assert run(capsys, "ls", url, "--consumer", "audit").out.splitlines()[1].split() == [
        "audit", "3", "0", "0"
    ]  # fmt: skip
    assert run(capsys, "ls", url, "--consumer", "nobody").err == (
        f"lance-offsets: error: no consumer 'nobody' under {url!r}\n"
    )
    assert run(capsys, "rm", url, "billing", "1", "2").out == (
        "consumer 'billing' topic 1 consumer id 2: removed (was 42)\n"
    )
    assert run(capsys, "get", url, "billing", "1", "2").code == 1
    assert (
        run(capsys, "rm", url, "audit", "--all").out == "removed 1 offset(s) of consumer 'audit'\n"
    )
    assert [r["consumer"] for r in json.loads(run(capsys, "ls", url, "--json").out)] == ["billing"]


def test_a_sqlite_url_of_a_directory_means_its_default_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "set", sqlite_url(tmp_path), "billing", "1", "2", "5").code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lance-offsets.sqlite3"]
    with SQLiteOffsetStore.open(tmp_path, "billing") as store:
        assert store.load(1, 2) == 5
    assert run(capsys, "get", f"sqlite:{tmp_path.name}", "billing", "1", "2").code == 1  # cwd
    assert run(capsys, "get", sqlite_url(tmp_path), "billing", "1", "2").out == "5\n"


@pytest.mark.parametrize(
    "command",
    [["ls"], ["get", "c", "1", "2"], ["rm", "c", "1", "2"], ["rm", "c", "--all"], ["export"]],
)
def test_reading_a_missing_sqlite_database_exits_1_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    db = tmp_path / "missing.sqlite3"
    result = run(capsys, command[0], sqlite_url(db), *command[1:])
    assert result == Result(
        1, "", f"lance-offsets: error: SQLite database {str(db)!r} does not exist\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_writing_creates_a_sqlite_database_but_never_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "no-such-folder" / "o.sqlite3"
    result = run(capsys, "set", sqlite_url(db), "billing", "1", "2", "3")
    assert result.code == 1
    assert result.err == (
        f"lance-offsets: error: cannot create SQLite database {str(db)!r}: "
        f"no folder {str(db.parent)!r}\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_an_offset_database_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE t (x)")
    before = tree(tmp_path)
    for argv in (["ls"], ["set", "billing", "1", "2", "3"]):
        result = run(capsys, argv[0], sqlite_url(other), *argv[1:])
        assert result.code == 1
        (line,) = result.err.splitlines()
        assert f"corrupt offset database {str(other)!r}" in line
        assert "not an offset database" in line
    assert tree(tmp_path) == before


def test_migrating_a_directory_into_sqlite_and_back_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    seed_offsets(source)
    backup = tmp_path / "backup.json"
    assert run(capsys, "export", source.as_uri(), "-o", str(backup)).code == 0
    db = sqlite_url(tmp_path / "o.sqlite3")
    imported = run(capsys, "import", db, str(backup), "--merge")
    assert imported.code == 0
    assert imported.err == f"imported {backup}: 4 set, 0 deleted, 0 unchanged in 2 consumer(s)\n"
    assert json.loads(run(capsys, "export", db).out) == json.loads(backup.read_text())
    again = run(capsys, "import", db, str(backup), "--replace")  # nothing left to do
    assert again.err.endswith(": 0 set, 0 deleted, 4 unchanged in 2 consumer(s)\n")


def test_sqlite_import_replace_and_rm_all_step_over_a_corrupt_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "o.sqlite3"
    url = sqlite_url(db)
    for key, offset in (("1", "10"), ("2", "20"), ("3", "30")):
        assert run(capsys, "set", url, "billing", "7", key, offset).code == 0
    # A changed byte in a stored offset: the row's checksum no longer matches.
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE lance_offsets SET committed_offset = committed_offset + 1")
        con.commit()
    assert "row checksum" in run(capsys, "get", url, "billing", "7", "1").err
    doc = tmp_path / "doc.json"
    entries = [{"topic_id": 7, "consumer_id": 1, "offset": 11}]
    doc.write_text(json.dumps({"format": "lance-offsets/1", "consumers": {"billing": entries}}))
    replaced = run(capsys, "import", url, str(doc), "--replace")
    assert replaced.code == 0, replaced.err
    assert "consumer 'billing' topic 7 consumer id 2 (was corrupt (" in replaced.out
    with SQLiteOffsetStore.open(db, "billing") as store:
        assert store.list_all() == {(7, 1): 11}
        store.save(7, 5, 50)
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE lance_offsets SET committed_offset = committed_offset + 1")
        con.commit()
    assert run(capsys, "rm", url, "billing", "--all").out == (
        "removed 2 offset(s) of consumer 'billing'\n"
    )
    with SQLiteOffsetStore.open(db, "billing") as store:
        assert store.list_all() == {}


def test_a_sqlite_writer_holding_the_lock_times_out_the_cli_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "o.sqlite3"
    url = sqlite_url(db)
    assert run(capsys, "set", url, "billing", "1", "2", "42").code == 0
    with SQLiteOffsetStore.open(db, "billing") as holder, holder.transaction() as tx:
        tx.save(1, 2, 43)  # the write lock is held until the block ends
        result = run(capsys, "set", url, "billing", "1", "2", "99", "--lock-timeout", "0.2")
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith("lance-offsets: error: ")
    assert str(db) in line
    assert run(capsys, "get", url, "billing", "1", "2").out == "43\n"


def test_a_postgresql_url_without_psycopg_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an installation without it imports
    result = run(capsys, "ls", "postgresql://app:pw@db.example/offsets")
    assert result == Result(
        1,
        "",
        "lance-offsets: error: 'postgresql://app:***@db.example/offsets' needs psycopg 3, which "
        "is not installed; install it with: pip install 'lance-offsets[postgres]'\n",
    )


def test_set_repairs_a_corrupt_sqlite_row_and_says_what_it_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "o.sqlite3"
    url = sqlite_url(db)
    assert run(capsys, "set", url, "billing", "7", "1", "10").code == 0
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE lance_offsets SET committed_offset = committed_offset + 1")
        con.commit()
    repaired = run(capsys, "set", url, "billing", "7", "1", "12")
    assert repaired.code == 0
    assert repaired.out.startswith(
        "consumer 'billing' topic 7 consumer id 1: corrupt (row checksum"
    )
    assert repaired.out.endswith(" does not match its offset) -> 12\n")
    assert run(capsys, "get", url, "billing", "7", "1").out == "12\n"
