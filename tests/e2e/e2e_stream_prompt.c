/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A streaming fetch that names a whole prompt: 3000 blocks with 64-byte
 * keys (about 50 FETCH messages' worth; one message holds about 60), from
 * two real kvstashd. Every block arrives in order with the right bytes,
 * indices line up across the messages, a missing key in the middle fails
 * that block alone, and every block fetched is stored on the decode side.
 */
#include <errno.h>
#include <string.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NB 3000u
#define BLK 4096u
#define MISSING 1777u /* never put */

static uint8_t dst[NB][BLK];
static char keys[NB][65];

static void key_of(uint32_t b)
{
    /* 64 bytes: the longest a key may be, so the most messages. */
    snprintf(keys[b], sizeof(keys[b]), "prompt-%057u", b);
}

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char peers[128];
    const char *pargs[] = {"--set=peer.secret=pr0mpt", NULL};
    const char *dargs[] = {"--set=peer.secret=pr0mpt", peers, NULL};
    static kvs_stream_block_t bl[NB];
    static kvs_client_put_t puts[NB];
    static kvs_iov_t iov[NB];
    static uint8_t src[BLK];
    kvs_stream_fetch_t *f;
    kvs_client_t *cp, *cd;
    uint32_t batch = 200;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "sprompt-d");
    if (D.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&P, "sprompt-p");
    kvs_e2e_daemon_start(&P, pargs);
    snprintf(peers, sizeof(peers), "--set=peer.list=prefill=127.0.0.1:%u",
             P.port);
    kvs_e2e_daemon_start(&D, dargs);
    cp = kvs_e2e_connect(&P, "p", NULL);
    cd = kvs_e2e_connect(&D, "p", NULL);

    for (uint32_t b = 0; b < NB; b++) {
        key_of(b);
        CHECK(strlen(keys[b]) == KVS_KEY_MAX);
        bl[b].key.data = keys[b];
        bl[b].key.len = KVS_KEY_MAX;
        bl[b].buf = dst[b];
        bl[b].cap = BLK;
    }
    /* Each block's first 8 bytes are its index: a block delivered at the
     * wrong index shows. */
    for (uint32_t first = 0; first < NB; first += batch) {
        uint32_t n = 0;

        for (uint32_t b = first; b < first + batch && b < NB; b++) {
            if (b == MISSING)
                continue;
            iov[b].base = dst[b]; /* the source bytes, for now */
            kvs_test_fill(dst[b], BLK, b);
            memcpy(dst[b], &b, sizeof(b));
            iov[b].len = BLK;
            memset(&puts[n], 0, sizeof(puts[n]));
            puts[n].key = bl[b].key;
            puts[n].parts = &iov[b];
            puts[n].nparts = 1;
            n++;
        }
        CHECK_EQ(kvs_client_put_batch(cp, puts, n), 0);
    }
    memset(dst, 0xee, sizeof(dst));

    CHECK_EQ(kvs_stream_fetch(cd, "prefill", bl, NB, 0, &f), 0);
    for (uint32_t b = 0; b < NB; b++) {
        int ret = kvs_stream_wait(f, b, KVS_STREAM_BLOCK, -1);

        if (b == MISSING) {
            CHECK_EQ(ret, KVS_ENOTFOUND);
            continue;
        }
        CHECK_EQ(ret, 0);
        kvs_test_fill(src, BLK, b);
        memcpy(src, &b, sizeof(b));
        CHECK(memcmp(dst[b], src, BLK) == 0);
    }
    kvs_stream_fetch_destroy(f);
    /* Stored on the decode side: the next turn hits locally. */
    CHECK_EQ(kvs_e2e_present(cd, keys[0]), 1);
    CHECK_EQ(kvs_e2e_present(cd, keys[NB - 1]), 1);
    CHECK_EQ(kvs_e2e_present(cd, keys[MISSING]), 0);
    CHECK_EQ(kvs_e2e_stat(cd, "stream_fetches_open"), 0);
    /* More than a fetch may name is refused at once. */
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", bl, KVS_STREAM_FETCH_MAX + 1, 0,
                              &f),
             -EINVAL);

    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("e2e_stream_prompt: %u blocks in one fetch: ok\n", NB);
    return 0;
}
