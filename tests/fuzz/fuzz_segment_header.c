/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for kvs_segment_block_decode(), the check of a block read
 * from the data file.
 *
 * The input is the block as read: it is copied into a 4 KiB-aligned buffer
 * (as the engine's bounce slots are) zero-padded to the next 4 KiB, and
 * that length is the location's disk_len. The location's generation is
 * taken from the header's own field (bytes 8..15) so inputs can get past
 * that check. A header that decodes must describe a block that fits its
 * location, and encoding what was decoded must decode to the same thing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "kvstash/status.h"
#include "kvstore/segment.h"

#define MAX_IN (KVS_SEG_HDR_MAX + 4 * KVS_SEG_ALIGN)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[(MAX_IN + KVS_SEG_ALIGN - 1) / KVS_SEG_ALIGN * KVS_SEG_ALIGN]
    __attribute__((aligned(KVS_SEG_ALIGN)));
static uint8_t again[KVS_SEG_HDR_MAX] __attribute__((aligned(8)));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_seg_block_t blk, blk2;
    const uint8_t *payload, *payload2;
    kvs_seg_loc_t loc = {0};
    uint64_t sum = 0;
    uint32_t hdr_len;
    int ret;

    if (size > MAX_IN)
        size = MAX_IN;
    loc.disk_len =
        (uint32_t)((size + KVS_SEG_ALIGN - 1) / KVS_SEG_ALIGN * KVS_SEG_ALIGN);
    if (loc.disk_len == 0)
        loc.disk_len = KVS_SEG_ALIGN;
    memset(buf, 0, loc.disk_len);
    memcpy(buf, data, size);
    loc.gen = kvs_le64_load(buf + 8);

    ret = kvs_segment_block_decode(buf, &loc, &blk, &payload);
    if (ret != 0) {
        if (ret != KVS_ECORRUPT)
            abort();
        return 0;
    }
    hdr_len = KVS_SEG_HDR_FIXED + 4 * blk.nparts;
    if (blk.nparts == 0 || blk.nparts > KVS_PARTS_MAX || blk.key_len == 0 ||
        blk.key_len > KVS_KEY_MAX || hdr_len > loc.disk_len ||
        payload != buf + hdr_len || blk.stored_len > loc.disk_len - hdr_len ||
        blk.key != buf + 72 ||
        (const uint8_t *)blk.part_lens != buf + KVS_SEG_HDR_FIXED)
        abort();
    for (uint32_t i = 0; i < blk.nparts; i++)
        sum += blk.part_lens[i];
    if (sum != blk.raw_len)
        abort();

    /* Round trip: what was accepted re-encodes to a header that decodes
     * to the same block. */
    if (kvs_segment_block_encode(&blk, loc.gen, again) != hdr_len)
        abort();
    ret = kvs_segment_block_decode(again, &loc, &blk2, &payload2);
    if (ret != 0 || blk2.ns != blk.ns || blk2.key_len != blk.key_len ||
        memcmp(blk2.key, blk.key, blk.key_len) != 0 ||
        blk2.key_hash != blk.key_hash || blk2.codec != blk.codec ||
        blk2.elem_size != blk.elem_size || blk2.nparts != blk.nparts ||
        memcmp(blk2.part_lens, blk.part_lens, 4u * blk.nparts) != 0 ||
        blk2.raw_len != blk.raw_len || blk2.stored_len != blk.stored_len ||
        blk2.data_xxh != blk.data_xxh)
        abort();
    return 0;
}
