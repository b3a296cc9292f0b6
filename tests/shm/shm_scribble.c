/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A mapped client that writes over the whole arena never makes the daemon
 * serve wrong part boundaries, nor crashes it (issue 21, "Safety"). The
 * client fills every word of the mapping outside a block's own bytes with
 * a plausible part length (the block's length over its part count, so
 * that a part table built from it adds up to the block's length, which is
 * all a reader could check): the block's parts must still come back as
 * they were put, over UCX and through a leased view, from DRAM and, after
 * write-behind has written it from the arena to NVMe, from disk. A block
 * whose own bytes were overwritten too is a miss once read from disk (its
 * checksum, kept outside the arena, fails), never other bytes.
 *
 * Blocks are written raw (compression off), so write-behind takes the
 * path that writes a block from the arena without a copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define NPARTS 4
#define MIB (1u << 20)

static const uint32_t lens[NPARTS] = {1000, 3000, 5000, 7000};
#define TOTAL 16000u
#define FAKE (TOTAL / NPARTS) /* a part length that adds up */

/* This process's mapping of the arena (the daemon's memfd, or its file
 * on a private tmpfs: common/hugemem.c). */
static void arena_map(uint8_t **base, size_t *len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];

    CHECK(f);
    *base = NULL;
    while (fgets(line, sizeof(line), f)) {
        uintptr_t lo, hi;
        if (strstr(line, "kvstash-arena") &&
            sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2) {
            CHECK(*base == NULL); /* one mapping: one attached client */
            *base = (uint8_t *)lo;
            *len = hi - lo;
        }
    }
    fclose(f);
    CHECK(*base != NULL);
}

/* Writes FAKE into every aligned word of the mapping outside the n
 * extents keep[i] (TOTAL bytes each). */
static void scribble(const uint8_t *const *keep, unsigned n)
{
    uint8_t *base;
    size_t len;

    arena_map(&base, &len);
    for (size_t off = 0; off + 4 <= len; off += 4) {
        uint8_t *p = base + off;
        bool skip = false;
        for (unsigned i = 0; i < n; i++)
            skip |= p + 4 > keep[i] && p < keep[i] + TOTAL;
        if (!skip) {
            uint32_t v = FAKE;
            memcpy(p, &v, 4);
        }
    }
}

static uint8_t *put_block(kvs_client_t *c, const char *key, uint64_t seed)
{
    kvs_iov_t parts[NPARTS];
    kvs_client_put_t put = {
        .key = {key, (uint32_t)strlen(key)}, .parts = parts, .nparts = NPARTS};
    kvs_shm_block_t b;

    for (uint32_t i = 0; i < NPARTS; i++)
        parts[i] = (kvs_iov_t){NULL, lens[i]};
    CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
    CHECK(b.len == TOTAL);
    kvs_test_fill(b.data, TOTAL, seed);
    CHECK_EQ(kvs_shm_commit(c, b.id), 0);
    return b.data;
}

/* A get over UCX: its status, and when 0, the parts as put, the bytes as
 * put (seed, unless 0: bytes in DRAM a client overwrote are what it
 * wrote) and the tier it came from in *tier. */
static int get_block(kvs_client_t *c, const char *key, uint64_t seed,
                     uint8_t *tier)
{
    static uint8_t buf[TOTAL], want[TOTAL];
    uint32_t got[NPARTS + 4];
    kvs_client_get_t g = {.key = {key, (uint32_t)strlen(key)},
                          .buf = buf,
                          .cap = sizeof(buf),
                          .part_lens = got,
                          .part_cap = NPARTS + 4};

    kvs_client_get_batch(c, &g, 1, 0);
    if (g.status)
        return g.status;
    CHECK_EQ(g.len, TOTAL);
    CHECK_EQ(g.nparts, NPARTS);
    for (uint32_t i = 0; i < NPARTS; i++)
        CHECK_EQ(got[i], lens[i]);
    kvs_test_fill(want, TOTAL, seed);
    CHECK(!seed || memcmp(buf, want, TOTAL) == 0);
    *tier = g.tier;
    return 0;
}

static void check_view(kvs_client_t *c, const char *key)
{
    uint32_t got[NPARTS + 4];
    kvs_shm_block_t v;

    CHECK_EQ(
        kvs_shm_view(c, key, (uint32_t)strlen(key), 0, got, NPARTS + 4, &v), 0);
    CHECK_EQ(v.nparts, NPARTS);
    for (uint32_t i = 0; i < NPARTS; i++)
        CHECK_EQ(got[i], lens[i]);
    CHECK_EQ(kvs_shm_release(c, v.id), 0);
}

int main(void)
{
    const char *const extra[] = {"--set=store.dram_mib=16",
                                 "--set=store.compress_level=0", NULL};
    static uint8_t filler[MIB];
    const uint8_t *keep[2];
    kvs_e2e_daemon_t d;
    kvs_client_t *c, *plain;
    char sock[700];
    uint8_t tier = 0;

    kvs_e2e_daemon_init(&d, "shm_scribble");
    shmtest_start(&d, sock, sizeof(sock), extra);
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_shm_status(c), 0);
    plain = kvs_e2e_connect(&d, "ns", NULL);

    /* "cold" and "lost" are left alone until write-behind takes them;
     * "hot" is read from DRAM. */
    keep[0] = put_block(c, "cold", 1);
    (void)put_block(c, "lost", 2); /* its own bytes are overwritten too */
    keep[1] = put_block(c, "hot", 3);
    scribble(keep, 2);

    CHECK_EQ(get_block(plain, "hot", 3, &tier), 0);
    CHECK_EQ(tier, KVS_TIER_DRAM);
    check_view(c, "hot");

    /* Push "cold" and "lost" out of DRAM: 40 MiB through a 16 MiB arena
     * (the NVMe tier of 64 MiB keeps them). */
    for (int i = 0; i < 40; i++) {
        char key[32];
        snprintf(key, sizeof(key), "filler%d", i);
        memset(filler, i, sizeof(filler));
        CHECK_EQ(kvs_client_put(plain, key, (uint32_t)strlen(key), filler,
                                sizeof(filler), 0),
                 0);
    }
    CHECK_EQ(get_block(plain, "cold", 1, &tier), 0);
    CHECK_EQ(tier, KVS_TIER_NVME);
    check_view(c, "cold"); /* read back into the arena for its view */
    CHECK_EQ(get_block(plain, "lost", 2, &tier), KVS_ENOTFOUND);
    CHECK(kvs_e2e_stat(plain, "corrupt_reads") >= 1);

    /* Everything overwritten once more, the blocks' own bytes included:
     * still serving, with their boundaries. */
    scribble(NULL, 0);
    check_view(c, "hot");
    CHECK_EQ(get_block(plain, "hot", 0, &tier), 0);
    CHECK_EQ(get_block(plain, "cold", 0, &tier), 0);

    kvs_client_destroy(plain);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("shm_scribble: ok\n");
    return 0;
}
