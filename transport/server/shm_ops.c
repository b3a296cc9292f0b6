/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory service's requests (docs/protocol.md section 11):
 * ATTACH, RESERVE, COMMIT and ABORT, VIEW (a cold one read on an I/O
 * thread, its session parked meanwhile), RELEASE and RING, and the
 * dispatch of a decoded frame to them. shm.c owns the sessions, the
 * socket, the ring and the thread; see its header for the rules.
 */
#include "transport/server/shm_int.h"

/* ---- operations --------------------------------------------------- */

static bool peer_allowed(const kvs_shm_t *m, const struct ucred *c)
{
    return c->uid == geteuid() ||
           (m->cfg->shm_gid >= 0 && c->gid == (gid_t)m->cfg->shm_gid);
}

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
        kvs_shm_send_status(m, s, &q->hdr, ret);
        return;
    }
    r = kvs_shm_reply_to(&q->hdr, 0);
    r.hdr.count = q->u.attach.features & KVS_WIRE_SHM_FEAT_RING;
    r.u.attach_rep.arena_len = m->alen;
    r.u.attach_rep.max_block = 0;
    r.u.attach_rep.lease_max_ms = m->cfg->lease_max_ms;
    r.u.attach_rep.stream_key = key;
    kvs_shm_send_msg(m, s, &r, m->arena_fd);
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
        kvs_shm_send_status(m, s, &q->hdr, KVS_EPROTO);
        return;
    }
    if (find_free(s->resv, sizeof(*s->resv), RESV_MAX, &slot)) {
        kvs_shm_send_status(m, s, &q->hdr, KVS_EFULL);
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
        kvs_shm_send_status(m, s, &q->hdr, -ENOMEM);
        return;
    }
    memcpy(rv->lens, q->u.reserve.part_lens, 4ull * n);
    ret = kvs_store_put_begin(m->store, &a, &rv->ps);
    if (ret) {
        free(rv->lens);
        rv->lens = NULL;
        kvs_shm_send_status(m, s, &q->hdr, ret == -EWOULDBLOCK ? -EAGAIN : ret);
        return;
    }
    p = kvs_store_put_part_buf(m->store, &rv->ps, 0, &len0);
    kvs_assert(p && p >= m->abase && p + total <= m->abase + m->alen);
    rv->nparts = n;
    rv->id = kvs_shm_next_id(s, slot);
    BUMP(m->st_resv, 1);
    r = kvs_shm_reply_to(&q->hdr, 0);
    r.u.block.id = rv->id;
    r.u.block.off = (uint64_t)(p - m->abase);
    r.u.block.len = total;
    kvs_shm_send_msg(m, s, &r, -1);
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
        kvs_shm_send_status(m, s, &q->hdr, KVS_ENOTFOUND);
        return;
    }
    if (q->hdr.opcode == KVS_OP_SHM_ABORT) {
        kvs_shm_drop_resv(m, rv);
        kvs_shm_send_status(m, s, &q->hdr, 0);
        return;
    }
    ret = kvs_store_put_seal_parts(m->store, &rv->ps, rv->lens);
    free(rv->lens);
    rv->lens = NULL;
    rv->id = 0;
    BUMP(m->st_resv, (uint64_t)-1);
    if (ret == 0)
        BUMP(m->st_commits, 1);
    kvs_shm_send_status(m, s, &q->hdr, ret);
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
        kvs_shm_send_status(m, s, req, ret);
        return;
    }
    /* The one search for a slot on a hit in DRAM; a cold VIEW checked
     * before its read (op_view) and its session took nothing since. */
    if (find_free(s->views, sizeof(*s->views), VIEWS_MAX, &slot)) {
        kvs_store_unpin_view(m->store, pinned);
        kvs_shm_send_status(m, s, req, KVS_EFULL);
        return;
    }
    v = &s->views[slot];
    v->v = *pinned;
    ret = view_lens(m, &v->v);
    if (ret) {
        kvs_warn("shm: a block's part table does not add up to its length "
                 "(a bug in the store); the view is refused");
        kvs_store_unpin_view(m->store, &v->v);
        kvs_shm_send_status(m, s, req, ret);
        return;
    }
    if (ms > m->cfg->lease_max_ms)
        ms = m->cfg->lease_max_ms;
    v->expiry_ns = kvs_clock_mono_ns() + (uint64_t)ms * 1000000ull;
    v->expired = false;
    v->id = kvs_shm_next_id(s, slot);
    s->nviews_live++;
    BUMP(m->st_views, 1);
    r = kvs_shm_reply_to(req, 0);
    r.hdr.count = v->v.nparts;
    r.u.block.id = v->id;
    r.u.block.off = v->v.arena_off;
    r.u.block.len = v->v.len;
    r.u.block.tier = tier;
    r.u.block.cls = v->v.cls;
    r.u.block.expiry_ns = v->expiry_ns;
    r.u.block.part_lens = m->lens2;
    kvs_shm_send_msg(m, s, &r, -1);
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
        kvs_shm_send_status(m, s, &q->hdr, KVS_EFULL);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        kvs_shm_send_status(m, s, &q->hdr, -ENOMEM);
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
        kvs_shm_send_status(m, s, &q->hdr, KVS_ENOTFOUND);
        return;
    }
    v = &s->views[slot];
    was_expired = v->expired;
    kvs_shm_drop_view(m, s, v);
    kvs_shm_send_status(m, s, &q->hdr, was_expired ? KVS_EEXPIRED : 0);
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
        kvs_shm_send_status(m, s, &q->hdr, -EINVAL);
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
        kvs_shm_send_status(m, s, &q->hdr, -EINVAL);
        return;
    }
    p = mmap(NULL, KVS_WIRE_SHM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
             rfd, 0);
    if (p == MAP_FAILED) {
        kvs_shm_send_status(m, s, &q->hdr, -errno);
        return;
    }
    /* Every counter starts at 0 (the client may post as soon as it has
     * this reply, before the lines below run). */
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_SQ_HEAD), 0);
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_CQ_TAIL), 0);
    atomic_store(kvs_wire_shm_ring_word(p, KVS_WIRE_SHM_RING_SRV_WAIT), 0);
    s->sq_head = 0;
    s->cq_tail = 0;
    /* Counted before the reply: a STAT the client sends once it has the
     * reply (over UCX, another thread) must see the ring. */
    BUMP(m->st_rings, 1);
    kvs_shm_send_status(m, s, &q->hdr, 0); /* still over the socket */
    s->ring = p;
}

/* Answers one request (rfd: an fd that came with it, or -1; closed here
 * unless RING keeps it); true when it closed the session. */
bool kvs_shm_handle(kvs_shm_t *m, sess_t *s, size_t len, int rfd)
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
            kvs_shm_send_status(m, s, &q.hdr, ret);
        kvs_shm_sess_close(m, s);
        return true;
    }
    if (!s->attached && q.hdr.opcode != KVS_OP_SHM_ATTACH) {
        kvs_shm_send_status(m, s, &q.hdr, KVS_EAUTH);
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
        kvs_shm_send_status(m, s, &q.hdr, -EINVAL);
        break;
    }
    return false;
}
