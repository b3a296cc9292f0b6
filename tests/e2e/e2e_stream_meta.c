/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A streaming put carries parent, TTL, class and group as an ordinary put
 * does (kvs_stream_put_open): a block streamed into P and pushed on to D
 * is listed on both (SCAN by its group) with its parent, its class and an
 * expiry; one streamed in place, and one from the old begin call without
 * any of them, too; a parent longer than a key is refused.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NP 3
#define GROUP 0x4242u
#define TTL_MS 600000u

static const uint32_t lens[NP] = {4096, 100, 65536};
static uint8_t src[NP][65536];

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The entry of key in a SCAN of group on c; CHECKs that there is one. */
static void scan_one(kvs_client_t *c, uint64_t group, const char *key,
                     kvs_client_scan_ent_t *out)
{
    static kvs_client_scan_ent_t ents[64];
    uint32_t cursor = 0;
    bool found = false;

    do {
        size_t n = 0;

        CHECK_EQ(kvs_client_scan(c, group, cursor, ents, 64, &n, &cursor), 0);
        for (size_t i = 0; i < n; i++)
            if (ents[i].key_len == strlen(key) &&
                !memcmp(ents[i].key, key, ents[i].key_len)) {
                *out = ents[i];
                found = true;
            }
    } while (cursor);
    CHECK(found);
}

static void check_meta(const kvs_client_scan_ent_t *e, const char *parent,
                       uint64_t t0)
{
    CHECK(e->parent_len == strlen(parent));
    CHECK(!memcmp(e->parent, parent, e->parent_len));
    CHECK_EQ(e->cls, KVS_CLASS_USER);
    CHECK(e->group == GROUP);
    CHECK(e->expiry_ms >= t0 + TTL_MS && e->expiry_ms < wall_ms() + TTL_MS + 1);
    CHECK_EQ(e->nparts, NP);
}

static void put_parts(kvs_stream_put_t *put)
{
    for (uint32_t p = 0; p < NP; p++)
        CHECK_EQ(kvs_stream_put_part(put, p, src[p], lens[p]), 0);
}

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char dpeer[64];
    const char *args[] = {"--set=peer.secret=m3ta", NULL};
    kvs_stream_put_args_t a;
    kvs_stream_put_t *put;
    kvs_client_scan_ent_t e;
    kvs_client_t *cp, *cd;
    uint64_t t0 = wall_ms();
    static char longkey[KVS_KEY_MAX + 1];

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&D, "smeta-d");
    if (D.external)
        return KVS_TEST_SKIP;
    kvs_e2e_daemon_init(&P, "smeta-p");
    kvs_e2e_daemon_start(&D, args);
    kvs_e2e_daemon_start(&P, args);
    snprintf(dpeer, sizeof(dpeer), "127.0.0.1:%u", D.port);
    cp = kvs_e2e_connect(&P, "m", NULL);
    cd = kvs_e2e_connect(&D, "m", NULL);
    for (int p = 0; p < NP; p++)
        kvs_test_fill(src[p], sizeof(src[p]), 7 + (uint64_t)p);

    /* Streamed into P and pushed to D, with everything. */
    memset(&a, 0, sizeof(a));
    a.key.data = "turn-2";
    a.key.len = 6;
    a.parent.data = "turn-1";
    a.parent.len = 6;
    a.part_lens = lens;
    a.nparts = NP;
    a.cls = KVS_CLASS_USER;
    a.ttl_ms = TTL_MS;
    a.group = GROUP;
    a.push_peer = dpeer;
    CHECK_EQ(kvs_stream_put_open(cp, &a, &put), 0);
    put_parts(put);
    CHECK_EQ(kvs_stream_put_seal(put), 0);
    scan_one(cp, GROUP, "turn-2", &e);
    check_meta(&e, "turn-1", t0);
    scan_one(cd, GROUP, "turn-2", &e);
    check_meta(&e, "turn-1", t0);

    /* "In place" (this client maps no arena: the library's buffer), with
     * everything, not pushed. */
    a.key.data = "turn-3";
    a.parent.data = "turn-2";
    a.push_peer = NULL;
    a.inplace = 1;
    CHECK_EQ(kvs_stream_put_open(cp, &a, &put), 0);
    for (uint32_t p = 0; p < NP; p++) {
        void *d;
        size_t len;

        CHECK_EQ(kvs_stream_put_buf(put, p, &d, &len), 0);
        CHECK(len == lens[p]);
        memcpy(d, src[p], len);
        CHECK_EQ(kvs_stream_put_commit(put, p), 0);
    }
    CHECK_EQ(kvs_stream_put_seal(put), 0);
    scan_one(cp, GROUP, "turn-3", &e);
    check_meta(&e, "turn-2", t0);

    /* The old call: no parent, no TTL, no group. */
    {
        kvs_client_key_t k = {"plain", 5};

        CHECK_EQ(kvs_stream_put_begin(cp, &k, lens, NP, 0, 0, NULL, &put), 0);
        put_parts(put);
        CHECK_EQ(kvs_stream_put_seal(put), 0);
        scan_one(cp, 0, "plain", &e);
        CHECK_EQ(e.parent_len, 0);
        CHECK(e.group == 0 && e.expiry_ms == 0);
        CHECK_EQ(e.cls, KVS_CLASS_SCRATCH);
    }

    /* A parent longer than a key is refused before anything is sent. */
    memset(longkey, 'p', KVS_KEY_MAX);
    a.parent.data = longkey;
    a.parent.len = KVS_KEY_MAX + 1;
    a.inplace = 0;
    CHECK_EQ(kvs_stream_put_open(cp, &a, &put), -EINVAL);

    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&P);
    kvs_e2e_daemon_stop(&D);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("e2e_stream_meta: ok\n");
    return 0;
}
