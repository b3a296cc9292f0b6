/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eight client processes at once against one daemon, each putting its own
 * chain of blocks, reading its own and the others' back, matching the
 * chains and running async gets, and checking every byte. Afterwards the
 * daemon holds no references and has served every connection.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NPROC 8
#define NBLK 24
#define BLK (256u << 10)

static void key_of(char *out, size_t cap, int proc, int i)
{
    snprintf(out, cap, "p%d-block-%03d", proc, i);
}

static int count_done;
static void on_done(void *arg, int status)
{
    (void)arg;
    CHECK_EQ(status, 0);
    count_done++;
}

static void child(const kvs_e2e_daemon_t *d, int me)
{
    static uint8_t data[NBLK][BLK], back[NBLK][BLK];
    static char keys[NBLK][32];
    kvs_client_t *c = kvs_e2e_connect(d, "concurrent", NULL);
    kvs_client_put_t puts[NBLK];
    kvs_client_get_t gets[NBLK];
    kvs_client_key_t mk[NBLK];
    kvs_iov_t iov[NBLK];
    kvs_client_match_result_t r;

    memset(puts, 0, sizeof(puts));
    memset(gets, 0, sizeof(gets));
    for (int i = 0; i < NBLK; i++) {
        key_of(keys[i], sizeof(keys[i]), me, i);
        kvs_test_fill(data[i], BLK, (uint64_t)(me * 1000 + i));
        iov[i].base = data[i];
        iov[i].len = BLK;
        puts[i].key.data = keys[i];
        puts[i].key.len = (uint32_t)strlen(keys[i]);
        puts[i].parts = &iov[i];
        puts[i].nparts = 1;
        if (i)
            puts[i].parent = puts[i - 1].key;
        mk[i] = puts[i].key;
    }
    CHECK_EQ(kvs_client_put_batch(c, puts, NBLK), 0);
    for (int round = 0; round < 3; round++) {
        CHECK_EQ(kvs_client_match(c, mk, NBLK, 0, 0, NULL, &r), 0);
        CHECK_EQ(r.matched, NBLK);
        for (int i = 0; i < NBLK; i++) {
            gets[i].key = mk[i];
            gets[i].buf = back[i];
            gets[i].cap = BLK;
        }
        CHECK_EQ(kvs_client_get_batch(c, gets, NBLK, 0), 0);
        for (int i = 0; i < NBLK; i++)
            CHECK(memcmp(back[i], data[i], BLK) == 0);
        /* The same again, one async get per block, all in flight. */
        memset(back, 0, sizeof(back));
        count_done = 0;
        for (int i = 0; i < NBLK; i++)
            CHECK_EQ(
                kvs_client_get_batch_async(c, &gets[i], 1, 0, on_done, NULL),
                0);
        CHECK_EQ(kvs_client_wait(c), 0);
        CHECK_EQ(count_done, NBLK);
        for (int i = 0; i < NBLK; i++)
            CHECK(memcmp(back[i], data[i], BLK) == 0);
    }
    /* Read a neighbour's chain as far as it has been written. */
    {
        int other = (me + 1) % NPROC;
        char ok[32];
        kvs_client_key_t k;
        uint8_t present;

        key_of(ok, sizeof(ok), other, 0);
        k.data = ok;
        k.len = (uint32_t)strlen(ok);
        CHECK_EQ(kvs_client_exists(c, &k, 1, &present), 0);
        if (present) {
            size_t len = 0;
            uint8_t expect[64];

            CHECK_EQ(kvs_client_get(c, ok, k.len, back[0], BLK, &len), 0);
            kvs_test_fill(expect, sizeof(expect), (uint64_t)(other * 1000));
            CHECK(len == BLK && memcmp(back[0], expect, 64) == 0);
        }
    }
    kvs_client_destroy(c);
    exit(0);
}

int main(void)
{
    kvs_e2e_daemon_t d;
    pid_t pids[NPROC];
    kvs_client_t *c;
    int failed = 0;

    kvs_e2e_daemon_init(&d, "e2e_concurrent");
    kvs_e2e_daemon_start(&d, NULL);
    fflush(NULL);
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0)
            child(&d, i);
    }
    for (int i = 0; i < NPROC; i++) {
        int status;

        CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "client %d failed (status 0x%x)\n", i, status);
            failed++;
        }
    }
    CHECK_EQ(failed, 0);
    c = kvs_e2e_connect(&d, "concurrent", NULL);
    /* Every child's connection is gone and held nothing. */
    while (kvs_e2e_stat(c, "connections") != 1)
        usleep(10000);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK(kvs_e2e_stat(c, "connections_accepted") >= NPROC + 1);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_concurrent: ok\n");
    return 0;
}
