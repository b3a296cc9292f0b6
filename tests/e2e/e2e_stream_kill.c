/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The prefill-side daemon is killed with SIGKILL in the middle of a
 * streaming fetch. Block 0 was complete before the kill, block 1 was half
 * put, block 2 not begun. The decode client gets an error for exactly
 * blocks 1 and 2; block 0 stays complete; neither incomplete block is
 * visible on the decode side. The time from the kill to the errors is
 * printed (it must be within the peer timeout plus one second; not
 * asserted: no timed assertions).
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NB 3
#define NP 8
#define PART (256u << 10)

static uint8_t src[NB][NP * PART], dst[NB][NP * PART];

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char peers[128];
    const char *pargs[] = {"--set=peer.secret=k1ll",
                           "--set=peer.timeout_ms=2000", NULL};
    const char *dargs[] = {"--set=peer.secret=k1ll",
                           "--set=peer.timeout_ms=2000", NULL};
    uint32_t lens[NP];
    char keys[NB][16];
    kvs_stream_block_t bl[NB];
    kvs_stream_put_t *put0, *put1;
    kvs_stream_fetch_t *f;
    kvs_stream_info_t info;
    kvs_client_t *cp, *cd;
    uint64_t t_kill;
    int st1, st2, status;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "skill-d");
    if (D.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&P, "skill-p");
    /* D first: the harness kills the first daemon it started when the
     * test exits, and P is killed (and reaped) by the test itself. The
     * peer is named per request, as "ip:port". */
    kvs_e2e_daemon_start(&D, dargs);
    kvs_e2e_daemon_start(&P, pargs);
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", P.port);
    cp = kvs_e2e_connect(&P, "k", NULL);
    cd = kvs_e2e_connect(&D, "k", NULL);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    for (int b = 0; b < NB; b++) {
        snprintf(keys[b], sizeof(keys[b]), "kill-%d", b);
        bl[b].key.data = keys[b];
        bl[b].key.len = (uint32_t)strlen(keys[b]);
        bl[b].buf = dst[b];
        bl[b].cap = sizeof(dst[b]);
        kvs_test_fill(src[b], sizeof(src[b]), 40 + (uint64_t)b);
    }
    CHECK_EQ(kvs_stream_put_begin(cp, &bl[0].key, lens, NP, 0, 0, NULL, &put0),
             0);
    for (uint32_t p = 0; p < NP; p++)
        CHECK_EQ(kvs_stream_put_part(put0, p, src[0] + p * PART, PART), 0);
    CHECK_EQ(kvs_stream_put_seal(put0), 0);
    CHECK_EQ(kvs_stream_put_begin(cp, &bl[1].key, lens, NP, 0, 0, NULL, &put1),
             0);
    for (uint32_t p = 0; p < 3; p++)
        CHECK_EQ(kvs_stream_put_part(put1, p, src[1] + p * PART, PART), 0);

    CHECK_EQ(kvs_stream_fetch(cd, peers, bl, NB, 60000, &f), 0);
    CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
    CHECK(memcmp(dst[0], src[0], sizeof(src[0])) == 0);
    CHECK_EQ(kvs_stream_wait(f, 1, 2, -1), 0);
    CHECK(memcmp(dst[1], src[1], 3 * PART) == 0);
    CHECK_EQ(kvs_e2e_present(cd, keys[1]), 0);

    CHECK(kill(P.pid, SIGKILL) == 0);
    t_kill = kvs_clock_mono_ns();
    CHECK(waitpid(P.pid, &status, 0) == P.pid);
    P.pid = 0;

    st1 = kvs_stream_wait(f, 1, KVS_STREAM_BLOCK, -1);
    printf("block 1 (half put) failed after %.0f ms: %s\n",
           (double)(kvs_clock_mono_ns() - t_kill) / 1e6, kvs_strerror(st1));
    st2 = kvs_stream_wait(f, 2, 0, -1);
    printf("block 2 (not begun) failed after %.0f ms: %s\n",
           (double)(kvs_clock_mono_ns() - t_kill) / 1e6, kvs_strerror(st2));
    printf("(peer timeout 2000 ms; the limit is timeout + 1 s)\n");
    CHECK(st1 < 0);
    CHECK(st2 < 0);
    CHECK_EQ(kvs_stream_info(f, 0, &info), 0);
    CHECK_EQ(info.complete, 1);
    CHECK_EQ(info.status, 0);
    kvs_stream_fetch_destroy(f);

    /* Only the complete block is visible on the decode side. */
    CHECK_EQ(kvs_e2e_present(cd, keys[0]), 1);
    CHECK_EQ(kvs_e2e_present(cd, keys[1]), 0);
    CHECK_EQ(kvs_e2e_present(cd, keys[2]), 0);

    kvs_stream_put_abort(put1); /* its daemon is gone: fails fast */
    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_test_rmtree(D.dir); /* kept on failure only */
    kvs_test_rmtree(P.dir);
    printf("ok\n");
    return 0;
}
