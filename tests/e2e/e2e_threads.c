/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon.threads = 2: six client processes at once, half of them moved by
 * their HELLO reply to the second serving thread, each putting its own
 * chain, matching it with a lease, reading it back byte for byte, reading
 * a neighbour's, and deleting half of it. STAT sums both threads: the
 * connections moved, the requests served, and, once every client is gone,
 * no connection, lease or reference left. Then a client on the second
 * thread is killed in the middle of its GETs, and leaves nothing held;
 * and the features say who moved: a moved connection has no STREAM, one
 * made with KVSTASH_NO_MOVE stays on thread 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "kvstash/kvstash.h"
#include "kvstash/wire.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NPROC 6
#define NBLK 16
#define BLK (128u << 10)
#define ROUNDS 3

static void key_of(char *out, size_t cap, int proc, int i)
{
    snprintf(out, cap, "t%d-block-%03d", proc, i);
}

/* One process's chain: NBLK blocks, each the parent of the next, with
 * bytes from seed; gets[] aimed at back[]. */
typedef struct chain {
    uint8_t data[NBLK][BLK], back[NBLK][BLK];
    char keys[NBLK][32];
    kvs_client_put_t puts[NBLK];
    kvs_client_get_t gets[NBLK];
    kvs_client_key_t mk[NBLK];
    kvs_iov_t iov[NBLK];
} chain_t;

static void chain_make(chain_t *ch, int me, uint64_t seed)
{
    memset(ch->puts, 0, sizeof(ch->puts));
    memset(ch->gets, 0, sizeof(ch->gets));
    for (int i = 0; i < NBLK; i++) {
        key_of(ch->keys[i], sizeof(ch->keys[i]), me, i);
        kvs_test_fill(ch->data[i], BLK, seed + (uint64_t)i);
        ch->iov[i].base = ch->data[i];
        ch->iov[i].len = BLK;
        ch->puts[i].key.data = ch->keys[i];
        ch->puts[i].key.len = (uint32_t)strlen(ch->keys[i]);
        ch->puts[i].parts = &ch->iov[i];
        ch->puts[i].nparts = 1;
        if (i)
            ch->puts[i].parent = ch->puts[i - 1].key;
        ch->mk[i] = ch->puts[i].key;
        ch->gets[i].key = ch->mk[i];
        ch->gets[i].buf = ch->back[i];
        ch->gets[i].cap = BLK;
    }
}

static chain_t chain; /* one per process */

static void child(const kvs_e2e_daemon_t *d, int me)
{
    chain_t *ch = &chain;
    kvs_client_t *c = kvs_e2e_connect(d, "threads", NULL);
    kvs_client_match_result_t r;
    int st[NBLK];

    chain_make(ch, me, (uint64_t)me * 1000);
    CHECK_EQ(kvs_client_put_batch(c, ch->puts, NBLK), 0);
    for (int round = 0; round < ROUNDS; round++) {
        CHECK_EQ(kvs_client_match(c, ch->mk, NBLK, KVS_CLIENT_MATCH_LEASE, 0,
                                  NULL, &r),
                 0);
        CHECK_EQ(r.matched, NBLK);
        CHECK(r.lease_id != 0);
        memset(ch->back, 0, sizeof(ch->back));
        CHECK_EQ(kvs_client_get_batch(c, ch->gets, NBLK, r.lease_id), 0);
        for (int i = 0; i < NBLK; i++)
            CHECK(ch->gets[i].status == 0 && ch->gets[i].len == BLK &&
                  memcmp(ch->back[i], ch->data[i], BLK) == 0);
    }
    /* A neighbour's first block, if it is there yet: its bytes. */
    {
        int other = (me + 1) % NPROC;
        char ok[32];
        size_t len = 0;
        uint8_t expect[256];
        int ret;

        key_of(ok, sizeof(ok), other, 0);
        ret =
            kvs_client_get(c, ok, (uint32_t)strlen(ok), ch->back[0], BLK, &len);
        if (ret == 0) {
            kvs_test_fill(expect, sizeof(expect), (uint64_t)(other * 1000));
            CHECK(len == BLK &&
                  memcmp(ch->back[0], expect, sizeof(expect)) == 0);
        } else {
            CHECK_EQ(ret, KVS_ENOTFOUND);
        }
    }
    /* Delete the second half: it misses, the first half is intact. */
    CHECK_EQ(kvs_client_delete(c, ch->mk + NBLK / 2, NBLK / 2, st), 0);
    for (int i = 0; i < NBLK / 2; i++)
        CHECK_EQ(st[i], 0);
    for (int i = 0; i < NBLK; i++)
        CHECK_EQ(kvs_e2e_present(c, ch->keys[i]), i < NBLK / 2);
    CHECK_EQ(kvs_client_match(c, ch->mk, NBLK, 0, 0, NULL, &r), 0);
    CHECK_EQ(r.matched, NBLK / 2);
    kvs_client_destroy(c);
    exit(0);
}

/* Once told (a byte on fd: it is forked before the parent has a UCX
 * context, which a child must not inherit), GETs with a lease, for ever,
 * until killed. */
static void victim(const kvs_e2e_daemon_t *d, int fd)
{
    chain_t *ch = &chain;
    kvs_client_match_result_t r;
    kvs_client_t *c;
    char go;

    CHECK(read(fd, &go, 1) == 1);
    c = kvs_e2e_connect(d, "threads", NULL);
    chain_make(ch, 99, 0);
    CHECK_EQ(kvs_client_put_batch(c, ch->puts, NBLK), 0);
    for (;;) {
        CHECK_EQ(kvs_client_match(c, ch->mk, NBLK, KVS_CLIENT_MATCH_LEASE, 0,
                                  NULL, &r),
                 0);
        CHECK_EQ(kvs_client_get_batch_async(c, ch->gets, NBLK, 0, NULL, NULL),
                 0);
        CHECK_EQ(kvs_client_wait(c), 0);
    }
}

static void wait_ok(pid_t pid, const char *what)
{
    int status;

    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s failed (status 0x%x)\n", what, status);
        exit(1);
    }
}

int main(void)
{
    static const char *const args[] = {"--set=daemon.threads=2", NULL};
    kvs_e2e_daemon_t d;
    pid_t pids[NPROC], vp;
    kvs_client_t *c;
    int go[2];

    kvs_e2e_daemon_init(&d, "e2e_threads");
    kvs_e2e_daemon_start(&d, args);
    fflush(NULL);
    CHECK(pipe(go) == 0);
    vp = fork();
    CHECK(vp >= 0);
    if (vp == 0)
        victim(&d, go[0]);
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0)
            child(&d, i);
    }
    for (int i = 0; i < NPROC; i++)
        wait_ok(pids[i], "client");
    /* The seventh HELLO stays on thread 0 (round robin over two). */
    c = kvs_e2e_connect(&d, "threads", NULL);
    CHECK_EQ(kvs_e2e_stat(c, "serving_threads"), 2);
    CHECK_EQ(kvs_e2e_stat(c, "connections_moved"), NPROC / 2);
    while (kvs_e2e_stat(c, "connections") != 1)
        usleep(10000);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "leases"), 0);
    /* Each moved client was accepted twice. */
    CHECK_EQ(kvs_e2e_stat(c, "connections_accepted"), NPROC + NPROC / 2 + 1);
    /* Per client at least: HELLO, PUT, ROUNDS x (MATCH, GET), a GET,
     * DELETE, NBLK EXISTS, MATCH. */
    CHECK(kvs_e2e_stat(c, "requests") >=
          (uint64_t)NPROC * (5 + 2 * ROUNDS + NBLK));

    /* The eighth moves: killed mid-request there, it leaves nothing. */
    CHECK(write(go[1], "g", 1) == 1);
    while (kvs_e2e_stat(c, "connections_moved") != NPROC / 2 + 1 ||
           kvs_e2e_stat(c, "leases") == 0)
        usleep(2000);
    usleep(50000);
    kill(vp, SIGKILL);
    CHECK(waitpid(vp, NULL, 0) == vp);
    while (kvs_e2e_stat(c, "connections") != 1)
        usleep(10000);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "leases"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "conn_pins"), 0);

    /* Round robin goes on: the ninth stays and streams, the tenth moves
     * and cannot; one asking no MOVE between them stays and counts no
     * turn. */
    {
        kvs_client_t *stay, *nomove, *moved;
        kvs_client_limits_t l;

        stay = kvs_e2e_connect(&d, "threads", NULL);
        kvs_client_limits(stay, &l);
        CHECK((l.features & KVS_WIRE_FEAT_STREAM) &&
              !(l.features & KVS_WIRE_FEAT_MOVE));
        CHECK_EQ(kvs_e2e_stat(c, "connections_moved"), NPROC / 2 + 1);
        CHECK(setenv("KVSTASH_NO_MOVE", "1", 1) == 0);
        nomove = kvs_e2e_connect(&d, "threads", NULL);
        CHECK(unsetenv("KVSTASH_NO_MOVE") == 0);
        kvs_client_limits(nomove, &l);
        CHECK(l.features & KVS_WIRE_FEAT_STREAM);
        CHECK_EQ(kvs_e2e_stat(c, "connections_moved"), NPROC / 2 + 1);
        moved = kvs_e2e_connect(&d, "threads", NULL);
        kvs_client_limits(moved, &l);
        CHECK(!(l.features & (KVS_WIRE_FEAT_STREAM | KVS_WIRE_FEAT_MOVE)));
        CHECK_EQ(kvs_e2e_stat(c, "connections_moved"), NPROC / 2 + 2);
        {
            /* A stream call on it is refused at once, not left to time
             * out. */
            uint32_t plen = 64;
            kvs_stream_put_t *sp = NULL;
            kvs_client_key_t k = {"t-moved-stream", 14};
            uint64_t t0 = kvs_clock_mono_ns();
            CHECK_EQ(kvs_stream_put_begin(moved, &k, &plen, 1, 0, 0, NULL,
                                          &sp),
                     -EOPNOTSUPP);
            CHECK(kvs_clock_mono_ns() - t0 < 1000000000ull);
        }
        CHECK_EQ(kvs_e2e_present(moved, "t0-block-000"), 1);
        kvs_client_destroy(moved);
        kvs_client_destroy(nomove);
        kvs_client_destroy(stay);
    }
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_threads: ok\n");
    return 0;
}
