# ruff: noqa: E501 - C source: its macro lines are long and not Python's business
"""The C source of the syscall-level shim (``LD_PRELOAD``), compiled on the user's machine.

Kept as a string so it ships inside the package without packaging changes (``_shim.py`` builds it).

The shim wraps the libc entry points a store's C code reaches the file system through, forwards
each to the next definition (``dlsym(RTLD_NEXT)``), and is passive until ``lo_begin`` arms it.
Armed, a call on a path under the armed root (resolved from the descriptor through
``/proc/self/fd``) is reported to a callback twice: before it runs (the callback may return an
errno to fail it instead) and after. The callback is Python (ctypes), so the numbering, the fault
plan, the records and the crash stop all stay in the interposer's Python code: one set of judges.
A thread-local flag keeps the callback's own I/O (reading file contents, writing to the parent's
pipe) from being reported; calls outside the root are forwarded untouched, which keeps Python's
own calls between the worker's markers (its pipe writes) out of the numbering.
"""

from __future__ import annotations

from typing import Final

__all__ = ["KINDS", "SOURCE"]

#: The ``kind`` numbers the shim reports, as trace kinds (``_trace.OpKind``).
KINDS: Final = ("open", "write", "truncate", "fsync", "fdatasync", "close", "rename", "unlink",
                "rmdir", "mkdir")  # fmt: skip
#: The ``kind`` of a report that is no operation: a shared writable mapping of a file was made
#: (its writes reach the file with no call the shim could see; the power-loss model must know).
MAPPED: Final = len(KINDS)

SOURCE: Final = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { K_OPEN, K_WRITE, K_TRUNCATE, K_FSYNC, K_FDATASYNC, K_CLOSE, K_RENAME, K_UNLINK, K_RMDIR, K_MKDIR, K_MAPPED };

struct lo_op {
    int index, kind, phase, fd, flags, err, is_dir, pad;
    long long offset, size;
    const char *call;
    char path[PATH_MAX];
    char target[PATH_MAX];
};
typedef int (*lo_cb)(struct lo_op *);

static atomic_int armed;
static lo_cb callback;
static char root[PATH_MAX], alias[PATH_MAX];
static size_t root_len, alias_len;
static __thread int inside;

int lo_begin(const char *real_root, const char *given_root, lo_cb cb) {
    snprintf(root, sizeof root, "%s", real_root);
    snprintf(alias, sizeof alias, "%s", given_root);
    root_len = strlen(root);
    alias_len = strlen(alias);
    callback = cb;
    atomic_store(&armed, 1);
    return 0;
}

void lo_end(void) { atomic_store(&armed, 0); }

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static int prefixed(const char *p, const char *r, size_t n) {
    return n && strncmp(p, r, n) == 0 && (p[n] == 0 || p[n] == '/');
}

static int under(const char *p) { return prefixed(p, root, root_len) || prefixed(p, alias, alias_len); }

static int fd_path(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n < 0) return -1;
    out[n] = 0;
    return 0;
}

static int abs_path(int dirfd, const char *p, char *out) {
    char base[PATH_MAX];
    if (!p) return -1;
    if (p[0] == '/') { snprintf(out, PATH_MAX, "%s", p); return 0; }
    if (dirfd == AT_FDCWD) { if (!getcwd(base, sizeof base)) return -1; }
    else if (fd_path(dirfd, base)) return -1;
    snprintf(out, PATH_MAX, "%s/%s", base, p);
    return 0;
}

static int active(void) { return atomic_load_explicit(&armed, memory_order_relaxed) && !inside; }

static void start(struct lo_op *op, int kind, const char *call) {
    op->index = -1; op->kind = kind; op->phase = 0; op->fd = -1; op->flags = 0; op->err = 0;
    op->is_dir = 0; op->offset = -1; op->size = -1; op->call = call; op->target[0] = 0;
}

/* Prepare a call on descriptor fd: 1 if it is under the root (to be reported), else 0. */
static int on_fd(struct lo_op *op, int kind, const char *call, int fd) {
    struct stat st;
    if (!active()) return 0;
    start(op, kind, call);
    op->fd = fd;
    if (fd_path(fd, op->path) || !under(op->path)) return 0;
    op->is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    return 1;
}

static int on_path(struct lo_op *op, int kind, const char *call, int dirfd, const char *p) {
    if (!active()) return 0;
    start(op, kind, call);
    return abs_path(dirfd, p, op->path) == 0 && under(op->path);
}

static int report(struct lo_op *op, int phase, int err) {
    int saved = errno, answer;
    op->phase = phase;
    op->err = err;
    inside = 1;
    answer = callback ? callback(op) : 0;
    inside = 0;
    errno = saved;
    return answer;
}

/* After the call: report, and hand the result back with errno as the call left it. */
static long long done(struct lo_op *op, long long result) {
    int err = result < 0 ? errno : 0;
    report(op, 1, err);
    errno = err;
    return result;
}

static long long failed(struct lo_op *op, int err) {
    report(op, 1, err);
    errno = err;
    return -1;
}

#define AROUND(op, call_expr) do { \
        int inject_ = report(op, 0, 0); \
        if (inject_) return failed(op, inject_); \
        return done(op, (long long)(call_expr)); \
    } while (0)

static int opened(struct lo_op *op, int fd) {
    struct stat st;
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) { op->fd = fd; op->is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode); }
    report(op, 1, err);
    errno = err;
    return fd;
}

#define OPEN_BODY(name, dirfd, path, flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, int); va_end(ap); } \
    struct lo_op op; \
    if (!on_path(&op, K_OPEN, #name, dirfd, path)) return CALL; \
    op.flags = flags; \
    int inject = report(&op, 0, 0); \
    if (inject) return (int)failed(&op, inject); \
    return opened(&op, CALL)

int open(const char *path, int flags, ...) {
    REAL(int, open, const char *, int, ...);
#define CALL real_open(path, flags, mode)
    OPEN_BODY(open, AT_FDCWD, path, flags);
#undef CALL
}
int open64(const char *path, int flags, ...) {
    REAL(int, open64, const char *, int, ...);
#define CALL real_open64(path, flags, mode)
    OPEN_BODY(open64, AT_FDCWD, path, flags);
#undef CALL
}
int openat(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat, int, const char *, int, ...);
#define CALL real_openat(dirfd, path, flags, mode)
    OPEN_BODY(openat, dirfd, path, flags);
#undef CALL
}
int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat64, int, const char *, int, ...);
#define CALL real_openat64(dirfd, path, flags, mode)
    OPEN_BODY(openat64, dirfd, path, flags);
#undef CALL
}
int creat(const char *path, mode_t mode) {
    REAL(int, creat, const char *, mode_t);
    struct lo_op op;
    if (!on_path(&op, K_OPEN, "creat", AT_FDCWD, path)) return real_creat(path, mode);
    op.flags = O_CREAT | O_WRONLY | O_TRUNC;
    int inject = report(&op, 0, 0);
    if (inject) return (int)failed(&op, inject);
    return opened(&op, real_creat(path, mode));
}

#define FD_CALL(ret, name, kind, fd, sizev, offv, params, args) \
    ret name params { \
        REAL(ret, name, LO_SIG_##name); \
        struct lo_op op; \
        if (!on_fd(&op, kind, #name, fd)) return real_##name args; \
        op.size = (long long)(sizev); op.offset = (long long)(offv); \
        AROUND(&op, real_##name args); \
    }

#define LO_SIG_write int, const void *, size_t
FD_CALL(ssize_t, write, K_WRITE, fd, n, -1, (int fd, const void *b, size_t n), (fd, b, n))
#define LO_SIG_pwrite int, const void *, size_t, off_t
FD_CALL(ssize_t, pwrite, K_WRITE, fd, n, o, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
#define LO_SIG_pwrite64 int, const void *, size_t, off64_t
FD_CALL(ssize_t, pwrite64, K_WRITE, fd, n, o, (int fd, const void *b, size_t n, off64_t o), (fd, b, n, o))

static long long iov_size(const struct iovec *v, int n) {
    long long s = 0;
    for (int i = 0; i < n; i++) s += (long long)v[i].iov_len;
    return s;
}
#define LO_SIG_writev int, const struct iovec *, int
FD_CALL(ssize_t, writev, K_WRITE, fd, iov_size(v, n), -1, (int fd, const struct iovec *v, int n), (fd, v, n))
#define LO_SIG_pwritev int, const struct iovec *, int, off_t
FD_CALL(ssize_t, pwritev, K_WRITE, fd, iov_size(v, n), o, (int fd, const struct iovec *v, int n, off_t o), (fd, v, n, o))
#define LO_SIG_pwritev64 int, const struct iovec *, int, off64_t
FD_CALL(ssize_t, pwritev64, K_WRITE, fd, iov_size(v, n), o, (int fd, const struct iovec *v, int n, off64_t o), (fd, v, n, o))
#define LO_SIG_fsync int
FD_CALL(int, fsync, K_FSYNC, fd, -1, -1, (int fd), (fd))
#define LO_SIG_fdatasync int
FD_CALL(int, fdatasync, K_FDATASYNC, fd, -1, -1, (int fd), (fd))
#define LO_SIG_sync_file_range int, off64_t, off64_t, unsigned int
FD_CALL(int, sync_file_range, K_FDATASYNC, fd, n, o, (int fd, off64_t o, off64_t n, unsigned int f), (fd, o, n, f))
#define LO_SIG_ftruncate int, off_t
FD_CALL(int, ftruncate, K_TRUNCATE, fd, n, -1, (int fd, off_t n), (fd, n))
#define LO_SIG_ftruncate64 int, off64_t
FD_CALL(int, ftruncate64, K_TRUNCATE, fd, n, -1, (int fd, off64_t n), (fd, n))
#define LO_SIG_fallocate int, int, off_t, off_t
FD_CALL(int, fallocate, K_TRUNCATE, fd, n, o, (int fd, int m, off_t o, off_t n), (fd, m, o, n))
#define LO_SIG_fallocate64 int, int, off64_t, off64_t
FD_CALL(int, fallocate64, K_TRUNCATE, fd, n, o, (int fd, int m, off64_t o, off64_t n), (fd, m, o, n))
#define LO_SIG_posix_fallocate int, off_t, off_t
FD_CALL(int, posix_fallocate, K_TRUNCATE, fd, n, o, (int fd, off_t o, off_t n), (fd, o, n))
#define LO_SIG_posix_fallocate64 int, off64_t, off64_t
FD_CALL(int, posix_fallocate64, K_TRUNCATE, fd, n, o, (int fd, off64_t o, off64_t n), (fd, o, n))

int close(int fd) {
    REAL(int, close, int);
    struct lo_op op;
    if (!on_fd(&op, K_CLOSE, "close", fd)) return real_close(fd);
    int inject = report(&op, 0, 0);
    if (inject) { real_close(fd); return (int)failed(&op, inject); } /* Linux frees it anyway */
    return (int)done(&op, real_close(fd));
}

/* The file an address of this process maps, from /proc/self/maps (msync names no descriptor). */
static int mapped_path(const void *addr, char *out) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    unsigned long a = (unsigned long)addr, lo, hi;
    int found = -1;
    if (!maps) return -1;
    while (found && fgets(line, sizeof line, maps)) {
        char *slash = strchr(line, '/');
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= a && a < hi && slash) {
            slash[strcspn(slash, "\n")] = 0;
            snprintf(out, PATH_MAX, "%s", slash);
            found = 0;
        }
    }
    fclose(maps);
    return found;
}

int msync(void *addr, size_t n, int flags) {
    REAL(int, msync, void *, size_t, int);
    struct lo_op op;
    if (!active()) return real_msync(addr, n, flags);
    start(&op, K_FSYNC, "msync");
    inside = 1; /* fopen below must not report itself */
    int mine = mapped_path(addr, op.path) == 0 && under(op.path);
    inside = 0;
    if (!mine) return real_msync(addr, n, flags);
    op.size = (long long)n; op.flags = flags;
    AROUND(&op, real_msync(addr, n, flags));
}

#define RENAME_BODY(name, od, o, nd, nw, args) \
    struct lo_op op; \
    if (!on_path(&op, K_RENAME, #name, od, o)) return real_##name args; \
    if (abs_path(nd, nw, op.target)) op.target[0] = 0; \
    AROUND(&op, real_##name args)

int rename(const char *o, const char *n) {
    REAL(int, rename, const char *, const char *);
    RENAME_BODY(rename, AT_FDCWD, o, AT_FDCWD, n, (o, n));
}
int renameat(int od, const char *o, int nd, const char *n) {
    REAL(int, renameat, int, const char *, int, const char *);
    RENAME_BODY(renameat, od, o, nd, n, (od, o, nd, n));
}
int renameat2(int od, const char *o, int nd, const char *n, unsigned int f) {
    REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
    RENAME_BODY(renameat2, od, o, nd, n, (od, o, nd, n, f));
}

int unlink(const char *p) {
    REAL(int, unlink, const char *);
    struct lo_op op;
    if (!on_path(&op, K_UNLINK, "unlink", AT_FDCWD, p)) return real_unlink(p);
    AROUND(&op, real_unlink(p));
}
int unlinkat(int d, const char *p, int f) {
    REAL(int, unlinkat, int, const char *, int);
    struct lo_op op;
    if (!on_path(&op, (f & AT_REMOVEDIR) ? K_RMDIR : K_UNLINK, "unlinkat", d, p))
        return real_unlinkat(d, p, f);
    AROUND(&op, real_unlinkat(d, p, f));
}

int rmdir(const char *p) {
    REAL(int, rmdir, const char *);
    struct lo_op op;
    if (!on_path(&op, K_RMDIR, "rmdir", AT_FDCWD, p)) return real_rmdir(p);
    op.is_dir = 1;
    AROUND(&op, real_rmdir(p));
}

int mkdir(const char *p, mode_t m) {
    REAL(int, mkdir, const char *, mode_t);
    struct lo_op op;
    if (!on_path(&op, K_MKDIR, "mkdir", AT_FDCWD, p)) return real_mkdir(p, m);
    op.is_dir = 1;
    AROUND(&op, real_mkdir(p, m));
}
int mkdirat(int d, const char *p, mode_t m) {
    REAL(int, mkdirat, int, const char *, mode_t);
    struct lo_op op;
    if (!on_path(&op, K_MKDIR, "mkdirat", d, p)) return real_mkdirat(d, p, m);
    op.is_dir = 1;
    AROUND(&op, real_mkdirat(d, p, m));
}

/* A shared writable mapping is reported once it exists (never failed, never numbered): every
   store of the program through it changes the file with no call to see. Read-only mappings
   (LMDB's default) and private ones change no file. */
#define MMAP_BODY(name, off_t_) \
    REAL(void *, name, void *, size_t, int, int, int, off_t_); \
    void *result = real_##name(addr, n, prot, flags, fd, off); \
    struct lo_op op; \
    if (result == MAP_FAILED || fd < 0 || !(prot & PROT_WRITE) || !(flags & MAP_SHARED)) return result; \
    if (!on_fd(&op, K_MAPPED, #name, fd)) return result; \
    op.size = (long long)n; op.offset = (long long)off; op.flags = prot; \
    report(&op, 1, 0); \
    return result

void *mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off) { MMAP_BODY(mmap, off_t); }
void *mmap64(void *addr, size_t n, int prot, int flags, int fd, off64_t off) { MMAP_BODY(mmap64, off64_t); }
"""
