/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RocksDB index (kvstore/index.c) on a real database under
 * $KVS_TEST_DIR: the layout record, namespaces, region generations and
 * block records written in batches, read back field for field, deleted
 * (in a batch and by uid), all still there after close and reopen;
 * records that do not decode, written into the database behind the
 * index's back, are counted, skipped and deleted at load, never handed
 * out; and a store whose index is of format 1 is migrated at open.
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
#include <rocksdb/c.h>

#include "common/endian.h"
#include "kvstash/status.h"
#include "kvstore/index.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

#include "common/xxh.h"

static char db_path[4200];

static kvs_index_rec_t rec_make(uint32_t ns, const char *key, uint64_t uid)
{
    kvs_index_rec_t r = {
        .ns = ns,
        .key_len = (uint8_t)strlen(key),
        .parent_len = 3,
        .codec = 1,
        .elem_size = 2,
        .cls = KVS_CLASS_USER,
        .nparts = 4,
        .region = 7,
        .disk_len = 12288,
        .disk_off = 7ull << 26,
        .gen = 9,
        .raw_len = 10000,
        .stored_len = 8000,
        .data_xxh = 0xabcdef12345ull,
        .expiry_ms = 1234567,
        .group = 77,
        .uid = uid,
    };

    memcpy(r.key, key, r.key_len);
    memcpy(r.parent, "par", 3);
    return r;
}

struct loaded {
    unsigned n;
    kvs_index_rec_t recs[16];
};

static void on_rec(void *arg, const kvs_index_rec_t *rec)
{
    struct loaded *l = arg;

    assert_true(l->n < 16);
    l->recs[l->n++] = *rec;
}

static const kvs_index_rec_t *find(const struct loaded *l, const char *key)
{
    for (unsigned i = 0; i < l->n; i++)
        if (l->recs[i].key_len == strlen(key) &&
            memcmp(l->recs[i].key, key, l->recs[i].key_len) == 0)
            return &l->recs[i];
    return NULL;
}

static void assert_rec_equal(const kvs_index_rec_t *a, const kvs_index_rec_t *b)
{
    assert_non_null(a);
    assert_int_equal(a->ns, b->ns);
    assert_int_equal(a->key_len, b->key_len);
    assert_memory_equal(a->key, b->key, b->key_len);
    assert_int_equal(a->parent_len, b->parent_len);
    assert_memory_equal(a->parent, b->parent, b->parent_len);
    assert_int_equal(a->codec, b->codec);
    assert_int_equal(a->elem_size, b->elem_size);
    assert_int_equal(a->cls, b->cls);
    assert_int_equal(a->nparts, b->nparts);
    assert_int_equal(a->region, b->region);
    assert_int_equal(a->disk_len, b->disk_len);
    assert_int_equal(a->disk_off, b->disk_off);
    assert_int_equal(a->gen, b->gen);
    assert_int_equal(a->raw_len, b->raw_len);
    assert_int_equal(a->stored_len, b->stored_len);
    assert_int_equal(a->data_xxh, b->data_xxh);
    assert_int_equal(a->expiry_ms, b->expiry_ms);
    assert_int_equal(a->group, b->group);
    assert_int_equal(a->uid, b->uid);
}

static void load(kvs_index_t *idx, struct loaded *l, uint64_t *bad)
{
    memset(l, 0, sizeof(*l));
    assert_int_equal(kvs_index_block_load(idx, on_rec, l, bad), 0);
}

struct ns_seen {
    char name[64];
    uint32_t id, elem_size;
    unsigned n;
};

static void on_ns(void *arg, const char *name, size_t len, uint32_t id,
                  uint32_t elem_size)
{
    struct ns_seen *s = arg;

    assert_true(len < sizeof(s->name));
    memcpy(s->name, name, len);
    s->name[len] = 0;
    s->id = id;
    s->elem_size = elem_size;
    s->n++;
}

static void on_region(void *arg, uint32_t region, uint64_t gen)
{
    uint64_t *gens = arg;

    assert_true(region < 4);
    gens[region] = gen;
}

/* Everything written, read back, deleted, and read back after reopen. */
static void test_put_get_delete_reopen(void **state)
{
    kvs_index_t *idx;
    kvs_index_batch_t *b;
    kvs_index_meta_t meta, want = {KVS_INDEX_FORMAT, 64u << 20, 16};
    kvs_index_rec_t r1 = rec_make(1, "alpha", 11), r2 = rec_make(1, "beta", 12),
                    r3 = rec_make(2, "alpha", 13),
                    gone = rec_make(1, "gone", 14);
    struct loaded l;
    struct ns_seen ns = {0};
    uint64_t bad = 99, gens[4] = {0};

    (void)state;
    snprintf(db_path, sizeof(db_path), "%s/index", kvs_test_dir("index_rw"));
    assert_int_equal(kvs_index_open(db_path, &idx), 0);
    assert_int_equal(kvs_index_meta_get(idx, &meta), KVS_ENOTFOUND);
    assert_int_equal(kvs_index_meta_put(idx, &want), 0);
    assert_int_equal(kvs_index_ns_put(idx, "model-a", 7, 3, 2), 0);
    assert_int_equal(kvs_index_region_put(idx, 2, 41, true), 0);
    assert_int_equal(kvs_index_region_put(idx, 2, 42, false), 0);

    /* One batch, applied atomically: three records and one that a later
     * delete in the same batch takes back out. */
    assert_int_equal(kvs_index_batch_create(&b), 0);
    kvs_index_batch_put(b, &r1);
    kvs_index_batch_put(b, &r2);
    kvs_index_batch_put(b, &r3);
    kvs_index_batch_put(b, &gone);
    kvs_index_batch_delete(b, gone.uid);
    assert_int_equal(kvs_index_commit(idx, b, true), 0);
    kvs_index_batch_clear(b);
    assert_int_equal(kvs_index_commit(idx, b, false), 0); /* empty */

    load(idx, &l, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(l.n, 3);
    assert_rec_equal(find(&l, "beta"), &r2);
    assert_null(find(&l, "gone"));

    /* A record is deleted by its uid; another uid leaves it. */
    assert_int_equal(kvs_index_block_delete(idx, 999), 0);
    load(idx, &l, &bad);
    assert_int_equal(l.n, 3);
    assert_int_equal(kvs_index_block_delete(idx, r2.uid), 0);
    /* A new put of a key is a record of its own (the store deletes the
     * old one; recovery keeps the larger uid if both are left). */
    kvs_index_rec_t r1new = r1;
    r1new.uid = 21;
    r1new.gen = 10;
    kvs_index_batch_put(b, &r1new);
    assert_int_equal(kvs_index_commit(idx, b, true), 0);
    kvs_index_batch_destroy(b);
    kvs_index_close(idx);

    assert_int_equal(kvs_index_open(db_path, &idx), 0);
    assert_int_equal(kvs_index_meta_get(idx, &meta), 0);
    assert_int_equal(meta.format, want.format);
    assert_int_equal(meta.region_bytes, want.region_bytes);
    assert_int_equal(meta.nregions, want.nregions);
    assert_int_equal(kvs_index_ns_load(idx, on_ns, &ns), 0);
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.name, "model-a");
    assert_int_equal(ns.id, 3);
    assert_int_equal(ns.elem_size, 2);
    assert_int_equal(kvs_index_region_load(idx, on_region, gens), 0);
    assert_int_equal(gens[2], 42);
    assert_int_equal(gens[0], 0);
    load(idx, &l, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(l.n, 3);
    assert_null(find(&l, "beta"));
    /* In uid order: alpha of ns 1, alpha of ns 2, the new alpha of ns 1. */
    assert_rec_equal(&l.recs[0], &r1);
    assert_rec_equal(&l.recs[1], &r3);
    assert_rec_equal(&l.recs[2], &r1new);
    kvs_index_close(idx);
}

/* Writes raw bytes under a block key, as a torn or foreign write would. */
static void raw_put(const void *k, size_t kl, const void *v, size_t vl)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, db_path, &err);

    assert_null(err);
    rocksdb_put(db, w, k, kl, v, vl, &err);
    assert_null(err);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(w);
    rocksdb_options_destroy(o);
}

static void test_corrupt_records_rejected(void **state)
{
    kvs_index_t *idx;
    kvs_index_batch_t *b;
    kvs_index_rec_t good = rec_make(1, "good", 1), out;
    uint8_t k[KVS_INDEX_KEY_MAX], v[KVS_INDEX_REC_MAX];
    struct loaded l;
    uint64_t bad = 0;

    (void)state;
    snprintf(db_path, sizeof(db_path), "%s/index",
             kvs_test_dir("index_corrupt"));
    assert_int_equal(kvs_index_open(db_path, &idx), 0);
    assert_int_equal(kvs_index_batch_create(&b), 0);
    kvs_index_batch_put(b, &good);
    assert_int_equal(kvs_index_commit(idx, b, true), 0);
    kvs_index_batch_destroy(b);
    kvs_index_close(idx);

    /* The decoder on its own: the encoded record decodes; one flipped
     * bit, a truncation or a bad class does not. */
    kvs_index_rec_t flip = rec_make(1, "flip", 2);
    size_t kl = kvs_index_key_encode(flip.uid, k);
    size_t vl = kvs_index_rec_encode(&flip, v);
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl, &out), 0);
    assert_rec_equal(&out, &flip);
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl - 1, &out),
                     KVS_ECORRUPT);
    assert_int_equal(kvs_index_rec_decode(k, 3, v, vl, &out), KVS_ECORRUPT);
    v[20] ^= 0x10;
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl, &out), KVS_ECORRUPT);
    raw_put(k, kl, v, vl); /* checksum mismatch */
    kvs_index_rec_t badcls = rec_make(1, "cls", 3);
    badcls.cls = KVS_CLASS_COUNT; /* checksummed, but invalid */
    kl = kvs_index_key_encode(badcls.uid, k);
    vl = kvs_index_rec_encode(&badcls, v);
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl, &out), KVS_ECORRUPT);
    raw_put(k, kl, v, vl);
    kl = kvs_index_key_encode(4, k);
    raw_put(k, kl, "xyz", 3); /* far too short */

    /* Load hands out only the good record, counts three bad ones and
     * deletes them: the next load finds none. */
    assert_int_equal(kvs_index_open(db_path, &idx), 0);
    load(idx, &l, &bad);
    assert_int_equal(bad, 3);
    assert_int_equal(l.n, 1);
    assert_rec_equal(&l.recs[0], &good);
    load(idx, &l, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(l.n, 1);
    kvs_index_close(idx);

    /* A layout record of the wrong size is corrupt, not a fresh index. */
    raw_put("M", 1, "12345", 5);
    assert_int_equal(kvs_index_open(db_path, &idx), 0);
    kvs_index_meta_t meta;
    assert_int_equal(kvs_index_meta_get(idx, &meta), KVS_ECORRUPT);
    kvs_index_close(idx);
}

/* A record as format 1 wrote it: named "B" | ns | key, a version 1 value
 * (the fields of version 2 to offset 72, then uid, parent_len, the parent
 * and the check). */
static void v1_put(rocksdb_t *db, rocksdb_writeoptions_t *w,
                   const kvs_index_rec_t *r)
{
    uint8_t k[5 + KVS_KEY_MAX], v[KVS_INDEX_REC_MAX];
    char *err = NULL;
    size_t n;

    kvs_index_rec_encode(r, v); /* bytes [1, 72) are the same */
    v[0] = 1;
    kvs_le64_store(v + 72, r->uid);
    v[80] = r->parent_len;
    memcpy(v + 81, r->parent, r->parent_len);
    n = 81 + r->parent_len;
    kvs_le32_store(v + n, (uint32_t)XXH3_64bits(v, n));
    k[0] = 'B';
    kvs_be32_store(k + 1, r->ns);
    memcpy(k + 5, r->key, r->key_len);
    rocksdb_put(db, w, (const char *)k, 5 + r->key_len, (const char *)v, n + 4,
                &err);
    assert_null(err);
}

/* Rewrites the index at path as format 1 (what an older kvstash left):
 * every block record renamed and re-encoded, the layout record's format
 * 1, and one record that decodes as neither. */
static void downgrade_to_format_1(const char *path)
{
    kvs_index_t *idx;
    struct loaded l;
    uint64_t bad;
    kvs_index_meta_t meta;

    assert_int_equal(kvs_index_open(path, &idx), 0);
    load(idx, &l, &bad);
    assert_int_equal(kvs_index_meta_get(idx, &meta), 0);
    kvs_index_close(idx);

    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &err);
    uint8_t k[KVS_INDEX_KEY_MAX], mv[12];

    assert_null(err);
    for (unsigned i = 0; i < l.n; i++) {
        size_t kl = kvs_index_key_encode(l.recs[i].uid, k);
        rocksdb_delete(db, w, (const char *)k, kl, &err);
        assert_null(err);
        v1_put(db, w, &l.recs[i]);
    }
    rocksdb_put(db, w, "Bjunk-key", 9, "xyz", 3, &err);
    assert_null(err);
    kvs_le32_store(mv, 1);
    kvs_le32_store(mv + 4, meta.region_bytes);
    kvs_le32_store(mv + 8, meta.nregions);
    rocksdb_put(db, w, "M", 1, (const char *)mv, sizeof(mv), &err);
    assert_null(err);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(w);
    rocksdb_options_destroy(o);
}

/* A small store in dir (nvme_bytes 0: DRAM only). */
static void store_config(kvs_store_config_t *c, const char *dir,
                         uint64_t nvme_bytes)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = nvme_bytes;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 1u << 20;
    c->max_blocks = 1024;
    c->io_depth = 4;
}

/* An index of format 1 is migrated at open: a store made by an older
 * kvstash keeps its blocks, with their parents; the layout record says 2
 * after; a second migration (as after a crash in the middle) finds
 * nothing to do. */
static void test_format_1_migrated(void **state)
{
    const char *dir = kvs_test_dir("index_migrate");
    kvs_store_config_t c;
    kvs_store_t *st;
    uint32_t ns;
    uint8_t buf[8192], got[8192];
    char path[4200];
    kvs_index_t *idx;
    kvs_index_meta_t meta;
    struct loaded l;
    uint64_t bad, moved;

    (void)state;
    store_config(&c, dir, 32u << 20);
    assert_int_equal(kvs_store_open(&c, &st), 0);
    assert_int_equal(kvs_store_ns_open(st, "m", 2, &ns), 0);
    for (uint32_t i = 0; i < 12; i++) {
        char key[16], parent[16];
        snprintf(key, sizeof(key), "blk%u", i);
        snprintf(parent, sizeof(parent), "blk%u", i ? i - 1 : 0);
        kvs_test_fill(buf, sizeof(buf), i);
        kvs_iov_t part = {buf, sizeof(buf)};
        kvs_put_args_t a = {.ns = ns,
                            .key = key,
                            .key_len = (uint32_t)strlen(key),
                            .parent = i ? parent : NULL,
                            .parent_len = i ? (uint32_t)strlen(parent) : 0,
                            .parts = &part,
                            .nparts = 1,
                            .flags = KVS_PUT_DURABLE};
        assert_int_equal(kvs_store_put(st, &a), 0);
    }
    kvs_store_close(st);
    snprintf(path, sizeof(path), "%s/index", dir);
    downgrade_to_format_1(path);

    assert_int_equal(kvs_store_open(&c, &st), 0);
    assert_int_equal(kvs_store_ns_open(st, "m", 2, &ns), 0);
    for (uint32_t i = 0; i < 12; i++) {
        char key[16];
        snprintf(key, sizeof(key), "blk%u", i);
        kvs_get_args_t g = {.ns = ns,
                            .key = key,
                            .key_len = (uint32_t)strlen(key),
                            .buf = got,
                            .cap = sizeof(got)};
        kvs_block_info_t info;
        assert_int_equal(kvs_store_get(st, &g, &info), 0);
        assert_int_equal(info.data_len, sizeof(got));
        kvs_test_fill(buf, sizeof(buf), i);
        assert_memory_equal(got, buf, sizeof(buf));
    }
    kvs_store_close(st);

    assert_int_equal(kvs_index_open(path, &idx), 0);
    assert_int_equal(kvs_index_meta_get(idx, &meta), 0);
    assert_int_equal(meta.format, KVS_INDEX_FORMAT);
    load(idx, &l, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(l.n, 12);
    for (unsigned i = 0; i < l.n; i++) {
        unsigned n = 0;
        assert_int_equal(sscanf((const char *)l.recs[i].key, "blk%u", &n), 1);
        if (n) {
            char parent[16];
            snprintf(parent, sizeof(parent), "blk%u", n - 1);
            assert_int_equal(l.recs[i].parent_len, strlen(parent));
            assert_memory_equal(l.recs[i].parent, parent, strlen(parent));
        }
    }
    assert_int_equal(kvs_index_migrate(idx, &moved, &bad), 0);
    assert_int_equal(moved, 0);
    assert_int_equal(bad, 0);

    /* Two records of one key (a replaced block's delete lost in a crash):
     * the larger uid is the block. An older record of blk5 pointing at
     * blk4's bytes is dropped, never served. */
    const kvs_index_rec_t *b4 = NULL, *b5 = NULL;
    for (unsigned i = 0; i < l.n; i++) {
        if (l.recs[i].key_len == 4 && !memcmp(l.recs[i].key, "blk4", 4))
            b4 = &l.recs[i];
        if (l.recs[i].key_len == 4 && !memcmp(l.recs[i].key, "blk5", 4))
            b5 = &l.recs[i];
    }
    assert_non_null(b4);
    assert_non_null(b5);
    kvs_index_rec_t old = *b5;
    old.uid = 0;
    old.disk_off = b4->disk_off;
    old.data_xxh = b4->data_xxh;
    kvs_index_batch_t *batch;
    assert_int_equal(kvs_index_batch_create(&batch), 0);
    kvs_index_batch_put(batch, &old);
    assert_int_equal(kvs_index_commit(idx, batch, true), 0);
    kvs_index_batch_destroy(batch);
    kvs_index_close(idx);
    assert_int_equal(kvs_store_open(&c, &st), 0);
    assert_int_equal(kvs_store_ns_open(st, "m", 2, &ns), 0);
    {
        kvs_get_args_t g = {.ns = ns, .key = "blk5", .key_len = 4,
                            .buf = got, .cap = sizeof(got)};
        kvs_block_info_t info;
        assert_int_equal(kvs_store_get(st, &g, &info), 0);
        kvs_test_fill(buf, sizeof(buf), 5);
        assert_memory_equal(got, buf, sizeof(buf));
    }
    kvs_store_close(st);
    assert_int_equal(kvs_index_open(path, &idx), 0);
    load(idx, &l, &bad);
    assert_int_equal(l.n, 12);
    kvs_index_close(idx);
    kvs_test_rmtree(dir);
}

/* An index of a format this kvstash does not know is refused, not read. */
static void test_newer_format_refused(void **state)
{
    const char *dir = kvs_test_dir("index_newer");
    kvs_store_config_t c;
    kvs_store_t *st;
    char path[4200];
    kvs_index_t *idx;
    kvs_index_meta_t meta;

    (void)state;
    store_config(&c, dir, 0);
    assert_int_equal(kvs_store_open(&c, &st), 0);
    kvs_store_close(st);
    snprintf(path, sizeof(path), "%s/index", dir);
    assert_int_equal(kvs_index_open(path, &idx), 0);
    assert_int_equal(kvs_index_meta_get(idx, &meta), 0);
    meta.format = KVS_INDEX_FORMAT + 1;
    assert_int_equal(kvs_index_meta_put(idx, &meta), 0);
    kvs_index_close(idx);
    assert_int_equal(kvs_store_open(&c, &st), KVS_ELAYOUT);
    kvs_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_1_migrated),
        cmocka_unit_test(test_newer_format_refused),
        cmocka_unit_test(test_put_get_delete_reopen),
        cmocka_unit_test(test_corrupt_records_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
