/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming module's core (stream_int.h has the map): the sends every
 * part of it uses, the receive of part bytes into the arena, the entry
 * points server.c and handler.c call (stream.h), the timers and the
 * module's lifecycle. Everything runs on the server's one thread.
 */
#include "transport/server/stream_int.h"

/* Pools: free lists of objects whose first member is their next
 * pointer (read and written with memcpy, whatever its type). */

static void *pool_get(kvs_srvstream_t *st, void *headp, size_t size)
{
    void *o, *next;

    memcpy(&o, headp, sizeof(o));
    if (o) {
        memcpy(&next, o, sizeof(next));
        memcpy(headp, &next, sizeof(next));
    } else if ((o = malloc(size)) != NULL) {
        st->pool_allocs++;
    } else {
        return NULL;
    }
    memset(o, 0, size);
    return o;
}

static void pool_put(void *headp, void *o)
{
    memcpy(o, headp, sizeof(void *)); /* o->next = *head */
    memcpy(headp, &o, sizeof(o));
}

static void pool_drain(void *headp)
{
    void *o, *next;

    for (memcpy(&o, headp, sizeof(o)); o; o = next) {
        memcpy(&next, o, sizeof(next));
        free(o);
    }
    o = NULL;
    memcpy(headp, &o, sizeof(o));
}

sput_t *kvs_srvstream_sput_get(kvs_srvstream_t *st)
{
    return pool_get(st, &st->sput_free, sizeof(sput_t));
}

void kvs_srvstream_sput_put(kvs_srvstream_t *st, sput_t *p)
{
    kvs_partpool_put(&st->parts, p->pv);
    p->pv = NULL;
    pool_put(&st->sput_free, p);
}

kvs_partv_t *kvs_srvstream_parts_get(kvs_srvstream_t *st, uint32_t n)
{
    uint64_t before = st->parts.allocs;
    kvs_partv_t *v = kvs_partpool_get(&st->parts, n);

    if (st->parts.allocs != before)
        st->pool_allocs++;
    return v;
}

src_t *kvs_srvstream_src_get(kvs_srvstream_t *st)
{
    return pool_get(st, &st->src_free, sizeof(src_t));
}

void kvs_srvstream_src_put(kvs_srvstream_t *st, src_t *s)
{
    pool_put(&st->src_free, s);
}

/* Sends. */

static stx_t *stx_get(kvs_srvstream_t *st)
{
    stx_t *t = st->stx_free;

    if (t)
        st->stx_free = t->next;
    else if (!(t = malloc(sizeof(*t))))
        return NULL;
    t->st = st;
    t->done = NULL;
    t->obj = t->obj2 = NULL;
    t->ep = NULL;
    t->orphan = false;
    t->lnext = t->lprev = NULL;
    return t;
}

static void stx_unlink(stx_t **head, stx_t *t)
{
    if (t->lprev)
        t->lprev->lnext = t->lnext;
    else if (*head == t)
        *head = t->lnext;
    if (t->lnext)
        t->lnext->lprev = t->lprev;
    t->lnext = t->lprev = NULL;
}

static void stx_link(stx_t **head, stx_t *t)
{
    t->lprev = NULL;
    t->lnext = *head;
    if (t->lnext)
        t->lnext->lprev = t;
    *head = t;
}

/* A bulk endpoint has no peer error handling, and UCX 1.13 may never
 * complete a rendezvous send on it once the peer is gone. When the link or
 * connection that owns ep fails, the sends still on it are finished here
 * (their done callbacks run with KVS_EPEER); UCX only ever reads a send's
 * bytes, so the blocks they came from may be sealed or dropped at once.
 * The stx itself is recycled if UCX completes it later. */
void kvs_srvstream_stx_orphan_ep(kvs_srvstream_t *st, ucp_ep_h ep)
{
    if (!st)
        return;
    for (stx_t *t = st->stx_live, *next; t; t = next) {
        next = t->lnext;
        if (!ep || t->ep != ep)
            continue;
        stx_unlink(&st->stx_live, t);
        stx_link(&st->stx_orphans, t); /* freed at destroy, if not before */
        t->orphan = true;
        if (t->done)
            t->done(st, t->obj, t->obj2, KVS_EPEER);
        t->done = NULL;
    }
}

static void stx_put(kvs_srvstream_t *st, stx_t *t, int status)
{
    if (t->done)
        t->done(st, t->obj, t->obj2, status);
    t->next = st->stx_free;
    st->stx_free = t;
}

static void stx_cb(void *request, ucs_status_t status, void *user_data)
{
    stx_t *t = user_data;

    stx_unlink(t->orphan ? &t->st->stx_orphans : &t->st->stx_live, t);
    stx_put(t->st, t, status == UCS_OK ? 0 : KVS_EPEER);
    ucp_request_free(request);
}

/* Sends m (with data bytes from the arena, if any) on ep; m NULL: body is
 * an already encoded frame (body_len bytes), sent without data. done runs once
 * UCX is finished with the data, also on failure, but never inside this
 * call: completions come from ucp_worker_progress() (NO_IMM_CMPL), failed
 * sends from the next kvs_srvstream_tick(). So a caller may hold pointers to
 * objects that done might free. */
int kvs_srvstream_send(kvs_srvstream_t *st, ucp_ep_h ep, const kvs_smsg_t *m,
                       const void *body, size_t body_len, const void *data,
                       size_t data_len,
                       void (*done)(kvs_srvstream_t *, void *, void *, int),
                       void *obj, void *obj2)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS |
                        UCP_OP_ATTR_FLAG_NO_IMM_CMPL,
        .cb.send = stx_cb,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_ptr_t sp;
    stx_t *t = stx_get(st);
    size_t flen = 0;

    if (!t)
        kvs_panic("stream: out of memory for a send");
    t->done = done;
    t->obj = obj;
    t->obj2 = obj2;
    if (!ep || (m ? kvs_smsg_encode(m, body, body_len, t->hdr, &flen)
                  : (body_len > sizeof(t->hdr) ? -EINVAL : 0)) != 0) {
        t->next = st->stx_failed;
        st->stx_failed = t;
        return KVS_EPEER;
    }
    if (!m) { /* an encoded frame of the main protocol: the link's HELLO */
        memcpy(t->hdr, body, body_len);
        flen = body_len;
    }
    prm.user_data = t;
    if (data_len && st->memh) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        prm.memh = st->memh;
    }
    /* Part bytes always go by rendezvous: the receiver pulls them straight
     * into their destination, and UCX 1.13's shared-memory short path
     * rejects a large header plus data ("Invalid am_short_iov length"). */
    if (data_len)
        prm.flags |= UCP_AM_SEND_FLAG_RNDV;
    /* Listed before the call: UCX may run stx_cb before it returns. */
    t->ep = ep;
    stx_link(&st->stx_live, t);
    sp = ucp_am_send_nbx(ep, KVS_AM_ID, t->hdr, flen, data, data_len, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        /* NULL cannot happen with NO_IMM_CMPL; treat it as failed too. */
        stx_unlink(&st->stx_live, t);
        t->next = st->stx_failed;
        st->stx_failed = t;
        return KVS_EPEER;
    }
    return 0;
}

/* Every stream message of a connection or link travels on one endpoint,
 * so that UCX keeps them in order: the bulk endpoint once there is one
 * (shared memory and CMA, see transport/server/server_int.h), else the control
 * endpoint. Before a link's bulk endpoint is up only HELLO goes out. */
ucp_ep_h kvs_srvstream_conn_ep(kvs_conn_t *c)
{
    return c && !c->closing ? kvs_conn_data_ep(c) : NULL;
}

ucp_ep_h kvs_srvstream_link_ep(link_t *l)
{
    if (l->dead || l->closed)
        return NULL;
    if (l->outbound)
        return l->bulk_ep && !l->bulk_bad ? l->bulk_ep : l->ep;
    return kvs_srvstream_conn_ep(l->conn);
}

int kvs_srvstream_link_send(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                            const void *body, size_t blen)
{
    if (!l->ready) {
        /* UCX may deliver a message sent while the endpoint is wired up
         * before the HELLO it followed; the peer would drop it. */
        pend_t *p = malloc(sizeof(*p) + blen);

        if (!p)
            return -ENOMEM;
        p->next = NULL;
        p->m = *m;
        p->blen = blen;
        if (blen)
            memcpy(p->body, body, blen);
        if (l->pend_tail)
            l->pend_tail->next = p;
        else
            l->pend_head = p;
        l->pend_tail = p;
        return 0;
    }
    l->last_tx_ns = kvs_clock_mono_ns();
    return kvs_srvstream_send(st, kvs_srvstream_link_ep(l), m, body, blen, NULL,
                              0, NULL, NULL, NULL);
}

void kvs_srvstream_send_end(kvs_srvstream_t *st, ucp_ep_h ep, uint64_t id,
                            uint32_t block, int status)
{
    kvs_smsg_t m = {
        .op = KVS_OP_END, .id = id, .block = block, .status = status};

    kvs_srvstream_send(st, ep, &m, NULL, 0, NULL, 0, NULL, NULL, NULL);
}

typedef struct rx {
    struct rx *next; /* st->rx_free */
    kvs_srvstream_t *st;
    sput_t *put; /* a client's part, or */
    fetch_t *f;  /* a peer's parts */
    uint32_t block, part, n;
} rx_t;

/* The bytes of n parts from part on are in (ret 0) or never will be: tells
 * its client put (n is 1), whose inflight count the caller raised, or its
 * fetch, part by part. */
static void rx_done(kvs_srvstream_t *st, sput_t *put, fetch_t *f,
                    uint32_t block, uint32_t part, uint32_t n, int ret)
{
    if (put) {
        if (ret) {
            put->status = ret;
            put->abort_req = true;
        } else {
            kvs_sput_part_landed(st, put, part);
        }
        put->inflight--;
        kvs_sput_maybe_finish(st, put);
    } else {
        for (uint32_t k = 0; k < n; k++)
            kvs_fetch_part_landed(st, f, block, part + k, ret);
    }
}

static void rx_cb(void *request, ucs_status_t status, size_t length,
                  void *user_data)
{
    rx_t *r = user_data;
    kvs_srvstream_t *st = r->st;

    (void)length;
    rx_done(st, r->put, r->f, r->block, r->part, r->n,
            status == UCS_OK ? 0 : KVS_EPEER);
    pool_put(&st->rx_free, r);
    ucp_request_free(request);
}

/* Receives the data of n parts from part on, back to back (eager: copied;
 * rendezvous: UCX writes it into dst). Returns what the AM callback
 * returns. inflight is counted by the caller (n for a fetch's run) and
 * finished through the landed functions. */
ucs_status_t kvs_srvstream_rx_start(kvs_srvstream_t *st, sput_t *put,
                                    fetch_t *f, uint32_t block, uint32_t part,
                                    uint32_t n, void *dst, void *data,
                                    size_t len, bool rndv)
{
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = rx_cb,
    };
    ucs_status_ptr_t sp;
    rx_t *r;

    if (!rndv) {
        memcpy(dst, data, len);
        rx_done(st, put, f, block, part, n, 0);
        return UCS_OK;
    }
    r = pool_get(st, &st->rx_free, sizeof(*r));
    if (r) {
        r->st = st;
        r->put = put;
        r->f = f;
        r->block = block;
        r->part = part;
        r->n = n;
        prm.user_data = r;
        if (st->memh) {
            prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
            prm.memh = st->memh;
        }
        sp = ucp_am_recv_data_nbx(st->worker, data, dst, len, &prm);
        if (!UCS_PTR_IS_ERR(sp) && sp != NULL)
            return UCS_INPROGRESS;
        pool_put(&st->rx_free, r);
        if (sp == NULL) {
            rx_done(st, put, f, block, part, n, 0);
            return UCS_INPROGRESS;
        }
    }
    rx_done(st, put, f, block, part, n, KVS_EPEER);
    return UCS_OK;
}
/* ------------------------------------------------------------------ */
/* The AM handler. */

/* A peer's HELLO (KVS_WIRE_FEAT_PEER) was accepted on conn (handler.c
 * checked the secret): from now on conn carries an inbound link. */
int kvs_srvstream_peer_accept(kvs_srvstream_t *st, kvs_conn_t *conn,
                              uint32_t features)
{
    link_t *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    snprintf(l->name, sizeof(l->name), "conn-%llu",
             (unsigned long long)conn->id);
    l->conn = conn;
    l->ready = true;
    l->part_runs = features & KVS_WIRE_FEAT_PART_RUN;
    l->last_rx_ns = l->last_tx_ns = kvs_clock_mono_ns();
    l->next = st->links;
    st->links = l;
    return 0;
}

/* The answer to an outbound link's HELLO. */
static void link_hello_rep(kvs_srvstream_t *st, link_t *l,
                           const kvs_wire_msg_t *w)
{
    if (w->hdr.status) {
        kvs_warn("peer %s refused the link: %s", l->name,
                 kvs_strerror(w->hdr.status));
        l->dead = true;
        l->fail_status = w->hdr.status;
        return;
    }
    if (l->ready || l->bind_req)
        return;
    l->part_runs = w->u.hello_rep.features & KVS_WIRE_FEAT_PART_RUN;
    if (w->u.hello_rep.features & KVS_WIRE_FEAT_BULK)
        kvs_peer_bulk(st, l, w->u.hello_rep.session, w->u.hello_rep.bind_secret,
                      w->u.hello_rep.bulk_port);
    if (!l->bind_req)
        kvs_peer_ready(st, l);
}

ucs_status_t kvs_srvstream_link_rx(kvs_srvstream_t *st, ucp_ep_h ep,
                                   const kvs_wire_msg_t *w, void *data,
                                   size_t len, bool rndv)
{
    link_t *l = kvs_peer_by_ep(st, ep);
    kvs_smsg_t m;

    if (!l)
        return UCS_OK;
    if (w->hdr.opcode == KVS_OP_HELLO && (w->hdr.flags & KVS_WIRE_F_REPLY)) {
        l->last_rx_ns = kvs_clock_mono_ns();
        link_hello_rep(st, l, w);
        return UCS_OK;
    }
    if (!kvs_wire_op_is_stream(w->hdr.opcode))
        return UCS_OK;
    kvs_smsg_from_wire(w, &m);
    return kvs_peer_msg(st, l, &m, data, len, rndv);
}

ucs_status_t kvs_srvstream_rx(kvs_srvstream_t *st, kvs_conn_t *conn,
                              const kvs_wire_msg_t *w, void *data, size_t len,
                              bool rndv)
{
    kvs_smsg_t m;
    link_t *l;

    kvs_smsg_from_wire(w, &m);
    l = kvs_peer_by_conn(st, conn);
    if (l)
        return kvs_peer_msg(st, l, &m, data, len, rndv);
    if (conn->features & KVS_WIRE_FEAT_PEER)
        return UCS_OK; /* its link failed already */
    switch (m.op) {
    case KVS_OP_SPUT_BEGIN:
        kvs_sput_begin(st, conn, &m);
        return UCS_OK;
    case KVS_OP_SPUT_PART:
        return kvs_sput_part(st, conn, &m, data, len, rndv);
    case KVS_OP_SPUT_SEAL:
    case KVS_OP_SPUT_ABORT: {
        sput_t *p = kvs_sput_find(st, conn, m.id);

        if (!p) {
            /* Failed at begin and already answered, or unknown. */
            for (p = st->sputs; p; p = p->next)
                if (p->conn == conn && p->cid == m.id)
                    break;
            if (!p) {
                kvs_smsg_t r = {.op = KVS_OP_SPUT_DONE,
                                .id = m.id,
                                .status = KVS_ENOTFOUND};
                kvs_srvstream_send(st, conn->ep, &r, NULL, 0, NULL, 0, NULL,
                                   NULL, NULL);
            }
            return UCS_OK;
        }
        if (m.op == KVS_OP_SPUT_SEAL) {
            p->seal_req = true;
        } else {
            p->abort_req = true;
            if (!p->status)
                p->status = KVS_EINCOMPLETE;
        }
        kvs_sput_maybe_finish(st, p);
        return UCS_OK;
    }
    case KVS_OP_FETCH:
        kvs_fetch_start(st, conn, &m);
        return UCS_OK;
    case KVS_OP_CANCEL:
        for (fetch_t *f = st->fetches, *next; f; f = next) {
            next = f->next;
            if (f->conn != conn || f->cid != m.id)
                continue;
            f->conn = NULL;
            if (f->link) {
                kvs_smsg_t c = {.op = KVS_OP_CANCEL, .id = f->id};
                kvs_srvstream_link_send(st, f->link, &c, NULL, 0);
            }
            for (uint32_t i = 0; i < f->nblocks; i++)
                kvs_fetch_blk_fail(st, f, i, KVS_EPEER);
            kvs_fetch_free_if_done(st, f);
        }
        return UCS_OK;
    default:
        return UCS_OK;
    }
}

/* ------------------------------------------------------------------ */
/* Timers and closing connections. */

void kvs_srvstream_tick(kvs_srvstream_t *st, uint64_t now)
{
    uint64_t ping_ns = st->timeout_ns / 4;

    while (st->stx_failed) {
        stx_t *t = st->stx_failed;

        st->stx_failed = t->next;
        stx_put(st, t, KVS_EPEER);
    }
    for (link_t *l = st->links; l; l = l->next) {
        if (l->closed)
            continue;
        if (!l->dead && now - l->last_rx_ns > st->timeout_ns) {
            l->dead = true;
            l->fail_status = KVS_EPEER;
            kvs_warn("peer %s: silent for %llu ms", l->name,
                     (unsigned long long)((now - l->last_rx_ns) / 1000000));
        }
        if (l->dead) {
            kvs_peer_fail(st, l, l->fail_status ? l->fail_status : KVS_EPEER);
            continue;
        }
        if (l->ready && now - l->last_tx_ns > ping_ns) {
            kvs_smsg_t m = {.op = KVS_OP_PING};

            kvs_srvstream_link_send(st, l, &m, NULL, 0);
        }
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (!s->began && !s->ended)
            kvs_source_pump(st, s);
    }
    if (st->nheld)
        kvs_fetch_expire(st, now);
}

void kvs_srvstream_conn_closed(kvs_srvstream_t *st, kvs_conn_t *conn)
{
    link_t *l;

    if (!st)
        return;
    if (conn->bulk)
        kvs_srvstream_stx_orphan_ep(st, conn->bulk->ep);
    for (sput_t *p = st->sputs, *next; p; p = next) {
        next = p->next;
        if (p->conn != conn)
            continue;
        p->conn = NULL;
        if (!p->finished && !p->seal_req) {
            p->abort_req = true;
            p->status = KVS_EPEER;
        }
        kvs_sput_maybe_finish(st, p);
    }
    for (fetch_t *f = st->fetches, *next; f; f = next) {
        next = f->next;
        if (f->conn != conn)
            continue;
        f->conn = NULL;
        if (f->link) {
            kvs_smsg_t c = {.op = KVS_OP_CANCEL, .id = f->id};
            kvs_srvstream_link_send(st, f->link, &c, NULL, 0);
        }
        for (uint32_t i = 0; i < f->nblocks; i++) {
            f->blk[i].told = true;
            kvs_fetch_blk_fail(st, f, i, KVS_EPEER);
        }
        kvs_fetch_free_if_done(st, f);
    }
    l = kvs_peer_by_conn(st, conn);
    if (l) {
        l->closed = true; /* the conn is going already */
        kvs_peer_fail(st, l, KVS_EPEER);
        l->conn = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* Lifecycle. */

int kvs_srvstream_create(const kvs_srvstream_params_t *p, kvs_srvstream_t **out)
{
    kvs_srvstream_t *st = calloc(1, sizeof(*st));
    int ret;

    if (!st)
        return -ENOMEM;
    st->store = p->store;
    st->diskq = p->diskq;
    st->worker = p->worker;
    st->memh = p->memh;
    {
        size_t alen;

        st->abase = kvs_store_arena(p->store, &alen);
    }
    if (p->secret && strlen(p->secret) > KVS_WIRE_TOKEN_MAX) {
        kvs_error("the peer secret is longer than %u bytes",
                  KVS_WIRE_TOKEN_MAX);
        free(st);
        return KVS_ECONFIG;
    }
    snprintf(st->secret, sizeof(st->secret), "%s", p->secret ? p->secret : "");
    st->timeout_ns =
        (uint64_t)(p->timeout_ms ? p->timeout_ms : 5000) * 1000000ull;
    st->lease_ns = (uint64_t)(p->lease_ms ? p->lease_ms : 60000) * 1000000ull;
    st->resolve = p->resolve;
    st->resolve_arg = p->resolve_arg;
    ret = kvs_peer_parse(st, p->peers);
    if (ret) {
        free(st);
        return ret;
    }
    *out = st;
    if (st->npeers)
        kvs_info("%zu peers configured; peer timeout %llu ms", st->npeers,
                 (unsigned long long)(st->timeout_ns / 1000000));
    return 0;
}

void kvs_srvstream_stop(kvs_srvstream_t *st)
{

    if (!st)
        return;
    for (link_t *l = st->links; l; l = l->next)
        if (l->outbound && !l->closed)
            kvs_peer_fail(st, l, KVS_EPEER);
}

static void stx_free_list(stx_t **head)
{
    while (*head) {
        stx_t *t = *head;

        *head = t->lnext;
        free(t);
    }
}

void kvs_srvstream_stats(kvs_srvstream_t *st, kvs_srvstream_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!st)
        return;
    out->parts_inplace = atomic_load(&st->parts_inplace);
    out->puts_open = atomic_load(&st->nsputs);
    out->fetches_open = atomic_load(&st->nfetches);
    out->pool_allocs = atomic_load(&st->pool_allocs);
}

void kvs_srvstream_set_shm(kvs_srvstream_t *st, struct kvs_shm *shm)
{
    if (st)
        st->shm = shm;
}

void kvs_srvstream_drop_diskq(kvs_srvstream_t *st)
{
    if (st)
        st->diskq = NULL;
}

void kvs_srvstream_destroy(kvs_srvstream_t *st)
{
    if (!st)
        return;
    while (st->srcs) {
        src_t *s = st->srcs;

        st->srcs = s->next;
        if (s->has_view)
            kvs_store_unpin_view(st->store, &s->view);
        kvs_srvstream_src_put(st, s);
    }
    while (st->sputs) {
        sput_t *p = st->sputs;

        st->sputs = p->next;
        if (!p->finished)
            kvs_store_put_abort(st->store, &p->ps);
        kvs_srvstream_sput_put(st, p);
    }
    while (st->fetches) {
        fetch_t *f = st->fetches;

        st->fetches = f->next;
        for (uint32_t i = 0; i < f->nblocks; i++) {
            if (f->blk[i].put_open)
                kvs_store_put_abort(st->store, &f->blk[i].ps);
            if (f->blk[i].has_view)
                kvs_store_unpin_view(st->store, &f->blk[i].view);
            kvs_partpool_put(&st->parts, f->blk[i].pv);
        }
        free(f);
    }
    while (st->links) {
        link_t *l = st->links;

        st->links = l->next;
        while (l->pend_head) {
            pend_t *p = l->pend_head;

            l->pend_head = p->next;
            free(p);
        }
        free(l);
    }
    pool_drain(&st->stx_free);
    pool_drain(&st->sput_free);
    pool_drain(&st->src_free);
    pool_drain(&st->rx_free);
    kvs_partpool_drain(&st->parts);
    /* Failed sends the tick has not reached yet: the objects their done
     * callbacks would touch were freed above, so they are only freed. */
    while (st->stx_failed) {
        stx_t *t = st->stx_failed;

        st->stx_failed = t->next;
        free(t);
    }
    /* The worker is gone (kvs_server_destroy), so UCX calls back no more:
     * sends it never completed (on an endpoint whose peer died) and orphans
     * are freed here. */
    stx_free_list(&st->stx_live);
    stx_free_list(&st->stx_orphans);
    free(st);
}
