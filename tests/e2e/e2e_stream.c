/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming between two real kvstashd (prefill side P, decode side D):
 *  - a fetch through D of blocks that a client is still putting on P part
 *    by part: parts arrive before the block is sealed, bytes are right,
 *    and neither sidecar shows the block before it is complete;
 *  - blocks fetched are stored on D (the next turn hits locally);
 *  - a fetch of blocks already sealed on P, and of a missing block;
 *  - a put aborted on P fails its block on D, which never becomes visible;
 *  - a push from P's client straight into D's store;
 *  - a daemon with another secret refuses the link.
 */
#include <string.h>
#include <unistd.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NB 3
#define NP 8

static const uint32_t part_len[NP] = {65536,    4096, 300000, 65536,
                                      1u << 20, 128,  65536,  77777};

static uint64_t blk_len(void)
{
    uint64_t n = 0;

    for (int i = 0; i < NP; i++)
        n += part_len[i];
    return n;
}

static uint64_t part_off(uint32_t p)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < p; i++)
        n += part_len[i];
    return n;
}

static uint8_t src[NB][2u << 20], dst[NB][2u << 20];

int main(void)
{
    kvs_e2e_daemon_t P, D, E;
    char pport[64], peers[128];
    const char *pargs[] = {"--set=peer.secret=s3cret",
                           "--set=peer.timeout_ms=3000", NULL};
    const char *dargs[] = {"--set=peer.secret=s3cret",
                           "--set=peer.timeout_ms=3000", peers, NULL};
    const char *eargs[] = {"--set=peer.secret=other", NULL};
    char keys[NB][32];
    kvs_stream_block_t blocks[NB];
    kvs_stream_put_t *put[NB];
    kvs_stream_fetch_t *f;
    kvs_stream_info_t info;
    kvs_client_t *cp, *cd;
    uint64_t len = blk_len();
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "stream-d");
    if (D.external) {
        fprintf(stderr, "needs two daemons of its own\n");
        return KVS_TEST_SKIP;
    }
    kvs_e2e_daemon_init(&P, "stream-p");
    kvs_e2e_daemon_start(&P, pargs);
    snprintf(pport, sizeof(pport), "127.0.0.1:%u", P.port);
    snprintf(peers, sizeof(peers), "--set=peer.list=prefill=%s", pport);
    kvs_e2e_daemon_start(&D, dargs);
    cp = kvs_e2e_connect(&P, "s", NULL);
    cd = kvs_e2e_connect(&D, "s", NULL);

    /* 1. Fetch while the prefill client is still putting. */
    for (int b = 0; b < NB; b++) {
        kvs_client_key_t k;

        snprintf(keys[b], sizeof(keys[b]), "chain-%d", b);
        k.data = keys[b];
        k.len = (uint32_t)strlen(keys[b]);
        kvs_test_fill(src[b], len, 100 + (uint64_t)b);
        memset(dst[b], 0xee, sizeof(dst[b]));
        blocks[b].key = k;
        blocks[b].buf = dst[b];
        blocks[b].cap = sizeof(dst[b]);
    }
    {
        kvs_client_key_t k0 = blocks[0].key;

        CHECK_EQ(
            kvs_stream_put_begin(cp, &k0, part_len, NP, 0, 0, NULL, &put[0]),
            0);
    }
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", blocks, NB, 30000, &f), 0);
    for (uint32_t p = 0; p < 4; p++)
        CHECK_EQ(
            kvs_stream_put_part(put[0], p, src[0] + part_off(p), part_len[p]),
            0);
    /* Parts 0..3 reach the decode client before block 0 is sealed. */
    for (uint32_t p = 0; p < 4; p++)
        CHECK_EQ(kvs_stream_wait(f, 0, p, -1), 0);
    CHECK(memcmp(dst[0], src[0], part_off(4)) == 0);
    CHECK_EQ(kvs_stream_info(f, 0, &info), 0);
    CHECK_EQ(info.complete, 0);
    CHECK_EQ(info.nparts, NP);
    CHECK_EQ(kvs_e2e_present(cp, keys[0]), 0);
    CHECK_EQ(kvs_e2e_present(cd, keys[0]), 0);
    for (uint32_t p = 4; p < NP; p++)
        CHECK_EQ(
            kvs_stream_put_part(put[0], p, src[0] + part_off(p), part_len[p]),
            0);
    CHECK_EQ(kvs_stream_put_seal(put[0]), 0);
    for (int b = 1; b < NB; b++) {
        CHECK_EQ(kvs_stream_put_begin(cp, &blocks[b].key, part_len, NP, 0, 0,
                                      NULL, &put[b]),
                 0);
        /* Parts out of order: delivery still waits for part 0. Odd
         * blocks post every part before waiting for any (the seal waits
         * for them). */
        for (int p = NP - 1; p >= 0; p--) {
            const uint8_t *pb = src[b] + part_off((uint32_t)p);

            if (b % 2)
                CHECK_EQ(kvs_stream_put_part_nb(put[b], (uint32_t)p, pb,
                                                part_len[p]),
                         0);
            else
                CHECK_EQ(
                    kvs_stream_put_part(put[b], (uint32_t)p, pb, part_len[p]),
                    0);
        }
        CHECK_EQ(kvs_stream_put_seal(put[b]), 0);
    }
    for (int b = 0; b < NB; b++) {
        CHECK_EQ(kvs_stream_wait(f, (uint32_t)b, KVS_STREAM_BLOCK, -1), 0);
        CHECK(memcmp(dst[b], src[b], len) == 0);
        CHECK_EQ(kvs_stream_info(f, (uint32_t)b, &info), 0);
        CHECK_EQ(info.complete, 1);
        CHECK_EQ(info.len, len);
        printf("block %d: complete %.3f ms after its first part arrived\n", b,
               (double)(info.complete_ns - info.first_part_ns) / 1e6);
    }
    kvs_stream_fetch_destroy(f);
    /* Stored on D: the next turn hits locally, with the same bytes. */
    for (int b = 0; b < NB; b++) {
        size_t got = 0;

        CHECK_EQ(kvs_e2e_present(cd, keys[b]), 1);
        memset(dst[b], 0, sizeof(dst[b]));
        CHECK_EQ(kvs_client_get(cd, keys[b], (uint32_t)strlen(keys[b]), dst[b],
                                sizeof(dst[b]), &got),
                 0);
        CHECK_EQ(got, len);
        CHECK(memcmp(dst[b], src[b], len) == 0);
    }

    /* 2. Blocks already sealed on P (plain PUT), by "ip:port"; and a
     * missing one, which fails alone. */
    {
        kvs_stream_block_t bl[2];
        char k1[] = "sealed-1", k2[] = "missing-2";

        kvs_test_fill(src[0], 1000000, 7);
        CHECK_EQ(kvs_client_put(cp, k1, sizeof(k1) - 1, src[0], 1000000, 0), 0);
        bl[0].key.data = k1;
        bl[0].key.len = sizeof(k1) - 1;
        bl[0].buf = dst[0];
        bl[0].cap = sizeof(dst[0]);
        bl[1].key.data = k2;
        bl[1].key.len = sizeof(k2) - 1;
        bl[1].buf = dst[1];
        bl[1].cap = sizeof(dst[1]);
        CHECK_EQ(kvs_stream_fetch(cd, pport, bl, 2, 0, &f), 0);
        CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
        CHECK(memcmp(dst[0], src[0], 1000000) == 0);
        CHECK_EQ(kvs_stream_wait(f, 1, 0, -1), KVS_ENOTFOUND);
        kvs_stream_fetch_destroy(f);
        CHECK_EQ(kvs_e2e_present(cd, k1), 1);
        CHECK_EQ(kvs_e2e_present(cd, k2), 0);
    }

    /* 3. An aborted put fails its block on D; nothing becomes visible. */
    {
        kvs_stream_block_t bl;
        kvs_stream_put_t *pa;
        char ka[] = "aborted";

        bl.key.data = ka;
        bl.key.len = sizeof(ka) - 1;
        bl.buf = dst[2];
        bl.cap = sizeof(dst[2]);
        CHECK_EQ(
            kvs_stream_put_begin(cp, &bl.key, part_len, NP, 0, 0, NULL, &pa),
            0);
        CHECK_EQ(kvs_stream_fetch(cd, "prefill", &bl, 1, 30000, &f), 0);
        CHECK_EQ(kvs_stream_put_part(pa, 0, src[2], part_len[0]), 0);
        CHECK_EQ(kvs_stream_wait(f, 0, 0, -1), 0);
        kvs_stream_put_abort(pa);
        ret = kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1);
        CHECK(ret < 0);
        printf("aborted block: %s\n", kvs_strerror(ret));
        kvs_stream_fetch_destroy(f);
        CHECK_EQ(kvs_e2e_present(cp, ka), 0);
        CHECK_EQ(kvs_e2e_present(cd, ka), 0);
    }

    /* 4. Push: P's client streams a block into D's store through P. */
    {
        kvs_client_key_t k = {"pushed", 6};
        kvs_stream_put_t *pp;
        char dport[64];
        size_t got = 0;

        snprintf(dport, sizeof(dport), "127.0.0.1:%u", D.port);
        kvs_test_fill(src[1], len, 55);
        CHECK_EQ(kvs_stream_put_begin(cp, &k, part_len, NP, 0, 0, dport, &pp),
                 0);
        for (uint32_t p = 0; p < NP; p++)
            CHECK_EQ(
                kvs_stream_put_part(pp, p, src[1] + part_off(p), part_len[p]),
                0);
        CHECK_EQ(kvs_stream_put_seal(pp), 0);
        CHECK_EQ(kvs_e2e_present(cp, "pushed"), 1);
        CHECK_EQ(kvs_e2e_present(cd, "pushed"), 1);
        memset(dst[1], 0, sizeof(dst[1]));
        CHECK_EQ(kvs_client_get(cd, "pushed", 6, dst[1], sizeof(dst[1]), &got),
                 0);
        CHECK_EQ(got, len);
        CHECK(memcmp(dst[1], src[1], len) == 0);
    }

    /* 5. A daemon with another secret refuses D's link. */
    {
        kvs_stream_block_t bl = {{"x", 1}, dst[0], 16};
        char eport[64];

        kvs_e2e_daemon_init(&E, "stream-e");
        kvs_e2e_daemon_start(&E, eargs);
        snprintf(eport, sizeof(eport), "127.0.0.1:%u", E.port);
        CHECK_EQ(kvs_stream_fetch(cd, eport, &bl, 1, 0, &f), 0);
        ret = kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1);
        printf("link with a wrong secret: %s\n", kvs_strerror(ret));
        CHECK(ret == KVS_EAUTH || ret == KVS_EPEER);
        kvs_stream_fetch_destroy(f);
        kvs_e2e_daemon_stop(&E);
    }

    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    /* Three daemons' data (each preallocates its disk): kept on failure
     * only. */
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    kvs_test_rmtree(E.dir);
    printf("ok\n");
    return 0;
}
