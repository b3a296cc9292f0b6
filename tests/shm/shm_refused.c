/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who may not map the arena, and that they keep working without it:
 *  - a tenant not marked shm: HELLO does not offer SHM, its client works
 *    over UCX (kvs_shm_get falls back), and an ATTACH straight on the
 *    socket with its token is refused (KVS_EAUTH); a bad token too;
 *  - a namespace the tenant may not use: -EACCES;
 *  - another uid (a child that setuid()s to nobody): the socket's mode
 *    0600 keeps it out (EACCES at connect) and its client falls back to
 *    UCX; with the socket opened to everyone (chmod 0666), the daemon's
 *    SO_PEERCRED check refuses its ATTACH (KVS_EAUTH).
 * The trusted tenant attaches and shares blocks with the others.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define NOBODY 65534

/* The other uid's side; its exit status is the first failed step (0 ok). */
static int other_uid(const kvs_e2e_daemon_t *d, const char *sock, int go_fd,
                     int done_fd)
{
    kvs_client_t *c = NULL;
    uint8_t buf[64];
    size_t len = 0;
    char ch;

    if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
        return 1;
    if (shmtest_raw_attach(sock, "ns", "tt") != -EACCES)
        return 2;
    /* UCX's own shared-memory transports (sysv, cma) do not work between
     * users either: the fallback path of another uid is TCP. */
    setenv("UCX_TLS", "tcp,self", 1);
    if (shmtest_try_connect(d, sock, "ns", "tt", &c) != 0)
        return 3;
    if (kvs_shm_status(c) != -EACCES)
        return 4;
    if (read(go_fd, &ch, 1) != 1) /* "shared" is there now */
        return 8;
    int ret = kvs_shm_get(c, "shared", 6, buf, sizeof(buf), &len);
    if (ret != 0 || len != 6 || memcmp(buf, "hello!", 6) != 0) {
        fprintf(stderr, "other uid: get: %s\n", kvs_strerror(ret));
        return 5;
    }
    kvs_client_destroy(c);
    if (write(done_fd, "x", 1) != 1 || read(go_fd, &ch, 1) != 1)
        return 6;
    /* The socket is 0666 now: only SO_PEERCRED stands in the way. */
    if (shmtest_raw_attach(sock, "ns", "tt") != KVS_EAUTH)
        return 7;
    return 0;
}

int main(void)
{
    kvs_e2e_daemon_t d;
    kvs_client_t *t, *u;
    char sock[700], ch;
    int go[2], done[2], status;
    uint8_t buf[64];
    size_t len;
    pid_t pid;

    if (geteuid() != 0) {
        fprintf(stderr, "needs root to setuid a child\n");
        return 77;
    }
    kvs_e2e_daemon_init(&d, "shm_refused");
    kvs_e2e_write_config(&d, "[tenant.t]\ntoken = tt\nnamespaces = ns\n"
                             "shm = true\noperator = true\n"
                             "[tenant.u]\ntoken = ut\nnamespaces = ns\n");
    shmtest_start(&d, sock, sizeof(sock), NULL);
    CHECK(chmod(d.dir, 0755) == 0); /* nobody may reach the socket's path */

    CHECK(pipe(go) == 0 && pipe(done) == 0);
    fflush(NULL);
    pid = fork(); /* before this process opens UCX */
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(other_uid(&d, sock, go[0], done[1]));
    close(go[0]);
    close(done[1]); /* so a child that fails early reads as EOF here */

    t = shmtest_connect(&d, sock, "ns", "tt");
    CHECK_EQ(kvs_shm_status(t), 0);
    CHECK_EQ(kvs_shm_put(t, "shared", 6, "hello!", 6, 0), 0);
    CHECK(write(go[1], "x", 1) == 1);

    /* The tenant without shm: not offered, and refused if it insists. */
    u = shmtest_connect(&d, sock, "ns", "ut");
    CHECK_EQ(kvs_shm_status(u), -EOPNOTSUPP);
    CHECK_EQ(kvs_shm_get(u, "shared", 6, buf, sizeof(buf), &len), 0);
    CHECK(len == 6 && memcmp(buf, "hello!", 6) == 0);
    CHECK_EQ(shmtest_raw_attach(sock, "ns", "ut"), KVS_EAUTH);
    CHECK_EQ(shmtest_raw_attach(sock, "ns", "bad-token"), KVS_EAUTH);
    CHECK_EQ(shmtest_raw_attach(sock, "other", "tt"), -EACCES);
    CHECK_EQ(shmtest_raw_attach(sock, "ns", "tt"), 0);

    /* Another uid. */
    if (read(done[0], &ch, 1) != 1) {
        CHECK(waitpid(pid, &status, 0) == pid);
        fprintf(stderr, "the other uid's step %d failed\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        exit(1);
    }
    CHECK(chmod(sock, 0666) == 0);
    CHECK(write(go[1], "x", 1) == 1);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);

    CHECK(kvs_e2e_stat(t, "shm_refused") >= 4);
    CHECK_EQ(kvs_e2e_stat(t, "shm_sessions"), 1);
    kvs_client_destroy(u);
    kvs_client_destroy(t);
    kvs_e2e_daemon_stop(&d);
    printf("shm_refused: ok\n");
    return 0;
}
