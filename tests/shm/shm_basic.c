/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Put and get in place through the daemon's shared arena, every byte
 * checked end to end: a block reserved in three parts, written in the
 * mapping and committed is read back by a client without shared memory
 * (over UCX) and through a leased view, parts and all; an aborted
 * reservation leaves nothing; a reservation is invisible until committed
 * and spent after; a lease that runs out is reported at release; a block
 * on NVMe only is read into the arena for its view; the one-copy forms
 * work both attached and not.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define MIB (1u << 20)

static void put_parts(kvs_client_t *c, const char *key, const uint32_t *lens,
                      uint32_t n, uint64_t seed)
{
    kvs_iov_t parts[4];
    kvs_client_put_t put = {.key = {key, (uint32_t)strlen(key)},
                            .parts = parts,
                            .nparts = n};
    kvs_shm_block_t b;
    uint64_t total = 0;

    for (uint32_t i = 0; i < n; i++) {
        parts[i].base = NULL;
        parts[i].len = lens[i];
        total += lens[i];
    }
    CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
    CHECK(b.len == total && b.nparts == n && b.id != 0);
    kvs_test_fill(b.data, b.len, seed);
    /* Not visible before commit. */
    CHECK_EQ(kvs_e2e_present(c, key), 0);
    CHECK_EQ(kvs_shm_commit(c, b.id), 0);
    CHECK_EQ(kvs_shm_commit(c, b.id), KVS_ENOTFOUND); /* spent */
}

static void check_view(kvs_client_t *c, const char *key, const uint32_t *lens,
                       uint32_t n, uint64_t seed, uint8_t tier)
{
    static uint8_t want[4 * MIB];
    uint32_t got[8];
    kvs_shm_block_t v;
    uint64_t total = 0;

    for (uint32_t i = 0; i < n; i++)
        total += lens[i];
    kvs_test_fill(want, total, seed);
    CHECK_EQ(kvs_shm_view(c, key, (uint32_t)strlen(key), 0, got, 8, &v), 0);
    CHECK(v.len == total && v.nparts == n);
    CHECK_EQ(v.tier, tier);
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(got[i], lens[i]);
    CHECK(memcmp(v.data, want, total) == 0);
    CHECK_EQ(kvs_shm_release(c, v.id), 0);
    CHECK_EQ(kvs_shm_release(c, v.id), KVS_ENOTFOUND);
}

int main(void)
{
    static uint8_t buf[4 * MIB], want[4 * MIB];
    const uint32_t lens[3] = {4096, 100001, 1};
    const char *const extra[] = {"--set=store.nvme_mib=256",
                                 "--set=daemon.lease_max_ms=60000", NULL};
    kvs_e2e_daemon_t d;
    char sock[700];
    kvs_client_t *c, *plain;
    kvs_shm_block_t b, v;
    size_t len;

    kvs_e2e_daemon_init(&d, "shm_basic");
    shmtest_start(&d, sock, sizeof(sock), extra);
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_shm_status(c), 0);
    plain = kvs_e2e_connect(&d, "ns", NULL);
    CHECK_EQ(kvs_shm_status(plain), -EOPNOTSUPP);

    /* Reserve, write in place, commit; read over UCX and in place. */
    put_parts(c, "three", lens, 3, 7);
    CHECK_EQ(kvs_client_get(plain, "three", 5, buf, sizeof(buf), &len), 0);
    kvs_test_fill(want, 104098, 7);
    CHECK(len == 104098 && memcmp(buf, want, len) == 0);
    check_view(c, "three", lens, 3, 7, KVS_TIER_DRAM);
    CHECK_EQ(kvs_shm_view(c, "absent", 6, 0, NULL, 0, &v), KVS_ENOTFOUND);

    /* Abort: nothing left, the space back. */
    {
        kvs_iov_t part = {NULL, MIB};
        kvs_client_put_t put = {.key = {"gone", 4}, .parts = &part,
                                .nparts = 1};
        uint64_t used = kvs_e2e_stat(c, "dram_used_bytes");

        CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
        CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 1);
        memset(b.data, 0xab, b.len);
        CHECK_EQ(kvs_shm_abort(c, b.id), 0);
        CHECK_EQ(kvs_shm_commit(c, b.id), KVS_ENOTFOUND);
        CHECK_EQ(kvs_e2e_present(c, "gone"), 0);
        CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 0);
        CHECK_EQ(kvs_e2e_stat(c, "dram_used_bytes"), used);
    }
    CHECK_EQ(kvs_shm_commit(c, 12345), KVS_ENOTFOUND);
    CHECK_EQ(kvs_shm_release(c, 0), KVS_ENOTFOUND);

    /* Commits posted without waiting: settled by a later call or flush. */
    {
        kvs_iov_t part = {NULL, 8192};
        kvs_client_put_t put = {.key = {"nb-1", 4}, .parts = &part,
                                .nparts = 1};
        kvs_shm_block_t b1, b2;
        int st1 = 0, st2 = 0, st3 = 0;

        CHECK_EQ(kvs_shm_reserve(c, &put, &b1), 0);
        kvs_test_fill(b1.data, b1.len, 21);
        put.key.data = "nb-2";
        CHECK_EQ(kvs_shm_reserve(c, &put, &b2), 0);
        kvs_test_fill(b2.data, b2.len, 22);
        CHECK_EQ(kvs_shm_commit_nb(c, b1.id, &st1), 0);
        CHECK_EQ(st1, 1);
        CHECK_EQ(kvs_shm_commit_nb(c, b2.id, &st2), 0);
        CHECK_EQ(kvs_shm_commit_nb(c, b2.id, &st3), 0); /* spent by then */
        CHECK_EQ(kvs_shm_flush(c), 0);
        CHECK_EQ(st1, 0);
        CHECK_EQ(st2, 0);
        CHECK_EQ(st3, KVS_ENOTFOUND);
        CHECK_EQ(kvs_client_get(plain, "nb-2", 4, buf, sizeof(buf), &len), 0);
        kvs_test_fill(want, 8192, 22);
        CHECK(len == 8192 && memcmp(buf, want, len) == 0);
        /* More than the 32 outstanding: the 33rd waits for the oldest. */
        static int sts[40];
        for (int i = 0; i < 40; i++)
            CHECK_EQ(kvs_shm_commit_nb(c, 777, &sts[i]), 0);
        CHECK_EQ(kvs_shm_flush(c), 0);
        for (int i = 0; i < 40; i++)
            CHECK_EQ(sts[i], KVS_ENOTFOUND);
        CHECK_EQ(kvs_shm_commit_nb(plain, 1, &st1), -EOPNOTSUPP);
    }

    /* A lease that runs out: the daemon unpins, release says so. */
    CHECK_EQ(kvs_shm_view(c, "three", 5, 20, NULL, 0, &v), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views"), 1);
    shmtest_wait_stat(c, "shm_views", 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views_expired"), 1);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK_EQ(kvs_shm_release(c, v.id), KVS_EEXPIRED);

    /* One copy each way, attached and not. */
    kvs_test_fill(want, 3 * MIB, 11);
    CHECK_EQ(kvs_shm_put(c, "one", 3, want, 3 * MIB, 0), 0);
    CHECK_EQ(kvs_shm_get(plain, "one", 3, buf, sizeof(buf), &len), 0);
    CHECK(len == 3 * MIB && memcmp(buf, want, len) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(kvs_shm_get(c, "one", 3, buf, sizeof(buf), &len), 0);
    CHECK(len == 3 * MIB && memcmp(buf, want, len) == 0);
    CHECK_EQ(kvs_shm_get(c, "one", 3, buf, 10, &len), -ENOBUFS);
    CHECK(len == 3 * MIB);
    kvs_test_fill(want, MIB, 12);
    CHECK_EQ(kvs_shm_put(plain, "two", 3, want, MIB, 0), 0);
    CHECK_EQ(kvs_shm_get(c, "two", 3, buf, sizeof(buf), &len), 0);
    CHECK(len == MIB && memcmp(buf, want, len) == 0);

    /* Push a block out of DRAM (the arena is 64 MiB), then view it: read
     * from NVMe into the arena first. */
    put_parts(c, "cold", lens, 3, 8);
    for (int i = 0; i < 96; i++) {
        char key[16];

        snprintf(key, sizeof(key), "fill-%d", i);
        kvs_test_fill(want, MIB, 100 + (uint64_t)i);
        CHECK_EQ(kvs_shm_put(c, key, (uint32_t)strlen(key), want, MIB, 0), 0);
    }
    check_view(c, "cold", lens, 3, 8, KVS_TIER_NVME);

    CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    kvs_client_destroy(plain);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("shm_basic: ok\n");
    return 0;
}
