/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A block streamed from P to D is sealed on D with the checksum P settled
 * at its own seal (END carries it, KVS_WIRE_STREAM_SUM), not one D
 * computes over its copy, and a copy that differs from P's bytes is never
 * served from D's disk:
 *  1. live: the prefill client writes a block in place in P's arena while
 *     the decode client fetches it through D; after the seal one bit of
 *     D's copy is flipped (through D's mapping); once D has written the
 *     block to its NVMe (at its stop) and starts again on the same data,
 *     the read back fails its check (a miss, corrupt_reads counted, and
 *     VERIFY counts it bad), never other bytes;
 *  2. sealed: one bit of P's copy is flipped after P sealed it, then D
 *     fetches it. D's copy then holds the flipped bytes with P's checksum:
 *     read back from D's disk it fails. A D that checksummed its own copy
 *     would have stored the flipped bytes as good and served them.
 * A block left alone is read back from D's disk intact (the checksum P
 * sent is the one D's reader expects).
 */
#include <stdio.h>
#include <string.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define NP 4
#define PART (256u << 10)
#define BLK (NP * PART)
#define MIB (1u << 20)

static uint8_t src[3][BLK];
static uint32_t lens[NP];

static kvs_client_key_t key_of(const char *s)
{
    kvs_client_key_t k = {.data = s, .len = (uint32_t)strlen(s)};

    return k;
}

/* Puts src[b] as key in place in P's arena, part by part, and seals it. */
static void put_inplace(kvs_client_t *cp, const char *key, int b)
{
    kvs_client_key_t k = key_of(key);
    kvs_stream_put_t *put;

    CHECK_EQ(kvs_stream_put_begin_inplace(cp, &k, lens, NP, 0, 0, NULL, &put),
             0);
    for (uint32_t p = 0; p < NP; p++) {
        void *dst;
        size_t len;

        CHECK_EQ(kvs_stream_put_buf(put, p, &dst, &len), 0);
        CHECK(len == PART);
        memcpy(dst, src[b] + (size_t)p * PART, PART);
        CHECK_EQ(kvs_stream_put_commit(put, p), 0);
    }
    CHECK_EQ(kvs_stream_put_seal(put), 0);
}

/* A get from D over UCX: its status; when 0, the bytes are src[b]'s and
 * *tier says where they came from. */
static int get_block(kvs_client_t *c, const char *key, int b, uint8_t *tier)
{
    static uint8_t buf[BLK];
    kvs_client_get_t g = {
        .key = key_of(key), .buf = buf, .cap = sizeof(buf)};

    kvs_client_get_batch(c, &g, 1, 0);
    if (g.status)
        return g.status;
    CHECK_EQ(g.len, BLK);
    CHECK(memcmp(buf, src[b], BLK) == 0);
    *tier = g.tier;
    return 0;
}

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char psock[700], dsock[700];
    const char *dargs[] = {"--set=store.dram_mib=16",
                           "--set=store.compress_level=0", NULL};
    kvs_stream_block_t bl[2] = {{.buf = NULL}, {.buf = NULL}};
    kvs_client_t *cp, *cd, *nd;
    kvs_stream_put_t *put;
    kvs_stream_fetch_t *f;
    kvs_client_key_t k;
    kvs_shm_block_t v;
    const void *d;
    size_t len;
    uint8_t tier = 0;
    uint64_t corrupt0, refs0, checked = 0, bad = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    for (int b = 0; b < 3; b++)
        kvs_test_fill(src[b], BLK, 900 + (uint64_t)b);
    kvs_e2e_daemon_init(&D, "shm_stream_sum-d");
    kvs_e2e_daemon_init(&P, "shm_stream_sum-p");
    shmtest_start_prefill(&P, psock, sizeof(psock));
    shmtest_start_decode(&D, dsock, sizeof(dsock), &P, dargs);
    cp = shmtest_connect(&P, psock, "s", NULL);
    cd = shmtest_connect(&D, dsock, "s", NULL);
    CHECK_EQ(kvs_shm_status(cp), 0);
    CHECK_EQ(kvs_shm_status(cd), 0);
    nd = kvs_e2e_connect(&D, "s", NULL);
    corrupt0 = kvs_e2e_stat(nd, "corrupt_reads");
    refs0 = kvs_e2e_stat(nd, "refs");

    /* 1. Live ("flip-d"), and one left alone ("intact"). */
    k = key_of("flip-d");
    bl[0].key = k;
    bl[1].key = key_of("intact");
    CHECK_EQ(kvs_stream_put_begin_inplace(cp, &k, lens, NP, 0, 0, NULL, &put),
             0);
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", bl, 2, 30000, &f), 0);
    for (uint32_t p = 0; p < NP; p++) {
        void *dst;

        CHECK_EQ(kvs_stream_put_buf(put, p, &dst, &len), 0);
        memcpy(dst, src[0] + (size_t)p * PART, PART);
        CHECK_EQ(kvs_stream_put_commit(put, p), 0);
    }
    CHECK_EQ(kvs_stream_put_seal(put), 0);
    put_inplace(cp, "intact", 1);
    for (uint32_t b = 0; b < 2; b++) {
        CHECK_EQ(kvs_stream_wait(f, b, KVS_STREAM_BLOCK, -1), 0);
        CHECK_EQ(kvs_stream_data(f, b, KVS_STREAM_BLOCK, &d, &len), 0);
        CHECK(len == BLK && memcmp(d, src[b], BLK) == 0);
    }
    /* Sealed on D: one bit of D's copy of "flip-d" changes (the mapping is
     * writable; the fetch only hands it out read-only). */
    CHECK_EQ(kvs_stream_data(f, 0, KVS_STREAM_BLOCK, &d, &len), 0);
    ((uint8_t *)(uintptr_t)d)[12345] ^= 0x10;
    kvs_stream_fetch_destroy(f);

    /* 2. Sealed ("flip-p"): P's copy changes after P's seal. */
    put_inplace(cp, "flip-p", 2);
    CHECK_EQ(kvs_shm_view(cp, "flip-p", 6, 0, NULL, 0, &v), 0);
    CHECK(v.len == BLK);
    ((uint8_t *)v.data)[777] ^= 0x01;
    CHECK_EQ(kvs_shm_release(cp, v.id), 0);
    bl[0].key = key_of("flip-p");
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", bl, 1, 30000, &f), 0);
    CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
    CHECK_EQ(kvs_stream_data(f, 0, KVS_STREAM_BLOCK, &d, &len), 0);
    CHECK(len == BLK && ((const uint8_t *)d)[777] == (src[2][777] ^ 0x01));
    kvs_stream_fetch_destroy(f);

    shmtest_wait_stat(nd, "refs", refs0); /* the fetches' CANCELs are in */

    /* D stops (its DRAM blocks are written to its NVMe tier as it does)
     * and starts again on the same data: every read is from disk. */
    kvs_client_destroy(nd);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    shmtest_start_decode(&D, dsock, sizeof(dsock), &P, dargs);
    nd = kvs_e2e_connect(&D, "s", NULL);
    corrupt0 = kvs_e2e_stat(nd, "corrupt_reads");
    CHECK_EQ(kvs_client_verify(nd, &checked, &bad), 0);
    CHECK_EQ(checked, 3);
    CHECK_EQ(bad, 2);
    CHECK_EQ(get_block(nd, "intact", 1, &tier), 0);
    CHECK_EQ(tier, KVS_TIER_NVME);
    CHECK_EQ(get_block(nd, "flip-d", 0, &tier), KVS_ENOTFOUND);
    CHECK_EQ(get_block(nd, "flip-p", 2, &tier), KVS_ENOTFOUND);
    CHECK(kvs_e2e_stat(nd, "corrupt_reads") >= corrupt0 + 2);
    printf("shm_stream_sum: a copy that differs from P's checksum is a miss "
           "from D's disk: ok\n");

    kvs_client_destroy(nd);
    kvs_client_destroy(cp);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("shm_stream_sum: ok\n");
    return 0;
}
