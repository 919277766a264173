"""The floors a store's figures are measured against: the same work with nothing of ours in it.

- :func:`inline_save`: the lock-file protocol's syscalls written out in Python (flock, temp
  write, fsync, replace, directory fsync, unlock), no checks;
- :func:`c_save`: the same protocol in C, compiled on the fly with the machine's ``cc`` and called
  through ctypes (a call costs well under a microsecond beside two fsyncs); None without a compiler;
- :func:`sqlite_full`: SQLite in WAL mode with ``synchronous=FULL``, one commit per save (the
  durable-database floor), and its batch form, one transaction for many offsets;
- :func:`scandir_read`: ``os.scandir`` plus ``open``/``read``/``close`` of each offset file.

:func:`interleaved` times variants one call each in a shuffled order, in one process on one
directory, so disk noise hits them alike (on ext4 a directory fsync commits the whole journal).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

__all__ = [
    "Variant",
    "c_save",
    "file_system",
    "inline_save",
    "interleaved",
    "read_inline",
    "scandir_read",
    "sqlite_full",
]

#: One durable save of the given offset.
Variant = Callable[[int], None]

_C_SOURCE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
int save(const char *dir, const char *lock, const char *tmp, const char *target,
         unsigned long long offset) {
    char text[32];
    int n = snprintf(text, sizeof text, "%llu\n", offset);
    int lfd = open(lock, O_RDWR | O_CREAT, 0666);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0 || write(fd, text, n) != n || fsync(fd) != 0) return -2;
    close(fd);
    if (rename(tmp, target) != 0) return -3;
    int dfd = open(dir, O_RDONLY);
    if (dfd < 0 || fsync(dfd) != 0) return -4;
    close(dfd);
    flock(lfd, LOCK_UN);
    close(lfd);
    return 0;
}
"""


def _stem(directory: str, key: int) -> str:
    # Each variant has its own key, so no variant's journal updates coalesce with another's.
    return os.path.join(directory, f"topic-{key}-consumer-{key}")


def inline_save(directory: str, key: int, dir_fsync: bool = True) -> Variant:
    """The lock-file protocol's syscalls inline (``dir_fsync=False``: the Rust seed's)."""
    stem = _stem(directory, key)
    lock, tmp, target = stem + ".lock", stem + ".offset.tmp", stem + ".offset"

    def save(offset: int) -> None:
        lfd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(lfd, fcntl.LOCK_EX)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                os.write(fd, b"%d\n" % offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            if dir_fsync:
                dfd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            fcntl.flock(lfd, fcntl.LOCK_UN)
        finally:
            os.close(lfd)

    return save


@contextlib.contextmanager
def c_save(directory: str, key: int) -> Iterator[Variant | None]:
    """The protocol in C (None when no compiler works here); the library lives in the block."""
    build = tempfile.mkdtemp(prefix="lance-bench-c-")
    try:
        source, library = os.path.join(build, "save.c"), os.path.join(build, "save.so")
        with open(source, "w", encoding="ascii") as fh:
            fh.write(_C_SOURCE)
        compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if compiler is None:
            yield None
            return
        try:
            subprocess.run(
                [compiler, "-O2", "-shared", "-fPIC", "-o", library, source],
                check=True,
                capture_output=True,
                timeout=60,
            )
            native = ctypes.CDLL(library)
        except (OSError, subprocess.SubprocessError):
            yield None
            return
        native.save.argtypes = [ctypes.c_char_p] * 4 + [ctypes.c_ulonglong]
        stem = _stem(directory, key)
        paths = [p.encode() for p in (directory, stem + ".lock", stem + ".offset.tmp")]
        paths.append((stem + ".offset").encode())

        def save(offset: int) -> None:
            if native.save(*paths, offset) != 0:
                raise OSError(f"the C save failed at offset {offset}")

        yield save
    finally:
        shutil.rmtree(build, ignore_errors=True)


@contextlib.contextmanager
def sqlite_full(path: str) -> Iterator[tuple[Variant, Callable[[dict[int, int]], None]]]:
    """SQLite WAL + ``synchronous=FULL``: (one save per commit, many offsets in one commit)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE IF NOT EXISTS o (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        upsert = "INSERT INTO o (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v"

        def save(offset: int) -> None:
            con.execute(upsert, (1, offset))

        def save_many(offsets: dict[int, int]) -> None:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(upsert, offsets.items())
            con.execute("COMMIT")

        yield save, save_many
    finally:
        con.close()


def scandir_read(directory: str) -> dict[str, bytes]:
    """Every ``.offset`` file's bytes, by name: the floor of a list that reflects the directory."""
    found = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(".offset"):
                found[entry.name] = read_inline(entry.path)
    return found


def read_inline(path: str) -> bytes:
    """``open``/``read``/``close`` of one file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def interleaved(variants: dict[str, Variant], calls: int, seed: int) -> dict[str, list[float]]:
    """Microseconds of each call of each variant, ``calls`` each, in a shuffled order."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    offset = 0
    for _ in range(calls):
        rng.shuffle(names)
        for name in names:
            offset += 1
            started = time.perf_counter_ns()
            variants[name](offset)
            samples[name].append((time.perf_counter_ns() - started) / 1000)
    return samples


def file_system(path: str) -> str:
    """Name the file system holding ``path`` (Linux only; 'unknown' elsewhere)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, point, fstype, *_ = line.split()
                if real.startswith(point) and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind
