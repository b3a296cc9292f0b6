/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request ring (docs/protocol.md 11.6). libkvstash moves its session
 * onto one (STAT shm_rings), unless KVSTASH_SHM_RING=0; and a raw client
 * that misuses one never crashes the daemon: RING without an fd, with a
 * memfd that could shrink under the daemon, of the wrong size or layout,
 * or a plain file (which no seal can keep from shrinking), are refused; a
 * frame on the socket after RING, a request counter far
 * ahead of the daemon's, and a slot whose length is over the largest
 * frame each close that session and nothing else. A well-formed request
 * in the ring is answered in the reply ring. The daemon then still serves
 * a mapped client, whose bytes are checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "kvstash/wire_shm.h"
#include "tests/shm/shmtest.h"
#include "tests/testutil.h"

#define MIB (1u << 20)

static uint8_t rx[KVS_WIRE_SHM_FRAME_MAX + 1];
static uint32_t lens[KVS_PARTS_MAX];

/* A socket ATTACHed, asking for the ring, with the memfd it was passed
 * closed; *granted: whether the daemon offered the ring. */
static int attach(const char *sock, bool *granted)
{
    uint32_t feat = 0;
    int fd, mfd = shmtest_attach_fd(sock, KVS_WIRE_SHM_FEAT_RING, &fd, &feat);

    close(mfd);
    *granted = feat & KVS_WIRE_SHM_FEAT_RING;
    return fd;
}

/* A memfd of size bytes, sealed against shrinking when sealed. */
static int ring_fd(size_t size, bool sealed)
{
    int fd = memfd_create("shm_ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)size) == 0);
    if (sealed)
        CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    return fd;
}

/* Sends RING (rfd passed unless < 0); the status of its reply. */
static int ring_req(int fd, int rfd, uint32_t slots, uint32_t slot_size)
{
    kvs_wire_shm_msg_t q = {0}, r;
    char cbuf[KVS_FDPASS_SPACE];
    uint8_t tx[64];
    struct iovec iov = {.iov_base = tx};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    q.hdr.opcode = KVS_OP_SHM_RING;
    q.hdr.req_id = 2;
    q.u.ring.slots = slots;
    q.u.ring.slot_size = slot_size;
    CHECK_EQ(kvs_wire_shm_encode(&q, tx, sizeof(tx), &iov.iov_len), 0);
    if (rfd >= 0)
        kvs_fdpass_attach(&mh, cbuf, rfd);
    CHECK(sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len);
    n = recv(fd, rx, sizeof(rx), 0);
    CHECK(n > 0);
    CHECK_EQ(kvs_wire_shm_decode(rx, (size_t)n, lens, &r), 0);
    CHECK_EQ(r.hdr.opcode, KVS_OP_SHM_RING);
    return r.hdr.status;
}

/* A session on a ring: its socket, and the ring mapped in *ring. */
static int ringed(const char *sock, uint8_t **ring)
{
    bool granted;
    int fd = attach(sock, &granted);
    int rfd = ring_fd(KVS_WIRE_SHM_RING_BYTES, true);

    CHECK(granted);
    *ring = mmap(NULL, KVS_WIRE_SHM_RING_BYTES, PROT_READ | PROT_WRITE,
                 MAP_SHARED, rfd, 0);
    CHECK(*ring != MAP_FAILED);
    CHECK_EQ(ring_req(fd, rfd, KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
             0);
    close(rfd);
    return fd;
}

/* Writes len bytes as request n's slot (with slot_len as its length) and
 * publishes tail, then rings the doorbell. */
static void post(int fd, uint8_t *ring, uint32_t n, const void *frame,
                 uint32_t len, uint32_t slot_len, uint32_t tail)
{
    uint8_t *s = kvs_wire_shm_ring_slot(ring, false, n);

    memcpy(s, &slot_len, 4);
    memcpy(s + 4, frame, len);
    atomic_store(kvs_wire_shm_ring_word(ring, KVS_WIRE_SHM_RING_SQ_TAIL), tail);
    CHECK(send(fd, "", 1, MSG_NOSIGNAL) == 1);
}

/* Waits until the daemon closes fd (doorbells before that are skipped). */
static void wait_closed(int fd)
{
    char b[64];
    ssize_t n;

    while ((n = recv(fd, b, sizeof(b), 0)) > 0)
        CHECK(n == 1); /* only doorbells come over the socket now */
    CHECK(n == 0 || errno == ECONNRESET);
    close(fd);
}

int main(void)
{
    static uint8_t buf[MIB], want[MIB];
    kvs_wire_shm_msg_t q = {0}, r;
    uint8_t frame[256], *ring;
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    char sock[700];
    bool granted;
    size_t flen, len;
    uint32_t rlen;
    int fd, rfd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    unsetenv("KVSTASH_SHM_RING");
    kvs_e2e_daemon_init(&d, "shm_ring");
    shmtest_start(&d, sock, sizeof(sock), NULL);

    /* Refused: no fd; an unsealed memfd; the wrong size; the wrong
     * layout. The session stays on its socket and goes on working. */
    fd = attach(sock, &granted);
    CHECK(granted);
    CHECK_EQ(ring_req(fd, -1, KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
             -EINVAL);
    rfd = ring_fd(KVS_WIRE_SHM_RING_BYTES, false);
    CHECK_EQ(ring_req(fd, rfd, KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
             -EINVAL);
    close(rfd);
    /* A plain file of the right size: F_GET_SEALS fails on it. */
    rfd = open(d.dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    CHECK(rfd >= 0);
    CHECK(ftruncate(rfd, KVS_WIRE_SHM_RING_BYTES) == 0);
    CHECK_EQ(ring_req(fd, rfd, KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
             -EINVAL);
    close(rfd);
    rfd = ring_fd(KVS_WIRE_SHM_RING_BYTES / 2, true);
    CHECK_EQ(ring_req(fd, rfd, KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
             -EINVAL);
    close(rfd);
    rfd = ring_fd(KVS_WIRE_SHM_RING_BYTES, true);
    CHECK_EQ(
        ring_req(fd, rfd, 2 * KVS_WIRE_SHM_RING_SLOTS, KVS_WIRE_SHM_RING_SLOT),
        -EINVAL);
    close(rfd);
    close(fd);

    /* A request in the ring is answered in the reply ring; then a frame
     * on the socket closes the session. */
    fd = ringed(sock, &ring);
    q.hdr.opcode = KVS_OP_SHM_VIEW;
    q.hdr.req_id = 7;
    q.u.view.key.data = (const uint8_t *)"absent";
    q.u.view.key.len = 6;
    CHECK_EQ(kvs_wire_shm_encode(&q, frame, sizeof(frame), &flen), 0);
    post(fd, ring, 0, frame, (uint32_t)flen, (uint32_t)flen, 1);
    while (atomic_load(
               kvs_wire_shm_ring_word(ring, KVS_WIRE_SHM_RING_CQ_TAIL)) != 1)
        usleep(1000);
    CHECK_EQ(
        atomic_load(kvs_wire_shm_ring_word(ring, KVS_WIRE_SHM_RING_SQ_HEAD)),
        1);
    memcpy(&rlen, kvs_wire_shm_ring_slot(ring, true, 0), 4);
    CHECK(rlen >= KVS_WIRE_HDR_SIZE && rlen <= KVS_WIRE_SHM_FRAME_MAX);
    CHECK_EQ(kvs_wire_shm_decode(kvs_wire_shm_ring_slot(ring, true, 0) + 4,
                                 rlen, lens, &r),
             0);
    CHECK(r.hdr.req_id == 7 && (r.hdr.flags & KVS_WIRE_F_REPLY));
    CHECK_EQ(r.hdr.status, KVS_ENOTFOUND);
    CHECK(send(fd, frame, flen, MSG_NOSIGNAL) == (ssize_t)flen);
    wait_closed(fd);
    munmap(ring, KVS_WIRE_SHM_RING_BYTES);

    /* A request counter far ahead of the daemon's. */
    fd = ringed(sock, &ring);
    post(fd, ring, 0, frame, (uint32_t)flen, (uint32_t)flen, 1000);
    wait_closed(fd);
    munmap(ring, KVS_WIRE_SHM_RING_BYTES);

    /* A slot whose length is over the largest frame, and one under a
     * header. */
    fd = ringed(sock, &ring);
    post(fd, ring, 0, frame, (uint32_t)flen, 0xffffffffu, 1);
    wait_closed(fd);
    munmap(ring, KVS_WIRE_SHM_RING_BYTES);
    fd = ringed(sock, &ring);
    post(fd, ring, 0, frame, (uint32_t)flen, 3, 1);
    wait_closed(fd);
    munmap(ring, KVS_WIRE_SHM_RING_BYTES);

    /* libkvstash's own session goes on a ring, and works. */
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_e2e_stat(c, "shm_rings"), 1);
    kvs_test_fill(want, MIB, 5);
    CHECK_EQ(kvs_shm_put(c, "k", 1, want, MIB, 0), 0);
    CHECK_EQ(kvs_shm_get(c, "k", 1, buf, MIB, &len), 0);
    CHECK(len == MIB && memcmp(buf, want, MIB) == 0);
    kvs_client_destroy(c);

    /* And stays on the socket when asked to. */
    setenv("KVSTASH_SHM_RING", "0", 1);
    c = shmtest_connect(&d, sock, "ns", NULL);
    CHECK_EQ(kvs_e2e_stat(c, "shm_rings"), 0);
    memset(buf, 0, MIB);
    CHECK_EQ(kvs_shm_get(c, "k", 1, buf, MIB, &len), 0);
    CHECK(len == MIB && memcmp(buf, want, MIB) == 0);
    CHECK_EQ(kvs_shm_flush(c), 0); /* the release was posted, not awaited */
    CHECK_EQ(kvs_e2e_stat(c, "shm_reservations"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "shm_views"), 0);
    CHECK_EQ(kvs_e2e_stat(c, "refs"), 0);
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(&d);
    kvs_test_rmtree(d.dir);
    printf("shm_ring: ok\n");
    return 0;
}
