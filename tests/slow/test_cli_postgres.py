"""The lance-offsets command on postgresql:// store URLs, against a real temporary cluster.

Skipped, with the reason, only when the machine has no PostgreSQL server binaries
(tests/_postgres.py); everything else talks to a real server, in-process through main() and, for
the pipes, in real subprocesses.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import _postgres  # noqa: E402  (importable once the path is set)

psycopg = pytest.importorskip("psycopg", reason="psycopg is in the test extra: pip install .[test]")
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from lance_offsets import LockFileOffsetStore, PostgresOffsetStore  # noqa: E402
from lance_offsets._cli import main  # noqa: E402

pytestmark = pytest.mark.slow

U64 = 2**64 - 1
U32 = 2**32 - 1
DEADLINE = 60.0


class Result(NamedTuple):
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    with _postgres.cluster_or_skip() as cluster:
        yield {**conninfo_to_dict(cluster.dsn), "dsn": cluster.dsn}


@pytest.fixture
def schema() -> str:
    return f"cli_{uuid.uuid4().hex[:10]}"


def url_of(server: dict[str, Any], query: str = "") -> str:
    base = f"postgresql://{server['user']}@{server['host']}:{server['port']}/{server['dbname']}"
    return f"{base}?{query}" if query else base


def table_exists(server: dict[str, Any], schema: str) -> bool:
    with psycopg.connect(server["dsn"]) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.lance_offsets",)).fetchone()
    return row is not None and row[0] is not None


def test_every_command_works_on_a_postgresql_url(
    server: dict[str, Any], schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_of(server, f"schema={schema}")
    assert run(capsys, "set", url, "billing", "1", "2", "42").out == (
        "consumer 'billing' topic 1 consumer id 2: none -> 42\n"
    )
    assert run(capsys, "set", url, "billing", str(U32), str(U64), str(U64)).code == 0
    assert run(capsys, "set", url, "audit", "3", "0", "0").code == 0
    with PostgresOffsetStore(server["dsn"], "billing", schema=schema, create=False) as store:
        assert store.list_all() == {(1, 2): 42, (U32, U64): U64}  # where the library looks
    assert run(capsys, "get", url, "billing", "1", "2") == Result(0, "42\n", "")
    assert json.loads(run(capsys, "ls", url, "--json").out) == [
        {"consumer": "audit", "topic_id": 3, "consumer_id": 0, "offset": 0},
        {"consumer": "billing", "topic_id": 1, "consumer_id": 2, "offset": 42},
        {"consumer": "billing", "topic_id": U32, "consumer_id": U64, "offset": U64},
    ]
    assert run(capsys, "ls", url, "--consumer", "nobody").code == 1
    assert run(capsys, "rm", url, "billing", "1", "2").out == (
        "consumer 'billing' topic 1 consumer id 2: removed (was 42)\n"
    )
    assert (
        run(capsys, "rm", url, "audit", "--all").out == "removed 1 offset(s) of consumer 'audit'\n"
    )
    exported = json.loads(run(capsys, "export", url).out)
    assert exported == {
        "format": "lance-offsets/1",
        "consumers": {"billing": [{"topic_id": U32, "consumer_id": U64, "offset": U64}]},
    }


def test_reading_a_schema_without_the_table_exits_1_and_creates_nothing(
    server: dict[str, Any], schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_of(server, f"schema={schema}")
    for argv in (["ls"], ["get", "billing", "1", "2"], ["export"], ["rm", "billing", "--all"]):
        result = run(capsys, argv[0], url, *argv[1:])
        assert result == Result(
            1, "", f"lance-offsets: error: no offsets table {schema}.lance_offsets in {url!r}\n"
        )
    doc = tmp_path / "doc.json"
    entries = [{"topic_id": 1, "consumer_id": 2, "offset": 3}]
    doc.write_text(json.dumps({"format": "lance-offsets/1", "consumers": {"billing": entries}}))
    dry = run(capsys, "import", url, str(doc), "--merge", "--dry-run")
    assert dry.out == "would set consumer 'billing' topic 1 consumer id 2: none -> 3\n"
    assert not table_exists(server, schema)


def test_a_row_locked_by_another_session_times_out_the_cli_in_one_line(
    server: dict[str, Any], schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_of(server, f"schema={schema}")
    assert run(capsys, "set", url, "billing", "1", "2", "42").code == 0
    with (
        PostgresOffsetStore(server["dsn"], "billing", schema=schema) as holder,
        holder.transaction() as tx,
    ):
        tx.save(1, 2, 43)  # the row stays locked until the block ends
        result = run(capsys, "set", url, "billing", "1", "2", "99", "--lock-timeout", "0.2")
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith(f"lance-offsets: error: {url}: ")
    assert "lock timeout" in line
    assert run(capsys, "get", url, "billing", "1", "2").out == "43\n"


def test_an_unreachable_server_is_one_line_exit_1_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"postgresql://app:s3cret@127.0.0.1:{port}/offsets"
        result = run(capsys, "ls", url)
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith(
        f"lance-offsets: error: cannot connect to 'postgresql://app:***@127.0.0.1:{port}/offsets'"
    )
    assert "s3cret" not in result.err


def test_a_directory_migrates_to_postgresql_through_a_pipe(
    server: dict[str, Any], schema: str, tmp_path: Path
) -> None:
    with LockFileOffsetStore.open(tmp_path, "billing") as store:
        store.save(7, 1, 1000)
        store.save(7, 2, U64)
    url = url_of(server, f"schema={schema}")
    command = [sys.executable, "-m", "lance_offsets"]
    exported = subprocess.run(
        [*command, "export", tmp_path.as_uri()],
        capture_output=True, text=True, timeout=DEADLINE, check=True,
    )  # fmt: skip
    imported = subprocess.run(
        [*command, "import", url, "-", "--replace"],
        input=exported.stdout, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == "imported <stdin>: 2 set, 0 deleted, 0 unchanged in 1 consumer(s)\n"
    with PostgresOffsetStore(server["dsn"], "billing", schema=schema, create=False) as store:
        assert store.list_all() == {(7, 1): 1000, (7, 2): U64}
