/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A mapped client that truncates the arena's file does not crash the
 * daemon (issue 21, "Safety"). ATTACH passes the arena's fd itself, open
 * for writing (mapping it shared and writable needs that), so a client
 * can ftruncate() it; the daemon's next touch of a page past the new end
 * would then be a SIGBUS. Where the arena is a memfd it is sealed against
 * shrinking and the truncation fails; where it is a file on the daemon's
 * private tmpfs (which cannot be sealed) the daemon puts private memory
 * where the file's pages went and goes on.
 *
 * The test attaches raw to get the fd, truncates it to 0, then puts and
 * gets blocks over UCX (the daemon copies them into its arena) and checks
 * every byte, that the daemon still answers, and that it exits cleanly.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvstash/wire_shm.h"
#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define MIB (1u << 20)
#define BLOCKS 24 /* more than the 16 MiB arena holds */

int main(void)
{
    const char *const extra[] = {"--set=store.dram_mib=16", NULL};
    static uint8_t buf[MIB], want[MIB];
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    char sock[700];
    struct stat st;
    int sfd, mfd, ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    kvs_e2e_daemon_init(&d, "shm_truncate");
    shmtest_start(&d, sock, sizeof(sock), extra);
    c = kvs_e2e_connect(&d, "ns", NULL);

    /* Blocks in DRAM before the cut, one of them read back after it. */
    for (int i = 0; i < 4; i++) {
        char key[16];

        snprintf(key, sizeof(key), "before-%d", i);
        kvs_test_fill(buf, MIB, 10 + (uint64_t)i);
        CHECK_EQ(kvs_client_put(c, key, (uint32_t)strlen(key), buf, MIB, 0), 0);
    }

    mfd = shmtest_attach_fd(sock, 0, &sfd, NULL);
    CHECK(fstat(mfd, &st) == 0 && st.st_size > 0);
    ret = ftruncate(mfd, 0);
    printf("shm_truncate: ftruncate of the arena to 0: %s\n",
           ret == 0 ? "done (not sealed)" : strerror(errno));
    CHECK(ret == 0 || errno == EPERM);
    if (ret == 0) {
        /* Found within the service's sweep (10 ms); until then a transfer
         * into a page past the cut fails (EFAULT in the kernel's copy). */
        kvs_client_destroy(c);
        c = kvs_e2e_connect(&d, "ns", NULL);
        shmtest_wait_stat(c, "shm_arena_cut", 1);
        CHECK_EQ(shmtest_raw_attach(sock, "ns", NULL), -EIO);
    }

    /* The daemon copies each block into its arena, and back out. */
    for (int i = 0; i < BLOCKS; i++) {
        char key[16];
        size_t len = 0;

        snprintf(key, sizeof(key), "after-%d", i);
        kvs_test_fill(want, MIB, 100 + (uint64_t)i);
        CHECK_EQ(kvs_client_put(c, key, (uint32_t)strlen(key), want, MIB, 0),
                 0);
        memset(buf, 0, MIB);
        CHECK_EQ(kvs_client_get(c, key, (uint32_t)strlen(key), buf, MIB, &len),
                 0);
        CHECK(len == MIB && memcmp(buf, want, MIB) == 0);
    }
    /* A block put before the cut: its bytes, or (its pages gone with the
     * file) a miss or an error, never other bytes than its own. */
    {
        size_t len = 0;

        kvs_test_fill(want, MIB, 13);
        ret = kvs_client_get(c, "before-3", 8, buf, MIB, &len);
        printf("shm_truncate: a block put before the cut: %s\n",
               kvs_strerror(ret));
        if (ret == 0) {
            bool zero = true;

            for (size_t k = 0; k < MIB && zero; k++)
                zero = buf[k] == 0;
            /* Zeros: what a client writing over the block would leave. */
            CHECK(len == MIB && (zero || memcmp(buf, want, MIB) == 0));
        }
    }
    CHECK(kvs_e2e_stat(c, "requests") >= 2 * BLOCKS);
    close(mfd);
    close(sfd);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    kvs_test_rmtree(d.dir);
    printf("shm_truncate: ok\n");
    return 0;
}
