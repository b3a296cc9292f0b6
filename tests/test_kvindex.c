/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The router-side pieces of cluster/ on their own: the block index
 * (stored/removed per node and medium, clearing a node, the longest
 * prefix and its tier, growth and backward-shift deletion against a
 * reference model) and the KVEventBatch decoder on the committed fixtures
 * and on malformed payloads, which must be refused whole.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/kvevent.h"
#include "cluster/kvindex.h"
#include "kvstash/types.h"

#ifndef KVS_FIXTURES
#error "KVS_FIXTURES: the folder of tests/cluster/fixtures"
#endif

static kvs_kvindex_key_t K(const char *s)
{
    return (kvs_kvindex_key_t){s, (uint32_t)strlen(s)};
}

static void test_longest(void **state)
{
    kvs_kvindex_t *ix;
    kvs_kvindex_key_t chain[4] = {K("a"), K("b"), K("c"), K("d")};
    uint32_t node = 99;
    size_t m = 9;
    uint8_t tier = 0;

    (void)state;
    assert_int_equal(kvs_kvindex_create(&ix), 0);
    kvs_kvindex_longest(ix, chain, 4, &node, &m, &tier);
    assert_int_equal(m, 0);
    /* node 1: a b c on NVMe; node 2: a b in DRAM */
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            kvs_kvindex_stored(ix, 1, chain[i].data, 1, KVS_TIER_NVME), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            kvs_kvindex_stored(ix, 2, chain[i].data, 1, KVS_TIER_DRAM), 0);
    kvs_kvindex_longest(ix, chain, 4, &node, &m, &tier);
    assert_int_equal(m, 3);
    assert_int_equal(node, 1);
    assert_int_equal(tier, KVS_TIER_NVME);
    kvs_kvindex_longest(ix, chain, 2, &node, &m, &tier);
    assert_int_equal(m, 2);
    assert_int_equal(node, 2); /* a tie goes to the node with it in DRAM */
    assert_int_equal(tier, KVS_TIER_DRAM);
    kvs_kvindex_removed(ix, 1, "b", 1, KVS_TIER_NVME);
    kvs_kvindex_longest(ix, chain, 4, &node, &m, &tier);
    assert_int_equal(m, 2);
    assert_int_equal(node, 2);
    kvs_kvindex_clear_node(ix, 2);
    kvs_kvindex_longest(ix, chain, 4, &node, &m, &tier);
    assert_int_equal(m, 1);
    assert_int_equal(node, 1);
    assert_int_equal(kvs_kvindex_count(ix), 2); /* a, c on node 1 */
    assert_int_equal(
        kvs_kvindex_stored(ix, KVS_KVINDEX_NODES, "a", 1, KVS_TIER_DRAM),
        -EINVAL);
    assert_int_equal(kvs_kvindex_stored(ix, 0, "a", 0, KVS_TIER_DRAM), -EINVAL);
    assert_int_equal(kvs_kvindex_stored(ix, 0, "a", 1, 7), -EINVAL);
    kvs_kvindex_destroy(ix);
}

/* Random stores and removals against a plain array: every key's presence
 * must agree after each step (this exercises growth and the shifts). */
static void test_against_model(void **state)
{
    enum { NK = 5000 };
    static uint64_t model[NK];
    kvs_kvindex_t *ix;
    char key[16];
    uint32_t node;
    size_t m;
    uint8_t tier;

    (void)state;
    memset(model, 0, sizeof(model));
    assert_int_equal(kvs_kvindex_create(&ix), 0);
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int k = rand() % NK, n = rand() % 3;
        int len = snprintf(key, sizeof(key), "k%d", k);

        if (rand() % 3) {
            assert_int_equal(kvs_kvindex_stored(ix, (uint32_t)n, key,
                                                (size_t)len, KVS_TIER_DRAM),
                             0);
            model[k] |= 1ull << n;
        } else {
            kvs_kvindex_removed(ix, (uint32_t)n, key, (size_t)len,
                                KVS_TIER_DRAM);
            model[k] &= ~(1ull << n);
        }
        if (step % 50000 == 0) { /* node 1 restarts */
            kvs_kvindex_clear_node(ix, 1);
            for (int i = 0; i < NK; i++)
                model[i] &= ~2ull;
        }
    }
    size_t present = 0;

    for (int k = 0; k < NK; k++) {
        int len = snprintf(key, sizeof(key), "k%d", k);
        kvs_kvindex_key_t kk = {key, (uint32_t)len};

        kvs_kvindex_longest(ix, &kk, 1, &node, &m, &tier);
        assert_int_equal(m, model[k] ? 1 : 0);
        if (m)
            assert_true(model[k] & (1ull << node));
        present += model[k] != 0;
    }
    assert_int_equal(kvs_kvindex_count(ix), present);
    kvs_kvindex_destroy(ix);
}

struct rec {
    int stored, removed, cleared;
    uint8_t last_tier;
    char last_key[KVS_KEY_MAX + 1];
};

static void on_st(void *a, const void *k, size_t n, uint8_t t)
{
    struct rec *r = a;

    r->stored++;
    r->last_tier = t;
    memcpy(r->last_key, k, n);
    r->last_key[n] = '\0';
}

static void on_rm(void *a, const void *k, size_t n, uint8_t t)
{
    struct rec *r = a;

    r->removed++;
    r->last_tier = t;
    memcpy(r->last_key, k, n);
    r->last_key[n] = '\0';
}

static void on_cl(void *a)
{
    ((struct rec *)a)->cleared++;
}

static size_t load(const char *name, uint8_t *buf, size_t cap)
{
    char path[512];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s", KVS_FIXTURES, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void test_decode_fixtures(void **state)
{
    uint8_t buf[1024];
    struct rec r = {0};
    kvs_kvevent_sink_t sink = {on_st, on_rm, on_cl, &r};
    size_t n;

    (void)state;
    n = load("cleared.bin", buf, sizeof(buf));
    assert_int_equal(kvs_kvevent_decode(buf, n, &sink), 0);
    assert_int_equal(r.cleared, 1);
    n = load("stored_child.bin", buf, sizeof(buf));
    assert_int_equal(kvs_kvevent_decode(buf, n, &sink), 0);
    assert_int_equal(r.stored, 1);
    assert_string_equal(r.last_key, "blk-0002");
    assert_int_equal(r.last_tier, KVS_TIER_DRAM);
    n = load("removed.bin", buf, sizeof(buf));
    assert_int_equal(kvs_kvevent_decode(buf, n, &sink), 0);
    assert_int_equal(r.removed, 1);
    assert_string_equal(r.last_key, "blk-0001");
    /* Every truncation of a valid payload is refused, reporting nothing. */
    n = load("stored_root.bin", buf, sizeof(buf));
    for (size_t cut = 0; cut < n; cut++) {
        struct rec z = {0};
        kvs_kvevent_sink_t zs = {on_st, on_rm, on_cl, &z};

        assert_int_equal(kvs_kvevent_decode(buf, cut, &zs), -EPROTO);
        assert_int_equal(z.stored + z.removed + z.cleared, 0);
    }
    /* An unknown event type: refused whole. */
    size_t at = 0;

    for (size_t i = 0; i + 11 <= n; i++)
        if (!memcmp(buf + i, "BlockStored", 11))
            at = i;
    assert_true(at > 0);
    buf[at] = 'X';
    assert_int_equal(kvs_kvevent_decode(buf, n, &sink), -EPROTO);
}

/* A batch written with the wide msgpack headers (map16/32, array16/32,
 * str8/16, bin16, float64) is accepted; the same batch with an array or a
 * map declaring more elements than bytes are left, or a bin longer than
 * the payload, is refused without allocating for the declared count. */
static void test_decode_declared_counts(void **state)
{
    static const uint8_t ok[] = {0xde, 0x00, 0x02, /* map16: 2 */
                                 0xa2, 't',  's',  0xcb, 0x3f, 0xf8,
                                 0,    0,    0,    0,    0,    0, /* ts: 1.5 */
                                 0xd9, 0x06, 'e',  'v',  'e',  'n',
                                 't',  's',                    /* str8 */
                                 0xdd, 0x00, 0x00, 0x00, 0x01, /* array32: 1 */
                                 0xdf, 0x00, 0x00, 0x00, 0x03, /* map32: 3 */
                                 0xa4, 't',  'y',  'p',  'e',  0xda,
                                 0x00, 0x0b, 'B',  'l',  'o',  'c',
                                 'k',  'S',  't',  'o',  'r',  'e',
                                 'd', /* str16 */
                                 0xac, 'b',  'l',  'o',  'c',  'k',
                                 '_',  'h',  'a',  's',  'h',  'e',
                                 's',  0xdc, 0x00, 0x01, 0xc5, 0x00,
                                 0x02, 'k',  '1', /* array16, bin16 */
                                 0xa6, 'm',  'e',  'd',  'i',  'u',
                                 'm',  0xa3, 'C',  'P',  'U'};
    uint8_t buf[sizeof(ok)];
    struct rec r = {0};
    kvs_kvevent_sink_t sink = {on_st, on_rm, on_cl, &r};
    const size_t arr = 23, map = 28, bin = 68; /* offsets of the headers */

    (void)state;
    assert_int_equal(kvs_kvevent_decode(ok, sizeof(ok), &sink), 0);
    assert_int_equal(r.stored, 1);
    assert_string_equal(r.last_key, "k1");
    assert_int_equal(ok[arr], 0xdd);
    assert_int_equal(ok[map], 0xdf);
    assert_int_equal(ok[bin], 0xc5);
    memcpy(buf, ok, sizeof(ok));
    memset(buf + arr + 1, 0xff, 4); /* 2^32 - 1 events */
    assert_int_equal(kvs_kvevent_decode(buf, sizeof(buf), &sink), -EPROTO);
    memcpy(buf, ok, sizeof(ok));
    buf[map + 1] = 0x7f; /* 2^31 pairs */
    assert_int_equal(kvs_kvevent_decode(buf, sizeof(buf), &sink), -EPROTO);
    memcpy(buf, ok, sizeof(ok));
    buf[bin + 1] = 0x01; /* 258 bytes of hash */
    assert_int_equal(kvs_kvevent_decode(buf, sizeof(buf), &sink), -EPROTO);
    memcpy(buf, ok, sizeof(ok));
    buf[arr] = 0xc1; /* never used in msgpack */
    assert_int_equal(kvs_kvevent_decode(buf, sizeof(buf), &sink), -EPROTO);
    assert_int_equal(r.stored, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest),
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_decode_fixtures),
        cmocka_unit_test(test_decode_declared_counts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
