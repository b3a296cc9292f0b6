/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NVMe tier's data file: fixed-size regions written append-only through
 * io_uring with O_DIRECT, the on-disk block header, and verified reads.
 *
 * The segment knows nothing of keys' meaning, classes or eviction: the
 * store chooses which region to open next (reclaiming one if needed) and
 * records where each block went. Block locations are only final once
 * kvs_segment_flush() has returned 0 for the appends that made them.
 *
 * Thread-safety: the writer side (append, flush, sync, region_open) has one
 * owner at a time and the reader side (read_*) another; the store holds a
 * writer lock and a reader lock for that. The region table is read by the
 * store under its own lock.
 */
#ifndef KVS_SEGMENT_H
#define KVS_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstash/types.h"

#define KVS_SEG_ALIGN 4096u
#define KVS_SEG_MAGIC 0x4253564bu /* "KVSB" little-endian */
#define KVS_SEG_VERSION 1u
#define KVS_SEG_HDR_FIXED 136u /* fixed fields, then a 64-byte key area */
#define KVS_SEG_HDR_MAX (KVS_SEG_HDR_FIXED + 4u * KVS_PARTS_MAX)

typedef struct kvs_segment kvs_segment_t;

typedef struct kvs_segment_config {
    const char *path;    /* data file */
    uint64_t file_bytes; /* rounded down to whole regions */
    uint32_t region_bytes;
    uint32_t max_block_bytes;  /* largest raw block */
    uint32_t io_depth;         /* per ring */
    uint32_t read_slots;       /* bounce buffers for reads (>= 1) */
    uint32_t write_buf_bytes;  /* each of the 4 write buffers */
} kvs_segment_config_t;

/* Where a block is on disk. */
typedef struct kvs_seg_loc {
    uint64_t off; /* byte offset in the file */
    uint64_t gen; /* generation of its region when written */
    uint32_t region;
    uint32_t disk_len; /* bytes, 4 KiB multiple */
} kvs_seg_loc_t;

/* What the header says about a block (also what append writes). */
typedef struct kvs_seg_block {
    uint32_t ns;
    uint32_t key_len;
    const uint8_t *key;
    uint64_t key_hash;
    uint8_t codec;
    uint8_t elem_size;
    uint32_t nparts;
    const uint32_t *part_lens; /* on decode: points into the read buffer */
    uint64_t raw_len;
    uint64_t stored_len;
    uint64_t data_xxh; /* XXH3-64 of the raw bytes */
} kvs_seg_block_t;

int kvs_segment_open(const kvs_segment_config_t *cfg, kvs_segment_t **seg_out);
/* Waits for writes in flight. NULL is a no-op. */
void kvs_segment_close(kvs_segment_t *seg);

uint32_t kvs_segment_nregions(const kvs_segment_t *seg);
/* Whether the whole file was reserved at open (else regions are reserved
 * as they are opened, and that can fail with -ENOSPC). */
bool kvs_segment_preallocated(const kvs_segment_t *seg);
uint32_t kvs_segment_region_bytes(const kvs_segment_t *seg);
/* Largest disk_len of any block (header and padding included). */
uint32_t kvs_segment_max_disk_len(const kvs_segment_t *seg);
/* Bytes of each write buffer: the largest disk_len kvs_segment_append
 * takes (a larger block goes through kvs_segment_append_image). */
uint32_t kvs_segment_buf_bytes(const kvs_segment_t *seg);
/* Bytes of a block's header on disk, padding included (4 KiB multiple). */
uint32_t kvs_segment_hdr_bytes(uint32_t nparts);
/* Bytes a block of this shape takes on disk. */
uint32_t kvs_segment_disk_len(uint32_t key_len, uint32_t nparts,
                              uint64_t stored_len);

/*
 * Writer. region_open makes region the append target with generation gen,
 * after flushing what is buffered for the previous one; it reserves the
 * region's space (fallocate) when the file could not be preallocated and
 * fails with -ENOSPC if the file system has no room.
 */
int kvs_segment_region_open(kvs_segment_t *seg, uint32_t region, uint64_t gen);
/* The open region, or UINT32_MAX. */
uint32_t kvs_segment_region_current(const kvs_segment_t *seg);

/*
 * Copies the header and the payload (niov pieces, stored_len bytes in all)
 * into the write buffers and returns the block's location. -ENOSPC when the
 * open region has no room for it (open another and append again);
 * KVS_ETOOBIG when its disk_len is over kvs_segment_buf_bytes(). The data
 * reaches the file by the next flush; a write error there fails every
 * append since the previous flush.
 */
int kvs_segment_append(kvs_segment_t *seg, const kvs_seg_block_t *blk,
                       const kvs_iov_t *payload, unsigned niov,
                       kvs_seg_loc_t *loc_out);
/*
 * Asynchronous use. Appends fill one of four write buffers; a full buffer
 * is written while the next one fills. The callback, when set, is called
 * from inside append, submit, poll and flush each time a buffer's write
 * completes, with the buffer's number and 0 or -errno: the blocks appended
 * into that buffer are then on the file (not yet synced).
 */
typedef void (*kvs_segment_write_cb)(void *arg, uint64_t tag, int res);
void kvs_segment_set_write_cb(kvs_segment_t *seg, kvs_segment_write_cb cb,
                              void *arg);
/* The buffer that holds the block appended last. */
unsigned kvs_segment_last_buf(const kvs_segment_t *seg);
/*
 * Appends a block from its payload in place: stored_len bytes padded to
 * 4 KiB, at a 4 KiB-aligned address that stays valid until the write
 * completes. The header is built in the segment's own memory (nothing is
 * read from the payload's memory but the payload), and header and payload
 * go out in one gathered write, without a copy; its completion is reported
 * to the callback with tag (>= 4, unique among writes in flight).
 */
int kvs_segment_append_image(kvs_segment_t *seg, const kvs_seg_block_t *blk,
                             const uint8_t *payload, uint64_t tag,
                             kvs_seg_loc_t *loc_out);
/* Starts the write of the partly filled buffer without waiting. */
int kvs_segment_submit(kvs_segment_t *seg);
/* Reaps finished writes (with wait, at least one if any is in flight). */
int kvs_segment_poll(kvs_segment_t *seg, bool wait);
unsigned kvs_segment_writes_inflight(const kvs_segment_t *seg);

/* Writes everything appended and waits for it. -errno on a write error. */
int kvs_segment_flush(kvs_segment_t *seg);
/* fdatasync of the data file. */
int kvs_segment_sync(kvs_segment_t *seg);

/*
 * Reader. Reads go into bounce slots 0..read_slots-1. read_submit queues
 * the read of loc into slot (-EBUSY when io_depth reads are queued);
 * read_reap submits what is queued and waits for at least min completions.
 */
unsigned kvs_segment_read_slots(const kvs_segment_t *seg);
int kvs_segment_read_submit(kvs_segment_t *seg, const kvs_seg_loc_t *loc,
                            unsigned slot, uint64_t user_data);
typedef void (*kvs_segment_read_cb)(void *arg, uint64_t user_data, int res);
int kvs_segment_read_reap(kvs_segment_t *seg, unsigned min,
                          kvs_segment_read_cb cb, void *arg);
unsigned kvs_segment_read_inflight(const kvs_segment_t *seg);
const uint8_t *kvs_segment_slot(const kvs_segment_t *seg, unsigned slot);

/*
 * Checks a block read into buf (disk_len bytes from loc): magic, version,
 * header checksum, generation, and that lengths fit. On success fills
 * blk_out (pointing into buf) and *payload_out. KVS_ECORRUPT otherwise.
 * The payload's own checksum is the caller's to check after decoding.
 */
int kvs_segment_block_decode(const uint8_t *buf, const kvs_seg_loc_t *loc,
                             kvs_seg_block_t *blk_out,
                             const uint8_t **payload_out);
/* Writes a header for blk into buf (at least KVS_SEG_HDR_MAX bytes) for
 * generation gen; returns its length. */
uint32_t kvs_segment_block_encode(const kvs_seg_block_t *blk, uint64_t gen,
                                  uint8_t *buf);

#endif
