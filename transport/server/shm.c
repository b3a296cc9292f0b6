/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory service (shm.h): the socket, its thread, and the
 * sessions of the clients attached to the arena.
 *
 * A session is one accepted connection on the Unix socket. Its peer's
 * credentials are read once (SO_PEERCRED, recorded by the kernel at
 * connect); ATTACH checks them and the tenant's token before the memfd is
 * passed (SCM_RIGHTS). After that the session owns:
 *
 *   resv[]:  blocks reserved in the arena, not yet committed or aborted;
 *            each keeps the daemon's own copy of its part lengths;
 *   views[]: blocks referenced (pinned) under a lease, until released,
 *            expired, or the session's end.
 *
 * Ids are (sequence << 16 | slot), so a COMMIT or RELEASE finds its slot
 * in O(1) and a stale or forged id is refused. When the client goes away
 * (EOF or an error on the socket: the kernel closes it when the process
 * dies, however it dies) every reservation is aborted and every view
 * unpinned: nothing a dead client held stays reserved.
 *
 * What the client can and cannot do with the mapping (docs/operations.md):
 * it can write any byte of the arena, so only trusted tenants get it. No
 * daemon metadata is trusted from the mapping: offsets, lengths and part
 * lengths of a reservation are the daemon's (kept here and rewritten into
 * the block's part table at commit), the checksum is computed by the
 * daemon at commit over what the arena then holds, and the block becomes
 * visible only after that. A view's part lengths, which lie in the arena
 * behind the block, are checked against the block's length (kept by the
 * store outside the arena) before they are reported.
 *
 * A VIEW of a block on NVMe only is not read on the service's thread: the
 * read (which pins the block in the arena) runs on an I/O thread of the
 * service's own disk queue, and the session is parked meanwhile: nothing
 * more is read from its socket, so its replies stay in order, while every
 * other session goes on being served. The read's end answers the VIEW and
 * unparks the session.
 *
 * The ring (docs/protocol.md 11.6). A session that asked for it at ATTACH
 * may pass a memfd of two rings of frame slots (RING): its requests and
 * replies then cross shared memory, not the socket, which carries only
 * one-byte doorbells from then on. The thread reads each ring while it
 * spins (daemon.busy_poll_us after the last request) and, before it
 * sleeps, says so in the ring's control words, so that a client rings the
 * doorbell only for a sleeping thread; a client sleeping on its socket is
 * rung the same way after a reply. Nothing in the ring is trusted: the
 * counters the client writes are checked against the daemon's own (kept
 * here), and each frame is copied out of its slot, its length checked,
 * before it is decoded, so a client rewriting it meanwhile changes
 * nothing. A session whose ring does not add up is closed.
 *
 * Threading: everything below belongs to the service's thread, except the
 * counters (atomics, read by STAT on the server's thread) and a cold
 * view's run() (the store is thread-safe; run() touches only its job).
 */
#include "transport/server/shm.h"
#include "common/clock.h"
#include "common/compiler.h"
#include "common/debug.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "kvstash/wire_shm.h"
#include "transport/server/server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RESV_MAX 256u        /* reservations per session */
#define VIEWS_MAX 4096u      /* views per session */
#define SESSIONS_MAX 256u    /* sessions at once */
#define SWEEP_NS 10000000ull /* lease expiry is checked this often */
/* The thread's spin grows up to SPIN_GROW times daemon.busy_poll_us
 * (shm_thread). */
#define SPIN_GROW 16u

typedef struct resv {
    uint64_t id; /* 0: slot free */
    kvs_put_stream_t ps;
    uint32_t nparts;
    uint32_t *lens; /* nparts, the daemon's copy */
} resv_t;

typedef struct view {
    uint64_t id; /* 0: slot free */
    uint64_t expiry_ns;
    bool expired; /* unpinned at expiry; the slot waits for RELEASE */
    kvs_view_t v;
} view_t;

struct cold;

typedef struct sess {
    struct sess *next, *prev;
    int fd;
    struct ucred cred;
    bool attached;
    uint32_t key_slot; /* its stream key in keys[], while attached */
    const kvs_tenant_t *tenant;
    uint32_t ns;
    uint64_t seq;
    resv_t *resv;         /* RESV_MAX, allocated at ATTACH */
    view_t *views;        /* VIEWS_MAX */
    uint32_t nviews_live; /* views pinned (not expired) */
    struct cold *cold;    /* a VIEW waiting for its disk read: parked */
    /* The ring, once RING was granted (else NULL), and the daemon's own
     * counters of it: requests read, replies written. */
    uint8_t *ring;
    uint32_t sq_head, cq_tail;
} sess_t;

/* A VIEW of a block on NVMe only, read on an I/O thread (the job is
 * first, so that the queue's pointer is the cold view's). */
typedef struct cold {
    kvs_djob_t job;
    struct kvs_shm *m;
    sess_t *s; /* NULL once the session is gone */
    kvs_wire_hdr_t req;
    uint32_t lease_ms;
    uint32_t ns;
    uint32_t key_len;
    uint8_t key[KVS_KEY_MAX];
    int ret; /* of the pin, by run() */
    uint8_t tier;
    kvs_view_t v; /* pinned when ret is 0 */
} cold_t;

struct kvs_shm {
    const kvs_server_config_t *cfg;
    kvs_store_t *store;
    int arena_fd;
    uint8_t *abase;
    size_t alen;
    int lfd, efd, epfd;
    kvs_diskq_t *dq; /* cold views' disk reads */
    bool stopping;
    bool cut; /* a client cut the arena's file: sharing is over */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    bool started;
    sess_t *sessions;
    uint32_t nsessions;
    uint64_t last_sweep_ns;
    /* The stream keys of attached sessions (0: free slot). Written here,
     * read by the UCX thread (kvs_shm_stream_key_ok). */
    _Atomic uint64_t keys[SESSIONS_MAX];
    uint8_t rx[KVS_WIRE_SHM_FRAME_MAX + 1];
    uint8_t tx[KVS_WIRE_SHM_FRAME_MAX];
    uint32_t lens[KVS_PARTS_MAX];
    uint32_t lens2[KVS_PARTS_MAX];
    kvs_iov_t iov[KVS_PARTS_MAX];
    atomic_uint_fast64_t st_sessions, st_resv, st_views, st_attached,
        st_refused, st_commits, st_reclaimed, st_expired, st_rings,
        st_arena_cut;
};

#define BUMP(ctr, d)                                                           \
    atomic_fetch_add_explicit(&(ctr), (d), memory_order_relaxed)

/* ---- the ring ----------------------------------------------------- */

/* A one-byte packet on the socket: the peer sleeps and has work. A full
 * socket buffer means doorbells it has not read yet: as good as this one. */
static void ring_doorbell(sess_t *s)
{
    (void)send(s->fd, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Puts the encoded reply (len bytes at m->tx) in the session's ring. */
static void ring_reply(kvs_shm_t *m, sess_t *s, size_t len)
{
    uint32_t head = atomic_load_explicit(
        kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_CQ_HEAD),
        memory_order_acquire);

    /* Full (or a head past our tail, which only a broken client writes):
     * the reply is lost, as on a full socket; the client's problem. */
    if (s->cq_tail - head >= KVS_WIRE_SHM_RING_SLOTS) {
        kvs_debug("shm: pid %d: reply ring full; reply lost", (int)s->cred.pid);
        return;
    }
    if (kvs_wire_shm_ring_push(s->ring, true, s->cq_tail++, m->tx,
                               (uint32_t)len, KVS_WIRE_SHM_RING_CQ_TAIL,
                               KVS_WIRE_SHM_RING_CLI_WAIT))
        ring_doorbell(s);
}

bool kvs_shm_tenant_allowed(const kvs_server_config_t *cfg,
                            const kvs_tenant_t *t)
{
    return cfg->ntenants == 0 || (t && t->shm);
}

bool kvs_shm_stream_key_ok(kvs_shm_t *m, uint64_t key)
{
    if (!m || key == 0)
        return false;
    for (uint32_t i = 0; i < SESSIONS_MAX; i++)
        if (atomic_load(&m->keys[i]) == key)
            return true;
    return false;
}

void kvs_shm_stats(kvs_shm_t *m, kvs_shm_stats_t *o)
{
    memset(o, 0, sizeof(*o));
    if (!m)
        return;
    o->sessions = atomic_load_explicit(&m->st_sessions, memory_order_relaxed);
    o->reservations = atomic_load_explicit(&m->st_resv, memory_order_relaxed);
    o->views = atomic_load_explicit(&m->st_views, memory_order_relaxed);
    o->attached = atomic_load_explicit(&m->st_attached, memory_order_relaxed);
    o->refused = atomic_load_explicit(&m->st_refused, memory_order_relaxed);
    o->commits = atomic_load_explicit(&m->st_commits, memory_order_relaxed);
    o->reclaimed = atomic_load_explicit(&m->st_reclaimed, memory_order_relaxed);
    o->expired = atomic_load_explicit(&m->st_expired, memory_order_relaxed);
    o->rings = atomic_load_explicit(&m->st_rings, memory_order_relaxed);
    o->arena_cut = atomic_load_explicit(&m->st_arena_cut, memory_order_relaxed);
}

/* ---- replies ------------------------------------------------------ */

static void send_msg(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *r,
                     int pass_fd)
{
    char cbuf[KVS_FDPASS_SPACE];
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t len;

    if (kvs_wire_shm_encode(r, m->tx, sizeof(m->tx), &len) != 0) {
        kvs_warn("shm: cannot encode a %u reply", r->hdr.opcode);
        return;
    }
    if (s->ring) {
        ring_reply(m, s, len);
        return;
    }
    iov.iov_base = m->tx;
    iov.iov_len = len;
    if (pass_fd >= 0)
        kvs_fdpass_attach(&mh, cbuf, pass_fd);
    /* A client that does not read its replies fills its socket buffer:
     * the send fails (MSG_DONTWAIT) and the reply is lost, which is the
     * client's problem only; the service never blocks on one client. */
    if (sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        kvs_debug("shm: pid %d: reply lost: %s", (int)s->cred.pid,
                  strerror(errno));
}

static kvs_wire_shm_msg_t reply_to(const kvs_wire_hdr_t *req, int status)
{
    kvs_wire_shm_msg_t r;

    memset(&r, 0, sizeof(r));
    r.hdr.opcode = req->opcode;
    r.hdr.flags = KVS_WIRE_F_REPLY;
    r.hdr.req_id = req->req_id;
    r.hdr.status = status;
    return r;
}

static void send_status(kvs_shm_t *m, sess_t *s, const kvs_wire_hdr_t *req,
                        int status)
{
    kvs_wire_shm_msg_t r = reply_to(req, status);

    send_msg(m, s, &r, -1);
}

/* ---- sessions ----------------------------------------------------- */

static void drop_view(kvs_shm_t *m, sess_t *s, view_t *v)
{
    if (!v->expired) {
        kvs_store_unpin_view(m->store, &v->v);
        s->nviews_live--;
        BUMP(m->st_views, (uint64_t)-1);
    }
    v->id = 0;
}

static void drop_resv(kvs_shm_t *m, resv_t *r)
{
    kvs_store_put_abort(m->store, &r->ps);
    free(r->lens);
    r->lens = NULL;
    r->id = 0;
    BUMP(m->st_resv, (uint64_t)-1);
}

static void sess_close(kvs_shm_t *m, sess_t *s)
{
    uint64_t n = 0;

    if (s->cold)
        s->cold->s = NULL; /* its done() unpins what it read */
    for (uint32_t i = 0; s->resv && i < RESV_MAX; i++)
        if (s->resv[i].id) {
            drop_resv(m, &s->resv[i]);
            n++;
        }
    for (uint32_t i = 0; s->views && i < VIEWS_MAX; i++)
        if (s->views[i].id) {
            n += !s->views[i].expired;
            drop_view(m, s, &s->views[i]);
        }
    if (n) {
        BUMP(m->st_reclaimed, n);
        kvs_info("shm: pid %d went away; %llu reservations and views "
                 "reclaimed",
                 (int)s->cred.pid, (unsigned long long)n);
    }
    if (s->attached) {
        atomic_store(&m->keys[s->key_slot], 0);
        BUMP(m->st_sessions, (uint64_t)-1);
    }
    if (s->ring) {
        munmap(s->ring, KVS_WIRE_SHM_RING_BYTES);
        BUMP(m->st_rings, (uint64_t)-1);
    }
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        m->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    m->nsessions--;
    free(s->resv);
    free(s->views);
    free(s);
}

static uint64_t next_id(sess_t *s, uint32_t slot)
{
    return (++s->seq << 16) | slot;
}

static bool peer_allowed(const kvs_shm_t *m, const struct ucred *c)
{
    return c->uid == geteuid() ||
           (m->cfg->shm_gid >= 0 && c->gid == (gid_t)m->cfg->shm_gid);
}

/* ---- operations --------------------------------------------------- */

static int attach(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q,
                  uint64_t *key)
{
    const kvs_tenant_t *t;
    char ns[KVS_NS_NAME_MAX + 1];
    int ret;

    if (s->attached)
        return KVS_EPROTO;
    if (m->cut)
        return -EIO; /* logged when it was found (sweep) */
    if (!peer_allowed(m, &s->cred)) {
        kvs_warn("shm: pid %d, uid %u, gid %u refused: not the daemon's "
                 "user nor daemon.shm_group",
                 (int)s->cred.pid, (unsigned)s->cred.uid,
                 (unsigned)s->cred.gid);
        return KVS_EAUTH;
    }
    t = kvs_handler_tenant_find(m->cfg, &q->u.attach.token);
    if (!t) {
        kvs_info("shm: pid %d: bad token", (int)s->cred.pid);
        return KVS_EAUTH;
    }
    if (!kvs_shm_tenant_allowed(m->cfg, t)) {
        kvs_warn("shm: pid %d: tenant %s may not map the arena (set "
                 "tenant.%s.shm = true to allow it)",
                 (int)s->cred.pid, t->name, t->name);
        return KVS_EAUTH;
    }
    if (memchr(q->u.attach.ns.data, '\0', q->u.attach.ns.len))
        return KVS_EPROTO;
    if (!kvs_handler_ns_allowed(t, &q->u.attach.ns))
        return -EACCES; /* as a PUT there (docs/protocol.md section 8) */
    memcpy(ns, q->u.attach.ns.data, q->u.attach.ns.len);
    ns[q->u.attach.ns.len] = '\0';
    ret = kvs_store_ns_open(m->store, ns, q->u.attach.elem_size, &s->ns);
    if (ret)
        return ret;
    s->resv = calloc(RESV_MAX, sizeof(*s->resv));
    s->views = calloc(VIEWS_MAX, sizeof(*s->views));
    if (!s->resv || !s->views)
        return -ENOMEM;
    for (s->key_slot = 0; s->key_slot < SESSIONS_MAX; s->key_slot++)
        if (atomic_load(&m->keys[s->key_slot]) == 0)
            break;
    if (s->key_slot == SESSIONS_MAX) /* cannot be: a slot per session */
        return KVS_EFULL;
    *key = 0;
    while (*key == 0)
        if (getrandom(key, sizeof(*key), 0) != sizeof(*key))
            return -EIO;
    atomic_store(&m->keys[s->key_slot], *key);
    s->tenant = t;
    s->attached = true;
    BUMP(m->st_sessions, 1);
    BUMP(m->st_attached, 1);
    kvs_debug("shm: pid %d attached: tenant %s, namespace '%s'",
              (int)s->cred.pid, t->name, ns);
    return 0;
}

static void op_attach(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q)
{
    kvs_wire_shm_msg_t r;
    uint64_t key = 0;
    int ret = attach(m, s, q, &key);

    if (ret) {
        BUMP(m->st_refused, 1);
        send_status(m, s, &q->hdr, ret);
        return;
    }
    r = reply_to(&q->hdr, 0);
    r.hdr.count = q->u.attach.features & KVS_WIRE_SHM_FEAT_RING;
    r.u.attach_rep.arena_len = m->alen;
    r.u.attach_rep.max_block = 0;
    r.u.attach_rep.lease_max_ms = m->cfg->lease_max_ms;
    r.u.attach_rep.stream_key = key;
    send_msg(m, s, &r, m->arena_fd);
}

static int find_free(const void *arr, size_t elem, uint32_t n, uint32_t *slot)
{
    for (uint32_t i = 0; i < n; i++)
        if (*(const uint64_t *)(const void *)((const uint8_t *)arr +
                                              (size_t)i * elem) == 0) {
            *slot = i;
            return 0;
        }
    return KVS_EFULL;
}

static void op_reserve(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q)
{
    const uint32_t n = q->hdr.count;
    kvs_wire_shm_msg_t r;
    kvs_put_args_t a;
    uint64_t total = 0;
    uint32_t slot;
    resv_t *rv;
    size_t len0;
    uint8_t *p;
    int ret;

    if (q->u.reserve.flags & ~KVS_WIRE_PUT_DURABLE) {
        send_status(m, s, &q->hdr, KVS_EPROTO);
        return;
    }
    if (find_free(s->resv, sizeof(*s->resv), RESV_MAX, &slot)) {
        send_status(m, s, &q->hdr, KVS_EFULL);
        return;
    }
    rv = &s->resv[slot];
    for (uint32_t i = 0; i < n; i++) {
        m->iov[i].base = NULL;
        m->iov[i].len = q->u.reserve.part_lens[i];
        total += q->u.reserve.part_lens[i];
    }
    memset(&a, 0, sizeof(a));
    a.ns = s->ns;
    a.key = q->u.reserve.key.data;
    a.key_len = q->u.reserve.key.len;
    a.parent = q->u.reserve.parent.len ? q->u.reserve.parent.data : NULL;
    a.parent_len = q->u.reserve.parent.len;
    a.parts = m->iov;
    a.nparts = n;
    /* This thread serves every mapped client: it never waits for room in
     * DRAM. While DRAM is full of blocks the write-behind has not written
     * yet, RESERVE is answered -EAGAIN at once; libkvstash then puts the
     * block over UCX, where the wait runs on an I/O thread. */
    a.flags = q->u.reserve.flags | KVS_PUT_NO_WAIT;
    a.cls = q->u.reserve.cls;
    a.elem_size = q->u.reserve.elem_size;
    a.ttl_ms = q->u.reserve.ttl_ms;
    a.group = q->u.reserve.group;
    rv->lens = malloc(4ull * n);
    if (!rv->lens) {
        send_status(m, s, &q->hdr, -ENOMEM);
        return;
    }
    memcpy(rv->lens, q->u.reserve.part_lens, 4ull * n);
    ret = kvs_store_put_begin(m->store, &a, &rv->ps);
    if (ret) {
        free(rv->lens);
        rv->lens = NULL;
        send_status(m, s, &q->hdr, ret == -EWOULDBLOCK ? -EAGAIN : ret);
        return;
    }
    p = kvs_store_put_part_buf(m->store, &rv->ps, 0, &len0);
    kvs_assert(p && p >= m->abase && p + total <= m->abase + m->alen);
    rv->nparts = n;
    rv->id = next_id(s, slot);
    BUMP(m->st_resv, 1);
    r = reply_to(&q->hdr, 0);
    r.u.block.id = rv->id;
    r.u.block.off = (uint64_t)(p - m->abase);
    r.u.block.len = total;
    send_msg(m, s, &r, -1);
}

static resv_t *find_resv(sess_t *s, uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffff);

    if (!id || slot >= RESV_MAX || s->resv[slot].id != id)
        return NULL;
    return &s->resv[slot];
}

static void op_commit(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q)
{
    resv_t *rv = find_resv(s, q->u.id.id);
    int ret;

    if (!rv) {
        send_status(m, s, &q->hdr, KVS_ENOTFOUND);
        return;
    }
    if (q->hdr.opcode == KVS_OP_SHM_ABORT) {
        drop_resv(m, rv);
        send_status(m, s, &q->hdr, 0);
        return;
    }
    ret = kvs_store_put_seal_parts(m->store, &rv->ps, rv->lens);
    free(rv->lens);
    rv->lens = NULL;
    rv->id = 0;
    BUMP(m->st_resv, (uint64_t)-1);
    if (ret == 0)
        BUMP(m->st_commits, 1);
    send_status(m, s, &q->hdr, ret);
}

/* The view's part lengths, copied from the store's record of the DRAM
 * copy (daemon memory, never the arena) and checked against the block's
 * length: a second guard, since nothing a mapped client writes reaches
 * either. */
static int view_lens(kvs_shm_t *m, const kvs_view_t *v)
{
    uint64_t sum = 0;

    if (v->nparts == 0 || v->nparts > KVS_PARTS_MAX)
        return KVS_ECORRUPT;
    memcpy(m->lens2, v->part_lens, 4ull * v->nparts);
    for (uint32_t i = 0; i < v->nparts; i++)
        sum += m->lens2[i];
    return sum == v->len ? 0 : KVS_ECORRUPT;
}

/* Answers a VIEW with the block pinned in v (found in tier), or with
 * ret: the view is the session's from here, the pin its. */
static void view_reply(kvs_shm_t *m, sess_t *s, const kvs_wire_hdr_t *req,
                       uint32_t lease_ms, int ret, kvs_view_t *pinned,
                       uint8_t tier)
{
    uint32_t ms = lease_ms ? lease_ms : m->cfg->lease_default_ms;
    kvs_wire_shm_msg_t r;
    uint32_t slot;
    view_t *v;

    if (ret) {
        send_status(m, s, req, ret);
        return;
    }
    /* The one search for a slot on a hit in DRAM; a cold VIEW checked
     * before its read (op_view) and its session took nothing since. */
    if (find_free(s->views, sizeof(*s->views), VIEWS_MAX, &slot)) {
        kvs_store_unpin_view(m->store, pinned);
        send_status(m, s, req, KVS_EFULL);
        return;
    }
    v = &s->views[slot];
    v->v = *pinned;
    ret = view_lens(m, &v->v);
    if (ret) {
        kvs_warn("shm: a block's part table does not add up to its length "
                 "(a bug in the store); the view is refused");
        kvs_store_unpin_view(m->store, &v->v);
        send_status(m, s, req, ret);
        return;
    }
    if (ms > m->cfg->lease_max_ms)
        ms = m->cfg->lease_max_ms;
    v->expiry_ns = kvs_clock_mono_ns() + (uint64_t)ms * 1000000ull;
    v->expired = false;
    v->id = next_id(s, slot);
    s->nviews_live++;
    BUMP(m->st_views, 1);
    r = reply_to(req, 0);
    r.hdr.count = v->v.nparts;
    r.u.block.id = v->id;
    r.u.block.off = v->v.arena_off;
    r.u.block.len = v->v.len;
    r.u.block.tier = tier;
    r.u.block.cls = v->v.cls;
    r.u.block.expiry_ns = v->expiry_ns;
    r.u.block.part_lens = m->lens2;
    send_msg(m, s, &r, -1);
}

/* Sets what the session's socket wakes the thread for: nothing while a
 * VIEW is parked (EPOLLHUP and EPOLLERR are reported anyway). */
static void sess_listen(kvs_shm_t *m, sess_t *s, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = s};

    if (epoll_ctl(m->epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0)
        kvs_warn("shm: pid %d: epoll: %s", (int)s->cred.pid, strerror(errno));
}

/* On an I/O thread: reads the block into the arena and pins it there. */
static void cold_run(kvs_djob_t *job)
{
    cold_t *c = (cold_t *)job;

    c->ret = kvs_store_pin_flags(c->m->store, c->ns, c->key, c->key_len,
                                 KVS_PIN_GET, &c->v, &c->tier);
}

/* On the service's thread: answers the parked VIEW, unparks. */
static void cold_done(kvs_djob_t *job, bool cancelled)
{
    cold_t *c = (cold_t *)job;
    kvs_shm_t *m = c->m;
    sess_t *s = c->s;
    int ret = cancelled ? -ECANCELED : c->ret;

    if (s && !m->stopping) {
        s->cold = NULL;
        view_reply(m, s, &c->req, c->lease_ms, ret, &c->v, c->tier);
        sess_listen(m, s, true);
    } else {
        if (s)
            s->cold = NULL;
        if (ret == 0)
            kvs_store_unpin_view(m->store, &c->v);
    }
    free(c);
}

static void op_view(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q)
{
    kvs_view_t v;
    uint32_t slot;
    uint8_t tier = 0;
    cold_t *c;
    int ret;

    ret = kvs_store_pin_flags(m->store, s->ns, q->u.view.key.data,
                              q->u.view.key.len, KVS_PIN_GET | KVS_PIN_NO_READ,
                              &v, &tier);
    if (ret != -EWOULDBLOCK) {
        view_reply(m, s, &q->hdr, q->u.view.lease_ms, ret, &v, tier);
        return;
    }
    /* On NVMe only: read into the arena on an I/O thread, the session
     * parked until then; not read at all when no view slot is left. */
    if (find_free(s->views, sizeof(*s->views), VIEWS_MAX, &slot)) {
        send_status(m, s, &q->hdr, KVS_EFULL);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        send_status(m, s, &q->hdr, -ENOMEM);
        return;
    }
    c->job.run = cold_run;
    c->job.done = cold_done;
    c->m = m;
    c->s = s;
    c->req = q->hdr;
    c->lease_ms = q->u.view.lease_ms;
    c->ns = s->ns;
    c->key_len = q->u.view.key.len;
    memcpy(c->key, q->u.view.key.data, c->key_len);
    s->cold = c;
    sess_listen(m, s, false);
    kvs_diskq_submit(m->dq, &c->job);
}

static void op_release(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q)
{
    uint64_t id = q->u.id.id;
    uint32_t slot = (uint32_t)(id & 0xffff);
    view_t *v;
    bool was_expired;

    if (!id || slot >= VIEWS_MAX || s->views[slot].id != id) {
        send_status(m, s, &q->hdr, KVS_ENOTFOUND);
        return;
    }
    v = &s->views[slot];
    was_expired = v->expired;
    drop_view(m, s, v);
    send_status(m, s, &q->hdr, was_expired ? KVS_EEXPIRED : 0);
}

/* RING: maps the client's memfd (rfd, ours to close) as the session's
 * ring. The reply goes over the socket; every later one in the ring. */
static void op_ring(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *q,
                    int rfd)
{
    struct stat st;
    int seals;
    void *p;

    if (s->ring || rfd < 0 || q->u.ring.slots != KVS_WIRE_SHM_RING_SLOTS ||
        q->u.ring.slot_size != KVS_WIRE_SHM_RING_SLOT) {
        send_status(m, s, &q->hdr, -EINVAL);
        return;
    }
    /* The size must not change under us (a shrunk file faults the reader
     * with SIGBUS): only a memfd sealed against shrinking is taken. */
    seals = fcntl(rfd, F_GET_SEALS); /* -1 for a file that is no memfd */
    if (fstat(rfd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size != KVS_WIRE_SHM_RING_BYTES || seals < 0 ||
        !(seals & F_SEAL_SHRINK)) {
        kvs_info("shm: pid %d: RING refused: not a memfd of %u bytes sealed "
                 "against shrinking",
                 (int)s->cred.pid, (unsigned)KVS_WIRE_SHM_RING_BYTES);
        send_status(m, s, &q->hdr, -EINVAL);
        return;
    }
    p = mmap(NULL, KVS_WIRE_SHM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
             rfd, 0);
    if (p == MAP_FAILED) {
        send_status(m, s, &q->hdr, -errno);
        return;
    }
    /* Every counter starts at 0 (the client may post as soon as it has
     * this reply, before the lines below run). */
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_SQ_HEAD), 0);
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_CQ_TAIL), 0);
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_SRV_WAIT), 0);
    s->sq_head = 0;
    s->cq_tail = 0;
    send_status(m, s, &q->hdr, 0); /* still over the socket */
    s->ring = p;
    BUMP(m->st_rings, 1);
}

/* Answers one request (rfd: an fd that came with it, or -1; closed here
 * unless RING keeps it); true when it closed the session. */
static bool handle(kvs_shm_t *m, sess_t *s, size_t len, int rfd)
{
    kvs_wire_shm_msg_t q;
    int ret = kvs_wire_shm_decode(m->rx, len, m->lens, &q);

    if (ret == 0 && q.hdr.opcode == KVS_OP_SHM_RING && s->attached) {
        op_ring(m, s, &q, rfd);
        if (rfd >= 0)
            close(rfd);
        return false;
    }
    if (rfd >= 0)
        close(rfd);

    if (ret == 0 && (q.hdr.flags & KVS_WIRE_F_REPLY))
        ret = KVS_EPROTO;
    if (ret) {
        kvs_warn("shm: pid %d: bad frame (%s); closing", (int)s->cred.pid,
                 kvs_strerror(ret));
        if (len >= KVS_WIRE_HDR_SIZE && q.hdr.opcode >= KVS_OP_SHM_ATTACH &&
            q.hdr.opcode <= KVS_OP_SHM_RING)
            send_status(m, s, &q.hdr, ret);
        sess_close(m, s);
        return true;
    }
    if (!s->attached && q.hdr.opcode != KVS_OP_SHM_ATTACH) {
        send_status(m, s, &q.hdr, KVS_EAUTH);
        return false;
    }
    switch (q.hdr.opcode) {
    case KVS_OP_SHM_ATTACH:
        op_attach(m, s, &q);
        break;
    case KVS_OP_SHM_RESERVE:
        op_reserve(m, s, &q);
        break;
    case KVS_OP_SHM_COMMIT:
    case KVS_OP_SHM_ABORT:
        op_commit(m, s, &q);
        break;
    case KVS_OP_SHM_VIEW:
        op_view(m, s, &q);
        break;
    case KVS_OP_SHM_RELEASE:
        op_release(m, s, &q);
        break;
    default: /* RING twice, or over the ring */
        send_status(m, s, &q.hdr, -EINVAL);
        break;
    }
    return false;
}

/* Answers what the session's ring holds, unless parked, up to a ring's
 * worth per call, so that a client refilling its ring as fast as it is
 * read cannot keep the thread from the other sessions. True when the
 * session was closed (s is gone); *work is set when a request was read. */
static bool ring_poll(kvs_shm_t *m, sess_t *s, bool *work)
{
    for (uint32_t k = 0; k < KVS_WIRE_SHM_RING_SLOTS && !s->cold; k++) {
        uint32_t tail = atomic_load_explicit(
            kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_SQ_TAIL),
            memory_order_acquire);
        uint32_t len;
        uint8_t *slot;

        if (tail == s->sq_head)
            return false;
        slot = kvs_wire_shm_ring_slot(s->ring, false, s->sq_head);
        memcpy(&len, slot, 4);
        if (tail - s->sq_head > KVS_WIRE_SHM_RING_SLOTS ||
            len < KVS_WIRE_HDR_SIZE || len > KVS_WIRE_SHM_FRAME_MAX) {
            kvs_warn("shm: pid %d: its request ring does not add up (%u "
                     "requests ahead, a frame of %u bytes); closing",
                     (int)s->cred.pid, tail - s->sq_head, len);
            sess_close(m, s);
            return true;
        }
        /* Copied out first: the client can write the slot at any time. */
        memcpy(m->rx, slot + 4, len);
        atomic_store_explicit(
            kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_SQ_HEAD),
            ++s->sq_head, memory_order_release);
        *work = true;
        if (handle(m, s, len, -1))
            return true;
    }
    return false;
}

/* Before the thread sleeps: tells each ring's client to ring the doorbell
 * for its next request. False when a request came in meanwhile (then the
 * thread does not sleep). */
static bool ring_arm(kvs_shm_t *m, bool on)
{
    bool idle = true;

    for (sess_t *s = m->sessions; s; s = s->next)
        if (s->ring)
            atomic_store(
                kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_SRV_WAIT),
                on ? 1u : 0u);
    if (!on)
        return true;
    atomic_thread_fence(memory_order_seq_cst);
    for (sess_t *s = m->sessions; s; s = s->next)
        if (s->ring && !s->cold &&
            atomic_load(kvs_wire_shm_ring_word(
                s->ring, KVS_WIRE_SHM_RING_SQ_TAIL)) != s->sq_head)
            idle = false;
    return idle;
}

/* ---- the thread --------------------------------------------------- */

static void accept_one(kvs_shm_t *m)
{
    socklen_t cl = sizeof(struct ucred);
    struct epoll_event ev = {.events = EPOLLIN};
    sess_t *s;
    int fd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return;
    if (m->nsessions >= SESSIONS_MAX) {
        kvs_warn("shm: %u sessions already; refusing one", SESSIONS_MAX);
        close(fd);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return;
    }
    s->fd = fd;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &s->cred, &cl) != 0) {
        free(s);
        close(fd);
        return;
    }
    ev.data.ptr = s;
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(s);
        close(fd);
        return;
    }
    s->next = m->sessions;
    if (s->next)
        s->next->prev = s;
    m->sessions = s;
    m->nsessions++;
}

static void readable(kvs_shm_t *m, sess_t *s, uint32_t events)
{
    if (s->cold) {
        /* Parked: only a hang-up or an error wakes us; the client is
         * gone, and its VIEW's read is let go at its end. */
        if (events & (EPOLLHUP | EPOLLERR))
            sess_close(m, s);
        return;
    }
    for (;;) {
        char cbuf[KVS_FDPASS_SPACE];
        struct iovec iov = {.iov_base = m->rx, .iov_len = sizeof(m->rx)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        int rfd = n >= 0 ? kvs_fdpass_take(&mh) : -1;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0 && s->ring && n == 1 && rfd < 0)
            continue; /* a doorbell: the ring is read after the events */
        if (n <= 0 || s->ring || (size_t)n > KVS_WIRE_SHM_FRAME_MAX ||
            (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            if (n > 0)
                kvs_warn("shm: pid %d: %s; closing", (int)s->cred.pid,
                         s->ring ? "a frame on the socket after RING"
                                 : "a frame over the size limit");
            if (rfd >= 0)
                close(rfd);
            sess_close(m, s);
            return;
        }
        if (handle(m, s, (size_t)n, rfd))
            return; /* closed: s is gone */
        if (s->cold)
            return; /* parked: the rest waits for its VIEW's read */
    }
}

static void sweep(kvs_shm_t *m, uint64_t now)
{
    /* A client that truncated the arena's file (possible only where it is
     * a file on the private tmpfs: a memfd is sealed) took the pages past
     * the cut out of the sharing; the daemon has private memory there now
     * (common/hugemem.h). Nothing mapped agrees with it any more, so every
     * session ends, and ATTACH is refused until a restart. */
    if (!m->cut && kvs_store_arena_cut(m->store)) {
        m->cut = true;
        BUMP(m->st_arena_cut, 1);
        kvs_error("shm: a client cut the shared arena's file (ftruncate); "
                  "shared memory is off until kvstashd restarts: %u "
                  "sessions closed, clients go on over UCX",
                  m->nsessions);
        while (m->sessions)
            sess_close(m, m->sessions);
    }
    for (sess_t *s = m->sessions; s; s = s->next) {
        if (!s->nviews_live)
            continue;
        for (uint32_t i = 0; i < VIEWS_MAX; i++) {
            view_t *v = &s->views[i];

            if (v->id && !v->expired && now >= v->expiry_ns) {
                kvs_store_unpin_view(m->store, &v->v);
                v->expired = true;
                s->nviews_live--;
                BUMP(m->st_views, (uint64_t)-1);
                BUMP(m->st_expired, 1);
            }
        }
    }
}

static void *shm_thread(void *arg)
{
    kvs_shm_t *m = arg;
    struct epoll_event evs[32];

    /* The spin after the last request: daemon.busy_poll_us, grown up to
     * SPIN_GROW times that while requests keep coming soon after the
     * thread fell asleep (a client copying a MiB between two requests
     * leaves a gap of about 100 us, and a wake-up costs tens of them on a
     * VM), back to it once the thread slept a whole longest spin without
     * a request. KVM's halt polling adapts the same way. 0: no spin. */
    const uint64_t base_ns = (uint64_t)m->cfg->busy_poll_us * 1000;
    uint64_t spin_ns = base_ns, last = 0, asleep_since = 0;

    for (;;) {
        /* A ring is read on each turn; before the thread sleeps, each
         * ring's client is told to ring the doorbell (ring_arm). */
        uint64_t now = kvs_clock_mono_ns();
        bool sleep = now - last >= spin_ns && ring_arm(m, true);
        int n = epoll_wait(m->epfd, evs, 32, sleep ? 5 : 0);
        bool work = n > 0;

        if (sleep) {
            (void)ring_arm(m, false);
            if (!asleep_since)
                asleep_since = now;
        }
        now = kvs_clock_mono_ns();

        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &m->efd)
                return NULL;
            if (evs[i].data.ptr == &m->lfd)
                accept_one(m);
            else if (evs[i].data.ptr == &m->dq)
                kvs_diskq_poll(m->dq); /* cold views read: answered */
            else
                readable(m, evs[i].data.ptr, evs[i].events);
        }
        for (sess_t *s = m->sessions, *next; s; s = next) {
            next = s->next; /* s may be closed */
            if (s->ring)
                (void)ring_poll(m, s, &work);
        }
        if (work) {
            if (asleep_since)
                spin_ns = now - asleep_since < SPIN_GROW * base_ns
                              ? KVS_MIN(2 * spin_ns, SPIN_GROW * base_ns)
                              : base_ns;
            asleep_since = 0;
            last = now;
        }
        if (now - m->last_sweep_ns >= SWEEP_NS) {
            sweep(m, now);
            m->last_sweep_ns = now;
        }
    }
}

/* ---- start and stop ----------------------------------------------- */

static int listen_unix(kvs_shm_t *m, const char *path, int gid)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        kvs_error("daemon.shm_socket: '%s' is longer than %zu bytes", path,
                  sizeof(sa.sun_path) - 1);
        return KVS_ECONFIG;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            kvs_error("daemon.shm_socket: '%s' exists and is not a socket; "
                      "remove it or choose another path",
                      path);
            return KVS_ECONFIG;
        }
        unlink(path); /* a stale socket of an earlier daemon */
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    m->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (m->lfd < 0)
        return -errno;
    /* The socket is created with the mode the umask leaves: no window in
     * which another user could connect before the chmod below. */
    old = umask(0177);
    ret = bind(m->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (ret != 0) {
        ret = -errno;
        kvs_error("daemon.shm_socket: cannot bind '%s': %s", path,
                  strerror(-ret));
        return ret;
    }
    snprintf(m->path, sizeof(m->path), "%s", path);
    if (gid >= 0 &&
        (chown(path, (uid_t)-1, (gid_t)gid) != 0 || chmod(path, 0660) != 0)) {
        ret = -errno;
        kvs_error("daemon.shm_group: cannot give '%s' to group %d: %s", path,
                  gid, strerror(-ret));
        return ret;
    }
    if (listen(m->lfd, 64) != 0)
        return -errno;
    return 0;
}

static int add_fd(kvs_shm_t *m, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};

    return epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int kvs_shm_start(const kvs_server_config_t *cfg, kvs_store_t *store,
                  kvs_shm_t **out)
{
    kvs_shm_t *m;
    int ret;

    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->cfg = cfg;
    m->store = store;
    m->lfd = m->efd = m->epfd = -1;
    m->arena_fd = kvs_store_arena_fd(store);
    m->abase = kvs_store_arena(store, &m->alen);
    if (m->arena_fd < 0) {
        kvs_error("daemon.shm_socket: the DRAM arena is not on a memfd "
                  "(store.dram_shared)");
        ret = KVS_ECONFIG;
        goto err_free;
    }
    ret = listen_unix(m, cfg->shm_socket, cfg->shm_gid);
    if (ret)
        goto err_free;
    m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->efd < 0 || m->epfd < 0) {
        ret = -errno;
        goto err_free;
    }
    ret = kvs_diskq_create(cfg->io_threads ? cfg->io_threads : 1, &m->dq);
    if (ret)
        goto err_free;
    ret = add_fd(m, m->lfd, &m->lfd);
    if (!ret)
        ret = add_fd(m, m->efd, &m->efd);
    if (!ret)
        ret = add_fd(m, kvs_diskq_fd(m->dq), &m->dq);
    if (ret)
        goto err_free;
    ret = -pthread_create(&m->thread, NULL, shm_thread, m);
    if (ret)
        goto err_free;
    m->started = true;
    kvs_info("shared memory: %s (mode %s), %zu MiB arena", cfg->shm_socket,
             cfg->shm_gid >= 0 ? "0660" : "0600", m->alen >> 20);
    *out = m;
    return 0;

err_free:
    kvs_shm_stop(m);
    return ret;
}

void kvs_shm_stop(kvs_shm_t *m)
{
    if (!m)
        return;
    if (m->started) {
        uint64_t one = 1;

        if (write(m->efd, &one, sizeof(one)) != sizeof(one))
            kvs_warn("shm: cannot wake the thread: %s", strerror(errno));
        pthread_join(m->thread, NULL);
    }
    /* Cold views' reads end here (done() on this thread, no replies). */
    m->stopping = true;
    kvs_diskq_destroy(m->dq);
    while (m->sessions)
        sess_close(m, m->sessions);
    if (m->lfd >= 0)
        close(m->lfd);
    if (m->path[0])
        unlink(m->path);
    if (m->efd >= 0)
        close(m->efd);
    if (m->epfd >= 0)
        close(m->epfd);
    free(m);
}
