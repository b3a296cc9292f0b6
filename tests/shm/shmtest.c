/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm tests' helpers (shmtest.h): starting a daemon with a shm socket,
 * connecting mapped clients, and a raw ATTACH by the wire codec.
 */
#include "tests/shm/shmtest.h"
#include "common/fdpass.h"
#include "kvstash/wire_shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void shmtest_start(kvs_e2e_daemon_t *d, char *sock, size_t cap,
                   const char *const *extra)
{
    static char opt[700];
    const char *args[16];
    int n = 0;

    if (d->external) {
        fprintf(stderr, "needs its own daemon; KVS_TEST_DAEMON set\n");
        exit(77);
    }
    snprintf(sock, cap, "%s/shm.sock", d->dir);
    snprintf(opt, sizeof(opt), "--set=daemon.shm_socket=%s", sock);
    args[n++] = opt;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    kvs_e2e_daemon_start(d, args);
}

#define PEER_SECRET "--set=peer.secret=shm-s3cret"

void shmtest_start_prefill(kvs_e2e_daemon_t *P, char *sock, size_t cap)
{
    const char *const args[] = {PEER_SECRET, NULL};

    shmtest_start(P, sock, cap, args);
}

void shmtest_start_decode(kvs_e2e_daemon_t *D, char *sock, size_t cap,
                          const kvs_e2e_daemon_t *P, const char *const *extra)
{
    static char peers[128];
    const char *args[15] = {PEER_SECRET, peers};
    int n = 2;

    snprintf(peers, sizeof(peers), "--set=peer.list=prefill=127.0.0.1:%u",
             P->port);
    for (int i = 0; extra && extra[i] && n < 14; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    shmtest_start(D, sock, cap, args);
}

int shmtest_try_connect(const kvs_e2e_daemon_t *d, const char *sock,
                        const char *ns, const char *token, kvs_client_t **out)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT |
                      KVS_CLIENT_PARAM_NS | KVS_CLIENT_PARAM_BUSY_POLL_US |
                      KVS_CLIENT_PARAM_SHM_SOCKET,
        .addr = "127.0.0.1",
        .port = d->port,
        .ns = ns,
        .busy_poll_us = 0,
        .shm_socket = sock,
    };

    if (token) {
        p.field_mask |= KVS_CLIENT_PARAM_TOKEN;
        p.token = token;
    }
    return kvs_client_create(&p, out);
}

kvs_client_t *shmtest_connect(const kvs_e2e_daemon_t *d, const char *sock,
                              const char *ns, const char *token)
{
    kvs_client_t *c = NULL;

    CHECK_EQ(shmtest_try_connect(d, sock, ns, token, &c), 0);
    return c;
}

int shmtest_raw_attach(const char *sock, const char *ns, const char *token)
{
    int fd = -1, ret = shmtest_raw_attach_keep(sock, ns, token, &fd, NULL);

    if (fd >= 0)
        close(fd);
    return ret;
}

int shmtest_raw_attach_keep(const char *sock, const char *ns, const char *token,
                            int *fd_out, uint64_t *key_out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t buf[KVS_WIRE_SHM_FRAME_MAX + 1];
    static uint32_t lens[KVS_PARTS_MAX];
    kvs_wire_shm_msg_t q = {0}, r;
    size_t len;
    ssize_t n;
    int fd, ret;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    q.hdr.opcode = KVS_OP_SHM_ATTACH;
    q.hdr.req_id = 1;
    q.u.attach.ns.data = (const uint8_t *)ns;
    q.u.attach.ns.len = (uint32_t)strlen(ns);
    q.u.attach.token.data = (const uint8_t *)(token ? token : "");
    q.u.attach.token.len = token ? (uint32_t)strlen(token) : 0;
    CHECK_EQ(kvs_wire_shm_encode(&q, buf, sizeof(buf), &len), 0);
    CHECK(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
    /* An fd passed with the reply is closed with the socket (no
     * MSG_CMSG_CLOEXEC needed: recv drops ancillary data). */
    n = recv(fd, buf, sizeof(buf), 0);
    CHECK(n > 0);
    CHECK_EQ(kvs_wire_shm_decode(buf, (size_t)n, lens, &r), 0);
    CHECK(r.hdr.req_id == 1 && (r.hdr.flags & KVS_WIRE_F_REPLY));
    if (key_out)
        *key_out = r.hdr.status ? 0 : r.u.attach_rep.stream_key;
    *fd_out = fd;
    return r.hdr.status;
}

int shmtest_attach_fd(const char *sock, uint32_t features, int *sock_fd,
                      uint32_t *granted)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t buf[KVS_WIRE_SHM_FRAME_MAX + 1];
    static uint32_t lens[KVS_PARTS_MAX];
    char cbuf[KVS_FDPASS_SPACE];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    kvs_wire_shm_msg_t q = {0}, r;
    size_t len;
    ssize_t n;
    int fd, mfd;

    CHECK(strlen(sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    q.hdr.opcode = KVS_OP_SHM_ATTACH;
    q.hdr.req_id = 1;
    q.u.attach.features = features;
    q.u.attach.ns.data = (const uint8_t *)"ns";
    q.u.attach.ns.len = 2;
    q.u.attach.token.data = (const uint8_t *)"";
    CHECK_EQ(kvs_wire_shm_encode(&q, buf, sizeof(buf), &len), 0);
    CHECK(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    CHECK(n > 0);
    mfd = kvs_fdpass_take(&mh);
    CHECK(mfd >= 0);
    CHECK_EQ(kvs_wire_shm_decode(buf, (size_t)n, lens, &r), 0);
    CHECK_EQ(r.hdr.status, 0);
    if (granted)
        *granted = r.hdr.count;
    *sock_fd = fd;
    return mfd;
}

void shmtest_wait_stat(kvs_client_t *c, const char *name, uint64_t want)
{
    while (kvs_e2e_stat(c, name) != want)
        usleep(10000);
}
