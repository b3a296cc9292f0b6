/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Regions: the fixed slices of the data file that blocks are appended to
 * and reclaimed by, each with the list of its blocks on disk, a state and
 * a generation.
 *
 * Its life cycle is drawn in store_int.h, above enum region_state.
 *
 * Invariants: nfree_regions counts the regions in RG_FREE; a region is
 * FREE only with no block on its list and no append in flight (pending);
 * its generation is recorded in the index before any block is written
 * into it, so a record that outlives a crash names its data's generation
 * or an older one, which reads as a miss.
 *
 * Callers: the table (a freed entry leaves its region), the writer
 * (opening regions, choosing what to reclaim), recovery and reads. All
 * functions need `lock`, except kvs_region_open_next_wlocked, which needs
 * wlock and takes `lock` itself.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>

void kvs_region_add(kvs_store_t *s, struct entry *e)
{
    struct region *r = &s->regions[ent_region(s, e)];
    uint32_t i = eidx(s, e);

    e->rg_prev = NIL;
    e->rg_next = r->head;
    if (r->head != NIL)
        s->ents[r->head].rg_prev = i;
    r->head = i;
    r->nblocks++;
}

void kvs_region_set_state(kvs_store_t *s, uint32_t r, uint8_t state)
{
    if (s->regions[r].state == RG_FREE)
        s->nfree_regions--;
    if (state == RG_FREE)
        s->nfree_regions++;
    s->regions[r].state = state;
}

/* A sealed region whose last block left is free again. */
void kvs_region_maybe_free_locked(kvs_store_t *s, uint32_t r)
{
    struct region *rg = &s->regions[r];

    if (rg->state == RG_SEALED && rg->nblocks == 0 && rg->pending == 0)
        kvs_region_set_state(s, r, RG_FREE);
}

void kvs_region_remove(kvs_store_t *s, struct entry *e)
{
    uint32_t rg = ent_region(s, e);
    struct region *r = &s->regions[rg];

    if (e->rg_prev != NIL)
        s->ents[e->rg_prev].rg_next = e->rg_next;
    else
        r->head = e->rg_next;
    if (e->rg_next != NIL)
        s->ents[e->rg_next].rg_prev = e->rg_prev;
    r->nblocks--;
    kvs_region_maybe_free_locked(s, rg);
}

/* A block on disk only that must survive its region's reclaim. */
bool kvs_region_must_keep(const kvs_store_t *s, const struct entry *e,
                          uint64_t now_ms)
{
    return !(e->flags & E_DRAM) &&
           (e->cls == KVS_CLASS_PINNED ||
            (e->cls == KVS_CLASS_USER && !expired(s, e, now_ms)));
}

/* Bytes of region r that a reclaim would have to write again. */
static uint64_t region_keep_bytes_locked(kvs_store_t *s, uint32_t r)
{
    uint64_t now = kvs_clock_real_ms(), bytes = 0;

    for (uint32_t i = s->regions[r].head; i != NIL; i = s->ents[i].rg_next) {
        const struct entry *e = &s->ents[i];
        if (((e->flags & E_DRAM) &&
             ((e->flags & E_DURABLE) || e->cls == KVS_CLASS_PINNED)) ||
            kvs_region_must_keep(s, e, now))
            bytes += ent_disk_len(e);
    }
    return bytes;
}

/*
 * The region to reclaim: the oldest sealed one (lowest generation) with no
 * block in use and no write in flight, among those where a reclaim frees
 * at least half of the region; failing that, the one that frees the most,
 * if it frees a tenth. NIL if there is none.
 */
uint32_t kvs_region_victim_locked(kvs_store_t *s)
{
    uint32_t oldest = NIL, cheapest = NIL;
    uint64_t cheapest_keep = UINT64_MAX;

    for (uint32_t r = 0; r < s->nregions; r++) {
        struct region *rg = &s->regions[r];
        bool movable = rg->state == RG_SEALED && rg->pending == 0;
        for (uint32_t i = rg->head; movable && i != NIL; i = s->ents[i].rg_next)
            if (s->ents[i].busy)
                movable = false;
        if (!movable)
            continue;
        uint64_t keep = region_keep_bytes_locked(s, r);
        if (keep <= s->cfg.region_bytes / 2 &&
            (oldest == NIL || rg->gen < s->regions[oldest].gen))
            oldest = r;
        if (keep < cheapest_keep) {
            cheapest_keep = keep;
            cheapest = r;
        }
    }
    if (oldest != NIL)
        return oldest;
    if (cheapest != NIL &&
        cheapest_keep <= (uint64_t)s->cfg.region_bytes / 10 * 9)
        return cheapest;
    return NIL;
}

/* Opens the next free region for appends (on -ENOSPC from the segment).
 * Never reclaims: that is ensure_space_wlocked()'s job, between appends.
 * KVS_EFULL when no region is free. */
int kvs_region_open_next_wlocked(kvs_store_t *s)
{
    for (;;) {
        uint32_t r, cur;
        uint64_t gen;
        int ret;

        pthread_mutex_lock(&s->lock);
        cur = kvs_segment_region_current(s->seg);
        if (cur != UINT32_MAX && s->regions[cur].state == RG_OPEN) {
            kvs_region_set_state(s, cur, RG_SEALED);
            kvs_region_maybe_free_locked(s, cur);
        }
        for (r = 0; r < s->nregions; r++)
            if (s->regions[r].state == RG_FREE)
                break;
        if (r == s->nregions) {
            pthread_mutex_unlock(&s->lock);
            kvs_warn("store: no free region: disk tier full");
            return KVS_EFULL;
        }
        gen = ++s->gen_seq;
        kvs_region_set_state(s, r, RG_OPEN);
        s->regions[r].gen = gen;
        pthread_mutex_unlock(&s->lock);

        /* The new generation is recorded before any block of it: a record
         * that outlives a crash can then only name the generation its data
         * was written with, or an older one, which reads as a miss. */
        ret = kvs_index_region_put(s->index, r, gen, false);
        if (ret == 0)
            ret = kvs_segment_region_open(s->seg, r, gen);
        pthread_mutex_lock(&s->lock);
        if (ret == 0) {
            s->regions[r].reserved = true;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        kvs_region_set_state(s, r, RG_FREE);
        if (ret == -ENOSPC) {
            /* The file system is full: no region that has no space yet
             * will get any. Only reserved regions are usable from now on,
             * so the free count is true and reclaim starts. */
            uint32_t lost = 0;
            for (uint32_t k = 0; k < s->nregions; k++)
                if (s->regions[k].state == RG_FREE && !s->regions[k].reserved) {
                    kvs_region_set_state(s, k, RG_UNUSABLE);
                    lost++;
                }
            kvs_warn("store: the file system is full: %u regions of the "
                     "data file cannot be reserved and stay unused",
                     lost);
        }
        pthread_mutex_unlock(&s->lock);
        if (ret != -ENOSPC)
            return ret;
    }
}
