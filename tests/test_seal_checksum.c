/* SPDX-License-Identifier: Apache-2.0 */
/*
 * When a block's checksum is taken (kvs_put_seal, writer.c). In a private
 * arena it is taken as the block is written to disk, and a block read back
 * from disk after a restart comes back whole. In a shared arena (one that
 * clients on the host may map and write) it is settled at seal: a block
 * whose bytes are overwritten in DRAM after it was sealed, as a mapped
 * client could, fails its check once read back from disk, a miss counted
 * in corrupt_reads, and never comes back as the overwritten bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvstore/store.h"
#include "tests/testutil.h"

#define BLK (64u << 10)
static const char key[] = "sealed-block";

static void config(kvs_store_config_t *c, const char *dir, bool shared)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = 32u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 256u << 10;
    c->max_blocks = 256;
    c->io_depth = 8;
    c->compress_level = 0;
    c->dram_shared = shared;
}

/* Puts the block, optionally overwrites its bytes in the arena (what a
 * mapped client can do), writes it to disk, reopens the store so that
 * only the disk copy is left, and reads it back into back. Returns the
 * get's status; *corrupt_out gets the reopened store's corrupt_reads. */
static int put_scribble_reread(const char *name, bool shared, bool scribble,
                               const uint8_t *want, uint8_t *back,
                               uint64_t *corrupt_out)
{
    const char *dir = kvs_test_dir(name);
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    kvs_view_t v;
    uint32_t ns;
    int ret;

    config(&c, dir, shared);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "seal", 2, &ns), 0);
    kvs_iov_t part = {want, BLK};
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = sizeof(key) - 1,
                        .parts = &part,
                        .nparts = 1};
    assert_int_equal(kvs_store_put(s, &a), 0);
    if (scribble) {
        assert_int_equal(kvs_store_pin(s, ns, key, sizeof(key) - 1, &v), 0);
        assert_int_equal(v.len, BLK);
        memset((void *)v.data, 0x5a, 4096); /* after the seal */
        kvs_store_unpin_view(s, &v);
    }
    assert_int_equal(kvs_store_flush(s), 0);
    kvs_store_close(s);

    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "seal", 2, &ns), 0);
    kvs_get_args_t g = {.ns = ns,
                        .key = key,
                        .key_len = sizeof(key) - 1,
                        .buf = back,
                        .cap = BLK};
    kvs_block_info_t info;
    ret = kvs_store_get(s, &g, &info);
    kvs_store_stats(s, &st);
    *corrupt_out = st.corrupt_reads;
    kvs_store_close(s);
    kvs_test_rmtree(dir);
    return ret;
}

static void test_private_arena_checksum_taken_at_write(void **state)
{
    uint8_t *want = malloc(BLK), *back = malloc(BLK);
    uint64_t corrupt = 1;

    (void)state;
    kvs_test_fill(want, BLK, 7);
    assert_int_equal(
        put_scribble_reread("seal_private", false, false, want, back, &corrupt),
        0);
    assert_memory_equal(back, want, BLK);
    assert_int_equal(corrupt, 0);
    free(want);
    free(back);
}

static void test_shared_arena_checksum_settled_at_seal(void **state)
{
    uint8_t *want = malloc(BLK), *back = malloc(BLK);
    uint64_t corrupt = 0;

    (void)state;
    kvs_test_fill(want, BLK, 8);
    /* Untouched: whole. */
    assert_int_equal(
        put_scribble_reread("seal_shared", true, false, want, back, &corrupt),
        0);
    assert_memory_equal(back, want, BLK);
    assert_int_equal(corrupt, 0);
    /* Overwritten after its seal: a miss, never the new bytes. */
    memset(back, 0, BLK);
    assert_int_equal(put_scribble_reread("seal_shared2", true, true, want,
                                         back, &corrupt),
                     KVS_ENOTFOUND);
    assert_int_equal(corrupt, 1);
    free(want);
    free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_private_arena_checksum_taken_at_write),
        cmocka_unit_test(test_shared_arena_checksum_settled_at_seal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
