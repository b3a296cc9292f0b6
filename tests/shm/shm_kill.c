/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A mapped client killed with SIGKILL while it holds reservations (one
 * half written) and leased views leaks nothing: the daemon notices its
 * socket close, aborts every reservation and unpins every view (STAT's
 * shm_reservations, shm_views and refs back to zero, DRAM back to what
 * the committed blocks use), none of the reserved keys ever becomes
 * visible, and the daemon keeps serving mapped clients.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define BLK (1u << 20)
#define NRESV 3
#define NVIEW 2

struct where {
    const kvs_e2e_daemon_t *d;
    const char *sock;
};

static void victim(void *arg, int ready_fd)
{
    const struct where *w = arg;
    kvs_client_t *c = shmtest_connect(w->d, w->sock, "kill", NULL);
    kvs_iov_t part = {NULL, BLK};
    kvs_shm_block_t b;

    CHECK_EQ(kvs_shm_status(c), 0);
    for (int i = 0; i < NRESV; i++) {
        char key[16];
        kvs_client_put_t put = {.parts = &part, .nparts = 1};

        snprintf(key, sizeof(key), "resv-%d", i);
        put.key.data = key;
        put.key.len = (uint32_t)strlen(key);
        CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
        memset(b.data, 0x5a, b.len / 2); /* dies half way */
    }
    for (int i = 0; i < NVIEW; i++) {
        char key[16];

        snprintf(key, sizeof(key), "kept-%d", i);
        CHECK_EQ(
            kvs_shm_view(c, key, (uint32_t)strlen(key), 60000, NULL, 0, &b), 0);
    }
    CHECK(write(ready_fd, "x", 1) == 1);
    for (;;)
        pause();
}

int main(void)
{
    static uint8_t data[BLK], buf[BLK];
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    char sock[700], ch;
    int heard, status;
    uint64_t used;
    size_t len;
    pid_t pid;

    kvs_e2e_daemon_init(&d, "shm_kill");
    shmtest_start(&d, sock, sizeof(sock), NULL);
    /* The blocks the victim will view, put before it forks: UCX state
     * does not survive a fork, so this client is made in a child too. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        kvs_client_t *w = shmtest_connect(&d, sock, "kill", NULL);

        for (int i = 0; i < NVIEW; i++) {
            char key[16];

            snprintf(key, sizeof(key), "kept-%d", i);
            kvs_test_fill(data, BLK, (uint64_t)i);
            CHECK_EQ(kvs_shm_put(w, key, (uint32_t)strlen(key), data, BLK, 0),
                     0);
        }
        kvs_client_destroy(w);
        _exit(0);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);

    pid = kvs_test_fork(victim, &(struct where){&d, sock}, &heard);
    CHECK(read(heard, &ch, 1) == 1);

    c = shmtest_connect(&d, sock, "kill", NULL);
    CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), NRESV);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views"), NVIEW);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), NVIEW);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);

    shmtest_wait_stat(c, "shm_reservations", 0);
    shmtest_wait_stat(c, "shm_views", 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_reclaimed"), NRESV + NVIEW);
    CHECK_EQ(kvs_e2e_stat(c, "shm_sessions"), 1); /* this one */
    for (int i = 0; i < NRESV; i++) {
        char key[16];

        snprintf(key, sizeof(key), "resv-%d", i);
        CHECK_EQ(kvs_e2e_present(c, key), 0);
    }
    /* Only the two committed blocks hold DRAM now (one page of header
     * each, plus their bytes and part tables, rounded to pages). */
    used = kvs_e2e_stat(c, "dram_used_bytes");
    CHECK(used < 3ull * BLK);

    /* Still serving, in place and byte for byte. */
    kvs_test_fill(data, BLK, 1);
    CHECK_EQ(kvs_shm_get(c, "kept-1", 6, buf, sizeof(buf), &len), 0);
    CHECK(len == BLK && memcmp(buf, data, BLK) == 0);
    kvs_test_fill(data, BLK, 99);
    CHECK_EQ(kvs_shm_put(c, "after", 5, data, BLK, 0), 0);
    CHECK_EQ(kvs_shm_get(c, "after", 5, buf, sizeof(buf), &len), 0);
    CHECK(len == BLK && memcmp(buf, data, BLK) == 0);

    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("shm_kill: ok\n");
    return 0;
}
