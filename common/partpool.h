/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pool of per-part arrays for streamed blocks: each entry holds, for up
 * to cap parts, an offset (u64), a length (u32) and a flag byte (landed,
 * committed, ...). Entries come in power-of-two capacities (1 to
 * KVS_PARTS_MAX) and go back to a free list of their size, so that a
 * stream that begins block after block allocates only until the pool has
 * warmed up (issue 12 item 5: no allocation per block or per part).
 *
 * Not thread-safe: a pool belongs to one thread (the daemon's streaming
 * module, a client's streaming state), as the objects that use it.
 */
#ifndef KVS_COMMON_PARTPOOL_H
#define KVS_COMMON_PARTPOOL_H

#include <stdint.h>

#include "kvstash/types.h"

#define KVS_PARTPOOL_CLASSES 11 /* 1, 2, 4 .. 1024 = KVS_PARTS_MAX parts */

typedef struct kvs_partv {
    struct kvs_partv *next; /* free list */
    uint32_t cap;           /* parts it has room for */
    uint64_t *offs;         /* cap entries, each 0 when got */
    uint32_t *lens;
    uint8_t *flag;
} kvs_partv_t;

typedef struct kvs_partpool {
    kvs_partv_t *free[KVS_PARTPOOL_CLASSES];
    uint64_t allocs; /* entries made, for tests: flat once warm */
} kvs_partpool_t;

/* Arrays for n parts (1..KVS_PARTS_MAX), zeroed; NULL when out of memory
 * or n out of range. */
kvs_partv_t *kvs_partpool_get(kvs_partpool_t *pool, uint32_t n);
/* Back to the pool; NULL is a no-op. */
void kvs_partpool_put(kvs_partpool_t *pool, kvs_partv_t *v);
/* Frees every pooled entry (those out are the holders' to put back). */
void kvs_partpool_drain(kvs_partpool_t *pool);

#endif
