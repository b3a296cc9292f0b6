/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory on transparent 2 MiB pages, populated when mapped.
 *
 * On a VM with shadow paging (this project's CI machine) the first write
 * from user space to each 4 KiB page costs ~20 us even after MAP_POPULATE,
 * and a miss in the TLB is dearer than on bare metal. Memory that a hot
 * path touches at random (the DRAM arena, the block table, the hash
 * buckets) is therefore mapped here: one fault per 512 pages, paid at
 * start, and 512 times fewer TLB entries after. Both steps are best
 * effort: without THP the pages are 4 KiB, without MADV_POPULATE_WRITE
 * (Linux 5.14) the pages are touched one by one.
 */
#ifndef KVS_COMMON_HUGEMEM_H
#define KVS_COMMON_HUGEMEM_H

#include <stddef.h>

typedef struct kvs_huge {
    void *base; /* len bytes, zeroed, 2 MiB aligned */
    size_t len;
    void *map; /* the mapping, for munmap */
    size_t map_len;
} kvs_huge_t;

/* Maps len (> 0) bytes. 0, or -ENOMEM with *h zeroed. */
int kvs_huge_map(size_t len, kvs_huge_t *h);

/* Maps len (> 0) bytes on 2 MiB pages where the kernel gives them, but
 * populates nothing: memory becomes resident as it is first written, so a
 * table sized for its most entries costs what it holds. 0, or -ENOMEM. */
int kvs_huge_reserve(size_t len, kvs_huge_t *h);

/* Unmaps; a zeroed kvs_huge_t is a no-op. */
void kvs_huge_unmap(kvs_huge_t *h);

#endif
