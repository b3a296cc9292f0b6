/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NVMe tier data file.
 *
 * The file is preallocated and cut into regions. A region is written front
 * to back, never rewritten in place; when it is reclaimed its generation
 * changes, which invalidates every index entry that still points into it.
 *
 *   data file:  | region 0 | region 1 | region 2 | ...          |
 *   region:     | block | block | block |  ...  | unused tail   |
 *   block:      | header (136 + 4*nparts) | pad | payload | pad to 4 KiB |
 *               ^ 4 KiB aligned                 ^ 4 KiB aligned
 *
 * The payload starts on its own 4 KiB boundary so that a block in DRAM is
 * written straight from the arena, without a copy: one gathered write of
 * its header page, built here in the segment's own memory, and its bytes
 * where they are (kvs_segment_append_image). The header never comes from
 * the arena, which same-host clients may map and write (the shm socket):
 * what such a client can change on the way to disk is the payload, which
 * its checksum covers, and padding. Padding bytes carry no meaning and are
 * not checked.
 *
 * Block header, little-endian:
 *
 *   off size field                 off size field
 *     0   4  magic "KVSB"            32   4  nparts
 *     4   2  version (1)             36   4  reserved (0)
 *     6   1  codec                   40   8  raw_len
 *     7   1  elem_size               48   8  stored_len
 *     8   8  region generation       56   8  XXH3-64 of the raw bytes
 *    16   8  XXH3-64 of (ns, key)    64   8  header checksum (below)
 *    24   4  namespace id            72  64  key, zero padded
 *    28   2  key_len                136  4n  part lengths
 *    30   2  header length
 *
 * The header checksum is XXH3-64 of bytes [136, hdr_len) seeded with XXH3-64
 * of bytes [0, 64). A read trusts nothing until magic, version, both
 * checksums, the generation and every length agree.
 *
 * Writes go through four 4 KiB-aligned buffers registered with io_uring: an
 * append copies header and payload into the current buffer; a full buffer
 * is submitted as one write and the next one is filled meanwhile, so the
 * copy overlaps the disk. flush() submits the partial buffer and waits for
 * all of them. Reads use bounce slots, each as large as the largest block
 * on disk. Registering a buffer with io_uring pins it, resident from open,
 * so the slots are registered only while they add up to READ_REGISTER_MAX
 * at most; past that (16 MiB blocks: 15 slots, 240 MiB) they are mapped
 * unpopulated and read into without registration, and each becomes
 * resident as far as the largest block read into it.
 */
#include "kvstore/segment.h"
#include "kvstore/ring.h"
#include "common/debug.h"
#include "common/endian.h"
#include "common/log.h"
#include "kvstash/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xxh.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "part tables are read in place: little-endian hosts only");
_Static_assert(KVS_SEG_HDR_FIXED == 72 + KVS_KEY_MAX, "header layout");

#define NWBUF 4
/* A header page of a block written in place: the largest header, padded. */
#define HDR_SLOT KVS_ALIGN_UP(KVS_SEG_HDR_MAX, KVS_SEG_ALIGN)

/* One write from a block's payload in place: its header page (in hdrs) and
 * the two pieces written, kept until the write completes. */
struct hslot {
    uint64_t tag; /* the caller's, reported at completion */
    struct iovec iov[2];
};

struct wbuf {
    uint8_t *mem;      /* write_buf_bytes, 4 KiB aligned */
    uint64_t file_off; /* where mem[0] goes */
    uint32_t fill;     /* bytes appended */
    bool in_flight;
};

struct kvs_segment {
    int fd;
    uint64_t file_bytes;
    uint32_t region_bytes;
    uint32_t nregions;
    uint32_t max_disk_len;
    bool preallocated; /* whole file reserved at open */

    /* Writer side. */
    kvs_ring_t *wring;
    bool wring_fixed; /* buffers registered */
    struct wbuf wb[NWBUF];
    uint32_t wbuf_bytes;
    unsigned cur;         /* buffer being filled */
    uint32_t region;      /* open region, or UINT32_MAX */
    uint64_t gen;         /* its generation */
    uint64_t region_fill; /* bytes appended into it */
    int write_err;        /* first write error since the last flush */
    kvs_segment_write_cb write_cb;
    void *write_cb_arg;
    /* Writes in place: nhdrs header pages of HDR_SLOT bytes, private to
     * this process, one per write in flight; free ones on a stack. */
    uint8_t *hdrs;
    struct hslot *hslot;
    uint32_t *hdr_free;
    unsigned nhdrs, nhdr_free;

    /* Reader side. */
    kvs_ring_t *rring;
    bool rring_fixed;
    unsigned nslots;
    uint8_t *slots;   /* nslots * max_disk_len, mapped */
    size_t slots_len; /* of the mapping */
};

uint32_t kvs_segment_hdr_bytes(uint32_t nparts)
{
    return KVS_ALIGN_UP(KVS_SEG_HDR_FIXED + 4u * nparts, KVS_SEG_ALIGN);
}

uint32_t kvs_segment_disk_len(uint32_t key_len, uint32_t nparts,
                              uint64_t stored_len)
{
    (void)key_len;
    return (uint32_t)(kvs_segment_hdr_bytes(nparts) +
                      KVS_ALIGN_UP(stored_len, (uint64_t)KVS_SEG_ALIGN));
}

/* Creates a ring with registered buffers, or without them if the kernel
 * will not pin that much memory (RLIMIT_MEMLOCK); io_uring itself being
 * refused is an error. */
#define READ_REGISTER_MAX (32u << 20)

static void slots_unmap(kvs_segment_t *s)
{
    if (s->slots)
        munmap(s->slots, s->slots_len);
    s->slots = NULL;
}

/* Frees the buffers kvs_segment_open made (NULL ones are skipped). */
static void bufs_free(kvs_segment_t *s)
{
    slots_unmap(s);
    for (unsigned i = 0; i < NWBUF; i++)
        free(s->wb[i].mem);
    free(s->hdrs);
    free(s->hslot);
    free(s->hdr_free);
}

static int ring_setup(unsigned depth, int fd, struct iovec *iov, unsigned n,
                      kvs_ring_t **ring_out, bool *fixed_out)
{
    int ret = kvs_ring_create(depth, fd, iov, n, ring_out);

    *fixed_out = ret == 0;
    if (ret == 0 || ret == KVS_EURING || ret == -EINVAL)
        return ret;
    kvs_warn("segment: using unregistered I/O buffers");
    return kvs_ring_create(depth, fd, NULL, 0, ring_out);
}

int kvs_segment_open(const kvs_segment_config_t *cfg, kvs_segment_t **seg_out)
{
    kvs_segment_t *s;
    struct iovec iov[NWBUF];
    struct iovec *riov = NULL;
    struct stat st;
    int ret;

    if (cfg->region_bytes < (1u << 20) || cfg->region_bytes % (1u << 20) ||
        cfg->file_bytes < cfg->region_bytes || cfg->read_slots == 0 ||
        cfg->io_depth == 0 || cfg->max_block_bytes == 0)
        return KVS_ECONFIG;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->region = UINT32_MAX;
    s->region_bytes = cfg->region_bytes;
    s->nregions = (uint32_t)(cfg->file_bytes / cfg->region_bytes);
    s->file_bytes = (uint64_t)s->nregions * cfg->region_bytes;
    s->max_disk_len =
        kvs_segment_disk_len(KVS_KEY_MAX, KVS_PARTS_MAX, cfg->max_block_bytes);
    if (s->max_disk_len > s->region_bytes) {
        kvs_error("segment: a block of %u bytes does not fit a region of %u",
                  cfg->max_block_bytes, s->region_bytes);
        ret = KVS_ECONFIG;
        goto err_free;
    }
    /* Not sized for the largest block: one larger than a buffer is
     * written from its own memory (kvs_segment_append_image). */
    s->wbuf_bytes = KVS_ALIGN_UP(
        KVS_MAX(cfg->write_buf_bytes, 2 * KVS_SEG_ALIGN), KVS_SEG_ALIGN);

    s->fd = open(cfg->path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        ret = -errno;
        kvs_error("segment: open %s with O_DIRECT: %m%s", cfg->path,
                  errno == EINVAL ? " (the file system does not support "
                                    "O_DIRECT)"
                                  : "");
        goto err_free;
    }
    if (fstat(s->fd, &st) < 0) {
        ret = -errno;
        goto err_close;
    }
    ret = posix_fallocate(s->fd, 0, (off_t)s->file_bytes);
    if (ret == 0) {
        s->preallocated = true;
    } else {
        /* Not fatal: regions are reserved one at a time as they open, and
         * a region that cannot be reserved is reported as full. */
        kvs_warn("segment: cannot preallocate %llu bytes for %s: %s; "
                 "reserving regions as they are opened",
                 (unsigned long long)s->file_bytes, cfg->path, strerror(ret));
        if (ftruncate(s->fd, (off_t)KVS_MAX((uint64_t)st.st_size,
                                            s->file_bytes)) < 0) {
            ret = -errno;
            kvs_error("segment: ftruncate %s: %m", cfg->path);
            goto err_close;
        }
    }

    for (unsigned i = 0; i < NWBUF; i++) {
        if (posix_memalign((void **)&s->wb[i].mem, KVS_SEG_ALIGN,
                           s->wbuf_bytes)) {
            ret = -ENOMEM;
            goto err_bufs;
        }
        iov[i] = (struct iovec){s->wb[i].mem, s->wbuf_bytes};
    }
    s->nslots = cfg->read_slots;
    s->slots_len = (size_t)s->nslots * s->max_disk_len;
    s->slots = mmap(NULL, s->slots_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->slots == MAP_FAILED) {
        s->slots = NULL;
        ret = -ENOMEM;
        goto err_bufs;
    }
    riov = calloc(s->nslots, sizeof(*riov));
    if (!riov) {
        ret = -ENOMEM;
        goto err_bufs;
    }
    for (unsigned i = 0; i < s->nslots; i++)
        riov[i] = (struct iovec){s->slots + (size_t)i * s->max_disk_len,
                                 s->max_disk_len};
    s->nhdrs = KVS_MAX(cfg->io_depth, NWBUF);
    s->hslot = calloc(s->nhdrs, sizeof(*s->hslot));
    s->hdr_free = calloc(s->nhdrs, sizeof(*s->hdr_free));
    if (!s->hslot || !s->hdr_free ||
        posix_memalign((void **)&s->hdrs, KVS_SEG_ALIGN,
                       (size_t)s->nhdrs * HDR_SLOT)) {
        ret = -ENOMEM;
        goto err_bufs;
    }
    for (unsigned i = 0; i < s->nhdrs; i++)
        s->hdr_free[i] = s->nhdrs - 1 - i;
    s->nhdr_free = s->nhdrs;
    ret = ring_setup(2 * KVS_MAX(cfg->io_depth, NWBUF), s->fd, iov, NWBUF,
                     &s->wring, &s->wring_fixed);
    if (ret)
        goto err_bufs;
    bool reg = s->slots_len <= READ_REGISTER_MAX;
    ret = ring_setup(cfg->io_depth, s->fd, reg ? riov : NULL,
                     reg ? s->nslots : 0, &s->rring, &s->rring_fixed);
    if (ret)
        goto err_wring;
    s->rring_fixed = s->rring_fixed && reg;
    free(riov);
    *seg_out = s;
    return 0;

err_wring:
    kvs_ring_destroy(s->wring);
err_bufs:
    free(riov);
    bufs_free(s);
err_close:
    close(s->fd);
err_free:
    free(s);
    return ret;
}

void kvs_segment_close(kvs_segment_t *s)
{
    if (!s)
        return;
    kvs_segment_flush(s);
    kvs_ring_destroy(s->wring);
    kvs_ring_destroy(s->rring);
    bufs_free(s);
    close(s->fd);
    free(s);
}

bool kvs_segment_preallocated(const kvs_segment_t *s)
{
    return s->preallocated;
}

uint32_t kvs_segment_nregions(const kvs_segment_t *s)
{
    return s->nregions;
}

uint32_t kvs_segment_region_bytes(const kvs_segment_t *s)
{
    return s->region_bytes;
}

uint32_t kvs_segment_max_disk_len(const kvs_segment_t *s)
{
    return s->max_disk_len;
}

uint32_t kvs_segment_buf_bytes(const kvs_segment_t *s)
{
    return s->wbuf_bytes;
}

static void write_done(void *arg, uint64_t user_data, int res)
{
    kvs_segment_t *s = arg;

    if (user_data >= NWBUF) {
        /* A block written from its payload in place: its header page is
         * free again. */
        unsigned h = (unsigned)(user_data - NWBUF);
        kvs_assert(h < s->nhdrs);
        uint64_t tag = s->hslot[h].tag;
        s->hdr_free[s->nhdr_free++] = h;
        if (res < 0 && s->write_err == 0) {
            s->write_err = res;
            kvs_error("segment: direct write failed: %s", strerror(-res));
        }
        if (s->write_cb)
            s->write_cb(s->write_cb_arg, tag, res < 0 ? res : 0);
        return;
    }
    s->wb[user_data].in_flight = false;
    if (res < 0 && s->write_err == 0) {
        s->write_err = res;
        kvs_error("segment: write of %u bytes at %llu failed: %s",
                  s->wb[user_data].fill,
                  (unsigned long long)s->wb[user_data].file_off,
                  strerror(-res));
    }
    /* The buffer is free for the next fill. */
    s->wb[user_data].fill = 0;
    if (s->write_cb)
        s->write_cb(s->write_cb_arg, (unsigned)user_data, res < 0 ? res : 0);
}

static int wbuf_submit(kvs_segment_t *s, unsigned i)
{
    struct wbuf *b = &s->wb[i];
    int ret;

    /* A buffer in flight keeps its fill until it completes: submitting it
     * again would write whatever fills it next over its old place. */
    if (b->fill == 0 || b->in_flight)
        return 0;
    /* A full ring (direct writes share it) makes room by reaping. */
    while ((ret = kvs_ring_write(s->wring, s->wring_fixed ? (int)i : -1, b->mem,
                                 b->fill, b->file_off, i)) == -EBUSY) {
        kvs_ring_submit(s->wring);
        ret = kvs_ring_reap(s->wring, 1, write_done, s);
        if (ret < 0)
            break;
    }
    if (ret == 0)
        ret = kvs_ring_submit(s->wring);
    if (ret < 0) {
        if (s->write_err == 0)
            s->write_err = ret;
        return ret;
    }
    b->in_flight = true;
    return 0;
}

static int wbuf_wait(kvs_segment_t *s, unsigned i)
{
    while (s->wb[i].in_flight) {
        int ret = kvs_ring_reap(s->wring, 1, write_done, s);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void kvs_segment_set_write_cb(kvs_segment_t *s, kvs_segment_write_cb cb,
                              void *arg)
{
    s->write_cb = cb;
    s->write_cb_arg = arg;
}

unsigned kvs_segment_last_buf(const kvs_segment_t *s)
{
    return s->cur;
}

int kvs_segment_submit(kvs_segment_t *s)
{
    int ret;

    if (s->wb[s->cur].fill == 0 || s->wb[s->cur].in_flight)
        return 0;
    ret = wbuf_submit(s, s->cur);
    s->cur = (s->cur + 1) % NWBUF;
    return ret;
}

int kvs_segment_append_image(kvs_segment_t *s, const kvs_seg_block_t *blk,
                             const uint8_t *payload, uint64_t tag,
                             kvs_seg_loc_t *loc_out)
{
    uint32_t disk_len =
        kvs_segment_disk_len(blk->key_len, blk->nparts, blk->stored_len);
    uint32_t hdr_bytes = kvs_segment_hdr_bytes(blk->nparts);
    uint64_t off;
    int ret;

    kvs_assert(tag >= NWBUF);
    kvs_assert(((uintptr_t)payload & (KVS_SEG_ALIGN - 1)) == 0);
    if (s->region == UINT32_MAX || s->region_fill + disk_len > s->region_bytes)
        return -ENOSPC;
    if (disk_len > s->max_disk_len)
        return KVS_ETOOBIG;
    /* The buffer being filled ends where this block starts. */
    if (s->wb[s->cur].fill && !s->wb[s->cur].in_flight) {
        wbuf_submit(s, s->cur);
        s->cur = (s->cur + 1) % NWBUF;
    }
    /* A header page: every one in use is a write in flight. */
    while (s->nhdr_free == 0) {
        kvs_ring_submit(s->wring);
        ret = kvs_ring_reap(s->wring, 1, write_done, s);
        if (ret < 0)
            return ret;
    }
    unsigned h = s->hdr_free[--s->nhdr_free]; /* given back by write_done */
    struct hslot *hs = &s->hslot[h];
    uint8_t *hdr = s->hdrs + (size_t)h * HDR_SLOT;
    uint32_t hdr_len = kvs_segment_block_encode(blk, s->gen, hdr);
    memset(hdr + hdr_len, 0, hdr_bytes - hdr_len);
    hs->tag = tag;
    hs->iov[0] = (struct iovec){hdr, hdr_bytes};
    hs->iov[1] = (struct iovec){(void *)payload, disk_len - hdr_bytes};
    off = (uint64_t)s->region * s->region_bytes + s->region_fill;
    unsigned niov = disk_len > hdr_bytes ? 2 : 1;
    while ((ret = kvs_ring_writev(s->wring, hs->iov, niov, off, NWBUF + h)) == -EBUSY) {
        kvs_ring_submit(s->wring);
        int rret = kvs_ring_reap(s->wring, 1, write_done, s);
        if (rret < 0) {
            ret = rret;
            break;
        }
    }
    if (ret) {
        s->hdr_free[s->nhdr_free++] = h;
        return ret;
    }
    ret = kvs_ring_submit(s->wring);
    if (ret < 0)
        return ret;
    loc_out->off = off;
    loc_out->gen = s->gen;
    loc_out->region = s->region;
    loc_out->disk_len = disk_len;
    s->region_fill += disk_len;
    return 0;
}

int kvs_segment_poll(kvs_segment_t *s, bool wait)
{
    int ret;

    if (kvs_ring_inflight(s->wring) == 0)
        return 0;
    ret = kvs_ring_reap(s->wring, wait ? 1 : 0, write_done, s);
    return ret < 0 ? ret : 0;
}

unsigned kvs_segment_writes_inflight(const kvs_segment_t *s)
{
    return kvs_ring_inflight(s->wring);
}

/* Writes out what is buffered; errors stay in write_err for the next
 * kvs_segment_flush() to report. */
static void flush_keep_error(kvs_segment_t *s)
{
    wbuf_submit(s, s->cur);
    while (kvs_ring_inflight(s->wring)) {
        int ret = kvs_ring_reap(s->wring, 1, write_done, s);
        if (ret < 0) {
            if (s->write_err == 0)
                s->write_err = ret;
            break;
        }
    }
    s->cur = (s->cur + 1) % NWBUF;
}

int kvs_segment_flush(kvs_segment_t *s)
{
    int ret;

    flush_keep_error(s);
    ret = s->write_err;
    s->write_err = 0;
    return ret;
}

int kvs_segment_sync(kvs_segment_t *s)
{
    if (fdatasync(s->fd) < 0) {
        int ret = -errno;
        kvs_error("segment: fdatasync: %m");
        return ret;
    }
    return 0;
}

int kvs_segment_region_open(kvs_segment_t *s, uint32_t region, uint64_t gen)
{
    int ret;

    if (region >= s->nregions)
        return -EINVAL;
    flush_keep_error(s);
    if (!s->preallocated) {
        ret = fallocate(s->fd, 0, (off_t)region * s->region_bytes,
                        s->region_bytes);
        if (ret < 0) {
            ret = -errno;
            kvs_warn("segment: cannot reserve region %u: %m", region);
            return ret;
        }
    }
    s->region = region;
    s->gen = gen;
    s->region_fill = 0;
    return 0;
}

uint32_t kvs_segment_region_current(const kvs_segment_t *s)
{
    return s->region;
}

uint32_t kvs_segment_block_encode(const kvs_seg_block_t *blk, uint64_t gen,
                                  uint8_t *b)
{
    uint32_t hdr_len = KVS_SEG_HDR_FIXED + 4u * blk->nparts;

    kvs_assert(blk->key_len >= 1 && blk->key_len <= KVS_KEY_MAX);
    kvs_assert(blk->nparts >= 1 && blk->nparts <= KVS_PARTS_MAX);
    memset(b, 0, KVS_SEG_HDR_FIXED);
    kvs_le32_store(b, KVS_SEG_MAGIC);
    kvs_le16_store(b + 4, KVS_SEG_VERSION);
    b[6] = blk->codec;
    b[7] = blk->elem_size;
    kvs_le64_store(b + 8, gen);
    kvs_le64_store(b + 16, blk->key_hash);
    kvs_le32_store(b + 24, blk->ns);
    kvs_le16_store(b + 28, (uint16_t)blk->key_len);
    kvs_le16_store(b + 30, (uint16_t)hdr_len);
    kvs_le32_store(b + 32, blk->nparts);
    kvs_le64_store(b + 40, blk->raw_len);
    kvs_le64_store(b + 48, blk->stored_len);
    kvs_le64_store(b + 56, blk->data_xxh);
    memcpy(b + 72, blk->key, blk->key_len);
    for (uint32_t i = 0; i < blk->nparts; i++)
        kvs_le32_store(b + KVS_SEG_HDR_FIXED + 4 * i, blk->part_lens[i]);
    kvs_le64_store(
        b + 64, XXH3_64bits_withSeed(b + 72, hdr_len - 72, XXH3_64bits(b, 64)));
    return hdr_len;
}

int kvs_segment_block_decode(const uint8_t *b, const kvs_seg_loc_t *loc,
                             kvs_seg_block_t *out, const uint8_t **payload_out)
{
    kvs_seg_block_t blk;
    uint32_t hdr_len;
    uint64_t sum = 0;

    if (loc->disk_len < KVS_SEG_HDR_FIXED + 4)
        return KVS_ECORRUPT;
    if (kvs_le32_load(b) != KVS_SEG_MAGIC ||
        kvs_le16_load(b + 4) != KVS_SEG_VERSION)
        return KVS_ECORRUPT;
    hdr_len = kvs_le16_load(b + 30);
    blk.nparts = kvs_le32_load(b + 32);
    blk.key_len = kvs_le16_load(b + 28);
    if (blk.nparts == 0 || blk.nparts > KVS_PARTS_MAX ||
        hdr_len != KVS_SEG_HDR_FIXED + 4u * blk.nparts ||
        hdr_len > loc->disk_len || blk.key_len == 0 ||
        blk.key_len > KVS_KEY_MAX)
        return KVS_ECORRUPT;
    if (kvs_le64_load(b + 64) !=
        XXH3_64bits_withSeed(b + 72, hdr_len - 72, XXH3_64bits(b, 64)))
        return KVS_ECORRUPT;
    if (kvs_le64_load(b + 8) != loc->gen)
        return KVS_ECORRUPT;
    blk.codec = b[6];
    blk.elem_size = b[7];
    blk.key_hash = kvs_le64_load(b + 16);
    blk.ns = kvs_le32_load(b + 24);
    blk.raw_len = kvs_le64_load(b + 40);
    blk.stored_len = kvs_le64_load(b + 48);
    blk.data_xxh = kvs_le64_load(b + 56);
    blk.key = b + 72;
    blk.part_lens = (const uint32_t *)(const void *)(b + KVS_SEG_HDR_FIXED);
    uint32_t hdr_bytes = kvs_segment_hdr_bytes(blk.nparts);
    if (hdr_bytes > loc->disk_len || blk.stored_len > loc->disk_len - hdr_bytes)
        return KVS_ECORRUPT;
    for (uint32_t i = 0; i < blk.nparts; i++)
        sum += blk.part_lens[i];
    if (sum != blk.raw_len)
        return KVS_ECORRUPT;
    *out = blk;
    *payload_out = b + hdr_bytes;
    return 0;
}

int kvs_segment_append(kvs_segment_t *s, const kvs_seg_block_t *blk,
                       const kvs_iov_t *payload, unsigned niov,
                       kvs_seg_loc_t *loc_out)
{
    uint32_t disk_len =
        kvs_segment_disk_len(blk->key_len, blk->nparts, blk->stored_len);
    struct wbuf *b;
    uint8_t *p;
    int ret;

    if (s->region == UINT32_MAX || s->region_fill + disk_len > s->region_bytes)
        return -ENOSPC;
    if (disk_len > s->max_disk_len || disk_len > s->wbuf_bytes)
        return KVS_ETOOBIG;
    b = &s->wb[s->cur];
    if (b->fill + disk_len > s->wbuf_bytes) {
        wbuf_submit(s, s->cur);
        s->cur = (s->cur + 1) % NWBUF;
        b = &s->wb[s->cur];
    }
    if (b->in_flight) {
        ret = wbuf_wait(s, s->cur);
        if (ret < 0)
            return ret;
    }
    if (b->fill == 0)
        b->file_off = (uint64_t)s->region * s->region_bytes + s->region_fill;
    p = b->mem + b->fill;
    uint32_t hdr_len = kvs_segment_block_encode(blk, s->gen, p);
    uint32_t hdr_bytes = kvs_segment_hdr_bytes(blk->nparts);
    memset(p + hdr_len, 0, hdr_bytes - hdr_len);
    uint64_t copied = 0;
    for (unsigned i = 0; i < niov; i++) {
        memcpy(p + hdr_bytes + copied, payload[i].base, payload[i].len);
        copied += payload[i].len;
    }
    kvs_assert(copied == blk->stored_len);
    memset(p + hdr_bytes + copied, 0, disk_len - hdr_bytes - copied);
    loc_out->off = b->file_off + b->fill;
    loc_out->gen = s->gen;
    loc_out->region = s->region;
    loc_out->disk_len = disk_len;
    b->fill += disk_len;
    s->region_fill += disk_len;
    return 0;
}

unsigned kvs_segment_read_slots(const kvs_segment_t *s)
{
    return s->nslots;
}

const uint8_t *kvs_segment_slot(const kvs_segment_t *s, unsigned slot)
{
    return s->slots + (size_t)slot * s->max_disk_len;
}

int kvs_segment_read_submit(kvs_segment_t *s, const kvs_seg_loc_t *loc,
                            unsigned slot, uint64_t user_data)
{
    int ret;

    /* Locations come from the index on disk: check before use. */
    if (slot >= s->nslots || loc->disk_len == 0 ||
        loc->disk_len > s->max_disk_len || loc->off % KVS_SEG_ALIGN ||
        loc->disk_len % KVS_SEG_ALIGN || loc->region >= s->nregions ||
        loc->off < (uint64_t)loc->region * s->region_bytes ||
        loc->off + loc->disk_len >
            (uint64_t)(loc->region + 1) * s->region_bytes)
        return KVS_ECORRUPT;
    ret = kvs_ring_read(s->rring, s->rring_fixed ? (int)slot : -1,
                        s->slots + (size_t)slot * s->max_disk_len,
                        loc->disk_len, loc->off, user_data);
    return ret;
}

int kvs_segment_read_reap(kvs_segment_t *s, unsigned min,
                          kvs_segment_read_cb cb, void *arg)
{
    int ret = kvs_ring_submit(s->rring);

    if (ret < 0)
        return ret;
    return kvs_ring_reap(s->rring, min, cb, arg);
}

unsigned kvs_segment_read_inflight(const kvs_segment_t *s)
{
    return kvs_ring_inflight(s->rring);
}
