"""The platform layer: real fsyncs here, other platforms' failure handling by fault injection."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lance_offsets import _platform


def sharing_violation(winerror: int = 32) -> PermissionError:
    """A PermissionError shaped like the one Windows raises for a file in use."""
    error = PermissionError(errno.EACCES, "The process cannot access the file")
    error.winerror = winerror  # type: ignore[attr-defined]
    return error


class FlakyReplace:
    """A replace that fails ``failures`` times with ``error`` before doing the real thing."""

    def __init__(self, failures: int, error: Callable[[], OSError]) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, src: str, dst: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        os.replace(src, dst)


def files(tmp_path: Path) -> tuple[str, str]:
    src, dst = tmp_path / "x.offset.tmp", tmp_path / "x.offset"
    src.write_bytes(b"2\n")
    dst.write_bytes(b"1\n")
    return str(src), str(dst)


@pytest.mark.parametrize("winerror", sorted(_platform.SHARING_WINERRORS))
def test_replace_retries_sharing_violations_then_succeeds(tmp_path: Path, winerror: int) -> None:
    src, dst = files(tmp_path)
    flaky = FlakyReplace(3, lambda: sharing_violation(winerror))
    sleeps: list[float] = []
    _platform.retry_sharing_violations(lambda: flaky(src, dst), sleep=sleeps.append)
    assert flaky.calls == 4
    assert sleeps == [0.001, 0.002, 0.004]  # exponential backoff
    assert Path(dst).read_bytes() == b"2\n"
    assert not Path(src).exists()


def test_replace_gives_up_after_bounded_attempts_and_leaves_both_files(tmp_path: Path) -> None:
    src, dst = files(tmp_path)
    flaky = FlakyReplace(10**6, sharing_violation)
    sleeps: list[float] = []
    with pytest.raises(PermissionError) as caught:
        _platform.retry_sharing_violations(lambda: flaky(src, dst), sleep=sleeps.append)
    assert caught.value.winerror == 32  # type: ignore[attr-defined]
    assert flaky.calls == _platform.REPLACE_ATTEMPTS
    assert len(sleeps) == _platform.REPLACE_ATTEMPTS - 1
    assert max(sleeps) == _platform.MAX_DELAY
    assert 0.5 < sum(sleeps) < 2.0  # about a second in all: bounded, not a hang
    # Never delete-then-rename: the old offset is still there, the new one still in the temp file.
    assert Path(dst).read_bytes() == b"1\n"
    assert Path(src).read_bytes() == b"2\n"


@pytest.mark.parametrize(
    "error",
    [
        lambda: OSError(errno.ENOSPC, "No space left on device"),
        lambda: PermissionError(errno.EACCES, "denied"),  # a POSIX EACCES has no winerror
        lambda: sharing_violation(winerror=2),  # ERROR_FILE_NOT_FOUND is not "in use"
    ],
    ids=["ENOSPC", "posix-EACCES", "winerror-2"],
)
def test_other_errors_are_raised_at_once(tmp_path: Path, error: Callable[[], OSError]) -> None:
    src, dst = files(tmp_path)
    flaky = FlakyReplace(1, error)
    sleeps: list[float] = []
    with pytest.raises(OSError, match=r".") as caught:
        _platform.retry_sharing_violations(lambda: flaky(src, dst), sleep=sleeps.append)
    assert flaky.calls == 1
    assert sleeps == []
    assert caught.value.errno in (errno.ENOSPC, errno.EACCES)


def test_is_sharing_violation() -> None:
    assert _platform.is_sharing_violation(sharing_violation(5))
    assert _platform.is_sharing_violation(sharing_violation(33))
    assert not _platform.is_sharing_violation(PermissionError(errno.EACCES, "x"))
    assert not _platform.is_sharing_violation(OSError(errno.EBUSY, "x"))


class Recorder:
    def __init__(self, fcntl_error: OSError | None) -> None:
        self.fcntl_error = fcntl_error
        self.calls: list[tuple[str, int]] = []

    def fcntl(self, fd: int, op: int) -> int:
        self.calls.append(("fcntl", op))
        if self.fcntl_error is not None:
            raise self.fcntl_error
        return 0

    def fsync(self, fd: int) -> None:
        self.calls.append(("fsync", fd))


def test_full_fsync_uses_f_fullfsync_when_supported() -> None:
    rec = Recorder(None)
    _platform.full_fsync(7, fcntl_call=rec.fcntl, full_fsync_op=51, fsync=rec.fsync)
    assert rec.calls == [("fcntl", 51)]


@pytest.mark.parametrize("code", [errno.ENOTSUP, errno.EINVAL, errno.ENOTTY])
def test_full_fsync_falls_back_to_fsync_where_refused(code: int) -> None:
    rec = Recorder(OSError(code, os.strerror(code)))
    _platform.full_fsync(7, fcntl_call=rec.fcntl, full_fsync_op=51, fsync=rec.fsync)
    assert rec.calls == [("fcntl", 51), ("fsync", 7)]


def test_full_fsync_raises_real_io_errors() -> None:
    rec = Recorder(OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError, match="Input/output error"):
        _platform.full_fsync(7, fcntl_call=rec.fcntl, full_fsync_op=51, fsync=rec.fsync)
    assert rec.calls == [("fcntl", 51)]  # an EIO is not papered over with a weaker fsync


@pytest.mark.skipif(sys.platform == "win32", reason="directories are not fsynced on Windows")
def test_posix_steps_call_through_the_os_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stress interposer patches os.* at run time; the platform layer must not have bound the
    # functions at import, or it would see none of these calls.
    seen: list[str] = []

    def spy(name: str) -> Callable[..., object]:
        real = getattr(os, name)

        def call(*args: object) -> object:
            seen.append(name)
            return real(*args)

        return call

    for name in ("open", "fsync", "replace", "remove"):
        monkeypatch.setattr(os, name, spy(name))
    src, dst = files(tmp_path)
    fd = _platform.open_file(src, os.O_RDONLY)
    try:
        _platform.fsync_file(fd)
    finally:
        os.close(fd)
    _platform.fsync_dir(str(tmp_path))
    _platform.replace(src, dst)
    _platform.remove(dst)
    # fsync_dir opens the directory itself: open, fsync.
    assert seen == ["open", "fsync", "open", "fsync", "replace", "remove"]
    assert list(tmp_path.iterdir()) == []


def test_fsync_dir_of_a_missing_directory_raises(tmp_path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        pytest.skip("directories are not fsynced on Windows")
    with pytest.raises(FileNotFoundError):
        _platform.fsync_dir(str(tmp_path / "missing"))


def test_the_windows_functions_retry_through_the_os_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Windows branch's own functions, run here with os.* failing like Windows does.
    src, dst = files(tmp_path)
    real_replace, real_remove, real_open = os.replace, os.remove, os.open
    failures = {"replace": 2, "remove": 2, "open": 2}

    def flaky(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            if failures[name]:
                failures[name] -= 1
                raise sharing_violation()
            return real(*args)

        return call

    monkeypatch.setattr(os, "replace", flaky("replace", real_replace))
    monkeypatch.setattr(os, "remove", flaky("remove", real_remove))
    monkeypatch.setattr(os, "open", flaky("open", real_open))
    _platform._replace_windows(src, dst)
    fd = _platform._open_windows(dst, os.O_RDONLY)
    try:
        assert os.read(fd, 10) == b"2\n"
    finally:
        os.close(fd)
    _platform._remove_windows(dst)
    assert failures == {"replace": 0, "remove": 0, "open": 0}
    assert list(tmp_path.iterdir()) == []
    _platform._fsync_dir_windows(str(tmp_path))  # a no-op that must not fail
