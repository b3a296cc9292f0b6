/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DRAM tier's space: a block's extent in the arena, allocating one
 * (making room when the arena is full), freeing one, and the watermarks
 * that start and stop write-behind.
 *
 * Invariants: an entry has E_DRAM exactly while it owns
 * kvs_dram_bytes_of(e) of the arena at e->dram->off and its record e->dram
 * (private memory: the part table, store_int.h); st.dram_blocks counts
 * them. Every free broadcasts space_cv, which puts waiting for room sleep
 * on. `degrading` is set above dram_high and cleared at dram_low.
 *
 * Callers: puts and promotes (alloc), the table (a freed entry's DRAM),
 * eviction and the writer (drop). All need `lock`; kvs_dram_alloc_locked
 * waits on space_cv, releasing it meanwhile (unless told not to wait: a
 * serving thread's put, which then goes to an I/O thread).
 */
#include "kvstore/store_int.h"
#include "common/debug.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dcopy *kvs_dram_copy_new(uint64_t off, uint32_t nparts)
{
    struct dcopy *d = malloc(sizeof(*d) + sizeof(uint32_t) * (size_t)nparts);

    if (d)
        *d = (struct dcopy){.off = off, .pslot = NIL};
    return d;
}

void kvs_dram_copy_free(struct dcopy *d)
{
    free(d);
}

void kvs_dram_close(kvs_store_t *s)
{
    for (uint32_t i = 0; s->ents && i < s->nents_used; i++)
        if (s->ents[i].flags & E_DRAM)
            kvs_dram_copy_free(s->ents[i].dram);
}

void kvs_dram_attach_locked(struct entry *e, struct dcopy *d)
{
    kvs_assert(!(e->flags & E_DRAM));
    e->dram = d;
    e->flags |= E_DRAM;
}

void kvs_dram_drop_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(e->flags & E_DRAM);
    kvs_assert(e->refs == 0);
    ev_tier_locked(s, e, KVS_STORE_EV_REMOVED, KVS_TIER_DRAM);
    kvs_table_lru_remove(s, e, true);
    kvs_arena_free(s->arena, e->dram->off, kvs_dram_bytes_of(e));
    kvs_dram_copy_free(e->dram);
    e->dram = NULL;
    e->flags &= ~E_DRAM;
    s->st.dram_blocks--;
    pthread_cond_broadcast(&s->space_cv);
}

/* The data to its page end (a page for an empty block): the payload of
 * the block's disk image when stored raw. */
uint64_t kvs_dram_bytes_for(uint64_t raw_len)
{
    return KVS_MAX((uint64_t)KVS_ARENA_PAGE,
                   KVS_ALIGN_UP(raw_len, (uint64_t)KVS_ARENA_PAGE));
}

/* Zeroes what follows the data up to the page end, so that padding written
 * to disk never carries stale arena bytes. */
void kvs_dram_zero_tail(uint8_t *data, uint64_t raw_len)
{
    memset(data + raw_len, 0,
           KVS_ALIGN_UP(raw_len, (uint64_t)KVS_ARENA_PAGE) - raw_len);
}

/*
 * Write-behind starts when DRAM passes the high watermark and then runs
 * without pause until it is back under the low one, so the disk stays busy
 * while puts keep coming instead of idling between bursts.
 */
bool kvs_dram_need_degrade_locked(kvs_store_t *s)
{
    size_t used;

    if (!s->seg)
        return false;
    used = kvs_arena_used(s->arena);
    if (used > s->dram_high)
        s->degrading = true;
    else if (used <= s->dram_low)
        s->degrading = false;
    return s->degrading;
}

/*
 * Allocates DRAM for a block, making room if needed: without an NVMe tier
 * by dropping least recently used blocks, with one by waking the background
 * writer and waiting up to full_wait_ms for it. KVS_EFULL if no room.
 */
int kvs_dram_alloc_locked(kvs_store_t *s, uint64_t bytes, uint64_t *off_out)
{
    return kvs_dram_alloc_flags_locked(s, bytes, true, off_out);
}

int kvs_dram_alloc_flags_locked(kvs_store_t *s, uint64_t bytes, bool wait,
                                uint64_t *off_out)
{
    struct timespec deadline;
    bool have_deadline = false;

    for (;;) {
        if (kvs_arena_alloc(s->arena, bytes, off_out) == 0) {
            if (kvs_dram_need_degrade_locked(s))
                pthread_cond_signal(&s->work_cv);
            return 0;
        }
        if (!s->seg) {
            if (!kvs_evict_dram_locked(s, bytes))
                return KVS_EFULL;
            continue;
        }
        if (!have_deadline) {
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_sec += s->cfg.full_wait_ms / 1000;
            deadline.tv_nsec += (long)(s->cfg.full_wait_ms % 1000) * 1000000L;
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
            }
            have_deadline = true;
        }
        if (kvs_evict_disk_copies_locked(s, bytes))
            continue;
        pthread_cond_signal(&s->work_cv);
        if (!wait)
            return -EWOULDBLOCK;
        __atomic_add_fetch(&s->space_waiters, 1, __ATOMIC_RELAXED);
        int tret = pthread_cond_timedwait(&s->space_cv, &s->lock, &deadline);
        __atomic_sub_fetch(&s->space_waiters, 1, __ATOMIC_RELAXED);
        if (tret == ETIMEDOUT) {
            if (kvs_arena_alloc(s->arena, bytes, off_out) == 0)
                return 0;
            return KVS_EFULL;
        }
    }
}
