/* SPDX-License-Identifier: Apache-2.0 */
/* DRAM arena: extents never overlap, frees coalesce back to one extent,
 * exhaustion is -ENOMEM, and allocated memory is usable; a shared arena's
 * fd maps the same pages, on huge pages where it says so. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <linux/magic.h>
#include <stdio.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/hugemem.h"
#include "kvstore/arena.h"
#include "tests/testutil.h"

#define ARENA_BYTES (64u << 20)

static void test_exhaust_and_coalesce(void **state)
{
    kvs_arena_t *a;
    uint64_t offs[64];
    int n = 0;

    (void)state;
    assert_int_equal(kvs_arena_create(ARENA_BYTES, &a), 0);
    assert_int_equal(kvs_arena_largest_free(a), ARENA_BYTES);
    while (n < 64 && kvs_arena_alloc(a, 1u << 20, &offs[n]) == 0)
        n++;
    assert_int_equal(n, 64);
    uint64_t off;
    assert_int_equal(kvs_arena_alloc(a, 4096, &off), -ENOMEM);
    assert_int_equal(kvs_arena_used(a), ARENA_BYTES);
    /* Free every other one: 32 holes of 1 MiB, none of 2 MiB. */
    for (int i = 0; i < 64; i += 2)
        kvs_arena_free(a, offs[i], 1u << 20);
    assert_int_equal(kvs_arena_largest_free(a), 1u << 20);
    assert_int_equal(kvs_arena_alloc(a, 2u << 20, &off), -ENOMEM);
    for (int i = 1; i < 64; i += 2)
        kvs_arena_free(a, offs[i], 1u << 20);
    assert_int_equal(kvs_arena_used(a), 0);
    assert_int_equal(kvs_arena_largest_free(a), ARENA_BYTES);
    assert_int_equal(kvs_arena_alloc(a, 0, &off), -EINVAL);
    kvs_arena_destroy(a);
    kvs_arena_destroy(NULL);
}

/* An extent that fits must be found whenever kvs_arena_largest_free()
 * says one exists: with more than a few shorter extents ahead of it in its
 * own bin and no larger bin, the allocation used to give up, and the
 * store's DRAM allocation looped for ever on the daemon's serving thread
 * (evict: "it fits now"; alloc: "no room"), found by the soak test. */
static void test_fit_behind_short_extents(void **state)
{
    enum { P = 4096, NSHORT = 12, SHORT = 16, LONG = 30 };
    uint64_t shorts[NSHORT], seps[NSHORT + 1], lng, rest, off;
    kvs_arena_t *a;
    size_t used;

    (void)state;
    assert_int_equal(kvs_arena_create(ARENA_BYTES, &a), 0);
    /* [LONG][sep] then NSHORT x ([SHORT][sep]), then the rest: the
     * separators keep the holes from merging. */
    assert_int_equal(kvs_arena_alloc(a, LONG * P, &lng), 0);
    assert_int_equal(kvs_arena_alloc(a, P, &seps[0]), 0);
    for (int i = 0; i < NSHORT; i++) {
        assert_int_equal(kvs_arena_alloc(a, SHORT * P, &shorts[i]), 0);
        assert_int_equal(kvs_arena_alloc(a, P, &seps[i + 1]), 0);
    }
    used = kvs_arena_used(a);
    assert_int_equal(kvs_arena_alloc(a, ARENA_BYTES - used, &rest), 0);
    /* The long hole first, then the short ones: whichever end of the bin
     * a free goes to, the long one is not among the first few. */
    kvs_arena_free(a, lng, LONG * P);
    for (int i = 0; i < NSHORT; i++)
        kvs_arena_free(a, shorts[i], SHORT * P);
    assert_int_equal(kvs_arena_largest_free(a), LONG * P);
    assert_int_equal(kvs_arena_alloc(a, (LONG - 5) * P, &off), 0);
    assert_int_equal(off, lng);
    assert_int_equal(kvs_arena_largest_free(a), SHORT * P);
    assert_int_equal(kvs_arena_alloc(a, (SHORT + 1) * P, &off), -ENOMEM);
    kvs_arena_destroy(a);
}

struct live {
    uint64_t off;
    size_t len;
    uint8_t fill;
};

static void test_random_no_overlap(void **state)
{
    kvs_arena_t *a;
    struct live live[512];
    int nlive = 0;
    uint64_t rng = 42;

    (void)state;
    assert_int_equal(kvs_arena_create(ARENA_BYTES, &a), 0);
    uint8_t *base = kvs_arena_base(a);
    for (int step = 0; step < 20000; step++) {
        bool do_alloc =
            nlive == 0 || (nlive < 512 && kvs_test_rand(&rng) % 100 < 55);
        if (do_alloc) {
            size_t len = 1 + kvs_test_rand(&rng) % (600u << 10);
            uint64_t off;
            if (kvs_arena_alloc(a, len, &off) != 0)
                continue;
            assert_true(off + len <= kvs_arena_size(a));
            uint8_t fill = (uint8_t)(step & 0xff);
            memset(base + off, fill, len);
            live[nlive++] = (struct live){off, len, fill};
        } else {
            int i = (int)(kvs_test_rand(&rng) % (uint64_t)nlive);
            /* Every byte still holds what was written: no overlap. */
            for (size_t k = 0; k < live[i].len; k += 997)
                assert_int_equal(base[live[i].off + k], live[i].fill);
            assert_int_equal(base[live[i].off + live[i].len - 1], live[i].fill);
            kvs_arena_free(a, live[i].off, live[i].len);
            live[i] = live[--nlive];
        }
    }
    while (nlive > 0) {
        nlive--;
        kvs_arena_free(a, live[nlive].off, live[nlive].len);
    }
    assert_int_equal(kvs_arena_used(a), 0);
    assert_int_equal(kvs_arena_largest_free(a), ARENA_BYTES);
    kvs_arena_destroy(a);
}

/* kB of a field of /proc/self/smaps_rollup, or -1. */
static long rollup_kb(const char *field)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

/* True if this process's mount table names a mount from "kvstash" (the
 * private tmpfs must stay in the child's namespace). */
static bool kvstash_mount_visible(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    bool seen = false;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        seen |= strstr(line, " - tmpfs kvstash ") != NULL;
    fclose(f);
    return seen;
}

static void test_shared_map(void **state)
{
    const size_t len = 16u << 20;
    enum kvs_huge_kind kind;
    struct statfs sf;
    kvs_huge_t h;
    uint8_t *again;
    long before = rollup_kb("ShmemPmdMapped");
    int why;

    (void)state;
    assert_int_equal(
        kvs_huge_map_shared(len, "kvstash-arena-test", &h, &kind, &why), 0);
    assert_true(h.shared && h.fd >= 0 && h.len == len);
    assert_int_equal(((uintptr_t)h.base) & ((2u << 20) - 1), 0);
    assert_int_equal(fstatfs(h.fd, &sf), 0);
    assert_true(sf.f_type == TMPFS_MAGIC || sf.f_type == HUGETLBFS_MAGIC);
    assert_false(kvstash_mount_visible());
    /* Another mapping of the fd (what a client does) sees the same bytes,
     * both ways. */
    again = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, h.fd, 0);
    assert_true(again != MAP_FAILED);
    memset(h.base, 0x5a, len);
    assert_int_equal(again[0], 0x5a);
    assert_int_equal(again[len - 1], 0x5a);
    again[len / 2] = 0xa5;
    assert_int_equal(((uint8_t *)h.base)[len / 2], 0xa5);
    munmap(again, len);
    /* What the kind says is what the kernel gave: a private tmpfs with
     * huge=always or shmem THP map 2 MiB pages. */
    if (kind == KVS_HUGE_TMPFS_THP || kind == KVS_HUGE_SHMEM_THP) {
        long after = rollup_kb("ShmemPmdMapped");
        assert_true(before >= 0 && after >= 0); /* Linux 4.14 on */
        assert_true(after - before >= 2048);
    } else {
        print_message("shared arena on kind %d; private tmpfs refused: %s\n",
                      (int)kind, strerror(why));
    }
    kvs_huge_unmap(&h);
}

/* Where namespaces are refused (a container's seccomp profile, systemd's
 * RestrictNamespaces=), the arena falls back to a memfd, and says why. Run
 * in a child, which the filter then binds with its own children. */
static void test_shared_map_refused(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        enum kvs_huge_kind kind;
        kvs_huge_t h;
        int why = -1;

        if (kvs_test_seccomp(SYS_unshare, -1, SECCOMP_RET_ERRNO | EPERM) != 0)
            _exit(3); /* no seccomp here: nothing to check */
        if (kvs_huge_map_shared(8u << 20, "kvstash-arena-test", &h, &kind,
                                &why) != 0)
            _exit(1);
        /* A hugetlb pool or shmem THP come first and need no namespace:
         * then the fallback is not reached, and this test says so. */
        if (kind == KVS_HUGE_HUGETLB || kind == KVS_HUGE_SHMEM_THP) {
            kvs_huge_unmap(&h);
            _exit(4);
        }
        if (kind == KVS_HUGE_TMPFS_THP ||
            (kind == KVS_HUGE_SHMEM_4K && why != EPERM && why != EOPNOTSUPP) ||
            (kind != KVS_HUGE_SHMEM_4K && why != 0))
            _exit(2);
        memset(h.base, 1, h.len);
        kvs_huge_unmap(&h);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exhaust_and_coalesce),
        cmocka_unit_test(test_random_no_overlap),
        cmocka_unit_test(test_fit_behind_short_extents),
        cmocka_unit_test(test_shared_map),
        cmocka_unit_test(test_shared_map_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
