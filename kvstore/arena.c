/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DRAM arena allocator.
 *
 * The arena is one anonymous mapping, divided into 4 KiB pages. Every page
 * belongs to exactly one extent, free or allocated. An extent records its
 * length and state in the page table at its first and at its last page
 * (boundary tags), so freeing can merge with both neighbours in O(1):
 *
 *   page:   0    1    2    3    4    5    6    7    8
 *         +----+----+----+----+----+----+----+----+----+
 *         | A3 |    | A3 | F4 |    |    | F4 | A1 | .. |
 *         +----+----+----+----+----+----+----+----+----+
 *           ^ head     ^ tail  (A = allocated, F = free, n = pages)
 *
 * Free extents sit in 32 bins by floor(log2(pages)), each a doubly-linked
 * list threaded through the next/prev page tables, with a bitmap of
 * non-empty bins. An allocation of n pages first scans a few entries of n's
 * own bin (which may hold extents shorter than n), then takes the head of
 * the first non-empty larger bin, where every extent fits. The extent is
 * split and its tail returned to a bin. Both paths are O(1) up to the short
 * scan; this is TLSF's first level, which keeps fragmentation low for the
 * large, varied block sizes of a KV cache without any per-block header in
 * the arena (the arena holds payload only, so it can be registered with UCX
 * and sent from directly).
 *
 * A shared arena (kvs_arena_create_shared) is the same on a memfd, so that
 * the daemon can hand it to clients on the same host (transport/server/
 * shm.c); only payload lives in it, never the allocator's tables.
 */
#include "kvstore/arena.h"
#include "common/debug.h"
#include "common/hugemem.h"
#include "common/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NBINS 32
#define FREE_BIT 1u
#define NIL UINT32_MAX
#define SCAN_MAX 8 /* extents examined in the request's own bin */

struct kvs_arena {
    uint8_t *base; /* the arena, in mem */
    size_t size;   /* bytes of the arena */
    kvs_huge_t mem;
    uint32_t npages;
    uint32_t used_pages;
    uint32_t *tag;  /* per page: (pages << 1) | FREE_BIT at both ends */
    uint32_t *next; /* per free extent head: next in bin, or NIL */
    uint32_t *prev; /* per free extent head: prev in bin, or NIL */
    uint32_t bin_head[NBINS];
    uint32_t bin_mask; /* bit b set: bin b is not empty */
};

static unsigned bin_of(uint32_t pages)
{
    kvs_assert(pages > 0);
    return 31u - (unsigned)__builtin_clz(pages);
}

static void set_tags(kvs_arena_t *a, uint32_t p, uint32_t n, bool free_ext)
{
    uint32_t t = (n << 1) | (free_ext ? FREE_BIT : 0);

    a->tag[p] = t;
    a->tag[p + n - 1] = t;
}

static void bin_insert(kvs_arena_t *a, uint32_t p, uint32_t n)
{
    unsigned b = bin_of(n);

    set_tags(a, p, n, true);
    a->prev[p] = NIL;
    a->next[p] = a->bin_head[b];
    if (a->bin_head[b] != NIL)
        a->prev[a->bin_head[b]] = p;
    a->bin_head[b] = p;
    a->bin_mask |= 1u << b;
}

static void bin_remove(kvs_arena_t *a, uint32_t p, uint32_t n)
{
    unsigned b = bin_of(n);

    if (a->prev[p] != NIL)
        a->next[a->prev[p]] = a->next[p];
    else
        a->bin_head[b] = a->next[p];
    if (a->next[p] != NIL)
        a->prev[a->next[p]] = a->prev[p];
    if (a->bin_head[b] == NIL)
        a->bin_mask &= ~(1u << b);
}

static int arena_create(size_t bytes, bool shared, kvs_arena_t **arena_out)
{
    kvs_arena_t *a;
    size_t npages = bytes / KVS_ARENA_PAGE;

    if (npages == 0 || npages >= (1u << 30))
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->npages = (uint32_t)npages;
    a->size = npages * KVS_ARENA_PAGE;
    a->tag = calloc(npages, sizeof(uint32_t));
    a->next = calloc(npages, sizeof(uint32_t));
    a->prev = calloc(npages, sizeof(uint32_t));
    if (!a->tag || !a->next || !a->prev)
        goto err_free_tables;
    /* Huge pages, populated now: see common/hugemem.h. The put and stream
     * paths write every byte of the arena, and before this they ran at the
     * ~200 MB/s of first writes to 4 KiB pages on the CI machine. */
    if (shared) {
        enum kvs_huge_kind kind;
        int why;

        if (kvs_huge_map_shared(a->size, "kvstash-arena", &a->mem, &kind,
                                &why) != 0)
            goto err_free_tables;
        if (kind == KVS_HUGE_SHMEM_4K)
            kvs_warn("DRAM arena shared, %zu MiB, on 4 KiB pages: no hugetlb "
                     "pool, shmem THP off (shmem_enabled), and no private "
                     "tmpfs with huge=always (%s; namespaces or mounts not "
                     "allowed?). Copies into and out of it run slower; see "
                     "docs/operations.md, \"Shared memory on one host\"",
                     a->size >> 20, strerror(why));
        else
            kvs_info("DRAM arena shared, %zu MiB, %s", a->size >> 20,
                     kind == KVS_HUGE_HUGETLB     ? "on hugetlbfs 2 MiB pages"
                     : kind == KVS_HUGE_SHMEM_THP ? "a memfd with shmem THP"
                                                  : "on a private tmpfs with "
                                                    "huge=always");
    } else if (kvs_huge_map(a->size, &a->mem) != 0) {
        goto err_free_tables;
    }
    a->base = a->mem.base;
    for (unsigned b = 0; b < NBINS; b++)
        a->bin_head[b] = NIL;
    bin_insert(a, 0, a->npages);
    *arena_out = a;
    return 0;

err_free_tables:
    free(a->tag);
    free(a->next);
    free(a->prev);
    free(a);
    return -ENOMEM;
}

int kvs_arena_create(size_t bytes, kvs_arena_t **arena_out)
{
    return arena_create(bytes, false, arena_out);
}

int kvs_arena_create_shared(size_t bytes, kvs_arena_t **arena_out)
{
    return arena_create(bytes, true, arena_out);
}

int kvs_arena_fd(const kvs_arena_t *a)
{
    return a->mem.shared ? a->mem.fd : -1;
}

bool kvs_arena_cut(const kvs_arena_t *a)
{
    return kvs_huge_cut(&a->mem);
}

void kvs_arena_destroy(kvs_arena_t *a)
{
    if (!a)
        return;
    kvs_huge_unmap(&a->mem);
    free(a->tag);
    free(a->next);
    free(a->prev);
    free(a);
}

static uint32_t pages_of(size_t bytes)
{
    return (uint32_t)((bytes + KVS_ARENA_PAGE - 1) / KVS_ARENA_PAGE);
}

int kvs_arena_alloc(kvs_arena_t *a, size_t bytes, uint64_t *off_out)
{
    uint32_t n, p = NIL, len = 0;
    unsigned b;
    uint32_t larger;

    if (bytes == 0 || bytes > a->size)
        return bytes == 0 ? -EINVAL : -ENOMEM;
    n = pages_of(bytes);
    b = bin_of(n);

    /* The request's own bin holds extents of [2^b, 2^(b+1)) pages. */
    uint32_t q = a->bin_head[b];
    for (int i = 0; q != NIL && i < SCAN_MAX; i++, q = a->next[q]) {
        if ((a->tag[q] >> 1) >= n) {
            p = q;
            break;
        }
    }
    if (p == NIL) {
        larger = b + 1 < NBINS ? a->bin_mask & ~((2u << b) - 1) : 0;
        if (larger) {
            p = a->bin_head[__builtin_ctz(larger)];
        } else {
            /* No larger bin: the rest of this one is all there is. Giving
             * up after SCAN_MAX would contradict kvs_arena_largest_free(),
             * which the store's eviction trusts. */
            for (; q != NIL; q = a->next[q])
                if ((a->tag[q] >> 1) >= n) {
                    p = q;
                    break;
                }
            if (p == NIL)
                return -ENOMEM;
        }
    }
    len = a->tag[p] >> 1;
    kvs_assert(a->tag[p] & FREE_BIT);
    kvs_assert(len >= n);
    bin_remove(a, p, len);
    set_tags(a, p, n, false);
    if (len > n)
        bin_insert(a, p + n, len - n);
    a->used_pages += n;
    *off_out = (uint64_t)p * KVS_ARENA_PAGE;
    return 0;
}

void kvs_arena_free(kvs_arena_t *a, uint64_t off, size_t bytes)
{
    uint32_t p = (uint32_t)(off / KVS_ARENA_PAGE);
    uint32_t n = pages_of(bytes);

    kvs_assert(off % KVS_ARENA_PAGE == 0);
    kvs_assert(p + n <= a->npages);
    kvs_assert(a->tag[p] == (n << 1));
    a->used_pages -= n;
    /* Merge with the previous extent if it is free. */
    if (p > 0 && (a->tag[p - 1] & FREE_BIT)) {
        uint32_t plen = a->tag[p - 1] >> 1;
        bin_remove(a, p - plen, plen);
        p -= plen;
        n += plen;
    }
    /* And with the next one. */
    if (p + n < a->npages && (a->tag[p + n] & FREE_BIT)) {
        uint32_t nlen = a->tag[p + n] >> 1;
        bin_remove(a, p + n, nlen);
        n += nlen;
    }
    bin_insert(a, p, n);
}

void *kvs_arena_base(const kvs_arena_t *a)
{
    return a->base;
}

size_t kvs_arena_size(const kvs_arena_t *a)
{
    return a->size;
}

size_t kvs_arena_used(const kvs_arena_t *a)
{
    return (size_t)a->used_pages * KVS_ARENA_PAGE;
}

size_t kvs_arena_largest_free(const kvs_arena_t *a)
{
    uint32_t best = 0;

    if (!a->bin_mask)
        return 0;
    /* Every extent of the highest non-empty bin; shorter bins cannot beat
     * it. */
    unsigned b = 31u - (unsigned)__builtin_clz(a->bin_mask);
    for (uint32_t q = a->bin_head[b]; q != NIL; q = a->next[q])
        best = KVS_MAX(best, a->tag[q] >> 1);
    return (size_t)best * KVS_ARENA_PAGE;
}
