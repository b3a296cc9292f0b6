/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the test programs: scratch directories under
 * $KVS_TEST_DIR (default ./var/test), deterministic random bytes, and the
 * skip exit code CTest understands.
 */
#ifndef KVS_TESTUTIL_H
#define KVS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KVS_TEST_SKIP 77

/* Creates a fresh, empty directory for one test and returns its path in a
 * static buffer (valid until the next call). Aborts the test on failure. */
const char *kvs_test_dir(const char *name);

/* Removes a directory tree; returns 0 or -errno. */
int kvs_test_rmtree(const char *path);

/* Fills buf with bytes that depend only on seed. */
void kvs_test_fill(void *buf, size_t len, uint64_t seed);

/* A small deterministic PRNG (splitmix64). */
uint64_t kvs_test_rand(uint64_t *state);

/*
 * Installs a seccomp filter on the calling process (and its future threads
 * and children) that answers the system call nr with action, a
 * SECCOMP_RET_* value such as SECCOMP_RET_ERRNO | EPERM or
 * SECCOMP_RET_KILL_PROCESS. With match_fd >= 0 only calls whose first
 * argument is that file descriptor are affected. Sets no_new_privs first.
 * Returns 0 or -errno (-EINVAL where seccomp filters are not supported).
 */
int kvs_test_seccomp(long nr, int match_fd, uint32_t action);

/* The descriptor this process has open on path (compared by device and
 * inode), or -1. */
int kvs_test_find_fd(const char *path);

/*
 * The fault-injecting file system (tests/faultfs/). $KVS_FAULTFS names its
 * mount point when a test runs under faultfs-run; NULL otherwise.
 * kvs_test_faultfs_cmd() writes one command line to its control file
 * (0 or -errno); kvs_test_faultfs_stat() reads one value from it ("power"
 * reads 1 when the power is off), or UINT64_MAX when it cannot.
 */
/*
 * Forks a child that runs fn(arg, tell), then exits 0. tell is the write
 * end of a pipe whose read end the parent gets in *heard, so that the
 * child can say when it got somewhere; the parent's copy of tell is
 * closed. Returns the child's pid. Fork before the process opens UCX: UCX
 * state does not survive a fork.
 */
pid_t kvs_test_fork(void (*fn)(void *arg, int tell), void *arg, int *heard);

const char *kvs_test_faultfs(void);
int kvs_test_faultfs_cmd(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
uint64_t kvs_test_faultfs_stat(const char *key);

#endif
