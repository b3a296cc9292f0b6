/* SPDX-License-Identifier: Apache-2.0 */
/* The adaptive DRAM order (kvstore/policy.c): a chain is evicted leaf
 * first and a block with tracked children is never a candidate to leave;
 * a walk visits every tracked block once; a key put again after eviction
 * goes to the main list and moves the window's share; memory is fixed at
 * create. Through the engine: pinned blocks outlive a flood of scratch
 * blocks, expired user blocks are gone, and chains stay gap-free under the
 * default policy. (Without an NVMe tier a full block table drops user blocks in
 * policy order, as it did before.) */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvstore/policy.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

#define NIL KVS_POLICY_NIL

static uint32_t walk_count(kvs_policy_t *p, uint32_t *first)
{
    uint32_t n = 0;

    for (uint32_t i = kvs_policy_coldest(p); i != NIL;
         i = kvs_policy_warmer(p, i)) {
        if (n == 0 && first)
            *first = i;
        n++;
    }
    return n;
}

static void test_chain_leaf_first(void **state)
{
    kvs_policy_t *p;
    uint32_t first = NIL;

    (void)state;
    assert_int_equal(kvs_policy_create(0, 0, 10, &p), -EINVAL);
    assert_int_equal(kvs_policy_create(8, 0, 101, &p), -EINVAL);
    assert_int_equal(kvs_policy_create(16, 0, KVS_POLICY_ADAPTIVE, &p), 0);
    /* A chain 0 <- 1 <- 2 <- 3: only the leaf can leave. */
    for (uint32_t i = 0; i < 4; i++)
        kvs_policy_insert(p, i, 100 + i, i ? i - 1 : NIL);
    assert_int_equal(kvs_policy_check(p), 0);
    assert_int_equal(walk_count(p, &first), 4);
    assert_int_equal(first, 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_false(kvs_policy_evictable(p, i));
    assert_true(kvs_policy_evictable(p, 3));
    /* Touched deepest first (a MATCH): still leaf first, now in main. */
    for (uint32_t i = 4; i-- > 0;)
        kvs_policy_touch(p, i);
    assert_int_equal(walk_count(p, &first), 4);
    assert_int_equal(first, 3);
    /* Now in the main list in chain order: one splice does the same. */
    uint32_t chain[4] = {0, 1, 2, 3}, wrong[2] = {1, 0};
    kvs_policy_insert(p, 8, 108, NIL);
    kvs_policy_touch(p, 8);
    assert_false(kvs_policy_touch_run(p, wrong, 2));
    assert_true(kvs_policy_touch_run(p, chain, 4));
    assert_int_equal(kvs_policy_check(p), 0);
    assert_int_equal(walk_count(p, &first), 5);
    assert_int_equal(first, 8);
    kvs_policy_remove(p, 8, 108, false);
    kvs_policy_remove(p, 3, 103, true);
    assert_false(kvs_policy_tracked(p, 3));
    assert_true(kvs_policy_evictable(p, 2));
    assert_false(kvs_policy_evictable(p, 1));
    /* A removed parent's slot reused: the old children do not count. */
    kvs_policy_remove(p, 0, 100, false);
    kvs_policy_insert(p, 0, 999, NIL);
    assert_true(kvs_policy_evictable(p, 0));
    kvs_policy_remove(p, 1, 101, false);
    assert_true(kvs_policy_evictable(p, 0));
    assert_int_equal(kvs_policy_check(p), 0);
    assert_int_equal(walk_count(p, NULL), 2);
    kvs_policy_destroy(p);
}

static void test_ghost_adapts(void **state)
{
    kvs_policy_t *p, *f;
    uint32_t s0;

    (void)state;
    assert_int_equal(kvs_policy_create(100, 0, KVS_POLICY_ADAPTIVE, &p), 0);
    assert_int_equal(kvs_policy_create(100, 0, 30, &f), 0);
    s0 = kvs_policy_window_share(p);
    /* Evicted from the window, put again: the window was too small. */
    for (uint32_t i = 0; i < 10; i++) {
        kvs_policy_insert(p, i, 500 + i, NIL);
        kvs_policy_remove(p, i, 500 + i, true);
        kvs_policy_insert(p, i, 500 + i, NIL);
        kvs_policy_insert(f, i, 500 + i, NIL);
        kvs_policy_remove(f, i, 500 + i, true);
        kvs_policy_insert(f, i, 500 + i, NIL);
    }
    assert_true(kvs_policy_window_share(p) > s0);
    assert_int_equal(kvs_policy_window_share(f), 30u * 65536 / 100);
    /* They came back into the main list: touched or not, the window (now
     * empty) is not walked first. */
    uint32_t first = kvs_policy_coldest(p);
    assert_int_equal(first, 0);
    /* Evicted from main and put again: the share shrinks. */
    uint32_t s1 = kvs_policy_window_share(p);
    for (uint32_t i = 0; i < 10; i++) {
        kvs_policy_remove(p, i, 500 + i, true);
        kvs_policy_insert(p, i, 500 + i, NIL);
    }
    assert_true(kvs_policy_window_share(p) < s1);
    /* Deletes are not remembered. */
    kvs_policy_remove(p, 0, 500, false);
    uint32_t s2 = kvs_policy_window_share(p);
    kvs_policy_insert(p, 0, 500, NIL);
    assert_int_equal(kvs_policy_window_share(p), s2);
    assert_int_equal(kvs_policy_check(p), 0);
    kvs_policy_destroy(p);
    kvs_policy_destroy(f);
}

/* Memory is fixed at create: 24 bytes a slot and the ghost lists (6 x
 * nslots keys, 8 bytes in a ring and at most 4 set slots of 8 bytes
 * each), so at most 24 + 6 x 40 = 264 bytes a slot. */
static void test_bounded_memory(void **state)
{
    kvs_policy_t *p;
    const uint32_t n = 10000;

    (void)state;
    assert_int_equal(kvs_policy_create(n, 0, KVS_POLICY_ADAPTIVE, &p), 0);
    size_t before = kvs_policy_bytes(p);
    assert_true(before <= (size_t)n * 264 + 4096);
    for (uint32_t round = 0; round < 20; round++)
        for (uint32_t i = 0; i < n; i++) {
            uint64_t h = (uint64_t)round * n + i;
            kvs_policy_insert(p, i, h, i % 8 ? i - 1 : NIL);
            if (i % 8 == 7)
                for (uint32_t j = i + 1; j-- > i - 7;)
                    kvs_policy_remove(p, j, (uint64_t)round * n + j, true);
        }
    assert_int_equal(kvs_policy_bytes(p), before);
    assert_int_equal(kvs_policy_check(p), 0);
    kvs_policy_destroy(p);
}

static int put_blk(kvs_store_t *s, uint32_t ns, uint32_t id, uint8_t cls,
                   uint64_t ttl_ms, int parent, uint8_t *buf)
{
    uint32_t key = id, par = (uint32_t)parent;
    kvs_iov_t iov = {buf, 1024};
    kvs_put_args_t a = {
        .ns = ns,
        .key = &key,
        .key_len = 4,
        .parts = &iov,
        .nparts = 1,
        .cls = cls,
        .ttl_ms = ttl_ms,
        .parent = parent >= 0 ? &par : NULL,
        .parent_len = parent >= 0 ? 4 : 0,
    };
    return kvs_store_put(s, &a);
}

static bool present(kvs_store_t *s, uint32_t ns, uint32_t id)
{
    uint32_t key = id;
    kvs_key_t k = {&key, 4};
    uint8_t p = 0;

    assert_int_equal(kvs_store_exists(s, ns, &k, 1, &p), 0);
    return p;
}

static void test_engine_classes_ttl_chains(void **state)
{
    const char *dir = kvs_test_dir("policy_engine");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = calloc(1, 1024);
    enum { CAP = 64 };

    (void)state;
    kvs_store_config_default(&c);
    c.dir = dir;
    c.dram_bytes = 16u << 20;
    c.nvme_bytes = 0;
    c.max_block_bytes = 4096;
    c.max_blocks = CAP;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "p", 1, &ns), 0);
    /* Pinned 0..3, a user block with a long TTL, one with a short one. */
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(put_blk(s, ns, i, KVS_CLASS_PINNED, 0, -1, buf), 0);
    assert_int_equal(put_blk(s, ns, 10, KVS_CLASS_USER, 3600000, -1, buf), 0);
    assert_int_equal(put_blk(s, ns, 11, KVS_CLASS_USER, 1, -1, buf), 0);
    usleep(5000);
    assert_false(present(s, ns, 11));
    /* A flood of scratch chains of 8, each matched once in two. */
    for (uint32_t r = 0; r < 200; r++) {
        uint32_t base = 1000 + r * 8;
        for (uint32_t i = 0; i < 8; i++)
            assert_int_equal(put_blk(s, ns, base + i, KVS_CLASS_SCRATCH, 0,
                                     i ? (int)(base + i - 1) : -1, buf),
                             0);
        if (r % 2) {
            uint32_t ks[8];
            kvs_key_t k[8];
            size_t m;
            for (uint32_t i = 0; i < 8; i++) {
                ks[i] = base + i;
                k[i] = (kvs_key_t){&ks[i], 4};
            }
            assert_int_equal(kvs_store_match(s, ns, k, 8, 0, NULL, &m), 0);
        }
        assert_int_equal(kvs_store_check(s), 0);
        /* Every chain still present is a prefix: no gaps. */
        for (uint32_t q = 0; q <= r; q++) {
            uint32_t b = 1000 + q * 8, n = 0;
            while (n < 8 && present(s, ns, b + n))
                n++;
            for (uint32_t i = n; i < 8; i++)
                assert_false(present(s, ns, b + i));
        }
    }
    for (uint32_t i = 0; i < 4; i++)
        assert_true(present(s, ns, i));
    kvs_store_close(s);
    free(buf);
    kvs_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_leaf_first),
        cmocka_unit_test(test_ghost_adapts),
        cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_engine_classes_ttl_chains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
