/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decode-side daemon dies while the prefill side is sending it parts.
 *
 * On one host the parts travel on a bulk endpoint, which has no peer error
 * handling, and UCX 1.13 never completes a rendezvous send on it once the
 * receiver is gone. The prefill sidecar must not wait for those sends: the
 * prefill client's seal still succeeds, and the block is stored, intact,
 * on the prefill side.
 *
 * To have sends in flight for certain, D is stopped (SIGSTOP) before the
 * later parts are put, so it never pulls them, and then killed.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NP 8
#define PART (256u << 10)

static uint8_t src[NP * PART], dst[NP * PART], back[NP * PART];

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char peer[64];
    const char *args[] = {"--set=peer.secret=0rphan",
                          "--set=peer.timeout_ms=2000", NULL};
    uint32_t lens[NP];
    kvs_stream_block_t bl;
    kvs_stream_put_t *put;
    kvs_stream_fetch_t *f;
    kvs_client_t *cp, *cd;
    kvs_client_key_t k = {"orphan", 6};
    uint64_t t_kill;
    size_t got = 0;
    int status, ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&P, "sorph-p");
    if (P.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&D, "sorph-d");
    /* P first: the harness stops the first daemon it started at exit, and
     * D is killed by the test. */
    kvs_e2e_daemon_start(&P, args);
    kvs_e2e_daemon_start(&D, args);
    snprintf(peer, sizeof(peer), "127.0.0.1:%u", P.port);
    cp = kvs_e2e_connect(&P, "o", NULL);
    cd = kvs_e2e_connect(&D, "o", NULL);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    kvs_test_fill(src, sizeof(src), 77);
    bl.key = k;
    bl.buf = dst;
    bl.cap = sizeof(dst);

    CHECK_EQ(kvs_stream_put_begin(cp, &k, lens, NP, 0, 0, NULL, &put), 0);
    CHECK_EQ(kvs_stream_fetch(cd, peer, &bl, 1, 60000, &f), 0);
    CHECK_EQ(kvs_stream_put_part(put, 0, src, PART), 0);
    /* The link (and its bulk endpoint) works: part 0 arrives. */
    CHECK_EQ(kvs_stream_wait(f, 0, 0, -1), 0);
    CHECK(memcmp(dst, src, PART) == 0);

    CHECK(kill(D.pid, SIGSTOP) == 0);
    for (uint32_t p = 1; p < NP; p++)
        CHECK_EQ(kvs_stream_put_part_nb(put, p, src + p * PART, PART), 0);
    usleep(300 * 1000); /* P forwards the parts to the stopped D */
    CHECK(kill(D.pid, SIGKILL) == 0);
    t_kill = kvs_clock_mono_ns();
    CHECK(waitpid(D.pid, &status, 0) == D.pid);
    D.pid = 0;

    ret = kvs_stream_put_seal(put);
    printf("seal on P returned %s %.0f ms after D was killed "
           "(peer timeout 2000 ms)\n",
           kvs_strerror(ret), (double)(kvs_clock_mono_ns() - t_kill) / 1e6);
    CHECK_EQ(ret, 0);

    /* Stored on P, every byte. */
    CHECK_EQ(kvs_e2e_present(cp, "orphan"), 1);
    CHECK_EQ(kvs_client_get(cp, "orphan", 6, back, sizeof(back), &got), 0);
    CHECK_EQ(got, sizeof(src));
    CHECK(memcmp(back, src, sizeof(src)) == 0);

    kvs_stream_fetch_destroy(f);
    kvs_client_destroy(cd);
    kvs_client_destroy(cp);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(P.dir); /* kept on failure only */
    kvs_test_rmtree(D.dir);
    printf("ok\n");
    return 0;
}
