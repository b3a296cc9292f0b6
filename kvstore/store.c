/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The storage engine facade: the block table, the DRAM tier, and the glue
 * between them, the NVMe segment and the RocksDB index.
 *
 * Every block has one entry in a table allocated at open (no malloc on the
 * data path), found through a chained hash of (namespace, key):
 *
 *   buckets[hash & mask] -> entry -> entry -> NIL        (hnext chains)
 *   lru_head <-> ... <-> lru_tail                        (blocks in DRAM)
 *   region[r].head <-> ... (blocks on disk in region r)  (rg_prev/rg_next)
 *
 * An entry can be in DRAM (E_DRAM, bytes at dram_off in the arena), on disk
 * (E_DISK, at loc), or both. Its DRAM copy is laid out as the block's bytes
 * followed by its part-length table, behind room for its disk header, so
 * the bytes start on a page boundary and can be sent from directly, and the
 * extent is the block's disk image, written without a copy:
 *
 *   extent: | disk header pages | data (raw_len) | pad to 8 | part_lens |
 *                                ^ arena + dram_off
 *
 * Locks, always taken in this order:
 *   wlock  the segment's writer and every write to block records in the
 *          index, so records of one key are written in the order the store
 *          decided them;
 *   rlock  the segment's reader (ring and bounce slots);
 *   lock   all metadata: the table, hash, LRU, arena, regions, stats.
 * `lock` is never held across I/O or a copy of block data. An entry that a
 * copy or I/O works on carries busy > 0 (internal) or refs > 0 (a caller's
 * reference); neither kind is freed, and only refs makes a delete fail.
 * A block deleted or replaced while busy is marked E_DEAD and unlinked; the
 * last busy holder frees it.
 *
 * Disk reads need no reference on the region: a block read from a region
 * reclaimed meanwhile fails its generation check and is a miss.
 */
#include "kvstore/store.h"
#include "kvstore/arena.h"
#include "kvstore/codec.h"
#include "kvstore/ghost.h"
#include "kvstore/index.h"
#include "kvstore/segment.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/fs.h"
#include "common/hugemem.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define NIL UINT32_MAX
#define PUT_CHUNK 64 /* puts sharing one durable write */

enum {
    E_USED    = 1u << 0, /* allocated */
    E_LINKED  = 1u << 1, /* in the hash: visible */
    E_DRAM    = 1u << 2, /* DRAM copy valid */
    E_DISK    = 1u << 3, /* disk copy valid, index record written */
    E_DURABLE = 1u << 4, /* asked for durability: keep a disk copy */
    E_DEAD    = 1u << 5, /* deleted or replaced while busy */
    E_INLRU   = 1u << 6, /* on the DRAM LRU list */
    E_INTTL   = 1u << 7, /* on the TTL list */
};

struct entry {
    /* What a lookup and a MATCH's touch read, in the first two cache
     * lines (a block table spread over a large store misses on each). */
    uint64_t hash;          /* XXH3-64 of (ns, key) */
    uint32_t hnext;         /* hash chain */
    uint32_t ns;
    uint32_t flags;         /* E_* */
    uint8_t key_len, parent_len, cls, elem_size;
    uint64_t expiry_ms;     /* wall clock; 0: none */
    uint8_t key[KVS_KEY_MAX];
    uint64_t uid;           /* unique per put */
    uint32_t lru_prev, lru_next;
    uint16_t hits;          /* accesses since put, saturating */
    uint8_t codec;          /* of the disk copy */
    uint32_t ttl_prev, ttl_next; /* TTL list: linked entries with a TTL */
    /* The rest. */
    uint32_t rg_prev, rg_next;
    uint32_t refs;          /* callers' references (pins, views, leases) */
    uint32_t busy;          /* the store's own I/O in progress */
    uint32_t nparts;
    uint32_t flush_gen;     /* the last flush that wrote it */
    uint64_t raw_len;       /* bytes */
    uint64_t group;
    uint64_t dram_off;      /* of the data in the arena, when E_DRAM */
    uint64_t dram_bytes;    /* allocated, header pages included */
    kvs_seg_loc_t loc;      /* when E_DISK */
    uint64_t stored_len;    /* bytes after the codec, when E_DISK */
    uint64_t data_xxh;      /* XXH3-64 of the raw bytes */
    uint8_t parent[KVS_KEY_MAX];
} __attribute__((aligned(64)));
_Static_assert(offsetof(struct entry, ttl_next) + 4 <= 128,
               "a lookup and a touch read two cache lines of an entry");

/*
 * Region life cycle:
 *
 *   FREE --open--> OPEN --full--> SEALED --victim--> RECLAIMING --+--> FREE
 *                                   ^                            |
 *                                   +------ (something stayed) --+
 *
 * A region becomes FREE only when no published block and no write in
 * flight (pending) is left in it, and only after the blocks moved out of
 * it are durable elsewhere; its next generation is given when it opens.
 */
enum region_state { RG_FREE = 0, RG_OPEN, RG_SEALED, RG_RECLAIMING,
                    RG_UNUSABLE };

/* Free regions kept in reserve: write-behind does not take the last of
 * them, so a reclaim always has room to move the blocks it keeps. */
#define REGION_RESERVE 2

struct region {
    uint64_t gen;           /* current generation */
    uint32_t head;          /* entries on disk in this region */
    uint32_t nblocks;
    uint32_t pending;       /* appends not yet published */
    uint8_t state;          /* enum region_state */
    bool reserved;          /* its space is allocated in the file */
};

struct ns_rec {
    char *name;
    uint32_t elem_size;
};

enum job_kind { JOB_DEGRADE, JOB_KEEP, JOB_PUT };
enum job_state { JOB_QUEUED = 0, JOB_APPENDED, JOB_DONE };

/* One block being written (see the write pipeline below). */
struct wjob {
    uint32_t e;             /* entry index */
    int status;
    uint8_t kind;           /* enum job_kind */
    uint8_t state;          /* enum job_state */
    bool state_appended;    /* counted in its region's pending */
    uint8_t codec;
    uint64_t buf;           /* its write's tag (buffer 0..3 or >= 4) */
    kvs_seg_loc_t loc;
    uint64_t stored_len;
    int *result;            /* JOB_PUT: receives the status */
};

struct kvs_store {
    kvs_store_config_t cfg;
    char *dir;

    pthread_mutex_t lock;
    pthread_cond_t space_cv;  /* DRAM space freed or a write finished */
    pthread_cond_t work_cv;   /* wakes the background thread */
    pthread_mutex_t wlock;
    pthread_mutex_t rlock;

    /* Guarded by lock. */
    kvs_arena_t *arena;
    uint8_t *abase;
    struct entry *ents;       /* in ents_mem */
    kvs_huge_t ents_mem, buckets_mem; /* see common/hugemem.h */
    uint32_t nents;
    uint32_t free_head;
    uint32_t *buckets;
    uint32_t bucket_mask;
    uint32_t lru_head, lru_tail;
    struct region *regions;
    uint32_t nfree_regions;
    uint64_t reclaim_retry_ns; /* no reclaim before this (mono clock) */
    uint32_t ttl_head, ttl_tail; /* linked entries with a TTL, for the
                                  * sweep, which rotates them */
    uint32_t nttl;
    uint32_t *reloc;          /* scratch for region_relocate_locked */
    uint32_t nregions;
    uint64_t gen_seq;
    uint64_t uid_seq;
    uint64_t pinned_bytes;
    uint64_t dram_high, dram_low; /* bytes */
    bool degrading;           /* between high and low watermark */
    int space_waiters;        /* puts waiting for DRAM (atomic reads) */
    uint64_t degrade_pending; /* DRAM bytes queued to degrade */
    kvs_ghost_t *ghost;       /* admission (admit_ghost_factor), or NULL */
    struct ns_rec *ns;
    uint32_t nns;
    uint32_t ns_cap;
    bool stop;
    uint32_t flush_gen;       /* flush requests made */
    uint32_t flush_done;      /* flush requests served */
    int flush_status;
    int flush_job_err;        /* first failed write of the flush */
    kvs_store_stats_t st;

    /* Guarded by wlock. */
    kvs_segment_t *seg;       /* NULL: no NVMe tier */
    kvs_index_batch_t *batch;
    kvs_codec_t *wcodec;
    uint8_t *wscratch;        /* codec output, max_block bound */
    size_t wscratch_len;
    struct wjob *pend;        /* jobs in flight, njobs_max entries */
    uint32_t npend;
    uint32_t ndone;           /* of them DONE */
    uint32_t njobs_max;
    uint32_t *requeue;        /* blocks a reclaim writes again */
    uint64_t tag_seq;         /* tags of direct writes, from 4 up */
    uint32_t *dead;           /* dead entries to free after publishing */
    uint32_t ndead;

    /* Guarded by rlock. */
    kvs_codec_t *rcodec;

    kvs_index_t *index;
    pthread_t bg;
    bool bg_started;
};

/* ---------------------------------------------------------------------- */

static uint64_t key_hash(uint32_t ns, const void *key, uint32_t len)
{
    return XXH3_64bits_withSeed(key, len, 0x9e3779b97f4a7c15ull ^ ns);
}

static uint32_t eidx(const kvs_store_t *s, const struct entry *e)
{
    return (uint32_t)(e - s->ents);
}

static struct entry *lookup_locked(kvs_store_t *s, uint32_t ns,
                                   const void *key, uint32_t len,
                                   uint64_t hash)
{
    for (uint32_t i = s->buckets[hash & s->bucket_mask]; i != NIL;
         i = s->ents[i].hnext) {
        struct entry *e = &s->ents[i];
        if (e->hash == hash && e->ns == ns && e->key_len == len &&
            memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static bool expired(const struct entry *e, uint64_t now_ms)
{
    return e->expiry_ms && now_ms >= e->expiry_ms;
}

/* A visible entry, or NULL if absent or past its TTL. */
static struct entry *find_locked(kvs_store_t *s, uint32_t ns, const void *key,
                                 uint32_t len)
{
    struct entry *e = lookup_locked(s, ns, key, len, key_hash(ns, key, len));

    if (e && expired(e, kvs_clock_real_ms()))
        return NULL;
    return e;
}

/* The TTL list holds exactly the visible entries that have a TTL, so that
 * the sweep visits those and not the whole table (80 MiB at the default
 * 2^18 entries): walking 16,384 table slots a second cost an idle store
 * 15 ms of CPU a second on this project's VMs. ttl_sync() puts e on the
 * list or takes it off after its visibility or its TTL changed. */
static void ttl_del(kvs_store_t *s, struct entry *e)
{
    if (e->ttl_prev != NIL)
        s->ents[e->ttl_prev].ttl_next = e->ttl_next;
    else
        s->ttl_head = e->ttl_next;
    if (e->ttl_next != NIL)
        s->ents[e->ttl_next].ttl_prev = e->ttl_prev;
    else
        s->ttl_tail = e->ttl_prev;
    e->flags &= ~E_INTTL;
    s->nttl--;
}

static void ttl_append(kvs_store_t *s, struct entry *e)
{
    uint32_t i = eidx(s, e);

    e->ttl_prev = s->ttl_tail;
    e->ttl_next = NIL;
    if (s->ttl_tail != NIL)
        s->ents[s->ttl_tail].ttl_next = i;
    else
        s->ttl_head = i;
    s->ttl_tail = i;
    e->flags |= E_INTTL;
    s->nttl++;
}

static void ttl_sync(kvs_store_t *s, struct entry *e)
{
    bool want = (e->flags & E_LINKED) && e->expiry_ms;

    if (want && !(e->flags & E_INTTL))
        ttl_append(s, e);
    else if (!want && (e->flags & E_INTTL))
        ttl_del(s, e);
}

static void hash_link(kvs_store_t *s, struct entry *e)
{
    uint32_t *b = &s->buckets[e->hash & s->bucket_mask];

    e->hnext = *b;
    *b = eidx(s, e);
    e->flags |= E_LINKED;
    ttl_sync(s, e);
}

static void hash_unlink(kvs_store_t *s, struct entry *e)
{
    uint32_t *p = &s->buckets[e->hash & s->bucket_mask];
    uint32_t i = eidx(s, e);

    while (*p != i) {
        kvs_assert(*p != NIL);
        p = &s->ents[*p].hnext;
    }
    *p = e->hnext;
    e->flags &= ~E_LINKED;
    ttl_sync(s, e);
}

static void lru_push(kvs_store_t *s, struct entry *e)
{
    uint32_t i = eidx(s, e);

    kvs_assert(!(e->flags & E_INLRU));
    e->flags |= E_INLRU;
    e->lru_prev = NIL;
    e->lru_next = s->lru_head;
    if (s->lru_head != NIL)
        s->ents[s->lru_head].lru_prev = i;
    else
        s->lru_tail = i;
    s->lru_head = i;
}

/* Inserts e just behind p (less recent than p): a block goes behind its
 * parent so that a chain is ordered root first and least recently used
 * order always reaches a leaf before its ancestors. */
static void lru_insert_after(kvs_store_t *s, struct entry *e, struct entry *p)
{
    uint32_t i = eidx(s, e), pi = eidx(s, p);

    kvs_assert(!(e->flags & E_INLRU) && (p->flags & E_INLRU));
    e->flags |= E_INLRU;
    e->lru_prev = pi;
    e->lru_next = p->lru_next;
    if (p->lru_next != NIL)
        s->ents[p->lru_next].lru_prev = i;
    else
        s->lru_tail = i;
    p->lru_next = i;
}

static void lru_remove(kvs_store_t *s, struct entry *e)
{
    if (!(e->flags & E_INLRU))
        return;
    e->flags &= ~E_INLRU;
    if (e->lru_prev != NIL)
        s->ents[e->lru_prev].lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next != NIL)
        s->ents[e->lru_next].lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NIL;
}

static void lru_touch(kvs_store_t *s, struct entry *e)
{
    if ((e->flags & E_INLRU) && s->lru_head != eidx(s, e)) {
        lru_remove(s, e);
        lru_push(s, e);
    }
}

/* Whether e[0..n-1] are all on the LRU list, each right behind the one
 * before it (e[0] the most recent of them). */
static bool lru_run_in_order(const kvs_store_t *s, struct entry *const *e,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* cppcheck-suppress uninitvar ; it takes found[0..n) as set */
        if (!(e[i]->flags & E_INLRU))
            return false;
        if (i + 1 < n && e[i]->lru_next != eidx(s, e[i + 1]))
            return false;
    }
    return true;
}

/* Moves the run first..last (linked by lru_next) to the head, in order. */
static void lru_run_to_head(kvs_store_t *s, struct entry *first,
                            struct entry *last)
{
    uint32_t fi = eidx(s, first), li = eidx(s, last);

    if (s->lru_head == fi)
        return;
    /* Not the head, so first has a predecessor. */
    s->ents[first->lru_prev].lru_next = last->lru_next;
    if (last->lru_next != NIL)
        s->ents[last->lru_next].lru_prev = first->lru_prev;
    else
        s->lru_tail = first->lru_prev;
    first->lru_prev = NIL;
    last->lru_next = s->lru_head;
    s->ents[s->lru_head].lru_prev = li;
    s->lru_head = fi;
}

static void count_hit(struct entry *e)
{
    if (e->hits < UINT16_MAX)
        e->hits++;
}

/* An access: recency for eviction, a hit for flash admission. */
static void touch_locked(kvs_store_t *s, struct entry *e)
{
    count_hit(e);
    lru_touch(s, e);
}

/* Touches e[0..n-1] (a MATCH's chain, root first) the way touching them
 * one by one deepest first would, when they already lie in the LRU list in
 * that order: in one piece. False, touching nothing, otherwise. */
static bool touch_run_locked(kvs_store_t *s, struct entry *const *e, size_t n)
{
    if (n == 0 || !lru_run_in_order(s, e, n))
        return false;
    for (size_t i = 0; i < n; i++)
        count_hit(e[i]);
    lru_run_to_head(s, e[0], e[n - 1]);
    return true;
}

static void region_add(kvs_store_t *s, struct entry *e)
{
    struct region *r = &s->regions[e->loc.region];
    uint32_t i = eidx(s, e);

    e->rg_prev = NIL;
    e->rg_next = r->head;
    if (r->head != NIL)
        s->ents[r->head].rg_prev = i;
    r->head = i;
    r->nblocks++;
}

static void region_set_state(kvs_store_t *s, uint32_t r, uint8_t state)
{
    if (s->regions[r].state == RG_FREE)
        s->nfree_regions--;
    if (state == RG_FREE)
        s->nfree_regions++;
    s->regions[r].state = state;
}

/* A sealed region whose last block left is free again. */
static void region_maybe_free_locked(kvs_store_t *s, uint32_t r)
{
    struct region *rg = &s->regions[r];

    if (rg->state == RG_SEALED && rg->nblocks == 0 && rg->pending == 0)
        region_set_state(s, r, RG_FREE);
}

static void region_remove(kvs_store_t *s, struct entry *e)
{
    struct region *r = &s->regions[e->loc.region];

    if (e->rg_prev != NIL)
        s->ents[e->rg_prev].rg_next = e->rg_next;
    else
        r->head = e->rg_next;
    if (e->rg_next != NIL)
        s->ents[e->rg_next].rg_prev = e->rg_prev;
    r->nblocks--;
    region_maybe_free_locked(s, e->loc.region);
}

static struct entry *entry_alloc_locked(kvs_store_t *s)
{
    struct entry *e;

    if (s->free_head == NIL)
        return NULL;
    e = &s->ents[s->free_head];
    s->free_head = e->hnext;
    memset(e, 0, sizeof(*e));
    e->flags = E_USED;
    e->hnext = e->lru_prev = e->lru_next = e->rg_prev = e->rg_next = NIL;
    e->uid = ++s->uid_seq;
    return e;
}

static void dram_drop_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(e->flags & E_DRAM);
    kvs_assert(e->refs == 0);
    lru_remove(s, e);
    kvs_arena_free(s->arena, e->dram_off - kvs_segment_hdr_bytes(e->nparts),
                   e->dram_bytes);
    e->flags &= ~E_DRAM;
    s->st.dram_blocks--;
    pthread_cond_broadcast(&s->space_cv);
}

/* Frees an entry that is unlinked and not busy. */
static void entry_free_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(!(e->flags & E_LINKED));
    kvs_assert(e->busy == 0 && e->refs == 0);
    if (e->flags & E_DRAM)
        dram_drop_locked(s, e);
    if (e->flags & E_DISK) {
        region_remove(s, e);
        s->st.nvme_blocks--;
    }
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes -= e->raw_len;
    e->flags = 0;
    e->hnext = s->free_head;
    s->free_head = eidx(s, e);
}

/* Makes a linked entry invisible; frees it unless the store is still
 * working on it. */
static void entry_remove_locked(kvs_store_t *s, struct entry *e)
{
    hash_unlink(s, e);
    s->st.blocks--;
    if (e->busy)
        e->flags |= E_DEAD;
    else
        entry_free_locked(s, e);
}

static uint64_t dram_bytes_for(uint64_t raw_len, uint32_t nparts)
{
    return kvs_segment_hdr_bytes(nparts) + KVS_ALIGN_UP(raw_len, 8ull) +
           4ull * nparts;
}

/* Zeroes what follows the part table up to the page end, so that padding
 * written to disk never carries stale arena bytes. */
static void dram_zero_tail(uint8_t *data, uint64_t raw_len, uint32_t nparts)
{
    uint64_t end = KVS_ALIGN_UP(raw_len, 8ull) + 4ull * nparts;

    memset(data + raw_len, 0, KVS_ALIGN_UP(raw_len, 8ull) - raw_len);
    memset(data + end, 0, KVS_ALIGN_UP(end, (uint64_t)KVS_ARENA_PAGE) - end);
}

static uint32_t *part_table(kvs_store_t *s, const struct entry *e)
{
    return (uint32_t *)(void *)(s->abase + e->dram_off +
                                KVS_ALIGN_UP(e->raw_len, 8ull));
}

static void entry_set_key(struct entry *e, uint32_t ns, const void *key,
                          uint32_t len, uint64_t hash)
{
    e->ns = ns;
    e->key_len = (uint8_t)len;
    memcpy(e->key, key, len);
    e->hash = hash;
}

/* ---------------------------------------------------------------------- */
/* DRAM space */

/* Drops LRU blocks (no NVMe tier) until bytes fit; true if they now do. */
static bool dram_evict_locked(kvs_store_t *s, uint64_t bytes)
{
    uint32_t i = s->lru_tail;

    while (kvs_arena_largest_free(s->arena) < bytes && i != NIL) {
        struct entry *e = &s->ents[i];
        i = e->lru_prev;
        if (e->refs || e->busy || e->cls == KVS_CLASS_PINNED ||
            !(e->flags & E_LINKED))
            continue;
        if (e->flags & E_DISK) {
            dram_drop_locked(s, e);
        } else {
            entry_remove_locked(s, e);
            s->st.evicted++;
        }
    }
    return kvs_arena_largest_free(s->arena) >= bytes;
}

/*
 * Write-behind starts when DRAM passes the high watermark and then runs
 * without pause until it is back under the low one, so the disk stays busy
 * while puts keep coming instead of idling between bursts.
 */
/*
 * The block table is full (max_blocks): drops the least recently used
 * block that is in DRAM only and not in use. Blocks with a disk copy are
 * left to region reclaim, which owns their index records. Returns whether
 * an entry was freed.
 */
static bool evict_one_locked(kvs_store_t *s)
{
    for (uint32_t i = s->lru_tail; i != NIL; i = s->ents[i].lru_prev) {
        struct entry *e = &s->ents[i];
        if (e->refs || e->busy || e->cls == KVS_CLASS_PINNED ||
            (e->flags & E_DISK) || !(e->flags & E_LINKED))
            continue;
        entry_remove_locked(s, e);
        s->st.evicted++;
        return true;
    }
    return false;
}

static bool need_degrade_locked(kvs_store_t *s)
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
static int dram_alloc_locked(kvs_store_t *s, uint64_t bytes, uint64_t *off_out)
{
    struct timespec deadline;
    bool have_deadline = false;

    for (;;) {
        if (kvs_arena_alloc(s->arena, bytes, off_out) == 0) {
            if (need_degrade_locked(s))
                pthread_cond_signal(&s->work_cv);
            return 0;
        }
        if (!s->seg) {
            if (!dram_evict_locked(s, bytes))
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
        /* Blocks already on disk can leave DRAM at once. Only the oldest
         * few are looked at: this runs under the lock at every wakeup of a
         * waiting put, and write-behind frees the rest. */
        uint32_t i = s->lru_tail, seen = 0;
        while (i != NIL && seen++ < 256 &&
               kvs_arena_largest_free(s->arena) < bytes) {
            struct entry *e = &s->ents[i];
            i = e->lru_prev;
            if ((e->flags & E_DISK) && !e->refs && !e->busy &&
                e->cls != KVS_CLASS_PINNED)
                dram_drop_locked(s, e);
        }
        if (kvs_arena_largest_free(s->arena) >= bytes)
            continue;
        pthread_cond_signal(&s->work_cv);
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

/* ---------------------------------------------------------------------- */
/* Writer: regions, appends, index records. All under wlock. */

static int promote_locked(kvs_store_t *s, struct entry *e, bool wait);

/* A block on disk only that must survive its region's reclaim. */
static bool worth_keeping(const struct entry *e, uint64_t now_ms)
{
    return !(e->flags & E_DRAM) &&
           (e->cls == KVS_CLASS_PINNED ||
            (e->cls == KVS_CLASS_USER && !expired(e, now_ms)));
}

/* Bytes of region r that a reclaim would have to write again. */
static uint64_t region_keep_bytes_locked(kvs_store_t *s, uint32_t r)
{
    uint64_t now = kvs_clock_real_ms(), bytes = 0;

    for (uint32_t i = s->regions[r].head; i != NIL; i = s->ents[i].rg_next) {
        const struct entry *e = &s->ents[i];
        if (((e->flags & E_DRAM) &&
             ((e->flags & E_DURABLE) || e->cls == KVS_CLASS_PINNED)) ||
            worth_keeping(e, now))
            bytes += e->loc.disk_len;
    }
    return bytes;
}

/*
 * The region to reclaim: the oldest sealed one (lowest generation) with no
 * block in use and no write in flight, among those where a reclaim frees
 * at least half of the region; failing that, the one that frees the most,
 * if it frees a tenth. NIL if there is none.
 */
static uint32_t region_victim_locked(kvs_store_t *s)
{
    uint32_t oldest = NIL, cheapest = NIL;
    uint64_t cheapest_keep = UINT64_MAX;

    for (uint32_t r = 0; r < s->nregions; r++) {
        struct region *rg = &s->regions[r];
        bool movable = rg->state == RG_SEALED && rg->pending == 0;
        for (uint32_t i = rg->head; movable && i != NIL;
             i = s->ents[i].rg_next)
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

/*
 * Reads the blocks of a victim region that are worth keeping (pinned, and
 * user blocks before their TTL) back into DRAM, from where they are
 * written again. Only DRAM that is free now is used: the writer cannot
 * wait for write-behind, which needs the writer. What does not fit stays
 * where it is, and keeps the region from being freed (pinned) or is
 * evicted (user).
 */
static void region_relocate_locked(kvs_store_t *s, uint32_t r)
{
    uint64_t now = kvs_clock_real_ms();
    uint32_t n = 0;

    for (uint32_t i = s->regions[r].head; i != NIL && n < s->njobs_max;
         i = s->ents[i].rg_next) {
        struct entry *e = &s->ents[i];
        if (worth_keeping(e, now)) {
            e->busy++;
            s->reloc[n++] = i;
        }
    }
    for (uint32_t k = 0; k < n; k++)
        promote_locked(s, &s->ents[s->reloc[k]], false);
    for (uint32_t k = 0; k < n; k++) {
        struct entry *e = &s->ents[s->reloc[k]];
        e->busy--;
        if ((e->flags & E_DEAD) && !e->busy)
            entry_free_locked(s, e);
    }
}

/* Opens the next free region for appends (on -ENOSPC from the segment).
 * Never reclaims: that is ensure_space_wlocked()'s job, between appends.
 * KVS_EFULL when no region is free. */
static int region_next_wlocked(kvs_store_t *s)
{
    for (;;) {
        uint32_t r, cur;
        uint64_t gen;
        int ret;

        pthread_mutex_lock(&s->lock);
        cur = kvs_segment_region_current(s->seg);
        if (cur != UINT32_MAX && s->regions[cur].state == RG_OPEN) {
            region_set_state(s, cur, RG_SEALED);
            region_maybe_free_locked(s, cur);
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
        region_set_state(s, r, RG_OPEN);
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
        region_set_state(s, r, RG_FREE);
        if (ret == -ENOSPC) {
            /* The file system is full: no region that has no space yet
             * will get any. Only reserved regions are usable from now on,
             * so the free count is true and reclaim starts. */
            uint32_t lost = 0;
            for (uint32_t k = 0; k < s->nregions; k++)
                if (s->regions[k].state == RG_FREE &&
                    !s->regions[k].reserved) {
                    region_set_state(s, k, RG_UNUSABLE);
                    lost++;
                }
            kvs_warn("store: the file system is full: %u regions of the "
                     "data file cannot be reserved and stay unused", lost);
        }
        pthread_mutex_unlock(&s->lock);
        if (ret != -ENOSPC)
            return ret;
    }
}

/* The index record of entry e with its disk copy at loc. */
static void rec_of(const struct entry *e, const kvs_seg_loc_t *loc,
                   uint8_t codec, uint64_t stored_len, kvs_index_rec_t *rec)
{
    *rec = (kvs_index_rec_t){
        .ns = e->ns, .key_len = e->key_len, .parent_len = e->parent_len,
        .codec = codec, .elem_size = e->elem_size, .cls = e->cls,
        .nparts = e->nparts, .region = loc->region,
        .disk_len = loc->disk_len, .disk_off = loc->off, .gen = loc->gen,
        .raw_len = e->raw_len, .stored_len = stored_len,
        .data_xxh = e->data_xxh, .expiry_ms = e->expiry_ms,
        .group = e->group, .uid = e->uid,
    };
    memcpy(rec->key, e->key, e->key_len);
    memcpy(rec->parent, e->parent, e->parent_len);
}

/*
 * The write pipeline. Blocks to write become jobs in s->pend (under wlock):
 * a job is appended into one of the segment's write buffers (APPENDED),
 * becomes DONE when that buffer's write completes (wbuf_done, called from
 * inside the segment), and is published by publish_done_wlocked(): its
 * index record is committed, the entry gets its disk location, and a
 * degraded block leaves DRAM. Nothing waits for a write unless it has to,
 * so the disk stays busy while the next blocks are copied.
 *
 * Job kinds: DEGRADE drops the DRAM copy once on disk; KEEP (a flush, or a
 * block moved out of a reclaimed region) keeps it; PUT is a durable put
 * whose caller holds the entry busy and publishes it itself.
 */
static void wbuf_done(void *arg, uint64_t buf, int res)
{
    kvs_store_t *s = arg;

    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        if (job->state != JOB_APPENDED || job->buf != buf)
            continue;
        job->state = JOB_DONE;
        if (res && !job->status)
            job->status = res;
        s->ndone++;
    }
}

/* Encodes the entry's block and appends it, opening (and reclaiming) a
 * region when the current one is full. */
static void append_one_wlocked(kvs_store_t *s, struct wjob *job)
{
    struct entry *e = &s->ents[job->e];
    const uint8_t *src = s->abase + e->dram_off;
    kvs_seg_block_t blk = {
        .ns = e->ns, .key_len = e->key_len, .key = e->key,
        .key_hash = e->hash, .elem_size = e->elem_size,
        .nparts = e->nparts, .part_lens = part_table(s, e),
        .raw_len = e->raw_len, .data_xxh = e->data_xxh,
    };
    kvs_iov_t payload = {src, e->raw_len};
    size_t out_len = 0;
    uint8_t codec = KVS_CODEC_RAW;

    /* The codec is slower than the disk here: while puts wait for DRAM,
     * blocks go out raw so that compression never limits the drain. */
    bool backlog = __atomic_load_n(&s->space_waiters, __ATOMIC_RELAXED) > 0;
    if (backlog && s->cfg.compress_level > 0) {
        pthread_mutex_lock(&s->lock);
        s->st.compress_skipped++;
        pthread_mutex_unlock(&s->lock);
    }
    if (s->cfg.compress_level > 0 && e->raw_len > 0 && !backlog &&
        kvs_codec_encode(s->wcodec, src, e->raw_len, e->elem_size,
                         s->cfg.compress_level,
                         s->cfg.compress_min_saving_pct, s->wscratch,
                         s->wscratch_len, &codec, &out_len) == 0 &&
        codec != KVS_CODEC_RAW)
        payload = (kvs_iov_t){s->wscratch, out_len};
    else
        codec = KVS_CODEC_RAW;
    blk.codec = codec;
    blk.stored_len = payload.len;
    job->codec = codec;
    job->stored_len = payload.len;
    /* Raw blocks are written from their DRAM image; compressed ones are
     * copied into the segment's write buffers. */
    uint8_t *image = codec == KVS_CODEC_RAW
                         ? s->abase + e->dram_off -
                               kvs_segment_hdr_bytes(e->nparts)
                         : NULL;
    uint64_t tag = image ? ++s->tag_seq : 0;
    for (;;) {
        if (image)
            job->status = kvs_segment_append_image(s->seg, &blk, image, tag,
                                                   &job->loc);
        else
            job->status = kvs_segment_append(s->seg, &blk, &payload, 1,
                                             &job->loc);
        if (job->status != -ENOSPC)
            break;
        job->status = region_next_wlocked(s);
        if (job->status)
            break;
    }
    if (job->status) {
        job->state = JOB_DONE;
        s->ndone++;
    } else {
        job->state = JOB_APPENDED;
        job->buf = image ? tag : kvs_segment_last_buf(s->seg);
        pthread_mutex_lock(&s->lock);
        s->regions[job->loc.region].pending++;
        job->state_appended = true;
        s->st.logical_bytes_degraded += e->raw_len;
        s->st.stored_bytes_degraded += payload.len;
        pthread_mutex_unlock(&s->lock);
    }
}

static int drain_wlocked(kvs_store_t *s, bool sync);

/* Queues the write of entry e (busy, in DRAM) without making room. */
static void queue_one_wlocked(kvs_store_t *s, uint32_t e, uint8_t kind,
                              int *result)
{
    if (s->npend == s->njobs_max)
        drain_wlocked(s, false);
    struct wjob *job = &s->pend[s->npend++];
    *job = (struct wjob){.e = e, .kind = kind, .result = result};
    append_one_wlocked(s, job);
}

/*
 * Keeps REGION_RESERVE regions free by reclaiming the oldest region whose
 * reclaim pays: blocks on disk only are evicted (records deleted in the
 * writer's batch), blocks also in DRAM lose their disk copy, and the ones
 * that must keep one (durable or pinned, and the pinned or user blocks
 * read back by region_relocate_locked) are written again into the open
 * region first. The victim is freed only after that write, its data and
 * index records, are synced: until then its old copies stay valid, so a
 * crash at any point loses no durable block.
 *
 * Called only between appends (never from inside one), with no job
 * pointer held, since it drains the pipeline.
 */
static void ensure_space_wlocked(kvs_store_t *s, bool force)
{
    uint32_t v, n = 0;

    pthread_mutex_lock(&s->lock);
    if ((!force && s->nfree_regions >= REGION_RESERVE) ||
        kvs_clock_mono_ns() < s->reclaim_retry_ns) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if ((v = region_victim_locked(s)) == NIL) {
        /* Choosing a victim walks every block on disk: when none pays,
         * do not walk them again at every append. */
        s->reclaim_retry_ns = kvs_clock_mono_ns() + 100000000ull;
        pthread_mutex_unlock(&s->lock);
        return;
    }
    region_set_state(s, v, RG_RECLAIMING);
    region_relocate_locked(s, v);
    for (uint32_t i = s->regions[v].head, next; i != NIL; i = next) {
        struct entry *e = &s->ents[i];
        next = e->rg_next;
        if (e->busy)
            continue; /* stays; the region is not freed this time */
        if (e->flags & E_DRAM) {
            if ((e->flags & E_DURABLE) || e->cls == KVS_CLASS_PINNED) {
                /* Moved: the old copy is dropped when the new one is
                 * published (finish_job_locked). */
                e->busy++;
                s->requeue[n++] = i;
            } else {
                region_remove(s, e);
                e->flags &= ~E_DISK;
                s->st.nvme_blocks--;
            }
            continue;
        }
        if (e->cls == KVS_CLASS_PINNED)
            continue; /* did not fit in DRAM: stays */
        kvs_index_batch_delete(s->batch, e->ns, e->key, e->key_len);
        entry_remove_locked(s, e);
        s->st.evicted++;
    }
    pthread_mutex_unlock(&s->lock);

    for (uint32_t k = 0; k < n; k++)
        queue_one_wlocked(s, s->requeue[k], JOB_KEEP, NULL);
    drain_wlocked(s, true);

    pthread_mutex_lock(&s->lock);
    struct region *rg = &s->regions[v];
    if (rg->nblocks == 0 && rg->pending == 0) {
        region_set_state(s, v, RG_FREE);
        s->st.regions_reclaimed++;
    } else {
        /* Something had to stay (a pinned block with no DRAM to move
         * through, a failed write): do not retry at every append. */
        region_set_state(s, v, RG_SEALED);
        s->reclaim_retry_ns = kvs_clock_mono_ns() + 100000000ull;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Queues the write of entry e (busy, in DRAM), making room first. */
static void queue_write_wlocked(kvs_store_t *s, uint32_t e, uint8_t kind,
                                int *result)
{
    ensure_space_wlocked(s, false);
    queue_one_wlocked(s, e, kind, result);
    struct wjob *job = &s->pend[s->npend - 1];
    if (job->status != KVS_EFULL)
        return;
    /* No region was free (the reserve was used up, or the file system
     * filled): take the job back, reclaim now, and try once more. */
    s->npend--;
    s->ndone--;
    s->reclaim_retry_ns = 0;
    ensure_space_wlocked(s, true);
    queue_one_wlocked(s, e, kind, result);
}

/* Applies a finished job to its entry. Dead entries that reached the disk
 * are collected so that their records can be deleted. */
static void finish_job_locked(kvs_store_t *s, struct wjob *job)
{
    struct entry *e = &s->ents[job->e];

    if (job->state_appended) {
        s->regions[job->loc.region].pending--;
        region_maybe_free_locked(s, job->loc.region);
    }
    if (job->status == 0) {
        if (e->flags & E_DISK) {
            region_remove(s, e);
            s->st.nvme_blocks--;
        }
        e->loc = job->loc;
        e->codec = job->codec;
        e->stored_len = job->stored_len;
        e->flags |= E_DISK;
        region_add(s, e);
        s->st.nvme_blocks++;
        s->st.bytes_written += job->loc.disk_len;
    }
    if (job->kind == JOB_PUT) {
        *job->result = job->status;
        return;
    }
    /* A flush that could not write a block ends with that error instead
     * of picking the block again forever. */
    if (job->kind == JOB_KEEP && job->status && !s->flush_job_err)
        s->flush_job_err = job->status;
    kvs_assert(e->busy > 0);
    e->busy--;
    if (job->kind == JOB_DEGRADE)
        s->degrade_pending -= e->dram_bytes;
    if (e->flags & E_DEAD) {
        if (e->busy == 0)
            s->dead[s->ndead++] = job->e;
        return;
    }
    if (job->kind == JOB_DEGRADE && job->status == 0) {
        s->st.degraded++;
        if ((e->flags & E_DRAM) && !e->refs && !e->busy &&
            e->cls != KVS_CLASS_PINNED)
            dram_drop_locked(s, e);
    }
}

/* Commits the records of finished jobs, publishes them and removes them
 * from the pending list. */
static int publish_done_wlocked(kvs_store_t *s, bool sync)
{
    int ret;
    uint32_t k = 0;

    if (s->ndone == 0)
        return 0;
    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        struct entry *e = &s->ents[job->e];
        if (job->state != JOB_DONE || job->status)
            continue;
        kvs_index_rec_t rec;
        rec_of(e, &job->loc, job->codec, job->stored_len, &rec);
        kvs_index_batch_put(s->batch, &rec);
    }
    ret = kvs_index_commit(s->index, s->batch, sync || s->cfg.sync_index);
    kvs_index_batch_clear(s->batch);

    pthread_mutex_lock(&s->lock);
    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        if (job->state != JOB_DONE) {
            s->pend[k++] = *job;
            continue;
        }
        if (ret && !job->status)
            job->status = ret;
        finish_job_locked(s, job);
    }
    s->npend = k;
    s->ndone = 0;
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->lock);

    for (uint32_t i = 0; i < s->ndead; i++) {
        struct entry *e = &s->ents[s->dead[i]];
        if (e->flags & E_DISK)
            kvs_index_block_delete_if(s->index, e->ns, e->key, e->key_len,
                                      e->uid);
        pthread_mutex_lock(&s->lock);
        if ((e->flags & E_DEAD) && e->busy == 0)
            entry_free_locked(s, e);
        pthread_mutex_unlock(&s->lock);
    }
    s->ndead = 0;
    return ret;
}

/* Writes out everything queued, waits for it, optionally syncs data and
 * index, and publishes. Returns the first error. */
static int drain_wlocked(kvs_store_t *s, bool sync)
{
    int ret = kvs_segment_flush(s->seg);

    if (ret == 0 && sync)
        ret = kvs_segment_sync(s->seg);
    if (ret) {
        /* The data of every block not yet published is in doubt. */
        for (uint32_t j = 0; j < s->npend; j++) {
            if (s->pend[j].state == JOB_APPENDED)
                s->ndone++;
            s->pend[j].state = JOB_DONE;
            if (!s->pend[j].status)
                s->pend[j].status = ret;
        }
    }
    int pret = publish_done_wlocked(s, sync);
    return ret ? ret : pret;
}

/* ---------------------------------------------------------------------- */
/* Background thread: degrade DRAM to disk, expire TTLs, serve flushes. */

#define DEGRADE_BATCH 256          /* blocks per background write */
#define DEGRADE_BYTES (16ull << 20) /* bytes picked at a time */

/*
 * Removes blocks past their TTL that nobody uses. Visits up to SWEEP_WINDOW
 * entries of the TTL list from its head, SWEEP_SLICE under the store's
 * lock at a time so that a MATCH or GET arriving meanwhile does not wait
 * for the window; an entry that stays goes to the tail, so successive
 * calls go round the list. Expired blocks are invisible from the moment
 * they expire; this only gives their space back.
 */
#define SWEEP_WINDOW 16384u
#define SWEEP_SLICE 256u
static void expire_sweep(kvs_store_t *s)
{
    uint64_t now = kvs_clock_real_ms();
    struct { uint32_t ns; uint8_t len; uint8_t key[KVS_KEY_MAX]; uint64_t uid; }
        gone[64];
    uint32_t budget = SWEEP_WINDOW;

    while (budget > 0) {
        uint32_t ngone = 0, k = 0;

        pthread_mutex_lock(&s->wlock);
        pthread_mutex_lock(&s->lock);
        if (budget > s->nttl)
            budget = s->nttl;
        for (; k < SWEEP_SLICE && k < budget &&
               ngone < KVS_ARRAY_SIZE(gone); k++) {
            struct entry *e = &s->ents[s->ttl_head];

            if (!expired(e, now) || e->refs || e->busy) {
                ttl_del(s, e);
                ttl_append(s, e);
                continue;
            }
            if (e->flags & E_DISK) {
                gone[ngone].ns = e->ns;
                gone[ngone].len = e->key_len;
                memcpy(gone[ngone].key, e->key, e->key_len);
                gone[ngone].uid = e->uid;
                ngone++;
            }
            entry_remove_locked(s, e); /* takes it off the list */
            s->st.expired++;
        }
        budget -= k;
        pthread_mutex_unlock(&s->lock);
        for (uint32_t i = 0; i < ngone; i++)
            kvs_index_block_delete_if(s->index, gone[i].ns, gone[i].key,
                                      gone[i].len, gone[i].uid);
        pthread_mutex_unlock(&s->wlock);
        if (k == 0)
            break;
    }
}

/* Picks up to max blocks to write: for a flush every DRAM-only block, else
 * the least recently used blocks that are not pinned. Blocks already on
 * disk leave DRAM without I/O. */
static uint32_t pick_degrade_locked(kvs_store_t *s, uint32_t *out,
                                    uint32_t max, bool flush)
{
    uint32_t n = 0;
    uint64_t bytes = 0, used = kvs_arena_used(s->arena);

    /* What is already on its way out counts as gone. */
    used = used > s->degrade_pending ? used - s->degrade_pending : 0;
    for (uint32_t i = s->lru_tail; i != NIL && n < max;) {
        struct entry *e = &s->ents[i];
        i = e->lru_prev;
        if (!flush && (used - bytes <= s->dram_low || bytes >= DEGRADE_BYTES))
            break;
        if (e->busy || !(e->flags & E_LINKED))
            continue;
        if (flush) {
            /* One pass: a block is written once per flush, even if a
             * reclaim takes its disk copy away again meanwhile (DRAM can
             * be larger than the disk). */
            if (!(e->flags & E_DISK) && e->flush_gen != s->flush_gen) {
                e->flush_gen = s->flush_gen;
                e->busy++;
                out[n++] = eidx(s, e);
            }
            continue;
        }
        if (e->refs || e->cls == KVS_CLASS_PINNED)
            continue;
        if (e->flags & E_DISK) {
            bytes += e->dram_bytes;
            dram_drop_locked(s, e);
            continue;
        }
        /* Flash admission: scratch blocks that were never hit again are
         * not worth a disk write; they leave the store. */
        if (e->cls == KVS_CLASS_SCRATCH &&
            e->hits < s->cfg.admit_scratch_hits) {
            bytes += e->dram_bytes;
            entry_remove_locked(s, e);
            s->st.admission_rejected++;
            s->st.evicted++;
            continue;
        }
        e->busy++;
        out[n++] = eidx(s, e);
        bytes += e->dram_bytes;
        s->degrade_pending += e->dram_bytes;
    }
    return n;
}

static void bg_wait_locked(kvs_store_t *s, long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->work_cv, &s->lock, &ts);
}

/*
 * The background thread: writes DRAM behind to disk between the
 * watermarks, serves flushes, and expires TTLs once a second. Writes are
 * queued without waiting; the thread only waits for the disk when DRAM
 * cannot drain otherwise, and it never sleeps with writes pending.
 */
static void *bg_main(void *arg)
{
    kvs_store_t *s = arg;
    uint32_t picked[DEGRADE_BATCH];
    uint64_t last_sweep = kvs_clock_mono_ns();
    int err_backoff = 0;

    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        /* TTLs are swept at most every 100 ms while the thread is busy,
         * and once a second when idle (its longest wait). */
        if (kvs_clock_mono_ns() - last_sweep > 100000000ull) {
            pthread_mutex_unlock(&s->lock);
            expire_sweep(s);
            last_sweep = kvs_clock_mono_ns();
            pthread_mutex_lock(&s->lock);
            continue;
        }
        bool flush = s->flush_done != s->flush_gen;
        uint32_t want = s->flush_gen;
        bool degrade = need_degrade_locked(s) && !err_backoff;
        uint32_t n = 0;

        if (flush || degrade)
            n = pick_degrade_locked(s, picked, DEGRADE_BATCH, flush);
        pthread_mutex_unlock(&s->lock);

        int ret = 0;
        if (s->seg) {
            pthread_mutex_lock(&s->wlock);
            for (uint32_t k = 0; k < n; k++) {
                queue_write_wlocked(s, picked[k],
                                    flush ? JOB_KEEP : JOB_DEGRADE, NULL);
                if (s->ndone)
                    publish_done_wlocked(s, false);
            }
            if (flush && n == 0) {
                /* Every DRAM-only block is queued: write out, sync data
                 * and index once, and the flush is done. */
                ret = drain_wlocked(s, true);
            } else if (n == 0 && s->npend) {
                /* Nothing more to queue: push out the partial buffer and
                 * wait for the disk, which is what frees DRAM now. */
                kvs_segment_submit(s->seg);
                kvs_segment_poll(s->seg, true);
                ret = publish_done_wlocked(s, false);
            } else {
                kvs_segment_poll(s->seg, false);
                ret = publish_done_wlocked(s, false);
            }
            pthread_mutex_unlock(&s->wlock);
        }

        pthread_mutex_lock(&s->lock);
        if (flush && !ret && s->flush_job_err)
            ret = s->flush_job_err;
        if (flush && !ret && n == 0) {
            /* Whatever this flush wrote but a reclaim took off the disk
             * again did not fit: the disk tier is smaller than DRAM. */
            for (uint32_t i = 0; i < s->nents && !ret; i++)
                if ((s->ents[i].flags & E_LINKED) &&
                    s->ents[i].flush_gen == want &&
                    !(s->ents[i].flags & E_DISK))
                    ret = KVS_EFULL;
        }
        if (flush)
            s->flush_job_err = 0;
        if (flush && (n == 0 || ret)) {
            s->flush_status = ret;
            s->flush_done = want;
            pthread_cond_broadcast(&s->space_cv);
        }
        if (ret && !flush) {
            /* A write error (disk full, EIO): back off a second; puts
             * waiting for space time out with KVS_EFULL meanwhile. */
            err_backoff = 1;
            pthread_cond_broadcast(&s->space_cv);
            bg_wait_locked(s, 1000);
            continue;
        }
        err_backoff = 0;
        if (n || flush || s->npend)
            continue;
        if (degrade) {
            /* Over the watermark but nothing can move (pinned or
             * referenced): let waiters see it, retry shortly. */
            pthread_cond_broadcast(&s->space_cv);
            bg_wait_locked(s, 50);
            continue;
        }
        bg_wait_locked(s, 1000);
    }
    pthread_mutex_unlock(&s->lock);
    if (s->seg) {
        pthread_mutex_lock(&s->wlock);
        drain_wlocked(s, false);
        pthread_mutex_unlock(&s->wlock);
    }
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Open and close */

void kvs_store_config_default(kvs_store_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->dir = "./var/kvstash";
    cfg->dram_bytes = 1ull << 30;
    cfg->nvme_bytes = 4ull << 30;
    cfg->region_bytes = 64u << 20;
    cfg->max_block_bytes = 16u << 20;
    cfg->max_blocks = 1u << 18;
    cfg->io_depth = 32;
    cfg->dram_high_pct = 90;
    cfg->dram_low_pct = 80;
    cfg->pinned_max_pct = 25;
    cfg->compress_level = 1;
    cfg->compress_min_saving_pct = 5;
    cfg->full_wait_ms = 2000;
    cfg->sync_index = false;
}

static int check_config(const kvs_store_config_t *c)
{
    const char *why = NULL;

    if (!c->dir || !*c->dir)
        why = "dir is empty";
    else if (c->dram_bytes < (4u << 20))
        why = "dram_bytes must be at least 4 MiB";
    else if (c->max_block_bytes == 0 || c->max_block_bytes > (1u << 30))
        why = "max_block_bytes must be 1 B .. 1 GiB";
    else if (c->max_block_bytes > c->dram_bytes / 2)
        why = "max_block_bytes must be at most half of dram_bytes";
    else if (c->max_blocks == 0 || c->max_blocks > (1u << 28))
        why = "max_blocks must be 1 .. 2^28";
    else if (c->io_depth == 0 || c->io_depth > 1024)
        why = "io_depth must be 1 .. 1024";
    else if (c->dram_low_pct > c->dram_high_pct || c->dram_high_pct > 100)
        why = "need dram_low_pct <= dram_high_pct <= 100";
    else if (c->pinned_max_pct > 100)
        why = "pinned_max_pct must be at most 100";
    else if (c->nvme_bytes &&
             (c->region_bytes < (1u << 20) || c->region_bytes % (1u << 20)))
        why = "region_bytes must be a multiple of 1 MiB";
    else if (c->nvme_bytes && c->nvme_bytes < 2ull * c->region_bytes)
        why = "nvme_bytes must hold at least two regions";
    else if (c->nvme_bytes &&
             kvs_segment_disk_len(KVS_KEY_MAX, KVS_PARTS_MAX,
                                  c->max_block_bytes) > c->region_bytes)
        why = "max_block_bytes (plus its header) must fit in one region";
    if (why) {
        kvs_error("store: bad configuration: %s", why);
        return KVS_ECONFIG;
    }
    return 0;
}

static void load_ns(void *arg, const char *name, size_t len, uint32_t id,
                    uint32_t elem_size)
{
    kvs_store_t *s = arg;

    if (id >= s->ns_cap) {
        kvs_warn("store: namespace id %u over the limit; ignored", id);
        return;
    }
    free(s->ns[id].name);
    s->ns[id].name = strndup(name, len);
    s->ns[id].elem_size = elem_size;
    if (id >= s->nns)
        s->nns = id + 1;
}

static void load_region(void *arg, uint32_t region, uint64_t gen)
{
    kvs_store_t *s = arg;

    if (region < s->nregions) {
        s->regions[region].gen = gen;
        if (gen > s->gen_seq)
            s->gen_seq = gen;
    }
}

struct load_ctx {
    kvs_store_t *s;
    uint64_t stale, dup, full;
    kvs_index_batch_t *drop;
};

static void load_rec(void *arg, const kvs_index_rec_t *r)
{
    struct load_ctx *c = arg;
    kvs_store_t *s = c->s;
    struct entry *e;
    uint64_t h;

    /* A record whose region was reused since it was written (or whose
     * location is out of range) describes data that is gone. */
    if (r->region >= s->nregions || r->gen != s->regions[r->region].gen ||
        r->disk_off / s->cfg.region_bytes != r->region ||
        r->raw_len > s->cfg.max_block_bytes || r->key_len == 0 ||
        r->ns >= s->nns || !s->ns[r->ns].name) {
        c->stale++;
        kvs_index_batch_delete(c->drop, r->ns, r->key, r->key_len);
        return;
    }
    h = key_hash(r->ns, r->key, r->key_len);
    if (lookup_locked(s, r->ns, r->key, r->key_len, h)) {
        c->dup++;
        return;
    }
    e = entry_alloc_locked(s);
    if (!e) {
        c->full++;
        return;
    }
    entry_set_key(e, r->ns, r->key, r->key_len, h);
    e->uid = r->uid;
    if (r->uid > s->uid_seq)
        s->uid_seq = r->uid;
    e->parent_len = r->parent_len;
    memcpy(e->parent, r->parent, r->parent_len);
    e->cls = r->cls;
    e->elem_size = r->elem_size;
    e->codec = r->codec;
    e->nparts = r->nparts;
    e->raw_len = r->raw_len;
    e->expiry_ms = r->expiry_ms;
    e->group = r->group;
    e->stored_len = r->stored_len;
    e->data_xxh = r->data_xxh;
    e->loc = (kvs_seg_loc_t){r->disk_off, r->gen, r->region, r->disk_len};
    e->flags |= E_DISK | E_DURABLE;
    hash_link(s, e);
    region_add(s, e);
    if (s->regions[r->region].state == RG_FREE)
        region_set_state(s, r->region, RG_SEALED);
    s->regions[r->region].reserved = true;
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes += e->raw_len;
    s->st.blocks++;
    s->st.nvme_blocks++;
}

static int open_index(kvs_store_t *s)
{
    char path[PATH_MAX];
    kvs_index_meta_t meta, want = {KVS_INDEX_FORMAT, s->cfg.region_bytes,
                                   s->nregions};
    struct load_ctx c = {.s = s};
    uint64_t bad = 0;
    int ret;

    snprintf(path, sizeof(path), "%s/index", s->dir);
    ret = kvs_index_open(path, &s->index);
    if (ret)
        return ret;
    ret = kvs_index_meta_get(s->index, &meta);
    if (ret == KVS_ENOTFOUND) {
        ret = kvs_index_meta_put(s->index, &want);
    } else if (ret == 0 && (meta.format != want.format ||
                            meta.region_bytes != want.region_bytes ||
                            meta.nregions != want.nregions)) {
        kvs_error("store: %s was made with region_bytes=%u and %u regions; "
                  "the configuration asks for %u and %u (format %u vs %u)",
                  s->dir, meta.region_bytes, meta.nregions, want.region_bytes,
                  want.nregions, meta.format, want.format);
        return KVS_ELAYOUT;
    }
    if (ret)
        return ret;
    ret = kvs_index_ns_load(s->index, load_ns, s);
    if (ret == 0)
        ret = kvs_index_region_load(s->index, load_region, s);
    if (ret)
        return ret;
    ret = kvs_index_batch_create(&c.drop);
    if (ret)
        return ret;
    ret = kvs_index_block_load(s->index, load_rec, &c, &bad);
    if (ret == 0)
        ret = kvs_index_commit(s->index, c.drop, true);
    kvs_index_batch_destroy(c.drop);
    if (ret)
        return ret;
    if (s->st.blocks || c.stale || bad || c.full)
        kvs_info("store: loaded %llu blocks from the index (%llu stale, "
                 "%llu malformed, %llu over max_blocks)",
                 (unsigned long long)s->st.blocks,
                 (unsigned long long)c.stale, (unsigned long long)bad,
                 (unsigned long long)c.full);
    return 0;
}

static int open_nvme(kvs_store_t *s)
{
    char path[PATH_MAX];
    kvs_segment_config_t sc;
    int ret;

    snprintf(path, sizeof(path), "%s/data.kvs", s->dir);
    sc = (kvs_segment_config_t){
        .path = path, .file_bytes = s->cfg.nvme_bytes,
        .region_bytes = s->cfg.region_bytes,
        .max_block_bytes = s->cfg.max_block_bytes,
        .io_depth = s->cfg.io_depth, .read_slots = s->cfg.io_depth,
        .write_buf_bytes = 8u << 20,
        .image_base = s->abase, .image_len = kvs_arena_size(s->arena),
    };
    /* Bounce slots for reads: io_depth of them, but not more than 256 MiB
     * of memory. */
    uint32_t per = kvs_segment_disk_len(KVS_KEY_MAX, KVS_PARTS_MAX,
                                        s->cfg.max_block_bytes);
    sc.read_slots = (uint32_t)KVS_MAX(1u, KVS_MIN(s->cfg.io_depth,
                                                  (256u << 20) / per));
    ret = kvs_segment_open(&sc, &s->seg);
    if (ret)
        return ret;
    kvs_segment_set_write_cb(s->seg, wbuf_done, s);
    s->tag_seq = 4;
    s->nregions = kvs_segment_nregions(s->seg);
    s->regions = calloc(s->nregions, sizeof(*s->regions));
    if (!s->regions)
        return -ENOMEM;
    for (uint32_t r = 0; r < s->nregions; r++)
        s->regions[r].head = NIL;
    s->nfree_regions = s->nregions;
    for (uint32_t r = 0; r < s->nregions; r++)
        s->regions[r].reserved = kvs_segment_preallocated(s->seg);
    s->wscratch_len = kvs_codec_bound(s->cfg.max_block_bytes, 4);
    s->wscratch = malloc(s->wscratch_len);
    /* Jobs in flight: every block that fits in the write buffers, one
     * batch being queued, and a region's worth moved by a reclaim. */
    s->njobs_max = 4 * (8u << 20) / KVS_SEG_ALIGN + DEGRADE_BATCH +
                   s->cfg.region_bytes / KVS_SEG_ALIGN;
    s->pend = calloc(s->njobs_max, sizeof(*s->pend));
    s->requeue = calloc(s->njobs_max, sizeof(*s->requeue));
    s->dead = calloc(s->njobs_max, sizeof(*s->dead));
    s->reloc = calloc(s->njobs_max, sizeof(*s->reloc));
    if (!s->wscratch || !s->pend || !s->requeue || !s->dead || !s->reloc)
        return -ENOMEM;
    ret = kvs_codec_create(&s->wcodec);
    if (ret == 0)
        ret = kvs_codec_create(&s->rcodec);
    if (ret == 0)
        ret = kvs_codec_reserve(s->wcodec, s->cfg.max_block_bytes);
    if (ret == 0)
        ret = kvs_codec_reserve(s->rcodec, s->cfg.max_block_bytes);
    if (ret == 0)
        ret = kvs_index_batch_create(&s->batch);
    return ret;
}

int kvs_store_open(const kvs_store_config_t *cfg, kvs_store_t **store_out)
{
    kvs_store_t *s;
    uint32_t nb;
    int ret;

    ret = check_config(cfg);
    if (ret)
        return ret;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->dir = strdup(cfg->dir);
    s->cfg.dir = s->dir;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    s->lru_head = s->lru_tail = NIL;
    s->ttl_head = s->ttl_tail = NIL;
    s->ns_cap = 1u << 16;
    s->ns = calloc(s->ns_cap, sizeof(*s->ns));
    /* The block table and the buckets are read at random by every lookup
     * (a MATCH of 128 keys spread over 200,000 blocks took 250 ns a key on
     * 4 KiB pages on the CI machine): 2 MiB pages. */
    s->nents = cfg->max_blocks;
    if (kvs_huge_map((size_t)s->nents * sizeof(*s->ents), &s->ents_mem) == 0)
        s->ents = s->ents_mem.base;
    for (nb = 1; nb < s->nents; nb <<= 1)
        ;
    s->bucket_mask = nb - 1;
    if (kvs_huge_map((size_t)nb * sizeof(uint32_t), &s->buckets_mem) == 0)
        s->buckets = s->buckets_mem.base;
    if (!s->dir || !s->ns || !s->ents || !s->buckets) {
        ret = -ENOMEM;
        goto err_close;
    }
    memset(s->buckets, 0xff, (size_t)nb * sizeof(uint32_t));
    s->free_head = NIL;
    for (uint32_t i = s->nents; i-- > 0;) {
        s->ents[i].hnext = s->free_head;
        s->free_head = i;
    }
    ret = kvs_fs_mkdir_p(s->dir);
    if (ret) {
        kvs_error("store: cannot create %s: %s", s->dir, strerror(-ret));
        goto err_close;
    }
    ret = kvs_arena_create(cfg->dram_bytes, &s->arena);
    if (ret) {
        kvs_error("store: cannot map a DRAM arena of %llu bytes",
                  (unsigned long long)cfg->dram_bytes);
        goto err_close;
    }
    s->abase = kvs_arena_base(s->arena);
    if (cfg->admit_ghost_factor) {
        ret = kvs_ghost_create(
            (uint32_t)KVS_MIN((uint64_t)cfg->admit_ghost_factor *
                                  cfg->max_blocks, 1ull << 28),
            &s->ghost);
        if (ret)
            goto err_close;
    }
    s->dram_high = kvs_arena_size(s->arena) / 100 * cfg->dram_high_pct;
    s->dram_low = kvs_arena_size(s->arena) / 100 * cfg->dram_low_pct;
    if (cfg->nvme_bytes) {
        ret = open_nvme(s);
        if (ret)
            goto err_close;
    }
    ret = open_index(s);
    if (ret)
        goto err_close;
    ret = pthread_create(&s->bg, NULL, bg_main, s);
    if (ret) {
        ret = -ret;
        goto err_close;
    }
    s->bg_started = true;
    *store_out = s;
    return 0;

err_close:
    kvs_store_close(s);
    return ret;
}

void kvs_store_close(kvs_store_t *s)
{
    if (!s)
        return;
    if (s->bg_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->work_cv);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->bg, NULL);
    }
    kvs_segment_close(s->seg);
    kvs_index_batch_destroy(s->batch);
    kvs_index_close(s->index);
    kvs_codec_destroy(s->wcodec);
    kvs_codec_destroy(s->rcodec);
    kvs_arena_destroy(s->arena);
    kvs_ghost_destroy(s->ghost);
    if (s->ns)
        for (uint32_t i = 0; i < s->nns; i++)
            free(s->ns[i].name);
    free(s->ns);
    free(s->pend);
    free(s->requeue);
    free(s->dead);
    free(s->reloc);
    free(s->wscratch);
    free(s->regions);
    kvs_huge_unmap(&s->buckets_mem);
    kvs_huge_unmap(&s->ents_mem);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->rlock);
    free(s->dir);
    free(s);
}

int kvs_store_ns_open(kvs_store_t *s, const char *name, uint32_t elem_size,
                      uint32_t *ns_out)
{
    size_t len = name ? strlen(name) : 0;
    uint32_t id;
    int ret;

    if (len == 0 || len > KVS_NS_NAME_MAX || elem_size > 8)
        return -EINVAL;
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    for (id = 0; id < s->nns; id++)
        if (s->ns[id].name && strcmp(s->ns[id].name, name) == 0)
            break;
    if (id < s->nns) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        *ns_out = id;
        return 0;
    }
    if (s->nns == s->ns_cap) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        return KVS_EFULL;
    }
    id = s->nns;
    pthread_mutex_unlock(&s->lock);
    ret = kvs_index_ns_put(s->index, name, len, id, elem_size);
    if (ret == 0) {
        char *copy = strdup(name);
        pthread_mutex_lock(&s->lock);
        if (!copy) {
            ret = -ENOMEM;
        } else {
            s->ns[id] = (struct ns_rec){copy, elem_size};
            s->nns = id + 1;
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->wlock);
    if (ret == 0)
        *ns_out = id;
    return ret;
}

static bool ns_valid_locked(const kvs_store_t *s, uint32_t ns)
{
    return ns < s->nns && s->ns[ns].name;
}

/* ---------------------------------------------------------------------- */
/* Put */

static int check_put(const kvs_store_t *s, const kvs_put_args_t *a,
                     bool need_data, uint64_t *total_out)
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
    *total_out = total;
    return 0;
}

/*
 * Store admission for scratch puts (admit_ghost_factor): most blocks of a
 * prompt are never asked for again, and keeping them pushes out blocks
 * that are. A block is admitted when its key was put before and declined
 * recently (it is in the ghost list), or when it replaces a present block;
 * never when its parent is absent, since without the parent a match can
 * never reach it. A declined key is remembered.
 */
static bool admit_locked(kvs_store_t *s, const kvs_put_args_t *a)
{
    uint64_t h = key_hash(a->ns, a->key, a->key_len);

    if (lookup_locked(s, a->ns, a->key, a->key_len, h))
        return true;
    if ((a->parent_len &&
         !find_locked(s, a->ns, a->parent, a->parent_len)) ||
        !kvs_ghost_contains(s->ghost, h)) {
        kvs_ghost_add(s->ghost, h);
        return false;
    }
    kvs_ghost_remove(s->ghost, h);
    return true;
}

/* Replaces or inserts e (busy, filled) under its key; returns 0 or
 * KVS_EBUSY if the old block is referenced. *old_uid_out is set when an old
 * block's index record must be deleted (the new block has none yet). */
static int publish_locked(kvs_store_t *s, struct entry *e, bool *del_old,
                          uint64_t *old_uid)
{
    struct entry *old = lookup_locked(s, e->ns, e->key, e->key_len, e->hash);

    *del_old = false;
    if (old) {
        if (old->refs)
            return KVS_EBUSY;
        if ((old->flags & E_DISK) && !(e->flags & E_DISK)) {
            *del_old = true;
            *old_uid = old->uid;
        }
        entry_remove_locked(s, old);
    }
    hash_link(s, e);
    struct entry *parent =
        e->parent_len ? lookup_locked(s, e->ns, e->parent, e->parent_len,
                                      key_hash(e->ns, e->parent,
                                               e->parent_len))
                      : NULL;
    if (parent && (parent->flags & E_INLRU))
        lru_insert_after(s, e, parent);
    else
        lru_push(s, e);
    s->st.blocks++;
    s->st.dram_blocks++;
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
static int reserve_locked(kvs_store_t *s, const kvs_put_args_t *a,
                          uint64_t total, struct entry **e_out)
{
    uint64_t bytes = dram_bytes_for(total, a->nparts), off;
    struct entry *e;
    int ret;

    if (!ns_valid_locked(s, a->ns))
        return KVS_ENOTFOUND;
    if (a->cls == KVS_CLASS_PINNED &&
        s->pinned_bytes + total >
            (kvs_arena_size(s->arena) / 100) * s->cfg.pinned_max_pct)
        return KVS_EPINNED_FULL;
    if (s->ghost && a->cls == KVS_CLASS_SCRATCH && !admit_locked(s, a)) {
        s->st.admission_rejected++;
        return 1;
    }
    e = entry_alloc_locked(s);
    if (!e && evict_one_locked(s))
        e = entry_alloc_locked(s);
    ret = e ? dram_alloc_locked(s, bytes, &off) : KVS_EFULL;
    if (ret) {
        if (e) {
            e->flags = 0;
            e->hnext = s->free_head;
            s->free_head = eidx(s, e);
        }
        s->st.full_errors++;
        return ret;
    }
    entry_set_key(e, a->ns, a->key, a->key_len,
                  key_hash(a->ns, a->key, a->key_len));
    e->dram_off = off + kvs_segment_hdr_bytes(a->nparts);
    e->dram_bytes = bytes;
    e->flags |= E_DRAM;
    e->busy = 1;
    e->nparts = a->nparts;
    e->raw_len = total;
    e->cls = a->cls;
    e->elem_size = a->elem_size ? a->elem_size
                                : (uint8_t)s->ns[a->ns].elem_size;
    e->group = a->group;
    e->expiry_ms = a->ttl_ms ? kvs_clock_real_ms() + a->ttl_ms : 0;
    e->parent_len = (uint8_t)a->parent_len;
    if (a->parent_len)
        memcpy(e->parent, a->parent, a->parent_len);
    if (a->flags & (KVS_PUT_DURABLE | KVS_PUT_NO_DRAM))
        e->flags |= E_DURABLE;
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes += total;
    uint32_t *pl = part_table(s, e);
    for (uint32_t p = 0; p < a->nparts; p++)
        pl[p] = (uint32_t)a->parts[p].len;
    *e_out = e;
    return 0;
}

/* Checksums a filled block and clears what follows it. */
static void seal_bytes(kvs_store_t *s, struct entry *e)
{
    e->data_xxh = XXH3_64bits(s->abase + e->dram_off, e->raw_len);
    dram_zero_tail(s->abase + e->dram_off, e->raw_len, e->nparts);
}

/*
 * Makes filled entries visible: durable ones are written first (one flush
 * and one synced index commit for all of them), then each replaces any
 * block of the same key. status[k] is 0 on entry, and the result after.
 */
static void commit_entries(kvs_store_t *s, const kvs_put_args_t *const *args,
                           const uint32_t *ents, uint32_t n, int *status)
{
    bool any_durable = false;

    for (uint32_t k = 0; k < n && s->seg; k++)
        any_durable |= (s->ents[ents[k]].flags & E_DURABLE) != 0;
    if (any_durable) {
        pthread_mutex_lock(&s->wlock);
        for (uint32_t k = 0; k < n; k++)
            if (s->ents[ents[k]].flags & E_DURABLE)
                queue_write_wlocked(s, ents[k], JOB_PUT, &status[k]);
        drain_wlocked(s, true);
        pthread_mutex_unlock(&s->wlock);
    }
    for (uint32_t k = 0; k < n; k++) {
        const kvs_put_args_t *a = args[k];
        struct entry *e = &s->ents[ents[k]];
        bool del_old = false, del_own = false;
        uint64_t old_uid = 0, own_uid = e->uid;
        int ret = status[k];

        pthread_mutex_lock(&s->lock);
        if (ret == 0)
            ret = publish_locked(s, e, &del_old, &old_uid);
        if (ret) {
            /* Not published: a record written for it must go. */
            del_own = e->flags & E_DISK;
            e->busy = 0;
            entry_free_locked(s, e);
        } else {
            e->busy--;
            s->st.puts++;
            if ((a->flags & KVS_PUT_NO_DRAM) && (e->flags & E_DISK) &&
                !e->refs && !e->busy)
                dram_drop_locked(s, e);
        }
        pthread_mutex_unlock(&s->lock);
        if (del_old || del_own) {
            pthread_mutex_lock(&s->wlock);
            kvs_index_block_delete_if(s->index, a->ns, a->key, a->key_len,
                                      del_own ? own_uid : old_uid);
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

    for (size_t done = 0; done < n;) {
        size_t chunk = KVS_MIN(n - done, (size_t)PUT_CHUNK);
        uint32_t nd = 0;

        /* Room in DRAM and an entry for each block, then the copy with
         * the lock released. */
        for (size_t i = done; i < done + chunk; i++) {
            const kvs_put_args_t *a = &args[i];
            uint64_t total;
            struct entry *e = NULL;
            int ret = check_put(s, a, true, &total);

            if (ret == 0) {
                pthread_mutex_lock(&s->lock);
                ret = reserve_locked(s, a, total, &e);
                pthread_mutex_unlock(&s->lock);
            }
            status_out[i] = ret == 1 ? 0 : ret; /* 1: declined */
            if (ret)
                continue;
            uint8_t *dst = s->abase + e->dram_off;
            for (uint32_t p = 0; p < a->nparts; p++) {
                if (a->parts[p].len)
                    memcpy(dst, a->parts[p].base, a->parts[p].len);
                dst += a->parts[p].len;
            }
            seal_bytes(s, e);
            cargs[nd] = a;
            pos[nd] = i;
            wstat[nd] = 0;
            ents[nd++] = eidx(s, e);
        }
        commit_entries(s, cargs, ents, nd, wstat);
        for (uint32_t k = 0; k < nd; k++)
            status_out[pos[k]] = wstat[k];
        for (size_t i = done; i < done + chunk; i++)
            if (status_out[i] && !first)
                first = status_out[i];
        done += chunk;
    }
    return first;
}

/* ---------------------------------------------------------------------- */
/* Streaming puts: a block whose parts arrive one at a time */

int kvs_store_put_begin(kvs_store_t *s, const kvs_put_args_t *a,
                        kvs_put_stream_t *ps)
{
    uint64_t total;
    struct entry *e = NULL;
    int ret = check_put(s, a, false, &total);

    if (ret)
        return ret;
    pthread_mutex_lock(&s->lock);
    ret = reserve_locked(s, a, total, &e);
    pthread_mutex_unlock(&s->lock);
    if (ret == 1)
        return KVS_EBUSY; /* declined by admission: nothing to stream into */
    if (ret)
        return ret;
    memset(ps, 0, sizeof(*ps));
    ps->ref = e;
    ps->nparts = a->nparts;
    ps->flags = a->flags;
    ps->ns = a->ns;
    return 0;
}

void *kvs_store_put_part_buf(kvs_store_t *s, kvs_put_stream_t *ps,
                             uint32_t part, size_t *len_out)
{
    struct entry *e = ps->ref;
    const uint32_t *pl;
    uint64_t off = 0;

    if (!e || part >= ps->nparts)
        return NULL;
    pl = part_table(s, e);
    for (uint32_t p = 0; p < part; p++)
        off += pl[p];
    *len_out = pl[part];
    return s->abase + e->dram_off + off;
}

int kvs_store_put_part(kvs_store_t *s, kvs_put_stream_t *ps, uint32_t part,
                       const void *data, size_t len)
{
    size_t want;
    void *dst = kvs_store_put_part_buf(s, ps, part, &want);

    if (!dst)
        return -EINVAL;
    if (len != want)
        return KVS_EPROTO;
    if (len)
        memcpy(dst, data, len);
    return kvs_store_put_part_done(s, ps, part);
}

int kvs_store_put_part_done(kvs_store_t *s, kvs_put_stream_t *ps,
                            uint32_t part)
{
    (void)s;
    if (!ps->ref || part >= ps->nparts)
        return -EINVAL;
    uint64_t bit = 1ull << (part % 64);
    if (!(ps->done[part / 64] & bit)) {
        ps->done[part / 64] |= bit;
        ps->ndone++;
    }
    return 0;
}

int kvs_store_put_seal(kvs_store_t *s, kvs_put_stream_t *ps)
{
    struct entry *e = ps->ref;
    int status = 0;

    if (!e)
        return -EINVAL;
    if (ps->ndone != ps->nparts)
        return KVS_EINCOMPLETE;
    /* What commit_entries reads of the put: its flags and key. */
    kvs_put_args_t a = {.ns = ps->ns, .key = e->key, .key_len = e->key_len,
                        .flags = ps->flags};
    const kvs_put_args_t *ap = &a;
    uint32_t idx = eidx(s, e);

    seal_bytes(s, e);
    ps->ref = NULL;
    commit_entries(s, &ap, &idx, 1, &status);
    return status;
}

void kvs_store_put_abort(kvs_store_t *s, kvs_put_stream_t *ps)
{
    struct entry *e = ps->ref;

    if (!e)
        return;
    pthread_mutex_lock(&s->lock);
    e->busy = 0;
    entry_free_locked(s, e);
    pthread_mutex_unlock(&s->lock);
    ps->ref = NULL;
}

/* ---------------------------------------------------------------------- */
/* Get */

/* A disk read in progress. */
struct rd {
    const kvs_get_args_t *a;
    kvs_block_info_t info;
    kvs_seg_loc_t loc;
    uint64_t raw_len, stored_len, data_xxh;
    uint32_t nparts;
    uint8_t codec, elem_size;
    uint32_t ns;
    uint64_t hash;
    unsigned slot;
    int status;
};

static void fill_info(kvs_block_info_t *info, const struct entry *e)
{
    info->data_len = e->raw_len;
    info->nparts = e->nparts;
    info->cls = e->cls;
    info->tier = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
    info->expiry_ms = e->expiry_ms;
    info->group = e->group;
}

/*
 * Checks a block read from disk and decodes it into dst (raw_len bytes) and
 * part_lens. Nothing in the read buffer is trusted: the header must match
 * the location and the entry, and the decoded bytes their checksum.
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
    if (blk.ns != r->ns || blk.key_hash != r->hash ||
        blk.key_len != key_len || memcmp(blk.key, key, key_len) != 0 ||
        blk.raw_len != r->raw_len || blk.stored_len != r->stored_len ||
        blk.data_xxh != r->data_xxh || blk.codec != r->codec ||
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

static void rd_done(void *arg, uint64_t user_data, int res)
{
    struct rd *rds = arg;

    if (res < 0)
        rds[user_data].status = res;
    else
        rds[user_data].status = 0;
}

/* Drops an entry's disk copy after it failed verification. Returns true
 * (and the entry's uid in *uid_out, if not NULL) when the copy at loc was
 * the entry's, false if it had moved or been reclaimed meanwhile. */
static bool corrupt_locked(kvs_store_t *s, uint32_t ns, const void *key,
                           uint32_t len, const kvs_seg_loc_t *loc,
                           uint64_t *uid_out)
{
    struct entry *e = lookup_locked(s, ns, key, len, key_hash(ns, key, len));

    s->st.corrupt_reads++;
    if (!e || !(e->flags & E_DISK) || e->loc.off != loc->off ||
        e->loc.gen != loc->gen)
        return false; /* moved or reclaimed meanwhile */
    kvs_warn("store: block at offset %llu failed verification; dropped "
             "(codec %u, %llu of %llu bytes stored, %u on disk)",
             (unsigned long long)loc->off, e->codec,
             (unsigned long long)e->stored_len,
             (unsigned long long)e->raw_len, loc->disk_len);
    if (uid_out)
        *uid_out = e->uid;
    region_remove(s, e);
    e->flags &= ~E_DISK;
    s->st.nvme_blocks--;
    if (!(e->flags & E_DRAM) && !e->busy)
        entry_remove_locked(s, e);
    return true;
}

int kvs_store_get_batch(kvs_store_t *s, const kvs_get_args_t *args, size_t n,
                        kvs_block_info_t *infos_out, int *status_out)
{
    struct rd rds[64];
    size_t nrd = 0;
    int first = 0;

    for (size_t done = 0; done < n;) {
        size_t chunk = KVS_MIN(n - done, KVS_ARRAY_SIZE(rds));
        nrd = 0;

        /* DRAM hits are copied now; disk reads are collected. */
        for (size_t i = done; i < done + chunk; i++) {
            const kvs_get_args_t *a = &args[i];
            kvs_block_info_t info;
            struct entry *e;

            status_out[i] = 0;
            if (!a->key || a->key_len == 0 || a->key_len > KVS_KEY_MAX) {
                status_out[i] = -EINVAL;
                continue;
            }
            pthread_mutex_lock(&s->lock);
            s->st.gets++;
            e = ns_valid_locked(s, a->ns)
                    ? find_locked(s, a->ns, a->key, a->key_len) : NULL;
            if (!e) {
                s->st.misses++;
                pthread_mutex_unlock(&s->lock);
                status_out[i] = KVS_ENOTFOUND;
                continue;
            }
            fill_info(&info, e);
            if (infos_out)
                infos_out[i] = info;
            if (a->cap < e->raw_len ||
                (a->part_lens && a->part_cap < e->nparts)) {
                pthread_mutex_unlock(&s->lock);
                status_out[i] = -ENOBUFS;
                continue;
            }
            if (e->flags & E_DRAM) {
                e->busy++;
                touch_locked(s, e);
                s->st.hits++;
                s->st.dram_hits++;
                pthread_mutex_unlock(&s->lock);
                memcpy(a->buf, s->abase + e->dram_off, e->raw_len);
                if (a->part_lens)
                    memcpy(a->part_lens, part_table(s, e),
                           sizeof(uint32_t) * e->nparts);
                pthread_mutex_lock(&s->lock);
                e->busy--;
                if ((e->flags & E_DEAD) && !e->busy)
                    entry_free_locked(s, e);
                pthread_mutex_unlock(&s->lock);
                continue;
            }
            struct rd *r = &rds[nrd++];
            *r = (struct rd){
                .a = a, .info = info, .loc = e->loc, .raw_len = e->raw_len,
                .stored_len = e->stored_len, .data_xxh = e->data_xxh,
                .nparts = e->nparts, .codec = e->codec,
                .elem_size = e->elem_size, .ns = e->ns, .hash = e->hash,
                .status = 1,
            };
            status_out[i] = 1;
            pthread_mutex_unlock(&s->lock);
        }

        /* Disk reads, up to the number of bounce slots in flight. */
        if (nrd) {
            pthread_mutex_lock(&s->rlock);
            unsigned nslots = kvs_segment_read_slots(s->seg);
            unsigned free_slots[256], nfree = 0;
            size_t next = 0, finished = 0;
            for (unsigned k = 0; k < nslots && k < 256; k++)
                free_slots[nfree++] = k;
            while (finished < nrd) {
                while (next < nrd && nfree) {
                    struct rd *r = &rds[next];
                    r->slot = free_slots[--nfree];
                    int ret = kvs_segment_read_submit(s->seg, &r->loc,
                                                      r->slot, next);
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
                    if (r->status == 1 || r->slot == UINT32_MAX - 1 ||
                        k >= next)
                        continue;
                    if (r->status == 0 && r->slot != UINT32_MAX) {
                        r->status = verify_decode_rlocked(
                            s, r, kvs_segment_slot(s->seg, r->slot),
                            r->a->key, r->a->key_len, r->a->buf,
                            r->a->part_lens, r->a->part_cap);
                    }
                    if (r->slot != UINT32_MAX)
                        free_slots[nfree++] = r->slot;
                    r->slot = UINT32_MAX - 1; /* done */
                    finished++;
                }
                if (finished < nrd && kvs_segment_read_inflight(s->seg)) {
                    int ret = kvs_segment_read_reap(s->seg, 1, rd_done, rds);
                    if (ret < 0) {
                        kvs_error("store: read completion: %s",
                                  strerror(-ret));
                        break;
                    }
                }
            }
            pthread_mutex_unlock(&s->rlock);
            pthread_mutex_lock(&s->lock);
            for (size_t k = 0; k < nrd; k++) {
                struct rd *r = &rds[k];
                size_t i = (size_t)(r->a - args);
                if (r->status == 0) {
                    struct entry *e = lookup_locked(s, r->ns, r->a->key,
                                                    r->a->key_len, r->hash);
                    if (e)
                        touch_locked(s, e);
                    s->st.hits++;
                    s->st.nvme_hits++;
                    s->st.bytes_read += r->loc.disk_len;
                    status_out[i] = 0;
                    continue;
                }
                s->st.misses++;
                if (r->status == KVS_ECORRUPT || r->status == -EIO)
                    corrupt_locked(s, r->ns, r->a->key, r->a->key_len,
                                   &r->loc, NULL);
                status_out[i] = KVS_ENOTFOUND;
            }
            pthread_mutex_unlock(&s->lock);
        }
        done += chunk;
    }
    for (size_t i = 0; i < n; i++)
        if (status_out[i] && !first)
            first = status_out[i];
    return first;
}

int kvs_store_get(kvs_store_t *s, const kvs_get_args_t *a,
                  kvs_block_info_t *info_out)
{
    kvs_block_info_t info;
    int status;

    kvs_store_get_batch(s, a, 1, &info, &status);
    if (status == 0 || status == -ENOBUFS) {
        if (info_out)
            *info_out = info;
    }
    return status;
}

/* ---------------------------------------------------------------------- */
/* Pin, promote */

/*
 * Brings a disk-only block into DRAM. Called with lock held on a visible
 * entry; returns with lock held. The entry stays visible (its disk copy
 * serves other readers) while the bytes are read.
 */
static int promote_locked(kvs_store_t *s, struct entry *e, bool wait)
{
    uint64_t bytes = dram_bytes_for(e->raw_len, e->nparts), off;
    struct rd r = {
        .loc = e->loc, .raw_len = e->raw_len, .stored_len = e->stored_len,
        .data_xxh = e->data_xxh, .nparts = e->nparts, .codec = e->codec,
        .elem_size = e->elem_size, .ns = e->ns, .hash = e->hash,
    };
    uint8_t key[KVS_KEY_MAX];
    uint32_t key_len = e->key_len;
    int ret;

    if (e->flags & E_DRAM)
        return 0;
    if (!s->seg)
        return KVS_ENOTFOUND;
    if (wait)
        ret = dram_alloc_locked(s, bytes, &off);
    else
        ret = kvs_arena_alloc(s->arena, bytes, &off) ? KVS_EFULL : 0;
    if (ret)
        return ret;
    if (e->flags & (E_DRAM | E_DEAD) || !(e->flags & E_DISK)) {
        /* Changed while we waited for space. */
        kvs_arena_free(s->arena, off, bytes);
        return (e->flags & E_DRAM) ? 0 : KVS_ENOTFOUND;
    }
    uint64_t data_off = off + kvs_segment_hdr_bytes(e->nparts);
    e->busy++;
    memcpy(key, e->key, key_len);
    pthread_mutex_unlock(&s->lock);

    pthread_mutex_lock(&s->rlock);
    r.slot = 0;
    r.status = 1;
    ret = kvs_segment_read_submit(s->seg, &r.loc, 0, 0);
    if (ret == 0) {
        ret = kvs_segment_read_reap(s->seg, 1, rd_done, &r);
        ret = ret < 0 ? ret : r.status;
    }
    if (ret == 0) {
        uint32_t *pl = (uint32_t *)(void *)(s->abase + data_off +
                                            KVS_ALIGN_UP(r.raw_len, 8ull));
        ret = verify_decode_rlocked(s, &r, kvs_segment_slot(s->seg, 0), key,
                                    key_len, s->abase + data_off, pl,
                                    r.nparts);
        if (ret == 0)
            dram_zero_tail(s->abase + data_off, r.raw_len, r.nparts);
    }
    pthread_mutex_unlock(&s->rlock);

    pthread_mutex_lock(&s->lock);
    e->busy--;
    if (ret == 0 && !(e->flags & E_DEAD) && !(e->flags & E_DRAM)) {
        e->dram_off = data_off;
        e->dram_bytes = bytes;
        e->flags |= E_DRAM;
        lru_push(s, e);
        s->st.dram_blocks++;
        s->st.promoted++;
        s->st.bytes_read += r.loc.disk_len;
        return 0;
    }
    kvs_arena_free(s->arena, off, bytes);
    pthread_cond_broadcast(&s->space_cv);
    if ((e->flags & E_DEAD) && !e->busy) {
        entry_free_locked(s, e);
        return KVS_ENOTFOUND;
    }
    if (ret == KVS_ECORRUPT || ret == -EIO) {
        corrupt_locked(s, r.ns, key, key_len, &r.loc, NULL);
        return KVS_ENOTFOUND;
    }
    return ret;
}

int kvs_store_pin(kvs_store_t *s, uint32_t ns, const void *key,
                  uint32_t key_len, kvs_view_t *view_out)
{
    struct entry *e;
    int ret;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? find_locked(s, ns, key, key_len) : NULL;
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return KVS_ENOTFOUND;
    }
    ret = promote_locked(s, e, true);
    if (ret == 0 && !(e->flags & E_LINKED))
        ret = KVS_ENOTFOUND;
    if (ret == 0) {
        e->refs++;
        s->st.refs++;
        touch_locked(s, e);
        if (view_out) {
            view_out->data = s->abase + e->dram_off;
            view_out->len = e->raw_len;
            view_out->nparts = e->nparts;
            view_out->part_lens = part_table(s, e);
            view_out->arena_off = e->dram_off;
            view_out->ref = e;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static void unref_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(e->refs > 0);
    e->refs--;
    s->st.refs--;
    if (need_degrade_locked(s))
        pthread_cond_signal(&s->work_cv);
}

void kvs_store_unpin_view(kvs_store_t *s, kvs_view_t *view)
{
    if (!view || !view->ref)
        return;
    pthread_mutex_lock(&s->lock);
    unref_locked(s, view->ref);
    pthread_mutex_unlock(&s->lock);
    view->ref = NULL;
}

int kvs_store_unpin(kvs_store_t *s, uint32_t ns, const void *key,
                    uint32_t key_len)
{
    struct entry *e;
    int ret = KVS_ENOTFOUND;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    /* An expired block can still be unpinned. */
    e = lookup_locked(s, ns, key, key_len, key_hash(ns, key, key_len));
    if (e && e->refs) {
        unref_locked(s, e);
        ret = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int kvs_store_promote(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                      size_t n, size_t *promoted_out)
{
    size_t promoted = 0;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        struct entry *e;
        if (!keys[i].data || keys[i].len == 0 || keys[i].len > KVS_KEY_MAX)
            continue;
        e = ns_valid_locked(s, ns)
                ? find_locked(s, ns, keys[i].data, keys[i].len) : NULL;
        if (!e || (e->flags & E_DRAM))
            continue;
        /* Stop at the DRAM budget rather than push out other blocks. */
        uint64_t bytes = dram_bytes_for(e->raw_len, e->nparts);
        if (kvs_arena_used(s->arena) + bytes > s->dram_high ||
            kvs_arena_largest_free(s->arena) < bytes) {
            ret = KVS_EFULL;
            break;
        }
        if (promote_locked(s, e, true) == 0)
            promoted++;
    }
    pthread_mutex_unlock(&s->lock);
    if (promoted_out)
        *promoted_out = promoted;
    return ret;
}

/* ---------------------------------------------------------------------- */
/* Lookups */

int kvs_store_exists(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                     size_t n, uint8_t *present_out)
{
    pthread_mutex_lock(&s->lock);
    bool nsok = ns_valid_locked(s, ns);
    uint64_t now = kvs_clock_real_ms();
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = NULL;
        if (nsok && keys[i].data && keys[i].len >= 1 &&
            keys[i].len <= KVS_KEY_MAX)
            e = lookup_locked(s, ns, keys[i].data, keys[i].len,
                              key_hash(ns, keys[i].data, keys[i].len));
        present_out[i] = e && !expired(e, now);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int kvs_store_match(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                    size_t n, uint32_t flags, uint8_t *tiers_out,
                    size_t *matched_out)
{
    /* Hashes are computed and bucket heads prefetched a window ahead, so
     * the cache misses of a long prompt overlap instead of queueing; the
     * entries found are remembered for the touch pass (up to MATCH_WIN
     * of them; past that the pass looks them up again). */
    enum { MATCH_WIN = 256, AHEAD = 8 };
    struct entry *found[MATCH_WIN];
    uint64_t hashes[MATCH_WIN];
    uint64_t now = kvs_clock_real_ms();
    size_t m = 0;

    for (size_t i = 0; i < n && i < MATCH_WIN; i++)
        hashes[i] = keys[i].data && keys[i].len >= 1 &&
                            keys[i].len <= KVS_KEY_MAX
                        ? key_hash(ns, keys[i].data, keys[i].len) : 0;
    pthread_mutex_lock(&s->lock);
    if (!ns_valid_locked(s, ns))
        n = 0;
    for (size_t i = 0; i < n && i < 2 * AHEAD && i < MATCH_WIN; i++)
        __builtin_prefetch(&s->buckets[hashes[i] & s->bucket_mask]);
    for (; m < n; m++) {
        struct entry *e;
        if (!keys[m].data || keys[m].len == 0 || keys[m].len > KVS_KEY_MAX)
            break;
        if (m + 2 * AHEAD < n && m + 2 * AHEAD < MATCH_WIN)
            __builtin_prefetch(
                &s->buckets[hashes[m + 2 * AHEAD] & s->bucket_mask]);
        if (m + AHEAD < n && m + AHEAD < MATCH_WIN) {
            uint32_t b = s->buckets[hashes[m + AHEAD] & s->bucket_mask];
            if (b != NIL)
                __builtin_prefetch(&s->ents[b]);
        }
        e = lookup_locked(s, ns, keys[m].data, keys[m].len,
                          m < MATCH_WIN ? hashes[m]
                                        : key_hash(ns, keys[m].data,
                                                   keys[m].len));
        if (!e || expired(e, now))
            break;
        if (tiers_out)
            tiers_out[m] = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
        if (flags & KVS_MATCH_PIN) {
            /* A pinned match needs the block in DRAM; the read happens
             * with the lock released, so the chain is re-checked. */
            if (promote_locked(s, e, true) || !(e->flags & E_LINKED))
                break;
            e->refs++;
            s->st.refs++;
            if (tiers_out)
                tiers_out[m] = KVS_TIER_DRAM;
        }
        if (m < MATCH_WIN)
            found[m] = e;
    }
    /* Accessed deepest first, so each block ends up more recent than the
     * blocks after it: eviction reaches leaves before their ancestors and
     * never leaves a gap in a chain. A chain matched before (or put in
     * order) already lies in the LRU list in that order, and then moving
     * it to the head in one piece gives the same list. A pinned match may
     * have released the lock, so only then are the entries looked up
     * again. */
    if ((flags & KVS_MATCH_PIN) || m > MATCH_WIN ||
        !touch_run_locked(s, found, m)) {
        for (size_t i = m; i-- > 0;) {
            struct entry *e;
            /* Each touch unlinks a block from between two others that are
             * likely cold: fetch them ahead of time. */
            if (i >= AHEAD && i - AHEAD < MATCH_WIN &&
                !(flags & KVS_MATCH_PIN)) {
                const struct entry *p = found[i - AHEAD];
                if (p->lru_prev != NIL)
                    __builtin_prefetch(&s->ents[p->lru_prev].lru_next, 1);
                if (p->lru_next != NIL)
                    __builtin_prefetch(&s->ents[p->lru_next].lru_prev, 1);
            }
            if (i < MATCH_WIN && !(flags & KVS_MATCH_PIN))
                e = found[i];
            else
                e = lookup_locked(s, ns, keys[i].data, keys[i].len,
                                  key_hash(ns, keys[i].data, keys[i].len));
            if (e)
                touch_locked(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    *matched_out = m;
    return 0;
}

int kvs_store_delete(kvs_store_t *s, uint32_t ns, const void *key,
                     uint32_t key_len)
{
    struct entry *e;
    bool on_disk;
    uint64_t uid;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? find_locked(s, ns, key, key_len) : NULL;
    if (!e || e->refs) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        return e ? KVS_EBUSY : KVS_ENOTFOUND;
    }
    on_disk = e->flags & E_DISK;
    uid = e->uid;
    entry_remove_locked(s, e);
    pthread_mutex_unlock(&s->lock);
    if (on_disk)
        kvs_index_block_delete_if(s->index, ns, key, key_len, uid);
    pthread_mutex_unlock(&s->wlock);
    return 0;
}

int kvs_store_set_retention(kvs_store_t *s, uint32_t ns, const void *key,
                            uint32_t key_len, uint8_t cls, uint64_t ttl_ms)
{
    struct entry *e;
    int ret = 0;
    bool rewrite = false;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX ||
        cls >= KVS_CLASS_COUNT)
        return -EINVAL;
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? find_locked(s, ns, key, key_len) : NULL;
    if (!e) {
        ret = KVS_ENOTFOUND;
    } else if (cls == KVS_CLASS_PINNED && e->cls != KVS_CLASS_PINNED &&
               s->pinned_bytes + e->raw_len >
                   (kvs_arena_size(s->arena) / 100) * s->cfg.pinned_max_pct) {
        ret = KVS_EPINNED_FULL;
    } else {
        if (e->cls == KVS_CLASS_PINNED)
            s->pinned_bytes -= e->raw_len;
        if (cls == KVS_CLASS_PINNED)
            s->pinned_bytes += e->raw_len;
        e->cls = cls;
        e->expiry_ms = ttl_ms ? kvs_clock_real_ms() + ttl_ms : 0;
        ttl_sync(s, e);
        rewrite = e->flags & E_DISK;
    }
    kvs_index_rec_t rec;
    if (rewrite) {
        rec_of(e, &e->loc, e->codec, e->stored_len, &rec);
    }
    pthread_mutex_unlock(&s->lock);
    if (rewrite) {
        kvs_index_batch_put(s->batch, &rec);
        ret = kvs_index_commit(s->index, s->batch, s->cfg.sync_index);
        kvs_index_batch_clear(s->batch);
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int kvs_store_scan(kvs_store_t *s, uint32_t ns, uint64_t group,
                   kvs_scan_cb cb, void *arg, uint64_t *count_out)
{
    uint64_t now = kvs_clock_real_ms(), n = 0;

    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->nents; i++) {
        const struct entry *e = &s->ents[i];
        kvs_block_info_t info;
        if (!(e->flags & E_LINKED) || e->ns != ns || expired(e, now) ||
            (group && e->group != group))
            continue;
        fill_info(&info, e);
        n++;
        if (cb(arg, e->key, e->key_len, e->parent, e->parent_len, &info))
            break;
    }
    pthread_mutex_unlock(&s->lock);
    if (count_out)
        *count_out = n;
    return 0;
}

int kvs_store_flush(kvs_store_t *s)
{
    int ret;

    if (!s->seg)
        return 0;
    pthread_mutex_lock(&s->lock);
    uint32_t want = ++s->flush_gen;
    pthread_cond_signal(&s->work_cv);
    while ((int32_t)(s->flush_done - want) < 0 && !s->stop)
        pthread_cond_wait(&s->space_cv, &s->lock);
    ret = s->flush_status;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* One list of entries linked by index (LRU or TTL): walks it from the head
 * by next and checks each back link and the tail, then that exactly the
 * entries with flag are on it, as many as expected (UINT32_MAX: any). */
static int check_list_locked(kvs_store_t *s, const char *what, uint32_t head,
                             uint32_t tail, size_t next_off, size_t prev_off,
                             uint32_t flag, uint32_t expect)
{
    uint32_t n = 0, prev = NIL, flagged = 0;

    for (uint32_t i = head; i != NIL; i = *(uint32_t *)((char *)&s->ents[i] +
                                                        next_off)) {
        if (i >= s->nents || n++ > s->nents) {
            kvs_error("store check: %s list runs off the table", what);
            return KVS_ECORRUPT;
        }
        if (*(uint32_t *)((char *)&s->ents[i] + prev_off) != prev ||
            !(s->ents[i].flags & flag)) {
            kvs_error("store check: %s list entry %u: bad back link or flag",
                      what, i);
            return KVS_ECORRUPT;
        }
        prev = i;
    }
    for (uint32_t i = 0; i < s->nents; i++)
        flagged += (s->ents[i].flags & flag) != 0;
    if (prev != tail || flagged != n || (expect != UINT32_MAX && n != expect)) {
        kvs_error("store check: %s list: %u entries, %u flagged, tail %s",
                  what, n, flagged, prev == tail ? "right" : "wrong");
        return KVS_ECORRUPT;
    }
    return 0;
}

int kvs_store_check(kvs_store_t *s)
{
    uint32_t with_ttl = 0;
    int ret;

    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->nents; i++)
        with_ttl += (s->ents[i].flags & E_LINKED) && s->ents[i].expiry_ms;
    ret = check_list_locked(s, "LRU", s->lru_head, s->lru_tail,
                            offsetof(struct entry, lru_next),
                            offsetof(struct entry, lru_prev), E_INLRU,
                            UINT32_MAX);
    if (!ret)
        ret = check_list_locked(s, "TTL", s->ttl_head, s->ttl_tail,
                                offsetof(struct entry, ttl_next),
                                offsetof(struct entry, ttl_prev), E_INTTL,
                                with_ttl);
    if (!ret && s->nttl != with_ttl) {
        kvs_error("store check: TTL count %u, %u entries with a TTL", s->nttl,
                  with_ttl);
        ret = KVS_ECORRUPT;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void kvs_store_stats(kvs_store_t *s, kvs_store_stats_t *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->dram_used_bytes = kvs_arena_used(s->arena);
    out->dram_capacity_bytes = kvs_arena_size(s->arena);
    out->nvme_capacity_bytes = s->seg ? s->cfg.nvme_bytes : 0;
    out->nvme_used_bytes = 0;
    for (uint32_t r = 0; r < s->nregions; r++)
        if (s->regions[r].state == RG_SEALED || s->regions[r].state == RG_OPEN)
            out->nvme_used_bytes += s->cfg.region_bytes;
    out->pinned_bytes = s->pinned_bytes;
    pthread_mutex_unlock(&s->lock);
}

int kvs_store_verify(kvs_store_t *s, kvs_verify_cb cb, void *arg,
                     uint64_t *checked_out, uint64_t *bad_out)
{
    uint64_t checked = 0, bad = 0;
    uint8_t *tmp;

    if (!s->seg) {
        *checked_out = *bad_out = 0;
        return 0;
    }
    tmp = malloc(s->cfg.max_block_bytes ? s->cfg.max_block_bytes : 1);
    if (!tmp)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nents; i++) {
        struct rd r;
        uint8_t key[KVS_KEY_MAX];
        uint32_t key_len;
        int ret;

        pthread_mutex_lock(&s->lock);
        struct entry *e = &s->ents[i];
        if (!(e->flags & E_LINKED) || !(e->flags & E_DISK)) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        r = (struct rd){
            .loc = e->loc, .raw_len = e->raw_len, .stored_len = e->stored_len,
            .data_xxh = e->data_xxh, .nparts = e->nparts, .codec = e->codec,
            .elem_size = e->elem_size, .ns = e->ns, .hash = e->hash,
            .status = 1,
        };
        key_len = e->key_len;
        memcpy(key, e->key, key_len);
        pthread_mutex_unlock(&s->lock);

        pthread_mutex_lock(&s->rlock);
        ret = kvs_segment_read_submit(s->seg, &r.loc, 0, 0);
        if (ret == 0) {
            ret = kvs_segment_read_reap(s->seg, 1, rd_done, &r);
            ret = ret < 0 ? ret : r.status;
        }
        if (ret == 0)
            ret = verify_decode_rlocked(s, &r, kvs_segment_slot(s->seg, 0),
                                        key, key_len, tmp, NULL, 0);
        pthread_mutex_unlock(&s->rlock);
        checked++;
        if (ret) {
            bad++;
            if (cb)
                cb(arg, r.ns, key, key_len, ret);
            /* Drop the record too, as documented. wlock keeps a writer
             * from committing a new record for this entry in between. */
            uint64_t uid;
            pthread_mutex_lock(&s->wlock);
            pthread_mutex_lock(&s->lock);
            bool dropped = corrupt_locked(s, r.ns, key, key_len, &r.loc, &uid);
            pthread_mutex_unlock(&s->lock);
            if (dropped)
                kvs_index_block_delete_if(s->index, r.ns, key, key_len, uid);
            pthread_mutex_unlock(&s->wlock);
        }
    }
    free(tmp);
    *checked_out = checked;
    *bad_out = bad;
    return 0;
}

void *kvs_store_arena(kvs_store_t *s, size_t *len_out)
{
    *len_out = kvs_arena_size(s->arena);
    return kvs_arena_base(s->arena);
}
