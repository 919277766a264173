"""Stores whose I/O happens on a C library's own thread, joined while the caller holds the GIL.

Many C storage libraries (RocksDB, a Rust engine behind PyO3, a database client) hand their file
I/O to threads of their own and wait for them inside the call the caller made. Called through
``ctypes.PyDLL``, such a call keeps the GIL for its whole duration, as a C extension that never
releases it does. Whatever reacts to those threads' system calls must then never need the GIL:
a syscall shim that called back into Python from the I/O thread would wait for the GIL, which
the caller holds while it waits for the I/O thread, for ever.

The library (C source below, compiled on first import into the shim's cache directory; Linux
with a C compiler) keeps one file per key, ``{topic}-{consumer}.offset`` holding ``value\\n``:

- ``cts_open(dir)``: on an I/O thread, joined: ``mkdir`` the directory if absent (fsyncing its
  parent), create ``store.meta`` under a temp name, fsync it, rename it in, fsync the directory.
- ``cts_save(dir, name, value)``: on an I/O thread, joined: write ``name.tmp``, fsync it,
  rename it over ``name``, fsync the directory.
- ``cts_remove(dir, name)``: on an I/O thread, joined: unlink ``name``, fsync the directory.

Loads and listings read the files from Python. Factories (``zoo.cthread_zoo:<name>``, the
``tests`` folder on ``PYTHONPATH``):

- ``correct``: the protocol above; passes D1, D2, D3, D4, D5 and F2.
- ``in_place``: the save truncates and rewrites ``name`` itself (then fsyncs it and the
  directory): a kill or a power cut between the truncation and the write leaves an empty file.
  Fails D1 (and D3).
- ``ignores_fsync_errors``: the save goes on when an ``fsync`` fails and reports success: fails
  F2 ("fsync ... failed with EIO and save() returned").
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import Final

from lance_offsets._domain import check_key, check_offset

Key = tuple[int, int]

#: The library's behaviour, one defect per value (``cts_*``'s ``mode`` argument).
CORRECT, IN_PLACE, IGNORES_FSYNC_ERRORS = 0, 1, 2

SOURCE: Final = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OPEN, SAVE, REMOVE };
enum { CORRECT, IN_PLACE, IGNORES_FSYNC_ERRORS };

struct job {
    int what, mode, result;
    const char *dir, *name, *data;
};

/* 0, or -1 with errno; a defective mode may pretend a failed fsync worked. */
static int sync_fd(int fd, int mode) {
    int rc = fsync(fd);
    return mode == IGNORES_FSYNC_ERRORS ? 0 : rc;
}

static int sync_dir(const char *dir, int mode) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = sync_fd(fd, mode);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int write_file(const char *path, const char *data, int mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t n = strlen(data), done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w < 0) { int saved = errno; close(fd); errno = saved; return -1; }
        done += (size_t)w;
    }
    if (sync_fd(fd, mode)) { int saved = errno; close(fd); errno = saved; return -1; }
    return close(fd);
}

static int do_open(struct job *j) {
    char path[4096], temp[4096], parent[4096];
    if (mkdir(j->dir, 0755) == 0) {
        snprintf(parent, sizeof parent, "%s", j->dir);
        if (sync_dir(dirname(parent), j->mode)) return -1;
    } else if (errno != EEXIST) {
        return -1;
    }
    snprintf(path, sizeof path, "%s/store.meta", j->dir);
    if (access(path, F_OK) == 0) return 0;
    snprintf(temp, sizeof temp, "%s/store.meta.tmp", j->dir);
    if (write_file(temp, "cts 1\n", j->mode) || rename(temp, path)) return -1;
    return sync_dir(j->dir, j->mode);
}

static int do_save(struct job *j) {
    char path[4096], temp[4096];
    snprintf(path, sizeof path, "%s/%s", j->dir, j->name);
    if (j->mode == IN_PLACE) {
        if (write_file(path, j->data, j->mode)) return -1;
        return sync_dir(j->dir, j->mode);
    }
    snprintf(temp, sizeof temp, "%s/%s.tmp", j->dir, j->name);
    if (write_file(temp, j->data, j->mode) || rename(temp, path)) return -1;
    return sync_dir(j->dir, j->mode);
}

static int do_remove(struct job *j) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", j->dir, j->name);
    if (unlink(path) && errno != ENOENT) return -1;
    return sync_dir(j->dir, j->mode);
}

static void *io_thread(void *arg) {
    struct job *j = arg;
    int rc = j->what == OPEN ? do_open(j) : j->what == SAVE ? do_save(j) : do_remove(j);
    j->result = rc ? (errno ? errno : EIO) : 0;
    return NULL;
}

/* Run the job on a new thread and wait for it: the caller keeps whatever it holds (the GIL). */
static int run(int what, const char *dir, const char *name, const char *data, int mode) {
    struct job j = { what, mode, 0, dir, name, data };
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, io_thread, &j);
    if (rc) return rc;
    pthread_join(thread, NULL);
    return j.result;
}

int cts_open(const char *dir, int mode) { return run(OPEN, dir, NULL, NULL, mode); }
int cts_save(const char *dir, const char *name, const char *data, int mode) {
    return run(SAVE, dir, name, data, mode);
}
int cts_remove(const char *dir, const char *name, int mode) {
    return run(REMOVE, dir, name, NULL, mode);
}
"""

_SUFFIX: Final = ".offset"
_NAME: Final = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\.offset")
_CONTENT: Final = re.compile(rb"(0|[1-9][0-9]*)\n")


def build() -> str:
    """The compiled library's path (built once per source, beside the syscall shim's cache)."""
    folder = os.environ.get("LANCE_OFFSETS_SHIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lance-offsets"
    )
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    target = os.path.join(folder, f"zoo-cthread-{digest}.so")
    if os.path.exists(target):
        return target
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError("zoo.cthread_zoo needs a C compiler (cc)")
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        source = os.path.join(work, "cthread.c")
        with open(source, "w") as handle:
            handle.write(SOURCE)
        built = os.path.join(work, "cthread.so")
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-pthread", "-o", built, source],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(built, target)
    return target


def _library() -> ctypes.PyDLL:
    # PyDLL: every call keeps the GIL, as a C extension that never releases it does.
    lib = ctypes.PyDLL(build())
    lib.cts_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.cts_save.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.cts_remove.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    return lib


_LIB: list[ctypes.PyDLL] = []


def _lib() -> ctypes.PyDLL:
    if not _LIB:
        _LIB.append(_library())
    return _LIB[0]


def _check(code: int, what: str, path: str) -> None:
    if code:
        raise OSError(code, f"{what}: {os.strerror(code)}", path)


class CThreadStore:
    """One file per key, every change made by the C library on its own I/O thread."""

    def __init__(self, path: str, mode: int) -> None:
        self.dir = os.path.abspath(path)
        self.mode = mode
        _check(_lib().cts_open(self.dir.encode(), mode), "cts_open", self.dir)

    def _name(self, topic_id: int, consumer_id: int) -> str:
        return f"{topic_id}-{consumer_id}{_SUFFIX}"

    def _read(self, path: str) -> int | None:
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            return None
        match = _CONTENT.fullmatch(content)
        if match is None or int(match[1]) >= 2**64:
            raise ValueError(f"corrupt offset file {path!r}: {content[:24]!r}")
        return int(match[1])

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        check_key(topic_id, consumer_id)
        return self._read(os.path.join(self.dir, self._name(topic_id, consumer_id)))

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        check_key(topic_id, consumer_id)
        check_offset(offset)
        name = self._name(topic_id, consumer_id)
        code = _lib().cts_save(self.dir.encode(), name.encode(), b"%d\n" % offset, self.mode)
        _check(code, "cts_save", os.path.join(self.dir, name))

    def delete(self, topic_id: int, consumer_id: int) -> None:
        check_key(topic_id, consumer_id)
        name = self._name(topic_id, consumer_id)
        _check(_lib().cts_remove(self.dir.encode(), name.encode(), self.mode), "cts_remove", name)

    def list_all(self) -> dict[Key, int]:
        found: dict[Key, int] = {}
        for entry in sorted(os.listdir(self.dir)):
            match = _NAME.fullmatch(entry)
            if match is not None:
                value = self._read(os.path.join(self.dir, entry))
                if value is not None:
                    found[int(match[1]), int(match[2])] = value
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> CThreadStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def correct(path: str) -> CThreadStore:
    """Correct: temp file, fsync, rename, directory fsync, all on the library's I/O thread."""
    return CThreadStore(path, CORRECT)


def in_place(path: str) -> CThreadStore:
    """D1 (and D3): the save truncates and rewrites the key's file in place."""
    return CThreadStore(path, IN_PLACE)


def ignores_fsync_errors(path: str) -> CThreadStore:
    """F2: a failed fsync is ignored and the save reports success."""
    return CThreadStore(path, IGNORES_FSYNC_ERRORS)
