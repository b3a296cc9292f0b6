/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Eviction and admission: every choice of which block leaves DRAM or the
 * store, and which is not let in. The order these choices walk is the
 * policy's (kvstore/policy.c, through table.c); the region to reclaim is
 * chosen in region.c.
 *
 *   put --admit?--> DRAM --coldest--> written behind (degrade) or dropped
 *        (ghost)           \--table full / no NVMe tier--> evicted
 *
 * Invariants: nothing here frees a block that is busy, referenced, pinned
 * (KVS_CLASS_PINNED) or unlinked; a block with a disk copy is never
 * evicted from the store here (region reclaim owns its index record), only
 * its DRAM copy dropped; nor a block whose children are in DRAM (chains
 * stay gap-free).
 *
 * Callers: dram.c (making room), puts (admission, a full table) and the
 * background thread (what to write behind). All need `lock`.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"

#define DEGRADE_BYTES (16ull << 20) /* bytes picked at a time */

/* Drops the coldest blocks (no NVMe tier) until bytes fit; true if they
 * now do. */
bool kvs_evict_dram_locked(kvs_store_t *s, uint64_t bytes)
{
    uint32_t i = kvs_table_lru_coldest(s);

    while (kvs_arena_largest_free(s->arena) < bytes && i != NIL) {
        struct entry *e = &s->ents[i];
        i = kvs_table_lru_warmer(s, i);
        if (e->refs || e->busy || e->cls == KVS_CLASS_PINNED ||
            !(e->flags & E_LINKED) || !kvs_table_lru_evictable(s, e))
            continue;
        if (e->flags & E_DISK) {
            kvs_dram_drop_locked(s, e);
        } else {
            kvs_table_lru_remove(s, e, true);
            kvs_table_remove_locked(s, e);
            s->st.evicted++;
        }
    }
    return kvs_arena_largest_free(s->arena) >= bytes;
}

/* Blocks already on disk can leave DRAM at once: drops the DRAM copies of
 * the oldest few such blocks until bytes fit; true if they now do. Only
 * the oldest few are looked at: this runs under the lock at every wakeup
 * of a put waiting for space, and write-behind frees the rest. */
bool kvs_evict_disk_copies_locked(kvs_store_t *s, uint64_t bytes)
{
    uint32_t i = kvs_table_lru_coldest(s), seen = 0;

    while (i != NIL && seen++ < 256 &&
           kvs_arena_largest_free(s->arena) < bytes) {
        struct entry *e = &s->ents[i];
        i = kvs_table_lru_warmer(s, i);
        if ((e->flags & E_DISK) && !e->refs && !e->busy &&
            e->cls != KVS_CLASS_PINNED)
            kvs_dram_drop_locked(s, e);
    }
    return kvs_arena_largest_free(s->arena) >= bytes;
}

/*
 * The block table is full (max_blocks): drops the coldest block that is
 * in DRAM only, not in use and has no children in DRAM. Blocks with a disk copy
 * are left to region reclaim, which owns their index records. Returns whether
 * an entry was freed.
 */
bool kvs_evict_one_locked(kvs_store_t *s)
{
    for (uint32_t i = kvs_table_lru_coldest(s); i != NIL;
         i = kvs_table_lru_warmer(s, i)) {
        struct entry *e = &s->ents[i];
        if (e->refs || e->busy || e->cls == KVS_CLASS_PINNED ||
            (e->flags & E_DISK) || !(e->flags & E_LINKED) ||
            !kvs_table_lru_evictable(s, e))
            continue;
        kvs_table_lru_remove(s, e, true);
        kvs_table_remove_locked(s, e);
        s->st.evicted++;
        return true;
    }
    return false;
}

/*
 * Store admission for scratch puts (admit_ghost_factor): most blocks of a
 * prompt are never asked for again, and keeping them pushes out blocks
 * that are. A block is admitted when its key was put before and declined
 * recently (it is in the ghost list), or when it replaces a present block;
 * never when its parent is absent, since without the parent a match can
 * never reach it. A declined key is remembered.
 */
bool kvs_evict_admit_locked(kvs_store_t *s, const kvs_put_args_t *a)
{
    uint64_t h = key_hash(a->ns, a->key, a->key_len);

    if (kvs_table_lookup_locked(s, a->ns, a->key, a->key_len, h))
        return true;
    if ((a->parent_len &&
         !kvs_table_find_locked(s, a->ns, a->parent, a->parent_len)) ||
        !kvs_ghost_contains(s->ghost, h)) {
        kvs_ghost_add(s->ghost, h);
        return false;
    }
    kvs_ghost_remove(s->ghost, h);
    return true;
}

/* Picks up to max blocks to write: for a flush every DRAM-only block, else
 * the least recently used blocks that are not pinned. Blocks already on
 * disk leave DRAM without I/O. */
uint32_t kvs_evict_pick_degrade_locked(kvs_store_t *s, uint32_t *out,
                                       uint32_t max, bool flush)
{
    uint32_t n = 0;
    uint64_t bytes = 0, used = kvs_arena_used(s->arena);

    /* What is already on its way out counts as gone. */
    used = used > s->degrade_pending ? used - s->degrade_pending : 0;
    for (uint32_t i = kvs_table_lru_coldest(s); i != NIL && n < max;) {
        struct entry *e = &s->ents[i];
        i = kvs_table_lru_warmer(s, i);
        if (!flush && (used - bytes <= s->dram_low || bytes >= DEGRADE_BYTES))
            break;
        if (e->busy || !(e->flags & E_LINKED))
            continue;
        if (flush) {
            /* One pass: a block is written once per flush, even if a
             * reclaim takes its disk copy away again meanwhile (DRAM can
             * be larger than the disk). */
            if (!(e->flags & E_DISK) && e->dram->flush_gen != s->flush_gen) {
                e->dram->flush_gen = s->flush_gen;
                e->busy++;
                out[n++] = eidx(s, e);
            }
            continue;
        }
        if (e->refs || e->cls == KVS_CLASS_PINNED)
            continue;
        if (e->flags & E_DISK) {
            bytes += kvs_dram_bytes_of(e);
            kvs_dram_drop_locked(s, e);
            continue;
        }
        /* Flash admission: scratch blocks that were never hit again are
         * not worth a disk write; they leave the store. */
        if (e->cls == KVS_CLASS_SCRATCH &&
            e->dram->hits < s->cfg.admit_scratch_hits &&
            kvs_table_lru_evictable(s, e)) {
            bytes += kvs_dram_bytes_of(e);
            kvs_table_lru_remove(s, e, true);
            kvs_table_remove_locked(s, e);
            s->st.admission_rejected++;
            s->st.evicted++;
            continue;
        }
        e->busy++;
        out[n++] = eidx(s, e);
        bytes += kvs_dram_bytes_of(e);
        s->degrade_pending += kvs_dram_bytes_of(e);
    }
    return n;
}
