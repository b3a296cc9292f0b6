/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The key bytes of the block table: each block's key, and its parent's
 * key, as a reference-counted chunk of exactly their length (plus a 4-byte
 * header, rounded up to 4 bytes, 8 at least), named by a 32-bit handle. A
 * block whose parent is in the table shares the parent's own key chunk, so
 * a chain of blocks pays for each key once: 36 B for a 32-byte key (40 B
 * when chunks were rounded up to 8 bytes), where the entry
 * used to reserve 2 x KVS_KEY_MAX = 128 B for a key and a parent.
 *
 * The chunks live in one region reserved at create for the most that
 * max_blocks entries can hold, and resident only as far as handed out (as
 * the table's entries are). A freed chunk goes on the free list of its size
 * and is handed out again for a key of that size; nothing is compacted.
 *
 * Not thread-safe: the store's `lock` guards every call but the reads of a
 * chunk's bytes, which are immutable while referenced and never move, so a
 * holder of a reference (an entry that is busy or linked) may read them
 * without the lock.
 */
#ifndef KVS_KEYS_H
#define KVS_KEYS_H

#include "common/hugemem.h"

#include <stdbool.h>
#include <stdint.h>

#define KVS_KEYS_NIL UINT32_MAX
#define KVS_KEYS_CLASSES 16 /* chunks of 8, 12, ... 68 bytes */

typedef struct kvs_keys {
    kvs_huge_t mem;   /* the chunks; units of 4 bytes */
    uint64_t top;     /* units ever handed out: [0, top) resident */
    uint64_t cap;     /* units reserved, < KVS_KEYS_NIL */
    uint64_t nchunks; /* chunks in use */
    uint64_t bytes;   /* bytes of the chunks in use */
    uint32_t free[KVS_KEYS_CLASSES]; /* free chunks of each size, chained
                                      * through their second word */
} kvs_keys_t;

/* Reserves room for max_chunks chunks of the largest size; 0 or -ENOMEM. */
int kvs_keys_init(kvs_keys_t *k, uint64_t max_chunks);
void kvs_keys_fini(kvs_keys_t *k);

/* A new chunk holding len (1..KVS_KEY_MAX) bytes, with one reference;
 * KVS_KEYS_NIL when the reserved region is full. */
uint32_t kvs_keys_add(kvs_keys_t *k, const void *bytes, uint32_t len);
/* One more reference to chunk h; false (nothing taken) if its count is at
 * its limit, when the caller makes a chunk of its own instead. */
bool kvs_keys_ref(kvs_keys_t *k, uint32_t h);
/* Drops a reference; the last one frees the chunk. KVS_KEYS_NIL: no-op. */
void kvs_keys_unref(kvs_keys_t *k, uint32_t h);
/* References held on chunk h. */
uint32_t kvs_keys_refs(const kvs_keys_t *k, uint32_t h);

/* The bytes of chunk h, valid while a reference is held. */
static inline const uint8_t *kvs_keys_bytes(const kvs_keys_t *k, uint32_t h)
{
    return (const uint8_t *)k->mem.base + (uint64_t)h * 4 + 4;
}

#endif
