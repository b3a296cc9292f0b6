/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faultfs: a FUSE pass-through file system for tests that injects disk
 * faults and power cuts. It mirrors a backing directory at a mount point:
 *
 *   faultfs BACKING MOUNTPOINT [-s SEED] [-d]
 *
 * and is driven through a control file, MOUNTPOINT/.faultfs, which does not
 * exist in the backing directory. Each line written to it is one command:
 *
 *   rule KIND SUBSTR [op read|write|sync] [one_in N] [skip K] [limit M]
 *        [arg X] [at A] [span S]
 *        adds a rule: operations on files whose path (from the mount root)
 *        contains SUBSTR ("*" matches every file) are faulted; with op, only
 *        operations of that type (delay and cut take any type). Of the
 *        matching operations the first K are spared, then each one is hit
 *        with probability 1/N (N = 1, the default: all), at most M times
 *        (0, the default: no limit). KIND is one of
 *          eio_read    the read fails with EIO
 *          eio_write   the write fails with EIO, nothing is written
 *          eio_sync    fsync/fdatasync fail with EIO (nothing is made durable)
 *          drop_sync   fsync/fdatasync report success and make nothing
 *                      durable (a drive that lies about its cache flush)
 *          flip_read   one bit of the returned bytes is inverted, at a random
 *                      offset in [A, A + S) of the request (default: anywhere);
 *                      the file is not changed
 *          drop_write  the write reports success and nothing is written
 *          torn_write  the write reports success but only a prefix reaches
 *                      the file: X bytes if X > 0, else a random multiple of
 *                      512 bytes shorter than the request
 *          delay       the read, write or sync sleeps X microseconds first
 *          cut         the power goes off at that operation (see cut)
 *   cut      the power goes off now: every later operation on every file
 *            fails with EIO and changes nothing, until restore
 *   restore  the power comes back: every write not made durable by an fsync
 *            or fdatasync of its file since the write is forgotten (the data
 *            file and RocksDB's files alike), then I/O works again
 *   clear    removes every rule (the power state is kept)
 *
 * A bad command makes the write() fail with EINVAL. Reading .faultfs gives
 * the state as "key value" lines: power, ops, and for each kind the number
 * of faults injected so far ("fired_KIND N"), and "unsynced_bytes".
 *
 * Power cut model. Writes go to the backing file at once, but for every
 * write (and every truncation) since its file's last fsync the old bytes
 * and the file size at that sync are kept in an undo log in memory; fsync
 * or fdatasync of the file drops the log. restore replays the logs
 * backwards and truncates each file to its size at its last sync, which
 * leaves the backing directory as a disk whose volatile cache was lost.
 * Names (create, rename, unlink, mkdir) are treated as durable at once, as
 * a journaling file system in ordered mode nearly does: a file created and
 * never synced is back empty, not absent. That is gentler than a real disk
 * for directory entries and as harsh as one for file contents.
 *
 * Every file is opened with direct_io, so the kernel keeps no page cache
 * for it: O_DIRECT opens work, each read and write reaches this process,
 * and nothing written before a restore can be served from a cache after
 * it. io_uring requests on these files go through the kernel's io-wq
 * workers to the same handlers.
 *
 * Threads: libfuse's worker threads run the handlers; one mutex (g.lock)
 * guards the rules, counters, power state and undo logs, and is held across
 * each write so that a file's undo records are in the order of its writes.
 */
#define FUSE_USE_VERSION 35

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CTL_NAME "/.faultfs"
#define MAX_RULES 32

enum kind {
    K_EIO_READ,
    K_EIO_WRITE,
    K_EIO_SYNC,
    K_DROP_SYNC,
    K_FLIP_READ,
    K_DROP_WRITE,
    K_TORN_WRITE,
    K_DELAY,
    K_CUT,
    K_COUNT
};

static const char *const kind_name[K_COUNT] = {
    "eio_read",   "eio_write",  "eio_sync", "drop_sync", "flip_read",
    "drop_write", "torn_write", "delay",    "cut",
};

enum op { OP_READ, OP_WRITE, OP_SYNC };

struct rule {
    enum kind kind;
    char substr[256];
    uint64_t one_in, skip, limit, arg, at, span;
    int op; /* enum op, or -1: any */
    uint64_t seen, fired;
};

/* One write's old bytes: restored by restore, dropped by a sync. */
struct undo {
    struct undo *prev;
    off_t off;
    size_t len;
    uint8_t bytes[];
};

/* A backing file with writes not yet synced, found by inode. */
struct fstate {
    struct fstate *next;
    dev_t dev;
    ino_t ino;
    off_t synced_size;
    struct undo *last; /* newest first */
    size_t undo_bytes;
};

static struct {
    pthread_mutex_t lock;
    int backing; /* fd of the backing directory */
    struct rule rules[MAX_RULES];
    unsigned nrules;
    bool power_off;
    uint64_t fired[K_COUNT];
    uint64_t ops;
    uint64_t rng;
    struct fstate *files;
    uint64_t unsynced; /* bytes in undo logs */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------------- */
/* Paths and rules */

/* The backing path of a FUSE path: relative to g.backing. */
static const char *rel(const char *path)
{
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

static uint64_t rnd(void)
{
    uint64_t z = (g.rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool kind_applies(enum kind k, enum op op)
{
    switch (k) {
    case K_EIO_READ:
    case K_FLIP_READ:
        return op == OP_READ;
    case K_EIO_WRITE:
    case K_DROP_WRITE:
    case K_TORN_WRITE:
        return op == OP_WRITE;
    case K_EIO_SYNC:
    case K_DROP_SYNC:
        return op == OP_SYNC;
    default:
        return true;
    }
}

/* Finds the rules that hit this operation (g.lock held). Sets *delay_us
 * and returns the first non-delay rule that fired, or NULL. A cut rule
 * turns the power off and is reported as such (NULL, g.power_off set). */
static struct rule *match(const char *path, enum op op, uint64_t *delay_us)
{
    struct rule *hit = NULL;

    *delay_us = 0;
    g.ops++;
    if (!path)
        path = ""; /* unlinked while open: only "*" matches it */
    for (unsigned i = 0; i < g.nrules; i++) {
        struct rule *r = &g.rules[i];
        if (!kind_applies(r->kind, op) || (r->op >= 0 && r->op != (int)op) ||
            (strcmp(r->substr, "*") != 0 && !strstr(path, r->substr)))
            continue;
        if (++r->seen <= r->skip || (r->limit && r->fired >= r->limit))
            continue;
        if (r->one_in > 1 && rnd() % r->one_in != 0)
            continue;
        if (r->kind == K_DELAY) {
            r->fired++;
            g.fired[K_DELAY]++;
            *delay_us += r->arg;
            continue;
        }
        if (hit)
            continue;
        r->fired++;
        g.fired[r->kind]++;
        if (r->kind == K_CUT) {
            g.power_off = true;
            continue;
        }
        hit = r;
    }
    return hit;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};

    while (us && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------------- */
/* Undo logs */

static struct fstate *fstate_get(int fd, bool create)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return NULL;
    for (struct fstate *f = g.files; f; f = f->next)
        if (f->dev == st.st_dev && f->ino == st.st_ino)
            return f;
    if (!create)
        return NULL;
    struct fstate *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->synced_size = st.st_size;
    f->next = g.files;
    g.files = f;
    return f;
}

static void fstate_drop_undo(struct fstate *f)
{
    while (f->last) {
        struct undo *u = f->last;
        f->last = u->prev;
        free(u);
    }
    g.unsynced -= f->undo_bytes;
    f->undo_bytes = 0;
}

static void fstate_forget(dev_t dev, ino_t ino)
{
    for (struct fstate **p = &g.files; *p; p = &(*p)->next) {
        if ((*p)->dev == dev && (*p)->ino == ino) {
            struct fstate *f = *p;
            *p = f->next;
            fstate_drop_undo(f);
            free(f);
            return;
        }
    }
}

/* Saves the bytes [off, off + len) of fd (as far as the file reaches)
 * before they are overwritten or cut off. */
static int undo_save(int fd, off_t off, size_t len)
{
    struct fstate *f = fstate_get(fd, true);
    struct stat st;

    if (!f || fstat(fd, &st) < 0)
        return -EIO;
    if (off >= st.st_size)
        return 0;
    if ((off_t)len > st.st_size - off)
        len = (size_t)(st.st_size - off);
    struct undo *u = malloc(sizeof(*u) + len);
    if (!u)
        return -ENOMEM;
    ssize_t n = pread(fd, u->bytes, len, off);
    if (n != (ssize_t)len) {
        free(u);
        return -EIO;
    }
    u->off = off;
    u->len = len;
    u->prev = f->last;
    f->last = u;
    f->undo_bytes += len;
    g.unsynced += len;
    return 0;
}

/* Rolls one file back to its last sync, if it has an undo log. Files are
 * found by walking the backing tree and matching inodes, so a file renamed
 * since its writes is rolled back under its new name. */
static int rollback_file(int dirfd, const char *name, struct stat *st)
{
    struct fstate *f = NULL;

    for (struct fstate *p = g.files; p; p = p->next)
        if (p->dev == st->st_dev && p->ino == st->st_ino)
            f = p;
    if (!f)
        return 0;
    int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = 0;
    for (struct undo *u = f->last; u; u = u->prev)
        if (pwrite(fd, u->bytes, u->len, u->off) != (ssize_t)u->len)
            ret = -EIO;
    if (ftruncate(fd, f->synced_size) < 0)
        ret = -errno;
    close(fd);
    fstate_drop_undo(f);
    return ret;
}

static int rollback_dir(int dirfd)
{
    /* A descriptor of its own: one from dup() would share (and leave at
     * the end) the directory offset of dirfd. */
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    struct dirent *de;
    int ret = 0;

    if (!d) {
        ret = -errno;
        if (fd >= 0)
            close(fd);
        return ret;
    }
    while ((de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int sub =
                openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub >= 0) {
                int r = rollback_dir(sub);
                close(sub);
                if (r && !ret)
                    ret = r;
            }
        } else if (S_ISREG(st.st_mode)) {
            int r = rollback_file(dirfd, de->d_name, &st);
            if (r && !ret)
                ret = r;
        }
    }
    closedir(d);
    return ret;
}

/* The power comes back (g.lock held). Files with undo logs that are no
 * longer reachable by name were unlinked, which is durable: forgotten. */
static int restore(void)
{
    int ret = rollback_dir(g.backing);

    while (g.files) {
        struct fstate *f = g.files;
        g.files = f->next;
        fstate_drop_undo(f);
        free(f);
    }
    g.unsynced = 0;
    g.power_off = false;
    return ret;
}

/* ---------------------------------------------------------------------- */
/* The control file */

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno || end == s || *end ? -EINVAL : 0;
}

static int command(char *line)
{
    char *save, *w = strtok_r(line, " \t", &save);

    if (!w)
        return 0;
    if (!strcmp(w, "cut")) {
        g.power_off = true;
        g.fired[K_CUT]++;
        return 0;
    }
    if (!strcmp(w, "restore"))
        return restore();
    if (!strcmp(w, "clear")) {
        g.nrules = 0;
        return 0;
    }
    if (strcmp(w, "rule") != 0 || g.nrules == MAX_RULES)
        return -EINVAL;
    struct rule r = {.one_in = 1, .op = -1};
    char *k = strtok_r(NULL, " \t", &save), *sub = strtok_r(NULL, " \t", &save);
    if (!k || !sub || strlen(sub) >= sizeof(r.substr))
        return -EINVAL;
    unsigned i;
    for (i = 0; i < K_COUNT && strcmp(kind_name[i], k); i++)
        ;
    if (i == K_COUNT)
        return -EINVAL;
    r.kind = (enum kind)i;
    strcpy(r.substr, sub);
    while ((w = strtok_r(NULL, " \t", &save))) {
        char *v = strtok_r(NULL, " \t", &save);
        if (!strcmp(w, "op") && v) {
            r.op = !strcmp(v, "read")    ? OP_READ
                   : !strcmp(v, "write") ? OP_WRITE
                   : !strcmp(v, "sync")  ? OP_SYNC
                                         : -2;
            if (r.op == -2)
                return -EINVAL;
            continue;
        }
        uint64_t *dst = !strcmp(w, "one_in")  ? &r.one_in
                        : !strcmp(w, "skip")  ? &r.skip
                        : !strcmp(w, "limit") ? &r.limit
                        : !strcmp(w, "arg")   ? &r.arg
                        : !strcmp(w, "at")    ? &r.at
                        : !strcmp(w, "span")  ? &r.span
                                              : NULL;
        if (!dst || !v || parse_u64(v, dst))
            return -EINVAL;
    }
    if (r.one_in == 0)
        return -EINVAL;
    g.rules[g.nrules++] = r;
    return 0;
}

static int ctl_write(const char *buf, size_t len)
{
    char *copy = strndup(buf, len), *save, *line;
    int ret = 0;

    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&g.lock);
    for (line = strtok_r(copy, "\n", &save); line && !ret;
         line = strtok_r(NULL, "\n", &save))
        ret = command(line);
    pthread_mutex_unlock(&g.lock);
    free(copy);
    return ret ? ret : (int)len;
}

static int ctl_read(char *buf, size_t size, off_t off)
{
    char text[2048];
    int n;

    pthread_mutex_lock(&g.lock);
    n = snprintf(text, sizeof(text),
                 "power %s\nops %" PRIu64 "\n"
                 "unsynced_bytes %" PRIu64 "\nrules %u\n",
                 g.power_off ? "off" : "on", g.ops, g.unsynced, g.nrules);
    for (unsigned k = 0; k < K_COUNT && n < (int)sizeof(text); k++)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "fired_%s %" PRIu64 "\n", kind_name[k], g.fired[k]);
    pthread_mutex_unlock(&g.lock);
    if (n > (int)sizeof(text))
        n = (int)sizeof(text);
    if (off >= n)
        return 0;
    size_t len = (size_t)(n - off) < size ? (size_t)(n - off) : size;
    memcpy(buf, text + off, len);
    return (int)len;
}

/* path is NULL for a file unlinked while open (hard_remove). */
static bool is_ctl(const char *path)
{
    return path && strcmp(path, CTL_NAME) == 0;
}

/* ---------------------------------------------------------------------- */
/* File system operations */

#define POWER_CHECK()                                                          \
    do {                                                                       \
        pthread_mutex_lock(&g.lock);                                           \
        bool off_ = g.power_off;                                               \
        pthread_mutex_unlock(&g.lock);                                         \
        if (off_)                                                              \
            return -EIO;                                                       \
    } while (0)

static void *ffs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->direct_io = 1;
    cfg->hard_remove = 1;
    return NULL;
}

static int ffs_getattr(const char *path, struct stat *st,
                       struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFREG | 0600;
        st->st_nlink = 1;
        return 0;
    }
    int r = fi ? fstat((int)fi->fh, st)
               : fstatat(g.backing, rel(path), st, AT_SYMLINK_NOFOLLOW);
    return r < 0 ? -errno : 0;
}

static int ffs_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
                       off_t off, struct fuse_file_info *fi,
                       enum fuse_readdir_flags flags)
{
    (void)off;
    (void)fi;
    (void)flags;
    int fd = openat(g.backing, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st = {.st_ino = de->d_ino,
                          .st_mode = (mode_t)de->d_type << 12};
        if (fill(buf, de->d_name, &st, 0, 0))
            break;
    }
    closedir(d);
    return 0;
}

static int ffs_open(const char *path, struct fuse_file_info *fi)
{
    if (is_ctl(path)) {
        fi->fh = UINT64_MAX;
        fi->direct_io = 1;
        return 0;
    }
    /* O_DIRECT is the kernel's business (direct_io below); the backing
     * file is opened buffered, which is what the undo log reads from. */
    int flags =
        fi->flags & ~(O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY | O_APPEND);
    if ((flags & O_ACCMODE) == O_WRONLY)
        flags = (flags & ~O_ACCMODE) | O_RDWR; /* the undo log reads */
    int fd = openat(g.backing, rel(path), flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fi->flags & O_TRUNC) {
        /* An open with O_TRUNC truncates: that is a write. */
        pthread_mutex_lock(&g.lock);
        undo_save(fd, 0, SIZE_MAX / 2);
        pthread_mutex_unlock(&g.lock);
    }
    fi->fh = (uint64_t)fd;
    fi->direct_io = 1;
    return 0;
}

static int ffs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    POWER_CHECK();
    int flags = fi->flags & ~(O_DIRECT | O_APPEND);
    if ((flags & O_ACCMODE) == O_WRONLY)
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    int fd = openat(g.backing, rel(path), flags | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&g.lock);
    struct fstate *f = fstate_get(fd, true);
    if (f && f->synced_size != 0 && !f->last)
        f->synced_size = lseek(fd, 0, SEEK_END);
    pthread_mutex_unlock(&g.lock);
    fi->fh = (uint64_t)fd;
    fi->direct_io = 1;
    return 0;
}

static int ffs_read(const char *path, char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return ctl_read(buf, size, off);
    uint64_t delay = 0;
    pthread_mutex_lock(&g.lock);
    struct rule *r = g.power_off ? NULL : match(path, OP_READ, &delay);
    bool off_ = g.power_off;
    uint64_t pick = rnd();
    pthread_mutex_unlock(&g.lock);
    if (off_)
        return -EIO;
    sleep_us(delay);
    if (r && r->kind == K_EIO_READ)
        return -EIO;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    if (n < 0)
        return -errno;
    if (r && r->kind == K_FLIP_READ && n > 0) {
        uint64_t lo = r->at < (uint64_t)n ? r->at : (uint64_t)n - 1;
        uint64_t span = r->span ? r->span : (uint64_t)n;
        if (span > (uint64_t)n - lo)
            span = (uint64_t)n - lo;
        uint64_t bit = pick % (span * 8);
        buf[lo + bit / 8] ^= (char)(1u << (bit % 8));
    }
    return (int)n;
}

static int ffs_write(const char *path, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return ctl_write(buf, size);
    uint64_t delay = 0;
    int ret;
    pthread_mutex_lock(&g.lock);
    struct rule *r = g.power_off ? NULL : match(path, OP_WRITE, &delay);
    pthread_mutex_unlock(&g.lock);
    sleep_us(delay);
    /* Held across the write: undo records in write order, and a cut or
     * restore cannot come between the record and the write. */
    pthread_mutex_lock(&g.lock);
    if (g.power_off) {
        ret = -EIO;
        goto out;
    }
    size_t len = size;
    if (r && r->kind == K_EIO_WRITE) {
        ret = -EIO;
        goto out;
    }
    if (r && r->kind == K_DROP_WRITE) {
        ret = (int)size;
        goto out;
    }
    if (r && r->kind == K_TORN_WRITE)
        len = r->arg ? (r->arg < size ? r->arg : size)
                     : (size > 512 ? (rnd() % (size / 512)) * 512 : 0);
    ret = undo_save((int)fi->fh, off, len);
    if (ret)
        goto out;
    ssize_t n = len ? pwrite((int)fi->fh, buf, len, off) : 0;
    ret = n < 0 ? -errno : (len < size ? (int)size : (int)n);
out:
    pthread_mutex_unlock(&g.lock);
    return ret;
}

static int do_sync(const char *path, int fd, int datasync)
{
    uint64_t delay = 0;
    pthread_mutex_lock(&g.lock);
    struct rule *r = g.power_off ? NULL : match(path, OP_SYNC, &delay);
    pthread_mutex_unlock(&g.lock);
    sleep_us(delay);
    if (r && r->kind == K_EIO_SYNC)
        return -EIO;
    if (r && r->kind == K_DROP_SYNC)
        return 0;
    pthread_mutex_lock(&g.lock);
    int ret = 0;
    if (g.power_off) {
        ret = -EIO;
    } else {
        /* The backing file is not synced itself: what the tests need is
         * the model's durability, not the host's. */
        (void)datasync;
        struct fstate *f = fstate_get(fd, false);
        if (f) {
            fstate_drop_undo(f);
            struct stat st;
            if (fstat(fd, &st) == 0)
                f->synced_size = st.st_size;
        }
    }
    pthread_mutex_unlock(&g.lock);
    return ret;
}

static int ffs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;
    return do_sync(path, (int)fi->fh, datasync);
}

static int ffs_fsyncdir(const char *path, int datasync,
                        struct fuse_file_info *fi)
{
    (void)path;
    (void)datasync;
    (void)fi;
    POWER_CHECK();
    return 0;
}

static int ffs_release(const char *path, struct fuse_file_info *fi)
{
    if (!is_ctl(path))
        close((int)fi->fh);
    return 0;
}

static int ffs_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    (void)fi;
    return 0;
}

static int ffs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;
    int fd =
        fi ? (int)fi->fh : openat(g.backing, rel(path), O_RDWR | O_CLOEXEC);
    int ret = 0;
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&g.lock);
    if (g.power_off)
        ret = -EIO;
    else
        ret = undo_save(fd, size, SIZE_MAX / 2);
    if (!ret && ftruncate(fd, size) < 0)
        ret = -errno;
    pthread_mutex_unlock(&g.lock);
    if (!fi)
        close(fd);
    return ret;
}

static int ffs_fallocate(const char *path, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    (void)path;
    /* Only allocation, which changes no byte (the size it may grow is
     * rolled back by restore like any other size change). */
    if (mode & ~FALLOC_FL_KEEP_SIZE)
        return -EOPNOTSUPP;
    POWER_CHECK();
    pthread_mutex_lock(&g.lock);
    fstate_get((int)fi->fh, true);
    pthread_mutex_unlock(&g.lock);
    return fallocate((int)fi->fh, mode, off, len) < 0 ? -errno : 0;
}

static int ffs_unlink(const char *path)
{
    struct stat st;

    POWER_CHECK();
    if (fstatat(g.backing, rel(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (unlinkat(g.backing, rel(path), 0) < 0)
        return -errno;
    if (st.st_nlink <= 1) {
        pthread_mutex_lock(&g.lock);
        fstate_forget(st.st_dev, st.st_ino);
        pthread_mutex_unlock(&g.lock);
    }
    return 0;
}

static int ffs_rename(const char *from, const char *to, unsigned int flags)
{
    struct stat st;
    bool replaced;

    POWER_CHECK();
    replaced = fstatat(g.backing, rel(to), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (renameat2(g.backing, rel(from), g.backing, rel(to), flags) < 0)
        return -errno;
    if (replaced && S_ISREG(st.st_mode) && st.st_nlink <= 1) {
        pthread_mutex_lock(&g.lock);
        fstate_forget(st.st_dev, st.st_ino);
        pthread_mutex_unlock(&g.lock);
    }
    return 0;
}

static int ffs_mkdir(const char *path, mode_t mode)
{
    POWER_CHECK();
    return mkdirat(g.backing, rel(path), mode) < 0 ? -errno : 0;
}

static int ffs_rmdir(const char *path)
{
    POWER_CHECK();
    return unlinkat(g.backing, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int ffs_link(const char *from, const char *to)
{
    POWER_CHECK();
    return linkat(g.backing, rel(from), g.backing, rel(to), 0) < 0 ? -errno : 0;
}

static int ffs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;
    int r = fi ? fchmod((int)fi->fh, mode)
               : fchmodat(g.backing, rel(path), mode, 0);
    return r < 0 ? -errno : 0;
}

static int ffs_utimens(const char *path, const struct timespec tv[2],
                       struct fuse_file_info *fi)
{
    if (is_ctl(path))
        return 0;
    int r = fi ? futimens((int)fi->fh, tv)
               : utimensat(g.backing, rel(path), tv, AT_SYMLINK_NOFOLLOW);
    return r < 0 ? -errno : 0;
}

static int ffs_statfs(const char *path, struct statvfs *sv)
{
    (void)path;
    return fstatvfs(g.backing, sv) < 0 ? -errno : 0;
}

static int ffs_access(const char *path, int mask)
{
    if (is_ctl(path))
        return 0;
    return faccessat(g.backing, rel(path), mask, 0) < 0 ? -errno : 0;
}

static const struct fuse_operations ffs_ops = {
    .init = ffs_init,
    .getattr = ffs_getattr,
    .readdir = ffs_readdir,
    .open = ffs_open,
    .create = ffs_create,
    .read = ffs_read,
    .write = ffs_write,
    .fsync = ffs_fsync,
    .fsyncdir = ffs_fsyncdir,
    .flush = ffs_flush,
    .release = ffs_release,
    .truncate = ffs_truncate,
    .fallocate = ffs_fallocate,
    .unlink = ffs_unlink,
    .rename = ffs_rename,
    .mkdir = ffs_mkdir,
    .rmdir = ffs_rmdir,
    .link = ffs_link,
    .chmod = ffs_chmod,
    .utimens = ffs_utimens,
    .statfs = ffs_statfs,
    .access = ffs_access,
};

static void usage(void)
{
    fprintf(stderr,
            "usage: faultfs BACKING MOUNTPOINT [-s SEED] [-d] "
            "[fuse options]\n(see the top of tests/faultfs/faultfs.c for the "
            "control file's commands)\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        usage();
        return 2;
    }
    g.backing = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g.backing < 0) {
        fprintf(stderr, "faultfs: backing directory %s: %s\n", argv[1],
                strerror(errno));
        return 2;
    }
    g.rng = 0x6661756c74ull;
    /* fuse_main gets: prog, -f (foreground), the mount point, the rest. */
    char *fargv[64];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    fargv[fargc++] = "-f";
    fargv[fargc++] = argv[2];
    for (int i = 3; i < argc && fargc < 60; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            g.rng = strtoull(argv[++i], NULL, 0);
            continue;
        }
        fargv[fargc++] = argv[i];
    }
    fargv[fargc] = NULL;
    return fuse_main(fargc, fargv, &ffs_ops, NULL);
}
