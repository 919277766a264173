"""The file-system interposer records what a store does, stops where asked, and fails on plan."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import mmap
import os
import pathlib
import sys
import threading
from collections.abc import Callable

import pytest
from lance_offsets.stress.faults._judge import SYNC_KINDS, injected, swallowed_syncs
from lance_offsets.stress.seam._interpose import FaultPlan, mark, set_fault, traced
from lance_offsets.stress.seam._trace import TraceOp
from lance_offsets.stress.seam._tracer import REAL

#: Opening a directory to fsync it, or renaming an open file, is POSIX only.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file semantics")

_early_replace = os.replace  # bound at import, like `from os import replace`: bypasses the patch


def _save_like_a_store(directory: pathlib.Path, value: bytes) -> None:
    """The durable save protocol: write temp, fsync, replace, fsync the directory."""
    tmp = directory / "k.offset.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, value)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / "k.offset")
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _kinds(trace: list[TraceOp]) -> list[str]:
    return [op.kind for op in trace]


@posix_only
def test_os_level_save_is_recorded_in_order_with_contents(tmp_path: pathlib.Path) -> None:
    root = os.path.realpath(tmp_path)
    with traced(tmp_path) as trace:
        _save_like_a_store(tmp_path, b"42\n")
    assert _kinds(trace) == [
        "open",
        "write",
        "fsync",
        "close",
        "replace",
        "open",
        "fsync",
        "close",
    ]
    assert [op.index for op in trace] == list(range(8))
    tmp, final = os.path.join(root, "k.offset.tmp"), os.path.join(root, "k.offset")
    assert trace[0].path == tmp
    assert trace[0].flags & os.O_TRUNC
    assert trace[0].content == b""
    assert trace[1].content == b"42\n"
    assert trace[4].target == final
    assert trace[4].content is None
    assert trace[6].path == root
    assert trace[6].is_dir
    assert trace[6].content is None


def test_file_objects_are_recorded_when_bytes_reach_the_os(tmp_path: pathlib.Path) -> None:
    with traced(tmp_path) as trace:
        with open(tmp_path / "a", "w") as f:
            f.write("12")
            assert _kinds(trace) == ["open"]  # still in the buffer: nothing reached the OS
            f.flush()
            os.fsync(f.fileno())
        (tmp_path / "b").write_text("pathlib")
        with io.open(tmp_path / "c", "ab") as f:  # noqa: UP020 - io.open is patched too
            f.write(b"io")
        fd = os.open(tmp_path / "d", os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as f:
            f.write(b"fdopen")
    assert [(op.kind, os.path.basename(op.path), op.content) for op in trace] == [
        ("open", "a", b""),
        ("write", "a", b"12"),
        ("fsync", "a", b"12"),
        ("close", "a", b"12"),
        ("open", "b", b""),
        ("write", "b", b"pathlib"),
        ("close", "b", b"pathlib"),
        ("open", "c", b""),
        ("write", "c", b"io"),
        ("close", "c", b"io"),
        ("open", "d", b""),
        ("write", "d", b"fdopen"),
        ("close", "d", b"fdopen"),
    ]


def test_paths_outside_root_are_not_recorded_and_patches_are_restored(
    tmp_path: pathlib.Path,
) -> None:
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    with traced(inside) as trace:
        (outside / "x").write_bytes(b"x")
        os.makedirs(inside / "p" / "q")
        os.rename(inside / "p", inside / "r")
    assert [(op.kind, op.path[len(str(inside)) :]) for op in trace] == [
        ("mkdir", "/p"),
        ("mkdir", "/p/q"),
        ("rename", "/p"),
    ]
    assert trace[2].target == os.path.join(os.path.realpath(inside), "r")
    assert os.open is REAL["open"]
    assert os.fsync is REAL["fsync"]
    assert builtins.open is io.open
    with open(os.devnull, "rb") as f:
        assert type(f.raw) is io.FileIO


@posix_only
def test_on_op_sees_each_operation_before_and_after(tmp_path: pathlib.Path) -> None:
    calls: list[tuple[str, TraceOp]] = []
    with traced(tmp_path, on_op=lambda op, phase: calls.append((phase, op))) as trace:
        _save_like_a_store(tmp_path, b"7\n")
    assert [phase for phase, _ in calls] == ["before", "after"] * len(trace)
    for (_, before), (_, after), recorded in zip(calls[::2], calls[1::2], trace, strict=True):
        assert before.index == after.index == recorded.index
        assert before.content is None
        assert after == recorded
    # "After fsync, before rename" is a point: after op 2 (fsync), then close, then replace.
    assert [(phase, op.kind) for phase, op in calls[5:9]] == [
        ("after", "fsync"),
        ("before", "close"),
        ("after", "close"),
        ("before", "replace"),
    ]


@posix_only
def test_stopping_before_an_operation_keeps_it_from_happening(tmp_path: pathlib.Path) -> None:
    class Stop(BaseException):
        pass

    def stop_before_replace(op: TraceOp, phase: str) -> None:
        if op.kind == "replace" and phase == "before":
            raise Stop

    with traced(tmp_path, on_op=stop_before_replace), pytest.raises(Stop):
        _save_like_a_store(tmp_path, b"9\n")
    assert sorted(os.listdir(tmp_path)) == ["k.offset.tmp"]


def test_early_bound_functions_are_seen_by_the_audit_hook(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").write_bytes(b"1")
    with traced(tmp_path) as trace:
        _early_replace(tmp_path / "a", tmp_path / "b")
    assert [(op.kind, op.note, os.path.basename(op.target or "")) for op in trace] == [
        ("rename", "audit", "b")
    ]


@posix_only
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_a_planned_fault_fails_the_operation_and_changes_nothing(
    tmp_path: pathlib.Path, code: int
) -> None:
    (tmp_path / "k.offset").write_bytes(b"1\n")
    with traced(tmp_path, fail=FaultPlan(at=1, error=code)) as trace:
        with pytest.raises(OSError, match="injected") as raised:
            _save_like_a_store(tmp_path, b"2\n")
        assert raised.value.errno == code
        _save_like_a_store(tmp_path, b"3\n")  # once: the next save goes through
    assert trace[1].kind == "write"
    assert trace[1].error == errno.errorcode[code]
    assert (tmp_path / "k.offset").read_bytes() == b"3\n"


@posix_only
def test_a_persistent_fault_lasts_until_cleared(tmp_path: pathlib.Path) -> None:
    plan = FaultPlan(error=errno.EACCES, times=None, kinds=("replace",))
    with traced(tmp_path, fail=plan) as trace:
        for _ in range(3):
            with pytest.raises(PermissionError):
                _save_like_a_store(tmp_path, b"5\n")
        set_fault(None)
        _save_like_a_store(tmp_path, b"6\n")
    assert [op.error for op in trace if op.kind == "replace"] == ["EACCES"] * 3 + [None]
    assert (tmp_path / "k.offset").read_bytes() == b"6\n"
    assert "EACCES at op >= 0 (replace), from then on" in plan.describe()


def test_a_failed_close_still_releases_the_descriptor(tmp_path: pathlib.Path) -> None:
    plan = FaultPlan(error=errno.EIO, kinds=("close",), winerror=32)
    with traced(tmp_path, fail=plan) as trace:
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError, match="injected") as raised:
            os.close(fd)
    assert getattr(raised.value, "winerror", None) == 32
    assert trace[-1].error == "EIO"
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_sharing_violations_drive_the_bounded_retry(tmp_path: pathlib.Path) -> None:
    """The reference store's Windows retry, on any OS: fail os.replace 3 times, then let go."""
    from zoo.stress_crash_zoo import windows_retry  # tests/ is on sys.path under pytest

    store = windows_retry(str(tmp_path))
    store.save(1, 2, 3)
    plan = FaultPlan(error=errno.EACCES, times=3, kinds=("replace",), winerror=32)
    with traced(tmp_path, fail=plan) as trace:
        store.save(1, 2, 4)
    assert [op.error for op in trace if op.kind == "replace"] == ["EACCES"] * 3 + [None]
    assert store.load(1, 2) == 4


def test_a_store_with_early_bound_functions_is_seen_through_audit_events(
    tmp_path: pathlib.Path,
) -> None:
    from zoo.stress_crash_zoo import early_bound

    store = early_bound(str(tmp_path))
    store.save(1, 2, 3)
    with traced(tmp_path) as trace:
        store.save(1, 2, 4)
    seen = [(op.kind, op.note, os.path.basename(op.path)) for op in trace]
    assert ("open", "audit", "1-2.offset.tmp") in seen  # the temp file, opened by _open
    assert ("rename", "audit", "1-2.offset.tmp") in seen  # os.replace raises "os.rename"
    assert not [op for op in trace if op.kind in ("write", "fsync") and op.path.endswith(".tmp")]


def test_f_fullfsync_is_recorded_and_its_refusal_falls_back_to_fsync(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The macOS path on any POSIX system: a command number Linux refuses stands in for it."""
    fcntl = pytest.importorskip("fcntl")
    from lance_offsets import _platform

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 0x7FFF, raising=False)
    with traced(tmp_path) as trace:
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"1")
        _platform.full_fsync(
            fd, fcntl_call=fcntl.fcntl, full_fsync_op=fcntl.F_FULLFSYNC, fsync=os.fsync
        )
        os.close(fd)
    assert [(op.kind, op.error) for op in trace] == [
        ("open", None),
        ("write", None),
        ("fsync", "EINVAL"),
        ("fsync", None),
        ("close", None),
    ]


@posix_only
def test_marks_threads_and_renamed_descriptors(tmp_path: pathlib.Path) -> None:
    with traced(tmp_path) as trace:
        fd = os.open(tmp_path / "old", os.O_WRONLY | os.O_CREAT)
        os.rename(tmp_path / "old", tmp_path / "new")
        os.write(fd, b"after rename")
        os.close(fd)
        mark("ack save 1 2 3")
        worker = threading.Thread(target=(tmp_path / "t").write_bytes, args=(b"thread",))
        worker.start()
        worker.join()
    assert trace[2].kind == "write"
    assert trace[2].path.endswith("new")
    assert trace[2].content == b"after rename"
    assert (trace[4].kind, trace[4].note) == ("mark", "ack save 1 2 3")
    assert [op.content for op in trace[5:]] == [b"", b"thread", b"thread"]


def test_a_descriptor_closed_behind_the_tracers_back_is_not_misattributed(
    tmp_path: pathlib.Path,
) -> None:
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    early_close = REAL["close"]  # a close the wrappers cannot see
    with traced(inside) as trace:
        fd = os.open(inside / "a", os.O_WRONLY | os.O_CREAT)
        early_close(fd)
        reused = os.open(outside / "b", os.O_WRONLY | os.O_CREAT)
        assert reused == fd  # the OS hands out the lowest free number again
        os.write(reused, b"not inside")
        os.close(reused)
    assert [op.kind for op in trace] == ["open"]


def test_contents_are_read_by_path_where_there_is_no_pread(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(REAL, "pread")  # as on Windows
    with traced(tmp_path) as trace:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
        os.write(fd, b"by path")
        os.close(fd)
    assert [op.content for op in trace] == [b"", b"by path", b"by path"]


def test_blocks_do_not_nest(tmp_path: pathlib.Path) -> None:
    with traced(tmp_path), pytest.raises(RuntimeError, match="nest"), traced(tmp_path):
        pass  # pragma: no cover


# --- faults on syncs, and F2's rule for a save that returns after one (stress/faults/_judge.py) --


def _sync_file_object(directory: pathlib.Path) -> None:
    with open(directory / "k.offset.tmp", "wb") as f:
        f.write(b"5\n")
        f.flush()
        os.fsync(f)  # the file object itself: os.fsync calls its fileno()


def _sync_descriptor_of_file_object(directory: pathlib.Path) -> None:
    with open(directory / "k.offset.tmp", "wb") as f:
        f.write(b"5\n")
        f.flush()
        getattr(os, "fdatasync", os.fsync)(f.fileno())  # macOS has no fdatasync


def _sync_directory_opened_read_only(directory: pathlib.Path) -> None:
    (directory / "k.offset.tmp").write_bytes(b"5\n")
    os.replace(directory / "k.offset.tmp", directory / "k.offset")
    fd = os.open(directory, os.O_RDONLY)  # no O_DIRECTORY: the interposer still knows
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@posix_only
@pytest.mark.parametrize(
    ("sync", "is_dir"),
    [
        (_sync_file_object, False),
        (_sync_descriptor_of_file_object, False),
        (_sync_directory_opened_read_only, True),
    ],
)
def test_every_way_to_sync_is_counted_and_can_be_failed(
    tmp_path: pathlib.Path, sync: Callable[[pathlib.Path], None], is_dir: bool
) -> None:
    plan = FaultPlan(error=errno.EIO, kinds=("fsync", "fdatasync"))
    with traced(tmp_path, fail=plan) as trace, pytest.raises(OSError, match="injected") as raised:
        sync(tmp_path)
    assert raised.value.errno == errno.EIO
    (failed,) = injected(trace, plan)
    assert failed.kind in SYNC_KINDS
    assert failed.is_dir is is_dir
    assert os.path.basename(failed.path) == (tmp_path.name if is_dir else "k.offset.tmp")


@posix_only
def test_a_failed_full_fsync_is_a_failed_sync(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fcntl = pytest.importorskip("fcntl")
    from lance_offsets import _platform

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 0x7FFF, raising=False)
    plan = FaultPlan(error=errno.EIO, kinds=("fsync",))
    with traced(tmp_path, fail=plan) as trace:
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"1")
        with pytest.raises(OSError, match="injected"):  # EIO is not "unsupported": no fallback
            _platform.full_fsync(
                fd, fcntl_call=fcntl.fcntl, full_fsync_op=fcntl.F_FULLFSYNC, fsync=os.fsync
            )
        os.close(fd)
    assert [(op.kind, op.error) for op in injected(trace, plan)] == [("fsync", "EIO")]


def _swallowing_save(directory: pathlib.Path, value: bytes, *, retry: bool) -> None:
    """The durable protocol with the fsync's error caught; ``retry``: fsync again, new fd."""
    tmp = directory / "k.offset.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, value)
        try:
            os.fsync(fd)
        except OSError:
            if retry:
                again = os.open(tmp, os.O_RDONLY)
                os.fsync(again)
                os.close(again)
    finally:
        os.close(fd)
    os.replace(tmp, directory / "k.offset")


@posix_only
@pytest.mark.parametrize("retry", [False, True])
def test_a_save_returning_after_a_failed_fsync_of_its_data_is_named(
    tmp_path: pathlib.Path, retry: bool
) -> None:
    plan = FaultPlan(error=errno.EIO, kinds=("fsync",))  # once: a retry succeeds
    with traced(tmp_path, fail=plan) as trace:
        _swallowing_save(tmp_path, b"9\n", retry=retry)
    (line,) = swallowed_syncs(trace, injected(trace, plan))
    assert line.startswith(f"fsync of {os.path.realpath(tmp_path)}/k.offset.tmp failed with EIO")
    assert "and save() returned: the offset is not durable (the error was swallowed)" in line
    assert ("proves nothing" in line) is retry


@posix_only
def test_a_failed_sync_of_what_the_save_did_not_write_is_not_its_concern(
    tmp_path: pathlib.Path,
) -> None:
    """A lock file opened and fsynced (never written) is no offset: its error is not F2's."""
    plan = FaultPlan(error=errno.EIO, kinds=("fsync",))
    with traced(tmp_path, fail=plan) as trace:
        lock = os.open(tmp_path / "k.lock", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            os.fsync(lock)
        os.close(lock)
        _save_like_a_store(tmp_path, b"3\n")
    assert injected(trace, plan)
    assert swallowed_syncs(trace, injected(trace, plan)) == []


@posix_only
def test_writing_the_data_again_after_a_failed_fsync_makes_it_durable(
    tmp_path: pathlib.Path,
) -> None:
    """Redone from the store's own copy, the second fsync flushes dirty pages: no violation."""
    plan = FaultPlan(error=errno.EIO, kinds=("fsync",))
    with traced(tmp_path, fail=plan) as trace:
        with contextlib.suppress(OSError):
            _save_like_a_store(tmp_path, b"8\n")
        _save_like_a_store(tmp_path, b"8\n")  # the same bytes, written and synced again
    assert injected(trace, plan)
    assert swallowed_syncs(trace, injected(trace, plan)) == []


# --- calls beyond write, sync and rename (issue 19, class 8; VOCAB19) --------------------------

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="O_TMPFILE, /proc/self/fd and copy_file_range"
)


@linux_only
def test_links_temporary_files_copies_and_symlinks_are_recorded(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").write_bytes(b"0123456789")
    # A directory descriptor makes CPython call linkat (with AT_SYMLINK_FOLLOW), not link(2),
    # which would link /proc's symbolic link itself.
    folder = os.open(tmp_path, os.O_RDONLY)
    with traced(tmp_path) as trace:
        os.link(tmp_path / "a", tmp_path / "a2")
        fd = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o644)
        os.write(fd, b"tmp")
        os.fsync(fd)
        os.link(f"/proc/self/fd/{fd}", tmp_path / "named", src_dir_fd=folder)
        os.fsync(fd)  # the unnamed file goes by its new name now
        os.close(fd)
        src = os.open(tmp_path / "a", os.O_RDONLY)
        dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT, 0o644)
        os.copy_file_range(src, dst, 4)
        os.sendfile(dst, src, 4, 3)
        os.posix_fallocate(dst, 0, 10)
        os.truncate(tmp_path / "dst", 5)
        os.close(src)
        os.close(dst)
        os.symlink("a", tmp_path / "sym")
    os.close(folder)
    root = os.path.realpath(tmp_path)
    seen = [
        (
            op.kind,
            op.call,
            os.path.relpath(op.path, root),
            op.target and os.path.basename(op.target),
        )
        for op in trace
    ]
    tmpfile = f"#tmpfile-{trace[1].fd}"  # the O_TMPFILE open names its descriptor
    assert seen == [
        ("link", "link", "a2", "a"),
        ("open", "", ".", None),  # O_TMPFILE: the directory it was made in
        ("write", "", tmpfile, None),
        ("fsync", "", tmpfile, None),
        ("link", "link", "named", None),  # no existing name: the descriptor's file
        ("fsync", "", "named", None),
        ("close", "", "named", None),
        ("open", "", "a", None),
        ("open", "", "dst", None),
        ("write", "copy_file_range", "dst", None),
        ("write", "sendfile", "dst", None),
        ("truncate", "posix_fallocate", "dst", None),
        ("truncate", "", "dst", None),
        ("close", "", "a", None),
        ("close", "", "dst", None),
        ("unknown", "symlink", "sym", None),
    ]
    assert trace[1].flags & os.O_TMPFILE == os.O_TMPFILE
    assert trace[4].fd == trace[1].fd  # the link names the descriptor it gave a name
    assert [op.content for op in trace if op.kind == "link"] == [b"0123456789", b"tmp"]
    assert [op.content for op in trace if op.path.endswith("dst")][1:5] == [
        b"0123",
        b"0123456",
        b"0123456\0\0\0",
        b"01234",
    ]
    assert trace[-1].note == "to a"


@linux_only
def test_writes_through_a_shared_mapping_are_recorded_by_the_page(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(bytes(3 * 4096))
    with traced(tmp_path) as trace:
        fd = os.open(path, os.O_RDWR)
        with mmap.mmap(fd, 3 * 4096) as area:
            area[:5] = b"hello"
            area[2 * 4096] = 1
            os.fsync(fd)  # the writes are recorded before the operation that follows them
            area[4096 : 4096 + 3] = b"mid"
            area.flush()
            private = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE)
            private[:3] = b"not"  # a private mapping changes no file: nothing recorded
            private.close()
        os.close(fd)
    seen = [(op.kind, op.call, op.note) for op in trace]
    assert seen == [
        ("open", "", ""),
        ("write", "mmap", "pages 0 2"),
        ("fsync", "", ""),
        ("write", "mmap", "pages 1"),
        ("fsync", "", ""),  # mmap.flush(): msync of the mapping
        ("close", "", ""),
    ]
    written = [op.content for op in trace if op.call == "mmap"]
    assert written[0] is not None
    assert written[0][:5] == b"hello"
    assert written[1] is not None
    assert written[1][4096:4099] == b"mid"
