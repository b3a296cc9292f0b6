/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention and the way down to disk: pinned blocks survive heavy pressure,
 * user blocks outlive scratch through region reclaim, the admission filter
 * keeps unhit scratch blocks off the disk, and blocks compressed on the way
 * down read back byte for byte (and as a miss when damaged).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

#define BLK (128u << 10)

static void config(kvs_store_config_t *c, const char *dir)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 8u << 20;
    c->nvme_bytes = 24u << 20;
    c->region_bytes = 2u << 20;
    c->max_block_bytes = 256u << 10;
    c->max_blocks = 4096;
    c->io_depth = 8;
    c->compress_level = 0;
    c->pinned_max_pct = 40;
}

static void key_of(char *key, const char *prefix, uint32_t i)
{
    snprintf(key, 24, "%s-%08u", prefix, i);
}

static int put_group(kvs_store_t *s, uint32_t ns, const char *prefix,
                     uint32_t i, uint8_t *buf, size_t len, uint8_t cls,
                     uint64_t ttl_ms, uint64_t group, uint32_t flags)
{
    char key[24];
    kvs_iov_t iov = {buf, len};

    key_of(key, prefix, i);
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = (uint32_t)strlen(key),
                        .parts = &iov,
                        .nparts = 1,
                        .cls = cls,
                        .ttl_ms = ttl_ms,
                        .group = group,
                        .flags = flags};
    return kvs_store_put(s, &a);
}

static int put(kvs_store_t *s, uint32_t ns, const char *prefix, uint32_t i,
               uint8_t *buf, size_t len, uint8_t cls, uint64_t ttl_ms,
               uint32_t flags)
{
    return put_group(s, ns, prefix, i, buf, len, cls, ttl_ms, 0, flags);
}

static int get(kvs_store_t *s, uint32_t ns, const char *prefix, uint32_t i,
               uint8_t *buf, size_t cap)
{
    char key[24];
    kvs_block_info_t info;

    key_of(key, prefix, i);
    kvs_get_args_t g = {.ns = ns,
                        .key = key,
                        .key_len = (uint32_t)strlen(key),
                        .buf = buf,
                        .cap = cap};
    return kvs_store_get(s, &g, &info);
}

/* bf16 values of a normal distribution: the top half of a float. */
static void fill_bf16(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t rng = seed;

    for (size_t i = 0; i + 1 < len; i += 2) {
        double u1 =
            ((double)(kvs_test_rand(&rng) >> 11) + 1) / 9007199254740993.0;
        double u2 = (double)(kvs_test_rand(&rng) >> 11) / 9007199254740992.0;
        float f = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
        uint32_t b;
        memcpy(&b, &f, 4);
        buf[i] = (uint8_t)(b >> 16);
        buf[i + 1] = (uint8_t)(b >> 24);
    }
}

static void test_pinned_and_user_survive_pressure(void **state)
{
    const char *dir = kvs_test_dir("retention_pressure");
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);

    (void)state;
    config(&c, dir);
    c.compress_level = 1;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    /* A few system prompts and a conversation's memory, then a flood of
     * scratch blocks ten times the store's size. */
    for (uint32_t i = 0; i < 8; i++) {
        kvs_test_fill(buf, BLK, 1000 + i);
        assert_int_equal(put(s, ns, "pin", i, buf, BLK, KVS_CLASS_PINNED, 0,
                             KVS_PUT_DURABLE),
                         0);
    }
    for (uint32_t i = 0; i < 16; i++) {
        kvs_test_fill(buf, BLK, 2000 + i);
        assert_int_equal(
            put(s, ns, "user", i, buf, BLK, KVS_CLASS_USER, 3600 * 1000, 0), 0);
    }
    for (uint32_t i = 0; i < 2400; i++) {
        /* Compressible and incompressible blocks interleave, so buffered
         * (compressed) and direct (raw) writes share the ring. */
        if (i % 2)
            fill_bf16(buf, BLK, i);
        else
            kvs_test_fill(buf, BLK, i);
        int ret = put(s, ns, "scratch", i, buf, BLK, KVS_CLASS_SCRATCH, 0, 0);
        assert_true(ret == 0 || ret == KVS_EFULL);
    }
    kvs_store_stats(s, &st);
    assert_true(st.evicted > 0);
    assert_true(st.regions_reclaimed > 0);
    for (uint32_t i = 0; i < 8; i++) {
        kvs_test_fill(want, BLK, 1000 + i);
        assert_int_equal(get(s, ns, "pin", i, buf, BLK), 0);
        assert_memory_equal(buf, want, BLK);
    }
    for (uint32_t i = 0; i < 16; i++) {
        kvs_test_fill(want, BLK, 2000 + i);
        assert_int_equal(get(s, ns, "user", i, buf, BLK), 0);
        assert_memory_equal(buf, want, BLK);
    }
    /* Old scratch blocks went first: fewer of the first 200 are left than
     * of the last 200. */
    uint32_t old_left = 0, new_left = 0;
    for (uint32_t i = 0; i < 200; i++) {
        old_left += get(s, ns, "scratch", i, buf, BLK) == 0;
        new_left += get(s, ns, "scratch", 2200 + i, buf, BLK) == 0;
    }
    assert_true(old_left < new_left);
    assert_int_equal(st.corrupt_reads, 0);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

static void test_admission_filter(void **state)
{
    const char *dir = kvs_test_dir("retention_admission");
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK);

    (void)state;
    config(&c, dir);
    c.admit_scratch_hits = 1;
    /* The window may take all of DRAM, so the main list (where the hit
     * block is) is written behind first. */
    c.policy_window_pct = 100;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    /* Block 0 is read back (a hit) before the flood; the others are not. */
    kvs_test_fill(buf, BLK, 7);
    assert_int_equal(put(s, ns, "hot", 0, buf, BLK, KVS_CLASS_SCRATCH, 0, 0),
                     0);
    assert_int_equal(get(s, ns, "hot", 0, buf, BLK), 0);
    for (uint32_t i = 0; i < 200; i++)
        assert_int_equal(
            put(s, ns, "cold", i, buf, BLK, KVS_CLASS_SCRATCH, 0, 0), 0);
    kvs_store_stats(s, &st);
    assert_true(st.admission_rejected > 0);
    /* The hit block went to disk rather than away. */
    assert_int_equal(get(s, ns, "hot", 0, buf, BLK), 0);
    assert_true(st.degraded >= 1);
    assert_int_equal(get(s, ns, "cold", 0, buf, BLK), KVS_ENOTFOUND);
    kvs_store_close(s);
    free(buf);
    kvs_test_rmtree(dir);
}

static void test_compressed_roundtrip_and_damage(void **state)
{
    const char *dir = kvs_test_dir("retention_codec");
    char path[4200];
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    const uint32_t n = 40;

    (void)state;
    config(&c, dir);
    c.compress_level = 1;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "bf16", 2, &ns), 0);
    for (uint32_t i = 0; i < n; i++) {
        /* bf16-like, constant, and random blocks: every codec path. */
        if (i % 3 == 0)
            fill_bf16(buf, BLK, i);
        else if (i % 3 == 1)
            memset(buf, (int)i, BLK);
        else
            kvs_test_fill(buf, BLK, i);
        assert_int_equal(put(s, ns, "c", i, buf, BLK, KVS_CLASS_USER, 0, 0), 0);
    }
    assert_int_equal(kvs_store_flush(s), 0);
    kvs_store_stats(s, &st);
    assert_true(st.stored_bytes_degraded < st.logical_bytes_degraded);
    kvs_store_close(s);

    /* Damage the middle of every payload on disk, past the header page. */
    snprintf(path, sizeof(path), "%s/data.kvs", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    uint32_t damaged = 0;
    for (off_t off = 0; off + 8192 <= size; off += 4096) {
        uint8_t hdr[64];
        assert_int_equal(pread(fd, hdr, sizeof(hdr), off), sizeof(hdr));
        if (memcmp(hdr, "KVSB", 4) != 0)
            continue;
        char key[24];
        assert_int_equal(pread(fd, key, 11, off + 72), 11);
        key[11] = 0;
        unsigned idx;
        if (sscanf(key, "c-%08u", &idx) != 1 || idx % 2 != 0)
            continue; /* damage even blocks only */
        uint64_t stored;
        memcpy(&stored, hdr + 48, 8);
        uint8_t b;
        off_t at = off + 4096 + (off_t)(stored / 2);
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        damaged++;
    }
    close(fd);
    assert_int_equal(damaged, n / 2);

    assert_int_equal(kvs_store_open(&c, &s), 0);
    for (uint32_t i = 0; i < n; i++) {
        int ret = get(s, ns, "c", i, buf, BLK);
        if (i % 2 == 0) {
            assert_int_equal(ret, KVS_ENOTFOUND);
            continue;
        }
        if (i % 3 == 0)
            fill_bf16(want, BLK, i);
        else if (i % 3 == 1)
            memset(want, (int)i, BLK);
        else
            kvs_test_fill(want, BLK, i);
        assert_int_equal(ret, 0);
        assert_memory_equal(buf, want, BLK);
    }
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, n / 2);
    kvs_store_close(s);
    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

/* User blocks past their TTL give their space back, durable or not, and
 * nothing else goes: blocks without a TTL, with a long one, or whose TTL
 * was lifted stay; a TTL set later takes effect. More blocks expire than
 * the sweep takes per lock hold, so it has to come back for the rest. */
static void test_ttl_sweep(void **state)
{
    const char *dir = kvs_test_dir("retention_ttl");
    enum { SHORT = 300, LONG = 20, NONE = 20, LIFTED = 10, LATER = 10 };
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(4096);
    char key[24];

    (void)state;
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    memset(buf, 7, 4096);
    for (uint32_t i = 0; i < SHORT; i++)
        assert_int_equal(put(s, ns, "short", i, buf, 4096, KVS_CLASS_USER, 300,
                             i % 2 ? KVS_PUT_DURABLE : 0),
                         0);
    for (uint32_t i = 0; i < LONG; i++)
        assert_int_equal(put(s, ns, "long", i, buf, 4096, KVS_CLASS_USER,
                             3600 * 1000, KVS_PUT_DURABLE),
                         0);
    for (uint32_t i = 0; i < NONE; i++)
        assert_int_equal(
            put(s, ns, "none", i, buf, 4096, KVS_CLASS_SCRATCH, 0, 0), 0);
    for (uint32_t i = 0; i < LIFTED; i++) {
        assert_int_equal(
            put(s, ns, "lifted", i, buf, 4096, KVS_CLASS_USER, 60000, 0), 0);
        key_of(key, "lifted", i);
        assert_int_equal(kvs_store_set_retention(s, ns, key,
                                                 (uint32_t)strlen(key),
                                                 KVS_CLASS_USER, 0),
                         0);
    }
    for (uint32_t i = 0; i < LATER; i++) {
        assert_int_equal(
            put(s, ns, "later", i, buf, 4096, KVS_CLASS_SCRATCH, 0, 0), 0);
        key_of(key, "later", i);
        assert_int_equal(kvs_store_set_retention(s, ns, key,
                                                 (uint32_t)strlen(key),
                                                 KVS_CLASS_USER, 300),
                         0);
    }
    assert_int_equal(kvs_store_check(s), 0);
    /* The background thread sweeps at least once a second. Nothing here
     * depends on how long the puts took (under ASan, on a loaded machine,
     * the first short-lived blocks may be gone before the last is put). */
    for (int i = 0; i < 200; i++) {
        kvs_store_stats(s, &st);
        if (st.expired >= SHORT + LATER)
            break;
        usleep(50000);
    }
    assert_int_equal(st.expired, SHORT + LATER);
    assert_int_equal(st.blocks, LONG + NONE + LIFTED);
    assert_int_equal(st.dram_blocks, LONG + NONE + LIFTED);
    assert_int_equal(kvs_store_check(s), 0);
    assert_int_equal(get(s, ns, "short", 1, buf, 4096), KVS_ENOTFOUND);
    assert_int_equal(get(s, ns, "later", 0, buf, 4096), KVS_ENOTFOUND);
    for (uint32_t i = 0; i < LONG; i++)
        assert_int_equal(get(s, ns, "long", i, buf, 4096), 0);
    for (uint32_t i = 0; i < NONE; i++)
        assert_int_equal(get(s, ns, "none", i, buf, 4096), 0);
    for (uint32_t i = 0; i < LIFTED; i++)
        assert_int_equal(get(s, ns, "lifted", i, buf, 4096), 0);
    /* The durable ones that expired left the index too: after a restart
     * only the long-lived durable blocks come back. */
    kvs_store_close(s);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    kvs_store_stats(s, &st);
    assert_int_equal(st.blocks, LONG);
    assert_int_equal(kvs_store_check(s), 0);
    kvs_store_close(s);
    free(buf);
    kvs_test_rmtree(dir);
}

/* Scan callback: every block of the group has the TTL expected of it. */
struct side_scan {
    uint32_t n, with_ttl;
};

static int side_scan_one(void *arg, const void *key, uint32_t key_len,
                         const void *parent, uint32_t parent_len,
                         const kvs_block_info_t *info)
{
    struct side_scan *ss = arg;

    (void)key, (void)key_len, (void)parent, (void)parent_len;
    ss->n++;
    ss->with_ttl += info->expiry_ms != 0;
    return 0;
}

/* TTLs and groups live beside the block table, for the few blocks that
 * have one (issue 19), and a disk copy's checksum only in its header and
 * index record: both survive a change of retention on a block on disk and
 * a restart, and every block reads back byte for byte from disk after it,
 * while a block with neither costs no side record. */
static void test_side_records_restart(void **state)
{
    const char *dir = kvs_test_dir("retention_side");
    enum { N = 64 };
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *buf = malloc(4096), *got = malloc(4096);
    char key[24];

    (void)state;
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    for (uint32_t i = 0; i < N; i++) {
        memset(buf, (int)(i + 1), 4096);
        /* i % 4: TTL and group 7, group 9, TTL, none */
        assert_int_equal(put_group(s, ns, "side", i, buf, 4096, KVS_CLASS_USER,
                                   i % 4 == 0 || i % 4 == 2 ? 3600000 : 0,
                                   i % 4 == 0   ? 7
                                   : i % 4 == 1 ? 9
                                                : 0,
                                   KVS_PUT_DURABLE),
                         0);
    }
    /* On disk, so each change rewrites the block's index record: the
     * TTLs of group 9 set, those of the "TTL only" blocks lifted. */
    for (uint32_t i = 0; i < N; i++) {
        if (i % 4 != 1 && i % 4 != 2)
            continue;
        key_of(key, "side", i);
        assert_int_equal(
            kvs_store_set_retention(s, ns, key, (uint32_t)strlen(key),
                                    KVS_CLASS_USER, i % 4 == 1 ? 7200000 : 0),
            0);
    }
    assert_int_equal(kvs_store_check(s), 0);
    for (int round = 0; round < 2; round++) {
        struct side_scan g7 = {0}, g9 = {0};
        uint64_t n;

        assert_int_equal(kvs_store_scan(s, ns, 7, side_scan_one, &g7, &n), 0);
        assert_int_equal(g7.n, N / 4);
        assert_int_equal(g7.with_ttl, N / 4);
        assert_int_equal(kvs_store_scan(s, ns, 9, side_scan_one, &g9, &n), 0);
        assert_int_equal(g9.n, N / 4);
        assert_int_equal(g9.with_ttl, N / 4);
        for (uint32_t i = 0; i < N; i++) {
            kvs_block_info_t info;

            key_of(key, "side", i);
            kvs_get_args_t g = {.ns = ns,
                                .key = key,
                                .key_len = (uint32_t)strlen(key),
                                .buf = got,
                                .cap = 4096};
            assert_int_equal(kvs_store_get(s, &g, &info), 0);
            memset(buf, (int)(i + 1), 4096);
            assert_memory_equal(got, buf, 4096);
            assert_int_equal(info.expiry_ms != 0, i % 4 <= 1);
            assert_int_equal(info.group, i % 4 == 0 ? 7 : i % 4 == 1 ? 9 : 0);
            if (round == 1)
                assert_int_equal(info.tier, KVS_TIER_NVME);
        }
        assert_int_equal(kvs_store_check(s), 0);
        kvs_store_close(s);
        assert_int_equal(kvs_store_open(&c, &s), 0);
        assert_int_equal(kvs_store_ns_open(s, "ns", 2, &ns), 0);
    }
    kvs_store_close(s);
    free(buf);
    free(got);
    kvs_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pinned_and_user_survive_pressure),
        cmocka_unit_test(test_admission_filter),
        cmocka_unit_test(test_compressed_roundtrip_and_damage),
        cmocka_unit_test(test_ttl_sweep),
        cmocka_unit_test(test_side_records_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
