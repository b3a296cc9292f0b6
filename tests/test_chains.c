/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Randomized: whatever puts, deletes, reads and eviction do to chains, a
 * match never counts a block past a gap. After every step, for random
 * chains, match (with a lease) must equal the number of leading blocks
 * that exists() reports, and every matched block must read back with its
 * own bytes while leased. Run on a DRAM + NVMe store under pressure and on
 * a DRAM-only store with store admission. Then, deterministic: the LRU
 * order a MATCH leaves behind, seen through evictions from a full table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvstore/store.h"
#include "tests/testutil.h"

#define NCHAIN 60
#define DEPTH 24
#define BLK (32u << 10)

static void key_of(uint8_t *key, uint32_t chain, uint32_t i)
{
    memset(key, 0, 16);
    memcpy(key, &chain, 4);
    memcpy(key + 4, &i, 4);
    memcpy(key + 8, "chainkey", 8);
}

static uint64_t seed_of(uint32_t chain, uint32_t i)
{
    return ((uint64_t)chain << 32) | i;
}

static int put_one(kvs_store_t *s, uint32_t ns, uint32_t chain, uint32_t i,
                   bool with_parent, uint8_t *buf)
{
    uint8_t key[16], parent[16];
    kvs_iov_t iov = {buf, BLK};

    key_of(key, chain, i);
    key_of(parent, chain, i ? i - 1 : 0);
    kvs_test_fill(buf, BLK, seed_of(chain, i));
    with_parent = with_parent && i > 0;
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = 16,
                        .parts = &iov,
                        .nparts = 1,
                        .cls = KVS_CLASS_SCRATCH,
                        .parent = with_parent ? parent : NULL,
                        .parent_len = with_parent ? 16 : 0};
    return kvs_store_put(s, &a);
}

static void put_prefix(kvs_store_t *s, uint32_t ns, uint32_t chain,
                       uint32_t upto, uint8_t *buf)
{
    for (uint32_t i = 0; i < upto; i++) {
        int ret = put_one(s, ns, chain, i, true, buf);
        assert_true(ret == 0 || ret == KVS_EFULL);
    }
}

/* How many leading blocks of chain are present, checking that none comes
 * after a gap. */
static uint32_t present_prefix(kvs_store_t *s, uint32_t ns, uint32_t chain,
                               uint32_t len)
{
    uint8_t keys[DEPTH][16], present[DEPTH];
    kvs_key_t k[DEPTH];
    uint32_t n = 0;

    for (uint32_t i = 0; i < len; i++) {
        key_of(keys[i], chain, i);
        k[i] = (kvs_key_t){keys[i], 16};
    }
    assert_int_equal(kvs_store_exists(s, ns, k, len, present), 0);
    while (n < len && present[n])
        n++;
    for (uint32_t i = n; i < len; i++)
        assert_false(present[i]);
    return n;
}

static void check_chain(kvs_store_t *s, uint32_t ns, uint32_t chain,
                        uint8_t *buf, uint8_t *want)
{
    uint8_t keys[DEPTH][16], present[DEPTH];
    kvs_key_t k[DEPTH];
    size_t m;
    uint32_t first_absent = DEPTH;

    for (uint32_t i = 0; i < DEPTH; i++) {
        key_of(keys[i], chain, i);
        k[i] = (kvs_key_t){keys[i], 16};
    }
    assert_int_equal(kvs_store_match(s, ns, k, DEPTH, KVS_MATCH_PIN, NULL, &m),
                     0);
    assert_int_equal(kvs_store_exists(s, ns, k, DEPTH, present), 0);
    for (uint32_t i = 0; i < DEPTH; i++)
        if (!present[i]) {
            first_absent = i;
            break;
        }
    /* A pinned match can stop early only if a block could not be brought
     * into DRAM; it never goes past the first absent block. */
    assert_true(m <= first_absent);
    for (uint32_t i = 0; i < m; i++) {
        kvs_block_info_t info;
        kvs_get_args_t g = {
            .ns = ns, .key = keys[i], .key_len = 16, .buf = buf, .cap = BLK};
        assert_int_equal(kvs_store_get(s, &g, &info), 0);
        kvs_test_fill(want, BLK, seed_of(chain, i));
        assert_memory_equal(buf, want, BLK);
        assert_int_equal(kvs_store_unpin(s, ns, keys[i], 16), 0);
    }
    /* Without a lease the answer is exactly the leading present blocks. */
    assert_int_equal(kvs_store_match(s, ns, k, DEPTH, 0, NULL, &m), 0);
    assert_int_equal(m, first_absent);
}

static void run(kvs_store_config_t *c, const char *name)
{
    const char *dir = kvs_test_dir(name);
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint64_t rng = 12345;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);

    c->dir = dir;
    assert_int_equal(kvs_store_open(c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "chains", 2, &ns), 0);
    for (int step = 0; step < 1500; step++) {
        uint32_t chain = (uint32_t)(kvs_test_rand(&rng) % NCHAIN);
        uint32_t op = (uint32_t)(kvs_test_rand(&rng) % 10);
        if (op < 5) {
            put_prefix(s, ns, chain,
                       1 + (uint32_t)(kvs_test_rand(&rng) % DEPTH), buf);
        } else if (op < 6) {
            /* Make a gap by hand in the middle of a chain. */
            uint8_t key[16];
            key_of(key, chain, (uint32_t)(kvs_test_rand(&rng) % DEPTH));
            int ret = kvs_store_delete(s, ns, key, 16);
            assert_true(ret == 0 || ret == KVS_ENOTFOUND);
        } else if (op < 7) {
            uint8_t key[16];
            kvs_block_info_t info;
            key_of(key, chain, (uint32_t)(kvs_test_rand(&rng) % DEPTH));
            kvs_get_args_t g = {
                .ns = ns, .key = key, .key_len = 16, .buf = buf, .cap = BLK};
            int ret = kvs_store_get(s, &g, &info);
            assert_true(ret == 0 || ret == KVS_ENOTFOUND);
        }
        check_chain(s, ns, (uint32_t)(kvs_test_rand(&rng) % NCHAIN), buf, want);
        assert_int_equal(kvs_store_check(s), 0);
    }
    kvs_store_stats(s, &st);
    printf("%s: evicted %llu, declined %llu, regions reclaimed %llu\n", name,
           (unsigned long long)st.evicted,
           (unsigned long long)st.admission_rejected,
           (unsigned long long)st.regions_reclaimed);
    assert_true(st.evicted > 0);
    assert_int_equal(st.refs, 0);
    assert_int_equal(st.corrupt_reads, 0);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

static void test_chains_dram_and_nvme(void **state)
{
    kvs_store_config_t c;

    (void)state;
    kvs_store_config_default(&c);
    c.dram_bytes = 6u << 20;
    c.nvme_bytes = 12u << 20;
    c.region_bytes = 1u << 20;
    c.max_block_bytes = 64u << 10;
    c.max_blocks = 2048;
    c.io_depth = 8;
    c.compress_level = 0;
    run(&c, "chains_tiers");
}

static void test_chains_dram_admission(void **state)
{
    kvs_store_config_t c;

    (void)state;
    kvs_store_config_default(&c);
    c.dram_bytes = 64u << 20;
    c.nvme_bytes = 0;
    c.max_block_bytes = 64u << 10;
    c.max_blocks = 300;
    c.admit_ghost_factor = 2;
    run(&c, "chains_admission");
}

/* A MATCH moves its chain to the main list, root first. With the block
 * table full, each new block pushes out another, always a leaf: with a
 * window of 0% first the chain put after the matched one (seen once, in
 * the window, leaf first), and then the matched chain stays whole while
 * the new blocks push out each other. With the adaptive default only the
 * chains' shape is checked (present_prefix: never a gap). Matched twice:
 * once from the window, once in the main list. */
static void test_match_lru_order(void **state)
{
    enum { LEN = 8, OTHER = 8 };
    static const uint32_t windows[] = {0, KVS_STORE_WINDOW_ADAPTIVE};
    const char *dir = kvs_test_dir("chains_lru");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint8_t keys[LEN][16];
    kvs_key_t k[LEN];
    uint8_t *buf = malloc(BLK);
    uint32_t ns;
    size_t m;

    (void)state;
    for (uint32_t w = 0; w < 2; w++) {
        kvs_store_config_default(&c);
        c.dir = dir;
        c.dram_bytes = 16u << 20;
        c.nvme_bytes = 0;
        c.max_block_bytes = 64u << 10;
        c.max_blocks = LEN + OTHER;
        c.policy_window_pct = windows[w];
        assert_int_equal(kvs_store_open(&c, &s), 0);
        assert_int_equal(kvs_store_ns_open(s, "lru", 2, &ns), 0);
        for (uint32_t i = 0; i < LEN; i++) {
            key_of(keys[i], 0, i);
            k[i] = (kvs_key_t){keys[i], 16};
            assert_int_equal(put_one(s, ns, 0, i, true, buf), 0);
        }
        for (uint32_t i = 0; i < OTHER; i++)
            assert_int_equal(put_one(s, ns, 1, i, true, buf), 0);
        for (int round = 0; round < 2; round++) {
            assert_int_equal(kvs_store_match(s, ns, k, LEN, 0, NULL, &m), 0);
            assert_int_equal(m, LEN);
            assert_int_equal(kvs_store_check(s), 0);
        }
        for (uint32_t n = 1; n <= LEN + OTHER; n++) {
            assert_int_equal(put_one(s, ns, 2, n, false, buf), 0);
            assert_int_equal(kvs_store_check(s), 0);
            uint32_t other = present_prefix(s, ns, 1, OTHER);
            uint32_t matched = present_prefix(s, ns, 0, LEN);
            if (windows[w] == 0) {
                assert_int_equal(other, n <= OTHER ? OTHER - n : 0);
                assert_int_equal(matched, LEN);
            }
        }
        kvs_store_close(s);
        kvs_test_rmtree(dir);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chains_dram_and_nvme),
        cmocka_unit_test(test_chains_dram_admission),
        cmocka_unit_test(test_match_lru_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
