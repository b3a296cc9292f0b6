/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kvstash storage engine: the only header that transport/ and tools/
 * include from kvstore/.
 *
 * A store holds blocks, each named by (namespace id, key). A block is one or
 * more parts (for example one per layer) stored back to back; its bytes are
 * the concatenation of its parts. Blocks live in a DRAM arena and, once
 * degraded or written durably, in log-structured regions of a data file read
 * and written through io_uring with O_DIRECT. RocksDB records where every
 * block on disk lives, so what was on disk is back after a restart.
 *
 * Threading: every call is thread-safe. Metadata (the hash index, the DRAM
 * allocator, the region table) is guarded by one mutex per store that is
 * never held across I/O or a data copy. Copies into and out of DRAM happen
 * with the block referenced (see "references" below), so it cannot be freed
 * under the copy. One background thread degrades DRAM to disk.
 *
 * References: a block's DRAM copy cannot be freed, moved or degraded while
 * its reference count is above zero. kvs_store_pin() takes a reference (and
 * brings the block into DRAM first); kvs_store_unpin() drops it. The daemon
 * uses references for zero-copy sends, leases and client pins, and releases
 * them when a client goes away.
 *
 * Errors: every call returns 0 or a negative status from kvstash/status.h.
 * Output parameters are written only on success unless a call says otherwise.
 */
#ifndef KVS_STORE_H
#define KVS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"
#include "kvstash/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_store kvs_store_t;

/*
 * Tier events, for a publisher that tells routers what this store holds
 * (transport/server/events.c). The store reports each time a block's copy
 * appears in a tier (STORED) or leaves it (REMOVED): a put is STORED DRAM; a
 * write-behind is STORED NVME while the DRAM copy stays; the DRAM copy's
 * eviction after that is REMOVED DRAM (so a degrade is STORED NVME then
 * REMOVED DRAM); a delete, replace, expiry or eviction is REMOVED for each
 * tier it was in; a promote is STORED DRAM; blocks found on disk at open
 * are STORED NVME, reported from inside kvs_store_open(). A relocation
 * within the disk tier reports nothing.
 *
 * The callback runs with the store's metadata lock held, on whatever thread
 * changed the tier (a putter, the background thread, a reader). It must be
 * cheap and must never block or call the store: copy the event into a
 * queue and return. The pointers are valid during the call only.
 */
enum kvs_store_event_type { KVS_STORE_EV_STORED = 1, KVS_STORE_EV_REMOVED = 2 };

typedef struct kvs_store_event {
    uint8_t type; /* enum kvs_store_event_type */
    uint8_t tier; /* enum kvs_tier: KVS_TIER_DRAM or _NVME */
    uint32_t ns;
    uint32_t key_len;
    const uint8_t *key;
    uint32_t parent_len; /* 0: none */
    const uint8_t *parent;
} kvs_store_event_t;

typedef void (*kvs_store_event_cb)(void *arg, const kvs_store_event_t *ev);

/* Configuration. Fill with kvs_store_config_default(), then change fields.
 * Sizes are bytes. The store copies what it needs; the struct and its
 * strings may be freed after kvs_store_open() returns. */
typedef struct kvs_store_config {
    const char *dir;          /* data file and index live here; created */
    uint64_t dram_bytes;      /* DRAM arena size */
    uint64_t nvme_bytes;      /* data file size; 0 disables the NVMe tier */
    uint32_t region_bytes;    /* NVMe region size, a multiple of 1 MiB */
    uint32_t max_block_bytes; /* largest block (all parts together) */
    uint32_t min_block_bytes; /* smallest block (KVS_ETOOSMALL under it);
                               * 0: none. A block takes whole 4 KiB pages
                               * (docs/operations.md, "Space
                               * amplification"): the daemon's packaged
                               * config sets 4096 */
    uint32_t max_blocks;      /* metadata capacity: blocks in DRAM + NVMe */
    uint32_t io_depth;        /* io_uring queue depth per ring */
    uint32_t dram_high_pct;   /* degrade starts above this fill, percent */
    uint32_t dram_low_pct;    /* degrade stops below this fill, percent */
    uint32_t pinned_max_pct;  /* pinned class cap, percent of capacity */
    int32_t compress_level;   /* zstd level on the way to disk; 0: off */
    uint32_t compress_min_saving_pct; /* store raw below this saving */
    uint32_t full_wait_ms;            /* a put waits this long for space */
    bool sync_index;                  /* sync the RocksDB WAL at every commit of
                                       * block records, not only for durable
                                       * puts and flushes (slower; narrows what
                                       * a machine crash can take back) */
    uint32_t admit_scratch_hits;      /* flash admission: a scratch block goes
                                       * to disk only after this many hits
                                       * (0: always); others just leave DRAM */
    uint32_t admit_ghost_factor;      /* store admission for scratch puts: 0
                                       * admits all; N admits a block only if
                                       * its key was put before and is among the
                                       * last N * max_blocks keys declined, and
                                       * only if its parent is present */
    uint32_t policy_window_pct;       /* DRAM order (docs/policy.md): the
                                       * window's share of DRAM blocks, 0..100,
                                       * fixed; KVS_STORE_WINDOW_ADAPTIVE (the
                                       * default): it adapts to the workload */
    bool dram_shared;                 /* the arena on a memfd that a transport
                                       * may hand to clients on this host
                                       * (kvs_store_arena_fd); else anonymous
                                       * memory on THP */
    kvs_store_event_cb event_cb;      /* tier changes (see below); NULL: none */
    void *event_arg;                  /* passed to event_cb */
} kvs_store_config_t;

#define KVS_STORE_WINDOW_ADAPTIVE UINT32_MAX

/* Fills cfg with defaults that fit a laptop: 1 GiB DRAM, 4 GiB NVMe, 64 MiB
 * regions, 16 MiB blocks, data under ./var/kvstash. */
void kvs_store_config_default(kvs_store_config_t *cfg);

/* The checks kvs_store_open() makes of cfg, without opening anything: 0, or
 * KVS_ECONFIG with the reason logged. */
int kvs_store_config_check(const kvs_store_config_t *cfg);

/*
 * Opens (creating if needed) the store described by cfg and loads its index
 * into memory. Fails with KVS_EURING if io_uring cannot be set up (for
 * example when seccomp forbids it) and logs the cause; with KVS_ELAYOUT if
 * an existing store was made with another region or file size.
 * On success *store_out is owned by the caller until kvs_store_close().
 */
int kvs_store_open(const kvs_store_config_t *cfg, kvs_store_t **store_out);

/* Flushes what is pending, stops the background thread and frees the store.
 * All references must have been dropped. kvs_store_close(NULL) is a no-op. */
void kvs_store_close(kvs_store_t *store);

/*
 * Namespaces. A namespace name (1..KVS_NS_NAME_MAX bytes) maps to a small
 * id that is stable across restarts. elem_size is the element size in bytes
 * of the namespace's tensors (2 for bf16/fp16, 1 for fp8, 0 if unknown); it
 * is used by the codec and can be overridden per put.
 */
int kvs_store_ns_open(kvs_store_t *store, const char *name, uint32_t elem_size,
                      uint32_t *ns_out);

/* Put flags. */
#define KVS_PUT_DURABLE (1u << 0) /* return after data + index are on disk */
#define KVS_PUT_NO_DRAM (1u << 1) /* write straight to disk (bulk loads) */
/* Never wait for room: where DRAM is full until the write-behind has made
 * room, the put fails with -EWOULDBLOCK at once, and in a batch so does
 * every put after it (so that a caller can retry the rest in order, where
 * it may wait: a serving thread hands them to an I/O thread). */
#define KVS_PUT_NO_WAIT (1u << 2)

/* One put. All pointers are the caller's and are read during the call only. */
typedef struct kvs_put_args {
    uint32_t ns;      /* namespace id */
    uint32_t key_len; /* 1..KVS_KEY_MAX */
    const void *key;
    const kvs_iov_t *parts; /* the block, part by part */
    uint32_t nparts;        /* 1..KVS_PARTS_MAX */
    uint32_t flags;         /* KVS_PUT_* */
    uint8_t cls;            /* enum kvs_class */
    uint8_t elem_size;      /* 0: the namespace's */
    uint64_t ttl_ms;        /* time to live, any class; 0: none */
    uint32_t parent_len;    /* 0: no parent */
    const void *parent;     /* key of the block before it in the prompt */
    uint64_t group;         /* conversation or user id; 0: none */
} kvs_put_args_t;

/*
 * Stores a block, replacing any block with the same key. Returns when the
 * block is in DRAM, or with KVS_PUT_DURABLE when its data and index entry are
 * on stable storage. With admit_ghost_factor set, a scratch put may be
 * declined (it returns 0, the block is not stored, and
 * stats.admission_rejected counts it), as a cache may drop any block. KVS_EFULL
 * when no space could be made within full_wait_ms; KVS_EPINNED_FULL when a
 * pinned put would exceed the cap; KVS_ETOOBIG over max_block_bytes,
 * KVS_ETOOSMALL under min_block_bytes (logged once, naming it); KVS_EBUSY
 * when the old block with that key is referenced.
 */
int kvs_store_put(kvs_store_t *store, const kvs_put_args_t *args);

/* Puts n blocks; status_out[i] gets each one's result. Durable blocks in one
 * batch share one disk flush and one index commit. Returns 0 when every put
 * succeeded, else the first error. */
int kvs_store_put_batch(kvs_store_t *store, const kvs_put_args_t *args,
                        size_t n, int *status_out);

/*
 * Streaming puts, for blocks whose parts arrive one at a time (prefill
 * produces them layer by layer). put_begin reserves the block from args
 * (parts[i].len give the part lengths; parts[i].base is not read) and
 * returns it in *stream, which the caller owns (no allocation here). The
 * block is invisible to match, get and exists until put_seal: a partial
 * block never counts as a hit. Each part is written either by
 * put_part (a copy) or directly at put_part_buf (for example by the
 * network), followed by put_part_done. put_seal fails with
 * KVS_EINCOMPLETE until every part is done, and then publishes the block
 * like kvs_store_put (durable if args->flags asked). put_abort drops it.
 * After seal (whatever it returned) or abort the stream is spent.
 * KVS_EBUSY from put_begin: the admission filter declined the block.
 */
typedef struct kvs_put_stream {
    void *ref; /* the store's; do not touch */
    uint32_t ns;
    uint32_t nparts;
    uint32_t ndone; /* parts done */
    uint32_t flags;
    bool has_xxh;      /* after a seal in a shared arena: data_xxh is the */
    uint64_t data_xxh; /* block's checksum (XXH3-64), settled at the seal */
    uint64_t done[KVS_PARTS_MAX / 64];
} kvs_put_stream_t;

int kvs_store_put_begin(kvs_store_t *store, const kvs_put_args_t *args,
                        kvs_put_stream_t *stream);
/* Where part's bytes go (in the DRAM arena) and their length; NULL if the
 * part does not exist. Valid until seal or abort. */
void *kvs_store_put_part_buf(kvs_store_t *store, kvs_put_stream_t *stream,
                             uint32_t part, size_t *len_out);
/* Copies part's bytes; KVS_EPROTO if len is not the part's length. */
int kvs_store_put_part(kvs_store_t *store, kvs_put_stream_t *stream,
                       uint32_t part, const void *data, size_t len);
int kvs_store_put_part_done(kvs_store_t *store, kvs_put_stream_t *stream,
                            uint32_t part);
int kvs_store_put_seal(kvs_store_t *store, kvs_put_stream_t *stream);
/* Seals a block that another process wrote in place (a shared arena):
 * every part counts as done, and the part table (in the store's own
 * memory, never in the arena) is first set from part_lens (the caller's
 * own copy of the lengths given to put_begin, nparts entries). The
 * checksum is then computed here, over what the arena holds now. Returns
 * as kvs_store_put_seal. */
int kvs_store_put_seal_parts(kvs_store_t *store, kvs_put_stream_t *stream,
                             const uint32_t *part_lens);
/* As put_seal_parts, but with the block's checksum known (sum, non-NULL:
 * the XXH3-64 a peer settled when it sealed the same bytes, END's): in a
 * shared arena it is taken as is instead of computed over the arena, and
 * a copy that differs from it fails its check when read back from disk.
 * NULL: computed, as put_seal_parts. In a private arena the checksum is
 * the writer's either way (taken as the block goes to disk). */
int kvs_store_put_seal_sum(kvs_store_t *store, kvs_put_stream_t *stream,
                           const uint32_t *part_lens, const uint64_t *sum);
void kvs_store_put_abort(kvs_store_t *store, kvs_put_stream_t *stream);

/* What a get reports about a block. */
typedef struct kvs_block_info {
    uint64_t data_len; /* bytes, all parts */
    uint32_t nparts;
    uint8_t cls;        /* enum kvs_class */
    uint8_t tier;       /* enum kvs_tier, before this call */
    uint64_t expiry_ms; /* wall clock ms; 0: none */
    uint64_t group;
} kvs_block_info_t;

/* One get. buf/cap and part_lens/part_cap are the caller's. */
typedef struct kvs_get_args {
    uint32_t ns;
    uint32_t key_len;
    const void *key;
    void *buf;           /* receives the block's bytes */
    size_t cap;          /* bytes available at buf */
    uint32_t *part_lens; /* optional: receives each part's length */
    uint32_t part_cap;   /* entries available at part_lens */
} kvs_get_args_t;

/*
 * Copies a block into args->buf. From disk, the checksum is verified before
 * any byte is reported; a block that fails it is KVS_ENOTFOUND and counted
 * in stats.corrupt_reads. -ENOBUFS when cap (or part_cap) is too small; then
 * info_out is still filled so the caller can retry with a larger buffer.
 */
int kvs_store_get(kvs_store_t *store, const kvs_get_args_t *args,
                  kvs_block_info_t *info_out);

/* Gets n blocks, with up to io_depth disk reads in flight at once.
 * status_out[i] and infos_out[i] (optional) get each block's result. */
int kvs_store_get_batch(kvs_store_t *store, const kvs_get_args_t *args,
                        size_t n, kvs_block_info_t *infos_out, int *status_out);

/* A referenced, zero-copy view of a block in DRAM. Valid until unpinned. */
typedef struct kvs_view {
    const void *data; /* the block's bytes, in the DRAM arena */
    uint64_t len;     /* bytes */
    uint32_t nparts;
    const uint32_t *part_lens; /* nparts entries, in the store's own
                                * memory (not the arena): trusted */
    uint64_t arena_off;        /* offset of data within the arena */
    uint8_t cls;               /* enum kvs_class of the block */
    uint8_t tier;              /* enum kvs_tier it was found in: NVMe
                                  when this pin read it from disk */
    bool has_xxh;              /* shared arena: data_xxh is the checksum */
    uint64_t data_xxh;         /* settled at the block's seal */
    void *ref;                 /* the store's handle; do not touch */
} kvs_view_t;

/*
 * Takes a reference on a block, reading it into DRAM first if it is on disk
 * only. While referenced the block stays in DRAM at the same address and is
 * neither degraded nor evicted; a delete or a replacing put fails with
 * KVS_EBUSY. view_out may be NULL. Every successful pin needs one unpin.
 */
int kvs_store_pin(kvs_store_t *store, uint32_t ns, const void *key,
                  uint32_t key_len, kvs_view_t *view_out);
/* Pin flags (kvs_store_pin_flags). */
#define KVS_PIN_GET                                                            \
    (1u << 0) /* a read for a client: counted in gets,                         \
               * hits (by tier) and misses */
#define KVS_PIN_NO_READ                                                        \
    (1u << 1) /* never read the disk: -EWOULDBLOCK                             \
               * when the block is on disk only (then                          \
               * nothing is counted) */

/* kvs_store_pin() with flags; *tier_out (optional) gets the tier the block
 * was in before the call. */
int kvs_store_pin_flags(kvs_store_t *store, uint32_t ns, const void *key,
                        uint32_t key_len, uint32_t flags, kvs_view_t *view_out,
                        uint8_t *tier_out);
/* Drops a reference taken by kvs_store_pin(), by view or by key. */
void kvs_store_unpin_view(kvs_store_t *store, kvs_view_t *view);
int kvs_store_unpin(kvs_store_t *store, uint32_t ns, const void *key,
                    uint32_t key_len);

/* A key for the batch calls. */
typedef struct kvs_key {
    const void *data;
    uint32_t len;
} kvs_key_t;

/* present_out[i] = 1 if keys[i] is present (sealed, not expired), else 0. */
int kvs_store_exists(kvs_store_t *store, uint32_t ns, const kvs_key_t *keys,
                     size_t n, uint8_t *present_out);

/* Match flags. */
#define KVS_MATCH_PIN (1u << 0) /* take a reference on each matched block */
#define KVS_MATCH_NO_READ                                                      \
    (1u << 1) /* with PIN: never read the disk; a                              \
               * matched block on disk only ends the                           \
               * call with -EWOULDBLOCK and no                                 \
               * references taken */

/*
 * Longest present prefix: *matched_out = the number of leading keys, in
 * order, that are present. tiers_out (optional, n entries) gets the tier of
 * each matched block. With KVS_MATCH_PIN each matched block is referenced
 * as by kvs_store_pin() (the caller unpins each one). Answered from memory:
 * no disk or RocksDB read.
 */
int kvs_store_match(kvs_store_t *store, uint32_t ns, const kvs_key_t *keys,
                    size_t n, uint32_t flags, uint8_t *tiers_out,
                    size_t *matched_out);

/* Removes a block from every tier. KVS_ENOTFOUND if absent, KVS_EBUSY if
 * referenced. */
int kvs_store_delete(kvs_store_t *store, uint32_t ns, const void *key,
                     uint32_t key_len);

/* Changes a block's class and TTL (ttl_ms 0: no expiry). */
int kvs_store_set_retention(kvs_store_t *store, uint32_t ns, const void *key,
                            uint32_t key_len, uint8_t cls, uint64_t ttl_ms);

/* Brings blocks from disk into DRAM ahead of need. Stops without evicting
 * pinned or referenced blocks when DRAM is short; *promoted_out counts the
 * blocks now in DRAM that were not before. */
int kvs_store_promote(kvs_store_t *store, uint32_t ns, const kvs_key_t *keys,
                      size_t n, size_t *promoted_out);

/*
 * Lists the blocks of namespace ns (only those of group, if group is not
 * 0): cb gets each one's key, parent and info, pointers valid during the
 * call only. cb runs with the store's lock held: it must only copy what it
 * needs and must not call the store. A non-zero return from cb stops the
 * scan. *count_out (optional) gets the number of blocks reported. Meant for
 * offline tools (export, promote by group): it visits the whole table.
 */
typedef int (*kvs_scan_cb)(void *arg, const void *key, uint32_t key_len,
                           const void *parent, uint32_t parent_len,
                           const kvs_block_info_t *info);
int kvs_store_scan(kvs_store_t *store, uint32_t ns, uint64_t group,
                   kvs_scan_cb cb, void *arg, uint64_t *count_out);

/* Writes every DRAM-only block to disk and makes data and index durable. */
int kvs_store_flush(kvs_store_t *store);

/* Counters since open (and gauges, marked). */
typedef struct kvs_store_stats {
    uint64_t blocks;              /* gauge: blocks present */
    uint64_t dram_blocks;         /* gauge */
    uint64_t nvme_blocks;         /* gauge */
    uint64_t dram_used_bytes;     /* gauge */
    uint64_t dram_capacity_bytes; /* gauge */
    uint64_t nvme_used_bytes;     /* gauge: bytes in regions holding data */
    uint64_t nvme_capacity_bytes; /* gauge */
    uint64_t pinned_bytes;        /* gauge: pinned class, logical bytes */
    uint64_t refs;                /* gauge: references held */
    uint64_t puts, gets, hits, misses;
    uint64_t dram_hits, nvme_hits;
    uint64_t degraded;      /* blocks written behind to disk */
    uint64_t evicted;       /* blocks dropped to make room */
    uint64_t expired;       /* user blocks dropped at their TTL */
    uint64_t promoted;      /* disk to DRAM */
    uint64_t corrupt_reads; /* disk reads that failed a check */
    uint64_t full_errors;   /* puts answered KVS_EFULL */
    uint64_t regions_reclaimed;
    uint64_t bytes_written;          /* to the data file */
    uint64_t bytes_read;             /* from the data file */
    uint64_t logical_bytes_degraded; /* before compression */
    uint64_t stored_bytes_degraded;  /* after compression */
    uint64_t matches;                /* match calls */
    uint64_t match_keys;             /* keys they asked about */
    uint64_t match_hits;             /* keys they found (the matched prefix) */
    uint64_t match_dram_hits, match_nvme_hits; /* the same, by tier */
    uint64_t io_errors;             /* disk reads and writes that failed */
    uint64_t degrade_backlog_bytes; /* gauge: DRAM bytes queued to degrade */
    uint64_t admission_rejected;    /* blocks kept off the disk by the filter */
    uint64_t compress_skipped; /* blocks written raw to keep up (backlog) */
    /* The store's lock as the calls a request makes take it (match,
     * exists, pin, unpin, a put's begin and commit), and its reader lock
     * as disk reads take it: acquisitions, those that found it held by
     * another thread, and the time they waited (store_int.h). */
    uint64_t lock_acquired, lock_contended, lock_wait_us;
    uint64_t rlock_acquired, rlock_contended, rlock_wait_us;
} kvs_store_stats_t;

void kvs_store_stats(kvs_store_t *store, kvs_store_stats_t *stats_out);

/* Walks the store's own lists (the DRAM LRU list both ways, the TTL list)
 * and checks them against the block table: for tests. 0 when consistent,
 * else KVS_ECORRUPT, with the first thing found wrong logged. */
int kvs_store_check(kvs_store_t *store);

/* Called by kvs_store_verify() for each block on disk that fails a check. */
typedef void (*kvs_verify_cb)(void *arg, uint32_t ns, const void *key,
                              uint32_t key_len, int status);

/* Reads every block on disk and checks its header and checksum. *bad_out
 * counts the failures (each reported to cb if non-NULL); bad blocks are
 * dropped from the index. */
int kvs_store_verify(kvs_store_t *store, kvs_verify_cb cb, void *arg,
                     uint64_t *checked_out, uint64_t *bad_out);
/* The same for the blocks of namespace ns only. */
int kvs_store_verify_ns(kvs_store_t *store, uint32_t ns, kvs_verify_cb cb,
                        void *arg, uint64_t *checked_out, uint64_t *bad_out);

/* kvs_store_verify() (ns NULL) or kvs_store_verify_ns() (*ns) paced to
 * at most max_bps bytes read per second (0: as fast as the disk goes),
 * stopping with -ECANCELED as soon as *stop (if not NULL) becomes
 * non-zero; the counts so far are then not reported. For a daemon that
 * verifies in the background. */
int kvs_store_verify_paced(kvs_store_t *store, const uint32_t *ns,
                           kvs_verify_cb cb, void *arg, uint64_t max_bps,
                           const atomic_int *stop, uint64_t *checked_out,
                           uint64_t *bad_out);

/* Arena access for transports that register it (UCX). Valid until close. */
void *kvs_store_arena(kvs_store_t *store, size_t *len_out);
/* The arena's memfd when cfg.dram_shared, else -1. Owned by the store;
 * valid until close (dup it to keep it). */
int kvs_store_arena_fd(kvs_store_t *store);
/* Whether the shared arena's file was cut under it (kvs_arena_cut): its
 * fd must not be handed out any more. Takes no lock. */
bool kvs_store_arena_cut(kvs_store_t *store);

/* ---- The block codec on this machine (implemented in codec.c) ----
 * The only codec entry point outside kvstore/: the codec itself
 * (kvstore/codec.h) is an engine internal. */

/* Speed and ratio of one encoding path, measured on one sample. */
typedef struct kvs_codec_path_perf {
    double ratio;          /* raw bytes / encoded bytes (1.0 if RAW) */
    double compress_bps;   /* raw bytes encoded per second */
    double decompress_bps; /* raw bytes decoded per second */
    uint8_t codec;         /* codec id the encoder chose on the sample */
    uint8_t planes;        /* SHUF_ZSTD: planes in the format */
    uint8_t planes_zstd;   /* SHUF_ZSTD: planes that went through zstd */
} kvs_codec_path_perf_t;

/* What kvs_codec_measure() reports. Throughputs are per thread. */
typedef struct kvs_codec_perf {
    size_t sample_len;               /* bytes measured */
    int level;                       /* zstd level used */
    kvs_codec_path_perf_t raw;       /* RAW: a copy, the floor of any path */
    kvs_codec_path_perf_t zstd;      /* plain zstd */
    kvs_codec_path_perf_t shuf_zstd; /* shuffle + zstd; all zero unless
                                      * elem_size is 2 or 4 */
    double shuffle_bps;              /* the shuffle alone, bytes per second */
    double unshuffle_bps;            /* the unshuffle alone, bytes per second */
} kvs_codec_perf_t;

/*
 * Measures, on one thread and on this machine, the throughput and ratio of
 * each path on sample (len bytes, a representative block). Each figure is
 * the best of repeated runs over about 30 ms with a warm cache, so the call
 * takes roughly 0.25 s. Encodes use min_saving_pct 0, so a path whose output
 * would not be smaller reports ratio 1 and the time spent finding that out.
 *
 * Meant for start-up and for kvstash-bench (codec and store modes): compare
 * compress_bps / ratio (bytes written per second) with the disk's write speed
 * measured in the same run to choose the path that does not limit the drain to
 * NVMe. Allocates its own context and buffers (not for the data path).
 *
 * Errors: -EINVAL (len 0, NULL, level <= 0, bad elem_size), -ENOMEM,
 * KVS_ECODEC.
 */
int kvs_codec_measure(const void *sample, size_t len, uint32_t elem_size,
                      int level, kvs_codec_perf_t *perf_out);

#ifdef __cplusplus
}
#endif
#endif
