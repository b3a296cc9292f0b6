/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A leased view of a block on NVMe only does not hold up the other
 * clients of the shm socket: its disk read runs on an I/O thread while
 * the service goes on answering. Run under faultfs-run, with the daemon's
 * data directory on faultfs and every read of the data file delayed by
 * DELAY_US while one client views a cold block; a second client's view
 * of a block in DRAM, asked after the cold one, is answered long before
 * it. (With the read on the service's thread, the second view waited for
 * the first: its answer came after it.) Both views' bytes are checked,
 * and nothing stays pinned.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define MIB (1u << 20)
#define FILLS 96 /* 1 MiB blocks: more than the 64 MiB arena holds */
#define DELAY_US 400000

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void check_view(kvs_client_t *c, const char *key, uint64_t seed,
                       uint8_t tier)
{
    uint8_t *want = malloc(MIB); /* each thread its own */
    kvs_shm_block_t v;

    CHECK(want != NULL);
    kvs_test_fill(want, MIB, seed);
    CHECK_EQ(kvs_shm_view(c, key, (uint32_t)strlen(key), 0, NULL, 0, &v), 0);
    CHECK(v.len == MIB);
    CHECK_EQ(v.tier, tier);
    CHECK(memcmp(v.data, want, MIB) == 0);
    CHECK_EQ(kvs_shm_release(c, v.id), 0);
    free(want);
}

struct cold_arg {
    kvs_client_t *c;
    _Atomic uint64_t sent_ns, done_ns;
};

static void *cold_view(void *p)
{
    struct cold_arg *a = p;

    atomic_store(&a->sent_ns, mono_ns());
    check_view(a->c, "cold", 1, KVS_TIER_NVME);
    atomic_store(&a->done_ns, mono_ns());
    return NULL;
}

int main(void)
{
    static uint8_t buf[MIB];
    const char *const extra[] = {"--set=store.nvme_mib=256",
                                 "--set=daemon.lease_max_ms=60000", NULL};
    const char *mnt = kvs_test_faultfs();
    struct cold_arg a = {0};
    char sock[700], target[600], data[600];
    kvs_e2e_daemon_t d;
    kvs_client_t *c1, *c2;
    uint64_t warm_ns;
    pthread_t th;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!mnt) {
        printf("shm_cold: SKIP: run under faultfs-run (KVS_FAULTFS)\n");
        return KVS_TEST_SKIP;
    }
    kvs_e2e_daemon_init(&d, "shm_cold");
    snprintf(target, sizeof(target), "%s/shm_cold", mnt);
    snprintf(data, sizeof(data), "%s/data", d.dir);
    CHECK(mkdir(target, 0755) == 0);
    CHECK(symlink(target, data) == 0);
    shmtest_start(&d, sock, sizeof(sock), extra);
    c1 = shmtest_connect(&d, sock, "ns", NULL);
    c2 = shmtest_connect(&d, sock, "ns", NULL);

    /* "cold" first, pushed out of DRAM by the fills; "warm" last. */
    kvs_test_fill(buf, MIB, 1);
    CHECK_EQ(kvs_shm_put(c1, "cold", 4, buf, MIB, 0), 0);
    for (int i = 0; i < FILLS; i++) {
        char key[16];

        snprintf(key, sizeof(key), "fill-%d", i);
        kvs_test_fill(buf, MIB, 100 + (uint64_t)i);
        CHECK_EQ(kvs_shm_put(c1, key, (uint32_t)strlen(key), buf, MIB, 0), 0);
    }
    kvs_test_fill(buf, MIB, 2);
    CHECK_EQ(kvs_shm_put(c1, "warm", 4, buf, MIB, 0), 0);
    /* Only reads slow down: write-behind of the last fills goes on at
     * full speed, and the one read is the cold view's. */
    CHECK_EQ(
        kvs_test_faultfs_cmd("rule delay data.kvs op read arg %d", DELAY_US),
        0);
    a.c = c1;
    CHECK(pthread_create(&th, NULL, cold_view, &a) == 0);
    while (!atomic_load(&a.sent_ns))
        usleep(1000);
    usleep(100000); /* the cold VIEW is in, its read under way */
    check_view(c2, "warm", 2, KVS_TIER_DRAM);
    warm_ns = mono_ns();
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(kvs_test_faultfs_cmd("clear"), 0);
    printf("shm_cold: cold view %.0f ms, warm view answered %.0f ms before "
           "it\n",
           (double)(a.done_ns - a.sent_ns) / 1e6,
           ((double)a.done_ns - (double)warm_ns) / 1e6);
    /* The cold view took the delay; the warm one did not wait for it. */
    CHECK(a.done_ns - a.sent_ns >= DELAY_US * 1000ull);
    CHECK(warm_ns + DELAY_US * 500ull < a.done_ns);

    CHECK_EQ(kvs_e2e_stat(c1, "shm_views"), 0);
    CHECK_EQ(kvs_e2e_stat(c1, "refs"), 0);
    kvs_client_destroy(c2);
    kvs_client_destroy(c1);
    kvs_e2e_daemon_stop(&d);
    kvs_test_rmtree(d.dir);
    printf("shm_cold: ok\n");
    return 0;
}
