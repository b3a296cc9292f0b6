/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Puts: a block copied in whole (kvs_store_put, kvs_store_put_batch), and
 * the steps a streaming put shares with it: check the arguments, reserve
 * an entry and DRAM, seal the bytes (checksum, zeroed tail) and commit.
 *
 * A put's entry is busy and invisible (not in the hash) from reserve to
 * commit, so no reader sees a half-copied block; the copy is made with
 * `lock` released. Durable puts (KVS_PUT_DURABLE, KVS_PUT_NO_DRAM) are
 * written and their records synced, PUT_CHUNK of them in one write,
 * before they become visible; then each replaces any block of its key,
 * unless that one is referenced (KVS_EBUSY).
 *
 * Takes `lock` to reserve and publish, wlock for durable writes and to
 * delete a replaced block's record.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>

#define PUT_CHUNK 64 /* puts sharing one durable write */

int kvs_put_check(const kvs_store_t *s, const kvs_put_args_t *a, bool need_data,
                  uint64_t *total_out)
{
    uint64_t total = 0;

    if (!a || !a->key || a->key_len == 0 || a->key_len > KVS_KEY_MAX ||
        a->nparts == 0 || a->nparts > KVS_PARTS_MAX || !a->parts ||
        a->cls >= KVS_CLASS_COUNT || a->parent_len > KVS_KEY_MAX ||
        (a->parent_len && !a->parent))
        return -EINVAL;
    for (uint32_t i = 0; i < a->nparts; i++) {
        if (a->parts[i].len > UINT32_MAX ||
            (need_data && a->parts[i].len && !a->parts[i].base))
            return -EINVAL;
        total += a->parts[i].len;
    }
    if (total > s->cfg.max_block_bytes)
        return KVS_ETOOBIG;
    if (total < s->cfg.min_block_bytes) {
        static bool logged; /* once a process: a client may send many */
        if (!__atomic_exchange_n(&logged, true, __ATOMIC_RELAXED))
            kvs_warn("store: a put of %llu bytes refused (KVS_ETOOSMALL): "
                     "under store.min_block_bytes = %u, as a block takes "
                     "whole 4 KiB pages (docs/operations.md, \"Space "
                     "amplification\"); later refusals are not logged",
                     (unsigned long long)total, s->cfg.min_block_bytes);
        return KVS_ETOOSMALL;
    }
    *total_out = total;
    return 0;
}

/* Replaces or inserts e (busy, filled) under its key; returns 0 or
 * KVS_EBUSY if the old block is referenced. *old_uid is set when an old
 * block's index record must be deleted (records are named by uid, so the
 * new block's record, if written already, is another one). */
static int publish_locked(kvs_store_t *s, struct entry *e, bool *del_old,
                          uint64_t *old_uid)
{
    struct entry *old =
        kvs_table_lookup_locked(s, e->ns, ent_key(s, e), e->key_len, e->hash);

    *del_old = false;
    if (old) {
        if (old->refs)
            return KVS_EBUSY;
        if (old->flags & E_DISK) {
            *del_old = true;
            *old_uid = old->uid;
        }
        kvs_table_remove_locked(s, old);
    }
    kvs_table_link(s, e);
    struct entry *parent =
        e->parent_len ? kvs_table_lookup_locked(
                            s, e->ns, ent_parent(s, e), e->parent_len,
                            key_hash(e->ns, ent_parent(s, e), e->parent_len))
                      : NULL;
    /* The writer reads an entry's keys under wlock alone: only a block no
     * write can be working on (none on disk yet) changes its parent's
     * chunk here. */
    if (!(e->flags & E_DISK))
        kvs_table_share_parent(s, e, parent);
    kvs_table_lru_push(s, e, parent);
    s->st.blocks++;
    s->st.dram_blocks++;
    ev_tier_locked(s, e, KVS_STORE_EV_STORED, KVS_TIER_DRAM);
    return 0;
}

int kvs_store_put(kvs_store_t *s, const kvs_put_args_t *a)
{
    int status;

    return kvs_store_put_batch(s, a, 1, &status);
}

/*
 * Reserves an entry and DRAM for a block of total bytes: the entry is busy
 * and invisible (not in the hash) until published. 0 with *e_out, 1 when
 * admission declined the put, or an error.
 */
int kvs_put_reserve_locked(kvs_store_t *s, const kvs_put_args_t *a,
                           uint64_t total, struct entry **e_out)
{
    uint64_t bytes = kvs_dram_bytes_for(total), off;
    struct dcopy *d = NULL;
    struct entry *e;
    int ret;

    if (!ns_valid_locked(s, a->ns))
        return KVS_ENOTFOUND;
    if (a->cls == KVS_CLASS_PINNED &&
        s->pinned_bytes + total >
            (kvs_arena_size(s->arena) / 100) * s->cfg.pinned_max_pct)
        return KVS_EPINNED_FULL;
    if (s->ghost && a->cls == KVS_CLASS_SCRATCH &&
        !kvs_evict_admit_locked(s, a)) {
        s->st.admission_rejected++;
        return 1;
    }
    e = kvs_table_alloc_locked(s);
    if (!e && kvs_evict_one_locked(s))
        e = kvs_table_alloc_locked(s);
    ret = e ? kvs_table_set_key(s, e, a->ns, a->key, a->key_len,
                                key_hash(a->ns, a->key, a->key_len), a->parent,
                                a->parent_len)
            : KVS_EFULL;
    if (!ret)
        ret = kvs_table_xrec_set(
            s, e, a->ttl_ms ? kvs_clock_real_ms() + a->ttl_ms : 0, a->group);
    if (!ret)
        ret = kvs_dram_alloc_flags_locked(s, bytes,
                                          !(a->flags & KVS_PUT_NO_WAIT), &off);
    if (!ret && !(d = kvs_dram_copy_new(off, a->nparts))) {
        kvs_arena_free(s->arena, off, bytes);
        pthread_cond_broadcast(&s->space_cv);
        ret = -ENOMEM;
    }
    if (ret) {
        if (e)
            kvs_table_free_locked(s, e); /* fresh: keys and TTL to drop */
        if (ret != -EWOULDBLOCK)
            s->st.full_errors++;
        return ret;
    }
    kvs_dram_attach_locked(e, d);
    e->busy = 1;
    e->nparts = a->nparts;
    e->raw_len = total;
    e->cls = a->cls;
    e->elem_size =
        a->elem_size ? a->elem_size : (uint8_t)s->ns[a->ns].elem_size;
    if (a->flags & (KVS_PUT_DURABLE | KVS_PUT_NO_DRAM))
        e->flags |= E_DURABLE;
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes += total;
    uint32_t *pl = part_table(e);
    for (uint32_t p = 0; p < a->nparts; p++)
        pl[p] = (uint32_t)a->parts[p].len;
    *e_out = e;
    return 0;
}

/* Settles a filled block's checksum and clears what follows it.
 *
 * In a private arena nothing but the store writes a sealed block, so the
 * checksum is left to the writer, which takes it as it writes the block to
 * disk (writer.c): a pass over every byte of a 1 MiB PUT here cost the
 * daemon's serving thread a quarter of its time, for a block that may
 * leave DRAM without ever reaching the disk. In a shared arena a mapped
 * client can write over any block at any time, so the checksum is settled
 * now, before the block is visible, and a block overwritten later fails
 * its check when read back from disk instead of being served. */
void kvs_put_seal(kvs_store_t *s, struct entry *e, const uint64_t *known)
{
    /* A checksum that came with the bytes (a peer's, kvs_store_put_seal_sum)
     * is taken as settled: the bytes crossed a reliable link after it was
     * computed, and a copy that differs fails its check when read back from
     * disk, as one overwritten here would. */
    e->dram->xxh = !s->cfg.dram_shared ? 0
                   : known             ? *known
                           : XXH3_64bits(ent_data(s, e), e->raw_len);
    kvs_dram_zero_tail(ent_data(s, e), e->raw_len);
}

/*
 * Makes filled entries visible: durable ones are written first (one flush
 * and one synced index commit for all of them), then each replaces any
 * block of the same key. status[k] is 0 on entry, and the result after.
 */
void kvs_put_commit(kvs_store_t *s, const kvs_put_args_t *const *args,
                    const uint32_t *ents, uint32_t n, int *status)
{
    bool any_durable = false;

    for (uint32_t k = 0; k < n && s->seg; k++)
        any_durable |= (s->ents[ents[k]].flags & E_DURABLE) != 0;
    if (any_durable) {
        pthread_mutex_lock(&s->wlock);
        for (uint32_t k = 0; k < n; k++)
            if (s->ents[ents[k]].flags & E_DURABLE)
                kvs_writer_queue_wlocked(s, ents[k], JOB_PUT, &status[k]);
        kvs_writer_drain_wlocked(s, true);
        pthread_mutex_unlock(&s->wlock);
    }
    for (uint32_t k = 0; k < n; k++) {
        const kvs_put_args_t *a = args[k];
        struct entry *e = &s->ents[ents[k]];
        bool del_old = false, del_own = false;
        uint64_t old_uid = 0, own_uid = e->uid;
        int ret = status[k];

        kvs_lockstat_lock(&s->lock, &s->lock_stat);
        if (ret == 0)
            ret = publish_locked(s, e, &del_old, &old_uid);
        if (ret) {
            /* Not published: a record written for it must go. */
            del_own = e->flags & E_DISK;
            e->busy = 0;
            kvs_table_free_locked(s, e);
        } else {
            e->busy--;
            s->st.puts++;
            if ((a->flags & KVS_PUT_NO_DRAM) && (e->flags & E_DISK) &&
                !e->refs && !e->busy)
                kvs_dram_drop_locked(s, e);
        }
        pthread_mutex_unlock(&s->lock);
        if (del_old || del_own) {
            pthread_mutex_lock(&s->wlock);
            kvs_index_block_delete(s->index, del_own ? own_uid : old_uid);
            pthread_mutex_unlock(&s->wlock);
        }
        status[k] = ret;
    }
}

int kvs_store_put_batch(kvs_store_t *s, const kvs_put_args_t *args, size_t n,
                        int *status_out)
{
    const kvs_put_args_t *cargs[PUT_CHUNK];
    uint32_t ents[PUT_CHUNK];
    int wstat[PUT_CHUNK];
    size_t pos[PUT_CHUNK] = {0}; /* set for each filled slot */
    int first = 0;
    bool blocked = false; /* a KVS_PUT_NO_WAIT put would have waited */

    for (size_t done = 0; done < n;) {
        size_t chunk = KVS_MIN(n - done, (size_t)PUT_CHUNK);
        uint32_t nd = 0;

        /* Room in DRAM and an entry for each block, then the copy with
         * the lock released. */
        for (size_t i = done; i < done + chunk; i++) {
            const kvs_put_args_t *a = &args[i];
            uint64_t total;
            struct entry *e = NULL;
            int ret = kvs_put_check(s, a, true, &total);

            if (ret == 0 && blocked && (a->flags & KVS_PUT_NO_WAIT))
                ret = -EWOULDBLOCK; /* after one that would wait */
            else if (ret == 0) {
                pthread_mutex_lock(&s->lock);
                ret = kvs_put_reserve_locked(s, a, total, &e);
                pthread_mutex_unlock(&s->lock);
            }
            status_out[i] = ret == 1 ? 0 : ret; /* 1: declined */
            blocked |= ret == -EWOULDBLOCK;
            if (ret)
                continue;
            uint8_t *dst = ent_data(s, e);
            for (uint32_t p = 0; p < a->nparts; p++) {
                if (a->parts[p].len)
                    memcpy(dst, a->parts[p].base, a->parts[p].len);
                dst += a->parts[p].len;
            }
            kvs_put_seal(s, e, NULL);
            cargs[nd] = a;
            pos[nd] = i;
            wstat[nd] = 0;
            ents[nd++] = eidx(s, e);
        }
        kvs_put_commit(s, cargs, ents, nd, wstat);
        for (uint32_t k = 0; k < nd; k++)
            status_out[pos[k]] = wstat[k];
        for (size_t i = done; i < done + chunk; i++)
            if (status_out[i] && !first)
                first = status_out[i];
        done += chunk;
    }
    return first;
}
