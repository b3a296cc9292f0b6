/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stream source whose block is on the prefill side's disk only (issue
 * 12): P reads it into DRAM on an I/O thread, not on its serving thread,
 * and streams it; the decode client gets every byte. P's disk is slowed
 * by the engine's TEST HOOK KVSTASH_TEST_READ_DELAY_MS (every disk read
 * sleeps first), and a MATCH on P while the read waits must be answered
 * well inside that delay.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define LEN (512u << 10)
#define DELAY_MS 1500

static uint8_t src[LEN], dst[LEN];

int main(void)
{
    kvs_e2e_daemon_t P, D;
    const char *args[] = {"--set=peer.secret=d1sk", NULL};
    char peer[64], delay[16];
    kvs_client_key_t k = {"cold", 4};
    kvs_client_match_result_t mr;
    kvs_stream_block_t bl;
    kvs_stream_fetch_t *f;
    kvs_client_t *cp, *cd;
    uint64_t t0, match_ms, fetch_ms;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&P, "sdisk-p");
    if (P.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&D, "sdisk-d");
    /* The block, durable, then P restarted: it is on P's disk only. */
    kvs_e2e_daemon_start(&P, args);
    cp = kvs_e2e_connect(&P, "s", NULL);
    kvs_test_fill(src, sizeof(src), 12);
    CHECK_EQ(kvs_client_put(cp, "cold", 4, src, LEN, KVS_CLIENT_PUT_DURABLE),
             0);
    kvs_client_destroy(cp);
    kvs_e2e_daemon_stop(&P);
    snprintf(delay, sizeof(delay), "%d", DELAY_MS);
    setenv("KVSTASH_TEST_READ_DELAY_MS", delay, 1);
    kvs_e2e_daemon_start(&P, args);
    unsetenv("KVSTASH_TEST_READ_DELAY_MS");
    kvs_e2e_daemon_start(&D, args);
    cp = kvs_e2e_connect(&P, "s", NULL);
    cd = kvs_e2e_connect(&D, "s", NULL);

    snprintf(peer, sizeof(peer), "127.0.0.1:%u", P.port);
    bl.key = k;
    bl.buf = dst;
    bl.cap = sizeof(dst);
    t0 = kvs_clock_mono_ns();
    CHECK_EQ(kvs_stream_fetch(cd, peer, &bl, 1, 30000, &f), 0);
    usleep(300 * 1000); /* P's source now waits on the slow disk */
    {
        uint64_t m0 = kvs_clock_mono_ns();

        CHECK_EQ(kvs_client_match(cp, &k, 1, 0, 0, NULL, &mr), 0);
        match_ms = (kvs_clock_mono_ns() - m0) / 1000000;
    }
    CHECK_EQ(mr.matched, 1);
    CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, 20000), 0);
    fetch_ms = (kvs_clock_mono_ns() - t0) / 1000000;
    printf("MATCH on P: %llu ms while the source read waited; fetch: %llu ms "
           "(disk delay %d ms)\n",
           (unsigned long long)match_ms, (unsigned long long)fetch_ms,
           DELAY_MS);
    CHECK(match_ms < DELAY_MS / 2);
    CHECK(fetch_ms >= DELAY_MS); /* it did read the slow disk */
    CHECK(memcmp(dst, src, LEN) == 0);

    kvs_stream_fetch_destroy(f);
    kvs_client_destroy(cd);
    kvs_client_destroy(cp);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(P.dir);
    kvs_test_rmtree(D.dir);
    printf("ok\n");
    return 0;
}
