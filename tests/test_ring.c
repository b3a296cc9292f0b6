/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The io_uring wrapper (kvstore/ring.c) against a real file opened with
 * O_DIRECT under $KVS_TEST_DIR: writes and reads through registered and
 * plain buffers come back byte for byte, each completion carries its
 * user_data and byte count, a full queue answers -EBUSY, and the kernel's
 * and the wrapper's errors reach the callback: a misaligned offset
 * (-EINVAL from O_DIRECT), a read past the end of the file (short, so
 * -EIO).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvstash/status.h"
#include "kvstore/ring.h"
#include "tests/testutil.h"

#define BLK 4096u
#define NBLK 8u
#define FILE_BYTES (64u * BLK)

struct done {
    unsigned n;
    uint64_t user_data[64];
    int res[64];
};

static void on_done(void *arg, uint64_t user_data, int res)
{
    struct done *d = arg;

    assert_true(d->n < 64);
    d->user_data[d->n] = user_data;
    d->res[d->n] = res;
    d->n++;
}

/* The result of the completion with user_data, which must have come. */
static int result_of(const struct done *d, uint64_t user_data)
{
    for (unsigned i = 0; i < d->n; i++)
        if (d->user_data[i] == user_data)
            return d->res[i];
    fail_msg("no completion for user_data %llu", (unsigned long long)user_data);
    return 0;
}

struct fixture {
    int fd;
    uint8_t *buf; /* NBLK blocks, registered as buffer 0 */
    kvs_ring_t *ring;
};

static int setup(void **state)
{
    static struct fixture f;
    char path[4200];
    struct iovec iov;

    snprintf(path, sizeof(path), "%s/ring.dat", kvs_test_dir("ring"));
    f.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (f.fd < 0 && errno == EINVAL) {
        printf("no O_DIRECT on %s: skip\n", path);
        exit(KVS_TEST_SKIP);
    }
    assert_true(f.fd >= 0);
    assert_int_equal(ftruncate(f.fd, FILE_BYTES), 0);
    f.buf = aligned_alloc(BLK, NBLK * BLK);
    assert_non_null(f.buf);
    iov = (struct iovec){f.buf, NBLK * BLK};
    int ret = kvs_ring_create(8, f.fd, &iov, 1, &f.ring);
    if (ret == KVS_EURING) {
        printf("io_uring refused: skip\n");
        exit(KVS_TEST_SKIP);
    }
    assert_int_equal(ret, 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    kvs_ring_destroy(f->ring);
    free(f->buf);
    close(f->fd);
    return 0;
}

static void test_create_rejects_bad_depth(void **state)
{
    struct fixture *f = *state;
    kvs_ring_t *r = NULL;

    assert_int_equal(kvs_ring_create(0, f->fd, NULL, 0, &r), -EINVAL);
    assert_int_equal(kvs_ring_create(4097, f->fd, NULL, 0, &r), -EINVAL);
    assert_null(r);
    kvs_ring_destroy(NULL);
}

/* Blocks written through the fixed buffer and through a plain one read
 * back exactly, at their offsets, into both kinds of buffer. */
static void test_write_then_read_back(void **state)
{
    struct fixture *f = *state;
    uint8_t *plain = aligned_alloc(BLK, BLK), *want = malloc(BLK);
    struct done d = {0};

    assert_non_null(plain);
    assert_non_null(want);
    assert_int_equal(kvs_ring_depth(f->ring), 8);
    for (unsigned i = 0; i < 4; i++) {
        kvs_test_fill(f->buf + i * BLK, BLK, 100 + i);
        assert_int_equal(kvs_ring_write(f->ring, 0, f->buf + i * BLK, BLK,
                                        (uint64_t)(2 * i) * BLK, 10 + i),
                         0);
    }
    kvs_test_fill(plain, BLK, 200);
    assert_int_equal(kvs_ring_write(f->ring, -1, plain, BLK, 40ull * BLK, 99),
                     0);
    assert_int_equal(kvs_ring_inflight(f->ring), 5);
    assert_int_equal(kvs_ring_submit(f->ring), 5);
    assert_int_equal(kvs_ring_reap(f->ring, 5, on_done, &d), 5);
    assert_int_equal(kvs_ring_inflight(f->ring), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(result_of(&d, 10 + i), BLK);
    assert_int_equal(result_of(&d, 99), BLK);

    /* Read everything back, the other way round. */
    memset(f->buf, 0, NBLK * BLK);
    memset(plain, 0, BLK);
    d.n = 0;
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(kvs_ring_read(f->ring, -1 + (int)(i % 2),
                                       f->buf + (4 + i) * BLK, BLK,
                                       (uint64_t)(2 * i) * BLK, 20 + i),
                         0);
    assert_int_equal(kvs_ring_read(f->ring, 0, f->buf, BLK, 40ull * BLK, 98),
                     0);
    assert_int_equal(kvs_ring_submit(f->ring), 5);
    assert_int_equal(kvs_ring_reap(f->ring, 5, on_done, &d), 5);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(result_of(&d, 20 + i), BLK);
        kvs_test_fill(want, BLK, 100 + i);
        assert_memory_equal(f->buf + (4 + i) * BLK, want, BLK);
    }
    assert_int_equal(result_of(&d, 98), BLK);
    kvs_test_fill(want, BLK, 200);
    assert_memory_equal(f->buf, want, BLK);
    /* Nothing in flight: a reap returns at once with nothing. */
    assert_int_equal(kvs_ring_reap(f->ring, 0, on_done, &d), 0);
    assert_int_equal(kvs_ring_reap(f->ring, 1, on_done, &d), 0);
    free(plain);
    free(want);
}

/* The queue holds depth operations; the next one is refused until a reap
 * frees a slot. */
static void test_full_queue_is_busy(void **state)
{
    struct fixture *f = *state;
    struct done d = {0};

    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(kvs_ring_read(f->ring, 0, f->buf + (i % NBLK) * BLK,
                                       BLK, (uint64_t)i * BLK, i),
                         0);
    assert_int_equal(kvs_ring_read(f->ring, 0, f->buf, BLK, 0, 8), -EBUSY);
    assert_int_equal(kvs_ring_inflight(f->ring), 8);
    assert_int_equal(kvs_ring_submit(f->ring), 8);
    assert_int_equal(kvs_ring_reap(f->ring, 1, on_done, &d) >= 1, true);
    assert_int_equal(kvs_ring_read(f->ring, 0, f->buf, BLK, 0, 8), 0);
    assert_true(kvs_ring_submit(f->ring) >= 1);
    while (kvs_ring_inflight(f->ring))
        assert_true(kvs_ring_reap(f->ring, 1, on_done, &d) >= 0);
    assert_int_equal(d.n, 9);
    for (unsigned i = 0; i < 9; i++)
        assert_int_equal(d.res[i], BLK);
}

/* Errors arrive as the completion's result, and the slot is reusable. */
static void test_errors_reach_the_callback(void **state)
{
    struct fixture *f = *state;
    struct done d = {0};

    /* O_DIRECT needs an aligned offset: the kernel refuses 1000. */
    assert_int_equal(kvs_ring_read(f->ring, 0, f->buf, BLK, 1000, 1), 0);
    /* A read at the last block but one block long past the end is short:
     * the wrapper turns it into -EIO. */
    assert_int_equal(
        kvs_ring_read(f->ring, 0, f->buf + BLK, 2 * BLK, FILE_BYTES - BLK, 2),
        0);
    /* Wholly past the end: 0 bytes, also short. */
    assert_int_equal(
        kvs_ring_read(f->ring, 0, f->buf + 3 * BLK, BLK, 2ull * FILE_BYTES, 3),
        0);
    /* A misaligned buffer with O_DIRECT. */
    assert_int_equal(
        kvs_ring_write(f->ring, -1, f->buf + 5 * BLK + 1, BLK, 0, 4), 0);
    assert_int_equal(kvs_ring_submit(f->ring), 4);
    assert_int_equal(kvs_ring_reap(f->ring, 4, on_done, &d), 4);
    assert_int_equal(result_of(&d, 1), -EINVAL);
    assert_int_equal(result_of(&d, 2), -EIO);
    assert_int_equal(result_of(&d, 3), -EIO);
    assert_int_equal(result_of(&d, 4), -EINVAL);
    assert_int_equal(kvs_ring_inflight(f->ring), 0);
    /* The ring still works. */
    d.n = 0;
    assert_int_equal(kvs_ring_read(f->ring, 0, f->buf, BLK, 0, 5), 0);
    assert_int_equal(kvs_ring_submit(f->ring), 1);
    assert_int_equal(kvs_ring_reap(f->ring, 1, on_done, &d), 1);
    assert_int_equal(result_of(&d, 5), BLK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_bad_depth),
        cmocka_unit_test(test_write_then_read_back),
        cmocka_unit_test(test_full_queue_is_busy),
        cmocka_unit_test(test_errors_reach_the_callback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
