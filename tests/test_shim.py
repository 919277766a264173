"""The syscall shim (``stress/seam/_shim.py``) in a real process with it preloaded: what it numbers.

Each test runs a short script in a child process started with the compiled shim in
``LD_PRELOAD`` (the shim must be there from exec) and checks the trace it prints. Linux with a C
compiler only; elsewhere the backend is unavailable, which ``test_unavailable_says_why`` covers.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.stress.seam._shim import build, unavailable

TESTS = str(Path(__file__).resolve().parent)  # the zoo is importable from here as ``zoo.*``
SHIM = build()
needs_shim = pytest.mark.skipif(SHIM is None, reason=f"no syscall shim here: {unavailable()}")


def _env(*, preload: bool = True) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=TESTS)
    if preload:
        assert SHIM is not None
        env["LD_PRELOAD"] = SHIM
    return env


def _run(script: str, tmp_path: object, *, preload: bool = True) -> list[dict[str, object]]:
    # Bounded: a shim that deadlocked a store would hang here, and fail, rather than pass.
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=_env(preload=preload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return result


_PRELUDE = """
import dataclasses, errno, json, os, sys, threading
from lance_offsets.stress.seam._shim import syscall_traced
from lance_offsets.stress.seam._tracer import FaultPlan, StopAt
root = sys.argv[1]
def show(trace):
    return [dict(index=op.index, kind=op.kind, call=op.call, name=os.path.basename(op.path),
                 note=op.note, error=op.error, content=op.content is not None,
                 target=os.path.basename(op.target or ''), flags=op.flags, fd=op.fd,
                 data=(op.content or b'')[:16].decode('latin-1')) for op in trace]
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
def test_writes_through_a_mapping_are_recorded_before_the_msync_that_syncs_them(
    tmp_path: object,
) -> None:
    # LMDB with MDB_WRITEMAP writes through a shared mapping and makes it durable with msync:
    # no call shows the write, so the shim diffs the mapping at every recorded call and records
    # what changed as a "write" (call "mmap", the pages in the note, the whole file after).
    script = _PRELUDE + (
        "import mmap\n"
        "fd = os.open(os.path.join(root, 'data.mdb'), os.O_RDWR | os.O_CREAT, 0o644)\n"
        "os.ftruncate(fd, 3 * 4096)\n"
        "with syscall_traced(root) as trace:\n"
        "    with mmap.mmap(fd, 3 * 4096) as area:\n"
        "        area[:5] = b'hello'\n"
        "        area[2 * 4096 : 2 * 4096 + 3] = b'end'\n"
        "        area.flush()\n"
        "        area[4096] = 7\n"
        "print(json.dumps([show(trace), [(op.content or b'')[:5].decode() for op in trace]]))\n"
    )
    shown: Any = _run(script, tmp_path)
    ops, heads = shown
    calls = [(op["call"], op["kind"], op["name"], op["note"]) for op in ops]
    assert calls[0] == ("mmap", "write", "data.mdb", "pages 0 2"), calls
    assert heads[0] == "hello"  # the whole file, as the page cache holds it
    assert calls[1][:3] == ("msync", "fsync", "data.mdb"), calls
    # The last write is seen when the mapping goes away (munmap), before mmap's own dup closes.
    assert calls[2] == ("mmap", "write", "data.mdb", "pages 1"), calls
    assert calls[3][:2] == ("close", "close"), calls


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


# --- a C library that joins its own I/O thread under the GIL (issue 19, class 2) ---------------
#
# ``zoo.cthread_zoo`` (compiled in the child on first import) makes every file-system call of its
# open and save on a thread of its own, which the caller joins inside a ``ctypes.PyDLL`` call:
# the GIL stays held meanwhile. A shim that called back into Python from that thread waited for
# the GIL for ever (the commit that added the zoo shows the check hanging, D1, D3 and F2 reported
# failed). Numbering, fault decisions and crash stops are made in C now: nothing waits.


@needs_shim
def test_a_library_joining_its_io_thread_under_the_gil_is_traced_and_faulted(
    tmp_path: object,
) -> None:
    script = _PRELUDE + (
        "from zoo.cthread_zoo import correct\n"
        "with syscall_traced(root) as opened:\n"
        "    store = correct(root)\n"
        "store.save(1, 2, 3)\n"
        "with syscall_traced(root) as counted:\n"
        "    store.save(1, 2, 4)\n"
        "sync = next(op.index for op in counted if op.kind == 'fsync')\n"
        "with syscall_traced(root, fail=FaultPlan(at=sync, error=errno.EIO)) as faulted:\n"
        "    try:\n"
        "        store.save(1, 2, 5)\n"
        "        raised = None\n"
        "    except OSError as exc:\n"
        "        raised = exc.errno\n"
        "print(json.dumps([show(opened), show(counted), show(faulted), raised,\n"
        "                  store.load(1, 2)]))\n"
    )
    shown: Any = _run(script, tmp_path)
    opened, counted, faulted, raised, value = shown
    print(opened, counted, faulted, sep="\n")
    # The open's calls, made on the library's thread, are numbered like any others (its mkdir
    # of the directory the test made fails: EEXIST).
    assert [op["kind"] for op in opened] == [
        "mkdir", "open", "write", "fsync", "close", "rename", "open", "fsync", "close"
    ]  # fmt: skip
    assert opened[0]["error"] == "EEXIST"
    assert [(op["kind"], op["name"]) for op in counted] == [
        ("open", "1-2.offset.tmp"),
        ("write", "1-2.offset.tmp"),
        ("fsync", "1-2.offset.tmp"),
        ("close", "1-2.offset.tmp"),
        ("rename", "1-2.offset.tmp"),
        ("open", os.path.basename(str(tmp_path))),
        ("fsync", os.path.basename(str(tmp_path))),
        ("close", os.path.basename(str(tmp_path))),
    ]
    assert counted[1]["data"] == "4\n"
    assert counted[4]["target"] == "1-2.offset"
    # The fault plan was decided in C, on the I/O thread: the fsync failed, the save raised.
    assert [op["error"] for op in faulted if op["error"]] == ["EIO"]
    assert raised == errno.EIO
    assert value == 4


@needs_shim
def test_a_crash_stop_on_a_libraries_own_thread_tells_the_parent_and_waits(
    tmp_path: Path,
) -> None:
    # The crash point: the I/O thread, not the caller's, reaches it; the shim writes the
    # parent's message from C and holds that thread there until the parent kills the process.
    script = _PRELUDE + (
        "from zoo.cthread_zoo import correct\n"
        "fd = int(sys.argv[2])\n"
        "store = correct(root)\n"
        "store.save(1, 2, 3)\n"
        "with syscall_traced(root) as counted:\n"
        "    store.save(1, 2, 4)\n"
        "rename = next(op.index for op in counted if op.kind == 'rename')\n"
        "stop = StopAt(rename, 'before', fd, b'stopped %d\\n' % rename)\n"
        "with syscall_traced(root, stop=stop):\n"
        "    store.save(1, 2, 5)\n"
        "print('the save went past its crash point', flush=True)\n"
    )
    read, write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(write)],
        env=_env(),
        pass_fds=(write,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        assert ready, "the child never reached its crash point (deadlocked?)"
        message = os.read(read, 100)
        assert message == b"stopped 4\n"  # open, write, fsync, close, then the rename
        time.sleep(0.2)
        assert child.poll() is None  # held at the point, waiting for the kill
        temp, target = tmp_path / "1-2.offset.tmp", tmp_path / "1-2.offset"
        assert (temp.read_bytes(), target.read_bytes()) == (b"5\n", b"4\n")
    finally:
        child.kill()
        _, err = child.communicate(timeout=30)
        os.close(read)
    assert child.returncode == -signal.SIGKILL, err


# --- calls beyond write/fsync/rename (issue 19, class 8) ------------------------------------


@needs_shim
def test_links_temporary_files_and_renameat2_flags_are_recorded(tmp_path: object) -> None:
    script = _PRELUDE + (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def put(name, data):\n"
        "    with open(os.path.join(root, name), 'wb') as fh:\n"
        "        fh.write(data)\n"
        "put('a', b'A'); put('b', b'B')\n"
        "with syscall_traced(root) as trace:\n"
        "    os.link(os.path.join(root, 'a'), os.path.join(root, 'a2'))\n"
        "    fd = os.open(root, os.O_TMPFILE | os.O_WRONLY, 0o644)\n"
        "    os.write(fd, b'tmp')\n"
        "    os.fsync(fd)\n"
        "    proc, named = f'/proc/self/fd/{fd}'.encode(), os.path.join(root, 'named').encode()\n"
        "    libc.linkat(-100, proc, -100, named, 0x400)\n"  # AT_FDCWD, AT_SYMLINK_FOLLOW
        "    os.close(fd)\n"
        "    fd = os.open(root, os.O_TMPFILE | os.O_RDWR, 0o644)\n"
        "    os.write(fd, b'second')\n"
        "    AT_EMPTY_PATH, AT_FDCWD = 0x1000, -100\n"
        "    libc.linkat(fd, b'', AT_FDCWD, os.path.join(root, 'empty').encode(), AT_EMPTY_PATH)\n"
        "    os.close(fd)\n"
        "    a, b = os.path.join(root, 'a').encode(), os.path.join(root, 'b').encode()\n"
        "    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, 2)\n"  # RENAME_EXCHANGE
        "    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, 1)\n"  # RENAME_NOREPLACE: EEXIST
        "    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, 4)\n"  # RENAME_WHITEOUT: unknown
        "    os.symlink('a', os.path.join(root, 'sym'))\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    print(*ops, sep="\n")
    seen = [(op["kind"], op["name"], op["target"]) for op in ops]
    tmpfile = next(op for op in ops if op["kind"] == "open")
    unnamed = f"#tmpfile-{tmpfile['fd']}"
    here = os.path.basename(str(tmp_path))
    assert seen[:6] == [
        ("link", "a2", "a"),
        ("open", here, ""),  # O_TMPFILE: the directory it was made in
        ("write", unnamed, ""),
        ("fsync", unnamed, ""),
        ("link", "named", ""),  # through /proc/self/fd/N: no existing name
        ("close", "named", ""),
    ]
    flags = tmpfile["flags"]
    assert isinstance(flags, int)
    assert flags & os.O_TMPFILE == os.O_TMPFILE
    assert ops[0]["data"] == "A"
    assert ops[4]["data"] == "tmp"
    assert ops[4]["fd"] == tmpfile["fd"]
    empty = next(op for op in ops if op["name"] == "empty")
    assert (empty["kind"], empty["call"], empty["target"], empty["data"]) == (
        "link",
        "linkat",
        "",
        "second",
    )
    renames = [op for op in ops if op["call"] == "renameat2"]
    assert [(op["kind"], op["flags"], op["error"]) for op in renames] == [
        ("rename", 2, None),
        ("rename", 1, "EEXIST"),
        ("unknown", 4, renames[2]["error"]),  # tmpfs and ext4 take it as root; others refuse
    ]
    assert "RENAME_WHITEOUT" in str(renames[2]["note"])
    assert seen[-1] == ("unknown", "sym", "")
    assert ops[-1]["call"] == "symlink"


@needs_shim
def test_copies_preallocation_and_truncation_by_path_are_recorded_with_contents(
    tmp_path: object,
) -> None:
    script = _PRELUDE + (
        "src = os.path.join(root, 'src'); dst = os.path.join(root, 'dst')\n"
        "with open(src, 'wb') as fh:\n"
        "    fh.write(b'0123456789' * 1000)\n"
        "with syscall_traced(root) as trace:\n"
        "    s = os.open(src, os.O_RDONLY); d = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)\n"
        "    os.copy_file_range(s, d, 10)\n"
        "    os.sendfile(d, s, 10, 5)\n"
        "    os.posix_fallocate(d, 0, 8192)\n"
        "    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2\n"
        "    import ctypes\n"
        "    ctypes.CDLL(None).fallocate(d, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4096)\n"
        "    os.truncate(dst, 12)\n"
        "    os.close(s); os.close(d)\n"
        "print(json.dumps(show(trace)))\n"
    )
    ops = _run(script, tmp_path)
    print(*ops, sep="\n")
    # (Python calls the 64-bit variants, sendfile64 and posix_fallocate64, where libc has both.)
    mine = [
        (op["kind"], str(op["call"]).removesuffix("64"), op["data"])
        for op in ops
        if op["name"] == "dst"
    ]
    zeros = "\0" * 12
    assert mine[1:] == [
        ("write", "copy_file_range", "0123456789"),
        ("write", "sendfile", "012345678901234"),
        ("truncate", "posix_fallocate", "012345678901234\0"),  # 8192 bytes now
        ("write", "fallocate", ("\0" * 16)),  # a hole punched: zeros
        ("truncate", "truncate", zeros),
        ("close", "close", zeros),
    ]
    fallocated = next(op for op in ops if op["call"] == "fallocate")
    assert "mode 0x3" in str(fallocated["note"])


# --- the same run seen twice: the interposer and the shim's witness (issue 19, class 1) -------


@needs_shim
def test_the_shim_records_the_interposers_run_beside_it_and_the_views_are_compared(
    tmp_path: object,
) -> None:
    # A careful save opens its temp file write-only: the interposer reads its content through
    # /proc/self/fd, which must stay out of the shim's view (lo_hold), or the views would differ.
    script = _PRELUDE + (
        "from lance_offsets.stress.seam._record import disagreement, tracing\n"
        "from zoo.stress_crash_zoo import careful, early_bound\n"
        "seen = []\n"
        "for factory in (careful, early_bound):\n"
        "    store = factory(root)\n"
        "    block, mark = tracing(root, 'python', witness=True)\n"
        "    with block as trace:\n"
        "        store.save(1, 2, 3)\n"
        "        mark('ack')\n"
        "    seen.append([len(trace), len(trace.syscall), disagreement(trace, trace.syscall),\n"
        "                 trace[-1].note, trace.syscall[-1].note])\n"
        "print(json.dumps(seen))\n"
    )
    shown: Any = _run(script, tmp_path)
    (ours, theirs, differ, mark, marked), bound = shown
    assert (ours, differ, mark, marked) == (theirs, None, "ack", "ack")
    assert ours == 11  # lock open, temp open write fsync close, replace, dir open fsync close,
    #                    lock close, the mark
    assert bound[2] == (
        "the Python interposer missed 1 write call, 1 fsync call and 1 close call; saw 2 only "
        "through audit hooks (bound at import, or made in C)"
    )


@needs_shim
def test_a_child_the_store_forks_is_not_armed(tmp_path: object) -> None:
    # The fork inherits the armed shim's memory, not its job: the child's calls are not
    # numbered, and a crash point or fault meant for the worker never fires in it.
    script = _PRELUDE + (
        "stop = StopAt(0, 'before', 2, b'the child stopped')\n"
        "plan = FaultPlan(at=0, error=errno.EIO, times=None)\n"
        "with syscall_traced(root, fail=plan) as trace:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        fd = os.open(os.path.join(root, 'child'), os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "        os.write(fd, b'x'); os.fsync(fd); os.close(fd)\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "print(json.dumps([show(trace), status, os.path.getsize(os.path.join(root, 'child'))]))\n"
    )
    shown: Any = _run(script, tmp_path)
    ops, status, size = shown
    assert (ops, status, size) == ([], 0, 1)
