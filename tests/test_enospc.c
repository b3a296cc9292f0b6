/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk full. The store lives on a 40 MiB tmpfs mounted for the test (in a
 * private mount namespace, so it disappears with the process however the
 * test ends) while nvme_bytes asks for 128 MiB: preallocation fails and
 * regions are reserved one at a time until the file system refuses.
 *
 *   - scratch: durable puts never fail for lack of disk, they reclaim the
 *     oldest region instead; every get returns the right bytes or
 *     KVS_ENOTFOUND (evicted), and the newest blocks are all there.
 *   - pinned: pinned blocks cannot be evicted, so durable pinned puts fail
 *     once the disk is full, with KVS_EFULL; blocks stored before read back
 *     intact, before and after a reopen; after some are deleted, puts work
 *     again.
 *
 * Needs CAP_SYS_ADMIN for unshare(CLONE_NEWNS) and mount; exits 77 (skip)
 * without it.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

#define FS_MB 40u
#define BLK (256u << 10)
#define NMAX 400u /* more blocks than the file system holds */
#define KEYLEN 12u

static char mnt[4096];
static char cur[4200]; /* the running case's store, removed after it */

static int teardown(void **state)
{
    (void)state;
    if (*cur)
        kvs_test_rmtree(cur);
    *cur = '\0';
    return 0;
}

static void config(kvs_store_config_t *c, const char *dir)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 96u << 20;
    c->nvme_bytes = 128u << 20; /* more than the file system */
    c->region_bytes = 4u << 20;
    c->max_block_bytes = BLK;
    c->max_blocks = 2048;
    c->io_depth = 8;
    c->pinned_max_pct = 100;
    c->compress_level = 0; /* random bytes: do not try */
    c->full_wait_ms = 200;
}

static void make_key(char *key, uint32_t i)
{
    snprintf(key, KEYLEN + 1, "full-%07u", i);
}

static int put_block(kvs_store_t *s, uint32_t ns, uint32_t i, uint8_t *buf,
                     uint8_t cls)
{
    char key[KEYLEN + 1];

    make_key(key, i);
    kvs_test_fill(buf, BLK, i);
    kvs_iov_t part = {buf, BLK};
    kvs_put_args_t a = {.ns = ns,
                        .key = key,
                        .key_len = KEYLEN,
                        .parts = &part,
                        .nparts = 1,
                        .cls = cls,
                        .flags = KVS_PUT_DURABLE};
    return kvs_store_put(s, &a);
}

/* 0 if block i reads back intact, else the get's status; fails the test
 * if it reads back wrong. */
static int get_block(kvs_store_t *s, uint32_t ns, uint32_t i, uint8_t *buf,
                     uint8_t *want)
{
    char key[KEYLEN + 1];
    kvs_block_info_t info;

    make_key(key, i);
    kvs_get_args_t g = {
        .ns = ns, .key = key, .key_len = KEYLEN, .buf = buf, .cap = BLK};
    int ret = kvs_store_get(s, &g, &info);
    if (ret)
        return ret;
    kvs_test_fill(want, BLK, i);
    assert_int_equal(info.data_len, BLK);
    assert_memory_equal(buf, want, BLK);
    return 0;
}

static uint64_t fs_free_mb(void)
{
    struct statvfs v;

    if (statvfs(mnt, &v) < 0)
        return 0;
    return (uint64_t)v.f_bavail * v.f_frsize >> 20;
}

static void test_scratch_reclaims(void **state)
{
    char dir[4200];
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns, n = 0, present = 0;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    int ret = 0;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/scratch", mnt);
    snprintf(cur, sizeof(cur), "%s", dir);
    config(&c, dir);
    /* Blocks leave DRAM soon after they reach the disk, so reclaiming a
     * region evicts them. */
    c.dram_bytes = 8u << 20;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "full", 0, &ns), 0);
    /* Until the disk has been reused a few times over. */
    for (n = 0; n < NMAX; n++) {
        ret = put_block(s, ns, n, buf, KVS_CLASS_SCRATCH);
        if (ret)
            break;
        kvs_store_stats(s, &st);
        if (st.regions_reclaimed >= 8)
            break;
    }
    kvs_store_stats(s, &st);
    print_message("scratch: %u durable puts, last status %s; %llu regions "
                  "reclaimed, %llu evicted, %llu blocks on disk, %llu MiB "
                  "left on the file system\n",
                  n + (ret == 0), kvs_strerror(ret),
                  (unsigned long long)st.regions_reclaimed,
                  (unsigned long long)st.evicted,
                  (unsigned long long)st.nvme_blocks,
                  (unsigned long long)fs_free_mb());
    assert_int_equal(ret, 0);
    assert_true(st.evicted > 0);
    assert_true(st.regions_reclaimed >= 8);
    /* Every get: right bytes or evicted. The newest region's worth must
     * be there. */
    for (uint32_t i = 0; i <= n && i < NMAX; i++) {
        ret = get_block(s, ns, i, buf, want);
        if (ret == 0)
            present++;
        else
            assert_int_equal(ret, KVS_ENOTFOUND);
        if (i + 8 > n)
            assert_int_equal(ret, 0);
    }
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, 0);
    assert_int_equal(present, st.blocks);
    kvs_store_close(s);

    /* Every block was put durable; those still present at close are on
     * disk and come back. */
    uint32_t back = 0;
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "full", 0, &ns), 0);
    for (uint32_t i = 0; i <= n && i < NMAX; i++) {
        ret = get_block(s, ns, i, buf, want);
        if (ret == 0)
            back++;
        else
            assert_int_equal(ret, KVS_ENOTFOUND);
    }
    kvs_store_stats(s, &st);
    print_message("scratch: %u of the %u blocks present at close are back "
                  "after reopen (%llu corrupt reads)\n",
                  back, present, (unsigned long long)st.corrupt_reads);
    assert_int_equal(st.corrupt_reads, 0);
    assert_int_equal(back, present);
    kvs_store_close(s);
    free(buf);
    free(want);
}

static void test_pinned_fills(void **state)
{
    char dir[4200];
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns, n, stored;
    uint8_t *buf = malloc(BLK), *want = malloc(BLK);
    int ret = 0;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/pinned", mnt);
    snprintf(cur, sizeof(cur), "%s", dir);
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "full", 0, &ns), 0);
    for (n = 0; n < NMAX; n++) {
        ret = put_block(s, ns, n, buf, KVS_CLASS_PINNED);
        if (ret)
            break;
    }
    kvs_store_stats(s, &st);
    print_message(
        "pinned: %u durable pinned puts stored, then %s; %llu "
        "regions reclaimed, %llu evicted, %llu on disk, %llu MiB "
        "left on the file system\n",
        n, kvs_strerror(ret), (unsigned long long)st.regions_reclaimed,
        (unsigned long long)st.evicted, (unsigned long long)st.nvme_blocks,
        (unsigned long long)fs_free_mb());
    stored = n;
    assert_true(n < NMAX);
    assert_int_equal(ret, KVS_EFULL);
    /* It stays full, and says so. */
    assert_int_equal(put_block(s, ns, stored, buf, KVS_CLASS_PINNED),
                     KVS_EFULL);
    for (uint32_t i = 0; i < stored; i++)
        assert_int_equal(get_block(s, ns, i, buf, want), 0);
    kvs_store_close(s);

    /* Every pinned block was acknowledged durable: all back. */
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "full", 0, &ns), 0);
    uint32_t lost = 0;
    for (uint32_t i = 0; i < stored; i++) {
        ret = get_block(s, ns, i, buf, want);
        if (ret == KVS_ENOTFOUND)
            lost++;
        else
            assert_int_equal(ret, 0);
    }
    kvs_store_stats(s, &st);
    print_message("pinned: after reopen %u of %u durable pinned blocks are "
                  "missing (%llu corrupt reads)\n",
                  lost, stored, (unsigned long long)st.corrupt_reads);
    assert_int_equal(lost, 0);
    assert_int_equal(st.blocks, stored);
    assert_int_equal(st.corrupt_reads, 0);

    /* Free a third, oldest first: whole regions empty out and the same
     * number of puts fit again. */
    uint32_t freed = stored / 3;
    for (uint32_t i = 0; i < freed; i++) {
        char key[KEYLEN + 1];
        make_key(key, i);
        assert_int_equal(kvs_store_delete(s, ns, key, KEYLEN), 0);
    }
    uint32_t again = 0;
    for (n = stored; n < stored + freed; n++) {
        ret = put_block(s, ns, n, buf, KVS_CLASS_PINNED);
        if (ret)
            break;
        again++;
    }
    print_message("pinned: deleted %u, then %u puts fit again (last %s)\n",
                  freed, again, kvs_strerror(ret));
    assert_true(again >= freed * 3 / 4);
    for (uint32_t i = freed; i < stored + again; i++)
        assert_int_equal(get_block(s, ns, i, buf, want), 0);
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, 0);
    kvs_store_close(s);
    free(buf);
    free(want);
}

int main(void)
{
    char opts[64];
    int rc;

    snprintf(mnt, sizeof(mnt), "%s/fs", kvs_test_dir("enospc"));
    /* A private mount namespace: the tmpfs goes away with this process,
     * also when it crashes. */
    if (unshare(CLONE_NEWNS) < 0) {
        printf("skip: unshare(CLONE_NEWNS): %s (needs CAP_SYS_ADMIN)\n",
               strerror(errno));
        return KVS_TEST_SKIP;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        printf("skip: making mounts private: %s\n", strerror(errno));
        return KVS_TEST_SKIP;
    }
    if (mkdir(mnt, 0755) < 0 && errno != EEXIST) {
        printf("cannot create %s: %s\n", mnt, strerror(errno));
        return 1;
    }
    snprintf(opts, sizeof(opts), "size=%um", FS_MB);
    if (mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
        printf("skip: mount -t tmpfs -o %s tmpfs %s: %s\n", opts, mnt,
               strerror(errno));
        return KVS_TEST_SKIP;
    }

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_scratch_reclaims, teardown),
        cmocka_unit_test_teardown(test_pinned_fills, teardown),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);

    if (umount2(mnt, MNT_DETACH) < 0) {
        printf("umount %s: %s\n", mnt, strerror(errno));
        rc = rc ? rc : 1;
    }
    *strrchr(mnt, '/') = '\0';
    kvs_test_rmtree(mnt);
    return rc;
}
