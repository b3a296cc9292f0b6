/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sends: the kvs_tx_t that holds a frame (and for DATA the pinned view of
 * a block) until UCX is done with it, replies, header-only error replies,
 * and DATA messages sent straight from the DRAM arena. Runs on the
 * server's thread.
 */
#include "transport/server/server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/proto/ucx.h"
#include "transport/server/stream.h"

/* Sends. A kvs_tx_t holds the frame (and for DATA the pinned view) until
 * UCX reports the send complete; it holds a reference on its connection. */

kvs_tx_t *kvs_send_tx_get(kvs_server_t *srv, kvs_conn_t *conn)
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
    tx->conn->ndata--;
    tx->conn->data_bytes -= tx->data_len;
}

void kvs_send_tx_put(kvs_server_t *srv, kvs_tx_t *tx)
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
        kvs_conn_close(conn);
    }
    tx->next = srv->tx_free;
    srv->tx_free = tx;
    kvs_conn_unref(conn);
}

static void tx_done_cb(void *request, ucs_status_t status, void *user_data)
{
    kvs_tx_t *tx = user_data;

    if (status != UCS_OK && status != UCS_ERR_CANCELED)
        kvs_debug("conn %llu: send failed: %s",
                  (unsigned long long)tx->conn->id, ucs_status_string(status));
    kvs_send_tx_put(tx->conn->srv, tx);
    ucp_request_free(request);
}

static int tx_finish(kvs_server_t *srv, kvs_tx_t *tx, ucs_status_ptr_t sp)
{
    if (sp == NULL) {
        kvs_send_tx_put(srv, tx);
        return 0;
    }
    if (UCS_PTR_IS_ERR(sp)) {
        kvs_debug("conn %llu: send: %s", (unsigned long long)tx->conn->id,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        kvs_send_tx_put(srv, tx);
        return KVS_EPEER;
    }
    return 0; /* tx_done_cb finishes it */
}

/* A frame without payload: the AM data, sent eagerly (the client handles
 * such frames inside its receive callback). */
int kvs_send_frame(kvs_server_t *srv, kvs_tx_t *tx, size_t len)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = tx_done_cb,
        .user_data = tx,
        .flags = UCP_AM_SEND_FLAG_EAGER,
    };

    if (tx->conn->closing) {
        kvs_send_tx_put(srv, tx);
        return KVS_EPEER;
    }
    /* A peer daemon knows its links by the reply endpoint only. */
    if (tx->conn->features & KVS_WIRE_FEAT_PEER)
        prm.flags |= UCP_AM_SEND_FLAG_REPLY;
    return tx_finish(
        srv, tx,
        ucp_am_send_nbx(tx->conn->ep, KVS_AM_ID, NULL, 0, tx->buf, len, &prm));
}

/* A DATA message: the frame in the AM header, the pinned block from the
 * registered arena as the AM data; UCX picks eager or rendezvous. */
int kvs_send_data(kvs_server_t *srv, kvs_tx_t *tx, size_t hlen)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = tx_done_cb,
        .user_data = tx,
        .memh = srv->arena_memh,
    };
    ucs_status_ptr_t sp;

    if (tx->conn->closing) {
        kvs_send_tx_put(srv, tx);
        return KVS_EPEER;
    }
    sp = ucp_am_send_nbx(kvs_conn_data_ep(tx->conn), KVS_AM_ID, tx->buf, hlen,
                         tx->view.data, tx->view.len, &prm);
    if (UCS_PTR_IS_PTR(sp)) {
        /* In flight: remembered so that closing the connection can drop
         * its pin even if UCX never completes it (see kvs_conn_close_now). */
        tx->dprev = NULL;
        tx->dnext = tx->conn->data_txs;
        if (tx->dnext)
            tx->dnext->dprev = tx;
        tx->conn->data_txs = tx;
        tx->in_data_list = true;
        tx->data_len = tx->view.len;
        tx->conn->ndata++;
        tx->conn->data_bytes += tx->data_len;
    }
    return tx_finish(srv, tx, sp);
}

/* An error reply is a bare header; it is written here rather than through
 * the encoder so that it can echo whatever opcode the bad frame had. */
void kvs_send_status(kvs_server_t *srv, kvs_conn_t *conn,
                     const kvs_wire_hdr_t *req, int status, bool close_after)
{
    kvs_wire_msg_t m;
    kvs_tx_t *tx;
    size_t len;

    if (conn->closing)
        return;
    tx = kvs_send_tx_get(srv, conn);
    if (!tx) {
        kvs_conn_close(conn);
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
    kvs_send_frame(srv, tx, len);
}

void kvs_send_reply(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *rep)
{
    kvs_tx_t *tx;
    size_t len;
    int ret;

    if (conn->closing)
        return;
    tx = kvs_send_tx_get(srv, conn);
    if (!tx) {
        kvs_conn_close(conn);
        return;
    }
    rep->hdr.flags |= KVS_WIRE_F_REPLY;
    ret = kvs_wire_encode(rep, tx->buf, srv->tx_cap, &len);
    if (ret) {
        /* tx_cap is sized for the largest reply the limits allow. */
        kvs_error("conn %llu: cannot encode %s reply: %s",
                  (unsigned long long)conn->id,
                  kvs_wire_op_name(rep->hdr.opcode), kvs_strerror(ret));
        kvs_send_tx_put(srv, tx);
        kvs_send_status(srv, conn, &rep->hdr, ret, false);
        return;
    }
    kvs_send_frame(srv, tx, len);
}

/* A refusal on an unbound bulk endpoint: it has no connection, so the
 * frame is its own allocation, freed with the send. The endpoint is found
 * again by its handle when the send completes (it may be gone by then). */
typedef struct bulk_tx {
    kvs_server_t *srv;
    ucp_ep_h ep;
    uint8_t buf[KVS_WIRE_HDR_SIZE];
} bulk_tx_t;

static void bulk_tx_done(kvs_server_t *srv, bulk_tx_t *bt)
{
    kvs_bulk_t *b = kvs_conn_bulk_find(srv, bt->ep);

    if (b)
        b->failed = true; /* closed by the sweep */
    free(bt);
}

static void bulk_tx_cb(void *request, ucs_status_t status, void *user_data)
{
    bulk_tx_t *bt = user_data;

    (void)status;
    bulk_tx_done(bt->srv, bt);
    ucp_request_free(request);
}

void kvs_send_bulk_status(kvs_server_t *srv, kvs_bulk_t *b,
                          const kvs_wire_hdr_t *req, int status)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = bulk_tx_cb,
        .flags = UCP_AM_SEND_FLAG_EAGER,
    };
    bulk_tx_t *bt = calloc(1, sizeof(*bt));
    kvs_wire_msg_t m;
    ucs_status_ptr_t sp;
    size_t len;

    b->refused_ns = kvs_clock_mono_ns();
    if (!bt) {
        b->failed = true;
        return;
    }
    bt->srv = srv;
    bt->ep = b->ep;
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_BIND;
    m.hdr.flags = KVS_WIRE_F_REPLY;
    m.hdr.req_id = req->req_id;
    m.hdr.status = status;
    if (kvs_wire_encode(&m, bt->buf, sizeof(bt->buf), &len) != 0)
        kvs_panic("cannot encode a BIND refusal");
    prm.user_data = bt;
    sp = ucp_am_send_nbx(b->ep, KVS_AM_ID, NULL, 0, bt->buf, len, &prm);
    if (!UCS_PTR_IS_PTR(sp))
        bulk_tx_done(srv, bt);
}

/* One block of a GET, pinned in tx->view: checks it fits the client's
 * buffer, then sends it as DATA number idx of request req_id. Fills b;
 * returns b->status. tx is consumed either way. */
int kvs_send_block(kvs_server_t *srv, kvs_tx_t *tx, uint64_t req_id,
                   uint32_t idx, uint64_t cap, uint8_t tier,
                   kvs_wire_block_t *b)
{
    kvs_wire_msg_t d;
    size_t hlen;

    tx->has_view = true;
    b->len = tx->view.len;
    b->nparts = tx->view.nparts;
    b->tier = tx->view.tier; /* where the store found it */
    b->cls = tx->view.cls;
    if (tx->view.len > cap) {
        b->status = -ENOBUFS;
        kvs_send_tx_put(srv, tx); /* unpins */
        return b->status;
    }
    if (tx->conn->ndata > 0 &&
        tx->conn->data_bytes + tx->view.len > srv->cfg.max_inflight_bytes) {
        b->status = -EAGAIN; /* one block alone is always sent */
        srv->get_throttled++;
        kvs_send_tx_put(srv, tx);
        return b->status;
    }
    memset(&d, 0, sizeof(d));
    d.hdr.opcode = KVS_OP_DATA;
    d.hdr.flags = KVS_WIRE_F_PAYLOAD;
    d.hdr.req_id = req_id;
    d.hdr.count = idx;
    d.u.data.len = tx->view.len;
    d.u.data.nparts = tx->view.nparts;
    d.u.data.tier = tx->view.tier;
    d.u.data.cls = tx->view.cls;
    d.u.data.part_lens = tx->view.part_lens;
    if (kvs_wire_encode(&d, tx->buf, srv->tx_cap, &hlen)) {
        b->status = KVS_ETOOBIG;
        kvs_send_tx_put(srv, tx);
        return b->status;
    }
    srv->blocks_sent++;
    srv->bytes_sent += b->len;
    kvs_metrics_note_bytes(srv->metrics, KVS_METRICS_OUT, tier, b->len);
    b->status = kvs_send_data(srv, tx, hlen);
    return b->status;
}
