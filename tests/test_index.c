/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RocksDB index (kvstore/index.c) on a real database under
 * $KVS_TEST_DIR: the layout record, namespaces, region generations and
 * block records written in batches, read back field for field, deleted
 * (plainly and only-if-uid), all still there after close and reopen; and
 * records that do not decode, written into the database behind the
 * index's back, are counted, skipped and deleted at load, never handed
 * out.
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

#include "kvstash/status.h"
#include "kvstore/index.h"
#include "tests/testutil.h"

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
    kvs_index_batch_delete(b, 1, "gone", 4);
    assert_int_equal(kvs_index_commit(idx, b, true), 0);
    kvs_index_batch_clear(b);
    assert_int_equal(kvs_index_commit(idx, b, false), 0); /* empty */

    load(idx, &l, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(l.n, 3);
    assert_rec_equal(find(&l, "beta"), &r2);
    assert_null(find(&l, "gone"));

    /* delete_if: a stale uid leaves the record; its own uid deletes it. */
    assert_int_equal(kvs_index_block_delete_if(idx, 1, "beta", 4, 999), 0);
    load(idx, &l, &bad);
    assert_int_equal(l.n, 3);
    assert_int_equal(kvs_index_block_delete_if(idx, 1, "beta", 4, 12), 0);
    assert_int_equal(kvs_index_block_delete_if(idx, 1, "none", 4, 1), 0);
    /* A replacement under the same key is one record, the newer one. */
    r1.uid = 21;
    r1.gen = 10;
    kvs_index_batch_put(b, &r1);
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
    assert_int_equal(l.n, 2);
    assert_null(find(&l, "beta"));
    /* Two records named alpha, one per namespace. */
    for (unsigned i = 0; i < l.n; i++)
        assert_rec_equal(&l.recs[i], l.recs[i].ns == 1 ? &r1 : &r3);
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
    size_t kl = kvs_index_key_encode(1, "flip", 4, k);
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
    kl = kvs_index_key_encode(1, "cls", 3, k);
    vl = kvs_index_rec_encode(&badcls, v);
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl, &out), KVS_ECORRUPT);
    raw_put(k, kl, v, vl);
    kl = kvs_index_key_encode(1, "short", 5, k);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_delete_reopen),
        cmocka_unit_test(test_corrupt_records_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
