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

#include <stdbool.h>
#include <stddef.h>

typedef struct kvs_huge {
    void *base; /* len bytes, zeroed, 2 MiB aligned */
    size_t len;
    void *map; /* the mapping, for munmap */
    size_t map_len;
    bool shared; /* kvs_huge_map_shared: fd is a memfd of len bytes */
    int fd;      /* owned; closed by kvs_huge_unmap when shared */
} kvs_huge_t;

/* How kvs_huge_map_shared got its pages. */
enum kvs_huge_kind {
    KVS_HUGE_HUGETLB = 1, /* MFD_HUGETLB: 2 MiB pages from the reserved pool */
    KVS_HUGE_SHMEM_THP,   /* THP on shmem: the kernel allows it (advise) */
    KVS_HUGE_SHMEM_4K,    /* shmem on 4 KiB pages: neither is available */
};

/* Maps len (> 0) bytes. 0, or -ENOMEM with *h zeroed. */
int kvs_huge_map(size_t len, kvs_huge_t *h);

/* Maps len (> 0) bytes on 2 MiB pages where the kernel gives them, but
 * populates nothing: memory becomes resident as it is first written, so a
 * table sized for its most entries costs what it holds. 0, or -ENOMEM. */
int kvs_huge_reserve(size_t len, kvs_huge_t *h);

/*
 * Maps len (> 0) bytes of a memfd named name, shared, so that the fd can be
 * handed to another process (SCM_RIGHTS) which maps the same pages. Tries
 * MFD_HUGETLB first (len rounded up to 2 MiB; needs vm.nr_hugepages), then
 * shmem with MADV_HUGEPAGE (2 MiB pages only where
 * transparent_hugepage/shmem_enabled allows advise or always), else 4 KiB
 * pages. Every page is populated now, as kvs_huge_map does. *kind_out
 * (optional) says which. 0, or -ENOMEM / -errno with *h zeroed.
 */
int kvs_huge_map_shared(size_t len, const char *name, kvs_huge_t *h,
                        enum kvs_huge_kind *kind_out);

/* Unmaps; a zeroed kvs_huge_t is a no-op. */
void kvs_huge_unmap(kvs_huge_t *h);

#endif
