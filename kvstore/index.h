/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The durable index in RocksDB: where every block on disk lives, plus the
 * store's layout record, namespace ids and region generations. RocksDB's
 * error strings are turned into KVS_EINDEX (or KVS_EFULL for a full disk)
 * here and nowhere else.
 *
 * Keys ('|' is concatenation, integers big-endian so they sort):
 *   "M"                  layout record (kvs_index_meta_t)
 *   "N" | name           namespace: u32 id | u32 elem_size (LE)
 *   "R" | u32 region     u64 generation (LE)
 *   "U" | u64 uid        block record (kvs_index_rec_t, encoded in
 *                        index.c), named by its put's uid
 *   "B" | u32 ns | key   block record of format 1 (kvs_index_migrate)
 *
 * Thread-safety: RocksDB calls are thread-safe; callers order writes to the
 * same block key themselves (the store does it under its writer lock). The
 * reopen that follows a failed write (index.c) waits for every other call
 * to leave, so the callbacks of the _load() scans must not write to the
 * index.
 *
 * Errors: after a failed write every write fails with KVS_EINDEX until the
 * index has been reopened, which the next write tries, then once a second.
 */
#ifndef KVS_INDEX_H
#define KVS_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstash/types.h"

typedef struct kvs_index kvs_index_t;
typedef struct kvs_index_batch kvs_index_batch_t;

typedef struct kvs_index_meta {
    uint32_t format; /* KVS_INDEX_FORMAT */
    uint32_t region_bytes;
    uint32_t nregions;
} kvs_index_meta_t;

/* 2: block records named by uid; 1: by (ns, key), which kvs_index_migrate
 * converts. */
#define KVS_INDEX_FORMAT 2u

/* One block on disk. */
typedef struct kvs_index_rec {
    uint32_t ns;
    uint8_t key_len;
    uint8_t parent_len;
    uint8_t codec; /* enum kvs_codec_id */
    uint8_t elem_size;
    uint8_t cls; /* enum kvs_class */
    uint32_t nparts;
    uint32_t region;
    uint32_t disk_len;   /* bytes on disk, header and padding included */
    uint64_t disk_off;   /* byte offset in the data file */
    uint64_t gen;        /* region generation when written */
    uint64_t raw_len;    /* block bytes */
    uint64_t stored_len; /* bytes after the codec */
    uint64_t data_xxh;   /* XXH3-64 of the raw bytes */
    uint64_t expiry_ms;  /* wall clock; 0: none */
    uint64_t group;
    uint64_t uid; /* unique per put; orders conditional deletes */
    uint8_t key[KVS_KEY_MAX];
    uint8_t parent[KVS_KEY_MAX];
} kvs_index_rec_t;

#define KVS_INDEX_KEY_MAX (1 + 8) /* every block record's name */
#define KVS_INDEX_REC_MAX (96 + 2 * KVS_KEY_MAX)

/* Opens or creates the database at path. KVS_EINDEX with the cause logged. */
int kvs_index_open(const char *path, kvs_index_t **index_out);
void kvs_index_close(kvs_index_t *index);

/* KVS_ENOTFOUND on a new database. */
int kvs_index_meta_get(kvs_index_t *index, kvs_index_meta_t *meta_out);
int kvs_index_meta_put(kvs_index_t *index, const kvs_index_meta_t *meta);

typedef void (*kvs_index_ns_cb)(void *arg, const char *name, size_t name_len,
                                uint32_t id, uint32_t elem_size);
int kvs_index_ns_load(kvs_index_t *index, kvs_index_ns_cb cb, void *arg);
int kvs_index_ns_put(kvs_index_t *index, const char *name, size_t name_len,
                     uint32_t id, uint32_t elem_size);

typedef void (*kvs_index_region_cb)(void *arg, uint32_t region, uint64_t gen);
int kvs_index_region_load(kvs_index_t *index, kvs_index_region_cb cb,
                          void *arg);
int kvs_index_region_put(kvs_index_t *index, uint32_t region, uint64_t gen,
                         bool sync);

/* Calls cb for each block record that decodes; *bad_out counts the ones
 * that do not (they are deleted). */
/* About how many records the index holds (RocksDB's estimate, block
 * records and the few others alike); 0 if unknown. */
uint64_t kvs_index_block_estimate(kvs_index_t *index);
typedef void (*kvs_index_rec_cb)(void *arg, const kvs_index_rec_t *rec);
int kvs_index_block_load(kvs_index_t *index, kvs_index_rec_cb cb, void *arg,
                         uint64_t *bad_out);

/* Write batches: created once, reused (clear) on the data path. */
int kvs_index_batch_create(kvs_index_batch_t **batch_out);
void kvs_index_batch_destroy(kvs_index_batch_t *batch);
void kvs_index_batch_clear(kvs_index_batch_t *batch);
void kvs_index_batch_put(kvs_index_batch_t *batch, const kvs_index_rec_t *rec);
void kvs_index_batch_delete(kvs_index_batch_t *batch, uint64_t uid);
/* Applies the batch atomically; sync makes it durable before returning. */
int kvs_index_commit(kvs_index_t *index, kvs_index_batch_t *batch, bool sync);

/* Reads the block record of the put uid: 0, KVS_ENOTFOUND, or
 * KVS_ECORRUPT for one that does not decode (logged). */
int kvs_index_block_get(kvs_index_t *index, uint64_t uid,
                        kvs_index_rec_t *rec_out);

/* Deletes the block record of the put uid (a newer put of the same key
 * has its own record and is left alone). */
int kvs_index_block_delete(kvs_index_t *index, uint64_t uid);

/* Rewrites an index of format 1 as format 2, in place: *moved_out records
 * converted, *bad_out that did not decode (deleted). Safe to run again
 * after a crash in the middle; the caller writes the layout record's new
 * format once it returns 0. */
int kvs_index_migrate(kvs_index_t *index, uint64_t *moved_out,
                      uint64_t *bad_out);

/* Record codec, public for tests and fuzzing. encode returns bytes written
 * (at most KVS_INDEX_REC_MAX). decode validates everything and returns 0 or
 * KVS_ECORRUPT; key is the RocksDB key ("U" | uid: key_encode, which
 * returns KVS_INDEX_KEY_MAX). */
size_t kvs_index_rec_encode(const kvs_index_rec_t *rec, uint8_t *buf);
size_t kvs_index_key_encode(uint64_t uid, uint8_t *buf);
int kvs_index_rec_decode(const void *key, size_t key_len, const void *val,
                         size_t val_len, kvs_index_rec_t *rec_out);

#endif
