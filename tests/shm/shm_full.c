/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A full DRAM never stalls the daemon's shared-memory thread (issue 12:
 * nothing that serves clients waits for room or for the disk). A filler
 * client reserves 1 MiB blocks and keeps a leased view of each, so that
 * nothing in the 64 MiB arena can be evicted, whenever the write-behind
 * runs. Then:
 *  - RESERVE is answered -EAGAIN at once instead of waiting for room;
 *  - kvs_shm_put of one more block falls back to an ordinary PUT, which
 *    waits for room (store.full_wait_ms, 2 s) on an I/O thread and then
 *    gives a PUT's answer;
 *  - while it waits, another mapped client's requests to the same thread
 *    (a miss, STAT) are answered well inside that wait;
 *  - once the views are released, a batch that puts one key twice keeps
 *    the later value.
 * Before, the RESERVE itself waited up to store.full_wait_ms on the one
 * thread that serves every mapped client.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define BLK (1u << 20)
/* Well under store.full_wait_ms (2 s): what a waiting RESERVE would take. */
#define QUICK_MS 1000
#define MAX_BLOCKS 1000

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Fills DRAM until RESERVE says -EAGAIN, tells the parent, then puts one
 * more block through kvs_shm_put. Exits 0 when that put stored the block
 * or got a PUT's answer (KVS_EFULL, KVS_EBUSY), 2 when no -EAGAIN came. */
struct where {
    const kvs_e2e_daemon_t *d;
    const char *sock;
};

static void filler(void *arg, int tell)
{
    const struct where *w = arg;
    static uint8_t data[BLK], data2[BLK], back[BLK];
    kvs_client_t *c = shmtest_connect(w->d, w->sock, "full", NULL);
    kvs_iov_t part = {NULL, BLK};
    static uint64_t views[MAX_BLOCKS];
    int ret = 0, i, declined = 0, nviews = 0;
    size_t len;

    CHECK_EQ(kvs_shm_status(c), 0);
    for (i = 0; i < MAX_BLOCKS; i++) {
        char key[16];
        kvs_client_put_t put = {.parts = &part, .nparts = 1};
        kvs_shm_block_t b;
        uint64_t t0 = now_ms();

        snprintf(key, sizeof(key), "fill-%d", i);
        put.key.data = key;
        put.key.len = (uint32_t)strlen(key);
        ret = kvs_shm_reserve(c, &put, &b);
        /* No reservation waits for room. */
        CHECK(now_ms() - t0 < QUICK_MS);
        if (ret == KVS_EBUSY) {
            declined++; /* the admission policy's answer, not a wait */
            continue;
        }
        if (ret)
            break;
        memset(b.data, i & 0xff, b.len);
        CHECK_EQ(kvs_shm_commit(c, b.id), 0);
        /* The lease pins it: the write-behind can never make room. */
        CHECK_EQ(kvs_shm_view(c, key, put.key.len, 60000, NULL, 0, &b), 0);
        views[nviews++] = b.id;
    }
    printf("filler: %d blocks reserved (%d declined by admission), then "
           "%s\n",
           i - declined, declined, kvs_strerror(ret));
    fflush(stdout);
    if (ret != -EAGAIN)
        _exit(2);
    CHECK(write(tell, "x", 1) == 1);
    kvs_test_fill(data, BLK, 7);
    ret = kvs_shm_put(c, "last", 4, data, BLK, 0);
    printf("filler: kvs_shm_put in a full DRAM: %s\n", kvs_strerror(ret));
    if (ret == 0) {
        CHECK_EQ(kvs_client_get(c, "last", 4, back, sizeof(back), &len), 0);
        CHECK(len == BLK && memcmp(back, data, BLK) == 0);
    } else {
        /* No room within full_wait_ms, or declined by admission: answers
         * a PUT may get; -EAGAIN would mean no fallback. */
        CHECK(ret == KVS_EFULL || ret == KVS_EPINNED_FULL || ret == KVS_EBUSY);
    }
    for (int k = 0; k < nviews; k++)
        CHECK_EQ(kvs_shm_release(c, views[k]), 0);
    /* A batch that puts one key twice, the arena full but evictable
     * again: however its items are split between the arena and UCX, the
     * later one wins. */
    {
        kvs_iov_t p1 = {data, BLK}, p2 = {data2, BLK};
        kvs_client_put_t twice[2] = {
            {.key = {"twice", 5}, .parts = &p1, .nparts = 1},
            {.key = {"twice", 5}, .parts = &p2, .nparts = 1},
        };

        kvs_test_fill(data2, BLK, 8);
        ret = kvs_shm_put_batch(c, twice, 2);
        printf("filler: a batch of one key twice: %s, %s\n",
               kvs_strerror(twice[0].status), kvs_strerror(twice[1].status));
        CHECK(twice[1].status == 0 || twice[1].status == KVS_EFULL ||
              twice[1].status == KVS_EPINNED_FULL ||
              twice[1].status == KVS_EBUSY);
        if (twice[1].status == 0) {
            CHECK_EQ(kvs_client_get(c, "twice", 5, back, sizeof(back), &len),
                     0);
            CHECK(len == BLK && memcmp(back, data2, BLK) == 0);
        }
    }
    kvs_client_destroy(c);
    fflush(stdout);
    _exit(0);
}

int main(void)
{
    static uint8_t buf[BLK];
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    char sock[700], ch;
    int heard, status;
    uint64_t t0, ms;
    size_t len;
    pid_t pid;

    kvs_e2e_daemon_init(&d, "shm_full");
    shmtest_start(&d, sock, sizeof(sock), NULL);

    /* UCX state does not survive a fork: the filler first. */
    pid = kvs_test_fork(filler, &(struct where){&d, sock}, &heard);
    c = shmtest_connect(&d, sock, "full", NULL);
    CHECK_EQ(kvs_shm_status(c), 0);
    if (read(heard, &ch, 1) != 1) {
        CHECK(waitpid(pid, &status, 0) == pid);
        fprintf(stderr, "shm_full: the filler never saw -EAGAIN (exit %d)\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        kvs_client_destroy(c);
        kvs_e2e_daemon_stop(&d);
        return 1;
    }
    /* The filler's last put now waits for room; this thread must not. */
    usleep(100000);
    t0 = now_ms();
    CHECK_EQ(kvs_shm_get(c, "absent", 6, buf, sizeof(buf), &len),
             KVS_ENOTFOUND);
    CHECK(kvs_e2e_stat(c, "shm_sessions") >= 1);
    ms = now_ms() - t0;
    printf("shm_full: a miss and a STAT while DRAM was full: %llu ms\n",
           (unsigned long long)ms);
    CHECK(ms < QUICK_MS);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    kvs_test_rmtree(d.dir);
    printf("shm_full: ok\n");
    return 0;
}
