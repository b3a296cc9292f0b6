/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RocksDB index. See index.h for the key space. A block record is named
 * by its put's uid ("U" | u64 uid, big-endian), so that it can be deleted
 * or rewritten without the block's key bytes, and records are written and
 * scanned in put order (a chain's parents before its children); namespace
 * and key are in the value. The value is fixed-width little-endian, with a
 * version byte first and an XXH3 check last, so a record damaged on disk
 * (or written by a newer kvstash) is rejected rather than trusted:
 *
 *   off  size  field
 *     0     1  version (2)
 *     1     1  codec
 *     2     1  elem_size
 *     3     1  class
 *     4     4  nparts
 *     8     4  region
 *    12     4  disk_len
 *    16     8  disk_off
 *    24     8  gen
 *    32     8  raw_len
 *    40     8  stored_len
 *    48     8  data_xxh
 *    56     8  expiry_ms
 *    64     8  group
 *    72     4  namespace
 *    76     1  key_len (1..64)
 *    77     1  parent_len (0..64)
 *    78     k  key
 *  78+k     p  parent key
 * 78+k+p    4  low 32 bits of XXH3-64 over bytes [0, 78+k+p)
 *
 * Two records of one key (a put replaced the block and the delete of the
 * old record was lost in a crash) are told apart by their uids: recovery
 * keeps the larger. Format 1 (the layout record's format) named a record
 * "B" | u32 ns | key, with a version 1 value (the same fields to offset
 * 72, then uid, parent_len, the parent and the check); kvs_index_migrate
 * rewrites it, and a crash in the middle leaves both kinds for the next
 * migration to finish.
 *
 * After a failed write (an I/O error on the WAL, a MANIFEST or an SST)
 * RocksDB stops taking writes for good: its C API in 7.8 has no Resume().
 * The index then reopens the database before the next write, at most
 * once a second while the reopen fails, so that writes come back when the
 * disk does; until then every write fails at once with KVS_EINDEX and
 * reads go on (from the stopped database, or fail while none is open).
 * Reopening replays the WAL: what was acknowledged is there, what failed
 * was never acknowledged.
 */
#include "kvstore/index.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/endian.h"
#include "common/log.h"
#include "kvstash/status.h"

#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/xxh.h"

/* RocksDB's InfoLogLevel: HEADER_LEVEL is 5; NUM_INFO_LOG_LEVELS (6)
 * is below no message. */
#define INFO_LOG_OFF 6

#define REC_VERSION 2
#define REC_FIXED 78
#define REC_V1_VERSION 1
#define REC_V1_FIXED 81

/* How long a failed reopen waits before the next one. */
#define REOPEN_RETRY_NS 1000000000ull

/*
 * lock: every call holds it shared while it uses db; a reopen holds it
 * exclusive. broken is set by a failed write and cleared by a reopen;
 * retry_ns (under lock, exclusive) is when the next reopen may run.
 */
struct kvs_index {
    pthread_rwlock_t lock;
    rocksdb_t *db; /* NULL while a reopen has failed */
    char *path;
    atomic_bool broken;
    uint64_t retry_ns;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopts_sync;
    rocksdb_writeoptions_t *wopts_async;
    rocksdb_readoptions_t *ropts;
};

struct kvs_index_batch {
    rocksdb_writebatch_t *wb;
};

/* Turns a RocksDB error string into a status, logs it and frees it. */
static int index_error(char *err, const char *what)
{
    int ret = strstr(err, "No space left") ? KVS_EFULL : KVS_EINDEX;

    kvs_error("index: %s: %s", what, err);
    rocksdb_free(err);
    return ret;
}

/* The same for a failed write, after which RocksDB takes no more: the
 * next write reopens the database first. */
static int write_error(kvs_index_t *idx, char *err, const char *what)
{
    if (!atomic_exchange(&idx->broken, true))
        kvs_error("index: writes stop until the index is reopened, which "
                  "is tried before the next write and then every second "
                  "(check the disk under %s)",
                  idx->path);
    return index_error(err, what);
}

/* Opens or reopens idx->db. */
static int db_open(kvs_index_t *idx)
{
    char *err = NULL;

    idx->db = rocksdb_open(idx->opts, idx->path, &err);
    if (err) {
        idx->db = NULL;
        return index_error(err, "open");
    }
    return 0;
}

/* Reopens a broken index if it is time to try. Returns 0 when it is whole
 * again, KVS_EINDEX (or KVS_EFULL) when not. */
static int reopen(kvs_index_t *idx)
{
    uint64_t now = kvs_clock_mono_ns();
    int ret = 0;

    pthread_rwlock_wrlock(&idx->lock);
    if (!atomic_load(&idx->broken))
        goto out; /* another thread reopened it */
    if (now < idx->retry_ns) {
        ret = KVS_EINDEX;
        goto out;
    }
    idx->retry_ns = now + REOPEN_RETRY_NS;
    if (idx->db)
        rocksdb_close(idx->db);
    ret = db_open(idx);
    if (ret) {
        kvs_warn("index: reopen after a write error failed; writes fail "
                 "until a reopen succeeds (next in 1 s)");
        goto out;
    }
    atomic_store(&idx->broken, false);
    kvs_warn("index: reopened after a write error; writes resume");
out:
    pthread_rwlock_unlock(&idx->lock);
    return ret;
}

/* Every call brackets its use of idx->db with these. A write reopens a
 * broken index first; a read uses what is open. */
static int enter(kvs_index_t *idx, bool write)
{
    if (write && atomic_load(&idx->broken)) {
        int ret = reopen(idx);

        if (ret)
            return ret;
    }
    pthread_rwlock_rdlock(&idx->lock);
    if (!idx->db) {
        pthread_rwlock_unlock(&idx->lock);
        return KVS_EINDEX;
    }
    return 0;
}

static void leave(kvs_index_t *idx)
{
    pthread_rwlock_unlock(&idx->lock);
}

int kvs_index_open(const char *path, kvs_index_t **index_out)
{
    kvs_index_t *idx = calloc(1, sizeof(*idx));
    int ret;

    if (!idx)
        return -ENOMEM;
    idx->path = strdup(path);
    if (!idx->path || pthread_rwlock_init(&idx->lock, NULL)) {
        free(idx->path);
        free(idx);
        return -ENOMEM;
    }
    idx->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(idx->opts, 1);
    /* Small footprint: the index is small and the machine is shared. */
    rocksdb_options_set_max_open_files(idx->opts, 256);
    /* Two memtables of 8 MiB at most: 16 MiB of the engine's fixed memory
     * under puts (issue 19's 64 MiB), about 50,000 records each. */
    rocksdb_options_set_write_buffer_size(idx->opts, 8 << 20);
    /* Nothing goes to RocksDB's info log (index/LOG): Debian's RocksDB
     * asserts after a failed write to it, so a disk error while it logs
     * (as it does for the very error that hit the WAL) aborted the
     * process. Its errors reach us as status strings, logged by
     * index_error(). The level is one above HEADER; and no size limit, as
     * a limit makes RocksDB wrap the log in a rolling logger that writes
     * its header lines ("DB SUMMARY", ...) whatever the level. 7.8's C API
     * has no way to set a logger of our own. The empty file stays. */
    rocksdb_options_set_keep_log_file_num(idx->opts, 1);
    rocksdb_options_set_max_log_file_size(idx->opts, 0);
    rocksdb_options_set_info_log_level(idx->opts, INFO_LOG_OFF);
    ret = db_open(idx);
    if (ret) {
        rocksdb_options_destroy(idx->opts);
        pthread_rwlock_destroy(&idx->lock);
        free(idx->path);
        free(idx);
        return ret;
    }
    idx->wopts_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(idx->wopts_sync, 1);
    idx->wopts_async = rocksdb_writeoptions_create();
    idx->ropts = rocksdb_readoptions_create();
    *index_out = idx;
    return 0;
}

void kvs_index_close(kvs_index_t *idx)
{
    if (!idx)
        return;
    /* The memtables to disk now, so that the next open has no log to
     * replay: 0.46 s of a restart with 1,000,000 blocks on the CI VM. A
     * failure leaves the log, which the next open replays; a broken
     * index is closed as it is. */
    if (idx->db && !atomic_load(&idx->broken)) {
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        char *err = NULL;

        rocksdb_flushoptions_set_wait(fo, 1);
        rocksdb_flush(idx->db, fo, &err);
        if (err) {
            kvs_warn("index: flush at close: %s", err);
            rocksdb_free(err);
        }
        rocksdb_flushoptions_destroy(fo);
    }
    if (idx->db)
        rocksdb_close(idx->db);
    rocksdb_writeoptions_destroy(idx->wopts_sync);
    rocksdb_writeoptions_destroy(idx->wopts_async);
    rocksdb_readoptions_destroy(idx->ropts);
    rocksdb_options_destroy(idx->opts);
    pthread_rwlock_destroy(&idx->lock);
    free(idx->path);
    free(idx);
}

static int index_put(kvs_index_t *idx, const void *k, size_t klen,
                     const void *v, size_t vlen, bool sync, const char *what)
{
    char *err = NULL;
    int ret = enter(idx, true);

    if (ret)
        return ret;
    rocksdb_put(idx->db, sync ? idx->wopts_sync : idx->wopts_async, k, klen, v,
                vlen, &err);
    ret = err ? write_error(idx, err, what) : 0;
    leave(idx);
    return ret;
}

int kvs_index_meta_get(kvs_index_t *idx, kvs_index_meta_t *meta_out)
{
    char *err = NULL;
    size_t vlen;
    char *v;
    int ret = enter(idx, false);

    if (ret)
        return ret;
    v = rocksdb_get(idx->db, idx->ropts, "M", 1, &vlen, &err);
    leave(idx);
    if (err)
        return index_error(err, "read layout");
    if (!v)
        return KVS_ENOTFOUND;
    if (vlen != 12) {
        rocksdb_free(v);
        kvs_error("index: layout record has %zu bytes, expected 12", vlen);
        return KVS_ECORRUPT;
    }
    meta_out->format = kvs_le32_load(v);
    meta_out->region_bytes = kvs_le32_load(v + 4);
    meta_out->nregions = kvs_le32_load(v + 8);
    rocksdb_free(v);
    return 0;
}

int kvs_index_meta_put(kvs_index_t *idx, const kvs_index_meta_t *meta)
{
    uint8_t v[12];

    kvs_le32_store(v, meta->format);
    kvs_le32_store(v + 4, meta->region_bytes);
    kvs_le32_store(v + 8, meta->nregions);
    return index_put(idx, "M", 1, v, sizeof(v), true, "write layout");
}

/* Iterates over every key starting with prefix. */
typedef int (*scan_fn)(void *arg, const char *k, size_t klen, const char *v,
                       size_t vlen);

/* A scan reads each record once, at open: it reads ahead and leaves the
 * block cache alone (what it would fill stays resident after the
 * restart). */
static int index_scan(kvs_index_t *idx, char prefix, scan_fn fn, void *arg)
{
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    char *err = NULL;
    int ret = enter(idx, false);

    if (ret)
        return ret;
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_readoptions_set_readahead_size(ro, 2u << 20);
    it = rocksdb_create_iterator(idx->db, ro);
    for (rocksdb_iter_seek(it, &prefix, 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (klen == 0 || k[0] != prefix)
            break;
        ret = fn(arg, k, klen, v, vlen);
        if (ret)
            break;
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    leave(idx);
    if (err)
        return index_error(err, "scan");
    return ret;
}

struct ns_scan {
    kvs_index_ns_cb cb;
    void *arg;
};

static int ns_one(void *arg, const char *k, size_t klen, const char *v,
                  size_t vlen)
{
    struct ns_scan *s = arg;

    if (vlen != 8 || klen < 2 || klen - 1 > KVS_NS_NAME_MAX) {
        kvs_warn("index: skipping a malformed namespace record");
        return 0;
    }
    s->cb(s->arg, k + 1, klen - 1, kvs_le32_load(v), kvs_le32_load(v + 4));
    return 0;
}

int kvs_index_ns_load(kvs_index_t *idx, kvs_index_ns_cb cb, void *arg)
{
    struct ns_scan s = {cb, arg};

    return index_scan(idx, 'N', ns_one, &s);
}

int kvs_index_ns_put(kvs_index_t *idx, const char *name, size_t name_len,
                     uint32_t id, uint32_t elem_size)
{
    char k[1 + KVS_NS_NAME_MAX];
    uint8_t v[8];

    if (name_len == 0 || name_len > KVS_NS_NAME_MAX)
        return -EINVAL;
    k[0] = 'N';
    memcpy(k + 1, name, name_len);
    kvs_le32_store(v, id);
    kvs_le32_store(v + 4, elem_size);
    return index_put(idx, k, 1 + name_len, v, sizeof(v), true,
                     "write namespace");
}

struct region_scan {
    kvs_index_region_cb cb;
    void *arg;
};

static int region_one(void *arg, const char *k, size_t klen, const char *v,
                      size_t vlen)
{
    struct region_scan *s = arg;

    if (klen != 5 || vlen != 8) {
        kvs_warn("index: skipping a malformed region record");
        return 0;
    }
    s->cb(s->arg, kvs_be32_load(k + 1), kvs_le64_load(v));
    return 0;
}

int kvs_index_region_load(kvs_index_t *idx, kvs_index_region_cb cb, void *arg)
{
    struct region_scan s = {cb, arg};

    return index_scan(idx, 'R', region_one, &s);
}

int kvs_index_region_put(kvs_index_t *idx, uint32_t region, uint64_t gen,
                         bool sync)
{
    uint8_t k[5], v[8];

    k[0] = 'R';
    kvs_be32_store(k + 1, region);
    kvs_le64_store(v, gen);
    return index_put(idx, k, sizeof(k), v, sizeof(v), sync, "write region");
}

size_t kvs_index_key_encode(uint64_t uid, uint8_t *buf)
{
    buf[0] = 'U';
    kvs_be32_store(buf + 1, (uint32_t)(uid >> 32)); /* sorts by uid */
    kvs_be32_store(buf + 5, (uint32_t)uid);
    return KVS_INDEX_KEY_MAX;
}

size_t kvs_index_rec_encode(const kvs_index_rec_t *r, uint8_t *b)
{
    size_t n;

    kvs_assert(r->key_len >= 1 && r->key_len <= KVS_KEY_MAX);
    kvs_assert(r->parent_len <= KVS_KEY_MAX);
    b[0] = REC_VERSION;
    b[1] = r->codec;
    b[2] = r->elem_size;
    b[3] = r->cls;
    kvs_le32_store(b + 4, r->nparts);
    kvs_le32_store(b + 8, r->region);
    kvs_le32_store(b + 12, r->disk_len);
    kvs_le64_store(b + 16, r->disk_off);
    kvs_le64_store(b + 24, r->gen);
    kvs_le64_store(b + 32, r->raw_len);
    kvs_le64_store(b + 40, r->stored_len);
    kvs_le64_store(b + 48, r->data_xxh);
    kvs_le64_store(b + 56, r->expiry_ms);
    kvs_le64_store(b + 64, r->group);
    kvs_le32_store(b + 72, r->ns);
    b[76] = r->key_len;
    b[77] = r->parent_len;
    memcpy(b + REC_FIXED, r->key, r->key_len);
    memcpy(b + REC_FIXED + r->key_len, r->parent, r->parent_len);
    n = REC_FIXED + r->key_len + r->parent_len;
    kvs_le32_store(b + n, (uint32_t)XXH3_64bits(b, n));
    return n + 4;
}

/* The fields both versions keep in [1, 72), and the checks on them. */
static int rec_fields_decode(const uint8_t *b, kvs_index_rec_t *r)
{
    r->codec = b[1];
    r->elem_size = b[2];
    r->cls = b[3];
    r->nparts = kvs_le32_load(b + 4);
    r->region = kvs_le32_load(b + 8);
    r->disk_len = kvs_le32_load(b + 12);
    r->disk_off = kvs_le64_load(b + 16);
    r->gen = kvs_le64_load(b + 24);
    r->raw_len = kvs_le64_load(b + 32);
    r->stored_len = kvs_le64_load(b + 40);
    r->data_xxh = kvs_le64_load(b + 48);
    r->expiry_ms = kvs_le64_load(b + 56);
    r->group = kvs_le64_load(b + 64);
    if (r->cls >= KVS_CLASS_COUNT || r->nparts == 0 ||
        r->nparts > KVS_PARTS_MAX || r->stored_len > r->disk_len ||
        r->disk_len == 0)
        return KVS_ECORRUPT;
    return 0;
}

int kvs_index_rec_decode(const void *key, size_t klen, const void *val,
                         size_t vlen, kvs_index_rec_t *out)
{
    const uint8_t *k = key, *b = val;
    kvs_index_rec_t r;
    size_t n;

    if (klen != KVS_INDEX_KEY_MAX || k[0] != 'U')
        return KVS_ECORRUPT;
    if (vlen < REC_FIXED + 1 + 4 || b[0] != REC_VERSION)
        return KVS_ECORRUPT;
    if (b[76] == 0 || b[76] > KVS_KEY_MAX || b[77] > KVS_KEY_MAX ||
        vlen != REC_FIXED + b[76] + b[77] + 4u)
        return KVS_ECORRUPT;
    n = REC_FIXED + b[76] + b[77];
    if (kvs_le32_load(b + n) != (uint32_t)XXH3_64bits(b, n))
        return KVS_ECORRUPT;
    memset(&r, 0, sizeof(r));
    r.uid = (uint64_t)kvs_be32_load(k + 1) << 32 | kvs_be32_load(k + 5);
    r.ns = kvs_le32_load(b + 72);
    r.key_len = b[76];
    r.parent_len = b[77];
    memcpy(r.key, b + REC_FIXED, r.key_len);
    memcpy(r.parent, b + REC_FIXED + r.key_len, r.parent_len);
    if (rec_fields_decode(b, &r) != 0)
        return KVS_ECORRUPT;
    *out = r;
    return 0;
}

/* A format 1 record: named "B" | ns | key, a version 1 value. */
static int rec_v1_decode(const uint8_t *k, size_t klen, const uint8_t *b,
                         size_t vlen, kvs_index_rec_t *out)
{
    kvs_index_rec_t r;
    size_t n;

    if (klen < 6 || klen > 5 + KVS_KEY_MAX || k[0] != 'B')
        return KVS_ECORRUPT;
    if (vlen < REC_V1_FIXED + 4 || b[0] != REC_V1_VERSION)
        return KVS_ECORRUPT;
    if (b[80] > KVS_KEY_MAX || vlen != REC_V1_FIXED + b[80] + 4u)
        return KVS_ECORRUPT;
    n = REC_V1_FIXED + b[80];
    if (kvs_le32_load(b + n) != (uint32_t)XXH3_64bits(b, n))
        return KVS_ECORRUPT;
    memset(&r, 0, sizeof(r));
    r.ns = kvs_be32_load(k + 1);
    r.key_len = (uint8_t)(klen - 5);
    memcpy(r.key, k + 5, r.key_len);
    r.uid = kvs_le64_load(b + 72);
    r.parent_len = b[80];
    memcpy(r.parent, b + REC_V1_FIXED, r.parent_len);
    if (rec_fields_decode(b, &r) != 0)
        return KVS_ECORRUPT;
    *out = r;
    return 0;
}

struct rec_scan {
    kvs_index_t *idx;
    kvs_index_rec_cb cb;
    void *arg;
    uint64_t bad;
    rocksdb_writebatch_t *drop;
};

static int rec_one(void *arg, const char *k, size_t klen, const char *v,
                   size_t vlen)
{
    struct rec_scan *s = arg;
    kvs_index_rec_t rec;

    if (kvs_index_rec_decode(k, klen, v, vlen, &rec) != 0) {
        s->bad++;
        rocksdb_writebatch_delete(s->drop, k, klen);
        return 0;
    }
    s->cb(s->arg, &rec);
    return 0;
}

uint64_t kvs_index_block_estimate(kvs_index_t *idx)
{
    uint64_t n = 0;

    if (enter(idx, false))
        return 0;
    if (rocksdb_property_int(idx->db, "rocksdb.estimate-num-keys", &n) != 0)
        n = 0;
    leave(idx);
    return n;
}

int kvs_index_block_load(kvs_index_t *idx, kvs_index_rec_cb cb, void *arg,
                         uint64_t *bad_out)
{
    struct rec_scan s = {idx, cb, arg, 0, rocksdb_writebatch_create()};
    char *err = NULL;
    int ret = index_scan(idx, 'U', rec_one, &s);

    if (ret == 0 && s.bad) {
        kvs_warn("index: dropping %llu malformed block records",
                 (unsigned long long)s.bad);
        ret = enter(idx, true);
        if (ret == 0) {
            rocksdb_write(idx->db, idx->wopts_sync, s.drop, &err);
            if (err)
                ret = write_error(idx, err, "drop malformed records");
            leave(idx);
        }
    }
    rocksdb_writebatch_destroy(s.drop);
    if (ret == 0 && bad_out)
        *bad_out = s.bad;
    return ret;
}

/* Migration from format 1: every "B" record is rewritten under its uid,
 * 4,096 to a synced batch, and deleted; one that does not decode is
 * deleted, as a load would. */
#define MIGRATE_BATCH 4096

struct migrate {
    kvs_index_t *idx;
    rocksdb_writebatch_t *wb;
    uint64_t moved, bad;
};

static int migrate_flush(struct migrate *m)
{
    char *err = NULL;

    if (rocksdb_writebatch_count(m->wb) == 0)
        return 0;
    rocksdb_write(m->idx->db, m->idx->wopts_sync, m->wb, &err);
    rocksdb_writebatch_clear(m->wb);
    return err ? write_error(m->idx, err, "migrate block records") : 0;
}

static int migrate_one(void *arg, const char *k, size_t klen, const char *v,
                       size_t vlen)
{
    struct migrate *m = arg;
    uint8_t nk[KVS_INDEX_KEY_MAX], nv[KVS_INDEX_REC_MAX];
    kvs_index_rec_t rec;

    if (rec_v1_decode((const uint8_t *)k, klen, (const uint8_t *)v, vlen,
                      &rec) == 0) {
        size_t nkl = kvs_index_key_encode(rec.uid, nk);
        size_t nvl = kvs_index_rec_encode(&rec, nv);
        rocksdb_writebatch_put(m->wb, (const char *)nk, nkl, (const char *)nv,
                               nvl);
        m->moved++;
    } else {
        m->bad++;
    }
    rocksdb_writebatch_delete(m->wb, k, klen);
    if (rocksdb_writebatch_count(m->wb) >= MIGRATE_BATCH)
        return migrate_flush(m);
    return 0;
}

int kvs_index_migrate(kvs_index_t *idx, uint64_t *moved_out, uint64_t *bad_out)
{
    struct migrate m = {idx, rocksdb_writebatch_create(), 0, 0};
    int ret = index_scan(idx, 'B', migrate_one, &m);

    if (ret == 0) {
        ret = enter(idx, true);
        if (ret == 0) {
            ret = migrate_flush(&m);
            leave(idx);
        }
    }
    rocksdb_writebatch_destroy(m.wb);
    *moved_out = m.moved;
    *bad_out = m.bad;
    return ret;
}

int kvs_index_batch_create(kvs_index_batch_t **batch_out)
{
    kvs_index_batch_t *b = malloc(sizeof(*b));

    if (!b)
        return -ENOMEM;
    b->wb = rocksdb_writebatch_create();
    *batch_out = b;
    return 0;
}

void kvs_index_batch_destroy(kvs_index_batch_t *b)
{
    if (!b)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void kvs_index_batch_clear(kvs_index_batch_t *b)
{
    rocksdb_writebatch_clear(b->wb);
}

void kvs_index_batch_put(kvs_index_batch_t *b, const kvs_index_rec_t *rec)
{
    uint8_t k[KVS_INDEX_KEY_MAX], v[KVS_INDEX_REC_MAX];
    size_t kl = kvs_index_key_encode(rec->uid, k);
    size_t vl = kvs_index_rec_encode(rec, v);

    rocksdb_writebatch_put(b->wb, (const char *)k, kl, (const char *)v, vl);
}

void kvs_index_batch_delete(kvs_index_batch_t *b, uint64_t uid)
{
    uint8_t k[KVS_INDEX_KEY_MAX];
    size_t kl = kvs_index_key_encode(uid, k);

    rocksdb_writebatch_delete(b->wb, (const char *)k, kl);
}

int kvs_index_commit(kvs_index_t *idx, kvs_index_batch_t *b, bool sync)
{
    char *err = NULL;
    int ret;

    if (rocksdb_writebatch_count(b->wb) == 0)
        return 0;
    ret = enter(idx, true);
    if (ret)
        return ret;
    rocksdb_write(idx->db, sync ? idx->wopts_sync : idx->wopts_async, b->wb,
                  &err);
    ret = err ? write_error(idx, err, "commit") : 0;
    leave(idx);
    return ret;
}

int kvs_index_block_get(kvs_index_t *idx, uint64_t uid,
                        kvs_index_rec_t *rec_out)
{
    uint8_t k[KVS_INDEX_KEY_MAX];
    size_t kl = kvs_index_key_encode(uid, k), vlen;
    char *err = NULL;
    char *v;
    int ret = enter(idx, false);

    if (ret)
        return ret;
    v = rocksdb_get(idx->db, idx->ropts, (const char *)k, kl, &vlen, &err);
    leave(idx);
    if (err)
        return index_error(err, "read block record");
    if (!v)
        return KVS_ENOTFOUND;
    ret = kvs_index_rec_decode(k, kl, v, vlen, rec_out);
    rocksdb_free(v);
    if (ret)
        kvs_error("index: the record of put %llu does not decode (damaged "
                  "on disk); the next restart drops its block",
                  (unsigned long long)uid);
    return ret;
}

int kvs_index_block_delete(kvs_index_t *idx, uint64_t uid)
{
    uint8_t k[KVS_INDEX_KEY_MAX];
    size_t kl = kvs_index_key_encode(uid, k);
    char *err = NULL;
    int ret = enter(idx, true);

    if (ret)
        return ret;
    rocksdb_delete(idx->db, idx->wopts_async, (const char *)k, kl, &err);
    if (err)
        ret = write_error(idx, err, "delete block record");
    leave(idx);
    return ret;
}
