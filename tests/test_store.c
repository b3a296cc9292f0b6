/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Engine round trips across tiers: blocks that overflow DRAM degrade to the
 * NVMe tier and read back byte for byte, survive a reopen if they reached
 * the disk, durable puts survive a close without flush, and the API's
 * contracts (match, pin, delete, TTL, limits, errors) hold.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvstore/store.h"
#include "tests/testutil.h"

#define BLK (256u << 10)
#define NPARTS 4

static void config(kvs_store_config_t *c, const char *dir)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = 96u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 1u << 20;
    c->max_blocks = 4096;
    c->io_depth = 16;
    c->full_wait_ms = 5000;
}

static void make_key(uint8_t *key, uint32_t i)
{
    memset(key, 0, 32);
    snprintf((char *)key, 32, "block-%08u", i);
}

static int put_block(kvs_store_t *s, uint32_t ns, uint32_t i, uint8_t *buf,
                     uint32_t flags, uint8_t cls)
{
    uint8_t key[32];
    kvs_iov_t parts[NPARTS];

    make_key(key, i);
    kvs_test_fill(buf, BLK, i);
    for (int p = 0; p < NPARTS; p++)
        parts[p] = (kvs_iov_t){buf + p * (BLK / NPARTS), BLK / NPARTS};
    kvs_put_args_t a = {
        .ns = ns,
        .key = key,
        .key_len = 32,
        .parts = parts,
        .nparts = NPARTS,
        .flags = flags,
        .cls = cls,
    };
    return kvs_store_put(s, &a);
}

/* 0 if block i reads back intact, else the get's status. */
static int check_block(kvs_store_t *s, uint32_t ns, uint32_t i, uint8_t *buf,
                       uint8_t *want)
{
    uint8_t key[32];
    uint32_t lens[NPARTS];
    kvs_block_info_t info;

    make_key(key, i);
    kvs_test_fill(want, BLK, i);
    memset(buf, 0, BLK);
    kvs_get_args_t g = {.ns = ns,
                        .key = key,
                        .key_len = 32,
                        .buf = buf,
                        .cap = BLK,
                        .part_lens = lens,
                        .part_cap = NPARTS};
    int ret = kvs_store_get(s, &g, &info);
    if (ret)
        return ret;
    assert_int_equal(info.data_len, BLK);
    assert_int_equal(info.nparts, NPARTS);
    for (int p = 0; p < NPARTS; p++)
        assert_int_equal(lens[p], BLK / NPARTS);
    assert_memory_equal(buf, want, BLK);
    return 0;
}

/* 50 MiB through a DRAM tier of at most 32 MiB, then a reopen. */
static void tiers_roundtrip(kvs_store_config_t c)
{
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    const uint32_t n = 200;

    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "model=test;dtype=bf16", 2, &ns), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(put_block(s, ns, i, buf, 0, KVS_CLASS_SCRATCH), 0);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(check_block(s, ns, i, buf, want), 0);
    kvs_store_stats(s, &st);
    assert_true(st.degraded > 0);
    assert_true(st.nvme_hits > 0);
    assert_true(st.dram_hits > 0);
    assert_int_equal(st.corrupt_reads, 0);
    assert_int_equal(st.blocks, n);

    /* Flush makes every block durable: all are back after a reopen. */
    assert_int_equal(kvs_store_flush(s), 0);
    kvs_store_close(s);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    uint32_t ns2;
    assert_int_equal(kvs_store_ns_open(s, "model=test;dtype=bf16", 2, &ns2), 0);
    assert_int_equal(ns2, ns);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(check_block(s, ns, i, buf, want), 0);
    kvs_store_stats(s, &st);
    assert_int_equal(st.blocks, n);
    assert_int_equal(st.corrupt_reads, 0);

    uint64_t checked, bad;
    assert_int_equal(kvs_store_verify(s, NULL, NULL, &checked, &bad), 0);
    assert_int_equal(checked, n);
    assert_int_equal(bad, 0);
    kvs_store_close(s);

    /* Another region size is another layout. */
    c.region_bytes *= 2;
    assert_int_equal(kvs_store_open(&c, &s), KVS_ELAYOUT);
    free(buf);
    free(want);
    kvs_test_rmtree(c.dir);
}

static void test_tiers_roundtrip_and_reopen(void **state)
{
    kvs_store_config_t c;

    (void)state;
    config(&c, kvs_test_dir("store_tiers"));
    tiers_roundtrip(c);
}

static void test_durable_survives_close_without_flush(void **state)
{
    const char *dir = kvs_test_dir("store_durable");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);

    (void)state;
    config(&c, dir);
    c.sync_index = true; /* every record commit synced: the same outcome */
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 0, &ns), 0);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(
            put_block(s, ns, i, buf, KVS_PUT_DURABLE, KVS_CLASS_USER), 0);
    /* Durable blocks are on disk already. */
    kvs_store_stats_t st;
    kvs_store_stats(s, &st);
    assert_int_equal(st.nvme_blocks, 8);
    kvs_store_close(s);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(check_block(s, ns, i, buf, want), 0);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

static int scan_count(void *arg, const void *key, uint32_t key_len,
                      const void *parent, uint32_t parent_len,
                      const kvs_block_info_t *info)
{
    (void)key;
    (void)parent;
    (void)parent_len;
    assert_int_equal(key_len, 32);
    assert_int_equal(info->data_len, BLK);
    if (arg)
        (*(uint32_t *)arg)++;
    return 0;
}

static void test_api_contracts(void **state)
{
    const char *dir = kvs_test_dir("store_api");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns, other;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    kvs_key_t keys[8];
    uint8_t kb[8][32];
    size_t m;

    (void)state;
    config(&c, dir);
    c.nvme_bytes = 0; /* DRAM only */
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "a", 2, &ns), 0);
    assert_int_equal(kvs_store_ns_open(s, "b", 2, &other), 0);
    assert_int_not_equal(ns, other);

    /* Match: the leading present keys, in order; a gap stops it. */
    for (uint32_t i = 0; i < 8; i++) {
        make_key(kb[i], i);
        keys[i] = (kvs_key_t){kb[i], 32};
    }
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(put_block(s, ns, i, buf, 0, KVS_CLASS_SCRATCH), 0);
    uint8_t tiers[8];
    assert_int_equal(kvs_store_match(s, ns, keys, 8, 0, tiers, &m), 0);
    assert_int_equal(m, 5);
    assert_int_equal(tiers[0], KVS_TIER_DRAM);
    assert_int_equal(kvs_store_match(s, other, keys, 8, 0, NULL, &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(kvs_store_delete(s, ns, kb[2], 32), 0);
    assert_int_equal(kvs_store_delete(s, ns, kb[2], 32), KVS_ENOTFOUND);
    assert_int_equal(kvs_store_match(s, ns, keys, 8, 0, NULL, &m), 0);
    assert_int_equal(m, 2);
    uint8_t present[8];
    assert_int_equal(kvs_store_exists(s, ns, keys, 8, present), 0);
    assert_int_equal(present[0] + present[1] + present[2] + present[3] +
                         present[4] + present[5],
                     4);

    /* Pin: a zero-copy view of the bytes; a pinned block cannot go. */
    kvs_view_t v;
    assert_int_equal(kvs_store_pin(s, ns, kb[1], 32, &v), 0);
    kvs_test_fill(want, BLK, 1);
    assert_int_equal(v.len, BLK);
    assert_memory_equal(v.data, want, BLK);
    assert_int_equal(v.nparts, NPARTS);
    assert_int_equal(kvs_store_delete(s, ns, kb[1], 32), KVS_EBUSY);
    assert_int_equal(put_block(s, ns, 1, buf, 0, KVS_CLASS_SCRATCH), KVS_EBUSY);
    kvs_store_stats_t st;
    kvs_store_stats(s, &st);
    assert_int_equal(st.refs, 1);
    kvs_store_unpin_view(s, &v);
    kvs_store_stats(s, &st);
    assert_int_equal(st.refs, 0);
    assert_int_equal(kvs_store_pin(s, ns, kb[1], 32, NULL), 0);
    assert_int_equal(kvs_store_unpin(s, ns, kb[1], 32), 0);
    assert_int_equal(kvs_store_unpin(s, ns, kb[1], 32), KVS_ENOTFOUND);
    assert_int_equal(kvs_store_delete(s, ns, kb[1], 32), 0);

    /* Match with pin takes one reference per matched block. */
    assert_int_equal(kvs_store_match(s, ns, keys, 8, KVS_MATCH_PIN, NULL, &m),
                     0);
    assert_int_equal(m, 1);
    kvs_store_stats(s, &st);
    assert_int_equal(st.refs, 1);
    assert_int_equal(kvs_store_unpin(s, ns, kb[0], 32), 0);

    /* Scan lists a namespace's blocks, and only those of a group. */
    uint64_t count;
    assert_int_equal(kvs_store_scan(s, ns, 0, scan_count, NULL, &count), 0);
    assert_int_equal(count, 3); /* 0, 3, 4 */
    uint32_t seen = 0;
    assert_int_equal(kvs_store_scan(s, ns, 0, scan_count, &seen, &count), 0);
    assert_int_equal(seen, 3);
    assert_int_equal(kvs_store_scan(s, ns, 77, scan_count, NULL, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(kvs_store_scan(s, other, 0, scan_count, NULL, &count), 0);
    assert_int_equal(count, 0);

    /* Errors: bad arguments, limits, small buffers. */
    uint8_t big[KVS_KEY_MAX + 1] = {0};
    kvs_iov_t part = {buf, 16};
    kvs_put_args_t a = {.ns = ns,
                        .key = big,
                        .key_len = KVS_KEY_MAX + 1,
                        .parts = &part,
                        .nparts = 1};
    assert_int_equal(kvs_store_put(s, &a), -EINVAL);
    a.key_len = 0;
    assert_int_equal(kvs_store_put(s, &a), -EINVAL);
    a.key_len = 4;
    a.nparts = 0;
    assert_int_equal(kvs_store_put(s, &a), -EINVAL);
    a.nparts = 1;
    a.cls = 7;
    assert_int_equal(kvs_store_put(s, &a), -EINVAL);
    a.cls = 0;
    part.len = c.max_block_bytes + 1;
    uint8_t *huge = calloc(1, part.len);
    part.base = huge;
    assert_int_equal(kvs_store_put(s, &a), KVS_ETOOBIG);
    free(huge);
    part = (kvs_iov_t){buf, 16};
    a.ns = 999;
    assert_int_equal(kvs_store_put(s, &a), KVS_ENOTFOUND);
    a.ns = ns;
    assert_int_equal(kvs_store_put(s, &a), 0);
    kvs_block_info_t info;
    kvs_get_args_t g = {
        .ns = ns, .key = big, .key_len = 4, .buf = buf, .cap = 8};
    assert_int_equal(kvs_store_get(s, &g, &info), -ENOBUFS);
    assert_int_equal(info.data_len, 16);
    g.cap = 16;
    assert_int_equal(kvs_store_get(s, &g, &info), 0);

    /* Pinned class is capped. */
    uint8_t *pbuf = malloc(BLK);
    int ret = 0;
    uint32_t i;
    for (i = 100; i < 200 && ret == 0; i++)
        ret = put_block(s, ns, i, pbuf, 0, KVS_CLASS_PINNED);
    assert_int_equal(ret, KVS_EPINNED_FULL);
    assert_true(i - 100 > 1);
    free(pbuf);

    /* TTL: a user block is gone once its time is up. */
    kvs_put_args_t t = {.ns = ns,
                        .key = "ttl",
                        .key_len = 3,
                        .parts = &part,
                        .nparts = 1,
                        .cls = KVS_CLASS_USER,
                        .ttl_ms = 30};
    assert_int_equal(kvs_store_put(s, &t), 0);
    g.key = "ttl";
    g.key_len = 3;
    usleep(80 * 1000);
    assert_int_equal(kvs_store_get(s, &g, &info), KVS_ENOTFOUND);
    /* And retention can be changed on a live block. */
    t.ttl_ms = 0;
    assert_int_equal(kvs_store_put(s, &t), 0);
    assert_int_equal(
        kvs_store_set_retention(s, ns, "ttl", 3, KVS_CLASS_USER, 30), 0);
    usleep(80 * 1000);
    assert_int_equal(kvs_store_get(s, &g, &info), KVS_ENOTFOUND);

    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

static void test_dram_only_evicts_lru(void **state)
{
    const char *dir = kvs_test_dir("store_dram");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    kvs_store_stats_t st;

    (void)state;
    config(&c, dir);
    c.nvme_bytes = 0;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 0, &ns), 0);
    for (uint32_t i = 0; i < 200; i++)
        assert_int_equal(put_block(s, ns, i, buf, 0, KVS_CLASS_SCRATCH), 0);
    kvs_store_stats(s, &st);
    assert_true(st.evicted > 0);
    assert_true(st.blocks < 200);
    /* The newest block is there; the oldest was evicted. */
    assert_int_equal(check_block(s, ns, 199, buf, want), 0);
    assert_int_equal(check_block(s, ns, 0, buf, want), KVS_ENOTFOUND);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

static void test_streaming_put(void **state)
{
    const char *dir = kvs_test_dir("store_stream");
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    kvs_put_stream_t ps;
    kvs_iov_t parts[NPARTS];
    uint8_t key[32];
    size_t m;

    (void)state;
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    make_key(key, 7);
    kvs_test_fill(want, BLK, 7);
    for (int p = 0; p < NPARTS; p++)
        parts[p] = (kvs_iov_t){NULL, BLK / NPARTS};
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = 32,
                        .parts = parts,
                        .nparts = NPARTS,
                        .flags = KVS_PUT_DURABLE};
    assert_int_equal(kvs_store_put_begin(s, &a, &ps), 0);
    kvs_key_t k = {key, 32};
    uint8_t present;
    /* Parts arrive out of order; until the last one the block is not
     * there for anyone. */
    for (int p = NPARTS - 1; p >= 1; p--) {
        if (p == 2) {
            size_t len;
            uint8_t *dst = kvs_store_put_part_buf(s, &ps, 2, &len);
            assert_non_null(dst);
            assert_int_equal(len, BLK / NPARTS);
            memcpy(dst, want + 2 * (BLK / NPARTS), len);
            assert_int_equal(kvs_store_put_part_done(s, &ps, 2), 0);
        } else {
            assert_int_equal(kvs_store_put_part(s, &ps, (uint32_t)p,
                                                want + p * (BLK / NPARTS),
                                                BLK / NPARTS),
                             0);
        }
        assert_int_equal(kvs_store_exists(s, ns, &k, 1, &present), 0);
        assert_int_equal(present, 0);
        assert_int_equal(kvs_store_match(s, ns, &k, 1, 0, NULL, &m), 0);
        assert_int_equal(m, 0);
        assert_int_equal(check_block(s, ns, 7, buf, want), KVS_ENOTFOUND);
    }
    assert_int_equal(kvs_store_put_part(s, &ps, 0, want, 5), KVS_EPROTO);
    assert_int_equal(kvs_store_put_seal(s, &ps), KVS_EINCOMPLETE);
    assert_int_equal(kvs_store_put_part(s, &ps, 0, want, BLK / NPARTS), 0);
    assert_int_equal(kvs_store_put_seal(s, &ps), 0);
    assert_int_equal(check_block(s, ns, 7, buf, want), 0);
    kvs_store_stats(s, &st);
    assert_int_equal(st.nvme_blocks, 1); /* durable: on disk already */

    /* An aborted stream leaves nothing behind. */
    make_key(key, 8);
    kvs_store_stats(s, &st);
    uint64_t used = st.dram_used_bytes;
    assert_int_equal(kvs_store_put_begin(s, &a, &ps), 0);
    assert_int_equal(kvs_store_put_part(s, &ps, 0, want, BLK / NPARTS), 0);
    kvs_store_put_abort(s, &ps);
    assert_int_equal(check_block(s, ns, 8, buf, want), KVS_ENOTFOUND);
    kvs_store_stats(s, &st);
    assert_int_equal(st.blocks, 1);
    assert_int_equal(st.dram_used_bytes, used);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

/* A flush when DRAM holds more than the disk tier can: it must end, with
 * KVS_EFULL, instead of writing blocks that a reclaim then drops again
 * forever (kvstashd hung at shutdown this way). */
static void test_flush_larger_than_disk(void **state)
{
    const char *dir = kvs_test_dir("store_flush_full");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = malloc(BLK);

    (void)state;
    config(&c, dir);
    c.dram_bytes = 64u << 20;
    c.nvme_bytes = 8u << 20;
    c.region_bytes = 2u << 20;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 0, &ns), 0);
    for (uint32_t i = 0; i < 120; i++) /* 30 MiB */
        assert_int_equal(put_block(s, ns, i, buf, 0, KVS_CLASS_SCRATCH), 0);
    assert_int_equal(kvs_store_flush(s), KVS_EFULL);
    /* Everything is still readable from DRAM or disk. */
    uint8_t *want = malloc(BLK);
    for (uint32_t i = 0; i < 120; i++)
        assert_int_equal(check_block(s, ns, i, buf, want), 0);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

/* What a scan reports of block i's parent: -1 none, -2 not seen, else the
 * parent's number. */
struct parents {
    int of[16];
};

static int note_parent(void *arg, const void *key, uint32_t key_len,
                       const void *parent, uint32_t parent_len,
                       const kvs_block_info_t *info)
{
    struct parents *p = arg;
    unsigned i, j;

    (void)info;
    assert_int_equal(key_len, 32);
    assert_int_equal(sscanf(key, "block-%08u", &i), 1);
    assert_true(i < 16);
    if (parent_len == 0) {
        p->of[i] = -1;
        return 0;
    }
    assert_int_equal(parent_len, 32);
    assert_int_equal(sscanf(parent, "block-%08u", &j), 1);
    p->of[i] = (int)j;
    return 0;
}

static void scan_parents(kvs_store_t *s, uint32_t ns, struct parents *p)
{
    uint64_t n;

    for (int i = 0; i < 16; i++)
        p->of[i] = -2;
    assert_int_equal(kvs_store_scan(s, ns, 0, note_parent, p, &n), 0);
}

/* A chain's blocks share their parents' key bytes (kvstore/keys.h): the
 * bytes a child reports for its parent outlive the parent's deletion and
 * replacement, and come back the same after a reopen, when the index
 * gives children before their parents. */
static void test_parent_keys_shared(void **state)
{
    const char *dir = kvs_test_dir("store_parent_keys");
    uint8_t keys[8][32];
    kvs_iov_t iov[8];
    kvs_put_args_t a[8];
    kvs_store_config_t c;
    struct parents p;
    kvs_store_t *s;
    uint32_t ns;
    int st[8];
    uint8_t *buf = malloc(BLK);

    (void)state;
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 0, &ns), 0);
    kvs_test_fill(buf, BLK, 7);
    /* 0 <- 1 <- ... <- 7 in one batch, so the parents are not in the
     * table yet when their children take their keys. */
    for (uint32_t i = 0; i < 8; i++) {
        make_key(keys[i], i);
        iov[i] = (kvs_iov_t){buf, 4096};
        a[i] = (kvs_put_args_t){.ns = ns,
                                .key = keys[i],
                                .key_len = 32,
                                .parts = &iov[i],
                                .nparts = 1,
                                .parent = i ? keys[i - 1] : NULL,
                                .parent_len = i ? 32 : 0};
    }
    assert_int_equal(kvs_store_put_batch(s, a, 8, st), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(st[i], 0);
    assert_int_equal(kvs_store_delete(s, ns, keys[3], 32), 0);
    assert_int_equal(kvs_store_put(s, &a[5]), 0); /* replaced */
    scan_parents(s, ns, &p);
    for (int i = 0; i < 8; i++)
        assert_int_equal(p.of[i], i == 3 ? -2 : i - 1);
    assert_int_equal(kvs_store_flush(s), 0);
    kvs_store_close(s);

    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 0, &ns), 0);
    scan_parents(s, ns, &p);
    for (int i = 0; i < 8; i++)
        assert_int_equal(p.of[i], i == 3 ? -2 : i - 1);
    /* Children outlive their parents' keys' owners. */
    for (uint32_t i = 0; i < 7; i++)
        if (i != 3)
            assert_int_equal(kvs_store_delete(s, ns, keys[i], 32), 0);
    scan_parents(s, ns, &p);
    for (int i = 0; i < 8; i++)
        assert_int_equal(p.of[i], i == 7 ? 6 : -2);
    kvs_store_close(s);
    free(buf);
    kvs_test_rmtree(dir);
}

/* Read slots for 16 MiB blocks add up past what kvstore/segment.c
 * registers with io_uring: they are read into unregistered, and the same
 * round trip holds. */
static void test_unregistered_read_slots(void **state)
{
    kvs_store_config_t c;

    (void)state;
    config(&c, kvs_test_dir("store_big_slots"));
    c.max_block_bytes = 16u << 20;
    c.region_bytes = 32u << 20;
    c.nvme_bytes = 128u << 20;
    c.dram_bytes = 32u << 20;
    c.io_depth = 4; /* 4 slots of 16 MiB: not registered */
    tiers_roundtrip(c);
}

/* An entry keeps a block's place in 4 KiB pages, 32 bits of them: a data
 * file over 16 TiB is refused at open, not truncated. */
static void test_config_refuses_nvme_over_16tib(void **state)
{
    kvs_store_config_t c;

    (void)state;
    kvs_store_config_default(&c);
    c.dir = "unused";
    c.nvme_bytes = (uint64_t)UINT32_MAX * 4096;
    assert_int_equal(kvs_store_config_check(&c), 0);
    c.nvme_bytes += 4096;
    assert_int_equal(kvs_store_config_check(&c), KVS_ECONFIG);
}

/* min_block_bytes: a put under it is refused with KVS_ETOOSMALL, one at
 * it stored; a minimum over max_block_bytes is a configuration error. */
static void test_min_block_bytes(void **state)
{
    const char *dir = kvs_test_dir("store_min_block");
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t data[4096] = {1};
    kvs_iov_t part = {data, 4095};
    kvs_put_args_t a = {.key = "k", .key_len = 1, .parts = &part,
                        .nparts = 1};

    (void)state;
    config(&c, dir);
    c.nvme_bytes = 0;
    c.min_block_bytes = c.max_block_bytes + 1;
    assert_int_equal(kvs_store_config_check(&c), KVS_ECONFIG);
    c.min_block_bytes = 4096;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "a", 2, &ns), 0);
    a.ns = ns;
    assert_int_equal(kvs_store_put(s, &a), KVS_ETOOSMALL);
    part.len = 4096;
    assert_int_equal(kvs_store_put(s, &a), 0);
    kvs_store_close(s);
    kvs_test_rmtree(dir);
}

/* The write buffers (8 MiB) are not sized for the largest block: a block
 * that still takes more than a buffer compressed is written raw from DRAM,
 * and one that fits goes compressed, both read back exactly. */
static void test_large_block_bypasses_write_buffers(void **state)
{
    const char *dir = kvs_test_dir("store_large");
    const uint32_t big = 12u << 20;
    kvs_store_config_t c;
    kvs_store_stats_t st;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = malloc(big), *got = malloc(big);
    uint64_t rng = 5;

    (void)state;
    kvs_store_config_default(&c);
    c.dir = dir;
    c.dram_bytes = 64u << 20;
    c.nvme_bytes = 96u << 20;
    c.region_bytes = 32u << 20;
    c.max_block_bytes = 16u << 20;
    c.max_blocks = 64;
    c.io_depth = 4;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "a", 1, &ns), 0);
    for (uint32_t i = 0; i < 2; i++) {
        /* "k0": 9 MiB of noise and 3 of zeros, over 8 MiB compressed;
         * "k1": 3 MiB of noise, 9 of zeros, compressed to about 3. */
        uint32_t noise = i ? 3u << 20 : 9u << 20;
        char key[4] = {'k', (char)('0' + i), 0, 0};
        for (uint32_t o = 0; o < noise; o += 8) {
            uint64_t r = kvs_test_rand(&rng);
            memcpy(buf + o, &r, 8);
        }
        memset(buf + noise, 0, big - noise);
        kvs_iov_t part = {buf, big};
        kvs_put_args_t a = {.ns = ns, .key = key, .key_len = 2,
                            .parts = &part, .nparts = 1,
                            .flags = KVS_PUT_NO_DRAM};
        assert_int_equal(kvs_store_put(s, &a), 0);
        kvs_store_stats(s, &st);
        assert_int_equal(st.dram_blocks, 0);
        if (i == 0)
            assert_int_equal(st.stored_bytes_degraded, big); /* raw */
        else
            assert_true(st.stored_bytes_degraded < big + (6u << 20));
        kvs_get_args_t g = {.ns = ns, .key = key, .key_len = 2, .buf = got,
                            .cap = big};
        kvs_block_info_t info;
        assert_int_equal(kvs_store_get(s, &g, &info), 0);
        assert_int_equal(info.data_len, big);
        assert_memory_equal(got, buf, big);
    }
    kvs_store_close(s);
    kvs_test_rmtree(dir);
    free(buf);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_refuses_nvme_over_16tib),
        cmocka_unit_test(test_min_block_bytes),
        cmocka_unit_test(test_large_block_bypasses_write_buffers),
        cmocka_unit_test(test_tiers_roundtrip_and_reopen),
        cmocka_unit_test(test_durable_survives_close_without_flush),
        cmocka_unit_test(test_api_contracts),
        cmocka_unit_test(test_dram_only_evicts_lru),
        cmocka_unit_test(test_streaming_put),
        cmocka_unit_test(test_flush_larger_than_disk),
        cmocka_unit_test(test_parent_keys_shared),
        cmocka_unit_test(test_unregistered_read_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
