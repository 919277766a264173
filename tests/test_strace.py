"""The strace output parser on handcrafted lines (``strace -f -y -xx`` format; no strace run)."""

from __future__ import annotations

import sys

import pytest
from lance_offsets.stress.powerloss._fsmodel import explore
from lance_offsets.stress.seam._strace import StraceError, mark_path, parse

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="strace output is Linux only"
)

ROOT = "/data/store"


def hx(text: str | bytes) -> str:
    """Hex-escape like ``strace -xx``."""
    raw = text.encode() if isinstance(text, str) else text
    return "".join(f"\\x{b:02x}" for b in raw)


def fd(number: int, path: str) -> str:
    return f"{number}<{hx(path)}>"


CWD = f"AT_FDCWD<{hx('/data')}>"
TAIL = "3\n"


def mark(note: str, pid: int = 100) -> str:
    return (
        f'{pid} openat({CWD}, "{hx(mark_path(note))}", O_RDONLY|O_CLOEXEC) = -1 ENOENT '
        "(No such file or directory)"
    )


def test_a_save_protocol_becomes_trace_records_with_whole_contents() -> None:
    tmp, target = f"{ROOT}/k.tmp", f"{ROOT}/k"
    lines = [
        f'100 openat({CWD}, "{hx(target)}", O_RDWR|O_CREAT, 0644) = 3{fd(3, target)[1:]}',  # before
        mark("trace start"),
        f'100 openat({CWD}, "{hx(tmp)}", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644) = 4<{hx(tmp)}>',
        f'100 write({fd(4, tmp)}, "{hx("12")}", 2) = 2',
        f'100 write({fd(4, tmp)}, "{hx(TAIL)}", 2) = 2',
        f"100 fsync({fd(4, tmp)}) = 0",
        f"100 close({fd(4, tmp)}) = 0",
        f'100 rename("{hx(tmp)}", "{hx(target)}") = 0',
        f'100 openat({CWD}, "{hx(ROOT)}", O_RDONLY|O_CLOEXEC) = 5<{hx(ROOT)}>',
        f"100 fsync({fd(5, ROOT)}) = 0",
        f"100 close({fd(5, ROOT)}) = 0",
        mark("ack save 1 2 123"),
        "100 +++ exited with 0 +++",
    ]
    trace = parse(lines, ROOT, (("k", b"9\n"),))
    kinds = [op.kind for op in trace]
    assert kinds == ["mark", "open", "write", "write", "fsync", "close", "rename", "open",
                     "fsync", "close", "mark"]  # fmt: skip
    assert trace[0].note == "trace start"
    assert trace[3].content == b"123\n"
    assert trace[4].content == b"123\n"
    assert trace[6].target == target
    assert trace[8].is_dir
    assert trace[10].note == "ack save 1 2 123"
    found = explore(trace, ROOT, (("k", b"9\n"),), seed=1, tear=1)  # byte-level tears
    assert {dict(s.tree).get("k") for s in found.states if s.point == 10} == {b"123\n"}
    before_fsync = {dict(s.tree).get("k.tmp") for s in found.states if s.point == 3}
    assert {None, b"", b"1", b"12", b"123", b"123\n"} <= before_fsync  # lost, torn, or whole


def test_pwrite_append_lseek_and_writev_follow_positions() -> None:
    db = f"{ROOT}/db"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(db)}", O_RDWR|O_CLOEXEC) = 3<{hx(db)}>',
        f'100 pwrite64({fd(3, db)}, "{hx("XY")}", 2, 1) = 2',
        f"100 lseek({fd(3, db)}, 5, SEEK_SET) = 5",
        f'100 write({fd(3, db)}, "{hx("Z")}", 1) = 1',
        f'100 writev({fd(3, db)}, [{{iov_base="{hx("a")}", iov_len=1}}, '
        f'{{iov_base="{hx("b")}", iov_len=1}}], 2) = 2',
        f"100 ftruncate({fd(3, db)}, 9) = 0",
        f'100 openat({CWD}, "{hx(db)}", O_WRONLY|O_APPEND) = 4<{hx(db)}>',
        f'100 write({fd(4, db)}, "{hx("!")}", 1) = 1',
    ]
    trace = parse(lines, ROOT, (("db", b"0123456789"),))
    contents = [op.content for op in trace if op.kind in ("write", "truncate")]
    assert contents == [b"0XY3456789", b"0XY34Z6789", b"0XY34Zab89", b"0XY34Zab8", b"0XY34Zab8!"]


def test_unfinished_and_resumed_lines_are_joined() -> None:
    f = f"{ROOT}/f"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(f)}", O_WRONLY|O_CREAT, 0644) = 3<{hx(f)}>',
        f'100 write({fd(3, f)}, "{hx("ab")}", 2 <unfinished ...>',
        f"101 fsync({fd(9, '/elsewhere')}) = 0",
        "100 <... write resumed>) = 2",
    ]
    trace = parse(lines, ROOT, ())
    assert [op.kind for op in trace] == ["mark", "open", "write"]
    assert trace[-1].content == b"ab"


def test_relative_paths_unlinkat_mkdirat_and_failures() -> None:
    lines = [
        mark("trace start"),
        f'100 mkdirat({fd(3, ROOT)}, "{hx("sub")}", 0777) = 0',
        f'100 unlinkat({CWD}, "{hx("store/gone")}", 0) = 0',
        f'100 unlinkat({fd(3, ROOT)}, "{hx("sub")}", AT_REMOVEDIR) = 0',
        f'100 renameat2({CWD}, "{hx("store/a")}", {CWD}, "{hx("store/b")}", RENAME_NOREPLACE) '
        "= -1 EEXIST (File exists)",
        f'100 unlink("{hx("/elsewhere/x")}") = 0',
    ]
    trace = parse(lines, ROOT, (("gone", b"x"), ("a", b"1"), ("b", b"2")))
    assert [(op.kind, op.path) for op in trace[1:]] == [
        ("mkdir", f"{ROOT}/sub"),
        ("unlink", f"{ROOT}/gone"),
        ("rmdir", f"{ROOT}/sub"),
        ("rename", f"{ROOT}/a"),
    ]
    assert trace[-1].error == "EEXIST"


def test_a_buffer_strace_cut_short_is_an_error() -> None:
    f = f"{ROOT}/f"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(f)}", O_WRONLY|O_CREAT, 0644) = 3<{hx(f)}>',
        f'100 write({fd(3, f)}, "{hx("ab")}"..., 4096) = 4096',
    ]
    with pytest.raises(StraceError, match="cut a written buffer short"):
        parse(lines, ROOT, ())


def test_an_o_dsync_write_is_durable_when_it_returns_and_lock_mdb_is_left_out() -> None:
    # LMDB's commit: data pages through one descriptor, fdatasync, then the meta page through an
    # O_DSYNC descriptor. Its lock.mdb (a reader table in shared memory) is no data.
    data, lock = f"{ROOT}/data.mdb", f"{ROOT}/lock.mdb"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(lock)}", O_RDWR|O_CREAT|O_CLOEXEC, 0664) = 3<{hx(lock)}>',
        f"100 ftruncate({fd(3, lock)}, 8192) = 0",
        f"100 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_SHARED, {fd(3, lock)}, 0) = 0x7f00",
        f'100 openat({CWD}, "{hx(data)}", O_RDWR|O_CREAT|O_CLOEXEC, 0664) = 4<{hx(data)}>',
        f'100 openat({CWD}, "{hx(data)}", O_WRONLY|O_DSYNC|O_CLOEXEC) = 5<{hx(data)}>',
        f'100 pwrite64({fd(4, data)}, "{hx("page")}", 4, 8) = 4',
        f"100 fdatasync({fd(4, data)}) = 0",
        f'100 pwrite64({fd(5, data)}, "{hx("meta")}", 4, 0) = 4',  # durable when it returns
        f'100 pwrite64({fd(4, data)}, "{hx("next")}", 4, 8) = 4',  # unsynced: not durable
        f'100 pwrite64({fd(5, data)}, "{hx("mete")}", 4, 0) = 4',  # other data unsynced
        mark("ack"),
    ]
    initial = (("data.mdb", b"\0" * 12), ("lock.mdb", b"\0" * 8))
    trace = parse(lines, ROOT, initial)
    assert all("lock.mdb" not in op.path for op in trace)
    kinds = [(op.kind, op.content) for op in trace if op.kind != "mark"]
    assert ("fdatasync", b"meta" + b"\0" * 4 + b"page") in kinds
    # The second O_DSYNC write is not credited with the unsynced page before it (conservative).
    assert kinds[-1] == ("write", b"mete" + b"\0" * 4 + b"next")
    found = explore(trace, ROOT, initial[:1], seed=1)
    after_meta = {dict(s.tree)["data.mdb"] for s in found.states if s.point == 6}
    assert after_meta == {b"meta" + b"\0" * 4 + b"page"}


def test_a_shared_writable_mapping_of_data_cannot_be_followed() -> None:
    data = f"{ROOT}/data.mdb"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(data)}", O_RDWR|O_CREAT|O_CLOEXEC, 0664) = 4<{hx(data)}>',
        f"100 mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_SHARED, {fd(4, data)}, 0) = 0x7f00",
    ]
    with pytest.raises(StraceError, match="shared writable mapping"):
        parse(lines, ROOT, (("data.mdb", b""),))
    read_only = [*lines[:2], lines[2].replace("PROT_READ|PROT_WRITE", "PROT_READ")]
    assert [op.kind for op in parse(read_only, ROOT, (("data.mdb", b""),))] == ["mark", "open"]


def test_a_trace_past_its_byte_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from lance_offsets.stress.seam import _syscalls

    monkeypatch.setattr(_syscalls, "MAX_TRACE_BYTES", 100)
    log = f"{ROOT}/log"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(log)}", O_WRONLY|O_CREAT|O_APPEND, 0644) = 3<{hx(log)}>',
    ]
    lines += [f'100 write({fd(3, log)}, "{hx("x" * 10)}", 10) = 10'] * 5
    assert len(parse(lines[:-1], ROOT, ())) == 6  # contents held: 10+20+30+40 = 100 bytes
    with pytest.raises(StraceError, match="more than 0 MiB of file contents"):
        parse(lines, ROOT, ())  # the fifth write's record would hold 50 more


def test_writes_outside_the_root_are_skipped_unparsed() -> None:
    # The worker pickles its snapshots (megabytes) outside the root: such lines are skipped by
    # their head, never split; a cut-short buffer there would otherwise be an error.
    out = "/data/strace.pickle"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(out)}", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 7<{hx(out)}>',
        f'100 write({fd(7, out)}, "{hx("x" * 32)}"..., 4096) = 4096',
    ]
    assert [op.kind for op in parse(lines, ROOT, ())] == ["mark"]
    inside = f"{ROOT}/k"
    lines[1:] = [
        f'100 openat({CWD}, "{hx(inside)}", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 7<{hx(inside)}>',
        f'100 write({fd(7, inside)}, "{hx("x" * 32)}"..., 4096) = 4096',
    ]
    with pytest.raises(StraceError, match="cut a written buffer short"):
        parse(lines, ROOT, ())


# --- calls beyond write, sync and rename (issue 19, class 8), as strace 6.1 prints them ---------


def test_links_temporary_files_copies_and_preallocation_are_followed() -> None:
    a, dst, named = f"{ROOT}/a", f"{ROOT}/dst", f"{ROOT}/named"
    unnamed = f"{hx(ROOT + '/#2305121')}>(deleted)"  # strace 6: "(deleted)" after the brackets
    lines = [
        mark("trace start"),
        f'100 link("{hx(a)}", "{hx(ROOT + "/a2")}") = 0',
        f'100 openat({CWD}, "{hx(ROOT)}", O_RDWR|O_CLOEXEC|O_TMPFILE, 0600) = 5<{unnamed}',
        f'100 write(5<{unnamed}, "{hx("tmp")}", 3) = 3',
        f"100 fsync(5<{unnamed}) = 0",
        f'100 linkat(5<{unnamed}, "", {CWD}, "{hx(named)}", AT_EMPTY_PATH) = 0',
        f'100 write(5<{unnamed}, "{hx("!")}", 1) = 1',  # the file goes by its name now
        f'100 openat({CWD}, "{hx(a)}", O_RDONLY|O_CLOEXEC) = 3<{hx(a)}>',
        f'100 openat({CWD}, "{hx(dst)}", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 4<{hx(dst)}>',
        f"100 copy_file_range({fd(3, a)}, [2], {fd(4, dst)}, NULL, 3, 0) = 3",
        f"100 sendfile({fd(4, dst)}, {fd(3, a)}, [0] => [2], 2) = 2",
        f"100 fallocate({fd(4, dst)}, 0, 0, 8) = 0",
        f"100 fallocate({fd(4, dst)}, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0, 2) = 0",
        f'100 truncate("{hx(dst)}", 4) = 0',
        f'100 renameat2({CWD}, "{hx(a)}", {CWD}, "{hx(dst)}", RENAME_EXCHANGE) = 0',
        f'100 renameat2({CWD}, "{hx(a)}", {CWD}, "{hx(dst)}", RENAME_WHITEOUT) = 0',
        f'100 symlink("{hx("a")}", "{hx(ROOT + "/sym")}") = 0',
    ]
    trace = parse(lines, ROOT, (("a", b"abcdef"),))
    seen = [(op.kind, op.call, op.path.removeprefix(ROOT + "/"), op.content) for op in trace[1:]]
    assert seen == [
        ("link", "link", "a2", b"abcdef"),
        ("open", "", ROOT, b""),  # O_TMPFILE: the directory, the descriptor named
        ("write", "", "#tmpfile-5", b"tmp"),
        ("fsync", "", "#tmpfile-5", b"tmp"),
        ("link", "linkat", "named", b"tmp"),
        ("write", "", "named", b"tmp!"),
        ("open", "", "a", b"abcdef"),
        ("open", "", "dst", b""),
        ("write", "copy_file_range", "dst", b"cde"),
        ("write", "sendfile", "dst", b"cdeab"),
        ("truncate", "fallocate", "dst", b"cdeab\0\0\0"),
        ("write", "fallocate", "dst", b"\0\0eab\0\0\0"),
        ("truncate", "truncate", "dst", b"\0\0ea"),
        ("rename", "renameat2", "a", None),
        ("unknown", "renameat2", "a", None),
        ("unknown", "symlink", "sym", None),
    ]
    assert trace[2].fd == 5
    assert trace[5].fd == 5
    assert trace[5].target is None
    assert trace[14].flags == 2  # RENAME_EXCHANGE: the names swapped
    assert "RENAME_WHITEOUT" in trace[15].note


def test_a_copy_whose_bytes_strace_cannot_show_is_an_error() -> None:
    # strace prints no bytes of a copy: from a file outside the root they are unknown.
    dst, elsewhere = f"{ROOT}/dst", "/elsewhere/src"
    lines = [
        mark("trace start"),
        f'100 openat({CWD}, "{hx(dst)}", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 4<{hx(dst)}>',
        f"100 copy_file_range({fd(3, elsewhere)}, NULL, {fd(4, dst)}, NULL, 3, 0) = 3",
    ]
    with pytest.raises(StraceError, match="strace shows no bytes of a copy"):
        parse(lines, ROOT, ())
