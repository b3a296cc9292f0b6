/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faultfs itself, run under faultfs-run: a file opened with O_DIRECT on
 * the mount is written and read with pwrite/pread and with io_uring, and
 * each fault kind does what tests/faultfs/faultfs.c promises:
 *
 *   eio_read / eio_write / eio_sync   the call fails with EIO;
 *   flip_read                         one bit differs, in [at, at + span);
 *   drop_write                        success, the file is unchanged;
 *   torn_write                        success, only the prefix landed;
 *   delay                             the call takes at least that long;
 *   cut (now, or at a file's next sync)
 *   + restore                         synced bytes stay, unsynced bytes and
 *                                     sizes are rolled back (also for a
 *                                     renamed file and a new file), and
 *                                     nothing works while the power is off.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/testutil.h"

#define BS 4096u

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "test_faultfs: %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static char path_a[4200], path_b[4200], path_n[4200];
static uint8_t *buf, *want;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int uring_rw(struct io_uring *r, int fd, bool write, void *p,
                    unsigned len, off_t off)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(r);
    struct io_uring_cqe *cqe;
    int res;

    if (write)
        io_uring_prep_write(sqe, fd, p, len, (__u64)off);
    else
        io_uring_prep_read(sqe, fd, p, len, (__u64)off);
    io_uring_submit(r);
    if (io_uring_wait_cqe(r, &cqe))
        return -EIO;
    res = cqe->res;
    io_uring_cqe_seen(r, cqe);
    return res;
}

static void test_direct_and_uring(void)
{
    struct io_uring r;
    int fd = open(path_a, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);

    CHECK(fd >= 0);
    if (fd < 0) {
        fprintf(stderr, "test_faultfs: O_DIRECT open on faultfs: %s\n",
                strerror(errno));
        return;
    }
    CHECK(posix_fallocate(fd, 0, 16 * BS) == 0);
    kvs_test_fill(buf, 4 * BS, 1);
    CHECK(pwrite(fd, buf, 4 * BS, 0) == 4 * BS);
    CHECK(io_uring_queue_init(8, &r, 0) == 0);
    kvs_test_fill(buf + 4 * BS, 4 * BS, 2);
    CHECK(uring_rw(&r, fd, true, buf + 4 * BS, 4 * BS, 4 * BS) == 4 * BS);
    memset(want, 0, 8 * BS);
    CHECK(uring_rw(&r, fd, false, want, 8 * BS, 0) == 8 * BS);
    CHECK(memcmp(want, buf, 8 * BS) == 0);
    CHECK(fdatasync(fd) == 0);

    /* Faults through io_uring. */
    CHECK(kvs_test_faultfs_cmd("rule eio_read fa.dat limit 1") == 0);
    CHECK(uring_rw(&r, fd, false, want, BS, 0) == -EIO);
    CHECK(kvs_test_faultfs_cmd("rule eio_write fa.dat limit 1") == 0);
    CHECK(uring_rw(&r, fd, true, buf, BS, 0) == -EIO);
    io_uring_queue_exit(&r);
    close(fd);
}

static void test_faults(void)
{
    int fd = open(path_a, O_RDWR | O_DIRECT | O_CLOEXEC);
    uint8_t *got = want;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(pread(fd, got, BS, 0) == BS && memcmp(got, buf, BS) == 0);

    CHECK(kvs_test_faultfs_cmd("rule flip_read fa.dat limit 1 at 100 span 8") ==
          0);
    CHECK(pread(fd, got, BS, 0) == BS);
    int diff = 0, where = -1;
    for (unsigned i = 0; i < BS; i++)
        for (unsigned b = 0; b < 8; b++)
            if ((got[i] ^ buf[i]) & (1u << b)) {
                diff++;
                where = (int)i;
            }
    CHECK(diff == 1 && where >= 100 && where < 108);
    CHECK(pread(fd, got, BS, 0) == BS && memcmp(got, buf, BS) == 0);

    kvs_test_fill(buf + 8 * BS, BS, 3);
    CHECK(kvs_test_faultfs_cmd("rule drop_write fa.dat limit 1") == 0);
    CHECK(pwrite(fd, buf + 8 * BS, BS, 0) == BS);
    CHECK(pread(fd, got, BS, 0) == BS && memcmp(got, buf, BS) == 0);

    CHECK(kvs_test_faultfs_cmd("rule torn_write fa.dat limit 1 arg 512") == 0);
    CHECK(pwrite(fd, buf + 8 * BS, BS, 0) == BS);
    CHECK(pread(fd, got, BS, 0) == BS);
    CHECK(memcmp(got, buf + 8 * BS, 512) == 0 &&
          memcmp(got + 512, buf + 512, BS - 512) == 0);
    CHECK(pwrite(fd, buf, BS, 0) == BS); /* put it back */

    CHECK(kvs_test_faultfs_cmd("rule delay fa.dat limit 1 arg 100000") == 0);
    double t0 = now_s();
    CHECK(pread(fd, got, BS, 0) == BS);
    CHECK(now_s() - t0 >= 0.09);

    CHECK(kvs_test_faultfs_cmd("rule eio_sync fa.dat limit 1") == 0);
    CHECK(fdatasync(fd) < 0 && errno == EIO);
    CHECK(fdatasync(fd) == 0);
    CHECK(pwrite(fd, buf, BS, 0) == BS);
    CHECK(kvs_test_faultfs_cmd("rule drop_sync fa.dat limit 1") == 0);
    CHECK(fdatasync(fd) == 0);
    CHECK(kvs_test_faultfs_stat("unsynced_bytes") == BS);
    CHECK(fdatasync(fd) == 0);
    CHECK(kvs_test_faultfs_stat("unsynced_bytes") == 0);

    /* skip and one_in: the first two matches are spared, then one in
     * four of 400 reads of fb.dat fails (about 100). */
    CHECK(kvs_test_faultfs_cmd("rule eio_read fb.dat skip 2 one_in 4") == 0);
    int fb = open(path_b, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(fb >= 0 && pwrite(fb, buf, BS, 0) == BS);
    int eio = 0, early = 0;
    for (int i = 0; i < 402; i++) {
        ssize_t n = pread(fb, got, 16, 0);
        if (n < 0 && errno == EIO)
            eio++, early += i < 2;
    }
    CHECK(early == 0 && eio > 50 && eio < 150);
    CHECK(kvs_test_faultfs_cmd("clear") == 0);
    CHECK(kvs_test_faultfs_cmd("rule nonsense x") == -EINVAL);
    CHECK(kvs_test_faultfs_stat("fired_flip_read") == 1);
    CHECK(kvs_test_faultfs_stat("fired_torn_write") == 1);
    CHECK(kvs_test_faultfs_stat("rules") == 0);
    close(fb);
    close(fd);
}

static void test_power_cut(void)
{
    int fd = open(path_a, O_RDWR | O_DIRECT | O_CLOEXEC);
    struct stat st;
    uint8_t *got = want;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    /* Synced: 16 blocks (the fallocate) with buf[0, 8 BS) in front. */
    CHECK(fdatasync(fd) == 0);
    kvs_test_fill(buf + 8 * BS, 2 * BS, 9);
    CHECK(pwrite(fd, buf + 8 * BS, BS, BS) == BS);      /* overwrite */
    CHECK(pwrite(fd, buf + 9 * BS, BS, 20 * BS) == BS); /* extend */
    CHECK(kvs_test_faultfs_stat("unsynced_bytes") == BS);
    /* A new file, written and never synced; and the synced one renamed. */
    int fn = open(path_n, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(fn >= 0 && write(fn, "new", 3) == 3);
    close(fn);
    char renamed[4300];
    snprintf(renamed, sizeof(renamed), "%s.moved", path_a);
    CHECK(rename(path_a, renamed) == 0);

    CHECK(kvs_test_faultfs_cmd("cut") == 0);
    CHECK(kvs_test_faultfs_stat("power") == 1);
    CHECK(pread(fd, got, BS, 0) < 0 && errno == EIO);
    CHECK(pwrite(fd, buf, BS, 0) < 0 && errno == EIO);
    CHECK(fdatasync(fd) < 0 && errno == EIO);
    close(fd);
    CHECK(kvs_test_faultfs_cmd("restore") == 0);
    CHECK(kvs_test_faultfs_stat("power") == 0);
    CHECK(kvs_test_faultfs_stat("unsynced_bytes") == 0);

    fd = open(renamed, O_RDONLY | O_DIRECT | O_CLOEXEC);
    CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 16 * BS);
    CHECK(pread(fd, got, 8 * BS, 0) == 8 * BS && memcmp(got, buf, 8 * BS) == 0);
    close(fd);
    CHECK(stat(path_n, &st) == 0 && st.st_size == 0);

    /* A cut scheduled at the next sync of one file: the write before it
     * works, the sync fails, and the write is gone after restore. */
    fn = open(path_n, O_RDWR | O_CLOEXEC);
    CHECK(fn >= 0);
    CHECK(kvs_test_faultfs_cmd("rule cut fn.dat op sync limit 1") == 0);
    CHECK(pwrite(fn, "abc", 3, 0) == 3);
    CHECK(kvs_test_faultfs_stat("power") == 0);
    CHECK(fsync(fn) < 0 && errno == EIO);
    CHECK(kvs_test_faultfs_stat("power") == 1);
    CHECK(kvs_test_faultfs_cmd("restore") == 0);
    CHECK(kvs_test_faultfs_cmd("clear") == 0);
    CHECK(fstat(fn, &st) == 0 && st.st_size == 0);
    close(fn);
}

int main(void)
{
    const char *m = kvs_test_faultfs();

    if (!m) {
        printf("test_faultfs: SKIP: run under faultfs-run (KVS_FAULTFS)\n");
        return KVS_TEST_SKIP;
    }
    snprintf(path_a, sizeof(path_a), "%s/fa.dat", m);
    snprintf(path_b, sizeof(path_b), "%s/fb.dat", m);
    snprintf(path_n, sizeof(path_n), "%s/fn.dat", m);
    if (posix_memalign((void **)&buf, BS, 16 * BS) ||
        posix_memalign((void **)&want, BS, 16 * BS))
        return 1;
    test_direct_and_uring();
    test_faults();
    test_power_cut();
    printf("test_faultfs: %s (%d failures)\n", failures ? "FAIL" : "PASS",
           failures);
    free(buf);
    free(want);
    return failures ? 1 : 0;
}
