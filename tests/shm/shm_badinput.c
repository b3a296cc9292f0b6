/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bad frames on the shm socket never crash the daemon nor leave anything
 * behind: garbage, a short header, a packet over the largest frame, a body
 * whose length disagrees with the header, a reservation whose part count
 * or key length lies, a reply sent as a request, requests before ATTACH,
 * and a COMMIT of an id that is not this connection's. Each is answered
 * (with its status when the header could be read) or the connection is
 * closed; the daemon then still serves a mapped client.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvstash/wire_shm.h"
#include "tests/shm/shmtest.h"

static int raw_connect(const char *sock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return fd;
}

/* Sends len bytes; returns the reply's status, or 1 when the daemon closed
 * the connection without one. */
static int exchange(const char *sock, const void *buf, size_t len)
{
    static uint8_t rx[KVS_WIRE_SHM_FRAME_MAX + 1];
    static uint32_t lens[KVS_PARTS_MAX];
    kvs_wire_shm_msg_t r;
    int fd = raw_connect(sock);
    ssize_t n;

    CHECK(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
    n = recv(fd, rx, sizeof(rx), 0);
    close(fd);
    if (n <= 0)
        return 1;
    CHECK_EQ(kvs_wire_shm_decode(rx, (size_t)n, lens, &r), 0);
    CHECK(r.hdr.flags & KVS_WIRE_F_REPLY);
    return r.hdr.status;
}

static size_t encode(const kvs_wire_shm_msg_t *m, uint8_t *buf, size_t cap)
{
    size_t len;

    CHECK_EQ(kvs_wire_shm_encode(m, buf, cap, &len), 0);
    return len;
}

int main(void)
{
    static uint8_t buf[KVS_WIRE_SHM_FRAME_MAX + 64];
    const uint32_t one = 4096;
    kvs_wire_shm_msg_t m;
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    char sock[700];
    uint8_t data[64];
    size_t len;

    kvs_e2e_daemon_init(&d, "shm_badinput");
    shmtest_start(&d, sock, sizeof(sock), NULL);

    memset(buf, 0xee, sizeof(buf));
    CHECK_EQ(exchange(sock, buf, 100), 1);          /* garbage */
    CHECK_EQ(exchange(sock, buf, 7), 1);            /* shorter than a header */
    CHECK_EQ(exchange(sock, buf, sizeof(buf)), 1);  /* over the largest frame */

    /* A well-formed RESERVE, then broken one field at a time. */
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SHM_RESERVE;
    m.hdr.req_id = 7;
    m.hdr.count = 1;
    m.u.reserve.key.data = (const uint8_t *)"k";
    m.u.reserve.key.len = 1;
    m.u.reserve.part_lens = &one;
    len = encode(&m, buf, sizeof(buf));
    CHECK_EQ(exchange(sock, buf, len), KVS_EAUTH); /* before ATTACH */
    CHECK_EQ(exchange(sock, buf, len - 1), KVS_EPROTO); /* body too short */
    buf[24] = 200; /* count: 200 parts, with one part's length */
    CHECK_EQ(exchange(sock, buf, len), KVS_EPROTO);
    buf[24] = 1;
    buf[KVS_WIRE_HDR_SIZE + 2] = 0xff; /* key_len 255 > KVS_KEY_MAX */
    CHECK_EQ(exchange(sock, buf, len), KVS_ETOOBIG);
    buf[KVS_WIRE_HDR_SIZE + 2] = 1;
    buf[24] = 0xff; /* count over KVS_PARTS_MAX */
    buf[25] = 0xff;
    CHECK_EQ(exchange(sock, buf, len), KVS_ETOOBIG);
    buf[24] = 1;
    buf[25] = 0;
    buf[6] = KVS_WIRE_F_REPLY; /* a reply sent as a request */
    CHECK_EQ(exchange(sock, buf, len), KVS_EPROTO);
    buf[6] = 0;
    buf[5] = 99; /* unknown opcode: closed, nothing to answer */
    CHECK_EQ(exchange(sock, buf, len), 1);

    /* Still serving; another connection's ids are not this one's. */
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_shm_status(c), 0);
    CHECK_EQ(kvs_shm_put(c, "k", 1, "payload", 7, 0), 0);
    CHECK_EQ(kvs_shm_get(c, "k", 1, data, sizeof(data), &len), 0);
    CHECK(len == 7 && memcmp(data, "payload", 7) == 0);
    {
        kvs_iov_t part = {NULL, 10};
        kvs_client_put_t put = {.key = {"r", 1}, .parts = &part, .nparts = 1};
        kvs_client_t *c2 = shmtest_connect(&d, sock, "ns", NULL);
        kvs_shm_block_t b;

        CHECK_EQ(kvs_shm_reserve(c, &put, &b), 0);
        CHECK_EQ(kvs_shm_commit(c2, b.id), KVS_ENOTFOUND);
        CHECK_EQ(kvs_shm_abort(c, b.id), 0);
        kvs_client_destroy(c2);
    }
    CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 0);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    printf("shm_badinput: ok\n");
    return 0;
}
