/* SPDX-License-Identifier: Apache-2.0 */
#include "common/hugemem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20) /* a transparent huge page on x86-64 */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int kvs_huge_reserve(size_t len, kvs_huge_t *h)
{
    memset(h, 0, sizeof(*h));
    if (len == 0 || len > SIZE_MAX - HUGE_ALIGN)
        return -ENOMEM;
    h->map_len = len + HUGE_ALIGN;
    h->map = mmap(NULL, h->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (h->map == MAP_FAILED) {
        memset(h, 0, sizeof(*h));
        return -ENOMEM;
    }
    h->base = (void *)(((uintptr_t)h->map + HUGE_ALIGN - 1) &
                       ~(uintptr_t)(HUGE_ALIGN - 1));
    h->len = len;
    (void)madvise(h->base, len, MADV_HUGEPAGE);
    return 0;
}

int kvs_huge_map(size_t len, kvs_huge_t *h)
{
    int ret = kvs_huge_reserve(len, h);

    if (ret)
        return ret;
    if (madvise(h->base, len, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        for (size_t off = 0; off < len; off += 4096)
            ((volatile uint8_t *)h->base)[off] = 0;
    return 0;
}

void kvs_huge_unmap(kvs_huge_t *h)
{
    if (h->map)
        munmap(h->map, h->map_len);
    memset(h, 0, sizeof(*h));
}
