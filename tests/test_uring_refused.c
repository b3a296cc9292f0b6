/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io_uring refused: containers often forbid io_uring_setup with a seccomp
 * profile (EPERM), and kernels built without it answer ENOSYS. The store
 * must then fail to open an NVMe tier with KVS_EURING, cleanly (no crash,
 * no leak under ASan), and a DRAM-only store (nvme_bytes = 0) must still
 * open and work, since it needs no io_uring.
 *
 * Each case runs in a child that installs the filter (seccomp filters
 * cannot be removed); the parent reads the child's exit status:
 *   0 as expected, 77 seccomp unavailable (skip), other codes below.
 */
#include <errno.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvstore/store.h"
#include "tests/testutil.h"

enum {
    RC_OK = 0,
    RC_NVME_OPENED = 10, /* the NVMe store opened although refused */
    RC_NVME_WRONG = 11,  /* it failed, with another status */
    RC_DRAM_OPEN = 12,   /* the DRAM-only store did not open */
    RC_DRAM_IO = 13,     /* ... or did not put/get */
};

static void config(kvs_store_config_t *c, const char *dir)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 8u << 20;
    c->nvme_bytes = 16u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 1u << 20;
    c->max_blocks = 256;
    c->io_depth = 8;
}

static int child(const char *dir, int err)
{
    kvs_store_config_t c;
    kvs_store_t *s = NULL;
    int ret;

    if (kvs_test_seccomp(SYS_io_uring_setup, -1,
                         SECCOMP_RET_ERRNO | (uint32_t)err) != 0) {
        fprintf(stderr, "seccomp filters unavailable: %s\n", strerror(errno));
        return KVS_TEST_SKIP;
    }
    config(&c, dir);
    /* Twice: the failed open must leave nothing behind that breaks the
     * next attempt. */
    for (int i = 0; i < 2; i++) {
        ret = kvs_store_open(&c, &s);
        if (ret == 0) {
            kvs_store_close(s);
            return RC_NVME_OPENED;
        }
        if (ret != KVS_EURING) {
            fprintf(stderr, "open with NVMe: %s, expected %s\n",
                    kvs_strerror(ret), kvs_strerror(KVS_EURING));
            return RC_NVME_WRONG;
        }
    }

    c.nvme_bytes = 0;
    ret = kvs_store_open(&c, &s);
    if (ret) {
        fprintf(stderr, "DRAM-only open: %s\n", kvs_strerror(ret));
        return RC_DRAM_OPEN;
    }
    uint32_t ns;
    uint8_t in[5000], out[5000];
    kvs_test_fill(in, sizeof(in), 1);
    kvs_iov_t part = {in, sizeof(in)};
    kvs_put_args_t pa = {.key = "k",
                         .key_len = 1,
                         .parts = &part,
                         .nparts = 1,
                         .flags = KVS_PUT_DURABLE};
    kvs_get_args_t ga = {
        .key = "k", .key_len = 1, .buf = out, .cap = sizeof(out)};
    ret = kvs_store_ns_open(s, "ns", 0, &ns);
    pa.ns = ga.ns = ns;
    if (ret == 0)
        ret = kvs_store_put(s, &pa);
    if (ret == 0)
        ret = kvs_store_get(s, &ga, NULL);
    if (ret == 0)
        ret = kvs_store_flush(s);
    kvs_store_close(s);
    if (ret || memcmp(in, out, sizeof(in)) != 0) {
        fprintf(stderr, "DRAM-only put/get: %s\n", kvs_strerror(ret));
        return RC_DRAM_IO;
    }
    return RC_OK;
}

static void run_case(const char *name, int err)
{
    const char *dir = kvs_test_dir(name);
    int st;

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exit(child(dir, err)); /* exit(), so LeakSanitizer runs */
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fail_msg("child died of signal %d", WTERMSIG(st));
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == KVS_TEST_SKIP)
        skip();
    assert_int_equal(WEXITSTATUS(st), RC_OK);
    kvs_test_rmtree(dir);
}

static void test_eperm(void **state)
{
    (void)state;
    run_case("uring_eperm", EPERM);
}

static void test_enosys(void **state)
{
    (void)state;
    run_case("uring_enosys", ENOSYS);
}

/* True if this process may install seccomp filters (tried in a child). */
static bool seccomp_works(void)
{
    int st;
    pid_t pid = fork();

    if (pid == 0)
        _exit(kvs_test_seccomp(SYS_getppid, 12345, SECCOMP_RET_ALLOW) ? 1 : 0);
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
           WEXITSTATUS(st) == 0;
}

int main(void)
{
    if (!seccomp_works()) {
        printf("skip: cannot install a seccomp filter here\n");
        return KVS_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eperm),
        cmocka_unit_test(test_enosys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
