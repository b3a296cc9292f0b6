/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A client killed with SIGKILL in the middle of a GET leaks nothing: it
 * holds a lease (MATCH), two pins and eight blocks in flight to it when it
 * dies, and the daemon drops every one of those references once it notices
 * the peer is gone (STAT's refs gauge returns to zero), then keeps serving.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NBLK 8
#define BLK (2u << 20)

static void put_blocks(kvs_client_t *c, kvs_client_key_t *keys,
                       char names[][16])
{
    static uint8_t data[BLK];

    for (int i = 0; i < NBLK; i++) {
        snprintf(names[i], 16, "victim-%d", i);
        keys[i].data = names[i];
        keys[i].len = (uint32_t)strlen(names[i]);
        kvs_test_fill(data, BLK, (uint64_t)i);
        CHECK_EQ(kvs_client_put(c, names[i], keys[i].len, data, BLK, 0), 0);
    }
}

static void victim(const kvs_e2e_daemon_t *d, int ready_fd)
{
    static uint8_t bufs[NBLK][BLK];
    static char names[NBLK][16];
    kvs_client_key_t keys[NBLK];
    kvs_client_get_t gets[NBLK];
    kvs_client_match_result_t r;
    kvs_client_t *c = kvs_e2e_connect(d, "kill", NULL);
    int st[2];

    put_blocks(c, keys, names);
    CHECK_EQ(kvs_client_match(c, keys, NBLK, KVS_CLIENT_MATCH_LEASE, 60000,
                              NULL, &r),
             0);
    CHECK_EQ(r.matched, NBLK);
    CHECK_EQ(kvs_client_pin(c, keys, 2, 0, st), 0);
    memset(gets, 0, sizeof(gets));
    for (int i = 0; i < NBLK; i++) {
        gets[i].key = keys[i];
        gets[i].buf = bufs[i];
        gets[i].cap = BLK;
    }
    /* Sent, and then never progressed: the blocks stay in flight. */
    CHECK_EQ(kvs_client_get_batch_async(c, gets, NBLK, 0, NULL, NULL), 0);
    CHECK(write(ready_fd, "x", 1) == 1);
    for (;;)
        pause();
}

int main(void)
{
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    int fds[2];
    char ch;
    pid_t pid;
    int status;
    uint64_t refs;

    kvs_e2e_daemon_init(&d, "e2e_kill");
    kvs_e2e_daemon_start(&d, NULL);
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    /* Fork before this process opens UCX: UCX state does not survive a
     * fork. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        victim(&d, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], &ch, 1) != 1) {
        fprintf(stderr, "the victim died before it was ready\n");
        kill(pid, SIGKILL);
        exit(1);
    }
    c = kvs_e2e_connect(&d, "kill", NULL);
    /* Wait until the daemon holds the lease (8) and the pins (2), plus
     * whatever of the GET is in flight. */
    while ((refs = kvs_e2e_stat(c, "refs")) < NBLK + 2)
        usleep(1000);
    printf("refs held by the victim before the kill: %llu\n",
           (unsigned long long)refs);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    /* No timing: wait for the daemon to notice, however long it takes. */
    while (kvs_e2e_stat(c, "connections") != 1)
        usleep(10000);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "leases"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "conn_pins"), 0);
    /* Nothing is stuck: the victim's blocks can be deleted and the daemon
     * serves on. */
    {
        char name[16];
        int st;
        kvs_client_key_t k = {name, 0};

        for (int i = 0; i < NBLK; i++) {
            snprintf(name, sizeof(name), "victim-%d", i);
            k.len = (uint32_t)strlen(name);
            CHECK_EQ(kvs_client_delete(c, &k, 1, &st), 0);
        }
        CHECK_EQ(kvs_client_put(c, "after", 5, "ok", 2, 0), 0);
    }
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_kill: ok\n");
    return 0;
}
