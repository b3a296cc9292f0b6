/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reads from the NVMe tier: a get's disk reads (batched, as many in flight
 * as the segment has bounce slots), a single read for promote and verify,
 * the check of what was read, and promotion of a disk-only block into
 * DRAM.
 *
 * Nothing read from disk is trusted: the block's header must match the
 * location and the entry it was read for, and the decoded bytes their
 * checksum; a block that fails is dropped from the store
 * (kvs_read_drop_corrupt_locked) and reads as a miss. A read needs no
 * reference on its region: one reclaimed meanwhile fails the generation
 * check.
 *
 * Callers: get, pin, promote, match with KVS_MATCH_PIN, verify and region
 * reclaim (which reads kept blocks back through kvs_read_promote_locked).
 * The _rlocked functions need rlock; kvs_read_promote_locked is called and
 * returns with `lock` held but releases it for the read, taking rlock.
 */
#include "kvstore/store_int.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* A read of e's disk copy, to be made with the lock released: what the
 * check needs of the entry, copied (status 1: not read yet). */
void kvs_read_init(const kvs_store_t *s, struct rd *r, const struct entry *e)
{
    *r = (struct rd){
        .loc = ent_loc(s, e),
        .raw_len = e->raw_len,
        .stored_len = e->stored_len,
        .nparts = e->nparts,
        .codec = e->codec,
        .elem_size = e->elem_size,
        .ns = e->ns,
        .hash = e->hash,
        .status = 1,
    };
}

/*
 * Checks a block read from disk and decodes it into dst (raw_len bytes) and
 * part_lens. Nothing in the read buffer is trusted: the header (checked by
 * its own checksum) must match the location and the entry, and the decoded
 * bytes the checksum in the header.
 */
static int verify_decode_rlocked(kvs_store_t *s, const struct rd *r,
                                 const uint8_t *buf, const void *key,
                                 uint32_t key_len, void *dst,
                                 uint32_t *part_lens, uint32_t part_cap)
{
    kvs_seg_block_t blk;
    const uint8_t *payload;
    int ret = kvs_segment_block_decode(buf, &r->loc, &blk, &payload);

    if (ret)
        return ret;
    if (blk.ns != r->ns || blk.key_hash != r->hash || blk.key_len != key_len ||
        memcmp(blk.key, key, key_len) != 0 || blk.raw_len != r->raw_len ||
        blk.stored_len != r->stored_len || blk.codec != r->codec ||
        blk.nparts != r->nparts)
        return KVS_ECORRUPT;
    if (blk.codec == KVS_CODEC_RAW) {
        if (blk.stored_len != blk.raw_len)
            return KVS_ECORRUPT;
        memcpy(dst, payload, blk.raw_len);
    } else {
        ret = kvs_codec_decode(s->rcodec, blk.codec, payload, blk.stored_len,
                               blk.elem_size, dst, blk.raw_len);
        if (ret)
            return KVS_ECORRUPT;
    }
    if (XXH3_64bits(dst, blk.raw_len) != blk.data_xxh)
        return KVS_ECORRUPT;
    if (part_lens)
        memcpy(part_lens, blk.part_lens,
               sizeof(uint32_t) * KVS_MIN(part_cap, blk.nparts));
    return 0;
}

/* The test hook (store_int.h): a slow disk, for tests only. */
static void test_read_delay(const kvs_store_t *s)
{
    if (s->test_read_delay_ms) {
        struct timespec ts = {.tv_sec = s->test_read_delay_ms / 1000,
                              .tv_nsec = (long)(s->test_read_delay_ms % 1000) *
                                         1000000};
        nanosleep(&ts, NULL);
    }
}

static void rd_done(void *arg, uint64_t user_data, int res)
{
    struct rd *rds = arg;

    if (res < 0)
        rds[user_data].status = res;
    else
        rds[user_data].status = 0;
}

/* Reads r's block through bounce slot 0 and checks and decodes it into
 * dst and part_lens (see verify_decode_rlocked). Caller holds rlock. */
int kvs_read_one_rlocked(kvs_store_t *s, struct rd *r, const void *key,
                         uint32_t key_len, void *dst, uint32_t *part_lens,
                         uint32_t part_cap)
{
    int ret;

    r->slot = 0;
    r->status = 1;
    test_read_delay(s);
    ret = kvs_segment_read_submit(s->seg, &r->loc, 0, 0);
    if (ret == 0) {
        ret = kvs_segment_read_reap(s->seg, 1, rd_done, r);
        ret = ret < 0 ? ret : r->status;
    }
    if (ret == 0)
        ret = verify_decode_rlocked(s, r, kvs_segment_slot(s->seg, 0), key,
                                    key_len, dst, part_lens, part_cap);
    return ret;
}

/* Drops an entry's disk copy after it failed verification. Returns true
 * (and the entry's uid in *uid_out, if not NULL) when the copy at loc was
 * the entry's, false if it had moved or been reclaimed meanwhile. */
bool kvs_read_drop_corrupt_locked(kvs_store_t *s, uint32_t ns, const void *key,
                                  uint32_t len, const kvs_seg_loc_t *loc,
                                  uint64_t *uid_out)
{
    struct entry *e =
        kvs_table_lookup_locked(s, ns, key, len, key_hash(ns, key, len));

    s->st.corrupt_reads++;
    if (!e || !(e->flags & E_DISK))
        return false; /* gone meanwhile */
    kvs_seg_loc_t now = ent_loc(s, e);
    if (now.off != loc->off || now.gen != loc->gen)
        return false; /* moved or reclaimed meanwhile */
    kvs_warn("store: block at offset %llu failed verification; dropped "
             "(codec %u, %llu of %llu bytes stored, %u on disk)",
             (unsigned long long)loc->off, e->codec,
             (unsigned long long)e->stored_len, (unsigned long long)e->raw_len,
             loc->disk_len);
    if (uid_out)
        *uid_out = e->uid;
    ev_tier_locked(s, e, KVS_STORE_EV_REMOVED, KVS_TIER_NVME);
    kvs_region_remove(s, e);
    e->flags &= ~E_DISK;
    s->st.nvme_blocks--;
    if (!(e->flags & E_DRAM) && !e->busy)
        kvs_table_remove_locked(s, e);
    return true;
}

/* Reads and checks rds[0..nrd-1] (status 1: to read) into their callers'
 * buffers, with as many reads in flight as there are bounce slots, and
 * sets each status. Caller holds rlock. */
void kvs_read_batch_rlocked(kvs_store_t *s, struct rd *rds, size_t nrd)
{
    unsigned nslots = kvs_segment_read_slots(s->seg);
    unsigned free_slots[256], nfree = 0;
    size_t next = 0, finished = 0;

    for (unsigned k = 0; k < nslots && k < 256; k++)
        free_slots[nfree++] = k;
    while (finished < nrd) {
        while (next < nrd && nfree) {
            struct rd *r = &rds[next];
            r->slot = free_slots[--nfree];
            test_read_delay(s);
            int ret = kvs_segment_read_submit(s->seg, &r->loc, r->slot, next);
            if (ret) {
                r->status = ret;
                free_slots[nfree++] = r->slot;
                r->slot = UINT32_MAX;
            }
            next++;
        }
        /* Finish reads in order as they complete. */
        for (size_t k = 0; k < nrd; k++) {
            struct rd *r = &rds[k];
            if (r->status == 1 || r->slot == UINT32_MAX - 1 || k >= next)
                continue;
            if (r->status == 0 && r->slot != UINT32_MAX) {
                r->status = verify_decode_rlocked(
                    s, r, kvs_segment_slot(s->seg, r->slot), r->a->key,
                    r->a->key_len, r->a->buf, r->a->part_lens, r->a->part_cap);
            }
            if (r->slot != UINT32_MAX)
                free_slots[nfree++] = r->slot;
            r->slot = UINT32_MAX - 1; /* done */
            finished++;
        }
        if (finished < nrd && kvs_segment_read_inflight(s->seg)) {
            int ret = kvs_segment_read_reap(s->seg, 1, rd_done, rds);
            if (ret < 0) {
                kvs_error("store: read completion: %s", strerror(-ret));
                break;
            }
        }
    }
}

/*
 * Brings a disk-only block into DRAM. Called with lock held on a visible
 * entry; returns with lock held. The entry stays visible (its disk copy
 * serves other readers) while the bytes are read.
 */
int kvs_read_promote_locked(kvs_store_t *s, struct entry *e, bool wait)
{
    uint64_t bytes = kvs_dram_bytes_for(e->raw_len), off;
    struct dcopy *d;
    struct rd r;
    uint8_t key[KVS_KEY_MAX];
    uint32_t key_len = e->key_len;
    int ret;

    if (e->flags & E_DRAM)
        return 0;
    if (!s->seg)
        return KVS_ENOTFOUND;
    kvs_read_init(s, &r, e);
    if (wait)
        ret = kvs_dram_alloc_locked(s, bytes, &off);
    else
        ret = kvs_arena_alloc(s->arena, bytes, &off) ? KVS_EFULL : 0;
    if (ret)
        return ret;
    if (e->flags & (E_DRAM | E_DEAD) || !(e->flags & E_DISK)) {
        /* Changed while we waited for space. */
        kvs_arena_free(s->arena, off, bytes);
        return (e->flags & E_DRAM) ? 0 : KVS_ENOTFOUND;
    }
    if (!(d = kvs_dram_copy_new(off, r.nparts))) {
        kvs_arena_free(s->arena, off, bytes);
        pthread_cond_broadcast(&s->space_cv);
        return -ENOMEM;
    }
    e->busy++;
    memcpy(key, ent_key(s, e), key_len);
    pthread_mutex_unlock(&s->lock);

    kvs_lockstat_lock(&s->rlock, &s->rlock_stat);
    ret = kvs_read_one_rlocked(s, &r, key, key_len, s->abase + off, d->parts,
                               r.nparts);
    if (ret == 0)
        kvs_dram_zero_tail(s->abase + off, r.raw_len);
    pthread_mutex_unlock(&s->rlock);

    pthread_mutex_lock(&s->lock);
    e->busy--;
    if (ret == 0 && !(e->flags & E_DEAD) && !(e->flags & E_DRAM)) {
        kvs_dram_attach_locked(e, d);
        kvs_table_lru_push(s, e, NULL);
        s->st.dram_blocks++;
        ev_tier_locked(s, e, KVS_STORE_EV_STORED, KVS_TIER_DRAM);
        s->st.promoted++;
        s->st.bytes_read += r.loc.disk_len;
        return 0;
    }
    kvs_arena_free(s->arena, off, bytes);
    kvs_dram_copy_free(d);
    pthread_cond_broadcast(&s->space_cv);
    if ((e->flags & E_DEAD) && !e->busy) {
        kvs_table_free_locked(s, e);
        return KVS_ENOTFOUND;
    }
    if (ret < 0 && ret > KVS_EBASE && ret != -ENOMEM)
        s->st.io_errors++; /* a negative errno: the read */
    if (ret == KVS_ECORRUPT || ret == -EIO) {
        kvs_read_drop_corrupt_locked(s, r.ns, key, key_len, &r.loc, NULL);
        return KVS_ENOTFOUND;
    }
    return ret;
}
