/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DRAM arena: one mapping made at open, carved into extents of whole
 * 4 KiB pages. No malloc after create. Not thread-safe: the store's lock
 * guards every call after create.
 */
#ifndef KVS_ARENA_H
#define KVS_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVS_ARENA_PAGE 4096u

typedef struct kvs_arena kvs_arena_t;

/* Maps bytes (rounded down to whole pages, at least one) and the page
 * tables. -ENOMEM or -EINVAL. *arena_out is freed by kvs_arena_destroy(). */
int kvs_arena_create(size_t bytes, kvs_arena_t **arena_out);
void kvs_arena_destroy(kvs_arena_t *arena);
/* The same on a memfd (common/hugemem.h, kvs_huge_map_shared), which
 * kvs_arena_fd returns (owned by the arena; -1 for one not shared). */
int kvs_arena_create_shared(size_t bytes, kvs_arena_t **arena_out);
int kvs_arena_fd(const kvs_arena_t *arena);
/* Whether a process the fd was passed to cut the file shorter (only a
 * file on the private tmpfs can be: a memfd is sealed). The pages past
 * the cut are private memory from then on (common/hugemem.h). */
bool kvs_arena_cut(const kvs_arena_t *arena);

/* Allocates at least bytes (> 0) and returns the extent's offset from the
 * base. -ENOMEM when no free extent is large enough. */
int kvs_arena_alloc(kvs_arena_t *arena, size_t bytes, uint64_t *off_out);

/* Frees an extent returned by kvs_arena_alloc() for the same byte count. */
void kvs_arena_free(kvs_arena_t *arena, uint64_t off, size_t bytes);

void *kvs_arena_base(const kvs_arena_t *arena);
size_t kvs_arena_size(const kvs_arena_t *arena); /* bytes mapped */
size_t kvs_arena_used(const kvs_arena_t *arena); /* bytes allocated */
/* Bytes of the largest extent that one alloc can get right now. */
size_t kvs_arena_largest_free(const kvs_arena_t *arena);

#endif
