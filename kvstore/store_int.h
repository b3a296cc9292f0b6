/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The storage engine's inside, shared by the .c files of kvstore/ and by
 * nothing else: the store itself, the block table's entry, the regions and
 * the write jobs. kvstore/store.h is the engine's public interface.
 *
 * Every block has one entry in a table reserved at open for max_blocks
 * entries (no malloc on the data path) and resident only as far as entries
 * were handed out, found through a chained hash of (namespace, key) whose
 * buckets double as blocks are linked:
 *
 *   buckets[hash & mask] -> entry -> entry -> NIL        (hnext chains)
 *   policy: window and main lists     (blocks in DRAM, kvstore/policy.h)
 *   xrecs[e->xslot]: its TTL and group   (the blocks with either, table.c)
 *   region[r].head <-> ... (blocks on disk in region r)  (rg_prev/rg_next)
 *
 * An entry can be in DRAM (E_DRAM, its copy's record at e->dram), on disk
 * (E_DISK, at loc), or both. A DRAM copy is its bytes alone, padded to a
 * page, so they can be sent from directly and written to disk without a
 * copy (the segment adds the header page from its own memory):
 *
 *   extent: | data (raw_len) | 0s to 4 KiB |      (a page at least)
 *            ^ arena + e->dram->off
 *
 * Nothing the store trusts lives in the arena: with daemon.shm_socket set
 * it is a memfd that same-host clients map and can write, so the copy's
 * part table and its offset are kept in its record (struct dcopy), in
 * this process's memory, and what is read from the arena is payload only,
 * whose checksum (settled at seal, in the copy's record) a disk read checks
 * against the block's header.
 *
 * Locks, as layers: a thread holding a lock of one layer may take a lock
 * of a lower layer, never one of the same or a higher layer.
 *
 *   layer 3  wlock  the segment's writer and every write to block records
 *                   in the index, so records of one key are written in the
 *                   order the store decided them (writer.c, region.c's
 *                   kvs_region_open_next, and each index write elsewhere);
 *   layer 2  rlock  the segment's reader: ring and bounce slots (read.c);
 *   layer 1  lock   all metadata: the table, hash, LRU, TTL list, arena,
 *                   regions, namespaces, stats, the ghost list.
 *
 * So wlock -> rlock -> lock, wlock -> lock and rlock -> lock are the only
 * nestings. `lock` is never held across I/O or a copy of block data: a
 * function that needs either with `lock` held (kvs_read_promote,
 * kvs_dram_alloc waiting for space) releases it and takes it back. An entry
 * that a copy or I/O works on carries busy > 0 (internal) or refs > 0 (a
 * caller's reference); neither kind is freed, and only refs makes a delete
 * fail. A block deleted or replaced while busy is marked E_DEAD and
 * unlinked; the last busy holder frees it.
 *
 * Disk reads need no reference on the region: a block read from a region
 * reclaimed meanwhile fails its generation check and is a miss.
 *
 * Threads: the callers' threads (any number, each public call), and one
 * background thread (background.c) that writes DRAM behind to disk, serves
 * flushes and expires TTLs.
 */
#ifndef KVS_STORE_INT_H
#define KVS_STORE_INT_H

#include "kvstore/store.h"
#include "kvstore/arena.h"
#include "kvstore/codec.h"
#include "kvstore/ghost.h"
#include "kvstore/keys.h"
#include "kvstore/policy.h"
#include "kvstore/index.h"
#include "kvstore/segment.h"
#include "common/compiler.h"
#include "common/debug.h"
#include "common/hugemem.h"
#include "common/lockstat.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/xxh.h"

#define NIL UINT32_MAX
_Static_assert(NIL == KVS_POLICY_NIL &&
                   KVS_STORE_WINDOW_ADAPTIVE == KVS_POLICY_ADAPTIVE,
               "the store and the policy agree on their constants");

enum {
    E_USED = 1u << 0,    /* allocated */
    E_LINKED = 1u << 1,  /* in the hash: visible */
    E_DRAM = 1u << 2,    /* DRAM copy valid */
    E_DISK = 1u << 3,    /* disk copy valid, index record written */
    E_DURABLE = 1u << 4, /* asked for durability: keep a disk copy */
    E_DEAD = 1u << 5,    /* deleted or replaced while busy */
};

/* A DRAM copy: where its bytes are, its part table, and what only a
 * block in DRAM needs. Allocated with the copy's arena extent
 * (kvs_dram_copy_new) and freed with it (kvs_dram_drop_locked), so only
 * blocks in DRAM pay for it: 32 B and 4 B a part. off and parts are set
 * before the entry is published, then read-only; the rest under lock. */
struct dcopy {
    uint64_t off;       /* of the data in the arena, page aligned */
    uint64_t xxh;       /* XXH3-64 of the raw bytes, settled at seal in a
                         * shared arena (kvs_put_seal), else 0: the writer
                         * takes it as it writes the block to disk */
    uint32_t pslot;     /* its node in the DRAM order once published
                         * (table.c), else NIL */
    uint32_t flush_gen; /* the last flush that wrote it */
    uint16_t hits;      /* accesses since it entered DRAM, saturating
                         * (flash admission, evict.c) */
    uint32_t parts[];   /* nparts part lengths */
};

/* What few blocks have, a TTL or a group, beside the table (table.c): an
 * engine's blocks mostly have neither, and keeping both in every entry
 * cost 24 B a block (issue 19). */
struct xrec {
    uint64_t expiry_ms; /* wall clock; 0: none */
    uint64_t group;     /* 0: none */
    uint32_t e;         /* its entry, whose xslot is this record's index */
};

/*
 * A block's entry: 80 bytes (docs/operations.md, "Per indexed block").
 * Nothing in it can be found elsewhere at no cost: the disk copy's
 * generation is its region's (a region is given a new one only once no
 * block is left in it), its length on disk follows from nparts and
 * stored_len (kvs_segment_disk_len), and its checksum is in its header on
 * disk (checked by the header's own) and, for a DRAM copy in a shared
 * arena, in the copy's record.
 */
struct entry {
    /* What a lookup and a MATCH's touch read, in the first 64 bytes (a
     * block table spread over a large store misses on each). */
    uint64_t hash;  /* XXH3-64 of (ns, key) */
    uint32_t hnext; /* hash chain */
    uint32_t kref;  /* its key's bytes in s->keys (keys.h) */
    uint16_t ns;    /* < ns_cap (65,536) */
    uint8_t flags;  /* E_* */
    uint8_t key_len, parent_len, cls, elem_size;
    uint8_t codec;       /* of the disk copy */
    uint16_t nparts;     /* 1..KVS_PARTS_MAX */
    uint32_t xslot;      /* its TTL and group in s->xrecs, or NIL: none */
    struct dcopy *dram;  /* when E_DRAM */
    uint32_t pref;       /* its parent's key bytes (the parent's own chunk
                          * when it was in the table), or KVS_KEYS_NIL;
                          * changes under lock only before the block has
                          * a disk copy (put.c) or during recovery, so the
                          * writer may read it under wlock alone */
    uint32_t refs;       /* callers' references (pins, views, leases) */
    uint64_t uid;        /* unique per put */
    /* The rest. */
    uint32_t busy;       /* the store's own I/O in progress */
    uint32_t raw_len;    /* bytes, <= max_block_bytes */
    uint32_t stored_len; /* bytes after the codec, when E_DISK */
    uint32_t rg_prev, rg_next;
    /* Its disk copy, when E_DISK (ent_loc): where, in 4 KiB pages (a data
     * file of 16 TiB at most, kvs_store_config_check). */
    uint32_t loc_page;
};
_Static_assert(offsetof(struct entry, refs) + 4 <= 64,
               "a lookup and a touch read the first 64 bytes of an entry");
/* 80 bytes and a key chunk (keys.h): what an indexed block costs in the
 * table (docs/operations.md, "Memory"); a block in DRAM adds its struct
 * dcopy, a block with a TTL or a group its struct xrec. */
_Static_assert(sizeof(struct entry) == 80, "an entry is 80 bytes");
_Static_assert(KVS_PARTS_MAX <= UINT16_MAX, "nparts fits an entry");

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
enum region_state {
    RG_FREE = 0,
    RG_OPEN,
    RG_SEALED,
    RG_RECLAIMING,
    RG_UNUSABLE
};

/* Free regions kept in reserve: write-behind does not take the last of
 * them, so a reclaim always has room to move the blocks it keeps. */
#define REGION_RESERVE 2

struct region {
    uint64_t gen;  /* current generation */
    uint32_t head; /* entries on disk in this region */
    uint32_t nblocks;
    uint32_t pending; /* appends not yet published */
    uint8_t state;    /* enum region_state */
    bool reserved;    /* its space is allocated in the file */
};

struct ns_rec {
    char *name;
    uint32_t elem_size;
};

enum job_kind { JOB_DEGRADE, JOB_KEEP, JOB_PUT };
enum job_state { JOB_QUEUED = 0, JOB_APPENDED, JOB_DONE };

/* One block being written (see the write pipeline below). */
struct wjob {
    uint32_t e; /* entry index */
    int status;
    uint8_t kind;        /* enum job_kind */
    uint8_t state;       /* enum job_state */
    bool state_appended; /* counted in its region's pending */
    uint8_t codec;
    uint64_t buf; /* its write's tag (buffer 0..3 or >= 4) */
    kvs_seg_loc_t loc;
    uint64_t stored_len;
    uint64_t data_xxh; /* of the block's raw bytes, taken by the append */
    int *result;       /* JOB_PUT: receives the status */
};

/* A disk read in progress. */
struct rd {
    const kvs_get_args_t *a;
    kvs_block_info_t info;
    kvs_seg_loc_t loc;
    uint64_t raw_len, stored_len;
    uint32_t nparts;
    uint8_t codec, elem_size;
    uint32_t ns;
    uint64_t hash;
    unsigned slot;
    int status;
};

#define DEGRADE_BATCH 256 /* blocks per background write */

struct kvs_store {
    kvs_store_config_t cfg;
    char *dir;

    pthread_mutex_t lock;
    pthread_cond_t space_cv; /* DRAM space freed or a write finished */
    pthread_cond_t work_cv;  /* wakes the background thread */
    pthread_mutex_t wlock;
    pthread_mutex_t rlock;
    /* How often lock was wanted by the calls a request makes (MATCH,
     * EXISTS, PIN/GET, UNPIN, a put's begin and commit) and rlock by a
     * disk read (promote, get, VERIFY), and how often they were held by
     * another thread then (common/lockstat.h; atomics, no lock). */
    kvs_lockstat_t lock_stat, rlock_stat;

    /* Guarded by lock. */
    kvs_arena_t *arena;
    uint8_t *abase;
    struct entry *ents;               /* in ents_mem */
    kvs_huge_t ents_mem, buckets_mem; /* see common/hugemem.h */
    uint32_t nents;                   /* capacity: max_blocks */
    uint32_t nents_used;  /* entries ever handed out: [0, nents_used)
                           * are resident, the rest untouched */
    uint32_t free_head;   /* freed entries below nents_used */
    kvs_keys_t keys;      /* the entries' key bytes */
    uint32_t *buckets;    /* in buckets_mem */
    uint32_t bucket_mask; /* buckets - 1, a power of two */
    uint32_t nlinked;     /* entries in the hash */
    kvs_policy_t *policy; /* DRAM order: eviction and write-behind */
    uint32_t *pslot_ent;  /* policy slot -> entry, npslots of them: a
                           * slot per block DRAM can hold, not per
                           * entry (table.c) */
    uint32_t npslots;
    uint32_t pslot_free; /* free slots, chained through pslot_ent */
    struct region *regions;
    uint32_t nfree_regions;
    uint64_t reclaim_retry_ns;   /* no reclaim before this (mono clock) */
    struct xrec *xrecs;          /* TTLs and groups, nxrecs of xrecs_cap; the
                                  * sweep visits them from xsweep on, round */
    uint32_t nxrecs, xrecs_cap, xsweep;
    uint32_t *reloc; /* scratch for region_relocate_locked */
    uint32_t nregions;
    uint64_t gen_seq;
    uint64_t uid_seq;
    uint64_t pinned_bytes;
    uint64_t dram_high, dram_low; /* bytes */
    bool degrading;               /* between high and low watermark */
    int space_waiters;            /* puts waiting for DRAM (atomic reads) */
    uint64_t degrade_pending;     /* DRAM bytes queued to degrade */
    uint32_t test_read_delay_ms;  /* TEST HOOK: every disk read sleeps this
                                   * long first ($KVSTASH_TEST_READ_DELAY_MS,
                                   * read at open; 0 in production) */
    uint32_t test_write_delay_ms; /* TEST HOOK: every drain of the writer
                                   * (a durable put, a write-behind batch)
                                   * sleeps this long first, wlock held
                                   * ($KVSTASH_TEST_WRITE_DELAY_MS) */
    kvs_ghost_t *ghost;           /* admission (admit_ghost_factor), or NULL */
    struct ns_rec *ns;
    uint32_t nns;
    uint32_t ns_cap;
    bool stop;
    uint32_t flush_gen;  /* flush requests made */
    uint32_t flush_done; /* flush requests served */
    int flush_status;
    int flush_job_err; /* first failed write of the flush */
    kvs_store_stats_t st;

    /* Guarded by wlock. */
    kvs_segment_t *seg; /* NULL: no NVMe tier */
    kvs_index_batch_t *batch;
    kvs_codec_t *wcodec;
    uint8_t *wscratch; /* codec output, max_block bound */
    size_t wscratch_len;
    struct wjob *pend; /* jobs in flight, njobs_max entries */
    uint32_t npend;
    uint32_t ndone; /* of them DONE */
    uint32_t njobs_max;
    uint32_t *requeue; /* blocks a reclaim writes again */
    uint64_t tag_seq;  /* tags of direct writes, from 4 up */
    uint32_t *dead;    /* dead entries to free after publishing */
    uint32_t ndead;

    /* Guarded by rlock. */
    kvs_codec_t *rcodec;

    kvs_index_t *index;
    pthread_t bg;
    bool bg_started;
};

/* ---- Helpers on the entry layout. ---- */

static inline uint64_t key_hash(uint32_t ns, const void *key, uint32_t len)
{
    return XXH3_64bits_withSeed(key, len, 0x9e3779b97f4a7c15ull ^ ns);
}

/* An entry's key bytes (key_len of them) and its parent's (parent_len),
 * valid while the entry is allocated. With no parent, an empty array,
 * never NULL: callers pass it on to memcpy and callbacks with length 0. */
static inline const uint8_t *ent_key(const kvs_store_t *s,
                                     const struct entry *e)
{
    return kvs_keys_bytes(&s->keys, e->kref);
}

static inline const uint8_t *ent_parent(const kvs_store_t *s,
                                        const struct entry *e)
{
    static const uint8_t none[1];

    return e->pref == KVS_KEYS_NIL ? none : kvs_keys_bytes(&s->keys, e->pref);
}

/* Reports a tier change of a linked entry to the event callback
 * (store.h, "Tier events"); silent for entries already unlinked, whose
 * removal was reported when they were unlinked. Caller holds lock. */
static inline void ev_tier_locked(const kvs_store_t *s, const struct entry *e,
                                  uint8_t type, uint8_t tier)
{
    if (!s->cfg.event_cb || !(e->flags & E_LINKED))
        return;
    kvs_store_event_t ev = {
        type,          tier,          e->ns,           e->key_len,
        ent_key(s, e), e->parent_len, ent_parent(s, e)};
    s->cfg.event_cb(s->cfg.event_arg, &ev);
}

/* An entry's index in the table, which is how lists link entries. */
static inline uint32_t eidx(const kvs_store_t *s, const struct entry *e)
{
    return (uint32_t)(e - s->ents);
}

/* An entry's TTL (0: none) and group (0: none), from s->xrecs. */
static inline uint64_t ent_expiry(const kvs_store_t *s, const struct entry *e)
{
    return e->xslot == NIL ? 0 : s->xrecs[e->xslot].expiry_ms;
}

static inline uint64_t ent_group(const kvs_store_t *s, const struct entry *e)
{
    return e->xslot == NIL ? 0 : s->xrecs[e->xslot].group;
}

static inline bool expired(const kvs_store_t *s, const struct entry *e,
                           uint64_t now_ms)
{
    uint64_t t = ent_expiry(s, e);

    return t && now_ms >= t;
}

/* The part-length table of entry e's DRAM copy (E_DRAM), in this
 * process's memory, and the copy's bytes in the arena. */
static inline uint32_t *part_table(const struct entry *e)
{
    return e->dram->parts;
}

static inline uint8_t *ent_data(const kvs_store_t *s, const struct entry *e)
{
    return s->abase + e->dram->off;
}

/* Entry e's disk copy (E_DISK), its region, and setting it. The copy's
 * generation is its region's: a region takes a new one only when it opens,
 * after every block in it has left (region.c), so while e is E_DISK its
 * region's generation is the one it was written under. */
static inline uint32_t ent_region(const kvs_store_t *s, const struct entry *e)
{
    return (uint32_t)((uint64_t)e->loc_page * KVS_SEG_ALIGN /
                      s->cfg.region_bytes);
}

/* Bytes the disk copy takes: its header and its pages of stored bytes. */
static inline uint32_t ent_disk_len(const struct entry *e)
{
    return kvs_segment_disk_len(e->key_len, e->nparts, e->stored_len);
}

static inline kvs_seg_loc_t ent_loc(const kvs_store_t *s,
                                    const struct entry *e)
{
    uint64_t off = (uint64_t)e->loc_page * KVS_SEG_ALIGN;
    uint32_t r = ent_region(s, e);

    return (kvs_seg_loc_t){off, s->regions[r].gen, r, ent_disk_len(e)};
}

/* loc: 4 KiB aligned, inside the data file (checked where it is made), in
 * a region of generation loc->gen, loc->disk_len as kvs_segment_disk_len
 * gives for e's nparts and stored_len (set first). */
static inline void ent_set_loc(const kvs_store_t *s, struct entry *e,
                               const kvs_seg_loc_t *loc)
{
    e->loc_page = (uint32_t)(loc->off / KVS_SEG_ALIGN);
    kvs_assert(s->regions[ent_region(s, e)].gen == loc->gen &&
               loc->disk_len == ent_disk_len(e));
}

/* Entry e's node in the DRAM order, or NIL (not in DRAM, or not yet
 * published). */
static inline uint32_t ent_pslot(const struct entry *e)
{
    return (e->flags & E_DRAM) ? e->dram->pslot : NIL;
}

static inline bool ns_valid_locked(const kvs_store_t *s, uint32_t ns)
{
    return ns < s->nns && s->ns[ns].name;
}

/* ---- table.c: entries, hash, LRU and TTL lists. Caller holds lock. ---- */

/* The entry of (ns, key) with that hash, expired or not; NULL if none. */
struct entry *kvs_table_lookup_locked(kvs_store_t *s, uint32_t ns,
                                      const void *key, uint32_t len,
                                      uint64_t hash);
/* A visible entry, or NULL if absent or past its TTL. */
struct entry *kvs_table_find_locked(kvs_store_t *s, uint32_t ns,
                                    const void *key, uint32_t len);
int kvs_table_xrec_set(kvs_store_t *s, struct entry *e, uint64_t expiry_ms,
                       uint64_t group);
/* Makes e visible under its key, or invisible. */
void kvs_table_link(kvs_store_t *s, struct entry *e);
void kvs_table_unlink(kvs_store_t *s, struct entry *e);
/* e enters the DRAM order (behind parent, if given and in DRAM). */
void kvs_table_lru_push(kvs_store_t *s, struct entry *e, struct entry *parent);
/* e leaves it; remember: to make room (evicted or written behind), so the
 * policy keeps its key in a ghost list; not for deletes and replacements. */
void kvs_table_lru_remove(kvs_store_t *s, struct entry *e, bool remember);
/* Eviction candidates, coldest first: coldest, then warmer of the last,
 * until NIL. */
uint32_t kvs_table_lru_coldest(kvs_store_t *s);
uint32_t kvs_table_lru_warmer(kvs_store_t *s, uint32_t i);
/* Whether e may leave the store now: a block whose children are in DRAM
 * stays, so a chain never has a gap. */
bool kvs_table_lru_evictable(kvs_store_t *s, const struct entry *e);
void kvs_table_touch_locked(kvs_store_t *s, struct entry *e);
bool kvs_table_touch_run_locked(kvs_store_t *s, struct entry *const *e,
                                size_t n);
/* Buckets for a first few blocks, and the policy's slots, one per block
 * DRAM can hold (at open); -ENOMEM. */
int kvs_table_buckets_init(kvs_store_t *s);
int kvs_table_pslots_init(kvs_store_t *s, uint32_t npslots);
/* Buckets for about nblocks blocks (no fewer than now); best effort. */
void kvs_table_buckets_reserve(kvs_store_t *s, uint64_t nblocks);
/* A free entry, zeroed, E_USED, with a new uid; NULL if the table is full. */
struct entry *kvs_table_alloc_locked(kvs_store_t *s);
void kvs_table_free_locked(kvs_store_t *s, struct entry *e);
void kvs_table_remove_locked(kvs_store_t *s, struct entry *e);
/* Gives e (fresh from kvs_table_alloc_locked) its key and its parent's
 * key (plen 0: none), sharing the parent's chunk when the parent is in the
 * table; KVS_EFULL when the key region is full. */
int kvs_table_set_key(kvs_store_t *s, struct entry *e, uint32_t ns,
                      const void *key, uint32_t len, uint64_t hash,
                      const void *parent, uint32_t plen);
/* Makes e share its parent's key chunk (parent: the entry of e's parent
 * key, or NULL). */
void kvs_table_share_parent(kvs_store_t *s, struct entry *e,
                            const struct entry *parent);
void kvs_table_info(const kvs_store_t *s, kvs_block_info_t *info,
                    const struct entry *e);
/* Checks the LRU and TTL lists; KVS_ECORRUPT (logged) if broken. */
int kvs_table_check_locked(kvs_store_t *s);

/* ---- region.c: region lists, states, victims. Caller holds lock. ---- */

void kvs_region_add(kvs_store_t *s, struct entry *e);
void kvs_region_remove(kvs_store_t *s, struct entry *e);
void kvs_region_set_state(kvs_store_t *s, uint32_t r, uint8_t state);
void kvs_region_maybe_free_locked(kvs_store_t *s, uint32_t r);
bool kvs_region_must_keep(const kvs_store_t *s, const struct entry *e,
                          uint64_t now_ms);
uint32_t kvs_region_victim_locked(kvs_store_t *s);
/* Caller holds wlock, not lock. */
int kvs_region_open_next_wlocked(kvs_store_t *s);

/* ---- dram.c: DRAM space and watermarks. Caller holds lock. ---- */

/* DRAM for a block: its extent, a page at least. */
uint64_t kvs_dram_bytes_for(uint64_t raw_len);
/* The DRAM entry e takes (or would take). */
static inline uint64_t kvs_dram_bytes_of(const struct entry *e)
{
    return kvs_dram_bytes_for(e->raw_len);
}
void kvs_dram_zero_tail(uint8_t *data, uint64_t raw_len);
/* A DRAM copy's record for the extent at off (from kvs_dram_alloc*) of a
 * block of nparts parts; NULL when out of memory. kvs_dram_attach_locked
 * gives it to e (E_DRAM); kvs_dram_copy_free frees one never attached. */
struct dcopy *kvs_dram_copy_new(uint64_t off, uint32_t nparts);
void kvs_dram_copy_free(struct dcopy *d);
void kvs_dram_attach_locked(struct entry *e, struct dcopy *d);
/* At close, nothing else running: frees every DRAM copy's record (the
 * arena goes as a whole). */
void kvs_dram_close(kvs_store_t *s);
/* Frees e's DRAM copy, its extent and its record (e in DRAM, not
 * referenced). */
void kvs_dram_drop_locked(kvs_store_t *s, struct entry *e);
/* Updates the write-behind state; true while DRAM is to be degraded. */
bool kvs_dram_need_degrade_locked(kvs_store_t *s);
/* DRAM for bytes at *off_out, waiting up to full_wait_ms for write-behind
 * (releases lock meanwhile); KVS_EFULL if no room. */
int kvs_dram_alloc_locked(kvs_store_t *s, uint64_t bytes, uint64_t *off_out);
/* The same; without wait, -EWOULDBLOCK where it would have waited (the
 * writer has been woken to make room). */
int kvs_dram_alloc_flags_locked(kvs_store_t *s, uint64_t bytes, bool wait,
                                uint64_t *off_out);

/* ---- evict.c: what leaves DRAM or the store, and what is not admitted.
 * Caller holds lock. ---- */

bool kvs_evict_dram_locked(kvs_store_t *s, uint64_t bytes);
bool kvs_evict_disk_copies_locked(kvs_store_t *s, uint64_t bytes);
bool kvs_evict_one_locked(kvs_store_t *s);
bool kvs_evict_admit_locked(kvs_store_t *s, const kvs_put_args_t *a);
uint32_t kvs_evict_pick_degrade_locked(kvs_store_t *s, uint32_t *out,
                                       uint32_t max, bool flush);

/* ---- read.c: NVMe reads, checks, promotion. ---- */

void kvs_read_init(const kvs_store_t *s, struct rd *r, const struct entry *e);
int kvs_read_one_rlocked(kvs_store_t *s, struct rd *r, const void *key,
                         uint32_t key_len, void *dst, uint32_t *part_lens,
                         uint32_t part_cap);
void kvs_read_batch_rlocked(kvs_store_t *s, struct rd *rds, size_t nrd);
/* Drops an entry's disk copy that failed verification; true (and its uid
 * in *uid_out, if not NULL) when the copy at loc was still the entry's.
 * Caller holds lock. */
bool kvs_read_drop_corrupt_locked(kvs_store_t *s, uint32_t ns, const void *key,
                                  uint32_t len, const kvs_seg_loc_t *loc,
                                  uint64_t *uid_out);
/* Brings visible entry e into DRAM; called and returns with lock held,
 * released during the read. */
int kvs_read_promote_locked(kvs_store_t *s, struct entry *e, bool wait);

/* ---- writer.c: write pipeline, index records, reclaim. Caller holds
 * wlock. ---- */

int kvs_writer_open(kvs_store_t *s);
void kvs_writer_close(kvs_store_t *s);
void kvs_writer_rec(const kvs_store_t *s, const struct entry *e,
                    const kvs_seg_loc_t *loc, uint8_t codec,
                    uint64_t stored_len, uint64_t data_xxh,
                    kvs_index_rec_t *rec);
/* Queues the write of entry e (busy, in DRAM) as a job of kind (enum
 * job_kind), making room first; result receives a JOB_PUT's status. */
void kvs_writer_queue_wlocked(kvs_store_t *s, uint32_t e, uint8_t kind,
                              int *result);
int kvs_writer_publish_wlocked(kvs_store_t *s, bool sync);
int kvs_writer_drain_wlocked(kvs_store_t *s, bool sync);

/* ---- background.c: the background thread. ---- */

int kvs_background_start(kvs_store_t *s);
void kvs_background_stop(kvs_store_t *s);

/* ---- recover.c: open the index and rebuild the table from it. ---- */

int kvs_recover_load(kvs_store_t *s);

/* ---- put.c: the steps of a put, shared with streaming puts. ---- */

/* Checks a put's arguments; its byte count in *total_out. */
int kvs_put_check(const kvs_store_t *s, const kvs_put_args_t *a, bool need_data,
                  uint64_t *total_out);
/* A busy, invisible entry with DRAM for the block: 0 with *e_out, 1 when
 * admission declined the put, or an error. Caller holds lock. */
int kvs_put_reserve_locked(kvs_store_t *s, const kvs_put_args_t *a,
                           uint64_t total, struct entry **e_out);
void kvs_put_seal(kvs_store_t *s, struct entry *e, const uint64_t *known);
/* Makes filled entries visible; status[k] is 0 on entry, the result after.
 * Takes the locks itself. */
void kvs_put_commit(kvs_store_t *s, const kvs_put_args_t *const *args,
                    const uint32_t *ents, uint32_t n, int *status);

#endif
