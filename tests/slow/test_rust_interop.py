"""Interop with the Rust client's protocol: a real Rust program, built here with rustc.

``tests/rust_interop/offset_tool.rs`` reproduces the seed's file handling (flock LOCK_EX on the
``.lock`` file, ``writeln!`` to ``.offset.tmp``, ``sync_all``, rename; trim-and-parse reads; the
lock-less delete). It needs only ``rustc`` (no crates), and these tests skip with a reason when
``rustc`` is missing or the platform has no ``flock``. The fixed Rust store, run as a driver
(``examples/drivers/rust_fixed/``), shares a directory with ours: the same bytes, the same locks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lance_offsets.conformance import load_factory
from lance_offsets.conformance._capabilities import Factory

from lance_offsets import (
    MAX_CONSUMER_ID,
    MAX_OFFSET,
    MAX_TOPIC_ID,
    LockFileOffsetStore,
    LockTimeoutError,
)
from lance_offsets._keylock import acquire, release

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="the Rust tool uses Unix flock"),
]

SOURCE = Path(__file__).resolve().parents[1] / "rust_interop" / "offset_tool.rs"
CONSUMER = "mixed"
DEADLINE = 60.0


@pytest.fixture(scope="module")
def rust_tool(tmp_path_factory: pytest.TempPathFactory) -> str:
    rustc = shutil.which("rustc")
    if rustc is None:
        pytest.skip("rustc not found: install a Rust toolchain to run the Rust interop tests")
    binary = tmp_path_factory.mktemp("rust") / "offset_tool"
    build = subprocess.run(
        [rustc, "--edition", "2021", "-O", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, f"rustc failed to build {SOURCE}:\n{build.stderr}"
    return str(binary)


def rust(tool: str, base: Path, command: str, *args: object) -> str:
    done = subprocess.run(
        [tool, command, str(base), CONSUMER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, f"offset_tool {command} {args}: {done.stderr}"
    out: str = done.stdout
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LockFileOffsetStore]:
    with LockFileOffsetStore.open(tmp_path, CONSUMER) as opened:
        yield opened


KEYS = {(0, 0): 0, (1, 23): 5, (12, 3): 6, (MAX_TOPIC_ID, MAX_CONSUMER_ID): MAX_OFFSET}


def test_rust_reads_what_we_write(
    rust_tool: str, tmp_path: Path, store: LockFileOffsetStore
) -> None:
    for key, offset in KEYS.items():
        store.save(*key, offset)
    listed = rust(rust_tool, tmp_path, "list").splitlines()
    assert sorted(listed) == sorted(f"{t} {c} {o}" for (t, c), o in KEYS.items())
    assert rust(rust_tool, tmp_path, "load", 12, 3) == "6\n"
    store.delete(12, 3)
    assert rust(rust_tool, tmp_path, "load", 12, 3) == "none\n"


def test_we_read_what_rust_writes_and_the_bytes_are_ours(
    rust_tool: str, tmp_path: Path, store: LockFileOffsetStore
) -> None:
    for (topic, consumer), offset in KEYS.items():
        rust(rust_tool, tmp_path, "save", topic, consumer, offset)
    assert store.list_all() == KEYS
    rust_bytes = {p.name: p.read_bytes() for p in Path(store.directory).iterdir()}
    shutil.rmtree(store.directory)
    with LockFileOffsetStore.open(tmp_path, CONSUMER) as ours:
        for key, offset in KEYS.items():
            ours.save(*key, offset)
    assert {p.name: p.read_bytes() for p in Path(store.directory).iterdir()} == rust_bytes
    rust(rust_tool, tmp_path, "delete", 1, 23)  # the seed's delete
    assert store.load(1, 23) is None


def test_a_rust_holder_blocks_our_save(rust_tool: str, tmp_path: Path) -> None:
    cmd = [rust_tool, "hold", str(tmp_path), CONSUMER, "1", "2"]
    with (
        LockFileOffsetStore.open(tmp_path, CONSUMER, lock_timeout=0.3) as impatient,
        LockFileOffsetStore.open(tmp_path, CONSUMER) as patient,
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder,
    ):
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert holder.stdout.readline() == "locked\n"
            with pytest.raises(LockTimeoutError):
                impatient.save(1, 2, 9)
            saver = threading.Thread(target=patient.save, args=(1, 2, 10))
            saver.start()
            saver.join(0.5)
            assert saver.is_alive(), "our save ran while the Rust client held the lock"
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == "released\n"
            saver.join(DEADLINE)
            assert not saver.is_alive()
        finally:
            holder.kill()
        assert patient.load(1, 2) == 10


def test_our_lock_blocks_a_rust_save(
    rust_tool: str, tmp_path: Path, store: LockFileOffsetStore
) -> None:
    fd = acquire(os.path.join(store.directory, "topic-1-consumer-2.lock"), (1, 2), None)
    cmd = [rust_tool, "save", str(tmp_path), CONSUMER, "1", "2", "77"]
    with subprocess.Popen(cmd) as saver:
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                saver.wait(0.5)
            assert store.load(1, 2) is None
            release(fd)
            assert saver.wait(DEADLINE) == 0
        finally:
            saver.kill()
    assert store.load(1, 2) == 77


def test_rust_and_python_saving_one_key_at_once_never_collide(
    rust_tool: str, tmp_path: Path, store: LockFileOffsetStore
) -> None:
    # Both use the one temp name: if the locks did not exclude each other, a rename would find
    # its temp file gone (ENOENT) or a reader would see an empty or half-written file.
    count = 60
    rust_offsets = range(1_000_000, 1_000_000 + count)
    our_offsets = range(count)
    seen: set[int | None] = set()
    cmd = [rust_tool, "saves", str(tmp_path), CONSUMER, "1", "2", "1000000", str(count)]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as rust_saver:
        try:
            for offset in our_offsets:
                store.save(1, 2, offset)
                seen.add(store.load(1, 2))
            assert rust_saver.wait(DEADLINE) == 0, rust_saver.stderr
        finally:
            rust_saver.kill()
    assert seen <= {None, *rust_offsets, *our_offsets}
    assert store.load(1, 2) in {count - 1, 1_000_000 + count - 1}
    assert not Path(store.directory, "topic-1-consumer-2.offset.tmp").exists()


# The fixed Rust store as a driver (examples/drivers/rust_fixed/): on disk the same as ours.


@pytest.fixture(scope="module")
def fixed_driver() -> Factory:
    tests = str(Path(__file__).resolve().parents[1])
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from _drivers import program

    factory: Factory = load_factory("exec:" + program("rust_fixed"))
    return factory


def test_the_fixed_rust_driver_and_our_store_share_a_directory(
    fixed_driver: Factory, tmp_path: Path
) -> None:
    with (
        fixed_driver.open_named(str(tmp_path), CONSUMER) as rust_store,  # type: ignore[attr-defined]
        LockFileOffsetStore.open(tmp_path, CONSUMER) as ours,
    ):
        for (topic, consumer), offset in KEYS.items():
            rust_store.save(topic, consumer, offset)
        assert ours.list_all() == KEYS
        rust_bytes = {p.name: p.read_bytes() for p in Path(ours.directory).iterdir()}
        ours.save(1, 23, 99)
        ours.delete(12, 3)
        assert rust_store.load(1, 23) == 99
        assert rust_store.load(12, 3) is None
        listed = rust_store.list_all()
        assert listed == {k: v for k, v in {**KEYS, (1, 23): 99}.items() if k != (12, 3)}
    shutil.rmtree(tmp_path / CONSUMER)
    with LockFileOffsetStore.open(tmp_path, CONSUMER) as again:
        for key, offset in KEYS.items():
            again.save(*key, offset)
        ours_bytes = {p.name: p.read_bytes() for p in Path(again.directory).iterdir()}
    assert ours_bytes == rust_bytes  # the same names, contents and lock files, byte for byte


def test_our_lock_blocks_the_fixed_rust_drivers_save(
    fixed_driver: Factory, tmp_path: Path, store: LockFileOffsetStore
) -> None:
    fd = acquire(os.path.join(store.directory, "topic-1-consumer-2.lock"), (1, 2), None)
    with fixed_driver.open_named(str(tmp_path), CONSUMER) as rust_store:  # type: ignore[attr-defined]
        saver = threading.Thread(target=rust_store.save, args=(1, 2, 77))
        saver.start()
        saver.join(0.5)
        try:
            assert saver.is_alive(), "the Rust driver saved while we held the key's flock"
            assert store.load(1, 2) is None
        finally:
            release(fd)
        saver.join(DEADLINE)
        assert not saver.is_alive()
        assert store.load(1, 2) == 77
