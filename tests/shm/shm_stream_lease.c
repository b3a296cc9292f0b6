/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A block fetched in place is held by the decode sidecar for the fetch at
 * most daemon.lease_max_ms after its seal (here 2 s): a decode client
 * that never destroys its fetch does not keep DRAM pinned for ever. Before
 * the lease's end the bytes are there and right; after it the sidecar has
 * let the block go (STAT refs back), kvs_stream_data says KVS_EEXPIRED,
 * and the block is still stored on the sidecar, readable the usual way.
 */
#include <string.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define NP 4
#define PART (64u << 10)

static uint8_t src[NP * PART], buf[NP * PART];

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char psock[700], dsock[700];
    const char *dargs[] = {"--set=daemon.lease_default_ms=1000",
                           "--set=daemon.lease_max_ms=2000", NULL};
    kvs_client_key_t k = {"leased", 6};
    kvs_stream_block_t bl = {.key = {"leased", 6}};
    uint32_t lens[NP];
    kvs_stream_put_t *put;
    kvs_stream_fetch_t *f;
    kvs_client_t *cp, *cd;
    uint64_t refs0;
    const void *d;
    size_t len;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "shm_lease-d");
    kvs_e2e_daemon_init(&P, "shm_lease-p");
    shmtest_start_prefill(&P, psock, sizeof(psock));
    shmtest_start_decode(&D, dsock, sizeof(dsock), &P, dargs);
    cp = shmtest_connect(&P, psock, "s", NULL);
    cd = shmtest_connect(&D, dsock, "s", NULL);
    CHECK_EQ(kvs_shm_status(cd), 0);
    refs0 = kvs_e2e_stat(cd, "refs");
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    kvs_test_fill(src, sizeof(src), 3);

    CHECK_EQ(kvs_stream_put_begin(cp, &k, lens, NP, 0, 0, NULL, &put), 0);
    for (uint32_t p = 0; p < NP; p++)
        CHECK_EQ(kvs_stream_put_part(put, p, src + (size_t)p * PART, PART), 0);
    CHECK_EQ(kvs_stream_put_seal(put), 0);
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", &bl, 1, 0, &f), 0);
    CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
    /* Within the lease (2 s from the seal; the check takes far less). */
    CHECK_EQ(kvs_stream_data(f, 0, KVS_STREAM_BLOCK, &d, &len), 0);
    CHECK(len == sizeof(src) && memcmp(d, src, len) == 0);
    /* After it: let go on the sidecar, refused by the library. */
    shmtest_wait_stat(cd, "refs", refs0);
    CHECK_EQ(kvs_stream_data(f, 0, KVS_STREAM_BLOCK, &d, &len), KVS_EEXPIRED);
    CHECK_EQ(kvs_stream_data(f, 0, 1, &d, &len), KVS_EEXPIRED);
    kvs_stream_fetch_destroy(f);
    CHECK_EQ(kvs_client_get(cd, "leased", 6, buf, sizeof(buf), &len), 0);
    CHECK(len == sizeof(src) && memcmp(buf, src, len) == 0);
    shmtest_wait_stat(cd, "stream_fetches_open", 0); /* CANCEL on its way */

    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("shm_stream_lease: ok\n");
    return 0;
}
