/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvs_shm_put_batch and kvs_shm_get_batch, which keep requests posted
 * ahead of their copies, every byte checked end to end:
 *  - 40 blocks of two parts of varied sizes put in one batch, with one item
 *    the client refuses (no parts) in the middle: that item alone fails,
 *    the call returns its status, and every other block reads back right
 *    over UCX;
 *  - the same 40 read in one get batch, with a missing key and a buffer
 *    too small among them: those two fail by name (the small one with its
 *    length), the call returns the first failure, and every other block's
 *    bytes and part lengths are right;
 *  - a batch while commits posted without waiting are still unanswered:
 *    their statuses are settled on the way and come out 0;
 *  - a client without a mapping gets the same results from the same calls
 *    (all its puts valid), and the mapped client reads what it put;
 *  - the mapped client's puts are counted as the arena's commits (so the
 *    batches did not fall back to UCX), and an empty batch is refused;
 *  - afterwards no view, reservation or reference is left in the daemon.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define N 40
#define BAD_PUT 17  /* no parts: refused by the client, in place */
#define MISSING 23  /* a key never put */
#define SMALL 31    /* a buffer one byte too small */
#define CAP (300u << 10)

static uint8_t src[N][CAP], dst[N][CAP];
static uint32_t lens[N][2];
static int bad = BAD_PUT; /* the item put without parts, or -1 */

static uint64_t total_of(int i)
{
    return (uint64_t)lens[i][0] + lens[i][1];
}

static void keys(char k[N][32], const char *prefix)
{
    for (int i = 0; i < N; i++)
        snprintf(k[i], 32, "%s-%d", prefix, i);
}

static void put_all(kvs_client_t *c, const char *prefix)
{
    static kvs_iov_t parts[N][2];
    kvs_client_put_t items[N];
    char k[N][32];

    keys(k, prefix);
    memset(items, 0, sizeof(items));
    for (int i = 0; i < N; i++) {
        parts[i][0].base = src[i];
        parts[i][0].len = lens[i][0];
        parts[i][1].base = src[i] + lens[i][0];
        parts[i][1].len = lens[i][1];
        items[i].key.data = k[i];
        items[i].key.len = (uint32_t)strlen(k[i]);
        items[i].parts = parts[i];
        items[i].nparts = i == bad ? 0 : 2;
    }
    CHECK_EQ(kvs_shm_put_batch(c, items, N), (bad >= 0 ? -EINVAL : 0));
    for (int i = 0; i < N; i++)
        CHECK_EQ(items[i].status, (i == bad ? -EINVAL : 0));
}

static void get_all(kvs_client_t *c, const char *prefix)
{
    static uint32_t plens[N][4];
    kvs_client_get_t items[N];
    char k[N][32];

    keys(k, prefix);
    strcpy(k[MISSING], "never-put");
    memset(items, 0, sizeof(items));
    memset(dst, 0, sizeof(dst));
    for (int i = 0; i < N; i++) {
        items[i].key.data = k[i];
        items[i].key.len = (uint32_t)strlen(k[i]);
        items[i].buf = dst[i];
        items[i].cap = i == SMALL ? total_of(i) - 1 : CAP;
        items[i].part_lens = plens[i];
        items[i].part_cap = 4;
    }
    CHECK_EQ(kvs_shm_get_batch(c, items, N), KVS_ENOTFOUND);
    for (int i = 0; i < N; i++) {
        if (i == bad || i == MISSING) {
            CHECK_EQ(items[i].status, KVS_ENOTFOUND);
            continue;
        }
        if (i == SMALL) {
            CHECK_EQ(items[i].status, -ENOBUFS);
            CHECK(items[i].len == total_of(i));
            continue;
        }
        CHECK_EQ(items[i].status, 0);
        CHECK(items[i].len == total_of(i));
        CHECK_EQ(items[i].nparts, 2);
        CHECK_EQ(plens[i][0], lens[i][0]);
        CHECK_EQ(plens[i][1], lens[i][1]);
        CHECK(memcmp(dst[i], src[i], total_of(i)) == 0);
    }
}

/* Every block of prefix read back one by one over UCX by plain. */
static void check_plain(kvs_client_t *plain, const char *prefix)
{
    char k[N][32];

    keys(k, prefix);
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        int ret = kvs_client_get(plain, k[i], (uint32_t)strlen(k[i]), dst[0],
                                 CAP, &len);

        CHECK_EQ(ret, (i == bad ? KVS_ENOTFOUND : 0));
        if (i != bad)
            CHECK(len == total_of(i) && memcmp(dst[0], src[i], len) == 0);
    }
}

int main(void)
{
    kvs_e2e_daemon_t d;
    char sock[700];
    kvs_client_t *c, *plain;
    int nb[3];

    for (int i = 0; i < N; i++) {
        lens[i][0] = 4096u * (uint32_t)(1 + i % 7) + (uint32_t)i;
        lens[i][1] = 1u + 6007u * (uint32_t)i;
        kvs_test_fill(src[i], total_of(i), 1000 + (uint64_t)i);
    }
    kvs_e2e_daemon_init(&d, "shm_batch");
    shmtest_start(&d, sock, sizeof(sock), NULL);
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_shm_status(c), 0);
    plain = kvs_e2e_connect(&d, "ns", NULL);
    CHECK_EQ(kvs_shm_status(plain), -EOPNOTSUPP);

    put_all(c, "m");
    /* In place, not over UCX: the daemon counts the arena's commits. */
    CHECK_EQ(kvs_e2e_stat(c, "shm_commits"), N - 1);
    check_plain(plain, "m");
    get_all(c, "m");

    /* Three commits posted without waiting, then a batch. */
    for (int i = 0; i < 3; i++) {
        kvs_iov_t part = {src[i], 4096};
        char key[32];
        kvs_client_put_t put = {.parts = &part, .nparts = 1};
        kvs_shm_block_t b;

        snprintf(key, sizeof(key), "nb-%d", i);
        put.key.data = key;
        put.key.len = (uint32_t)strlen(key);
        CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
        memcpy(b.data, src[i], 4096);
        CHECK_EQ(kvs_shm_commit_nb(c, b.id, &nb[i]), 0);
    }
    get_all(c, "m");
    for (int i = 0; i < 3; i++)
        CHECK_EQ(nb[i], 0);

    /* The same calls without a mapping: over UCX (whose put batch takes
     * no item without parts: all are valid here). */
    bad = -1;
    put_all(plain, "u");
    check_plain(plain, "u");
    get_all(plain, "u");
    get_all(c, "u");

    CHECK_EQ(kvs_shm_flush(c), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_commits"), N - 1 + 3); /* none by plain */
    /* An empty batch is refused, attached or not, as over UCX. */
    CHECK_EQ(kvs_shm_get_batch(c, NULL, 0), -EINVAL);
    CHECK_EQ(kvs_shm_put_batch(plain, NULL, 0), -EINVAL);
    CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    kvs_client_destroy(plain);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    kvs_test_rmtree(d.dir);
    printf("shm_batch: ok\n");
    return 0;
}
