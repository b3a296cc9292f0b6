/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End to end, one daemon, every operation through libkvstash: put/get
 * (single, batch, multi-part, async, registered memory, a buffer too
 * small), match with tiers and a lease, exists, delete, pin/unpin (held
 * and retained), prefetch, release, stat, verify; and tenancy: a tenant
 * sees another tenant's namespace exactly as an empty one, and a bad token
 * is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NS_A "model=test;tenant=a"
#define NS_B "model=test;tenant=b"

static const char config[] =
    "[tenant.alice]\n"
    "token = alice-secret\n"
    "namespaces = " NS_A ", shared\n"
    "operator = true\n" /* auth_failures is a store-wide figure */
    "[tenant.bob]\n"
    "token = bob-secret\n"
    "namespaces = " NS_B ", shared\n";

static kvs_client_key_t K(const char *s)
{
    return (kvs_client_key_t){.data = s, .len = (uint32_t)strlen(s)};
}

static void test_put_get(kvs_client_t *c)
{
    static uint8_t big[3 << 20], back[3 << 20];
    size_t len = 0;

    kvs_test_fill(big, sizeof(big), 1);
    CHECK_EQ(kvs_client_put(c, "big", 3, big, sizeof(big), 0), 0);
    CHECK_EQ(kvs_client_get(c, "big", 3, back, sizeof(back), &len), 0);
    CHECK_EQ(len, sizeof(big));
    CHECK(memcmp(big, back, len) == 0);
    /* Too small a buffer: -ENOBUFS and the real size. */
    CHECK_EQ(kvs_client_get(c, "big", 3, back, 100, &len), -ENOBUFS);
    CHECK_EQ(len, sizeof(big));
    CHECK_EQ(kvs_client_get(c, "nope", 4, back, sizeof(back), &len),
             KVS_ENOTFOUND);
    /* A small block comes eagerly rather than by rendezvous. */
    CHECK_EQ(kvs_client_put(c, "small", 5, "hello", 5, 0), 0);
    CHECK_EQ(kvs_client_get(c, "small", 5, back, sizeof(back), &len), 0);
    CHECK(len == 5 && memcmp(back, "hello", 5) == 0);
    /* Keys over 64 bytes are refused before they are sent. */
    char key65[65];
    memset(key65, 'k', sizeof(key65));
    CHECK_EQ(kvs_client_put(c, key65, 65, "x", 1, 0), KVS_ETOOBIG);
}

static void on_count(void *arg, int status)
{
    (void)status; /* each item's own status is checked */
    ++*(int *)arg;
}

/* On this host PUTs of 64 KiB or more go on the put endpoint (PUT_EP,
 * written by the client; transport/client/conn.c); smaller ones, and
 * every PUT of a client the daemon refused a put endpoint (this daemon
 * binds two, daemon.put_endpoints = 2) or of one with KVSTASH_PUT_EP=0,
 * on the bulk endpoint; the bytes are right either way. Eight PUTs in
 * flight together, each in two parts, so that the iov path is covered. */
static void put_many(kvs_client_t *c, const char *prefix, uint64_t seed)
{
    enum { N = 8, HALF = 512u << 10 };
    static uint8_t buf[N][2 * HALF], back[2 * HALF];
    kvs_iov_t parts[N][2];
    kvs_client_put_t items[N];
    char keys[N][32];
    size_t len = 0;
    int done = 0;

    memset(items, 0, sizeof(items));
    for (int i = 0; i < N; i++) {
        kvs_test_fill(buf[i], sizeof(buf[i]), seed + (uint64_t)i);
        snprintf(keys[i], sizeof(keys[i]), "%s-%d", prefix, i);
        parts[i][0] = (kvs_iov_t){buf[i], HALF};
        parts[i][1] = (kvs_iov_t){buf[i] + HALF, HALF};
        items[i].key = K(keys[i]);
        items[i].parts = parts[i];
        items[i].nparts = 2;
        CHECK_EQ(kvs_client_put_batch_async(c, &items[i], 1, on_count, &done),
                 0);
    }
    while (done < N)
        CHECK(kvs_client_progress_wait(c, 100) >= 0);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(items[i].status, 0);
        CHECK_EQ(kvs_client_get(c, keys[i], (uint32_t)strlen(keys[i]), back,
                                sizeof(back), &len),
                 0);
        CHECK(len == sizeof(buf[i]) && memcmp(back, buf[i], len) == 0);
    }
}

static void test_put_endpoint(const kvs_e2e_daemon_t *d, kvs_client_t *c)
{
    uint64_t p0 = kvs_e2e_stat(c, "put_endpoint_puts");
    kvs_client_t *off, *second, *third;

    CHECK(p0 >= 1); /* test_put_get's 3 MiB block */
    put_many(c, "pe", 100);
    CHECK_EQ(kvs_e2e_stat(c, "put_endpoint_puts"), p0 + 8);
    CHECK_EQ(kvs_client_put(c, "pe-small", 8, "tiny", 4, 0), 0);
    CHECK_EQ(kvs_e2e_stat(c, "put_endpoint_puts"), p0 + 8);
    /* c holds one of this daemon's two put endpoints. A client with
     * KVSTASH_PUT_EP=0 takes none, though one is free: the next client
     * gets it, and the one after is refused (-EAGAIN), both taken. */
    setenv("KVSTASH_PUT_EP", "0", 1);
    off = kvs_e2e_connect(d, NS_A, "alice-secret");
    unsetenv("KVSTASH_PUT_EP");
    put_many(off, "off", 200);
    CHECK_EQ(kvs_e2e_stat(c, "put_endpoint_puts"), p0 + 8);
    second = kvs_e2e_connect(d, NS_A, "alice-secret");
    put_many(second, "second", 300);
    CHECK_EQ(kvs_e2e_stat(c, "put_endpoint_puts"), p0 + 16);
    third = kvs_e2e_connect(d, NS_A, "alice-secret");
    put_many(third, "third", 400);
    CHECK_EQ(kvs_e2e_stat(c, "put_endpoint_puts"), p0 + 16);
    kvs_client_destroy(third);
    kvs_client_destroy(second);
    kvs_client_destroy(off);
}

/* A batch of 40 chained blocks of 4 parts each, in and out, into memory
 * registered once. */
static void test_batch(kvs_client_t *c)
{
    enum { N = 40, PARTS = 4, PART = 16384 };
    static uint8_t src[N][PARTS * PART], dst[N][PARTS * PART];
    static kvs_iov_t iov[N][PARTS];
    static char keys[N][16];
    kvs_client_put_t puts[N];
    kvs_client_get_t gets[N];
    kvs_client_key_t mk[N + 1];
    uint32_t lens[N][PARTS];
    uint8_t tiers[N + 1];
    kvs_client_match_result_t r;
    kvs_mr_t *mr;

    memset(puts, 0, sizeof(puts));
    memset(gets, 0, sizeof(gets));
    CHECK_EQ(kvs_client_mem_reg(c, dst, sizeof(dst), &mr), 0);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "chain-%02d", i);
        kvs_test_fill(src[i], sizeof(src[i]), 100 + (uint64_t)i);
        for (int j = 0; j < PARTS; j++) {
            iov[i][j].base = src[i] + j * PART;
            iov[i][j].len = PART;
        }
        puts[i].key = K(keys[i]);
        if (i)
            puts[i].parent = K(keys[i - 1]);
        puts[i].parts = iov[i];
        puts[i].nparts = PARTS;
        gets[i].key = K(keys[i]);
        gets[i].buf = dst[i];
        gets[i].cap = sizeof(dst[i]);
        gets[i].mr = mr;
        gets[i].part_lens = lens[i];
        gets[i].part_cap = PARTS;
        mk[i] = K(keys[i]);
    }
    CHECK_EQ(kvs_client_put_batch(c, puts, N), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(puts[i].status, 0);
    CHECK_EQ(kvs_client_get_batch(c, gets, N, 0), 0);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(gets[i].status, 0);
        CHECK_EQ(gets[i].len, sizeof(src[i]));
        CHECK_EQ(gets[i].nparts, PARTS);
        CHECK_EQ(lens[i][PARTS - 1], PART);
        CHECK(memcmp(src[i], dst[i], sizeof(src[i])) == 0);
    }
    /* MATCH: the whole chain, then a gap stops it. */
    mk[N] = K("not-there");
    CHECK_EQ(kvs_client_match(c, mk, N + 1, 0, 0, tiers, &r), 0);
    CHECK_EQ(r.matched, N);
    CHECK_EQ(r.lease_id, 0);
    CHECK(tiers[0] == KVS_TIER_DRAM || tiers[0] == KVS_TIER_NVME);
    /* With a lease: refs go up until the GET that names it. */
    uint64_t refs0 = kvs_e2e_stat(c, "refs");
    CHECK_EQ(
        kvs_client_match(c, mk, 3, KVS_CLIENT_MATCH_LEASE, 5000, tiers, &r), 0);
    CHECK_EQ(r.matched, 3);
    CHECK(r.lease_id != 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), refs0 + 3);
    CHECK_EQ(kvs_e2e_stat(c, "leases"), 1);
    CHECK_EQ(kvs_client_get_batch(c, gets, 3, r.lease_id), 0);
    CHECK_EQ(kvs_e2e_stat(c, "leases"), 0);
    CHECK_EQ(kvs_client_release(c, r.lease_id), KVS_ENOTFOUND);
    /* A lease released by hand. */
    CHECK_EQ(kvs_client_match(c, mk, 2, KVS_CLIENT_MATCH_LEASE, 0, NULL, &r),
             0);
    CHECK_EQ(kvs_client_release(c, r.lease_id), 0);
    /* Sends hold references only while in flight; wait for them. */
    while (kvs_e2e_stat(c, "refs") != refs0)
        ;
    kvs_client_mem_dereg(c, mr);
}

static int async_done;
static void on_done(void *arg, int status)
{
    CHECK_EQ(status, 0);
    (*(int *)arg)++;
    async_done++;
}

static void test_async(kvs_client_t *c)
{
    enum { N = 16 };
    static uint8_t bufs[N][65536], outs[N][65536];
    static char keys[N][16];
    kvs_iov_t iov[N];
    kvs_client_put_t puts[N];
    kvs_client_get_t gets[N];
    kvs_client_key_t k[N];
    uint8_t present[N];
    int count = 0;

    memset(puts, 0, sizeof(puts));
    memset(gets, 0, sizeof(gets));
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "async-%d", i);
        kvs_test_fill(bufs[i], sizeof(bufs[i]), 7 + (uint64_t)i);
        iov[i].base = bufs[i];
        iov[i].len = sizeof(bufs[i]);
        puts[i].key = K(keys[i]);
        puts[i].parts = &iov[i];
        puts[i].nparts = 1;
        CHECK_EQ(kvs_client_put_batch_async(c, &puts[i], 1, on_done, &count),
                 0);
    }
    CHECK_EQ(kvs_client_wait(c), 0);
    CHECK_EQ(count, N);
    for (int i = 0; i < N; i++) {
        gets[i].key = K(keys[i]);
        gets[i].buf = outs[i];
        gets[i].cap = sizeof(outs[i]);
        k[i] = K(keys[i]);
        CHECK_EQ(kvs_client_get_batch_async(c, &gets[i], 1, 0, on_done, &count),
                 0);
    }
    CHECK_EQ(kvs_client_exists_async(c, k, N, present, on_done, &count), 0);
    while (count < 2 * N + 1)
        CHECK(kvs_client_progress(c) >= 0);
    for (int i = 0; i < N; i++) {
        CHECK(present[i] == 1);
        CHECK(memcmp(bufs[i], outs[i], sizeof(bufs[i])) == 0);
    }
}

static void test_key_ops(kvs_client_t *c)
{
    kvs_client_key_t k[3] = {K("small"), K("missing"), K("big")};
    uint8_t present[3];
    int st[3];
    uint64_t promoted = 99, checked = 0, bad = 1;
    uint64_t refs0 = kvs_e2e_stat(c, "refs");

    CHECK_EQ(kvs_client_exists(c, k, 3, present), 0);
    CHECK(present[0] == 1 && present[1] == 0 && present[2] == 1);
    /* A held pin is a reference until unpinned. */
    CHECK_EQ(kvs_client_pin(c, k, 3, 0, st), KVS_ENOTFOUND);
    CHECK(st[0] == 0 && st[1] == KVS_ENOTFOUND && st[2] == 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), refs0 + 2);
    CHECK_EQ(kvs_e2e_stat(c, "conn_pins"), 2);
    /* A referenced block cannot be deleted. */
    CHECK_EQ(kvs_client_delete(c, &k[0], 1, st), KVS_EBUSY);
    CHECK_EQ(kvs_client_unpin(c, k, 3, 0, st), KVS_ENOTFOUND);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), refs0);
    /* Retained pins change the class instead. */
    CHECK_EQ(kvs_client_pin(c, &k[0], 1, KVS_CLIENT_PIN_RETAIN, st), 0);
    CHECK_EQ(kvs_client_unpin(c, &k[0], 1, KVS_CLIENT_PIN_RETAIN, st), 0);
    CHECK_EQ(kvs_client_prefetch(c, k, 3, &promoted), 0);
    CHECK(promoted <= 2);
    CHECK_EQ(kvs_client_delete(c, k, 3, st), KVS_ENOTFOUND);
    CHECK(st[0] == 0 && st[1] == KVS_ENOTFOUND && st[2] == 0);
    CHECK_EQ(kvs_client_exists(c, k, 3, present), 0);
    CHECK(present[0] == 0 && present[2] == 0);
    CHECK_EQ(kvs_client_verify(c, &checked, &bad), 0);
    CHECK_EQ(bad, 0);
}

/* Bob sees Alice's namespace as empty; shared is shared; bad tokens are
 * refused. */
static void test_tenancy(const kvs_e2e_daemon_t *d)
{
    kvs_client_t *alice = kvs_e2e_connect(d, NS_A, "alice-secret");
    kvs_client_t *bob_in_a = kvs_e2e_connect(d, NS_A, "bob-secret");
    kvs_client_t *bob_in_nowhere =
        kvs_e2e_connect(d, "no-such-ns", "bob-secret");
    kvs_client_t *bob_shared = kvs_e2e_connect(d, "shared", "bob-secret");
    kvs_client_t *alice_shared = kvs_e2e_connect(d, "shared", "alice-secret");
    kvs_client_t *bad = NULL;
    kvs_client_key_t k = K("secret-prefix");
    kvs_client_match_result_t r;
    kvs_client_t *probe[2] = {bob_in_a, bob_in_nowhere};
    uint8_t buf[64], present;
    size_t len;
    int st;

    CHECK_EQ(kvs_client_put(alice, "secret-prefix", 13, "alice-kv", 8, 0), 0);
    CHECK_EQ(kvs_client_get(alice, "secret-prefix", 13, buf, 64, &len), 0);
    /* Bob in Alice's namespace gets the same answers as in a namespace
     * nobody has: not found, nothing matched, nothing present. */
    for (int i = 0; i < 2; i++) {
        kvs_client_t *b = probe[i];

        CHECK_EQ(kvs_client_get(b, "secret-prefix", 13, buf, 64, &len),
                 KVS_ENOTFOUND);
        CHECK_EQ(
            kvs_client_match(b, &k, 1, KVS_CLIENT_MATCH_LEASE, 0, NULL, &r), 0);
        CHECK_EQ(r.matched, 0);
        CHECK_EQ(r.lease_id, 0);
        CHECK_EQ(kvs_client_exists(b, &k, 1, &present), 0);
        CHECK_EQ(present, 0);
        CHECK_EQ(kvs_client_delete(b, &k, 1, &st), KVS_ENOTFOUND);
        CHECK_EQ(kvs_client_pin(b, &k, 1, 0, &st), KVS_ENOTFOUND);
        CHECK_EQ(kvs_client_put(b, "secret-prefix", 13, "bob", 3, 0), -EACCES);
    }
    /* Alice's block is untouched. */
    CHECK_EQ(kvs_client_get(alice, "secret-prefix", 13, buf, 64, &len), 0);
    CHECK(len == 8 && memcmp(buf, "alice-kv", 8) == 0);
    /* A namespace both are allowed is shared. */
    CHECK_EQ(kvs_client_put(alice_shared, "sys", 3, "prompt", 6, 0), 0);
    CHECK_EQ(kvs_client_get(bob_shared, "sys", 3, buf, 64, &len), 0);
    /* Bad and missing tokens. */
    CHECK_EQ(kvs_e2e_try_connect(d, NS_A, "wrong", &bad), KVS_EAUTH);
    CHECK_EQ(kvs_e2e_try_connect(d, NS_A, NULL, &bad), KVS_EAUTH);
    CHECK(bad == NULL);
    CHECK(kvs_e2e_stat(alice, "auth_failures") >= 2);
    kvs_client_destroy(alice);
    kvs_client_destroy(bob_in_a);
    kvs_client_destroy(bob_in_nowhere);
    kvs_client_destroy(bob_shared);
    kvs_client_destroy(alice_shared);
}

int main(void)
{
    const char *put_eps[] = {"--set=daemon.put_endpoints=2", NULL};
    kvs_e2e_daemon_t d;
    kvs_client_t *c;

    kvs_e2e_daemon_init(&d, "e2e_basic");
    kvs_e2e_write_config(&d, config);
    kvs_e2e_daemon_start(&d, put_eps);
    c = kvs_e2e_connect(&d, NS_A, "alice-secret");
    CHECK(kvs_version() == KVS_VERSION_NUMBER);
    test_put_get(c);
    test_put_endpoint(&d, c);
    test_batch(c);
    test_async(c);
    test_key_ops(c);
    kvs_client_destroy(c);
    test_tenancy(&d);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_basic: ok\n");
    return 0;
}
