/* SPDX-License-Identifier: Apache-2.0 */
#include "common/hugemem.h"
#include "common/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUGE_ALIGN ((size_t)2 << 20) /* a transparent huge page on x86-64 */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int kvs_huge_reserve(size_t len, kvs_huge_t *h)
{
    memset(h, 0, sizeof(*h));
    if (len == 0 || len > SIZE_MAX - HUGE_ALIGN)
        return -ENOMEM;
    h->map_len = len + HUGE_ALIGN;
    h->map = mmap(NULL, h->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (h->map == MAP_FAILED) {
        memset(h, 0, sizeof(*h));
        return -ENOMEM;
    }
    h->base = (void *)(((uintptr_t)h->map + HUGE_ALIGN - 1) &
                       ~(uintptr_t)(HUGE_ALIGN - 1));
    h->len = len;
    (void)madvise(h->base, len, MADV_HUGEPAGE);
    return 0;
}

static void populate(void *base, size_t len)
{
    if (madvise(base, len, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        for (size_t off = 0; off < len; off += 4096)
            ((volatile uint8_t *)base)[off] = 0;
}

int kvs_huge_map(size_t len, kvs_huge_t *h)
{
    int ret = kvs_huge_reserve(len, h);

    if (ret)
        return ret;
    populate(h->base, len);
    return 0;
}

/* What transparent_hugepage/shmem_enabled selects for shmem. */
enum shmem_thp { SHMEM_THP_OFF, SHMEM_THP_ON, SHMEM_THP_DENY };

/* ON: a memfd gets huge pages on MADV_HUGEPAGE (advise, always,
 * within_size, force); OFF: only the kernel's own mount goes without
 * (never); DENY: no tmpfs mount gets them either (deny, or no THP). */
static enum shmem_thp shmem_thp(void)
{
    char buf[128];
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    size_t n;

    if (!f)
        return SHMEM_THP_DENY;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "[advise]") || strstr(buf, "[always]") ||
        strstr(buf, "[within_size]") || strstr(buf, "[force]"))
        return SHMEM_THP_ON;
    return strstr(buf, "[never]") ? SHMEM_THP_OFF : SHMEM_THP_DENY;
}

/* A memfd's size fixed for good: whoever is passed its fd (every client
 * that maps the arena) cannot truncate it under our mapping, where the
 * next touch of a page past the new end would kill us with SIGBUS. */
static int seal(int fd)
{
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

/* The hugetlbfs attempt: a memfd whose pages come from the reserved pool,
 * populated at mmap (so an empty pool fails here, not at first write). */
static int map_hugetlb(size_t len, const char *name, kvs_huge_t *h)
{
    size_t hlen = (len + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB | MFD_ALLOW_SEALING);
    void *p;

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)hlen) != 0 || seal(fd) != 0)
        goto err_close;
    p = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
             0);
    if (p == MAP_FAILED)
        goto err_close;
    h->base = h->map = p;
    h->len = len;
    h->map_len = hlen;
    h->shared = true;
    h->fd = fd;
    return 0;

err_close:
    close(fd);
    return -ENOMEM;
}

/*
 * The private tmpfs attempt. shmem_enabled governs only the kernel's own
 * shmem mount (memfds, SysV, shared anonymous memory); a tmpfs mounted
 * with huge=always gets 2 MiB pages whatever it says (Documentation/
 * admin-guide/mm/transhuge.rst), and needs no reserved pool. So a child
 * process enters a mount namespace of its own (inside a user namespace of
 * its own when not root, as unprivileged users may mount tmpfs there),
 * mounts a tmpfs there that nobody else can reach, creates an unlinked
 * file in it, passes the fd back and exits. The fd keeps the file and its
 * tmpfs alive; it is a shmem file like a memfd, so clients map it the same
 * way. Where namespaces or mounts are not allowed (a container, systemd's
 * RestrictNamespaces=), the child fails and the memfd is used instead.
 *
 * The child is forked from a process that may have threads, so between
 * fork and _exit it calls only system calls, on strings made beforehand.
 */
struct tmpfs_child {
    bool userns;
    const char *name;
    char uid_map[32], gid_map[32], opts[64];
};

static const char *const tmpfs_dirs[] = {"/tmp", "/dev/shm", "/run", "/mnt",
                                         "/var/tmp"};

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* In the child: sends the file's fd, or the errno of the step that failed
 * (as data, no fd), over sock. Never returns. */
static void tmpfs_child_run(const struct tmpfs_child *c, int sock)
{
    int err = 0, fd = -1, dfd;
    bool userns = c->userns;
    size_t i;

    if (unshare(CLONE_NEWNS | (c->userns ? CLONE_NEWUSER : 0)) != 0) {
        /* Root without CAP_SYS_ADMIN (a container) may still own a user
         * namespace. */
        if (c->userns || errno != EPERM ||
            unshare(CLONE_NEWNS | CLONE_NEWUSER) != 0) {
            err = errno;
            goto send;
        }
        userns = true;
    }
    if (userns &&
        ((write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) ||
         write_file("/proc/self/uid_map", c->uid_map) != 0 ||
         write_file("/proc/self/gid_map", c->gid_map) != 0)) {
        err = errno;
        goto send;
    }
    /* Nothing mounted here may show in the namespace it came from. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        err = errno;
        goto send;
    }
    err = ENOENT;
    for (i = 0; i < sizeof(tmpfs_dirs) / sizeof(tmpfs_dirs[0]); i++) {
        if (mount("kvstash", tmpfs_dirs[i], "tmpfs",
                  MS_NOSUID | MS_NODEV | MS_NOEXEC, c->opts) != 0) {
            err = errno;
            continue;
        }
        /* Named, then unlinked, so that /proc/PID/maps names it. */
        dfd = open(tmpfs_dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        fd = dfd < 0 ? -1
                     : openat(dfd, c->name,
                              O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        err = fd < 0 ? errno : 0;
        if (fd >= 0)
            (void)unlinkat(dfd, c->name, 0);
        break;
    }

send : {
    char cbuf[KVS_FDPASS_SPACE];
    struct iovec iov = {.iov_base = &err, .iov_len = sizeof(err)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    if (fd >= 0)
        kvs_fdpass_attach(&m, cbuf, fd);
    (void)sendmsg(sock, &m, MSG_NOSIGNAL);
    _exit(0);
}
}

/* An fd of a tmpfs file on 2 MiB pages, len bytes, or -errno (the step
 * that failed in the child, for the log). */
static int tmpfs_huge_fd(size_t len, const char *name)
{
    struct tmpfs_child c = {.userns = geteuid() != 0, .name = name};
    char cbuf[KVS_FDPASS_SPACE];
    int err = EIO, fd = -1, sv[2], status, polled;
    struct iovec iov = {.iov_base = &err, .iov_len = sizeof(err)};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = cbuf,
                       .msg_controllen = sizeof(cbuf)};
    struct pollfd pfd;
    struct cmsghdr *cm;
    size_t hlen = (len + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    pid_t pid;

    snprintf(c.uid_map, sizeof(c.uid_map), "%u %u 1", (unsigned)geteuid(),
             (unsigned)geteuid());
    snprintf(c.gid_map, sizeof(c.gid_map), "%u %u 1", (unsigned)getegid(),
             (unsigned)getegid());
    snprintf(c.opts, sizeof(c.opts),
             "huge=always,size=%zu,nr_inodes=16,mode=700", hlen);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        err = errno;
        close(sv[0]);
        close(sv[1]);
        return -err;
    }
    if (pid == 0) {
        close(sv[0]);
        tmpfs_child_run(&c, sv[1]);
    }
    close(sv[1]);
    /* The child makes a handful of system calls; 5 s is a hung kernel. */
    pfd.fd = sv[0];
    pfd.events = POLLIN;
    do
        polled = poll(&pfd, 1, 5000);
    while (polled < 0 && errno == EINTR);
    if (polled != 1) {
        err = ETIMEDOUT;
        kill(pid, SIGKILL);
    } else if (recvmsg(sv[0], &m, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(err)) {
        err = ECHILD; /* it died before it answered */
    } else {
        cm = CMSG_FIRSTHDR(&m);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    }
    close(sv[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (fd < 0)
        return -(err ? err : EIO);
    if (ftruncate(fd, (off_t)len) != 0) {
        err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/*
 * Shared mappings whose file may be cut under them. Only a memfd can be
 * sealed against shrinking; a file on the private tmpfs cannot (tmpfs
 * files refuse F_ADD_SEALS), and every client that maps it holds an fd
 * open for writing, with which ftruncate() works. The pages past the new
 * end are then gone from the file, and a touch of one from user space is
 * a SIGBUS, from the kernel (an O_DIRECT write, a CMA copy) an EFAULT. So
 * every shared mapping is registered here: a SIGBUS inside one puts
 * private zeroed memory where the file's pages went, from the file's new
 * end (rounded up to a page) to the mapping's, and the faulting access
 * goes on there. What a client cut is lost, as if it had written zeros
 * over it, which a mapped client may do anyway; kvs_huge_cut() says it
 * happened, so that the owner stops sharing the mapping. The handler
 * makes only system calls (fstat, mmap) and atomic operations.
 */
#define GUARDS 4

static struct guard {
    _Atomic uintptr_t base; /* 0: free slot */
    size_t len;
    int fd;
    _Atomic uintptr_t from; /* private memory from here on; base + len:
                               none */
    atomic_flag busy;       /* one repair at a time */
} guards[GUARDS];
static struct sigaction guard_prev;
static atomic_flag guard_installed = ATOMIC_FLAG_INIT;

/* Puts private memory past the file's end; true when the file is shorter
 * than the mapping (it was cut, now or before). */
static bool guard_repair(struct guard *g)
{
    uintptr_t base = atomic_load(&g->base), end = base + g->len, from;
    struct stat st;

    if (fstat(g->fd, &st) != 0)
        return atomic_load(&g->from) < end;
    if ((uint64_t)st.st_size >= g->len)
        return atomic_load(&g->from) < end;
    from = base + (((size_t)st.st_size + 4095) & ~(size_t)4095);
    while (atomic_flag_test_and_set(&g->busy))
        ;
    if (from < atomic_load(&g->from) &&
        mmap((void *)from, atomic_load(&g->from) - from, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED)
        atomic_store(&g->from, from);
    atomic_flag_clear(&g->busy);
    return true;
}

static void guard_on_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    int saved = errno; /* fstat and mmap may set it under the code we
                          interrupted */

    for (unsigned i = 0; i < GUARDS; i++) {
        struct guard *g = &guards[i];
        uintptr_t base = atomic_load(&g->base);

        if (base && a >= base && a < base + g->len) {
            (void)guard_repair(g);
            if (a >= atomic_load(&g->from)) {
                errno = saved;
                return; /* the access is made again, on private memory */
            }
        }
    }
    errno = saved;
    /* Not ours: what was there before us decides. */
    if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction)
        guard_prev.sa_sigaction(sig, si, uc);
    else if (guard_prev.sa_handler != SIG_DFL &&
             guard_prev.sa_handler != SIG_IGN && guard_prev.sa_handler)
        guard_prev.sa_handler(sig);
    else
        signal(sig, SIG_DFL); /* the fault comes again and kills us */
}

static int guard_add(const kvs_huge_t *h)
{
    if (!atomic_flag_test_and_set(&guard_installed)) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = guard_on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &guard_prev) != 0)
            return -errno;
    }
    for (unsigned i = 0; i < GUARDS; i++) {
        uintptr_t none = 0;

        if (atomic_load(&guards[i].base) != 0)
            continue;
        guards[i].len = h->len;
        guards[i].fd = h->fd;
        atomic_store(&guards[i].from, (uintptr_t)h->base + h->len);
        if (atomic_compare_exchange_strong(&guards[i].base, &none,
                                           (uintptr_t)h->base))
            return 0;
    }
    return -ENOSPC;
}

static void guard_del(const kvs_huge_t *h)
{
    for (unsigned i = 0; i < GUARDS; i++)
        if (atomic_load(&guards[i].base) == (uintptr_t)h->base)
            atomic_store(&guards[i].base, 0);
}

/* Maps fd (len bytes, shared) at a 2 MiB boundary, inside a larger
 * reservation, so that huge pages can back it. Takes fd. */
static int map_fd_aligned(int fd, size_t len, kvs_huge_t *h)
{
    void *res, *p;
    uintptr_t at;

    res = mmap(NULL, len + HUGE_ALIGN, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        goto err_close;
    at = ((uintptr_t)res + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
    p = mmap((void *)at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             fd, 0);
    if (p == MAP_FAILED) {
        munmap(res, len + HUGE_ALIGN);
        goto err_close;
    }
    h->map = res;
    h->map_len = len + HUGE_ALIGN;
    h->base = p;
    h->len = len;
    h->shared = true;
    h->fd = fd;
    (void)madvise(p, len, MADV_HUGEPAGE);
    return 0;

err_close:
    close(fd);
    return -ENOMEM;
}

/* The shmem attempt: a memfd, where THP can back it only if the kernel's
 * shmem_enabled allows. */
static int map_shmem(size_t len, const char *name, kvs_huge_t *h)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)len) != 0 || seal(fd) != 0) {
        close(fd);
        return -ENOMEM;
    }
    return map_fd_aligned(fd, len, h);
}

static int map_tmpfs(size_t len, const char *name, kvs_huge_t *h, int *why)
{
    int fd = tmpfs_huge_fd(len, name), ret;

    if (fd < 0) {
        *why = -fd;
        return fd;
    }
    ret = map_fd_aligned(fd, len, h);
    *why = ret ? -ret : 0;
    return ret;
}

int kvs_huge_map_shared(size_t len, const char *name, kvs_huge_t *h,
                        enum kvs_huge_kind *kind_out, int *why_out)
{
    enum kvs_huge_kind kind = KVS_HUGE_HUGETLB;
    int ret;

    memset(h, 0, sizeof(*h));
    if (len == 0 || len > SIZE_MAX - HUGE_ALIGN)
        return -ENOMEM;
    if (why_out)
        *why_out = 0;
    if (map_hugetlb(len, name, h) == 0)
        goto out;
    switch (shmem_thp()) {
    case SHMEM_THP_ON:
        kind = KVS_HUGE_SHMEM_THP;
        ret = map_shmem(len, name, h);
        break;
    case SHMEM_THP_OFF: {
        int why;

        kind = KVS_HUGE_TMPFS_THP;
        ret = map_tmpfs(len, name, h, &why);
        if (ret == 0)
            break;
        if (why_out)
            *why_out = why;
    }
        /* fall through */
    default: /* deny: huge=always would be ignored */
        if (why_out && *why_out == 0)
            *why_out = EOPNOTSUPP;
        kind = KVS_HUGE_SHMEM_4K;
        ret = map_shmem(len, name, h);
        break;
    }
    if (ret) {
        memset(h, 0, sizeof(*h));
        return ret;
    }
    populate(h->base, len);
out:
    if (guard_add(h) != 0) {
        kvs_huge_unmap(h);
        return -ENOMEM;
    }
    if (kind_out)
        *kind_out = kind;
    return 0;
}

bool kvs_huge_cut(const kvs_huge_t *h)
{
    for (unsigned i = 0; h->shared && i < GUARDS; i++)
        if (atomic_load(&guards[i].base) == (uintptr_t)h->base)
            return guard_repair(&guards[i]);
    return false;
}

void kvs_huge_unmap(kvs_huge_t *h)
{
    if (h->shared)
        guard_del(h);
    if (h->map)
        munmap(h->map, h->map_len);
    if (h->shared)
        close(h->fd);
    memset(h, 0, sizeof(*h));
}
