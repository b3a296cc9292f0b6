/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash's side of shared memory with a same-host daemon
 * (include/kvstash/shm.h): attaching over the daemon's Unix socket,
 * mapping the arena from the memfd it passes, and the reserve / commit /
 * abort / view / release requests (kvstash/wire_shm.h). Block bytes never
 * cross the socket, and once the session is on a ring (docs/protocol.md
 * 11.6) neither do requests and replies: they are written to and read
 * from shared memory, and the socket carries a one-byte doorbell only
 * when the other side sleeps. A round trip then costs no system call
 * while both sides spin (busy_poll_us), where a socket's wake-up costs
 * tens of microseconds on a VM.
 *
 * Every offset and length the daemon returns is checked against the
 * mapping before a pointer is made from it, so a confused daemon cannot
 * make the library touch memory outside the arena.
 */
#include "transport/client/client_int.h"
#include "common/clock.h"
#include "common/compiler.h"
#include "common/fdpass.h"
#include "kvstash/wire_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define KVS_MADV_POPULATE_WRITE 23 /* MADV_POPULATE_WRITE, Linux 5.14 */
#define GET_TRIES 3 /* gets: tries of a copy that outlasts its lease */
/* Requests posted without waiting, at most: their replies wait in our
 * socket's receive buffer, which must never fill (the daemon drops a
 * reply it cannot send at once rather than block on one client). */
#define PEND_MAX 32u

struct kvs_client_shm {
    int fd; /* the SOCK_SEQPACKET connection */
    uint8_t *base;
    size_t len;
    uint64_t stream_key; /* ATTACH's: in-place streaming puts carry it */
    uint64_t seq;
    /* Posted requests, oldest first (replies come in order): a ring. */
    struct {
        uint64_t req_id;
        int *status; /* set from the reply; NULL: not wanted */
    } pend[PEND_MAX];
    uint32_t phead, npend;
    /* The ring, once RING was granted (else NULL), and our counters of it:
     * requests written, replies read. */
    uint8_t *ring;
    uint32_t sq_tail, cq_head;
    uint8_t tx[KVS_WIRE_SHM_FRAME_MAX];
    uint8_t rx[KVS_WIRE_SHM_FRAME_MAX + 1];
    uint32_t lens[KVS_PARTS_MAX];
};

/* Waits for fd to be readable: busy_ns of spinning, then poll() up to the
 * client's timeout (0: for ever). */
static int wait_readable(kvs_client_t *c, int fd)
{
    uint64_t t0 = kvs_clock_mono_ns();
    int tmo = c->timeout_ms ? (int)c->timeout_ms : -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    while (kvs_clock_mono_ns() - t0 < c->busy_ns)
        if (poll(&pfd, 1, 0) > 0)
            return 0;
    for (;;) {
        int n = poll(&pfd, 1, tmo);

        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* ---- the ring ----------------------------------------------------- */

static bool ring_has_reply(struct kvs_client_shm *sh)
{
    return atomic_load_explicit(
               kvs_wire_shm_ring_word(sh->ring, KVS_WIRE_SHM_RING_CQ_TAIL),
               memory_order_acquire) != sh->cq_head;
}

/* Waits for a reply in the ring: busy_ns of spinning, then asleep on the
 * socket, where the daemon rings once it has written one. */
static int ring_wait(kvs_client_t *c, struct kvs_client_shm *sh)
{
    _Atomic uint32_t *waiting =
        kvs_wire_shm_ring_word(sh->ring, KVS_WIRE_SHM_RING_CLI_WAIT);
    uint64_t t0 = kvs_clock_mono_ns();
    int tmo = c->timeout_ms ? (int)c->timeout_ms : -1;
    struct pollfd pfd = {.fd = sh->fd, .events = POLLIN};
    char bell[16];
    ssize_t n;

    while (kvs_clock_mono_ns() - t0 < c->busy_ns) {
        for (int i = 0; i < 64; i++) {
            if (ring_has_reply(sh))
                return 0;
            kvs_cpu_relax();
        }
    }
    atomic_store(waiting, 1);
    /* Against the daemon's "reply, then look at the flag" (ring_reply in
     * the service): one of us sees the other's store. */
    atomic_thread_fence(memory_order_seq_cst);
    while (!ring_has_reply(sh)) {
        int r = poll(&pfd, 1, tmo);

        if (r == 0) {
            atomic_store(waiting, 0);
            return -ETIMEDOUT;
        }
        if (r < 0 && errno != EINTR)
            break;
        while ((n = recv(sh->fd, bell, sizeof(bell), MSG_DONTWAIT)) > 0)
            ; /* doorbells, any number */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            break; /* the daemon went away */
    }
    atomic_store(waiting, 0);
    return ring_has_reply(sh) ? 0 : KVS_EPEER;
}

/* Writes the encoded request (len bytes at sh->tx) into the ring. */
static int ring_post(kvs_client_t *c, struct kvs_client_shm *sh, size_t len)
{
    uint64_t t0 = kvs_clock_mono_ns();

    /* Never full while fewer than SLOTS requests are unanswered, which
     * libkvstash keeps to (PEND_MAX and the batches' look-ahead); a daemon
     * that stopped reading it is waited for as for a reply. */
    while (sh->sq_tail -
               atomic_load_explicit(
                   kvs_wire_shm_ring_word(sh->ring, KVS_WIRE_SHM_RING_SQ_HEAD),
                   memory_order_acquire) >=
           KVS_WIRE_SHM_RING_SLOTS) {
        struct pollfd pfd = {.fd = sh->fd, .events = POLLIN};

        if (c->timeout_ms &&
            kvs_clock_mono_ns() - t0 > (uint64_t)c->timeout_ms * 1000000)
            return -ETIMEDOUT;
        /* A daemon that went away never reads it again. */
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
            return KVS_EPEER;
        usleep(50);
    }
    if (kvs_wire_shm_ring_push(sh->ring, false, sh->sq_tail++, sh->tx,
                               (uint32_t)len, KVS_WIRE_SHM_RING_SQ_TAIL,
                               KVS_WIRE_SHM_RING_SRV_WAIT) &&
        send(sh->fd, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
        return KVS_EPEER; /* a full socket holds doorbells enough */
    return 0;
}

/* The oldest reply in the ring, copied out (the daemon's to write; we
 * check what it wrote all the same) and decoded into r. */
static int ring_recv(kvs_client_t *c, struct kvs_client_shm *sh,
                     kvs_wire_shm_msg_t *r)
{
    int len, ret;

    while ((len = kvs_wire_shm_ring_pop(sh->ring, true, sh->cq_head, sh->rx,
                                        KVS_WIRE_SHM_RING_CQ_TAIL,
                                        KVS_WIRE_SHM_RING_CQ_HEAD)) == 0) {
        ret = ring_wait(c, sh);
        if (ret)
            return ret;
    }
    if (len < 0)
        return KVS_EPROTO;
    sh->cq_head++;
    ret = kvs_wire_shm_decode(sh->rx, (size_t)len, sh->lens, r);
    if (ret || !(r->hdr.flags & KVS_WIRE_F_REPLY))
        return KVS_EPROTO;
    return 0;
}

/* Sends q; its reply is read by whoever waits for it (roundtrip, or
 * settle for one posted by post_async). */
static int post(kvs_client_t *c, struct kvs_client_shm *sh,
                kvs_wire_shm_msg_t *q)
{
    size_t len;
    int ret;

    q->hdr.req_id = ++sh->seq;
    ret = kvs_wire_shm_encode(q, sh->tx, sizeof(sh->tx), &len);
    if (ret)
        return ret;
    if (sh->ring)
        return ring_post(c, sh, len);
    return send(sh->fd, sh->tx, len, MSG_NOSIGNAL) == (ssize_t)len ? 0
                                                                   : KVS_EPEER;
}

/* Receives one reply into r (fd_out: an fd passed with it, or left). */
static int recv_one(kvs_client_t *c, struct kvs_client_shm *sh,
                    kvs_wire_shm_msg_t *r, int *fd_out)
{
    char cbuf[CMSG_SPACE(sizeof(int))];

    if (sh->ring)
        return ring_recv(c, sh, r);
    for (;;) {
        struct iovec iov = {.iov_base = sh->rx, .iov_len = sizeof(sh->rx)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        /* A reply to a request posted ahead is usually there already:
         * try before waiting (a poll is a syscall, microseconds on a VM). */
        ssize_t n = recvmsg(sh->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        int ret;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            ret = wait_readable(c, sh->fd);
            if (ret)
                return ret == -ETIMEDOUT ? ret : KVS_EPEER;
            continue;
        }
        if (n <= 0 || (mh.msg_flags & MSG_TRUNC))
            return KVS_EPEER;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
             cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                int fd;

                memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
                if (fd_out && *fd_out < 0)
                    *fd_out = fd;
                else
                    close(fd);
            }
        ret = kvs_wire_shm_decode(sh->rx, (size_t)n, sh->lens, r);
        if (ret || !(r->hdr.flags & KVS_WIRE_F_REPLY))
            return KVS_EPROTO;
        return 0;
    }
}

/* A reply to a posted request: its status to whoever wanted it. */
static void settle(struct kvs_client_shm *sh, const kvs_wire_shm_msg_t *r)
{
    if (sh->npend && sh->pend[sh->phead].req_id == r->hdr.req_id) {
        if (sh->pend[sh->phead].status)
            *sh->pend[sh->phead].status = r->hdr.status;
        sh->phead = (sh->phead + 1) % PEND_MAX;
        sh->npend--;
    }
}

/* The connection failed: every posted request fails with it. */
static int fail_pending(struct kvs_client_shm *sh, int err)
{
    for (; sh->npend; sh->npend--, sh->phead = (sh->phead + 1) % PEND_MAX)
        if (sh->pend[sh->phead].status)
            *sh->pend[sh->phead].status = err;
    return err;
}

/* Sends q and receives its reply into r (fd_out: a passed fd, or -1),
 * settling the replies of requests posted before it on the way. */
static int roundtrip(kvs_client_t *c, struct kvs_client_shm *sh,
                     kvs_wire_shm_msg_t *q, kvs_wire_shm_msg_t *r, int *fd_out)
{
    int ret = post(c, sh, q);

    if (ret)
        return ret == KVS_EPEER ? fail_pending(sh, ret) : ret;
    for (;;) {
        ret = recv_one(c, sh, r, fd_out);
        if (ret)
            return fail_pending(sh, ret);
        if (r->hdr.req_id != q->hdr.req_id) {
            settle(sh, r);
            continue;
        }
        if (r->hdr.opcode != q->hdr.opcode)
            return fail_pending(sh, KVS_EPROTO);
        return r->hdr.status;
    }
}

/* Posts q without waiting; status (optional) gets its reply's status when
 * that is read. Waits for the oldest reply first when PEND_MAX are out. */
static int post_async(kvs_client_t *c, struct kvs_client_shm *sh,
                      kvs_wire_shm_msg_t *q, int *status)
{
    kvs_wire_shm_msg_t r;
    int ret;

    while (sh->npend == PEND_MAX) {
        ret = recv_one(c, sh, &r, NULL);
        if (ret)
            return fail_pending(sh, ret);
        settle(sh, &r);
    }
    ret = post(c, sh, q);
    if (ret)
        return ret == KVS_EPEER ? fail_pending(sh, ret) : ret;
    sh->pend[(sh->phead + sh->npend) % PEND_MAX].req_id = q->hdr.req_id;
    sh->pend[(sh->phead + sh->npend) % PEND_MAX].status = status;
    sh->npend++;
    return 0;
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    return fd;
}

/* Whether to ask for a ring: KVSTASH_SHM_RING=0 in the environment keeps
 * requests on the socket (for comparing the two, and for tests of it). */
static bool ring_wanted(void)
{
    const char *v = getenv("KVSTASH_SHM_RING");

    return !v || strcmp(v, "0") != 0;
}

/* Moves the session onto a ring: a memfd sealed against resizing (the
 * daemon maps it too and refuses one that could shrink under it), passed
 * with RING. The session stays on the socket when the ring cannot be made
 * or RING is refused; an error when RING's answer was lost (the session's
 * state is then unknown). */
static int ring_setup(kvs_client_t *c, struct kvs_client_shm *sh)
{
    int ret = 0;
    kvs_wire_shm_msg_t q = {0}, r;
    char cbuf[KVS_FDPASS_SPACE];
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t len;
    void *p;
    int fd = memfd_create("kvstash-shm-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return 0;
    if (ftruncate(fd, KVS_WIRE_SHM_RING_BYTES) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        goto out_close;
    p = mmap(NULL, KVS_WIRE_SHM_RING_BYTES, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        goto out_close;
    q.hdr.opcode = KVS_OP_SHM_RING;
    q.hdr.req_id = ++sh->seq;
    q.u.ring.slots = KVS_WIRE_SHM_RING_SLOTS;
    q.u.ring.slot_size = KVS_WIRE_SHM_RING_SLOT;
    if (kvs_wire_shm_encode(&q, sh->tx, sizeof(sh->tx), &len) != 0)
        goto out_unmap;
    iov.iov_base = sh->tx;
    iov.iov_len = len;
    kvs_fdpass_attach(&mh, cbuf, fd);
    if (sendmsg(sh->fd, &mh, MSG_NOSIGNAL) != (ssize_t)len) {
        ret = KVS_EPEER;
        goto out_unmap;
    }
    ret = recv_one(c, sh, &r, NULL);
    if (!ret &&
        (r.hdr.req_id != q.hdr.req_id || r.hdr.opcode != KVS_OP_SHM_RING))
        ret = KVS_EPROTO;
    if (ret || r.hdr.status != 0)
        goto out_unmap;
    sh->ring = p;
    close(fd);
    return 0;

out_unmap:
    munmap(p, KVS_WIRE_SHM_RING_BYTES);
out_close:
    close(fd);
    return ret;
}

static int attach(kvs_client_t *c, struct kvs_client_shm *sh, const char *token,
                  uint32_t elem_size)
{
    kvs_wire_shm_msg_t q = {0}, r;
    struct stat st;
    int mfd = -1, ret;
    void *p;

    q.hdr.opcode = KVS_OP_SHM_ATTACH;
    q.u.attach.features = ring_wanted() ? KVS_WIRE_SHM_FEAT_RING : 0;
    q.u.attach.elem_size = (uint8_t)elem_size;
    q.u.attach.token.data = (const uint8_t *)(token ? token : "");
    q.u.attach.token.len = token ? (uint32_t)strlen(token) : 0;
    q.u.attach.ns.data = (const uint8_t *)c->ns;
    q.u.attach.ns.len = (uint32_t)strlen(c->ns);
    ret = roundtrip(c, sh, &q, &r, &mfd);
    if (ret == 0 && mfd < 0)
        ret = KVS_EPROTO;
    if (ret)
        goto err_close;
    if (fstat(mfd, &st) != 0 ||
        (uint64_t)st.st_size < r.u.attach_rep.arena_len ||
        r.u.attach_rep.arena_len == 0 || r.u.attach_rep.arena_len > SIZE_MAX) {
        ret = KVS_EPROTO;
        goto err_close;
    }
    p = mmap(NULL, (size_t)r.u.attach_rep.arena_len, PROT_READ | PROT_WRITE,
             MAP_SHARED, mfd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        goto err_close;
    }
    /* Populated for writing now: the daemon has every page of the memfd
     * in memory already, but this mapping's page tables are empty, and a
     * first write to each 4 KiB page (shmem without THP) costs a fault
     * (more on a VM with shadow paging, even after a read populate:
     * common/hugemem.h): writes in place ran at ~400 MB/s, bound by them.
     * Best effort: without MADV_POPULATE_WRITE (Linux 5.14) the pages
     * fault as they are touched. */
    (void)madvise(p, (size_t)r.u.attach_rep.arena_len, KVS_MADV_POPULATE_WRITE);
    sh->base = p;
    sh->len = (size_t)r.u.attach_rep.arena_len;
    sh->stream_key = r.u.attach_rep.stream_key;
    close(mfd);
    if (r.hdr.count & KVS_WIRE_SHM_FEAT_RING)
        return ring_setup(c, sh); /* the caller unmaps on failure */
    return 0;

err_close:
    if (mfd >= 0)
        close(mfd);
    return ret;
}

void kvs_client_shm_attach(kvs_client_t *c, const char *path, const char *token,
                           uint32_t elem_size)
{
    struct kvs_client_shm *sh = calloc(1, sizeof(*sh));
    int ret;

    if (!sh) {
        c->shm_status = -ENOMEM;
        return;
    }
    sh->fd = connect_unix(path);
    if (sh->fd < 0) {
        c->shm_status = sh->fd;
        free(sh);
        return;
    }
    ret = attach(c, sh, token, elem_size);
    if (ret) {
        close(sh->fd);
        if (sh->base)
            munmap(sh->base, sh->len);
        free(sh);
        c->shm_status = ret;
        return;
    }
    c->shm = sh;
    c->shm_status = 0;
}

void kvs_client_shm_detach(kvs_client_t *c)
{
    struct kvs_client_shm *sh = c->shm;

    if (!sh)
        return;
    (void)kvs_shm_flush(c); /* the statuses of posted commits */
    /* Closing the socket is what tells the daemon to drop whatever this
     * client still reserved or viewed. */
    close(sh->fd);
    munmap(sh->base, sh->len);
    if (sh->ring)
        munmap(sh->ring, KVS_WIRE_SHM_RING_BYTES);
    free(sh);
    c->shm = NULL;
}

bool kvs_client_shm_map(const kvs_client_t *c, uint8_t **base_out,
                        size_t *len_out, uint64_t *key_out)
{
    if (!c->shm)
        return false;
    *base_out = c->shm->base;
    *len_out = c->shm->len;
    *key_out = c->shm->stream_key;
    return true;
}

KVS_API int kvs_shm_status(const kvs_client_t *c)
{
    return c->shm_status;
}

/* A pointer into the mapping for [off, off + len), or NULL. */
static void *in_map(const struct kvs_client_shm *sh, uint64_t off, uint64_t len)
{
    if (off > sh->len || len > sh->len - off)
        return NULL;
    return sh->base + off;
}

/* A RESERVE request for put into q (its part lengths in sh->lens, which
 * stay valid until q is posted). */
static int reserve_msg(struct kvs_client_shm *sh, const kvs_client_put_t *put,
                       kvs_wire_shm_msg_t *q)
{
    int ret;

    if (!put->parts || put->nparts == 0 || put->nparts > KVS_PARTS_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < put->nparts; i++) {
        if (put->parts[i].len > UINT32_MAX)
            return KVS_ETOOBIG;
        sh->lens[i] = (uint32_t)put->parts[i].len;
    }
    memset(q, 0, sizeof(*q));
    q->hdr.opcode = KVS_OP_SHM_RESERVE;
    q->hdr.count = put->nparts;
    q->u.reserve.key.data = put->key.data;
    q->u.reserve.key.len = put->key.len;
    q->u.reserve.parent.data = put->parent.data;
    q->u.reserve.parent.len = put->parent.len;
    q->u.reserve.cls = put->cls;
    q->u.reserve.elem_size = put->elem_size;
    q->u.reserve.flags = put->flags;
    q->u.reserve.ttl_ms = put->ttl_ms;
    q->u.reserve.group = put->group;
    q->u.reserve.part_lens = sh->lens;
    ret = kvs_wire_shm_encode(q, sh->tx, sizeof(sh->tx), &(size_t){0});
    return ret == -EINVAL ? KVS_ETOOBIG : ret;
}

KVS_API int kvs_shm_reserve(kvs_client_t *c, const kvs_client_put_t *put,
                            kvs_shm_block_t *out)
{
    struct kvs_client_shm *sh = c->shm;
    kvs_wire_shm_msg_t q, r;
    void *p;
    int ret;

    if (!sh)
        return -EOPNOTSUPP;
    if (!put || !out)
        return -EINVAL;
    ret = reserve_msg(sh, put, &q);
    if (ret)
        return ret;
    ret = roundtrip(c, sh, &q, &r, NULL);
    if (ret)
        return ret;
    p = in_map(sh, r.u.block.off, r.u.block.len);
    if (!p) {
        (void)kvs_shm_abort(c, r.u.block.id);
        return KVS_EPROTO;
    }
    out->id = r.u.block.id;
    out->data = p;
    out->len = r.u.block.len;
    out->nparts = put->nparts;
    out->tier = KVS_TIER_DRAM;
    out->cls = put->cls;
    out->lease_end_ns = 0;
    return 0;
}

static int by_id(kvs_client_t *c, uint8_t opcode, uint64_t id)
{
    kvs_wire_shm_msg_t q = {0}, r;

    if (!c->shm)
        return -EOPNOTSUPP;
    q.hdr.opcode = opcode;
    q.u.id.id = id;
    return roundtrip(c, c->shm, &q, &r, NULL);
}

KVS_API int kvs_shm_commit(kvs_client_t *c, uint64_t id)
{
    return by_id(c, KVS_OP_SHM_COMMIT, id);
}

KVS_API int kvs_shm_commit_nb(kvs_client_t *c, uint64_t id, int *status)
{
    kvs_wire_shm_msg_t q = {0};

    if (!c->shm)
        return -EOPNOTSUPP;
    if (!status)
        return -EINVAL;
    *status = 1;
    q.hdr.opcode = KVS_OP_SHM_COMMIT;
    q.u.id.id = id;
    return post_async(c, c->shm, &q, status);
}

KVS_API int kvs_shm_flush(kvs_client_t *c)
{
    struct kvs_client_shm *sh = c->shm;
    kvs_wire_shm_msg_t r;
    int ret;

    if (!sh)
        return -EOPNOTSUPP;
    while (sh->npend) {
        ret = recv_one(c, sh, &r, NULL);
        if (ret)
            return fail_pending(sh, ret);
        settle(sh, &r);
    }
    return 0;
}

KVS_API int kvs_shm_abort(kvs_client_t *c, uint64_t id)
{
    return by_id(c, KVS_OP_SHM_ABORT, id);
}

KVS_API int kvs_shm_release(kvs_client_t *c, uint64_t id)
{
    return by_id(c, KVS_OP_SHM_RELEASE, id);
}

KVS_API int kvs_shm_view(kvs_client_t *c, const void *key, uint32_t key_len,
                         uint32_t lease_ms, uint32_t *part_lens,
                         uint32_t part_cap, kvs_shm_block_t *out)
{
    struct kvs_client_shm *sh = c->shm;
    kvs_wire_shm_msg_t q = {0}, r;
    void *p;
    int ret;

    if (!sh)
        return -EOPNOTSUPP;
    if (!key || key_len == 0 || key_len > KVS_KEY_MAX || !out)
        return -EINVAL;
    q.hdr.opcode = KVS_OP_SHM_VIEW;
    q.u.view.key.data = key;
    q.u.view.key.len = key_len;
    q.u.view.lease_ms = lease_ms;
    ret = roundtrip(c, sh, &q, &r, NULL);
    if (ret)
        return ret;
    p = in_map(sh, r.u.block.off, r.u.block.len);
    if (!p || (part_lens && r.hdr.count > part_cap)) {
        (void)kvs_shm_release(c, r.u.block.id);
        return p ? -ENOBUFS : KVS_EPROTO;
    }
    if (part_lens)
        memcpy(part_lens, r.u.block.part_lens, 4ull * r.hdr.count);
    out->id = r.u.block.id;
    out->data = p;
    out->len = r.u.block.len;
    out->nparts = r.hdr.count;
    out->tier = r.u.block.tier;
    out->cls = r.u.block.cls;
    out->lease_end_ns = r.u.block.expiry_ns;
    return 0;
}

/* The one-block forms are batches of one: the same checks, the same
 * lease rule and the same fallback. */
KVS_API int kvs_shm_get(kvs_client_t *c, const void *key, uint32_t key_len,
                        void *buf, size_t cap, size_t *len_out)
{
    kvs_client_get_t it = {.key = {key, key_len}, .buf = buf, .cap = cap};
    int ret = kvs_shm_get_batch(c, &it, 1);

    if ((ret == 0 || ret == -ENOBUFS) && len_out)
        *len_out = it.len;
    return ret;
}

KVS_API int kvs_shm_put(kvs_client_t *c, const void *key, uint32_t key_len,
                        const void *buf, size_t len, uint32_t flags)
{
    kvs_iov_t part = {buf, len};
    kvs_client_put_t it = {
        .key = {key, key_len}, .parts = &part, .nparts = 1, .flags = flags};

    return kvs_shm_put_batch(c, &it, 1);
}

/* ---- batches: requests posted ahead of the copies -------------------
 *
 * One request at a time leaves both sides idle in turn: the daemon's
 * thread sleeps while the caller copies a block, and the caller waits a
 * round trip (and, on a VM, the thread's wake-up) before each copy. The
 * batch calls keep up to BATCH_AHEAD requests posted, so the daemon
 * answers block i+1 while the caller copies block i. Their replies come
 * in order among those of requests posted without waiting (pend), so
 * each reply is either the oldest of ours or settles the oldest of pend;
 * anything else is a protocol error. */
#define BATCH_AHEAD 8u

/* Posts q and returns its req_id in *id (0 on failure). */
static int post_ahead(kvs_client_t *c, struct kvs_client_shm *sh,
                      kvs_wire_shm_msg_t *q, uint64_t *id)
{
    int ret = post(c, sh, q);

    *id = ret ? 0 : q->hdr.req_id;
    return ret == KVS_EPEER ? fail_pending(sh, ret) : ret;
}

/* Receives replies until the one to req_id, settling pend's on the way. */
static int recv_ahead(kvs_client_t *c, struct kvs_client_shm *sh,
                      uint64_t req_id, uint8_t opcode, kvs_wire_shm_msg_t *r)
{
    for (;;) {
        int ret = recv_one(c, sh, r, NULL);

        if (ret)
            return fail_pending(sh, ret);
        if (r->hdr.req_id == req_id)
            return r->hdr.opcode == opcode ? 0 : fail_pending(sh, KVS_EPROTO);
        if (!sh->npend || sh->pend[sh->phead].req_id != r->hdr.req_id)
            return fail_pending(sh, KVS_EPROTO);
        settle(sh, r);
    }
}

/* Room in pend for what a batch posts without waiting (one per block, its
 * reply read before the next block's): the ring and our socket's receive
 * buffer then never hold more than PEND_MAX. */
static int batch_room(kvs_client_t *c)
{
    return c->shm->npend + 2 * BATCH_AHEAD + 1 > PEND_MAX ? kvs_shm_flush(c)
                                                          : 0;
}

/* One viewed block into its item: copy, part lengths, release. Returns
 * KVS_EEXPIRED when the copy ended after the lease (to be done again). */
static int view_into(kvs_client_t *c, const kvs_wire_shm_msg_t *r,
                     kvs_client_get_t *it)
{
    struct kvs_client_shm *sh = c->shm;
    kvs_wire_shm_msg_t q = {0};
    void *p = in_map(sh, r->u.block.off, r->u.block.len);
    int ret = 0;

    q.hdr.opcode = KVS_OP_SHM_RELEASE;
    q.u.id.id = r->u.block.id;
    it->len = r->u.block.len;
    it->nparts = r->hdr.count;
    it->tier = r->u.block.tier;
    it->cls = r->u.block.cls;
    if (!p)
        ret = KVS_EPROTO;
    else if (r->u.block.len > it->cap ||
             (it->part_lens && r->hdr.count > it->part_cap))
        ret = -ENOBUFS;
    if (!ret) {
        if (it->part_lens)
            memcpy(it->part_lens, r->u.block.part_lens, 4ull * r->hdr.count);
        memcpy(it->buf, p, r->u.block.len);
        /* The copy is complete before the clock is read. */
        atomic_thread_fence(memory_order_seq_cst);
        if (kvs_clock_mono_ns() >= r->u.block.expiry_ns)
            ret = KVS_EEXPIRED;
    }
    it->status = ret;
    /* Room was made by batch_room; its reply is settled by recv_ahead. */
    return post_async(c, sh, &q, NULL) ? KVS_EPEER : ret;
}

KVS_API int kvs_shm_get_batch(kvs_client_t *c, kvs_client_get_t *items,
                              size_t n)
{
    struct kvs_client_shm *sh = c->shm;
    uint64_t ids[BATCH_AHEAD];
    size_t posted = 0, done = 0;
    int ret;

    if (!items || n == 0)
        return -EINVAL; /* as kvs_client_get_batch */
    if (!sh)
        return kvs_client_get_batch(c, items, n, 0);
    for (size_t i = 0; i < n; i++) {
        if (!items[i].key.data || items[i].key.len == 0 ||
            items[i].key.len > KVS_KEY_MAX || (!items[i].buf && items[i].cap))
            return -EINVAL;
        items[i].status = 1;
    }
    ret = batch_room(c);
    while (!ret && done < n) {
        kvs_wire_shm_msg_t r;

        while (posted < n && posted - done < BATCH_AHEAD) {
            kvs_wire_shm_msg_t q = {0};

            q.hdr.opcode = KVS_OP_SHM_VIEW;
            q.u.view.key.data = items[posted].key.data;
            q.u.view.key.len = items[posted].key.len;
            ret = post_ahead(c, sh, &q, &ids[posted % BATCH_AHEAD]);
            if (ret)
                break;
            posted++;
        }
        if (ret || (ret = recv_ahead(c, sh, ids[done % BATCH_AHEAD],
                                     KVS_OP_SHM_VIEW, &r)))
            break;
        if (r.hdr.status)
            items[done].status = r.hdr.status;
        else if (view_into(c, &r, &items[done]) == KVS_EPEER)
            ret = KVS_EPEER;
        done++;
    }
    /* What the connection's failure left unanswered fails with it; the
     * views answered after the posts that failed cannot be read. */
    for (size_t i = done; i < n; i++)
        items[i].status = ret;
    if (ret)
        return ret;
    /* A copy that outlasted its lease is done again, one at a time. */
    for (size_t i = 0; i < n; i++)
        for (int t = 0; t < GET_TRIES && items[i].status == KVS_EEXPIRED; t++) {
            kvs_wire_shm_msg_t q = {0}, r;

            q.hdr.opcode = KVS_OP_SHM_VIEW;
            q.u.view.key.data = items[i].key.data;
            q.u.view.key.len = items[i].key.len;
            ret = batch_room(c);
            if (!ret)
                ret = roundtrip(c, sh, &q, &r, NULL);
            if (ret)
                items[i].status = ret;
            else if (view_into(c, &r, &items[i]) == KVS_EPEER)
                return KVS_EPEER;
        }
    for (size_t i = 0; i < n; i++)
        if (items[i].status)
            return items[i].status;
    return 0;
}

KVS_API int kvs_shm_put_batch(kvs_client_t *c, kvs_client_put_t *items,
                              size_t n)
{
    struct kvs_client_shm *sh = c->shm;
    uint64_t ids[BATCH_AHEAD];
    size_t posted = 0, done = 0;
    bool full = false; /* a RESERVE said -EAGAIN: the rest go by UCX */
    int ret;

    if (!items || n == 0)
        return -EINVAL; /* as kvs_client_put_batch */
    if (!sh)
        return kvs_client_put_batch(c, items, n);
    ret = batch_room(c);
    while (!ret && done < n) {
        kvs_client_put_t *it = &items[done];
        kvs_wire_shm_msg_t r, q = {0};
        uint64_t len = 0;
        uint8_t *p;

        while (posted < n && posted - done < BATCH_AHEAD) {
            /* A put the request cannot carry fails alone. */
            ids[posted % BATCH_AHEAD] = 0;
            items[posted].status = reserve_msg(sh, &items[posted], &q);
            if (!items[posted].status &&
                (ret = post_ahead(c, sh, &q, &ids[posted % BATCH_AHEAD])))
                break;
            posted++;
        }
        if (ret)
            break;
        if (!ids[done % BATCH_AHEAD]) {
            done++;
            continue;
        }
        ret =
            recv_ahead(c, sh, ids[done % BATCH_AHEAD], KVS_OP_SHM_RESERVE, &r);
        if (ret)
            break;
        done++;
        if (r.hdr.status) {
            it->status = r.hdr.status;
            full |= r.hdr.status == -EAGAIN;
            continue;
        }
        memset(&q, 0, sizeof(q));
        q.hdr.opcode = KVS_OP_SHM_COMMIT;
        q.u.id.id = r.u.block.id;
        for (uint32_t i = 0; i < it->nparts; i++)
            len += it->parts[i].len;
        p = in_map(sh, r.u.block.off, r.u.block.len);
        if (!p || r.u.block.len != len) {
            it->status = KVS_EPROTO;
            q.hdr.opcode = KVS_OP_SHM_ABORT;
        } else if (full) {
            /* Reserved after one that must go by UCX: it goes there too,
             * after it, so that the batch is stored in its order (a later
             * put of the same key still wins). */
            it->status = -EAGAIN;
            q.hdr.opcode = KVS_OP_SHM_ABORT;
        } else {
            for (uint32_t i = 0; i < it->nparts; i++) {
                memcpy(p, it->parts[i].base, it->parts[i].len);
                p += it->parts[i].len;
            }
            it->status = 1; /* the commit's reply sets it */
        }
        /* Room was made by batch_room; the reply is settled on the way. */
        ret = post_async(c, sh, &q, it->status == 1 ? &it->status : NULL);
    }
    for (size_t i = done; i < n; i++)
        items[i].status = ret;
    if (!ret)
        ret = kvs_shm_flush(c);
    if (ret)
        return ret;
    /* -EAGAIN: DRAM was full and the daemon's shared-memory thread does not
     * wait for room. The same put over UCX waits for it (up to
     * store.full_wait_ms) on one of the daemon's I/O threads. Every item
     * after the first such one is here too, so they go in order. */
    for (size_t i = 0; i < n; i++)
        if (items[i].status == -EAGAIN)
            (void)kvs_client_put_batch(c, &items[i], 1);
    for (size_t i = 0; i < n; i++)
        if (items[i].status)
            return items[i].status;
    return 0;
}
