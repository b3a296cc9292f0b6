/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connections: the endpoint hash, accepting and closing connections, the
 * bulk endpoints and their BIND, leases and connection pins. A connection's
 * memory is freed only when its last in-flight operation has completed
 * (conn->refs). Runs on the server's thread.
 */
#include "transport/server/server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/proto/ucx.h"
#include "transport/server/stream.h"

/* Connections by endpoint. The reply endpoint of an active message is the
 * only trusted way to tell which connection (and so which tenant) sent it. */

static uint32_t ep_hash(const kvs_server_t *srv, ucp_ep_h ep)
{
    uint64_t x = (uint64_t)(uintptr_t)ep;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x & srv->hash_mask;
}

kvs_conn_t *kvs_conn_find(kvs_server_t *srv, ucp_ep_h ep)
{
    for (kvs_conn_t *c = srv->hash[ep_hash(srv, ep)]; c; c = c->hnext)
        if (c->ep == ep)
            return c;
    return NULL;
}

/* Bulk endpoints by endpoint, in a table of their own (same size): up to
 * 2 x max_conns of them, looked up for every stream message they carry. */
kvs_bulk_t *kvs_conn_bulk_find(kvs_server_t *srv, ucp_ep_h ep)
{
    for (kvs_bulk_t *b = srv->bulk_hash[ep_hash(srv, ep)]; b; b = b->hnext)
        if (b->ep == ep)
            return b;
    return NULL;
}

static void conn_unhash(kvs_server_t *srv, kvs_conn_t *conn)
{
    kvs_conn_t **pp = &srv->hash[ep_hash(srv, conn->ep)];

    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == conn) {
            *pp = conn->hnext;
            return;
        }
    }
}

/* A connection leaves the pre-HELLO budget once: at HELLO, eviction or
 * close. */
static void prehello_leave(kvs_server_t *srv, kvs_conn_t *conn)
{
    if (conn->prehello) {
        conn->prehello = false;
        srv->nprehello--;
    }
}

/* Queues the oldest connection still without HELLO for closing (from a
 * listener callback: the close itself runs from the loop). */
static bool evict_oldest_prehello(kvs_server_t *srv)
{
    kvs_conn_t *old = NULL;

    for (kvs_conn_t *c = srv->conns; c; c = c->next)
        if (c->prehello && !c->closing &&
            (!old || c->accepted_ns < old->accepted_ns))
            old = c;
    if (!old)
        return false;
    kvs_info("conn %llu: no HELLO yet, and its place is wanted; closing",
             (unsigned long long)old->id);
    prehello_leave(srv, old);
    old->evicted = true;
    srv->nevicting++;
    srv->hello_evictions++;
    old->close_graceful = true;
    kvs_conn_close(old);
    return true;
}

void kvs_conn_unref(kvs_conn_t *conn)
{
    kvs_server_t *srv = conn->srv;

    kvs_assert(conn->refs > 0);
    if (--conn->refs > 0)
        return;
    kvs_assert(conn->closing && !conn->leases && !conn->npins);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    kvs_debug("conn %llu: freed", (unsigned long long)conn->id);
    free(conn->pins);
    free(conn);
}

/* ------------------------------------------------------------------ */
/* Leases and connection pins. */

void kvs_conn_lease_free(kvs_server_t *srv, kvs_lease_t *lease)
{
    const uint8_t *p = lease->keys;

    /* The lease holds one reference per key, in the connection's
     * namespace. */
    for (uint32_t i = 0; i < lease->nkeys; i++) {
        kvs_store_unpin(srv->store, lease->ns, p + 1, p[0]);
        p += 1 + p[0];
    }
    srv->leases_active--;
    free(lease);
}

static void conn_release_refs(kvs_server_t *srv, kvs_conn_t *conn)
{
    while (conn->leases) {
        kvs_lease_t *l = conn->leases;

        conn->leases = l->next;
        kvs_conn_lease_free(srv, l);
    }
    conn->nleases = 0;
    for (uint32_t i = 0; i < conn->npins; i++)
        kvs_store_unpin(srv->store, conn->ns, conn->pins[i].key,
                        conn->pins[i].len);
    srv->conn_pins -= conn->npins;
    conn->npins = 0;
}

static void ep_close_cb(void *request, ucs_status_t status, void *user_data)
{
    (void)status;
    kvs_conn_unref(user_data);
    ucp_request_free(request);
}

static void bulk_close_cb(void *request, ucs_status_t status, void *user_data)
{
    (void)status;
    (void)user_data;
    ucp_request_free(request);
}

/* Force-closes a bulk endpoint: DATA sends still on it complete with
 * UCS_ERR_CANCELED, and their completions drop their pins. */
void kvs_conn_bulk_close(kvs_server_t *srv, kvs_bulk_t *b)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK,
        .flags = UCP_EP_CLOSE_FLAG_FORCE,
        .cb.send = bulk_close_cb,
    };
    ucs_status_ptr_t sp;

    for (kvs_bulk_t **pp = &srv->bulks; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    for (kvs_bulk_t **pp = &srv->bulk_hash[ep_hash(srv, b->ep)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == b) {
            *pp = b->hnext;
            break;
        }
    }
    srv->nbulks--;
    /* The stream sends still on this endpoint would never complete (no
     * peer error handling): they are finished now, whichever closes first,
     * the bulk endpoint (its error, seen by bulk_sweep) or its connection. */
    kvs_srvstream_stx_orphan_ep(srv->stream, b->ep);
    if (b->conn && b->conn->bulk == b)
        b->conn->bulk = NULL;
    if (b->put_only)
        atomic_fetch_sub(&kvs_server_root(srv)->nputeps, 1);
    if (b->conn && b->conn->put_bulk == b)
        b->conn->put_bulk = NULL;
    sp = ucp_ep_close_nbx(b->ep, &prm);
    (void)sp; /* a pending close finishes in bulk_close_cb */
    free(b);
}

/* UCX may report an error on an endpoint after kvs_conn_bulk_close() freed its
 * kvs_bulk_t (seen with a client SIGKILLed mid-transfer), so the handler's
 * argument is the server and the endpoint is looked up: a closed one is no
 * longer listed, and its error is moot. */
static void bulk_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    kvs_bulk_t *b = kvs_conn_bulk_find(arg, ep);

    kvs_debug("bulk endpoint error: %s", ucs_status_string(status));
    if (b)
        b->failed = true; /* closed from the event loop */
}

void kvs_conn_bulk_request_cb(ucp_conn_request_h req, void *arg)
{
    kvs_server_t *srv = arg;
    kvs_bulk_t *b;

    b = srv->nbulks < 3u * srv->cfg.max_conns ? calloc(1, sizeof(*b)) : NULL;
    if (!b) {
        ucp_listener_reject(srv->bulk_listener, req);
        return;
    }
    if (kvs_ucx_accept(srv->worker, req, false, bulk_err_cb, srv, &b->ep) !=
        0) {
        free(b);
        return;
    }
    kvs_debug("bulk endpoint accepted");
    b->created_ns = kvs_clock_mono_ns();
    b->next = srv->bulks;
    srv->bulks = b;
    b->hnext = srv->bulk_hash[ep_hash(srv, b->ep)];
    srv->bulk_hash[ep_hash(srv, b->ep)] = b;
    srv->nbulks++;
}

/* One of the daemon's put_endpoints, if one is free. */
static bool put_ep_take(kvs_server_t *srv)
{
    _Atomic uint32_t *n = &kvs_server_root(srv)->nputeps;

    if (atomic_fetch_add(n, 1) < srv->cfg.put_endpoints)
        return true;
    atomic_fetch_sub(n, 1);
    return false;
}

/* The only frame a bulk endpoint may send: BIND (session, secret). */
void kvs_conn_bulk_bind(kvs_server_t *srv, kvs_bulk_t *b, const void *frame,
                        size_t len)
{
    kvs_wire_msg_t m;
    kvs_conn_t *conn = NULL;

    if (b->refused_ns)
        return; /* one BIND per endpoint; this one is being closed */
    if (b->conn ||
        kvs_wire_decode(frame, len, 0, &srv->lim, srv->scratch, &m) != 0 ||
        m.hdr.opcode != KVS_OP_BIND || (m.hdr.flags & KVS_WIRE_F_REPLY)) {
        kvs_debug("bulk endpoint: first frame is not a BIND");
        srv->bad_frames++;
        b->failed = true;
        return;
    }
    /* Every connection is compared, in time that does not depend on which
     * one matches or where a session or secret differs. */
    for (kvs_conn_t *c = srv->conns; c; c = c->next) {
        uint64_t diff = (c->session ^ m.u.bind.session) |
                        (c->bind_secret ^ m.u.bind.secret);

        if (diff == 0 && !c->closing && c->ready)
            conn = c;
    }
    /* The first BIND of a connection binds its bulk endpoint; with PUT_EP
     * a second one, on another endpoint, binds its put endpoint. */
    if (!conn || !(conn->features & KVS_WIRE_FEAT_BULK) ||
        (conn->bulk &&
         (conn->put_bulk || !(conn->features & KVS_WIRE_FEAT_PUT_EP)))) {
        /* Answered on this endpoint, which sent it: never on the
         * connection it names, which may be someone else's. */
        kvs_debug("bulk endpoint: BIND refused");
        srv->bad_frames++;
        kvs_send_bulk_status(srv, b, &m.hdr, KVS_EAUTH);
        return;
    }
    if (conn->bulk && !put_ep_take(srv)) {
        /* All taken: not an error of the client's, which PUTs on its bulk
         * endpoint instead. */
        kvs_debug("conn %llu: put endpoint refused: %u bound already",
                  (unsigned long long)conn->id, srv->cfg.put_endpoints);
        kvs_send_bulk_status(srv, b, &m.hdr, -EAGAIN);
        return;
    }
    b->conn = conn;
    if (conn->bulk) {
        b->put_only = true;
        conn->put_bulk = b;
    } else {
        conn->bulk = b;
    }
    srv->bulk_bound++;
    kvs_debug("conn %llu: %s endpoint bound", (unsigned long long)conn->id,
              b->put_only ? "put" : "bulk");
    kvs_send_status(srv, conn, &m.hdr, 0, false);
}

/* Closes a connection now (from the event loop, never from inside a UCX
 * callback): no more requests are served, its leases and pins
 * are dropped, waiting PUTs are discarded, and the endpoint is force-closed
 * (which fails the sends still in flight; their callbacks drop the block
 * pins). Safe to call more than once. */
void kvs_conn_close_now(kvs_conn_t *conn)
{
    kvs_server_t *srv = conn->srv;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA,
        .flags = UCP_EP_CLOSE_FLAG_FORCE,
        .cb.send = ep_close_cb,
        .user_data = conn,
    };
    ucs_status_ptr_t sp;

    if (conn->closing)
        return;
    /* A peer that broke the protocol is alive: flush what we sent it (its
     * error reply) first. A failed peer gets a forced close. */
    if (conn->close_graceful && !conn->peer_failed)
        prm.flags = 0;
    conn->closing = true;
    srv->nconns--;
    prehello_leave(srv, conn);
    if (conn->evicted)
        srv->nevicting--;
    kvs_debug("conn %llu: closing (tenant %s)", (unsigned long long)conn->id,
              conn->tenant ? conn->tenant->name : "-");
    conn_release_refs(srv, conn);
    kvs_srvstream_conn_closed(srv->stream, conn);
    if (conn->bulk)
        kvs_conn_bulk_close(srv, conn->bulk);
    if (conn->put_bulk)
        kvs_conn_bulk_close(srv, conn->put_bulk);
    /* A bulk endpoint has no peer error handling, and UCX 1.13 does not
     * complete its rendezvous sends when it is force-closed. Nobody reads
     * those blocks any more (the client is gone or cut off), so their pins
     * are dropped now; the sends' own completions, if they ever come, only
     * free the kvs_tx_t. */
    for (kvs_tx_t *tx = conn->data_txs; tx; tx = tx->dnext) {
        if (tx->has_view) {
            kvs_store_unpin_view(srv->store, &tx->view);
            tx->has_view = false;
        }
    }
    /* Waiting PUTs of this connection give their descriptors back. */
    for (kvs_stage_t **pp = &srv->wait_head; *pp;) {
        kvs_stage_t *st = *pp;

        if (st->conn != conn) {
            pp = &st->next;
            continue;
        }
        *pp = st->next;
        if (srv->wait_tail == st) {
            srv->wait_tail = NULL;
            for (kvs_stage_t *t = srv->wait_head; t; t = t->next)
                srv->wait_tail = t;
        }
        ucp_am_data_release(srv->worker, st->desc);
        kvs_stage_release(srv, st);
    }
    conn_unhash(srv, conn);
    sp = ucp_ep_close_nbx(conn->ep, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp))
        kvs_conn_unref(conn); /* the open reference */
}

void kvs_conn_sweep_prehello(kvs_server_t *srv, uint64_t now)
{
    uint64_t limit = (uint64_t)srv->cfg.hello_timeout_ms * 1000000ull;

    for (kvs_conn_t *c = srv->conns; c; c = c->next) {
        if (!c->prehello || c->closing || c->close_queued ||
            now - c->accepted_ns <= limit)
            continue;
        srv->hello_timeouts++;
        kvs_info("conn %llu: no HELLO within %u ms; closing",
                 (unsigned long long)c->id, srv->cfg.hello_timeout_ms);
        c->close_graceful = true;
        kvs_conn_close(c);
    }
}

/* Queues a connection for closing by the event loop. Safe anywhere,
 * including inside UCX callbacks, and more than once. */
void kvs_conn_close(kvs_conn_t *conn)
{
    if (conn->close_queued || conn->closing)
        return;
    conn->close_queued = true;
    conn->close_next = conn->srv->close_list;
    conn->srv->close_list = conn;
}

static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    kvs_conn_t *conn = arg;

    (void)ep;
    /* UCX reports a client's ordinary close as a reset: not news. */
    kvs_log(status == UCS_ERR_CONNECTION_RESET ? KVS_LOG_DEBUG : KVS_LOG_INFO,
            "conn %llu: peer error: %s", (unsigned long long)conn->id,
            ucs_status_string(status));
    conn->peer_failed = true;
    kvs_conn_close(conn);
}

void kvs_conn_request_cb(ucp_conn_request_h req, void *arg)
{
    kvs_server_t *srv = arg;
    kvs_conn_t *conn;

    /* Connections before HELLO have a budget of their own, so that ones
     * that never speak cannot take the authenticated ones' places: when
     * it (or the whole budget) is spent, the oldest connection still
     * without HELLO makes room. A client that sends HELLO at once is past
     * it within a round trip; a silent one is the oldest soon enough. */
    if ((srv->nconns - srv->nevicting >= srv->cfg.max_conns ||
         srv->nprehello >= srv->cfg.max_prehello) &&
        !evict_oldest_prehello(srv)) {
        srv->conns_rejected++;
        kvs_warn("connection refused: %u connections already open, %u of "
                 "them before HELLO (daemon.max_conns %u, "
                 "daemon.max_prehello %u)",
                 srv->nconns, srv->nprehello, srv->cfg.max_conns,
                 srv->cfg.max_prehello);
        ucp_listener_reject(srv->listener, req);
        return;
    }
    conn = calloc(1, sizeof(*conn));
    if (!conn) {
        srv->conns_rejected++;
        ucp_listener_reject(srv->listener, req);
        return;
    }
    conn->srv = srv;
    conn->id = ++srv->next_conn_id;
    conn->refs = 1;
    if (kvs_ucx_accept(srv->worker, req, true, ep_err_cb, conn, &conn->ep) !=
        0) {
        srv->conns_rejected++;
        free(conn);
        return;
    }
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    conn->hnext = srv->hash[ep_hash(srv, conn->ep)];
    srv->hash[ep_hash(srv, conn->ep)] = conn;
    conn->accepted_ns = kvs_clock_mono_ns();
    srv->nconns++;
    srv->nprehello++;
    conn->prehello = true;
    srv->conns_accepted++;
    kvs_debug("conn %llu: accepted", (unsigned long long)conn->id);
}

/* ------------------------------------------------------------------ */
/* Tenancy: set here and only here, once a HELLO has been checked. */

/* An unguessable 64-bit secret for BIND. */
static uint64_t secret64(void)
{
    uint64_t x = 0;

    if (getrandom(&x, sizeof(x), 0) != sizeof(x))
        x = kvs_clock_mono_ns() * 0x9e3779b97f4a7c15ull;
    return x | 1;
}

void kvs_conn_set_peer_form(kvs_conn_t *conn)
{
    if (!conn->ready)
        conn->features = KVS_WIRE_FEAT_PEER;
}

void kvs_conn_set_ready(kvs_server_t *srv, kvs_conn_t *conn,
                        const kvs_tenant_t *tenant, bool ns_ok, uint32_t ns,
                        uint32_t features)
{
    conn->tenant = tenant;
    conn->ns_ok = tenant && ns_ok;
    conn->ns = conn->ns_ok ? ns : 0;
    conn->features = features;
    conn->session = secret64();
    if (srv->bulk_port && (features & KVS_WIRE_FEAT_BULK))
        conn->bind_secret = secret64();
    else
        conn->features &= ~(KVS_WIRE_FEAT_BULK | KVS_WIRE_FEAT_BULK_PUT |
                            KVS_WIRE_FEAT_PUT_EP);
    /* No put endpoint to give: not offered, so that no client opens a UCX
     * context for a BIND that is bound to be refused. */
    if (!(conn->features & KVS_WIRE_FEAT_BULK_PUT) ||
        srv->cfg.put_endpoints == 0)
        conn->features &= ~KVS_WIRE_FEAT_PUT_EP;
    prehello_leave(srv, conn);
    conn->ready = true;
}

int kvs_conn_lease_add(kvs_conn_t *conn, const kvs_key_t *keys, size_t n,
                       uint64_t ms, uint64_t *id_out)
{
    kvs_server_t *srv = conn->srv;
    size_t bytes = 0;
    kvs_lease_t *l;

    for (size_t i = 0; i < n; i++)
        bytes += 1 + keys[i].len;
    l = malloc(sizeof(*l) + bytes);
    if (!l)
        return -ENOMEM;
    if (ms > srv->cfg.lease_max_ms)
        ms = srv->cfg.lease_max_ms;
    l->id = ++srv->next_lease_id;
    l->ns = conn->ns;
    l->nkeys = (uint32_t)n;
    l->expiry_ns = kvs_clock_mono_ns() + ms * 1000000ull;
    bytes = 0;
    for (size_t i = 0; i < n; i++) {
        l->keys[bytes] = (uint8_t)keys[i].len;
        memcpy(&l->keys[bytes + 1], keys[i].data, keys[i].len);
        bytes += 1 + keys[i].len;
    }
    l->next = conn->leases;
    conn->leases = l;
    conn->nleases++;
    srv->leases_active++;
    *id_out = l->id;
    return 0;
}
