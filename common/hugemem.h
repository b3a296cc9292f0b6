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
    bool shared; /* kvs_huge_map_shared: fd is a shmem file of len bytes */
    int fd;      /* owned; closed by kvs_huge_unmap when shared */
} kvs_huge_t;

/* How kvs_huge_map_shared got its pages. */
enum kvs_huge_kind {
    KVS_HUGE_HUGETLB = 1, /* MFD_HUGETLB: 2 MiB pages from the reserved pool */
    KVS_HUGE_SHMEM_THP,   /* THP on shmem: the kernel allows it (advise) */
    KVS_HUGE_TMPFS_THP,   /* a file on a private tmpfs mounted huge=always */
    KVS_HUGE_SHMEM_4K,    /* shmem on 4 KiB pages: none of these works */
};

/* Maps len (> 0) bytes. 0, or -ENOMEM with *h zeroed. */
int kvs_huge_map(size_t len, kvs_huge_t *h);

/* Maps len (> 0) bytes on 2 MiB pages where the kernel gives them, but
 * populates nothing: memory becomes resident as it is first written, so a
 * table sized for its most entries costs what it holds. 0, or -ENOMEM. */
int kvs_huge_reserve(size_t len, kvs_huge_t *h);

/*
 * Maps len (> 0) bytes of shared memory, so that its fd can be handed to
 * another process (SCM_RIGHTS) which maps the same pages. In order:
 *   1. a memfd with MFD_HUGETLB (len rounded up to 2 MiB; needs
 *      vm.nr_hugepages);
 *   2. where transparent_hugepage/shmem_enabled allows THP (advise,
 *      always, within_size, force), a memfd with MADV_HUGEPAGE;
 *   3. else, unless shmem_enabled is deny (which overrides every mount), an
 *      unlinked file on a tmpfs mounted huge=always in a mount namespace of
 *      a short-lived child's own (hugemem.c), which gets THP although
 *      shmem_enabled is never;
 *   4. else a memfd on 4 KiB pages.
 * Every page is populated now, as kvs_huge_map does. *kind_out (optional)
 * says which; *why_out (optional) the errno that ruled out 3 (EOPNOTSUPP:
 * shmem_enabled is deny, or there is no THP), or 0. 0, or
 * -ENOMEM / -errno with *h zeroed.
 */
int kvs_huge_map_shared(size_t len, const char *name, kvs_huge_t *h,
                        enum kvs_huge_kind *kind_out, int *why_out);

/* Whether the file under a kvs_huge_map_shared mapping was cut shorter
 * (by a process it was passed to: a tmpfs file cannot be sealed against
 * it). Where it was, private zeroed memory now stands where its pages
 * went, as a SIGBUS there would also have put (hugemem.c), and the
 * mapping is no longer shared past the cut: stop handing its fd out. */
bool kvs_huge_cut(const kvs_huge_t *h);

/* Unmaps; a zeroed kvs_huge_t is a no-op. */
void kvs_huge_unmap(kvs_huge_t *h);

#endif
