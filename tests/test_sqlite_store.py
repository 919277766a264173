"""SQLiteOffsetStore on real database files: range, transaction(), loud damage, scoping, threads.

Processes (lock waits, concurrent creation) and the conformance suite are in
``tests/slow/test_sqlite_processes.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lance_offsets import (
    MAX_CONSUMER_ID,
    MAX_OFFSET,
    MAX_TOPIC_ID,
    CorruptOffsetError,
    InvalidConsumerNameError,
    OffsetStore,
    SQLiteOffsetStore,
    SQLiteTransaction,
    StoreClosedError,
)
from lance_offsets._sqlite_file import DEFAULT_FILE_NAME, TABLE


def _open(tmp_path: Path, name: str = "billing") -> SQLiteOffsetStore:
    return SQLiteOffsetStore.open(tmp_path, name)


@contextlib.contextmanager
def _raw(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection of our own, to look at what is on disk, not at a handle's view.

    Committed and closed at the end (sqlite3's own ``with`` commits but leaves it open).
    """
    con = sqlite3.connect(tmp_path / DEFAULT_FILE_NAME)
    try:
        with con:
            yield con
    finally:
        con.close()


def test_full_u64_range_round_trips_and_keeps_order_on_disk(tmp_path: Path) -> None:
    values = [0, 1, 2**53 + 1, 2**63 - 1, 2**63, MAX_OFFSET - 1, MAX_OFFSET]
    with _open(tmp_path) as store:
        assert isinstance(store, OffsetStore)
        for i, value in enumerate(values):
            store.save(i, MAX_CONSUMER_ID - i, value)
        assert [store.load(i, MAX_CONSUMER_ID - i) for i in range(len(values))] == values
        store.save(MAX_TOPIC_ID, MAX_CONSUMER_ID, MAX_OFFSET)
        assert store.list_all()[(MAX_TOPIC_ID, MAX_CONSUMER_ID)] == MAX_OFFSET
    with _raw(tmp_path) as con:
        # Shifted by -2**63: the signed column sorts exactly as the u64 values do.
        stored = [r[0] for r in con.execute(f"SELECT committed_offset FROM {TABLE} ORDER BY 1")]
    assert [s + 2**63 for s in stored] == sorted([*values, MAX_OFFSET])


def test_domain_errors_come_before_any_effect(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        store.save(1, 1, 5)
        for bad in (True, 1.0, "1", None):
            with pytest.raises(TypeError):
                store.save(1, 1, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="offset"):
            store.save(1, 1, 2**64)
        with pytest.raises(ValueError, match="topic_id"):
            store.delete(2**32, 1)
        assert store.list_all() == {(1, 1): 5}


def test_consumer_names_share_a_file_but_not_offsets(tmp_path: Path) -> None:
    with _open(tmp_path, "a") as a, _open(tmp_path, "b") as b:
        a.save(1, 2, 3)
        assert b.load(1, 2) is None
        b.save(1, 2, 9)
        assert (a.list_all(), b.list_all()) == ({(1, 2): 3}, {(1, 2): 9})
        b.delete(1, 2)
        assert a.load(1, 2) == 3
    assert os.listdir(tmp_path) == [DEFAULT_FILE_NAME]


def test_unsafe_consumer_name_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidConsumerNameError):
        SQLiteOffsetStore.open(tmp_path, "../x")
    assert os.listdir(tmp_path) == []


def test_database_is_wal_and_ours(tmp_path: Path) -> None:
    _open(tmp_path).close()
    # Only the database: the temporary file it was built under is gone, and the last close
    # checkpointed and removed the WAL.
    assert os.listdir(tmp_path) == [DEFAULT_FILE_NAME]
    with _raw(tmp_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("PRAGMA application_id").fetchone() == (0x4C4F4653,)


def test_transaction_commits_rows_and_offsets_together(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        with store.transaction() as tx:
            tx.execute("CREATE TABLE results (record INTEGER PRIMARY KEY, total INTEGER)")
        with store.transaction() as tx:
            tx.execute("INSERT INTO results VALUES (?, ?)", (41, 7))
            tx.save(3, 4, 42)
            assert tx.load(3, 4) == 42
        assert store.load(3, 4) == 42
    with _raw(tmp_path) as con:
        assert con.execute("SELECT * FROM results").fetchall() == [(41, 7)]


def _fail_in_transaction(store: SQLiteOffsetStore, ended: list[SQLiteTransaction]) -> None:
    with store.transaction() as tx:
        ended.append(tx)
        tx.execute("INSERT INTO results VALUES (10)")
        tx.save(3, 4, 11)
        tx.delete(9, 9)
        raise RuntimeError("processing failed")


def _save_then_fail_a_statement(store: SQLiteOffsetStore) -> None:
    with store.transaction() as tx:
        tx.save(1, 1, 1)
        tx.execute("INSERT INTO no_such_table VALUES (1)")


def test_exception_in_transaction_leaves_neither_rows_nor_offsets(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        with store.transaction() as tx:
            tx.execute("CREATE TABLE results (record INTEGER PRIMARY KEY)")
            tx.save(3, 4, 10)
        ended: list[SQLiteTransaction] = []
        with pytest.raises(RuntimeError, match="processing failed"):
            _fail_in_transaction(store, ended)
        assert store.load(3, 4) == 10
        # The handle is usable again, outside any transaction.
        store.save(5, 5, 5)
        with pytest.raises(StoreClosedError):
            ended[0].save(3, 4, 12)
    with _raw(tmp_path) as con:
        assert con.execute("SELECT * FROM results").fetchall() == []
    with _open(tmp_path) as reopened:
        assert reopened.list_all() == {(3, 4): 10, (5, 5): 5}


def test_failing_statement_rolls_back_the_offset_saved_before_it(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        with pytest.raises(sqlite3.OperationalError):
            _save_then_fail_a_statement(store)
        assert store.load(1, 1) is None


def test_empty_file_is_loud_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / DEFAULT_FILE_NAME
    with _open(tmp_path) as store:
        store.save(1, 1, 100)
    db.write_bytes(b"")  # an operator's truncation, a failed copy
    with pytest.raises(CorruptOffsetError, match="empty") as caught:
        _open(tmp_path)
    assert caught.value.path == str(db)
    assert db.stat().st_size == 0  # not silently turned into a new database


def test_foreign_database_is_loud(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE things (x)")
    con.close()
    with pytest.raises(CorruptOffsetError, match="not an offset database") as caught:
        SQLiteOffsetStore.open(db, "billing")
    assert caught.value.path == str(db)


def test_garbage_file_is_loud(tmp_path: Path) -> None:
    db = tmp_path / DEFAULT_FILE_NAME
    db.write_bytes(b"\xff" * 8192)
    with pytest.raises(CorruptOffsetError, match=DEFAULT_FILE_NAME):
        _open(tmp_path)


def test_damaged_table_page_is_loud_on_load_and_list(tmp_path: Path) -> None:
    db = tmp_path / DEFAULT_FILE_NAME
    keys = [(t, c) for t in range(40) for c in range(40)]  # enough rows for several leaf pages
    with _open(tmp_path) as store, store.transaction() as tx:
        for t, c in keys:
            tx.save(t, c, t * 1000 + c)
    with _raw(tmp_path) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    assert len(data) >= 4 * page_size
    # The last page is a leaf of the table (written after its root): the file opens, the rows
    # stored on that page cannot be read.
    data[-page_size:] = b"?" * page_size
    db.write_bytes(bytes(data))
    with _open(tmp_path) as store:
        with pytest.raises(CorruptOffsetError, match="malformed") as caught:
            store.list_all()
        assert caught.value.path == str(db)
        loud: list[object] = []
        for t, c in keys:
            try:
                assert store.load(t, c) == t * 1000 + c  # never a number nobody saved, nor None
            except CorruptOffsetError as exc:
                loud.append(exc.key)
        assert loud
        assert set(loud) <= set(keys)


def test_an_offset_changed_in_place_is_loud(tmp_path: Path) -> None:
    # SQLite keeps no page checksums: a flipped bit in the stored integer would otherwise be a
    # number nobody saved. The row checksum turns it into an error naming key and file.
    with _open(tmp_path) as store:
        store.save(1, 1, 100)
        store.save(1, 2, 200)
        with _raw(tmp_path) as con:
            con.execute(
                f"UPDATE {TABLE} SET committed_offset = committed_offset + 1 WHERE consumer_id = ?",
                (1 - 2**63,),
            )
        with pytest.raises(CorruptOffsetError, match="checksum") as caught:
            store.load(1, 1)
        assert caught.value.key == (1, 1)
        assert caught.value.path == str(tmp_path / DEFAULT_FILE_NAME)
        with pytest.raises(CorruptOffsetError):
            store.list_all()
        assert store.load(1, 2) == 200
        store.save(1, 1, 101)  # saving again repairs the row
        assert store.list_all() == {(1, 1): 101, (1, 2): 200}


def test_closed_handle_raises_and_close_is_idempotent(tmp_path: Path) -> None:
    store = _open(tmp_path)
    other = _open(tmp_path)
    store.save(1, 1, 1)
    store.close()
    store.close()
    for call in (lambda: store.load(1, 1), lambda: store.save(1, 1, 2), store.list_all):
        with pytest.raises(StoreClosedError):
            call()
    with pytest.raises(StoreClosedError), store.transaction():
        pass
    assert other.load(1, 1) == 1
    other.close()


def test_threads_share_one_handle(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    with _open(tmp_path) as store:

        def work(topic: int) -> None:
            try:
                for n in range(50):
                    store.save(topic, n % 5, n)
                    with store.transaction() as tx:
                        tx.save(topic, 100, n)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        expected = {(t, c): 45 + c for t in range(4) for c in range(5)}
        expected |= {(t, 100): 49 for t in range(4)}
        assert store.list_all() == expected


def test_the_readme_transaction_example_runs_twice_and_resumes(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "tx.save(" in b]
    assert len(blocks) == 1
    runs = [
        subprocess.run(
            [sys.executable, "-c", blocks[0]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stdout.splitlines() == [f"processed r{n}" for n in range(4)]
    assert runs[1].stdout == ""  # resumed after the last committed record: nothing twice
    con = sqlite3.connect(tmp_path / "lance-offsets-demo.sqlite3")
    try:
        rows = con.execute("SELECT record, size FROM totals").fetchall()
        assert rows == [(n, 2) for n in range(4)]
    finally:
        con.close()
