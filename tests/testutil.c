/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: see testutil.h. */
#include "tests/testutil.h"
#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <dirent.h>
#include <ftw.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kvs_test_rmtree(const char *path)
{
    return kvs_fs_rmtree(path);
}

const char *kvs_test_dir(const char *name)
{
    static char path[PATH_MAX];
    const char *root = getenv("KVS_TEST_DIR");
    int n;

    if (!root || !*root)
        root = "./var/test";
    n = snprintf(path, sizeof(path), "%s/%s.%d", root, name, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "test dir name too long\n");
        exit(1);
    }
    kvs_test_rmtree(path);
    if (kvs_fs_mkdir_p(path) < 0) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

uint64_t kvs_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kvs_test_fill(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t st = seed, v = 0;

    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0)
            v = kvs_test_rand(&st);
        p[i] = (uint8_t)(v >> ((i & 7) * 8));
    }
}

int kvs_test_seccomp(long nr, int match_fd, uint32_t action)
{
#if defined(__x86_64__)
    const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
    return -EINVAL;
#endif
    /* Jump offsets count the instructions skipped; the last one allows. */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                 offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)match_fd, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof(f) / sizeof(f[0])), f};

    if (match_fd < 0) /* any first argument: skip the compare */
        f[5] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -errno;
    return 0;
}

int kvs_test_find_fd(const char *path)
{
    struct stat want, st;
    DIR *d;
    struct dirent *de;
    int found = -1;

    if (stat(path, &want) < 0)
        return -1;
    d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == dirfd(d))
            continue;
        if (fstat((int)fd, &st) == 0 && st.st_dev == want.st_dev &&
            st.st_ino == want.st_ino) {
            found = (int)fd;
            break;
        }
    }
    closedir(d);
    return found;
}

const char *kvs_test_faultfs(void)
{
    const char *m = getenv("KVS_FAULTFS");

    return m && *m ? m : NULL;
}

int kvs_test_faultfs_cmd(const char *fmt, ...)
{
    char path[PATH_MAX], line[512];
    const char *m = kvs_test_faultfs();
    va_list ap;
    int fd, n, ret = 0;

    if (!m)
        return -ENOENT;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 1)
        return -EINVAL;
    line[n++] = '\n';
    snprintf(path, sizeof(path), "%s/.faultfs", m);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, line, (size_t)n) != n)
        ret = -errno;
    close(fd);
    return ret;
}

uint64_t kvs_test_faultfs_stat(const char *key)
{
    char path[PATH_MAX], text[4096], *p;
    const char *m = kvs_test_faultfs();
    size_t klen = strlen(key);
    ssize_t n;
    int fd;

    if (!m)
        return UINT64_MAX;
    snprintf(path, sizeof(path), "%s/.faultfs", m);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return UINT64_MAX;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return UINT64_MAX;
    text[n] = '\0';
    for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != ' ')
            continue;
        if (!strcmp(key, "power"))
            return strncmp(p + klen + 1, "off", 3) == 0;
        return strtoull(p + klen + 1, NULL, 10);
    }
    return UINT64_MAX;
}

pid_t kvs_test_fork(void (*fn)(void *arg, int tell), void *arg, int *heard)
{
    int fds[2];
    pid_t pid;

    if (pipe(fds) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        fn(arg, fds[1]);
        fflush(NULL);
        _exit(0);
    }
    close(fds[1]);
    *heard = fds[0];
    return pid;
}
