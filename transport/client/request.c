/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash's requests: the slot table, sending a request, receiving its
 * reply and DATA messages (and handing stream opcodes to stream.c), and
 * running completions outside UCX's callbacks.
 */
#include "transport/client/client_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/ucx.h"

/* Completion. */

static void op_maybe_done(kvs_client_t *c, op_t *op)
{
    if (!op->id || op->done_queued || !op->sent || !op->replied ||
        op->data_done < op->data_expected)
        return;
    if (op->opcode == KVS_OP_GET && op->status == 0)
        for (uint32_t i = 0; i < op->n && !op->status; i++)
            op->status = op->out.get[i].status;
    op->done_queued = true;
    op->done_next = c->done_head;
    c->done_head = op;
}

int kvs_req_run_completions(kvs_client_t *c)
{
    int n = 0;

    while (c->done_head) {
        op_t *op = c->done_head;
        kvs_client_cb_t cb = op->cb;
        void *arg = op->arg;
        int status = op->status;

        c->done_head = op->done_next;
        /* The first BIND is the bulk endpoint's (conn.c), made while the
         * client is created; a later one the put endpoint's. */
        if (op->opcode == KVS_OP_BIND && status == 0)
            c->bulk_bound = true;
        if (op->sync_done) {
            *op->sync_status = status;
            *op->sync_done = true;
        }
        op->id = 0;
        op->done_queued = false;
        op->cb = NULL;
        op->sync_done = NULL;
        c->inflight--;
        if (cb)
            cb(arg, status);
        n++;
    }
    return n;
}

/* The connection is gone: every request fails. Requests whose buffers UCX
 * still holds finish when UCX completes them (with an error). */
static void client_fail(kvs_client_t *c, int status)
{
    if (!c->failed)
        c->failed = status;
    for (uint32_t i = 0; i < c->nslots; i++) {
        op_t *op = &c->ops[i];

        if (!op->id)
            continue;
        if (!op->replied) {
            op->replied = true;
            op->status = status;
        }
        /* Blocks not yet received never will be, but receives UCX has
         * started still write into the caller's buffer: the request ends
         * when they have (UCX completes them, with an error if need be),
         * not before, and its slot is not reused under them. */
        op->data_expected = op->data_done + op->data_rndv;
        op_maybe_done(c, op);
    }
}

/* Noted only: see kvs_req_worker_progress(). */
void kvs_req_ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    kvs_client_t *c = arg;

    (void)ep;
    (void)status;
    c->peer_gone = true;
}

/* ucp_worker_progress(), and when UCX has reported the daemon gone, what
 * the daemon sent before it went is read first, then every request still
 * open fails. A daemon refusing a HELLO answers KVS_EAUTH and disconnects;
 * the disconnect comes on the connection manager's socket and the answer
 * through shared memory, and the disconnect can be seen first. */
unsigned kvs_req_worker_progress(kvs_client_t *c)
{
    unsigned n = ucp_worker_progress(c->worker);

    if (c->put_worker)
        n += ucp_worker_progress(c->put_worker);

    if (c->peer_gone && !c->failed) {
        for (int i = 0; i < 64 && ucp_worker_progress(c->worker); i++)
            ;
        client_fail(c, KVS_EPEER);
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Receiving. */

static op_t *op_find(kvs_client_t *c, uint64_t id)
{
    op_t *op = &c->ops[id & (SLOTS_MAX - 1)];

    return (id && op->id == id && (id & (SLOTS_MAX - 1)) < c->nslots) ? op
                                                                      : NULL;
}

/* GET blocks received by rendezvous carry a pointer to this. */
typedef struct data_ctx {
    kvs_client_t *c;
    op_t *op;
    uint32_t idx;
} data_ctx_t;

static void data_done(kvs_client_t *c, op_t *op, uint32_t idx, int status)
{
    if (status && op->out.get[idx].status == 0)
        op->out.get[idx].status = status;
    op->data_done++;
    op_maybe_done(c, op);
}

static void rndv_cb(void *request, ucs_status_t status, size_t length,
                    void *user_data)
{
    data_ctx_t *d = user_data;

    (void)length;
    d->op->data_rndv--;
    data_done(d->c, d->op, d->idx, status == UCS_OK ? 0 : KVS_EPEER);
    free(d);
    ucp_request_free(request);
}

static ucs_status_t on_data(kvs_client_t *c, const kvs_wire_msg_t *m,
                            void *data, size_t len, bool rndv)
{
    op_t *op = op_find(c, m->hdr.req_id);
    kvs_client_get_t *it;
    uint32_t idx = m->hdr.count;

    if (!op || op->opcode != KVS_OP_GET || idx >= op->n)
        return UCS_OK; /* not ours: drop */
    it = &op->out.get[idx];
    if (len > it->cap) {
        it->status = KVS_EPROTO;
        data_done(c, op, idx, KVS_EPROTO);
        return UCS_OK;
    }
    it->len = len;
    it->nparts = m->u.data.nparts;
    it->tier = m->u.data.tier;
    it->cls = m->u.data.cls;
    if (it->part_lens)
        memcpy(it->part_lens, m->u.data.part_lens,
               4 * (size_t)KVS_MIN(it->part_cap, m->u.data.nparts));
    if (!rndv) {
        if (len)
            memcpy(it->buf, data, len);
        data_done(c, op, idx, 0);
        return UCS_OK;
    }
    {
        data_ctx_t *d = malloc(sizeof(*d));
        ucp_request_param_t prm = {
            .op_attr_mask =
                UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
            .cb.recv_am = rndv_cb,
        };
        ucs_status_ptr_t sp;

        if (!d) {
            data_done(c, op, idx, -ENOMEM);
            return UCS_OK;
        }
        d->c = c;
        d->op = op;
        d->idx = idx;
        prm.user_data = d;
        if (it->mr && (uint8_t *)it->buf >= (uint8_t *)it->mr->base &&
            (uint8_t *)it->buf + len <= (uint8_t *)it->mr->base + it->mr->len) {
            prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
            prm.memh = it->mr->memh;
        }
        sp = ucp_am_recv_data_nbx(c->worker, data, it->buf, len, &prm);
        if (sp == NULL) {
            free(d);
            data_done(c, op, idx, 0);
        } else if (UCS_PTR_IS_ERR(sp)) {
            free(d);
            data_done(c, op, idx, KVS_EPEER);
        } else {
            op->data_rndv++;
        }
        return UCS_INPROGRESS;
    }
}

static void on_reply(kvs_client_t *c, op_t *op, const kvs_wire_msg_t *m)
{
    uint32_t n = m->hdr.count;

    op->replied = true;
    op->status = m->hdr.status;
    if (m->hdr.status != 0 || m->hdr.opcode != op->opcode)
        goto out;
    switch (op->opcode) {
    case KVS_OP_HELLO:
        c->limits.features = m->u.hello_rep.features;
        c->limits.max_keys =
            KVS_MIN(m->u.hello_rep.max_keys, KVS_WIRE_KEYS_MAX);
        c->limits.max_payload = m->u.hello_rep.max_payload;
        c->limits.max_inflight = m->u.hello_rep.max_inflight;
        c->limits.lease_max_ms = m->u.hello_rep.lease_max_ms;
        c->limits.session = m->u.hello_rep.session;
        c->max_body = KVS_MIN(m->u.hello_rep.max_body, BODY_CAP);
        c->bulk_port = (uint16_t)m->u.hello_rep.bulk_port;
        c->worker_port = (uint16_t)m->u.hello_rep.worker_port;
        c->bind_secret = m->u.hello_rep.bind_secret;
        break;
    case KVS_OP_PUT:
        if (n != op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            op->out.put[i].status = m->u.status_rep.status[i];
            if (m->u.status_rep.status[i] && !op->status)
                op->status = m->u.status_rep.status[i];
        }
        break;
    case KVS_OP_GET:
        if (n != op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            kvs_client_get_t *it = &op->out.get[i];
            const kvs_wire_block_t *b = &m->u.get_rep.blocks[i];

            if (it->status == 0)
                it->status = b->status;
            it->len = b->len;
            it->nparts = b->nparts;
            it->tier = b->tier;
            it->cls = b->cls;
            if (b->status == 0)
                op->data_expected++;
        }
        break;
    case KVS_OP_MATCH:
        if (n > op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        if (op->out.match.tiers)
            memcpy(op->out.match.tiers, m->u.match_rep.tiers, n);
        op->out.match.res->matched = n;
        op->out.match.res->lease_id = m->u.match_rep.lease_id;
        break;
    case KVS_OP_EXISTS:
        if (n != op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        memcpy(op->out.present, m->u.exists_rep.present, n);
        break;
    case KVS_OP_DELETE:
    case KVS_OP_PIN:
    case KVS_OP_UNPIN:
        if (n != op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (op->out.status)
                op->out.status[i] = m->u.status_rep.status[i];
            if (m->u.status_rep.status[i] && !op->status)
                op->status = m->u.status_rep.status[i];
        }
        break;
    case KVS_OP_PREFETCH:
        if (op->out.promoted)
            *op->out.promoted = m->u.prefetch_rep.promoted;
        break;
    case KVS_OP_STAT: {
        size_t k = KVS_MIN((size_t)n, op->out.stat.cap);

        for (size_t i = 0; i < k; i++) {
            kvs_client_stat_t *s = &op->out.stat.out[i];
            const kvs_wire_stat_t *w = &m->u.stat_rep.ents[i];

            memcpy(s->name, w->name.data, w->name.len);
            s->name[w->name.len] = '\0';
            s->value = w->value;
        }
        *op->out.stat.n_out = k;
        break;
    }
    case KVS_OP_VERIFY:
        *op->out.verify.checked = m->u.verify_rep.checked;
        *op->out.verify.bad = m->u.verify_rep.bad;
        break;
    case KVS_OP_SCAN:
        if (n > op->n) {
            op->status = KVS_EPROTO;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            kvs_client_scan_ent_t *o = &op->out.scan.out[i];
            const kvs_wire_scan_ent_t *w = &m->u.scan_rep.ents[i];

            memcpy(o->key, w->key.data, w->key.len);
            o->key_len = w->key.len;
            if (w->parent.len)
                memcpy(o->parent, w->parent.data, w->parent.len);
            o->parent_len = w->parent.len;
            o->tier = w->tier;
            o->cls = w->cls;
            o->nparts = w->nparts;
            o->len = w->len;
            o->group = w->group;
            o->expiry_ms = w->expiry_ms;
        }
        *op->out.scan.n_out = n;
        *op->out.scan.next_out = m->u.scan_rep.next;
        break;
    default:
        break;
    }
out:
    op_maybe_done(c, op);
}

ucs_status_t kvs_req_am_cb(void *arg, const void *header, size_t hlen,
                           void *data, size_t len,
                           const ucp_am_recv_param_t *param)
{
    kvs_client_t *c = arg;
    bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
    kvs_wire_msg_t m;
    op_t *op;

    if (hlen) {
        /* DATA or a stream opcode: the frame in the header, the block or
         * part as the data. */
        if (kvs_wire_decode(header, hlen, len, &c->lim, c->scratch, &m) != 0)
            return UCS_OK;
        if (kvs_wire_op_is_stream(m.hdr.opcode))
            return kvs_client_stream_rx(c, &m, data, len, rndv);
        if (m.hdr.opcode != KVS_OP_DATA)
            return UCS_OK;
        return on_data(c, &m, data, len, rndv);
    }
    if (rndv)
        return UCS_OK; /* replies come eagerly */
    if (kvs_wire_decode(data, len, 0, &c->lim, c->scratch, &m) != 0) {
        /* A reply we cannot read: if it names a request, fail that one. */
        if (m.hdr.magic == KVS_WIRE_MAGIC && (op = op_find(c, m.hdr.req_id))) {
            op->replied = true;
            op->status = KVS_EPROTO;
            op_maybe_done(c, op);
        }
        return UCS_OK;
    }
    if (!(m.hdr.flags & KVS_WIRE_F_REPLY))
        return UCS_OK;
    op = op_find(c, m.hdr.req_id);
    if (op && !op->replied)
        on_reply(c, op, &m);
    return UCS_OK;
}

/* ------------------------------------------------------------------ */
/* Sending. */

/* The kvs_client_t of a slot, from the slot's address. */
static kvs_client_t *op_client(op_t *op)
{
    return kvs_container_of(op - (op->id & (SLOTS_MAX - 1)), kvs_client_t,
                            ops[0]);
}

static void sent_cb(void *request, ucs_status_t status, void *user_data)
{
    op_t *op = user_data;
    kvs_client_t *c = op_client(op);

    if (status != UCS_OK && !op->replied) {
        op->replied = true;
        op->status = KVS_EPEER;
    }
    op->sent = true;
    op_maybe_done(c, op);
    ucp_request_free(request);
}

#define YIELD_NS 200000ull /* see kvs_req_progress_once */

/* Waits while nothing can make progress: spin briefly, then sleep on the
 * worker's event fd. */
int kvs_req_progress_once(kvs_client_t *c, uint64_t *idle_since)
{
    unsigned n = kvs_req_worker_progress(c);
    uint64_t now;

    if (n) {
        *idle_since = 0;
        return (int)n;
    }
    now = kvs_clock_mono_ns();
    if (!*idle_since)
        *idle_since = now;
    if (now - *idle_since < c->busy_ns)
        return 0;
    /* UCX 1.13's ucp_worker_arm can answer BUSY (events pending) call after
     * call while progress finds nothing: counted inside one of 64 client
     * processes on two cores, 97% of its calls, with or without a put
     * endpoint. Spinning on that took the cores from the daemon the client
     * was waiting for (net-mixed-64clients: GET p99 43-47 ms, against
     * 2.1-2.6 with this yield; docs/operations.md). So a BUSY gives the
     * core away for a moment once nothing has happened for YIELD_NS past
     * the busy window; sooner, it cost a lone client's MATCH its wake-up
     * time twice over (net-match128-p99-under-disk-load's limit 74 -> 130
     * us). */
    if (kvs_client_arm(c))
        kvs_client_sleep(c, 10);
    else if (now - *idle_since >= c->busy_ns + YIELD_NS)
        kvs_client_yield();
    return 0;
}

/* A free slot, waiting for one when the window is full. */
op_t *kvs_req_alloc(kvs_client_t *c, uint8_t opcode)
{
    uint64_t idle = 0;

    while (c->inflight >= c->nslots && !c->failed) {
        kvs_req_progress_once(c, &idle);
        kvs_req_run_completions(c);
    }
    if (c->failed)
        return NULL;
    for (uint32_t i = 0; i < c->nslots; i++) {
        op_t *op = &c->ops[i];

        if (op->id)
            continue;
        if (!op->frame) {
            op->frame = malloc(KVS_WIRE_HDR_SIZE + BODY_CAP);
            if (!op->frame)
                return NULL;
        }
        c->seq++;
        op->id = (c->seq << 8) | i;
        op->opcode = opcode;
        op->sent = op->replied = op->done_queued = false;
        op->data_expected = op->data_done = op->data_rndv = 0;
        op->status = 0;
        op->n = 0;
        op->cb = NULL;
        op->arg = NULL;
        op->sync_done = NULL;
        memset(&op->out, 0, sizeof(op->out));
        c->inflight++;
        return op;
    }
    return NULL;
}

void kvs_req_abort(kvs_client_t *c, op_t *op)
{
    op->id = 0;
    c->inflight--;
}

/* Sends op->frame (len bytes) with an optional payload. */
static int op_send(kvs_client_t *c, op_t *op, size_t len, const void *payload,
                   size_t plen, size_t niov)
{
    /* A PUT's payload moves by CMA on the bound bulk endpoint; on the
     * control endpoint UCX 1.13 would carry it in fragments (docs/protocol.md
     * section 5, BIND). */
    bool bulk_put = op->opcode == KVS_OP_PUT && c->bulk_bound &&
                    (c->limits.features & KVS_WIRE_FEAT_BULK_PUT) &&
                    (payload || niov);
    ucp_ep_h ep = op->opcode == KVS_OP_BIND          ? c->bind_ep
                  : bulk_put && c->put_bound && plen >= PUT_EP_MIN ? c->put_ep
                  : bulk_put                           ? c->bulk_ep
                                                       : c->ep;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = sent_cb,
        .user_data = op,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_ptr_t sp;

    if (niov) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
        prm.datatype = ucp_dt_make_iov();
        sp =
            ucp_am_send_nbx(ep, KVS_AM_ID, op->frame, len, op->iov, niov, &prm);
    } else if (payload || plen) {
        sp =
            ucp_am_send_nbx(ep, KVS_AM_ID, op->frame, len, payload, plen, &prm);
    } else {
        prm.flags |= UCP_AM_SEND_FLAG_EAGER;
        sp = ucp_am_send_nbx(ep, KVS_AM_ID, NULL, 0, op->frame, len, &prm);
    }
    if (sp == NULL) {
        op->sent = true;
    } else if (UCS_PTR_IS_ERR(sp)) {
        op->sent = true;
        op->replied = true;
        op->status = KVS_EPEER;
        client_fail(c, KVS_EPEER);
    }
    op_maybe_done(c, op);
    return 0;
}

/* Waits for one synchronous op. A timeout fails the whole client: the
 * daemon may still write into the caller's buffers, so nothing in flight
 * can be given back safely. */
int kvs_req_wait(kvs_client_t *c, bool *done, const int *status)
{
    uint64_t idle = 0;
    uint64_t deadline = c->timeout_ms ? kvs_clock_mono_ns() +
                                            (uint64_t)c->timeout_ms * 1000000ull
                                      : 0;

    while (!*done) {
        kvs_req_progress_once(c, &idle);
        kvs_req_run_completions(c);
        if (!*done && deadline && kvs_clock_mono_ns() > deadline) {
            client_fail(c, -ETIMEDOUT);
            deadline = 0;
        }
    }
    return *status;
}

/* Encodes msg into op's frame and sends it, then waits if synchronous. */
int kvs_req_submit(kvs_client_t *c, op_t *op, kvs_wire_msg_t *m,
                   const void *payload, size_t plen, size_t niov,
                   kvs_client_cb_t cb, void *arg, bool sync)
{
    size_t len;
    int ret, status = 0;
    bool done = false;

    m->hdr.opcode = op->opcode;
    m->hdr.req_id = op->id;
    ret = kvs_wire_encode(m, op->frame, KVS_WIRE_HDR_SIZE + c->max_body, &len);
    if (ret) {
        kvs_req_abort(c, op);
        return ret == -ENOBUFS ? KVS_ETOOBIG : ret;
    }
    if ((payload || niov) && len > KVS_WIRE_INLINE_MAX) {
        kvs_req_abort(c, op);
        return KVS_ETOOBIG;
    }
    op->cb = cb;
    op->arg = arg;
    if (sync) {
        /* kvs_req_wait() returns only once the op is done (a failed connection
         * completes every op), so these never outlive this frame. */
        // cppcheck-suppress autoVariables
        op->sync_done = &done;
        // cppcheck-suppress autoVariables
        op->sync_status = &status;
    }
    op_send(c, op, len, payload, plen, niov);
    if (!sync)
        return 0;
    return kvs_req_wait(c, &done, &status);
}
