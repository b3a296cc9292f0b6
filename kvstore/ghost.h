/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ghost list: the hashes of the last N keys that were seen but not kept,
 * for admission ("admit a block the second time it is put"). Fixed size,
 * allocated at create; O(1) add, remove and lookup. Not thread-safe: the
 * store's lock guards it.
 */
#ifndef KVS_GHOST_H
#define KVS_GHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_ghost kvs_ghost_t;

/* capacity > 0 hashes; -ENOMEM or -EINVAL. */
int kvs_ghost_create(uint32_t capacity, kvs_ghost_t **ghost_out);
void kvs_ghost_destroy(kvs_ghost_t *ghost);

bool kvs_ghost_contains(const kvs_ghost_t *ghost, uint64_t hash);
/* Remembers hash (no-op if present), forgetting the oldest when full. */
void kvs_ghost_add(kvs_ghost_t *ghost, uint64_t hash);
void kvs_ghost_remove(kvs_ghost_t *ghost, uint64_t hash);
/* Hashes remembered (removed ones count until their turn comes). */
uint32_t kvs_ghost_count(const kvs_ghost_t *ghost);
/* Bytes the list holds: 8 per ring slot, 8 per set slot. */
size_t kvs_ghost_bytes(const kvs_ghost_t *ghost);

#endif
