/* SPDX-License-Identifier: Apache-2.0 */
#include "common/hugemem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

static void populate(void *base, size_t len)
{
    if (madvise(base, len, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        for (size_t off = 0; off < len; off += 4096)
            ((volatile uint8_t *)base)[off] = 0;
}

int kvs_huge_map(size_t len, kvs_huge_t *h)
{
    int ret = kvs_huge_reserve(len, h);

    if (ret)
        return ret;
    populate(h->base, len);
    return 0;
}

/* True when shmem may get transparent huge pages on MADV_HUGEPAGE: the
 * selected word of shmem_enabled is advise, always, within_size or force. */
static bool shmem_thp_allowed(void)
{
    char buf[128];
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    size_t n;

    if (!f)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "[advise]") || strstr(buf, "[always]") ||
           strstr(buf, "[within_size]") || strstr(buf, "[force]");
}

/* The hugetlbfs attempt: a memfd whose pages come from the reserved pool,
 * populated at mmap (so an empty pool fails here, not at first write). */
static int map_hugetlb(size_t len, const char *name, kvs_huge_t *h)
{
    size_t hlen = (len + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB);
    void *p;

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)hlen) != 0)
        goto err_close;
    p = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
             0);
    if (p == MAP_FAILED)
        goto err_close;
    h->base = h->map = p;
    h->len = len;
    h->map_len = hlen;
    h->shared = true;
    h->fd = fd;
    return 0;

err_close:
    close(fd);
    return -ENOMEM;
}

/* The shmem attempt: a memfd mapped at a 2 MiB boundary (inside a larger
 * reservation, so that THP can back it where the kernel allows). */
static int map_shmem(size_t len, const char *name, kvs_huge_t *h)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    int ret = -ENOMEM;
    void *res, *p;
    uintptr_t at;

    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)len) != 0)
        goto err_close;
    res = mmap(NULL, len + HUGE_ALIGN, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        goto err_close;
    at = ((uintptr_t)res + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
    p = mmap((void *)at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             fd, 0);
    if (p == MAP_FAILED)
        goto err_unmap_reservation;
    h->map = res;
    h->map_len = len + HUGE_ALIGN;
    h->base = p;
    h->len = len;
    h->shared = true;
    h->fd = fd;
    (void)madvise(p, len, MADV_HUGEPAGE);
    return 0;

err_unmap_reservation:
    munmap(res, len + HUGE_ALIGN);
err_close:
    close(fd);
    return ret;
}

int kvs_huge_map_shared(size_t len, const char *name, kvs_huge_t *h,
                        enum kvs_huge_kind *kind_out)
{
    enum kvs_huge_kind kind = KVS_HUGE_HUGETLB;
    int ret;

    memset(h, 0, sizeof(*h));
    if (len == 0 || len > SIZE_MAX - HUGE_ALIGN)
        return -ENOMEM;
    if (map_hugetlb(len, name, h) != 0) {
        ret = map_shmem(len, name, h);
        if (ret) {
            memset(h, 0, sizeof(*h));
            return ret;
        }
        kind = shmem_thp_allowed() ? KVS_HUGE_SHMEM_THP : KVS_HUGE_SHMEM_4K;
        populate(h->base, len);
    }
    if (kind_out)
        *kind_out = kind;
    return 0;
}

void kvs_huge_unmap(kvs_huge_t *h)
{
    if (h->map)
        munmap(h->map, h->map_len);
    if (h->shared)
        close(h->fd);
    memset(h, 0, sizeof(*h));
}
