/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's transport: a UCX listener, the connections it accepts, the
 * event loop, and the sends that carry replies and blocks.
 *
 * One thread owns one UCX worker and everything below. A request arrives as
 * one active message; small frames are handled inside the receive callback.
 * A PUT whose payload comes by rendezvous waits for one of the staging
 * slots allocated at start (back-pressure instead of an unbounded queue),
 * then the payload is received into it and the put runs from there.
 *
 * A GET sends each block straight from the store's DRAM arena: the block is
 * pinned (kvs_store_pin), its bytes go out as the AM data of a DATA message
 * with the arena's memory handle, and the pin is dropped when UCX reports
 * the send complete. The client receives into its own (registered) buffer,
 * so the bytes are copied once, by the transport.
 *
 *   client                          kvstashd
 *     | -- GET (keys, caps) ---------> | pin each block
 *     | <-- DATA i (hdr | arena bytes)  | (rendezvous: client pulls)
 *     | <-- GET reply (n statuses) ---- | unpin when each DATA completes
 *
 * Peer failure: endpoints use UCP_ERR_HANDLING_MODE_PEER. When a client goes
 * away (clean close or crash), the error callback queues the connection for
 * closing; closing drops its leases and pins at once and force-closes the
 * endpoint, which completes its in-flight sends with an error, and those
 * completions drop the block pins they held. A connection's memory is freed
 * only when its last in-flight operation has completed (conn->refs).
 */
#include "transport/server_int.h"
#include "transport/sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/stream.h"

void kvs_server_config_default(kvs_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_addr = "127.0.0.1";
    cfg->port = 7370;
    cfg->max_conns = 256;
    cfg->max_inflight = 64;
    cfg->max_body = 64u << 10;
    cfg->max_keys = KVS_WIRE_KEYS_MAX;
    cfg->max_payload = 16u << 20;
    cfg->staging_slots = 4;
    cfg->lease_default_ms = 10000;
    cfg->lease_max_ms = 60000;
    cfg->max_leases = 256;
    cfg->max_pins = 4096;
    cfg->busy_poll_us = 50;
    cfg->bulk_ep = true;
    cfg->peer_timeout_ms = 5000;
}

uint16_t kvs_server_port(const kvs_server_t *srv)
{
    return srv->port;
}

/* ------------------------------------------------------------------ */
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

static kvs_conn_t *conn_find(kvs_server_t *srv, ucp_ep_h ep)
{
    for (kvs_conn_t *c = srv->hash[ep_hash(srv, ep)]; c; c = c->hnext)
        if (c->ep == ep)
            return c;
    return NULL;
}

/* Bulk endpoints by endpoint, in a table of their own (same size): up to
 * 2 x max_conns of them, looked up for every stream message they carry. */
static kvs_bulk_t *bulk_find(kvs_server_t *srv, ucp_ep_h ep)
{
    for (kvs_bulk_t *b = srv->bulk_hash[ep_hash(srv, ep)]; b; b = b->hnext)
        if (b->ep == ep)
            return b;
    return NULL;
}

kvs_conn_t *kvs_server_conn_find(kvs_server_t *srv, ucp_ep_h ep)
{
    return conn_find(srv, ep);
}

kvs_conn_t *kvs_server_conn_find_any(kvs_server_t *srv, ucp_ep_h ep)
{
    kvs_conn_t *c = conn_find(srv, ep);

    kvs_bulk_t *b;

    if (c)
        return c;
    b = bulk_find(srv, ep);
    return b && !b->failed ? b->conn : NULL;
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

static void conn_unref(kvs_conn_t *conn)
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
/* Sends. A kvs_tx_t holds the frame (and for DATA the pinned view) until
 * UCX reports the send complete; it holds a reference on its connection. */

kvs_tx_t *kvs_server_tx_get(kvs_server_t *srv, kvs_conn_t *conn)
{
    kvs_tx_t *tx = srv->tx_free;

    if (tx) {
        srv->tx_free = tx->next;
    } else {
        /* The free list grows to the high-water mark of sends in flight,
         * bounded by max_conns x max_inflight x max_keys, and is reused. */
        tx = malloc(sizeof(*tx) + srv->tx_cap);
        if (!tx)
            return NULL;
    }
    tx->next = NULL;
    tx->conn = conn;
    tx->has_view = false;
    tx->close_after = false;
    tx->in_data_list = false;
    conn->refs++;
    return tx;
}

static void data_list_del(kvs_tx_t *tx)
{
    if (!tx->in_data_list)
        return;
    if (tx->dprev)
        tx->dprev->dnext = tx->dnext;
    else
        tx->conn->data_txs = tx->dnext;
    if (tx->dnext)
        tx->dnext->dprev = tx->dprev;
    tx->in_data_list = false;
}

void kvs_server_tx_put(kvs_server_t *srv, kvs_tx_t *tx)
{
    kvs_conn_t *conn = tx->conn;

    data_list_del(tx);

    if (tx->has_view) {
        kvs_store_unpin_view(srv->store, &tx->view);
        tx->has_view = false;
    }
    if (tx->close_after) {
        /* Flush the error reply to the peer before disconnecting. */
        conn->close_graceful = true;
        kvs_server_conn_close(conn);
    }
    tx->next = srv->tx_free;
    srv->tx_free = tx;
    conn_unref(conn);
}

static void tx_done_cb(void *request, ucs_status_t status, void *user_data)
{
    kvs_tx_t *tx = user_data;

    if (status != UCS_OK && status != UCS_ERR_CANCELED)
        kvs_debug("conn %llu: send failed: %s",
                  (unsigned long long)tx->conn->id, ucs_status_string(status));
    kvs_server_tx_put(tx->conn->srv, tx);
    ucp_request_free(request);
}

static int tx_finish(kvs_server_t *srv, kvs_tx_t *tx, ucs_status_ptr_t sp)
{
    if (sp == NULL) {
        kvs_server_tx_put(srv, tx);
        return 0;
    }
    if (UCS_PTR_IS_ERR(sp)) {
        kvs_debug("conn %llu: send: %s", (unsigned long long)tx->conn->id,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        kvs_server_tx_put(srv, tx);
        return KVS_EPEER;
    }
    return 0; /* tx_done_cb finishes it */
}

/* A frame without payload: the AM data, sent eagerly (the client handles
 * such frames inside its receive callback). */
int kvs_server_send_frame(kvs_server_t *srv, kvs_tx_t *tx, size_t len)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = tx_done_cb,
        .user_data = tx,
        .flags = UCP_AM_SEND_FLAG_EAGER,
    };

    if (tx->conn->closing) {
        kvs_server_tx_put(srv, tx);
        return KVS_EPEER;
    }
    return tx_finish(srv, tx,
                     ucp_am_send_nbx(tx->conn->ep, KVS_AM_ID, NULL, 0, tx->buf,
                                     len, &prm));
}

/* A DATA message: the frame in the AM header, the pinned block from the
 * registered arena as the AM data; UCX picks eager or rendezvous. */
int kvs_server_send_data(kvs_server_t *srv, kvs_tx_t *tx, size_t hlen)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = tx_done_cb,
        .user_data = tx,
        .memh = srv->arena_memh,
    };
    ucs_status_ptr_t sp;

    if (tx->conn->closing) {
        kvs_server_tx_put(srv, tx);
        return KVS_EPEER;
    }
    sp = ucp_am_send_nbx(kvs_conn_data_ep(tx->conn), KVS_AM_ID, tx->buf, hlen,
                         tx->view.data, tx->view.len, &prm);
    if (UCS_PTR_IS_PTR(sp)) {
        /* In flight: remembered so that closing the connection can drop
         * its pin even if UCX never completes it (see conn_close_now). */
        tx->dprev = NULL;
        tx->dnext = tx->conn->data_txs;
        if (tx->dnext)
            tx->dnext->dprev = tx;
        tx->conn->data_txs = tx;
        tx->in_data_list = true;
    }
    return tx_finish(srv, tx, sp);
}

/* An error reply is a bare header; it is written here rather than through
 * the encoder so that it can echo whatever opcode the bad frame had. */
void kvs_server_reply_status(kvs_server_t *srv, kvs_conn_t *conn,
                             const kvs_wire_hdr_t *req, int status,
                             bool close_after)
{
    kvs_wire_msg_t m;
    kvs_tx_t *tx;
    size_t len;

    if (conn->closing)
        return;
    tx = kvs_server_tx_get(srv, conn);
    if (!tx) {
        kvs_server_conn_close(conn);
        return;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = kvs_handler_known(req->opcode) ? req->opcode : KVS_OP_STAT;
    m.hdr.flags = KVS_WIRE_F_REPLY;
    m.hdr.req_id = req->req_id;
    m.hdr.status = status;
    if (kvs_wire_encode(&m, tx->buf, srv->tx_cap, &len) != 0)
        kvs_panic("cannot encode an error reply");
    /* Echo an unknown opcode byte as it came, so the client can match it. */
    tx->buf[5] = req->opcode;
    tx->close_after = close_after;
    kvs_server_send_frame(srv, tx, len);
}

void kvs_server_reply(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *rep)
{
    kvs_tx_t *tx;
    size_t len;
    int ret;

    if (conn->closing)
        return;
    tx = kvs_server_tx_get(srv, conn);
    if (!tx) {
        kvs_server_conn_close(conn);
        return;
    }
    rep->hdr.flags |= KVS_WIRE_F_REPLY;
    ret = kvs_wire_encode(rep, tx->buf, srv->tx_cap, &len);
    if (ret) {
        /* tx_cap is sized for the largest reply the limits allow. */
        kvs_error("conn %llu: cannot encode %s reply: %s",
                  (unsigned long long)conn->id,
                  kvs_wire_op_name(rep->hdr.opcode), kvs_strerror(ret));
        kvs_server_tx_put(srv, tx);
        kvs_server_reply_status(srv, conn, &rep->hdr, ret, false);
        return;
    }
    kvs_server_send_frame(srv, tx, len);
}

/* ------------------------------------------------------------------ */
/* Leases and connection pins. */

void kvs_server_lease_free(kvs_server_t *srv, kvs_lease_t *lease)
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
        kvs_server_lease_free(srv, l);
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
    conn_unref(user_data);
    ucp_request_free(request);
}

static void stage_release(kvs_server_t *srv, kvs_stage_t *st);

static void bulk_close_cb(void *request, ucs_status_t status, void *user_data)
{
    (void)status;
    (void)user_data;
    ucp_request_free(request);
}

/* Force-closes a bulk endpoint: DATA sends still on it complete with
 * UCS_ERR_CANCELED, and their completions drop their pins. */
static void bulk_close(kvs_server_t *srv, kvs_bulk_t *b)
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
    if (b->conn)
        b->conn->bulk = NULL;
    sp = ucp_ep_close_nbx(b->ep, &prm);
    (void)sp; /* a pending close finishes in bulk_close_cb */
    free(b);
}

/* UCX may report an error on an endpoint after bulk_close() freed its
 * kvs_bulk_t (seen with a client SIGKILLed mid-transfer), so the handler's
 * argument is the server and the endpoint is looked up: a closed one is no
 * longer listed, and its error is moot. */
static void bulk_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    kvs_bulk_t *b = bulk_find(arg, ep);

    kvs_debug("bulk endpoint error: %s", ucs_status_string(status));
    if (b)
        b->failed = true; /* closed from the event loop */
}

static void bulk_conn_cb(ucp_conn_request_h req, void *arg)
{
    kvs_server_t *srv = arg;
    ucp_ep_params_t ep_params;
    kvs_bulk_t *b;

    b = srv->nbulks < 2u * srv->cfg.max_conns ? calloc(1, sizeof(*b))
                                              : NULL;
    if (!b) {
        ucp_listener_reject(srv->bulk_listener, req);
        return;
    }
    memset(&ep_params, 0, sizeof(ep_params));
    ep_params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                           UCP_EP_PARAM_FIELD_ERR_HANDLER |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep_params.conn_request = req;
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    ep_params.err_handler.cb = bulk_err_cb;
    ep_params.err_handler.arg = srv;
    if (ucp_ep_create(srv->worker, &ep_params, &b->ep) != UCS_OK) {
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


/* The only frame a bulk endpoint may send: BIND (session, secret). */
static void bulk_bind(kvs_server_t *srv, kvs_bulk_t *b, const void *frame,
                      size_t len)
{
    kvs_wire_msg_t m;
    kvs_conn_t *conn = NULL;

    if (b->conn || kvs_wire_decode(frame, len, 0, &srv->lim, srv->scratch,
                                   &m) != 0 ||
        m.hdr.opcode != KVS_OP_BIND || (m.hdr.flags & KVS_WIRE_F_REPLY)) {
        kvs_debug("bulk endpoint: first frame is not a BIND");
        srv->bad_frames++;
        b->failed = true;
        return;
    }
    for (kvs_conn_t *c = srv->conns; c; c = c->next)
        if (c->id == m.u.bind.session && !c->closing && c->ready)
            conn = c;
    if (!conn || conn->bulk || !(conn->features & KVS_WIRE_FEAT_BULK) ||
        conn->bind_secret != m.u.bind.secret) {
        kvs_debug("bulk endpoint: BIND to session %llu refused",
                  (unsigned long long)m.u.bind.session);
        srv->bad_frames++;
        b->failed = true;
        if (conn)
            kvs_server_reply_status(srv, conn, &m.hdr, KVS_EAUTH, false);
        return;
    }
    b->conn = conn;
    conn->bulk = b;
    srv->bulk_bound++;
    kvs_debug("conn %llu: bulk endpoint bound", (unsigned long long)conn->id);
    kvs_server_reply_status(srv, conn, &m.hdr, 0, false);
}

/* Closes a connection now (from the event loop, never from inside a UCX
 * callback): no more requests are served, its leases and pins
 * are dropped, waiting PUTs are discarded, and the endpoint is force-closed
 * (which fails the sends still in flight; their callbacks drop the block
 * pins). Safe to call more than once. */
static void conn_close_now(kvs_conn_t *conn)
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
    kvs_debug("conn %llu: closing (tenant %s)", (unsigned long long)conn->id,
              conn->tenant ? conn->tenant->name : "-");
    conn_release_refs(srv, conn);
    kvs_stream_conn_closed(srv, conn);
    if (conn->bulk)
        bulk_close(srv, conn->bulk);
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
        stage_release(srv, st);
    }
    conn_unhash(srv, conn);
    sp = ucp_ep_close_nbx(conn->ep, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp))
        conn_unref(conn); /* the open reference */
}

/* Queues a connection for closing by the event loop. Safe anywhere,
 * including inside UCX callbacks, and more than once. */
void kvs_server_conn_close(kvs_conn_t *conn)
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
    kvs_server_conn_close(conn);
}

static void conn_request_cb(ucp_conn_request_h req, void *arg)
{
    kvs_server_t *srv = arg;
    ucp_ep_params_t ep_params;
    kvs_conn_t *conn;
    ucs_status_t st;

    if (srv->nconns >= srv->cfg.max_conns) {
        srv->conns_rejected++;
        kvs_warn("connection refused: %u connections already open",
                 srv->nconns);
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
    memset(&ep_params, 0, sizeof(ep_params));
    ep_params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST |
                           UCP_EP_PARAM_FIELD_ERR_HANDLER |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep_params.conn_request = req;
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb = ep_err_cb;
    ep_params.err_handler.arg = conn;
    st = ucp_ep_create(srv->worker, &ep_params, &conn->ep);
    if (st != UCS_OK) {
        kvs_warn("cannot accept a connection: %s", ucs_status_string(st));
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
    srv->nconns++;
    srv->conns_accepted++;
    kvs_debug("conn %llu: accepted", (unsigned long long)conn->id);
}

/* ------------------------------------------------------------------ */
/* PUT payloads that come by rendezvous. */

static kvs_stage_t *stage_get(kvs_server_t *srv)
{
    kvs_stage_t *st = srv->stage_free;

    if (st)
        srv->stage_free = st->next;
    else if (!(st = malloc(sizeof(*st))))
        return NULL;
    st->next = NULL;
    st->slot = -1;
    return st;
}

static void stage_release(kvs_server_t *srv, kvs_stage_t *st)
{
    if (st->slot >= 0)
        srv->slot_free[srv->nslot_free++] = st->slot;
    st->slot = -1;
    st->conn->inflight--;
    conn_unref(st->conn);
    st->next = srv->stage_free;
    srv->stage_free = st;
}

static void stage_run(kvs_server_t *srv, kvs_stage_t *st)
{
    kvs_wire_msg_t m;
    int ret;

    ret = kvs_wire_decode(st->frame, st->frame_len, st->len, &srv->lim,
                          srv->scratch, &m);
    /* The frame was checked when it arrived; it cannot have changed. */
    kvs_assert(ret == 0);
    if (ret == 0 && !st->conn->closing) {
        /* dispatch counts the request in flight again */
        st->conn->inflight--;
        kvs_handler_dispatch(srv, st->conn, &m, srv->slots[st->slot]);
        st->conn->inflight++;
    }
    stage_release(srv, st);
}

static void stage_recv_cb(void *request, ucs_status_t status, size_t length,
                          void *user_data)
{
    kvs_stage_t *st = user_data;
    kvs_server_t *srv = st->conn->srv;

    (void)length;
    if (status == UCS_OK) {
        stage_run(srv, st);
    } else {
        kvs_debug("conn %llu: PUT payload lost: %s",
                  (unsigned long long)st->conn->id, ucs_status_string(status));
        stage_release(srv, st);
    }
    ucp_request_free(request);
}

static void stage_start(kvs_server_t *srv, kvs_stage_t *st)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = stage_recv_cb,
        .user_data = st,
    };
    ucs_status_ptr_t sp;

    kvs_assert(srv->nslot_free > 0);
    st->slot = srv->slot_free[--srv->nslot_free];
    sp = ucp_am_recv_data_nbx(srv->worker, st->desc, srv->slots[st->slot],
                              st->len, &prm);
    if (sp == NULL) {
        stage_run(srv, st);
    } else if (UCS_PTR_IS_ERR(sp)) {
        kvs_debug("conn %llu: PUT payload receive: %s",
                  (unsigned long long)st->conn->id,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        stage_release(srv, st);
    }
}

static void stage_pump(kvs_server_t *srv)
{
    while (srv->wait_head && srv->nslot_free > 0) {
        kvs_stage_t *st = srv->wait_head;

        srv->wait_head = st->next;
        if (!srv->wait_head)
            srv->wait_tail = NULL;
        st->next = NULL;
        stage_start(srv, st);
    }
}

/* ------------------------------------------------------------------ */
/* Receiving. */

static ucs_status_t handle_frame(kvs_server_t *srv, kvs_conn_t *conn,
                                 const uint8_t *frame, size_t flen,
                                 void *payload, size_t plen, bool rndv)
{
    kvs_wire_msg_t m;
    int ret;

    srv->requests++;
    ret = kvs_wire_decode(frame, flen, plen, &srv->lim, srv->scratch, &m);
    if (ret == 0 && ((m.hdr.flags & KVS_WIRE_F_REPLY) ||
                     m.hdr.opcode == KVS_OP_DATA))
        ret = KVS_EPROTO; /* clients send requests only */
    if (ret) {
        /* Bad magic, a wrong version, or garbage before the handshake end
         * the connection after the error reply; anything else is answered
         * and the connection goes on. */
        bool fatal = flen < KVS_WIRE_HDR_SIZE ||
                     m.hdr.magic != KVS_WIRE_MAGIC ||
                     ret == KVS_EPROTO_VERSION || !conn->ready;

        srv->bad_frames++;
        kvs_info("conn %llu: bad %s frame (%zu bytes): %s%s",
                 (unsigned long long)conn->id, kvs_wire_op_name(m.hdr.opcode),
                 flen, kvs_strerror(ret), fatal ? "; closing" : "");
        kvs_server_reply_status(srv, conn, &m.hdr, ret, fatal);
        return UCS_OK;
    }
    if (!conn->ready && m.hdr.opcode != KVS_OP_HELLO) {
        srv->auth_failures++;
        kvs_server_reply_status(srv, conn, &m.hdr, KVS_EAUTH, true);
        return UCS_OK;
    }
    if (conn->inflight >= srv->cfg.max_inflight) {
        kvs_server_reply_status(srv, conn, &m.hdr, -EAGAIN, false);
        return UCS_OK;
    }
    if (rndv) {
        kvs_stage_t *st;

        /* Only a PUT has a payload (checked by the decoder). */
        if (flen > sizeof(st->frame) || !(st = stage_get(srv))) {
            kvs_server_reply_status(srv, conn, &m.hdr, -ENOMEM, false);
            return UCS_OK;
        }
        memcpy(st->frame, frame, flen);
        st->frame_len = flen;
        st->conn = conn;
        st->desc = payload;
        st->len = plen;
        conn->refs++;
        conn->inflight++;
        srv->staged_puts++;
        if (srv->nslot_free > 0 && !srv->wait_head) {
            stage_start(srv, st);
        } else {
            if (srv->wait_tail)
                srv->wait_tail->next = st;
            else
                srv->wait_head = st;
            srv->wait_tail = st;
        }
        return UCS_INPROGRESS; /* the descriptor stays valid */
    }
    kvs_handler_dispatch(srv, conn, &m, payload);
    return UCS_OK;
}

static ucs_status_t am_cb(void *arg, const void *header, size_t hlen,
                          void *data, size_t len,
                          const ucp_am_recv_param_t *param)
{
    kvs_server_t *srv = arg;
    bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
    kvs_conn_t *conn;

    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP))
        return UCS_OK; /* nobody to answer: drop */
    conn = conn_find(srv, param->reply_ep);
    if (!conn) {
        kvs_bulk_t *b = bulk_find(srv, param->reply_ep);

        if (b && hlen == 0 && !rndv)
            bulk_bind(srv, b, data, len);
        else if (b)
            b->failed = true;
        return UCS_OK;
    }
    if (conn->closing)
        return UCS_OK;
    if (hlen == 0) {
        /* A frame without payload must come eagerly, as the AM data. */
        if (rndv || len < KVS_WIRE_HDR_SIZE) {
            kvs_wire_hdr_t h = {0};

            srv->bad_frames++;
            kvs_server_reply_status(srv, conn, &h, KVS_EPROTO, true);
            return UCS_OK;
        }
        return handle_frame(srv, conn, data, len, NULL, 0, false);
    }
    return handle_frame(srv, conn, header, hlen, data, len, rndv);
}

/* ------------------------------------------------------------------ */
/* Lifecycle. */

static int listen_on(kvs_server_t *srv)
{
    struct sockaddr_storage ss;
    ucp_listener_params_t lp;
    ucp_listener_attr_t la;
    ucs_status_t st;

    if (kvs_sockaddr_parse(srv->cfg.listen_addr, srv->cfg.port, &ss) != 0) {
        kvs_error("listen address '%s' is not a numeric IP address",
                  srv->cfg.listen_addr);
        return KVS_ECONFIG;
    }
    memset(&lp, 0, sizeof(lp));
    lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
                    UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    lp.sockaddr.addr = (const struct sockaddr *)&ss;
    lp.sockaddr.addrlen = kvs_sockaddr_len(&ss);
    lp.conn_handler.cb = conn_request_cb;
    lp.conn_handler.arg = srv;
    st = ucp_listener_create(srv->worker, &lp, &srv->listener);
    if (st != UCS_OK) {
        kvs_error("cannot listen on %s port %u: %s", srv->cfg.listen_addr,
                  srv->cfg.port, ucs_status_string(st));
        return st == UCS_ERR_BUSY ? -EADDRINUSE : KVS_ECONFIG;
    }
    la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    st = ucp_listener_query(srv->listener, &la);
    if (st != UCS_OK) {
        kvs_error("cannot query the listener: %s", ucs_status_string(st));
        return KVS_ECONFIG;
    }
    srv->port = ntohs(la.sockaddr.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&la.sockaddr)->sin6_port
                          : ((struct sockaddr_in *)&la.sockaddr)->sin_port);
    if (!srv->cfg.bulk_ep)
        return 0;
    /* The bulk listener: same address, any free port (told in HELLO). */
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
    else
        ((struct sockaddr_in *)&ss)->sin_port = 0;
    lp.conn_handler.cb = bulk_conn_cb;
    st = ucp_listener_create(srv->worker, &lp, &srv->bulk_listener);
    if (st == UCS_OK)
        st = ucp_listener_query(srv->bulk_listener, &la);
    if (st != UCS_OK) {
        kvs_warn("no bulk endpoints (%s): blocks go over the control "
                 "endpoint", ucs_status_string(st));
        return 0;
    }
    srv->bulk_port = ntohs(la.sockaddr.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&la.sockaddr)->sin6_port
                          : ((struct sockaddr_in *)&la.sockaddr)->sin_port);
    return 0;
}

static int map_arena(kvs_server_t *srv)
{
    ucp_mem_map_params_t mp;
    size_t len = 0;
    void *arena = kvs_store_arena(srv->store, &len);
    ucs_status_t st;

    if (!arena || !len) {
        kvs_warn("the store has no DRAM arena to register");
        return 0;
    }
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                    UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = arena;
    mp.length = len;
    st = ucp_mem_map(srv->ctx, &mp, &srv->arena_memh);
    if (st != UCS_OK) {
        kvs_error("cannot register the DRAM arena (%zu bytes) with UCX: %s",
                  len, ucs_status_string(st));
        return -ENOMEM;
    }
    kvs_info("DRAM arena registered with UCX: %zu MiB", len >> 20);
    return 0;
}

static int alloc_scratch(kvs_server_t *srv)
{
    const kvs_server_config_t *c = &srv->cfg;
    size_t n = c->max_keys;

    srv->scratch = kvs_wire_scratch_create();
    srv->keys = calloc(n, sizeof(*srv->keys));
    srv->bytes = calloc(n, 1);
    srv->status = calloc(n, sizeof(*srv->status));
    srv->blocks = calloc(n, sizeof(*srv->blocks));
    srv->puts = calloc(n, sizeof(*srv->puts));
    srv->iovs = calloc(KVS_WIRE_BODY_MAX / 4, sizeof(*srv->iovs));
    srv->hash_mask = 1;
    while (srv->hash_mask < 2 * c->max_conns)
        srv->hash_mask <<= 1;
    srv->hash = calloc(srv->hash_mask, sizeof(*srv->hash));
    srv->bulk_hash = calloc(srv->hash_mask, sizeof(*srv->bulk_hash));
    srv->hash_mask--;
    srv->slots = calloc(c->staging_slots, sizeof(*srv->slots));
    srv->slot_free = calloc(c->staging_slots, sizeof(*srv->slot_free));
    if (!srv->scratch || !srv->keys || !srv->bytes || !srv->status ||
        !srv->blocks || !srv->puts || !srv->iovs || !srv->hash ||
        !srv->bulk_hash ||
        !srv->slots || !srv->slot_free)
        return -ENOMEM;
    for (uint32_t i = 0; i < c->staging_slots; i++) {
        srv->slots[i] = malloc(c->max_payload);
        if (!srv->slots[i])
            return -ENOMEM;
        srv->slot_free[srv->nslot_free++] = (int)i;
    }
    /* The largest reply: a GET of max_keys blocks, or STAT. */
    srv->tx_cap = KVS_WIRE_HDR_SIZE +
                  KVS_MAX((size_t)n * KVS_WIRE_BLOCK_SIZE + 16, 8192);
    srv->tx_cap = KVS_MAX(srv->tx_cap, (size_t)KVS_WIRE_INLINE_MAX);
    return 0;
}

int kvs_server_config_check(const kvs_server_config_t *c)
{
    if (c->max_keys < 1 || c->max_keys > KVS_WIRE_KEYS_MAX ||
        c->max_body < 1024 || c->max_body > KVS_WIRE_BODY_MAX ||
        c->max_payload < 4096 || c->max_inflight < 1 || c->max_conns < 1 ||
        c->staging_slots < 1 || c->lease_max_ms < 1 ||
        c->lease_default_ms > c->lease_max_ms || !c->listen_addr) {
        kvs_error("invalid transport configuration");
        return KVS_ECONFIG;
    }
    for (size_t i = 0; i < c->ntenants; i++) {
        if (!c->tenants[i].name || !c->tenants[i].token ||
            !c->tenants[i].token[0] ||
            strlen(c->tenants[i].token) > KVS_WIRE_TOKEN_MAX) {
            kvs_error("tenant %zu: a name and a token of 1..%u bytes are "
                      "required", i, KVS_WIRE_TOKEN_MAX);
            return KVS_ECONFIG;
        }
    }
    return 0;
}

static bool is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

/*
 * UCX settings the daemon depends on, unless the operator set them in the
 * environment:
 *  - MM_ERROR_HANDLING=y: UCX 1.13 leaves shared-memory transports out of
 *    endpoints that use peer error handling unless this is on, and then a
 *    local client would be served over TCP loopback instead of shared
 *    memory and CMA.
 *  - NET_DEVICES=lo when listening on loopback: UCX would otherwise open its
 *    TCP transport on every interface, reachable from the network even
 *    though the daemon only listens on 127.0.0.1.
 *  - PUT_ENABLE=n for the TCP transport (UCX_TCP_PUT_ENABLE; the config
 *    takes the name without the transport's prefix). With TCP put on, a
 *    local client's control endpoint (peer error handling, so no CMA)
 *    takes TCP loopback as its rendezvous lane: large PUT payloads cross
 *    TCP, and with the TCP transport in use every ucp_worker_progress()
 *    makes an epoll_wait() system call, paid on every poll of a spinning
 *    daemon or client. Without it the control endpoint of a local client
 *    has one shared-memory lane and rendezvous goes by active messages
 *    over it; bulk endpoints keep CMA, and remote peers still reach us
 *    over TCP. Measured on loopback: 1 MiB PUTs 2.2 -> 4.1 GB/s, 128-key
 *    MATCH p50 7 -> 4.7 us. Either side turning it off is enough; mixed
 *    settings were checked. Only when listening on loopback: between hosts
 *    TCP is the only transport, and that path was not measured (a client
 *    that connects to 127.0.0.1 turns it off on its side anyway).
 */
static ucs_status_t ucx_init(kvs_server_t *srv, const ucp_params_t *up)
{
    ucp_config_t *config;
    ucs_status_t st;

    st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK)
        return st;
    if (!getenv("UCX_MM_ERROR_HANDLING") &&
        ucp_config_modify(config, "MM_ERROR_HANDLING", "y") != UCS_OK)
        kvs_warn("cannot enable UCX shared memory with error handling");
    if (!getenv("UCX_NET_DEVICES") && is_loopback(srv->cfg.listen_addr) &&
        ucp_config_modify(config, "NET_DEVICES", "lo") != UCS_OK)
        kvs_warn("cannot restrict UCX to the loopback device");
    if (!getenv("UCX_TCP_PUT_ENABLE") && is_loopback(srv->cfg.listen_addr))
        (void)ucp_config_modify(config, "PUT_ENABLE", "n");
    st = ucp_init(up, config, &srv->ctx);
    ucp_config_release(config);
    return st;
}

int kvs_server_create(const kvs_server_config_t *cfg, kvs_store_t *store,
                      kvs_server_t **server_out)
{
    ucp_params_t up;
    ucp_worker_params_t wp;
    ucp_worker_attr_t wa;
    ucp_am_handler_param_t ap;
    struct epoll_event ev;
    kvs_server_t *srv;
    ucs_status_t st;
    int efd, ret;

    ret = kvs_handler_check();
    if (ret)
        return ret;
    ret = kvs_server_config_check(cfg);
    if (ret)
        return ret;
    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->cfg = *cfg;
    srv->store = store;
    srv->epfd = -1;
    srv->lim.max_body = cfg->max_body;
    srv->lim.max_keys = cfg->max_keys;
    srv->lim.max_payload = cfg->max_payload;
    ret = alloc_scratch(srv);
    if (ret)
        goto err_destroy;

    memset(&up, 0, sizeof(up));
    up.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
    up.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    up.name = "kvstashd";
    st = ucx_init(srv, &up);
    if (st != UCS_OK) {
        kvs_error("ucp_init: %s", ucs_status_string(st));
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    st = ucp_worker_create(srv->ctx, &wp, &srv->worker);
    if (st != UCS_OK) {
        kvs_error("ucp_worker_create: %s", ucs_status_string(st));
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    wa.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
    st = ucp_worker_query(srv->worker, &wa);
    if (st != UCS_OK || wa.max_am_header < KVS_WIRE_INLINE_MAX) {
        kvs_error("UCX allows AM headers of %zu bytes; kvstash needs %u",
                  st == UCS_OK ? wa.max_am_header : 0, KVS_WIRE_INLINE_MAX);
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    memset(&ap, 0, sizeof(ap));
    ap.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                    UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG;
    ap.id = KVS_AM_ID;
    ap.cb = am_cb;
    ap.arg = srv;
    st = ucp_worker_set_am_recv_handler(srv->worker, &ap);
    if (st != UCS_OK) {
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    ret = map_arena(srv);
    if (ret)
        goto err_destroy;
    ret = kvs_stream_create(srv);
    if (ret)
        goto err_destroy;
    st = ucp_worker_get_efd(srv->worker, &efd);
    if (st != UCS_OK) {
        kvs_error("ucp_worker_get_efd: %s", ucs_status_string(st));
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0) {
        ret = -errno;
        goto err_destroy;
    }
    ev.events = EPOLLIN;
    ev.data.fd = efd;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
        ret = -errno;
        goto err_destroy;
    }
    ret = listen_on(srv);
    if (ret)
        goto err_destroy;
    kvs_info("listening on %s port %u, bulk port %u (UCX %s)",
             cfg->listen_addr, srv->port, srv->bulk_port,
             ucp_get_version_string());
    *server_out = srv;
    return 0;

err_destroy:
    kvs_server_destroy(srv);
    return ret;
}

static void expire_leases(kvs_server_t *srv, uint64_t now)
{
    for (kvs_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        for (kvs_lease_t **pp = &c->leases; *pp;) {
            kvs_lease_t *l = *pp;

            if (l->expiry_ns > now) {
                pp = &l->next;
                continue;
            }
            *pp = l->next;
            c->nleases--;
            srv->leases_expired++;
            kvs_server_lease_free(srv, l);
        }
    }
}

static void bulk_sweep(kvs_server_t *srv, uint64_t now)
{
    for (kvs_bulk_t *b = srv->bulks, *next; b; b = next) {
        next = b->next;
        /* An unbound bulk endpoint gets 10 s to BIND. */
        if (b->failed || (!b->conn && now - b->created_ns > 10000000000ull))
            bulk_close(srv, b);
    }
}

static void run_deferred(kvs_server_t *srv)
{
    while (srv->close_list) {
        kvs_conn_t *c = srv->close_list;

        srv->close_list = c->close_next;
        c->close_queued = false;
        conn_close_now(c);
    }
    stage_pump(srv);
}

int kvs_server_run(kvs_server_t *srv, volatile sig_atomic_t *stop)
{
    uint64_t busy_ns = (uint64_t)srv->cfg.busy_poll_us * 1000;
    uint64_t last_active = kvs_clock_mono_ns(), last_timer = last_active;

    while (!*stop) {
        unsigned n = ucp_worker_progress(srv->worker);
        uint64_t now;

        run_deferred(srv);
        now = kvs_clock_mono_ns();
        if (now - last_timer > 50000000ull) {
            expire_leases(srv, now);
            bulk_sweep(srv, now);
            kvs_stream_tick(srv, now);
            last_timer = now;
        }
        if (n) {
            last_active = now;
            continue;
        }
        if (now - last_active < busy_ns)
            continue;
        if (ucp_worker_arm(srv->worker) == UCS_ERR_BUSY)
            continue;
        struct epoll_event ev;
        if (epoll_wait(srv->epfd, &ev, 1, 50) < 0 && errno != EINTR) {
            kvs_error("epoll_wait: %m");
            return -errno;
        }
    }
    return 0;
}

void kvs_server_destroy(kvs_server_t *srv)
{
    if (!srv)
        return;
    if (srv->worker) {
        uint64_t deadline = kvs_clock_mono_ns() + 2000000000ull;

        if (srv->listener)
            ucp_listener_destroy(srv->listener);
        if (srv->bulk_listener)
            ucp_listener_destroy(srv->bulk_listener);
        kvs_stream_stop(srv);
        for (kvs_conn_t *c = srv->conns; c; c = c->next)
            kvs_server_conn_close(c);
        run_deferred(srv);
        /* Let the forced closes and failed sends call back, so that every
         * block pin is dropped before the store closes. */
        while (srv->conns && kvs_clock_mono_ns() < deadline) {
            ucp_worker_progress(srv->worker);
            run_deferred(srv);
        }
        if (srv->conns)
            kvs_warn("connections still closing at shutdown");
        while (srv->bulks)
            bulk_close(srv, srv->bulks);
        if (srv->arena_memh)
            ucp_mem_unmap(srv->ctx, srv->arena_memh);
        ucp_worker_destroy(srv->worker);
        kvs_stream_destroy(srv);
        /* Connections whose sends UCX never completed: nothing refers to
         * them any more once the worker is gone. */
        while (srv->conns) {
            kvs_conn_t *c = srv->conns;

            srv->conns = c->next;
            while (c->data_txs) {
                kvs_tx_t *tx = c->data_txs;

                c->data_txs = tx->dnext;
                free(tx);
            }
            free(c->pins);
            free(c);
        }
    }
    if (srv->ctx)
        ucp_cleanup(srv->ctx);
    if (srv->epfd >= 0)
        close(srv->epfd);
    while (srv->tx_free) {
        kvs_tx_t *tx = srv->tx_free;
        srv->tx_free = tx->next;
        free(tx);
    }
    while (srv->stage_free) {
        kvs_stage_t *st = srv->stage_free;
        srv->stage_free = st->next;
        free(st);
    }
    for (uint32_t i = 0; srv->slots && i < srv->cfg.staging_slots; i++)
        free(srv->slots[i]);
    free(srv->slots);
    free(srv->slot_free);
    free(srv->hash);
    free(srv->bulk_hash);
    free(srv->keys);
    free(srv->bytes);
    free(srv->status);
    free(srv->blocks);
    free(srv->puts);
    free(srv->iovs);
    kvs_wire_scratch_destroy(srv->scratch);
    free(srv);
}
