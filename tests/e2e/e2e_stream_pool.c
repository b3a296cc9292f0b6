/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming without allocation per block or per part (issue 12 item 5):
 * 60 blocks streamed one after another from a client on P through a fetch
 * on D, each put part by part while it is fetched. Once the pools are
 * warm (after 10 blocks) neither daemon allocates per block or per part:
 * over the next 50 blocks (400 parts) STAT stream_pool_allocs grows by at
 * most NP on either, and every block's bytes are right.
 *
 * Why not flat: D posts one receive per part of P's, and how many of a
 * block's NP parts are in flight at once depends on timing (a slow run
 * under ASan has had one more than the warm-up saw). The pool holds as
 * many receives as were ever in flight together, which is at most NP; an
 * allocation per part or per block would add 50 or more.
 */
#include <string.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NP 8
#define PART (64u << 10)
#define ROUNDS 60
#define WARM 10

static uint8_t src[NP * PART], dst[NP * PART];

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char peers[128];
    const char *pargs[] = {"--set=peer.secret=p00l", NULL};
    const char *dargs[] = {"--set=peer.secret=p00l", peers, NULL};
    uint32_t lens[NP];
    uint64_t warm_p = 0, warm_d = 0;
    kvs_client_t *cp, *cd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "spool-d");
    if (D.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&P, "spool-p");
    kvs_e2e_daemon_start(&P, pargs);
    snprintf(peers, sizeof(peers), "--set=peer.list=prefill=127.0.0.1:%u",
             P.port);
    kvs_e2e_daemon_start(&D, dargs);
    cp = kvs_e2e_connect(&P, "pool", NULL);
    cd = kvs_e2e_connect(&D, "pool", NULL);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;

    for (uint32_t r = 0; r < ROUNDS; r++) {
        char key[32];
        kvs_client_key_t k;
        kvs_stream_block_t bl;
        kvs_stream_put_t *put;
        kvs_stream_fetch_t *f;

        snprintf(key, sizeof(key), "pool-%u", r);
        k.data = key;
        k.len = (uint32_t)strlen(key);
        kvs_test_fill(src, sizeof(src), r);
        memset(dst, 0, sizeof(dst));
        bl.key = k;
        bl.buf = dst;
        bl.cap = sizeof(dst);
        CHECK_EQ(kvs_stream_put_begin(cp, &k, lens, NP, 0, 0, NULL, &put), 0);
        CHECK_EQ(kvs_stream_fetch(cd, "prefill", &bl, 1, 10000, &f), 0);
        for (uint32_t p = 0; p < NP; p++)
            CHECK_EQ(kvs_stream_put_part(put, p, src + (size_t)p * PART, PART),
                     0);
        CHECK_EQ(kvs_stream_put_seal(put), 0);
        CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
        CHECK(memcmp(dst, src, sizeof(src)) == 0);
        kvs_stream_fetch_destroy(f);
        if (r + 1 == WARM) {
            warm_p = kvs_e2e_stat(cp, "stream_pool_allocs");
            warm_d = kvs_e2e_stat(cd, "stream_pool_allocs");
            CHECK(warm_p > 0 && warm_d > 0);
        }
    }
    printf("pooled objects allocated after %d blocks: P %llu, D %llu; after "
           "%d: P %llu, D %llu\n",
           WARM, (unsigned long long)warm_p, (unsigned long long)warm_d,
           ROUNDS,
           (unsigned long long)kvs_e2e_stat(cp, "stream_pool_allocs"),
           (unsigned long long)kvs_e2e_stat(cd, "stream_pool_allocs"));
    CHECK(kvs_e2e_stat(cp, "stream_pool_allocs") <= warm_p + NP);
    CHECK(kvs_e2e_stat(cd, "stream_pool_allocs") <= warm_d + NP);

    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("e2e_stream_pool: ok\n");
    return 0;
}
