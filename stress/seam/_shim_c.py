# ruff: noqa: E501 - C source: its macro lines are long and not Python's business
"""The C source of the syscall-level shim (``LD_PRELOAD``), compiled on the user's machine.

Kept as a string so it ships inside the package without packaging changes (``_shim.py`` builds it).

The shim wraps the libc entry points a store's C code reaches the file system through, forwards
each to the next definition (``dlsym(RTLD_NEXT)``), and is passive until ``lo_begin`` arms it.
Armed, a call on a path under the armed root (resolved from the descriptor through
``/proc/self/fd``) is numbered, decided and recorded **in C, on the thread that made it**: no
Python callback, so a store whose own threads make the calls while its caller holds the GIL (a C
library that joins its I/O thread inside a call that never releases the GIL) cannot deadlock
against the tracer. Per call:

- before it runs: under one mutex, the pending writes through shared writable mappings are
  diffed (and recorded), the call gets the next index, and the fault plan (``lo_plan``) decides
  whether it fails instead of running (the plan's count of fired faults lives here too);
- after it: the record (kind, libc name, descriptor, flags, error, size and offset, the path(s),
  and the file's whole content when asked) is appended to a growing buffer that Python takes
  (``lo_take``) between store calls and at the end, outside the call;
- at the crash point ``lo_stop`` named (an index, before or after), the thread writes the
  message Python prepared (a framed pickle) to the parent's descriptor and waits to be killed.

A store that runs as a program of its own (a driver, ``conformance/_driver_proc.py``) is started
with the shim and a *channel*: two descriptors named in ``LANCE_OFFSETS_SHIM_CHANNEL``, a file
whose shared mapping holds the block's state (armed root, index counter, fault plan, crash point)
and a file the records are appended to (``lo_chan_attach``). The worker attaches to the same
channel, so its Python code arms, plans and stops as for any store, and reads the driver's
records as its own.

The shim's own I/O (content reads, the parent message) goes through raw system calls, never
through its wrappers. A thread-local flag (``lo_hold``) keeps a Python tracer's own I/O out when
the shim records beside it (the witness of the same run, ``_record.py``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["KINDS", "LAUNCHER", "MAPPED", "SOURCE"]

#: The ``kind`` numbers the shim records, as trace kinds (``_trace.OpKind``).
KINDS: Final = ("open", "write", "truncate", "fsync", "fdatasync", "close", "rename", "unlink",
                "rmdir", "mkdir", "link", "unknown", "mark")  # fmt: skip
#: The ``kind`` of a record that is no operation: a shared writable mapping of a file was made.
MAPPED: Final = len(KINDS)

SOURCE: Final = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif

enum { K_OPEN, K_WRITE, K_TRUNCATE, K_FSYNC, K_FDATASYNC, K_CLOSE, K_RENAME, K_UNLINK, K_RMDIR,
       K_MKDIR, K_LINK, K_UNKNOWN, K_MARK, K_MAPPED };

/* One call in flight, on the calling thread's stack. */
struct lo_op {
    int index, kind, fd, flags, is_dir;
    long long offset, size;
    const char *call;
    char note[160];
    char path[PATH_MAX];
    char target[PATH_MAX];
};

/* One record as Python reads it (``_shim._RECORD``): this header, then the call's name, the
   note, the path, the target and the content (content_len < 0: none). */
struct lo_rec {
    int32_t index, kind, fd, flags, err, is_dir;
    int64_t offset, size, content_len;
    uint32_t call_len, note_len, path_len, target_len;
};

/* What a traced block decides with: shared by every process of one channel (a driver store's
   processes and the Python worker that owns them, ``lo_chan_attach``), else this process's own. */
struct lo_state {
    uint32_t magic;
    atomic_int armed, next_index, plan_fired;
    int want_content;
    /* The fault plan: the first calls with index >= at (of the kinds in the mask) fail with err. */
    int plan_on, plan_at, plan_err, plan_times, plan_any;
    unsigned plan_kinds;
    /* The crash point: at (stop_index, stop_phase) write stop_msg to stop_fd and wait. */
    int stop_index, stop_phase, stop_fd;
    uint32_t stop_len;
    uint32_t root_len, alias_len;
    char root[PATH_MAX], alias[PATH_MAX];
    /* Suffixes of files whose mappings are shared memory, not data (never diffed): "\n"-separated. */
    char unfollowed[512];
    char stop_msg[2048];
};
#define LO_MAGIC 0x4c4f4348u
static struct lo_state own_state = {.stop_index = -1, .stop_fd = -1};
static struct lo_state *S = &own_state;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Channel mode: records go to this file (O_APPEND, one write per record) instead of ``buf``;
   the owner's lo_take reads them from ``chan_read`` on. */
static int chan_records = -1;
static long long chan_read;
/* The records not yet taken by Python. */
static char *buf;
static size_t buf_len, buf_cap;
static int buf_lost;
static __thread int inside;
/* This thread holds ``lock`` (free() may munmap inside it: that munmap must not take it again). */
static __thread int holding;

static void take(void) { pthread_mutex_lock(&lock); holding = 1; }
static void give(void) { holding = 0; pthread_mutex_unlock(&lock); }

/* --- raw I/O: the shim's own calls never pass its wrappers ------------------------------- */

static int raw_open(const char *p, int flags) { return (int)syscall(SYS_openat, AT_FDCWD, p, flags, 0); }
static void raw_close(int fd) { syscall(SYS_close, fd); }

static void halt(void) {
    /* Tell the parent, then wait to be killed: the thread that made the call stays here. */
    const char *p = S->stop_msg;
    size_t left = S->stop_len;
    while (left) {
        long n = syscall(SYS_write, S->stop_fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(70); /* nobody to tell: the parent is gone */
        p += n;
        left -= (size_t)n;
    }
    for (;;) pause();
}

/* --- the record buffer (lock held) -------------------------------------------------------- */

static int reserve(size_t more) {
    if (buf_len + more <= buf_cap) return 0;
    size_t cap = buf_cap ? buf_cap : 65536;
    while (cap < buf_len + more) cap *= 2;
    char *grown = realloc(buf, cap);
    if (!grown) { buf_lost = 1; return -1; }
    buf = grown;
    buf_cap = cap;
    return 0;
}

static void put(const void *p, size_t n) { memcpy(buf + buf_len, p, n); buf_len += n; }

static void append(const struct lo_op *op, int err, const char *note, const unsigned char *content, long long clen) {
    struct lo_rec r;
    const char *call = op->call ? op->call : "";
    r.index = op->index; r.kind = op->kind; r.fd = op->fd; r.flags = op->flags; r.err = err;
    r.is_dir = op->is_dir; r.offset = op->offset; r.size = op->size;
    r.content_len = content ? clen : -1;
    r.call_len = (uint32_t)strlen(call);
    r.note_len = (uint32_t)strlen(note);
    r.path_len = (uint32_t)strlen(op->path);
    r.target_len = (uint32_t)strlen(op->target);
    size_t total = sizeof r + r.call_len + r.note_len + r.path_len + r.target_len + (content ? (size_t)clen : 0);
    size_t start_len = buf_len;
    if (reserve(total)) return;
    put(&r, sizeof r);
    put(call, r.call_len);
    put(note, r.note_len);
    put(op->path, r.path_len);
    put(op->target, r.target_len);
    if (content) put(content, (size_t)clen);
    if (chan_records >= 0) { /* one write per record: appends of several processes never interleave */
        const char *p = buf + start_len;
        size_t left = total;
        while (left) {
            long n = syscall(SYS_write, chan_records, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { buf_lost = 1; break; }
            p += n;
            left -= (size_t)n;
        }
        if (buf_lost) syscall(SYS_ftruncate, chan_records, 0); /* the owner's lo_take says so */
        buf_len = start_len;
    }
}

/* --- paths --------------------------------------------------------------------------------- */

static int prefixed(const char *p, const char *r, size_t n) {
    return n && strncmp(p, r, n) == 0 && (p[n] == 0 || p[n] == '/');
}

static int under(const char *p) { return p[0] && (prefixed(p, S->root, S->root_len) || prefixed(p, S->alias, S->alias_len)); }

/* O_TMPFILE descriptors a link named: their /proc link keeps the unnamed entry. */
#define MAX_NAMED 16
static struct { int fd; char path[PATH_MAX]; } named[MAX_NAMED];
static int nnamed;
static pthread_mutex_t named_lock = PTHREAD_MUTEX_INITIALIZER;

static void name_fd(int fd, const char *path) {
    pthread_mutex_lock(&named_lock);
    int i = 0;
    while (i < nnamed && named[i].fd != fd) i++;
    if (path && i == nnamed && nnamed < MAX_NAMED) nnamed++;
    if (path && i < nnamed) { named[i].fd = fd; snprintf(named[i].path, PATH_MAX, "%s", path); }
    else if (!path && i < nnamed) named[i] = named[--nnamed];
    pthread_mutex_unlock(&named_lock);
}

static int fd_name(int fd, char *out) {
    int found = 0;
    pthread_mutex_lock(&named_lock);
    for (int i = 0; i < nnamed && !found; i++)
        if (named[i].fd == fd) { snprintf(out, PATH_MAX, "%s", named[i].path); found = 1; }
    pthread_mutex_unlock(&named_lock);
    return found;
}

/* The path behind a descriptor. An unnamed O_TMPFILE file reads "<dir>/#<inode> (deleted)":
   it is named "<dir>/#tmpfile-<fd>" until a link gives it a name, then by that name. */
static int fd_path(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n < 0) return -1;
    out[n] = 0;
    static const char gone[] = " (deleted)";
    size_t g = sizeof gone - 1;
    char *slash = strrchr(out, '/');
    if ((size_t)n > g && strcmp(out + n - g, gone) == 0 && slash && slash[1] == '#') {
        size_t digits = strspn(slash + 2, "0123456789");
        if (digits && slash + 2 + digits == out + n - g && !fd_name(fd, out))
            snprintf(slash + 1, PATH_MAX - (size_t)(slash + 1 - out), "#tmpfile-%d", fd);
    }
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

/* "/proc/self/fd/N" (or /dev/fd/N): the descriptor N, else -1. */
static int proc_fd(const char *p) {
    const char *digits = NULL;
    if (strncmp(p, "/proc/self/fd/", 14) == 0) digits = p + 14;
    else if (strncmp(p, "/dev/fd/", 8) == 0) digits = p + 8;
    if (!digits || !*digits || digits[strspn(digits, "0123456789")]) return -1;
    return atoi(digits);
}

static int active(void) { return atomic_load_explicit(&S->armed, memory_order_acquire) && !inside; }

static void start(struct lo_op *op, int kind, const char *call) {
    op->index = -1; op->kind = kind; op->fd = -1; op->flags = 0; op->is_dir = 0;
    op->offset = -1; op->size = -1; op->call = call; op->note[0] = 0; op->path[0] = 0; op->target[0] = 0;
}

static int is_dir_fd(int fd) { struct stat st; return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode); }

/* Prepare a call on descriptor fd: 1 if it is under the root (to be recorded), else 0. */
static int on_fd(struct lo_op *op, int kind, const char *call, int fd) {
    if (!active()) return 0;
    start(op, kind, call);
    op->fd = fd;
    if (fd_path(fd, op->path) || !under(op->path)) return 0;
    op->is_dir = is_dir_fd(fd);
    return 1;
}

static int on_path(struct lo_op *op, int kind, const char *call, int dirfd, const char *p) {
    if (!active()) return 0;
    start(op, kind, call);
    if (abs_path(dirfd, p, op->path)) return 0;
    int fd = proc_fd(op->path); /* reopening a descriptor's file through /proc: that file */
    if (fd >= 0 && fd_path(fd, op->path)) return 0;
    return under(op->path);
}

/* --- contents -------------------------------------------------------------------------------- */

static unsigned char *read_fd(int fd, long long *len) {
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) return NULL;
    unsigned char *data = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!data) return NULL;
    long long got = 0;
    while (got < st.st_size) {
        ssize_t n = pread(fd, data + got, (size_t)(st.st_size - got), got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { free(data); return NULL; }
        if (n == 0) break;
        got += n;
    }
    *len = got;
    return data;
}

/* The whole content of the regular file behind fd (reopened through /proc/self/fd when fd is
   write-only: the same inode, named or not), or of path when fd < 0. NULL: none (a directory,
   gone, unreadable). */
static unsigned char *content_of(int fd, const char *path, long long *len) {
    int saved = errno;
    unsigned char *data = fd >= 0 ? read_fd(fd, len) : NULL;
    if (!data) {
        char again[64];
        if (fd >= 0) snprintf(again, sizeof again, "/proc/self/fd/%d", fd);
        int other = raw_open(fd >= 0 ? again : path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (other >= 0) {
            data = read_fd(other, len);
            raw_close(other);
        }
    }
    errno = saved;
    return data;
}

static int content_kind(int kind) {
    return kind == K_OPEN || kind == K_WRITE || kind == K_TRUNCATE || kind == K_FSYNC ||
           kind == K_FDATASYNC || kind == K_CLOSE || kind == K_LINK;
}

/* --- shared writable mappings: diffed at every recorded call ------------------------------- */

#define MAX_MAPS 64
#define PAGE 4096
struct lo_map { unsigned char *addr; size_t len; long long off; int fd; unsigned char *snap; };
static struct lo_map maps[MAX_MAPS];
static int nmaps;

static size_t valid_len(const struct lo_map *m) {
    struct stat st;
    if (fstat(m->fd, &st) || st.st_size <= m->off) return 0;
    size_t left = (size_t)(st.st_size - m->off);
    return left < m->len ? left : m->len;
}

static int shared_memory(const char *path) {
    size_t n = strlen(path);
    for (const char *s = S->unfollowed; *s;) {
        size_t k = strcspn(s, "\n");
        if (k && k <= n && strncmp(path + n - k, s, k) == 0) return 1;
        s += k + (s[k] == '\n');
    }
    return 0;
}

/* Lock held. Start following a mapping of the file open as fd (the shim keeps its own copy). */
static void track(void *addr, size_t len, long long off, int fd) {
    char path[PATH_MAX];
    if (nmaps == MAX_MAPS || fd_path(fd, path) || shared_memory(path)) return;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 900);
    if (own < 0) own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return;
    struct lo_map *m = &maps[nmaps];
    m->addr = addr; m->len = len; m->off = off; m->fd = own;
    m->snap = calloc(len ? len : 1, 1);
    if (!m->snap) { raw_close(own); return; }
    memcpy(m->snap, addr, valid_len(m));
    nmaps++;
}

static void untrack(int i) {
    raw_close(maps[i].fd);
    free(maps[i].snap);
    maps[i] = maps[--nmaps];
}

/* Lock held. Record the writes made through map i since its last record (a "write" whose call
   is "mmap", with the file's whole content and the pages changed); 1 if that is the crash point. */
static int diff_map(int i) {
    struct lo_map *m = &maps[i];
    size_t valid = valid_len(m), pages = 0;
    if (!valid || memcmp(m->addr, m->snap, valid) == 0) return 0;
    struct lo_op op;
    start(&op, K_WRITE, "mmap");
    int used = snprintf(op.note, sizeof op.note, "pages");
    for (size_t at = 0; at < valid; at += PAGE) {
        size_t n = valid - at < PAGE ? valid - at : PAGE;
        if (memcmp(m->addr + at, m->snap + at, n) == 0) continue;
        if (pages++ < 8 && used < (int)sizeof op.note - 24)
            used += snprintf(op.note + used, sizeof op.note - (size_t)used, " %zu", (size_t)(m->off / PAGE) + at / PAGE);
    }
    if (pages > 8) snprintf(op.note + used, sizeof op.note - (size_t)used, " ... (%zu pages)", pages);
    memcpy(m->snap, m->addr, valid);
    if (fd_path(m->fd, op.path)) return 0;
    op.index = atomic_fetch_add(&S->next_index, 1);
    long long clen = 0;
    unsigned char *content = S->want_content ? content_of(m->fd, op.path, &clen) : NULL;
    append(&op, 0, op.note, content, clen);
    free(content);
    return S->stop_index == op.index;
}

static int diff_maps(void) {
    int stop = 0;
    for (int i = 0; i < nmaps; i++) stop |= diff_map(i);
    return stop;
}

/* Shared writable mappings of files under the root made before arming (a store opened first). */
static void track_existing(void) {
    FILE *listing = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128], perms[8];
    unsigned long lo, hi;
    unsigned long long off;
    if (!listing) return;
    while (fgets(line, sizeof line, listing)) {
        char *slash = strchr(line, '/');
        if (!slash || sscanf(line, "%lx-%lx %7s %llx", &lo, &hi, perms, &off) != 4) continue;
        slash[strcspn(slash, "\n")] = 0;
        if (perms[1] != 'w' || perms[3] != 's' || !under(slash)) continue;
        int fd = raw_open(slash, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        track((void *)lo, hi - lo, (long long)off, fd);
        raw_close(fd);
    }
    fclose(listing);
}

/* --- numbering, decisions, records --------------------------------------------------------- */

/* Before the call: its index, and the errno the fault plan fails it with (0: run it). */
static int begin(struct lo_op *op) {
    int inject = 0, stop, saved = errno;
    take();
    stop = diff_maps();
    op->index = atomic_fetch_add(&S->next_index, 1);
    if (S->plan_on && op->index >= S->plan_at && (S->plan_any || ((S->plan_kinds >> op->kind) & 1u)) &&
        (S->plan_times < 0 || atomic_fetch_add(&S->plan_fired, 1) < S->plan_times))
        inject = S->plan_err;
    stop |= S->stop_index == op->index && S->stop_phase == 0;
    give();
    if (stop) halt();
    errno = saved;
    return inject;
}

/* After the call (or its injected failure): the record. */
static void finish(struct lo_op *op, int err, const unsigned char *content, long long clen) {
    take();
    append(op, err, op->note, content, clen);
    int stop = S->stop_index == op->index && S->stop_phase == 1;
    give();
    if (stop) halt();
}

/* After a call that ended with err (0: it worked): read the content it left (when wanted), record.
   The caller restores errno. */
static void after(struct lo_op *op, int err) {
    long long clen = 0;
    unsigned char *content = NULL;
    if (S->want_content && !err && !op->is_dir && content_kind(op->kind)) {
        content = content_of(op->fd, op->path, &clen);
        if (!content && op->kind == K_OPEN && (op->flags & O_TMPFILE) == O_TMPFILE) content = calloc(1, 1);
    }
    finish(op, err, content, clen);
    free(content);
}

#define AROUND(op, call_expr) do { \
        int inject_ = begin(op); \
        if (inject_) { finish(op, inject_, NULL, 0); errno = inject_; return -1; } \
        long long r_ = (long long)(call_expr); \
        int e_ = errno; \
        after(op, r_ < 0 ? e_ : 0); \
        errno = e_; \
        return r_; \
    } while (0)

/* A child the store forks (without exec) is not the worker: it records nothing, stops nowhere,
   fails nothing. Its copy of the mutex may be held by a thread that does not exist in it. */
static void forked_child(void) {
    S = &own_state; /* a channel is the worker's and its driver's, never a fork's */
    chan_records = -1;
    atomic_store(&own_state.armed, 0);
    pthread_mutex_init(&lock, NULL);
    pthread_mutex_init(&named_lock, NULL);
    holding = 0;
    nmaps = 0; /* the copies stay allocated: the child never diffs them */
}

/* Use the channel whose state is the file open as ``control`` and whose records go to the file
   open as ``records``: a driver store's process and the worker that started it (which passed it
   both descriptors) number, decide and record together. ``create``: the owner, who sizes and
   clears it. The descriptors stay open (the records one in append mode). 0 on success; -1: not
   usable (nothing changed), or this process is armed on its own. */
int lo_chan_attach(int control, int records, int create) {
    if (atomic_load(&own_state.armed) || S != &own_state) return -1;
    if (create && syscall(SYS_ftruncate, control, (long)sizeof(struct lo_state)) != 0) return -1;
    struct stat st;
    if (fstat(control, &st) || (size_t)st.st_size < sizeof(struct lo_state)) return -1;
    struct lo_state *shared = (struct lo_state *)syscall(SYS_mmap, NULL, sizeof(struct lo_state), PROT_READ | PROT_WRITE, MAP_SHARED, control, 0);
    if (shared == (struct lo_state *)-1) return -1;
    int fl = fcntl(records, F_GETFL);
    if (fl < 0 || fcntl(records, F_SETFL, fl | O_APPEND) != 0) { syscall(SYS_munmap, shared, sizeof(struct lo_state)); return -1; }
    if (create) {
        memset(shared, 0, sizeof *shared);
        shared->stop_index = -1;
        shared->stop_fd = -1;
        shared->magic = LO_MAGIC;
        syscall(SYS_ftruncate, records, 0);
    } else if (shared->magic != LO_MAGIC) {
        syscall(SYS_munmap, shared, sizeof(struct lo_state));
        return -1;
    }
    take();
    chan_records = records;
    chan_read = 0;
    S = shared;
    give();
    return 0;
}

__attribute__((constructor)) static void lo_init(void) {
    pthread_atfork(NULL, NULL, forked_child);
    /* A driver store's process: "CONTROL,RECORDS", the descriptors of the channel its worker
       made and passed on (docs/drivers.md). They stay inheritable: the launcher that starts a
       driver execs it, and a program the store itself execs records into the channel too. */
    const char *channel = getenv("LANCE_OFFSETS_SHIM_CHANNEL");
    int control, records;
    if (channel && sscanf(channel, "%d,%d", &control, &records) == 2) lo_chan_attach(control, records, 0);
}

/* --- what Python calls ---------------------------------------------------------------------- */

int lo_begin(const char *real_root, const char *given_root, int contents, const char *shared) {
    take();
    snprintf(S->unfollowed, sizeof S->unfollowed, "%s", shared);
    snprintf(S->root, sizeof S->root, "%s", real_root);
    snprintf(S->alias, sizeof S->alias, "%s", given_root);
    S->root_len = (uint32_t)strlen(S->root);
    S->alias_len = (uint32_t)strlen(S->alias);
    S->want_content = contents;
    atomic_store(&S->next_index, 0);
    S->plan_on = 0;
    S->stop_index = -1;
    free(buf);
    buf = NULL;
    buf_len = buf_cap = 0;
    buf_lost = 0;
    if (chan_records >= 0) { syscall(SYS_ftruncate, chan_records, 0); chan_read = 0; }
    while (nmaps) untrack(nmaps - 1);
    inside = 1;
    track_existing();
    inside = 0;
    atomic_store(&S->armed, 1);
    give();
    return 0;
}

void lo_plan(int at, int err, int times, unsigned kinds, int any) {
    take();
    S->plan_at = at; S->plan_err = err; S->plan_times = times; S->plan_kinds = kinds; S->plan_any = any;
    atomic_store(&S->plan_fired, 0);
    S->plan_on = 1;
    give();
}

int lo_stop(int index, int phase, int fd, const char *msg, size_t len) {
    if (len > sizeof S->stop_msg) return -1;
    take();
    memcpy(S->stop_msg, msg, len);
    S->stop_len = (uint32_t)len; S->stop_fd = fd; S->stop_phase = phase; S->stop_index = index;
    give();
    return 0;
}

/* A harness note, numbered like a call (``mark`` records). */
int lo_mark(const char *note) {
    struct lo_op op;
    start(&op, K_MARK, "");
    snprintf(op.path, sizeof op.path, "%s", S->root);
    take();
    int stop = diff_maps();
    op.index = atomic_fetch_add(&S->next_index, 1);
    append(&op, 0, note, NULL, 0);
    give();
    if (stop) halt();
    return op.index;
}

void lo_end(void) {
    take();
    if (atomic_load(&S->armed)) {
        S->stop_index = -1; /* the block is over: nothing stops any more */
        diff_maps();
    }
    while (nmaps) untrack(nmaps - 1);
    S->plan_on = 0;
    atomic_store(&S->armed, 0);
    give();
}

/* Channel mode: the whole records appended since the last take (a record still being written
   by another process stays for the next one); -1: records were lost. */
static long long chan_take(char **out) {
    *out = NULL;
    struct stat st;
    if (fstat(chan_records, &st)) return -1;
    if (st.st_size < chan_read) return -1; /* a process cleared the file: it lost a record */
    size_t avail = (size_t)(st.st_size - chan_read);
    char *data = malloc(avail ? avail : 1);
    if (!data) return -1;
    size_t got = 0;
    while (got < avail) {
        long n = syscall(SYS_pread64, chan_records, data + got, avail - got, (long)(chan_read + (long long)got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    size_t whole = 0;
    while (whole + sizeof(struct lo_rec) <= got) {
        struct lo_rec r;
        memcpy(&r, data + whole, sizeof r);
        size_t size = sizeof r + r.call_len + r.note_len + r.path_len + r.target_len + (r.content_len > 0 ? (size_t)r.content_len : 0);
        if (whole + size > got) break;
        whole += size;
    }
    chan_read += (long long)whole;
    *out = data;
    return (long long)whole;
}

/* Hand the records made so far to the caller (who frees them with lo_free); -1: some were lost
   (out of memory). */
long long lo_take(char **out) {
    if (chan_records >= 0) return chan_take(out);
    take();
    long long n = buf_lost ? -1 : (long long)buf_len;
    *out = buf;
    buf = NULL;
    buf_len = buf_cap = 0;
    give();
    return n;
}

void lo_free(char *p) { free(p); }

/* Keep this thread's calls out of the records (a Python tracer's own I/O); the old setting. */
int lo_hold(int on) { int was = inside; inside = on; return was; }

/* --- the wrappers ----------------------------------------------------------------------------- */

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static int opened(struct lo_op *op, int fd) {
    int e = errno;
    if (fd >= 0) { op->fd = fd; op->is_dir = is_dir_fd(fd); name_fd(fd, NULL); }
    after(op, fd < 0 ? e : 0);
    errno = e;
    return fd;
}

#define OPEN_BODY(name, dirfd, path, flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, int); va_end(ap); } \
    struct lo_op op; \
    if (!on_path(&op, K_OPEN, #name, dirfd, path)) return CALL; \
    op.flags = flags; \
    int inject = begin(&op); \
    if (inject) { finish(&op, inject, NULL, 0); errno = inject; return -1; } \
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
    int inject = begin(&op);
    if (inject) { finish(&op, inject, NULL, 0); errno = inject; return -1; }
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
#define LO_SIG_pwritev2 int, const struct iovec *, int, off_t, int
FD_CALL(ssize_t, pwritev2, K_WRITE, fd, iov_size(v, n), o, (int fd, const struct iovec *v, int n, off_t o, int f), (fd, v, n, o, f))
#define LO_SIG_fsync int
FD_CALL(int, fsync, K_FSYNC, fd, -1, -1, (int fd), (fd))
#define LO_SIG_fdatasync int
FD_CALL(int, fdatasync, K_FDATASYNC, fd, -1, -1, (int fd), (fd))
/* sync_file_range is not wrapped: it starts or waits for writeback and makes nothing durable
   (no metadata, no disk cache flush), so for the model nothing happened (strace leaves it out too);
   a store that relies on it alone is judged as one that never synced. */
#define LO_SIG_ftruncate int, off_t
FD_CALL(int, ftruncate, K_TRUNCATE, fd, n, -1, (int fd, off_t n), (fd, n))
#define LO_SIG_ftruncate64 int, off64_t
FD_CALL(int, ftruncate64, K_TRUNCATE, fd, n, -1, (int fd, off64_t n), (fd, n))

/* fallocate: "truncate" when it can only change the size (mode 0, KEEP_SIZE), else "write"
   (zero range, punch hole, collapse or insert range change the bytes). */
#define FALLOCATE(name, off_t_) \
    int name(int fd, int m, off_t_ o, off_t_ n) { \
        REAL(int, name, int, int, off_t_, off_t_); \
        struct lo_op op; \
        int kind = (m & ~FALLOC_FL_KEEP_SIZE) ? K_WRITE : K_TRUNCATE; \
        if (!on_fd(&op, kind, #name, fd)) return real_##name(fd, m, o, n); \
        op.size = (long long)n; op.offset = (long long)o; op.flags = m; \
        if (m) snprintf(op.note, sizeof op.note, "mode 0x%x", (unsigned)m); \
        AROUND(&op, real_##name(fd, m, o, n)); \
    }
FALLOCATE(fallocate, off_t)
FALLOCATE(fallocate64, off64_t)

/* posix_fallocate returns its error instead of setting errno. */
#define POSIX_FALLOCATE(name, off_t_) \
    int name(int fd, off_t_ o, off_t_ n) { \
        REAL(int, name, int, off_t_, off_t_); \
        struct lo_op op; \
        if (!on_fd(&op, K_TRUNCATE, #name, fd)) return real_##name(fd, o, n); \
        op.size = (long long)n; op.offset = (long long)o; \
        int inject = begin(&op); \
        if (inject) { finish(&op, inject, NULL, 0); return inject; } \
        int rc = real_##name(fd, o, n), e = errno; \
        after(&op, rc); \
        errno = e; \
        return rc; \
    }
POSIX_FALLOCATE(posix_fallocate, off_t)
POSIX_FALLOCATE(posix_fallocate64, off64_t)

int truncate(const char *p, off_t n) {
    REAL(int, truncate, const char *, off_t);
    struct lo_op op;
    if (!on_path(&op, K_TRUNCATE, "truncate", AT_FDCWD, p)) return real_truncate(p, n);
    op.size = (long long)n;
    AROUND(&op, real_truncate(p, n));
}
int truncate64(const char *p, off64_t n) {
    REAL(int, truncate64, const char *, off64_t);
    struct lo_op op;
    if (!on_path(&op, K_TRUNCATE, "truncate64", AT_FDCWD, p)) return real_truncate64(p, n);
    op.size = (long long)n;
    AROUND(&op, real_truncate64(p, n));
}

/* Copies into a file: a "write" of the destination, its whole content after. */
ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off, size_t n, unsigned int f) {
    REAL(ssize_t, copy_file_range, int, off64_t *, int, off64_t *, size_t, unsigned int);
    struct lo_op op;
    if (!on_fd(&op, K_WRITE, "copy_file_range", out)) return real_copy_file_range(in, in_off, out, out_off, n, f);
    op.size = (long long)n; op.offset = out_off ? (long long)*out_off : -1;
    AROUND(&op, real_copy_file_range(in, in_off, out, out_off, n, f));
}
ssize_t sendfile(int out, int in, off_t *off, size_t n) {
    REAL(ssize_t, sendfile, int, int, off_t *, size_t);
    struct lo_op op;
    if (!on_fd(&op, K_WRITE, "sendfile", out)) return real_sendfile(out, in, off, n);
    op.size = (long long)n;
    AROUND(&op, real_sendfile(out, in, off, n));
}
ssize_t sendfile64(int out, int in, off64_t *off, size_t n) {
    REAL(ssize_t, sendfile64, int, int, off64_t *, size_t);
    struct lo_op op;
    if (!on_fd(&op, K_WRITE, "sendfile64", out)) return real_sendfile64(out, in, off, n);
    op.size = (long long)n;
    AROUND(&op, real_sendfile64(out, in, off, n));
}

int close(int fd) {
    REAL(int, close, int);
    struct lo_op op;
    if (!on_fd(&op, K_CLOSE, "close", fd)) return real_close(fd);
    int inject = begin(&op);
    long long clen = 0;
    unsigned char *content = S->want_content && !op.is_dir ? content_of(fd, op.path, &clen) : NULL;
    int rc = real_close(fd); /* an injected failure closes it too, as Linux does */
    name_fd(fd, NULL);
    int e = errno, err = inject ? inject : rc < 0 ? e : 0;
    finish(&op, err, content, clen);
    free(content);
    errno = inject ? inject : e;
    return err ? -1 : rc;
}

/* The file an address of this process maps: a followed mapping, else /proc/self/maps. */
static int mapped_path(const void *addr, char *out) {
    const unsigned char *a = addr;
    take();
    for (int i = 0; i < nmaps; i++) {
        if (maps[i].addr <= a && a < maps[i].addr + maps[i].len) {
            int rc = fd_path(maps[i].fd, out);
            give();
            return rc;
        }
    }
    give();
    FILE *listing = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    unsigned long lo, hi;
    int found = -1;
    if (!listing) return -1;
    while (found && fgets(line, sizeof line, listing)) {
        char *slash = strchr(line, '/');
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= (unsigned long)a && (unsigned long)a < hi && slash) {
            slash[strcspn(slash, "\n")] = 0;
            snprintf(out, PATH_MAX, "%s", slash);
            found = 0;
        }
    }
    fclose(listing);
    return found;
}

int msync(void *addr, size_t n, int flags) {
    REAL(int, msync, void *, size_t, int);
    struct lo_op op;
    if (!active()) return real_msync(addr, n, flags);
    start(&op, K_FSYNC, "msync");
    inside = 1; /* fopen below must not record itself */
    int mine = mapped_path(addr, op.path) == 0 && under(op.path);
    inside = 0;
    if (!mine) return real_msync(addr, n, flags);
    op.size = (long long)n; op.flags = flags;
    AROUND(&op, real_msync(addr, n, flags));
}

/* rename, renameat, renameat2: flags 1 RENAME_NOREPLACE, 2 RENAME_EXCHANGE; any other flag
   (RENAME_WHITEOUT) is a call the model does not know: "unknown", naming it. */
static int on_rename(struct lo_op *op, const char *call, int od, const char *o, int nd, const char *n, unsigned f) {
    if (!active()) return 0;
    start(op, K_RENAME, call);
    if (abs_path(od, o, op->path) || abs_path(nd, n, op->target)) return 0;
    if (!under(op->path) && !under(op->target)) return 0;
    op->flags = (int)f;
    if (f & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        op->kind = K_UNKNOWN;
        snprintf(op->note, sizeof op->note, "flags 0x%x%s", f, (f & 4u) ? " (RENAME_WHITEOUT)" : "");
    }
    return 1;
}

int rename(const char *o, const char *n) {
    REAL(int, rename, const char *, const char *);
    struct lo_op op;
    if (!on_rename(&op, "rename", AT_FDCWD, o, AT_FDCWD, n, 0)) return real_rename(o, n);
    AROUND(&op, real_rename(o, n));
}
int renameat(int od, const char *o, int nd, const char *n) {
    REAL(int, renameat, int, const char *, int, const char *);
    struct lo_op op;
    if (!on_rename(&op, "renameat", od, o, nd, n, 0)) return real_renameat(od, o, nd, n);
    AROUND(&op, real_renameat(od, o, nd, n));
}
int renameat2(int od, const char *o, int nd, const char *n, unsigned int f) {
    REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
    struct lo_op op;
    if (!on_rename(&op, "renameat2", od, o, nd, n, f)) return real_renameat2(od, o, nd, n, f);
    AROUND(&op, real_renameat2(od, o, nd, n, f));
}

/* link, linkat: a new name (path) for an existing file (target), or for a descriptor's file
   with no name to give (target empty: AT_EMPTY_PATH, or /proc/self/fd/N: an O_TMPFILE). */
static int on_link(struct lo_op *op, const char *call, int od, const char *o, int nd, const char *n, int f) {
    if (!active()) return 0;
    start(op, K_LINK, call);
    if (abs_path(nd, n, op->path)) return 0;
    char old[PATH_MAX];
    if ((f & AT_EMPTY_PATH) && o && !o[0]) {
        op->fd = od;
        if (fd_path(od, old)) old[0] = 0;
    } else if (o && proc_fd(o) >= 0) {
        op->fd = proc_fd(o);
        if (fd_path(op->fd, old)) old[0] = 0;
    } else if (abs_path(od, o, op->target) == 0) {
        snprintf(old, sizeof old, "%s", op->target);
    } else {
        old[0] = 0;
    }
    op->flags = f;
    return under(op->path) || under(old);
}

/* After the link: the descriptor's records go by its new name. */
static int linked(struct lo_op *op, int rc) {
    int e = errno;
    if (rc == 0 && op->fd >= 0 && !op->target[0]) name_fd(op->fd, op->path);
    after(op, rc < 0 ? e : 0);
    errno = e;
    return rc;
}

int link(const char *o, const char *n) {
    REAL(int, link, const char *, const char *);
    struct lo_op op;
    if (!on_link(&op, "link", AT_FDCWD, o, AT_FDCWD, n, 0)) return real_link(o, n);
    int inject = begin(&op);
    if (inject) { finish(&op, inject, NULL, 0); errno = inject; return -1; }
    return linked(&op, real_link(o, n));
}
int linkat(int od, const char *o, int nd, const char *n, int f) {
    REAL(int, linkat, int, const char *, int, const char *, int);
    struct lo_op op;
    if (!on_link(&op, "linkat", od, o, nd, n, f)) return real_linkat(od, o, nd, n, f);
    int inject = begin(&op);
    if (inject) { finish(&op, inject, NULL, 0); errno = inject; return -1; }
    return linked(&op, real_linkat(od, o, nd, n, f));
}

/* A symbolic link is a name the model does not follow: "unknown", naming the call. */
int symlink(const char *to, const char *p) {
    REAL(int, symlink, const char *, const char *);
    struct lo_op op;
    if (!on_path(&op, K_UNKNOWN, "symlink", AT_FDCWD, p)) return real_symlink(to, p);
    snprintf(op.note, sizeof op.note, "to %s", to);
    AROUND(&op, real_symlink(to, p));
}
int symlinkat(const char *to, int d, const char *p) {
    REAL(int, symlinkat, const char *, int, const char *);
    struct lo_op op;
    if (!on_path(&op, K_UNKNOWN, "symlinkat", d, p)) return real_symlinkat(to, d, p);
    snprintf(op.note, sizeof op.note, "to %s", to);
    AROUND(&op, real_symlinkat(to, d, p));
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
    op.is_dir = (f & AT_REMOVEDIR) != 0;
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

/* A shared writable mapping: reported once it exists (never numbered), then followed: its
   pages are diffed at every recorded call, at munmap and at the end of the block. Read-only
   mappings (LMDB's default) and private ones change no file. */
#define MMAP_BODY(name, off_t_) \
    REAL(void *, name, void *, size_t, int, int, int, off_t_); \
    void *result = real_##name(addr, n, prot, flags, fd, off); \
    struct lo_op op; \
    if (result == MAP_FAILED || fd < 0 || !(prot & PROT_WRITE) || !(flags & MAP_SHARED)) return result; \
    if (!on_fd(&op, K_MAPPED, #name, fd)) return result; \
    int saved = errno; \
    op.size = (long long)n; op.offset = (long long)off; op.flags = prot; \
    take(); \
    append(&op, 0, "", NULL, 0); \
    track(result, n, (long long)off, fd); \
    give(); \
    errno = saved; \
    return result

void *mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off) { MMAP_BODY(mmap, off_t); }
void *mmap64(void *addr, size_t n, int prot, int flags, int fd, off64_t off) { MMAP_BODY(mmap64, off64_t); }

int munmap(void *addr, size_t n) {
    REAL(int, munmap, void *, size_t);
    if (atomic_load_explicit(&S->armed, memory_order_acquire) && nmaps && !holding) {
        const unsigned char *lo = addr, *hi = lo + n;
        int stop = 0;
        take();
        for (int i = nmaps - 1; i >= 0; i--) {
            if (maps[i].addr < hi && lo < maps[i].addr + maps[i].len) {
                stop |= diff_map(i);
                untrack(i);
            }
        }
        give();
        if (stop) halt();
    }
    return real_munmap(addr, n);
}
"""

#: A program that runs a driver store (``conformance/_driver.py``) so that it dies with the
#: process that started it: ``launcher PARENT_PID PROGRAM ARGS...`` asks the kernel for SIGKILL
#: when its parent dies (kept across exec), gives up if that parent is gone already, and execs
#: the program. A kill of the worker is then a kill of its driver, in the same instant, with no
#: ``preexec_fn`` (which makes every start a full fork of the worker, several times slower).
LAUNCHER: Final = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: launcher PARENT_PID PROGRAM [ARGS...]\n"); return 127; }
    pid_t parent = (pid_t)atol(argv[1]);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) { perror("lance-offsets launcher: prctl"); return 127; }
    if (getppid() != parent) _exit(137); /* the parent died before the request: die as it would have */
    execvp(argv[2], argv + 2);
    fprintf(stderr, "lance-offsets: cannot run driver %s: %s\n", argv[2], strerror(errno));
    return 127;
}
"""
