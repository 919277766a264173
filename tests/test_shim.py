"""The syscall shim (``stress/seam/_shim.py``) in a real process with it preloaded: what it numbers.

Each test runs a short script in a child process started with the compiled shim in
``LD_PRELOAD`` (the shim must be there from exec) and checks the trace it prints. Linux with a C
compiler only; elsewhere the backend is unavailable, which ``test_unavailable_says_why`` covers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.stress.seam._shim import build, unavailable

TESTS = str(Path(__file__).resolve().parent)  # the zoo is importable from here as ``zoo.*``
SHIM = build()
needs_shim = pytest.mark.skipif(SHIM is None, reason=f"no syscall shim here: {unavailable()}")


def _run(script: str, tmp_path: object, *, preload: bool = True) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=TESTS)
    if preload:
        assert SHIM is not None
        env["LD_PRELOAD"] = SHIM
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return result


_PRELUDE = """
import dataclasses, errno, json, os, sys, threading
from lance_offsets.stress.seam._shim import syscall_traced
from lance_offsets.stress.seam._tracer import FaultPlan
root = sys.argv[1]
def show(trace):
    return [dict(index=op.index, kind=op.kind, call=op.call, name=os.path.basename(op.path),
                 note=op.note, error=op.error, content=op.content is not None) for op in trace]
"""


@needs_shim
def test_a_sqlite_commit_is_numbered_call_by_call(tmp_path: object) -> None:
    script = _PRELUDE + (
        "from zoo.sqlite_zoo import wal_full\n"
        "store = wal_full(root)\n"
        "store.save(1, 2, 3)\n"
        "with syscall_traced(root) as trace:\n"
        "    store.save(1, 2, 2**64 - 1)\n"
        "assert store.load(1, 2) == 2**64 - 1\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    print(ops)
    assert [op["index"] for op in ops] == list(range(len(ops)))
    writes = [op for op in ops if op["call"] == "pwrite64"]
    assert writes
    assert all(op["name"] == "offsets.sqlite-wal" for op in writes)
    assert all("bytes at" in str(op["note"]) and op["content"] for op in writes)
    assert ops[-1]["call"] in ("fdatasync", "fsync")  # synchronous=FULL: the commit is synced


@needs_shim
def test_a_planned_error_fails_the_call_and_sqlite_raises(tmp_path: object) -> None:
    script = _PRELUDE + (
        "import sqlite3\n"
        "from zoo.sqlite_zoo import wal_full\n"
        "store = wal_full(root)\n"
        "store.save(1, 2, 3)\n"
        "with syscall_traced(root) as trace:\n"
        "    store.save(1, 2, 4)\n"
        "sync = [op.index for op in trace if op.kind in ('fsync', 'fdatasync')][-1]\n"
        "plan = FaultPlan(at=sync, error=errno.EIO, times=1)\n"
        "with syscall_traced(root, fail=plan) as trace:\n"
        "    try:\n"
        "        store.save(1, 2, 5)\n"
        "    except sqlite3.Error as exc:\n"
        "        print('raised', exc)\n"
        "    else:\n"
        "        raise SystemExit('the save returned after a failed sync')\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    failed = [op for op in ops if op["error"]]
    assert failed
    assert failed[0]["error"] == "EIO"
    assert failed[0]["kind"] in ("fsync", "fdatasync")


@needs_shim
def test_calls_from_threads_are_numbered_once_each(tmp_path: object) -> None:
    # SQLite and RocksDB call from their own threads: each call gets one index, none lost.
    script = _PRELUDE + (
        "def work(n):\n"
        "    fd = os.open(os.path.join(root, f't{n}'), os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "    for i in range(50):\n"
        "        os.pwrite(fd, b'x', i)\n"
        "    os.fsync(fd)\n"
        "    os.close(fd)\n"
        "with syscall_traced(root) as trace:\n"
        "    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]\n"
        "    for t in threads: t.start()\n"
        "    for t in threads: t.join()\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    assert [op["index"] for op in ops] == list(range(4 * 53))
    for n in range(4):
        mine = [str(op["call"]) for op in ops if op["name"] == f"t{n}"]
        assert mine[0].startswith("open")
        assert mine[-2:] == ["fsync", "close"]
        assert mine.count("pwrite64") + mine.count("pwrite") == 50


@needs_shim
def test_calls_outside_the_root_and_while_unarmed_are_not_counted(tmp_path: object) -> None:
    script = _PRELUDE + (
        "inside = os.path.join(root, 'in'); os.mkdir(inside)\n"
        "def touch(path):\n"
        "    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "    os.write(fd, b'x')\n"
        "    os.close(fd)\n"
        "touch(os.path.join(inside, 'before'))\n"
        "with syscall_traced(inside) as trace:\n"
        "    touch(os.path.join(root, 'outside'))\n"
        "    print('to the pipe, not counted', file=sys.stderr, flush=True)\n"
        "    touch(os.path.join(inside, 'counted'))\n"
        "    os.rename(os.path.join(inside, 'counted'), os.path.join(inside, 'moved'))\n"
        "    os.unlink(os.path.join(inside, 'moved'))\n"
        "touch(os.path.join(inside, 'after'))\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    assert [(op["kind"], op["name"]) for op in ops] == [
        ("open", "counted"),
        ("write", "counted"),
        ("close", "counted"),
        ("rename", "counted"),
        ("unlink", "moved"),
    ]


def test_without_the_preload_the_backend_refuses_to_arm(tmp_path: object) -> None:
    script = (
        "import sys\n"
        "from lance_offsets.stress.seam._shim import loaded, syscall_traced\n"
        "assert loaded() is None\n"
        "try:\n"
        "    with syscall_traced(sys.argv[1]):\n"
        "        pass\n"
        "except RuntimeError as exc:\n"
        "    print('[]') if 'not preloaded' in str(exc) else None\n"
    )
    assert _run(script, tmp_path, preload=False) == []


def test_unavailable_says_why() -> None:
    why = unavailable()
    if SHIM is None:
        assert why
        assert "Linux" in why or "compiler" in why or "compile" in why
    else:
        assert why is None
        assert os.path.exists(SHIM)


@needs_shim
def test_an_msync_of_a_mapped_file_is_a_sync_of_that_file(tmp_path: object) -> None:
    # LMDB with MDB_WRITEMAP makes its data durable with msync: no descriptor names the file.
    script = _PRELUDE + (
        "import mmap\n"
        "fd = os.open(os.path.join(root, 'data.mdb'), os.O_RDWR | os.O_CREAT, 0o644)\n"
        "os.ftruncate(fd, 4096)\n"
        "with syscall_traced(root) as trace:\n"
        "    with mmap.mmap(fd, 4096) as area:\n"
        "        area[:5] = b'hello'\n"
        "        area.flush()\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    calls = [(op["call"], op["kind"], op["name"]) for op in ops]
    assert calls[0] == ("msync", "fsync", "data.mdb"), calls  # then mmap's own dup is closed


@needs_shim
def test_directories_and_shared_writable_mappings_are_reported(tmp_path: object) -> None:
    # What the power-loss model needs beyond the crash points: mkdir/rmdir are numbered like
    # any call, and a shared writable mapping of a file (whose writes no call shows) is reported
    # once it exists, never numbered; read-only and private mappings change no file: not reported.
    script = _PRELUDE + (
        "import mmap\n"
        "mapped = []\n"
        "path = os.path.join(root, 'data')\n"
        "with open(path, 'wb') as fh:\n"
        "    fh.write(b'x' * 4096)\n"
        "with syscall_traced(root, on_map=mapped.append) as trace:\n"
        "    os.mkdir(os.path.join(root, 'sub'))\n"
        "    os.rmdir(os.path.join(root, 'sub'))\n"
        "    fd = os.open(path, os.O_RDWR)\n"
        "    for prot, flags in ((mmap.PROT_READ, mmap.MAP_SHARED),\n"
        "                        (mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE),\n"
        "                        (mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED)):\n"
        "        mmap.mmap(fd, 4096, flags=flags, prot=prot).close()\n"
        "    os.close(fd)\n"
        "print(json.dumps([show(trace), [os.path.basename(p) for p in mapped],\n"
        "                  [op.fd for op in trace]]))\n"
    )
    shown: Any = _run(script, tmp_path)  # [the trace, the mapped files, the descriptors]
    ops, mapped, fds = shown
    print(ops, mapped)
    seen = [(op["kind"], op["name"]) for op in ops]
    assert seen[:3] == [("mkdir", "sub"), ("rmdir", "sub"), ("open", "data")]
    # Python's mmap keeps a dup of the descriptor and closes it: a close each, then ours.
    assert seen[3:] == [("close", "data")] * 4
    assert mapped == ["data"]  # the shared writable one only
    assert fds[0] == fds[1] == -1
    assert fds[2] == fds[-1] >= 0
