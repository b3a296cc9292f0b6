/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ghost list (kvstore/ghost.c) on its own: membership, the FIFO that
 * forgets the oldest hash when full, removal (with the backward shift that
 * keeps probe runs whole), the early forgetting of a hash removed and
 * added again, and the limits of create. Then the admission it drives in a
 * real store: a scratch block is kept the second time it is put, a
 * replacement always, a block whose parent is absent never.
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

#include "kvstash/status.h"
#include "kvstore/ghost.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

static void test_create_limits(void **state)
{
    kvs_ghost_t *g = NULL;

    (void)state;
    assert_int_equal(kvs_ghost_create(0, &g), -EINVAL);
    assert_int_equal(kvs_ghost_create((1u << 28) + 1, &g), -EINVAL);
    assert_int_equal(kvs_ghost_create(1, &g), 0);
    kvs_ghost_destroy(g);
    kvs_ghost_destroy(NULL);
}

static void test_add_contains_remove(void **state)
{
    kvs_ghost_t *g;

    (void)state;
    assert_int_equal(kvs_ghost_create(16, &g), 0);
    assert_false(kvs_ghost_contains(g, 42));
    kvs_ghost_add(g, 42);
    assert_true(kvs_ghost_contains(g, 42));
    assert_false(kvs_ghost_contains(g, 43));
    kvs_ghost_remove(g, 42);
    assert_false(kvs_ghost_contains(g, 42));
    kvs_ghost_remove(g, 42); /* absent: no-op */
    /* 0 is the set's empty mark; the hash 0 is still remembered. */
    kvs_ghost_add(g, 0);
    assert_true(kvs_ghost_contains(g, 0));
    kvs_ghost_destroy(g);
}

/* Full, the oldest hash goes first; adding a present hash takes no room. */
static void test_fifo_forgets_oldest(void **state)
{
    enum { CAP = 100 };
    kvs_ghost_t *g;

    (void)state;
    assert_int_equal(kvs_ghost_create(CAP, &g), 0);
    for (uint64_t h = 1; h <= CAP; h++)
        kvs_ghost_add(g, h * 0x1000193ull);
    for (uint64_t h = 1; h <= CAP; h++)
        kvs_ghost_add(g, h * 0x1000193ull); /* again: nothing changes */
    for (uint64_t h = 1; h <= CAP; h++)
        assert_true(kvs_ghost_contains(g, h * 0x1000193ull));
    for (uint64_t h = CAP + 1; h <= CAP + 30; h++)
        kvs_ghost_add(g, h * 0x1000193ull);
    for (uint64_t h = 1; h <= 30; h++)
        assert_false(kvs_ghost_contains(g, h * 0x1000193ull));
    for (uint64_t h = 31; h <= CAP + 30; h++)
        assert_true(kvs_ghost_contains(g, h * 0x1000193ull));
    kvs_ghost_destroy(g);
}

/* Many removals from a set at its fill limit, where probe runs are long:
 * every hash left must still be found, every removed one not. */
static void test_remove_keeps_probe_runs(void **state)
{
    enum { CAP = 4096 };
    static uint64_t hs[CAP];
    uint64_t rng = 11;
    kvs_ghost_t *g;

    (void)state;
    assert_int_equal(kvs_ghost_create(CAP, &g), 0);
    for (uint32_t i = 0; i < CAP; i++) {
        hs[i] = kvs_test_rand(&rng) | 1;
        kvs_ghost_add(g, hs[i]);
    }
    for (uint32_t i = 0; i < CAP; i += 3)
        kvs_ghost_remove(g, hs[i]);
    for (uint32_t i = 0; i < CAP; i++)
        assert_int_equal(kvs_ghost_contains(g, hs[i]), i % 3 != 0);
    kvs_ghost_destroy(g);
}

/* Documented in ghost.c: a hash removed and added again before its first
 * ring slot's turn is forgotten at that turn, early. */
static void test_readded_hash_forgotten_early(void **state)
{
    kvs_ghost_t *g;

    (void)state;
    assert_int_equal(kvs_ghost_create(3, &g), 0);
    kvs_ghost_add(g, 7);
    kvs_ghost_remove(g, 7);
    kvs_ghost_add(g, 7);
    kvs_ghost_add(g, 8);
    assert_true(kvs_ghost_contains(g, 7));
    kvs_ghost_add(g, 9); /* full: the first slot, 7's old one, goes */
    assert_false(kvs_ghost_contains(g, 7));
    assert_true(kvs_ghost_contains(g, 8));
    assert_true(kvs_ghost_contains(g, 9));
    kvs_ghost_destroy(g);
}

static int put(kvs_store_t *s, uint32_t ns, const char *key, const char *parent)
{
    char data[64];
    kvs_iov_t part = {data, sizeof(data)};
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = strlen(key),
                        .parent = parent,
                        .parent_len = parent ? strlen(parent) : 0,
                        .parts = &part,
                        .nparts = 1,
                        .cls = KVS_CLASS_SCRATCH};

    memset(data, key[0], sizeof(data));
    return kvs_store_put(s, &a);
}

static bool present(kvs_store_t *s, uint32_t ns, const char *key)
{
    kvs_key_t k = {key, strlen(key)};
    uint8_t p = 0;

    assert_int_equal(kvs_store_exists(s, ns, &k, 1, &p), 0);
    return p;
}

static void test_store_admission(void **state)
{
    kvs_store_config_t cfg;
    kvs_store_stats_t st;
    kvs_store_t *s;
    uint32_t ns;

    (void)state;
    kvs_store_config_default(&cfg);
    cfg.dir = kvs_test_dir("ghost_admission");
    cfg.dram_bytes = 16u << 20;
    cfg.nvme_bytes = 0;
    cfg.max_block_bytes = 1u << 20;
    cfg.max_blocks = 64;
    cfg.admit_ghost_factor = 2;
    assert_int_equal(kvs_store_open(&cfg, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "m", 0, &ns), 0);

    /* First put: declined (and remembered), no error to the caller. */
    assert_int_equal(put(s, ns, "root", NULL), 0);
    assert_false(present(s, ns, "root"));
    /* Second put of the same key: admitted. */
    assert_int_equal(put(s, ns, "root", NULL), 0);
    assert_true(present(s, ns, "root"));
    /* A replacement of a present block is admitted at once. */
    assert_int_equal(put(s, ns, "root", NULL), 0);
    assert_true(present(s, ns, "root"));
    /* A child whose parent is absent is never admitted: a match could
     * not reach it. */
    assert_int_equal(put(s, ns, "orphan", "nobody"), 0);
    assert_int_equal(put(s, ns, "orphan", "nobody"), 0);
    assert_false(present(s, ns, "orphan"));
    /* With its parent present, a child is admitted the second time. */
    assert_int_equal(put(s, ns, "child", "root"), 0);
    assert_false(present(s, ns, "child"));
    assert_int_equal(put(s, ns, "child", "root"), 0);
    assert_true(present(s, ns, "child"));

    kvs_store_stats(s, &st);
    assert_int_equal(st.admission_rejected, 4);
    assert_int_equal(st.blocks, 2);
    kvs_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_limits),
        cmocka_unit_test(test_add_contains_remove),
        cmocka_unit_test(test_fifo_forgets_oldest),
        cmocka_unit_test(test_remove_keeps_probe_runs),
        cmocka_unit_test(test_readded_hash_forgotten_early),
        cmocka_unit_test(test_store_admission),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
