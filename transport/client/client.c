/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash: the client side of the protocol (include/kvstash/client.h).
 *
 * One client owns one UCX context, one worker and one endpoint to the
 * daemon, all driven by the calling thread. Each request occupies one slot
 * of a fixed table (the in-flight window agreed in HELLO); its request id
 * is (sequence << 8 | slot), so a reply finds its slot in O(1) and a stale
 * or forged id is recognised and dropped.
 *
 *   slot: id | opcode | frame buffer | iov buffer | outputs | cb
 *
 * A request is complete when its frame has been sent (UCX released the
 * buffers), its reply has arrived, and, for a GET, every block announced
 * in the reply has landed in the caller's buffer. DATA messages and the
 * reply may arrive in either order. Completions are collected inside UCX
 * callbacks and their user callbacks run after ucp_worker_progress()
 * returns, so a user callback may call the library again.
 *
 * The library never aborts: every failure is a status, and a lost
 * connection fails what is in flight with KVS_EPEER.
 */
#include "kvstash/kvstash.h"
#include "kvstash/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ucp/api/ucp.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "transport/client/client_int.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/ucx.h"

#define SLOTS_MAX  256u  /* request ids carry the slot in 8 bits */
#define BODY_CAP   (128u << 10)

typedef struct op op_t;
struct op {
    uint64_t id;                  /* 0: slot free */
    uint8_t opcode;
    bool sent;                    /* UCX is done with our buffers */
    bool replied;
    bool done_queued;
    uint32_t data_expected;       /* GET: blocks the reply announced */
    uint32_t data_done;           /* GET: blocks fully received */
    uint32_t data_rndv;           /* GET: rendezvous receives still
                                     writing into the caller's buffers */
    int status;
    uint32_t n;                   /* entries in the request */
    kvs_client_cb_t cb;
    void *arg;
    int *sync_status;             /* synchronous waiters */
    bool *sync_done;
    op_t *done_next;
    union {
        kvs_client_put_t *put;
        kvs_client_get_t *get;
        struct {
            uint8_t *tiers;
            kvs_client_match_result_t *res;
        } match;
        uint8_t *present;
        int *status;
        uint64_t *promoted;
        struct {
            kvs_client_stat_t *out;
            size_t cap;
            size_t *n_out;
        } stat;
        struct {
            uint64_t *checked, *bad;
        } verify;
        struct {
            kvs_client_scan_ent_t *out;
            size_t cap;
            size_t *n_out;
            uint32_t *next_out;
        } scan;
    } out;
    uint8_t *frame;               /* KVS_WIRE_HDR_SIZE + BODY_CAP bytes */
    ucp_dt_iov_t *iov;            /* PUT payload pieces */
    size_t iov_cap;
};

struct kvs_mr {
    ucp_mem_h memh;
    void *base;
    size_t len;
};

struct kvs_client {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;                  /* control: peer error handling on */
    ucp_ep_h bulk_ep;             /* DATA: see transport/server/server_int.h */
    int efd;
    int failed;                   /* 0, or why every call now fails */
    bool peer_gone;               /* UCX said so; failed once drained */
    bool ready;
    uint64_t seq;
    uint32_t nslots;              /* window: min(max_inflight, SLOTS_MAX) */
    uint32_t inflight;
    op_t ops[SLOTS_MAX];
    op_t *done_head;
    kvs_client_limits_t limits;
    uint32_t max_body;
    uint32_t timeout_ms;
    uint64_t busy_ns;
    uint16_t bulk_port;           /* from HELLO; 0: no bulk endpoint */
    uint64_t bind_secret;
    kvs_wire_limits_t lim;
    kvs_wire_scratch_t *scratch;
    /* Streaming (client_stream.c): the namespace's name and its state. */
    char ns[KVS_NS_NAME_MAX + 1];
    void *stream;
};

KVS_API unsigned kvs_version(void)
{
    return KVS_VERSION_NUMBER;
}

KVS_API const char *kvs_version_string(void)
{
#define STR2(x) #x
#define STR(x) STR2(x)
    return STR(KVS_VERSION_MAJOR) "." STR(KVS_VERSION_MINOR) "." STR(
        KVS_VERSION_PATCH);
}

/* ------------------------------------------------------------------ */
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

static int run_completions(kvs_client_t *c)
{
    int n = 0;

    while (c->done_head) {
        op_t *op = c->done_head;
        kvs_client_cb_t cb = op->cb;
        void *arg = op->arg;
        int status = op->status;

        c->done_head = op->done_next;
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

/* Noted only: see worker_progress(). */
static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
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
static unsigned worker_progress(kvs_client_t *c)
{
    unsigned n = ucp_worker_progress(c->worker);

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
            .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                            UCP_OP_ATTR_FIELD_USER_DATA,
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
        c->limits.max_keys = KVS_MIN(m->u.hello_rep.max_keys,
                                     KVS_WIRE_KEYS_MAX);
        c->limits.max_payload = m->u.hello_rep.max_payload;
        c->limits.max_inflight = m->u.hello_rep.max_inflight;
        c->limits.lease_max_ms = m->u.hello_rep.lease_max_ms;
        c->limits.session = m->u.hello_rep.session;
        c->max_body = KVS_MIN(m->u.hello_rep.max_body, BODY_CAP);
        c->bulk_port = (uint16_t)m->u.hello_rep.bulk_port;
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

static ucs_status_t am_cb(void *arg, const void *header, size_t hlen,
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

/* Waits while nothing can make progress: spin briefly, then sleep on the
 * worker's event fd. */
static int progress_once(kvs_client_t *c, uint64_t *idle_since)
{
    unsigned n = worker_progress(c);
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
    if (ucp_worker_arm(c->worker) == UCS_OK) {
        struct pollfd pfd = {.fd = c->efd, .events = POLLIN};
        poll(&pfd, 1, 10);
    }
    return 0;
}

/* A free slot, waiting for one when the window is full. */
static op_t *op_alloc(kvs_client_t *c, uint8_t opcode)
{
    uint64_t idle = 0;

    while (c->inflight >= c->nslots && !c->failed) {
        progress_once(c, &idle);
        run_completions(c);
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

static void op_abort(kvs_client_t *c, op_t *op)
{
    op->id = 0;
    c->inflight--;
}

/* Sends op->frame (len bytes) with an optional payload. */
static int op_send(kvs_client_t *c, op_t *op, size_t len, const void *payload,
                   size_t plen, size_t niov)
{
    ucp_ep_h ep = op->opcode == KVS_OP_BIND ? c->bulk_ep : c->ep;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = sent_cb,
        .user_data = op,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_ptr_t sp;

    if (niov) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
        prm.datatype = ucp_dt_make_iov();
        sp = ucp_am_send_nbx(ep, KVS_AM_ID, op->frame, len, op->iov, niov, &prm);
    } else if (payload || plen) {
        sp = ucp_am_send_nbx(ep, KVS_AM_ID, op->frame, len, payload, plen, &prm);
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
static int op_wait(kvs_client_t *c, bool *done, const int *status)
{
    uint64_t idle = 0;
    uint64_t deadline = c->timeout_ms
        ? kvs_clock_mono_ns() + (uint64_t)c->timeout_ms * 1000000ull
        : 0;

    while (!*done) {
        progress_once(c, &idle);
        run_completions(c);
        if (!*done && deadline && kvs_clock_mono_ns() > deadline) {
            client_fail(c, -ETIMEDOUT);
            deadline = 0;
        }
    }
    return *status;
}

/* Encodes msg into op's frame and sends it, then waits if synchronous. */
static int op_submit(kvs_client_t *c, op_t *op, kvs_wire_msg_t *m,
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
        op_abort(c, op);
        return ret == -ENOBUFS ? KVS_ETOOBIG : ret;
    }
    if ((payload || niov) && len > KVS_WIRE_INLINE_MAX) {
        op_abort(c, op);
        return KVS_ETOOBIG;
    }
    op->cb = cb;
    op->arg = arg;
    if (sync) {
        /* op_wait() returns only once the op is done (a failed connection
         * completes every op), so these never outlive this frame. */
        // cppcheck-suppress autoVariables
        op->sync_done = &done;
        // cppcheck-suppress autoVariables
        op->sync_status = &status;
    }
    op_send(c, op, len, payload, plen, niov);
    if (!sync)
        return 0;
    return op_wait(c, &done, &status);
}

/* ------------------------------------------------------------------ */
/* Creation. */

static int client_hello(kvs_client_t *c, const kvs_client_params_t *p)
{
    kvs_wire_msg_t m;
    op_t *op = op_alloc(c, KVS_OP_HELLO);

    if (!op)
        return c->failed ? c->failed : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.u.hello.features = KVS_WIRE_FEAT_ALL;
    m.u.hello.elem_size = (uint8_t)p->elem_size;
    if (p->token) {
        m.u.hello.token.data = (const uint8_t *)p->token;
        m.u.hello.token.len = (uint32_t)strlen(p->token);
    }
    m.u.hello.ns.data = (const uint8_t *)p->ns;
    m.u.hello.ns.len = (uint32_t)strlen(p->ns);
    if (m.u.hello.token.len > KVS_WIRE_TOKEN_MAX ||
        m.u.hello.ns.len > KVS_NS_NAME_MAX || m.u.hello.ns.len == 0) {
        op_abort(c, op);
        return KVS_ETOOBIG;
    }
    return op_submit(c, op, &m, NULL, 0, 0, NULL, NULL, true);
}

static void ep_close(kvs_client_t *c, ucp_ep_h *ep, bool force);

static void bulk_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)arg;
    (void)ep;
    (void)status; /* the control endpoint reports a dead daemon */
}

/* A second endpoint, without peer error handling, so that UCX may pull
 * blocks by CMA; bound to this connection by BIND. Best effort: on any
 * failure blocks simply come over the control endpoint. */
static void bulk_connect(kvs_client_t *c, struct sockaddr_storage *ss)
{
    kvs_wire_msg_t m;
    op_t *op;

    kvs_sockaddr_set_port(ss, c->bulk_port);
    if (kvs_ucx_connect(c->worker, ss, false, bulk_err_cb, c,
                        &c->bulk_ep) != 0)
        return;
    op = op_alloc(c, KVS_OP_BIND);
    if (!op) {
        ep_close(c, &c->bulk_ep, true);
        return;
    }
    memset(&m, 0, sizeof(m));
    m.u.bind.session = c->limits.session;
    m.u.bind.secret = c->bind_secret;
    if (op_submit(c, op, &m, NULL, 0, 0, NULL, NULL, true) != 0)
        ep_close(c, &c->bulk_ep, true);
}

KVS_API int kvs_client_create_v(unsigned api_version,
                                const kvs_client_params_t *params,
                                kvs_client_t **client_out)
{
    kvs_client_params_t p = {0};
    kvs_ucx_opts_t opts = {0};
    struct sockaddr_storage ss;
    kvs_client_t *c;
    ucs_status_t st;
    int ret;

    if ((api_version >> 16) != KVS_VERSION_MAJOR || !params || !client_out)
        return -EINVAL;
    p.addr = "127.0.0.1";
    p.port = KVS_DEFAULT_PORT;
    p.timeout_ms = 10000;
    p.busy_poll_us = 20;
    if (params->field_mask & KVS_CLIENT_PARAM_ADDR)
        p.addr = params->addr;
    if (params->field_mask & KVS_CLIENT_PARAM_PORT)
        p.port = params->port;
    if (params->field_mask & KVS_CLIENT_PARAM_TOKEN)
        p.token = params->token;
    if (params->field_mask & KVS_CLIENT_PARAM_NS)
        p.ns = params->ns;
    if (params->field_mask & KVS_CLIENT_PARAM_ELEM_SIZE)
        p.elem_size = params->elem_size;
    if (params->field_mask & KVS_CLIENT_PARAM_TIMEOUT_MS)
        p.timeout_ms = params->timeout_ms;
    if (params->field_mask & KVS_CLIENT_PARAM_BUSY_POLL_US)
        p.busy_poll_us = params->busy_poll_us;
    if (!p.ns || !p.addr || p.elem_size > 255)
        return -EINVAL;
    if (kvs_sockaddr_parse(p.addr, p.port, &ss))
        return -EINVAL;

    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->nslots = 1; /* until HELLO says more */
    snprintf(c->ns, sizeof(c->ns), "%s", p.ns);
    c->max_body = 4096;
    c->busy_ns = (uint64_t)p.busy_poll_us * 1000;
    c->lim.max_body = KVS_WIRE_BODY_MAX;
    c->lim.max_keys = KVS_WIRE_KEYS_MAX;
    c->lim.max_payload = KVS_WIRE_PAYLOAD_MAX;
    c->efd = -1;
    c->scratch = kvs_wire_scratch_create();
    if (!c->scratch) {
        ret = -ENOMEM;
        goto err_free;
    }
    opts.name = "libkvstash";
    opts.loopback = kvs_sockaddr_is_loopback(&ss);
    ret = kvs_ucx_open(&opts, &c->ctx, &c->worker);
    if (ret)
        goto err_free;
    st = ucp_worker_get_efd(c->worker, &c->efd);
    if (st != UCS_OK) {
        ret = kvs_ucx_status(st, "ucp_worker_get_efd");
        goto err_free;
    }
    ret = kvs_ucx_am_handler(c->worker, KVS_AM_ID, am_cb, c);
    if (ret)
        goto err_free;
    ret = kvs_ucx_connect(c->worker, &ss, true, ep_err_cb, c, &c->ep);
    if (ret)
        goto err_free;
    c->timeout_ms = p.timeout_ms ? p.timeout_ms : 10000;
    ret = client_hello(c, &p);
    if (ret)
        goto err_free;
    if ((c->limits.features & KVS_WIRE_FEAT_BULK) && c->bulk_port &&
        !getenv("KVSTASH_NO_BULK"))
        bulk_connect(c, &ss);
    c->timeout_ms = (params->field_mask & KVS_CLIENT_PARAM_TIMEOUT_MS)
                        ? p.timeout_ms
                        : 0;
    c->nslots = KVS_MAX(1u, KVS_MIN(c->limits.max_inflight, SLOTS_MAX));
    c->ready = true;
    if (getenv("KVSTASH_PRINT_EP")) { /* which UCX lanes carry what */
        ucp_ep_print_info(c->ep, stderr);
        if (c->bulk_ep)
            ucp_ep_print_info(c->bulk_ep, stderr);
    }
    *client_out = c;
    return 0;

err_free:
    kvs_client_destroy(c);
    return ret;
}

static void ep_close(kvs_client_t *c, ucp_ep_h *epp, bool force)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    ucs_status_ptr_t sp;
    uint64_t deadline = kvs_clock_mono_ns() + 2000000000ull;

    if (!*epp)
        return;
    sp = ucp_ep_close_nbx(*epp, &prm);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS &&
               kvs_clock_mono_ns() < deadline)
            ucp_worker_progress(c->worker);
        if (ucp_request_check_status(sp) == UCS_INPROGRESS)
            ucp_request_cancel(c->worker, sp);
        ucp_request_free(sp);
    }
    *epp = NULL;
}

KVS_API void kvs_client_destroy(kvs_client_t *c)
{
    if (!c)
        return;
    if (c->worker) {
        if (c->ep && !c->failed)
            kvs_client_wait(c);
        /* The bulk endpoint has no error handling: force it when the
         * daemon is gone, or a flush could wait for ever. */
        ep_close(c, &c->bulk_ep, c->failed != 0 || c->peer_gone);
        ep_close(c, &c->ep, c->failed != 0 || c->peer_gone);
        /* Let failed requests call back, so no UCX request still points
         * into this client when it is freed. */
        for (int i = 0; i < 1000 && c->inflight; i++) {
            worker_progress(c);
            run_completions(c);
        }
        ucp_worker_destroy(c->worker);
    }
    if (c->ctx)
        ucp_cleanup(c->ctx);
    for (uint32_t i = 0; i < SLOTS_MAX; i++) {
        free(c->ops[i].frame);
        free(c->ops[i].iov);
    }
    kvs_wire_scratch_destroy(c->scratch);
    free(c->stream);
    free(c);
}

/* For client_stream.c: the UCX objects and namespace of a client. */
void kvs_client_internals(kvs_client_t *c, kvs_client_internals_t *out)
{
    out->worker = c->worker;
    out->ep = c->failed || c->peer_gone ? NULL : c->ep;
    out->data_ep = c->failed || c->peer_gone ? NULL
                   : c->bulk_ep               ? c->bulk_ep
                                              : c->ep;
    out->ns = c->ns;
    out->stream = &c->stream;
    out->failed = c->failed ? c->failed : c->peer_gone ? KVS_EPEER : 0;
}

KVS_API void kvs_client_limits(const kvs_client_t *c,
                               kvs_client_limits_t *limits_out)
{
    *limits_out = c->limits;
}

KVS_API int kvs_client_progress(kvs_client_t *c)
{
    int n;

    worker_progress(c);
    n = run_completions(c);
    if (n == 0 && c->failed)
        return KVS_EPEER;
    return n;
}

KVS_API int kvs_client_progress_wait(kvs_client_t *c, int timeout_ms)
{
    int n;

    worker_progress(c);
    n = run_completions(c);
    if (n == 0 && !c->failed && c->inflight &&
        ucp_worker_arm(c->worker) == UCS_OK) {
        struct pollfd pfd = {.fd = c->efd, .events = POLLIN};

        poll(&pfd, 1, timeout_ms);
        worker_progress(c);
        n = run_completions(c);
    }
    if (n == 0 && c->failed)
        return KVS_EPEER;
    return n;
}

/* For client_stream.c, whose waits have no request in flight (so
 * kvs_client_progress_wait() would never sleep): one progress_once(), then
 * the completions it made due. Returns 1 if something happened, 0 if not,
 * or KVS_EPEER once the connection has failed. */
int kvs_client_progress_idle(kvs_client_t *c, uint64_t *idle_since)
{
    int n = progress_once(c, idle_since);

    n += run_completions(c);
    if (n)
        return 1;
    return c->failed ? KVS_EPEER : 0;
}

KVS_API int kvs_client_wait(kvs_client_t *c)
{
    uint64_t idle = 0;

    while (c->inflight) {
        progress_once(c, &idle);
        run_completions(c);
    }
    return c->failed ? KVS_EPEER : 0;
}

/* ------------------------------------------------------------------ */
/* Memory registration. */

KVS_API int kvs_client_mem_reg(kvs_client_t *c, void *buf, size_t len,
                               kvs_mr_t **mr_out)
{
    kvs_mr_t *mr;
    int ret;

    if (!buf || !len || !mr_out)
        return -EINVAL;
    mr = calloc(1, sizeof(*mr));
    if (!mr)
        return -ENOMEM;
    ret = kvs_ucx_mem_map(c->ctx, buf, len, &mr->memh);
    if (ret) {
        free(mr);
        return ret;
    }
    mr->base = buf;
    mr->len = len;
    *mr_out = mr;
    return 0;
}

KVS_API void kvs_client_mem_dereg(kvs_client_t *c, kvs_mr_t *mr)
{
    if (!mr)
        return;
    ucp_mem_unmap(c->ctx, mr->memh);
    free(mr);
}

/* ------------------------------------------------------------------ */
/* Requests. */

static int check_keys(const kvs_client_t *c, const kvs_client_key_t *keys,
                      size_t n)
{
    if (c->failed)
        return c->failed == -ETIMEDOUT ? KVS_EPEER : c->failed;
    if (n == 0 || !keys)
        return -EINVAL;
    if (n > c->limits.max_keys)
        return KVS_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].data || keys[i].len == 0)
            return -EINVAL;
        if (keys[i].len > KVS_KEY_MAX)
            return KVS_ETOOBIG;
    }
    return 0;
}

/* Keys in wire form; the frame copies them, so a stack array is enough.
 * Sized for the largest batch. */
typedef struct keyset {
    kvs_wire_bytes_t k[KVS_WIRE_KEYS_MAX];
} keyset_t;

static const kvs_wire_bytes_t *wire_keys(keyset_t *ks,
                                         const kvs_client_key_t *keys,
                                         size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ks->k[i].data = keys[i].data;
        ks->k[i].len = keys[i].len;
    }
    return ks->k;
}

KVS_API int kvs_client_match_async(kvs_client_t *c,
                                   const kvs_client_key_t *keys, size_t n,
                                   uint32_t flags, uint32_t lease_ms,
                                   uint8_t *tiers_out,
                                   kvs_client_match_result_t *result_out,
                                   kvs_client_cb_t cb, void *arg)
{
    static __thread keyset_t ks;
    kvs_wire_msg_t m;
    op_t *op;
    int ret = check_keys(c, keys, n);

    if (ret)
        return ret;
    if (!result_out || (flags & ~KVS_CLIENT_MATCH_LEASE))
        return -EINVAL;
    op = op_alloc(c, KVS_OP_MATCH);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.keys.flags = flags;
    m.u.keys.lease_ms = lease_ms;
    m.u.keys.keys = wire_keys(&ks, keys, n);
    op->n = (uint32_t)n;
    op->out.match.tiers = tiers_out;
    op->out.match.res = result_out;
    return op_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

/* Runs an async call synchronously: submit, then wait for its callback. */
typedef struct sync_wait {
    bool done;
    int status;
} sync_wait_t;

static void sync_cb(void *arg, int status)
{
    sync_wait_t *w = arg;

    w->status = status;
    w->done = true;
}

static int sync_finish(kvs_client_t *c, int submit_ret, sync_wait_t *w)
{
    if (submit_ret)
        return submit_ret;
    return op_wait(c, &w->done, &w->status);
}

KVS_API int kvs_client_match(kvs_client_t *c, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, uint32_t lease_ms,
                             uint8_t *tiers_out,
                             kvs_client_match_result_t *result_out)
{
    sync_wait_t w = {0};

    return sync_finish(c,
                       kvs_client_match_async(c, keys, n, flags, lease_ms,
                                              tiers_out, result_out, sync_cb,
                                              &w),
                       &w);
}

/* EXISTS, DELETE, PIN, UNPIN, PREFETCH share one shape. */
static int simple_keys_async(kvs_client_t *c, uint8_t opcode,
                             const kvs_client_key_t *keys, size_t n,
                             uint32_t flags, void *out, kvs_client_cb_t cb,
                             void *arg)
{
    static __thread keyset_t ks;
    kvs_wire_msg_t m;
    op_t *op;
    int ret = check_keys(c, keys, n);

    if (ret)
        return ret;
    op = op_alloc(c, opcode);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.keys.flags = flags;
    m.u.keys.keys = wire_keys(&ks, keys, n);
    op->n = (uint32_t)n;
    switch (opcode) {
    case KVS_OP_EXISTS:
        op->out.present = out;
        break;
    case KVS_OP_PREFETCH:
        op->out.promoted = out;
        break;
    default:
        op->out.status = out;
        break;
    }
    return op_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

KVS_API int kvs_client_exists_async(kvs_client_t *c,
                                    const kvs_client_key_t *keys, size_t n,
                                    uint8_t *present_out, kvs_client_cb_t cb,
                                    void *arg)
{
    if (!present_out)
        return -EINVAL;
    return simple_keys_async(c, KVS_OP_EXISTS, keys, n, 0, present_out, cb,
                             arg);
}

KVS_API int kvs_client_exists(kvs_client_t *c, const kvs_client_key_t *keys,
                              size_t n, uint8_t *present_out)
{
    sync_wait_t w = {0};

    return sync_finish(
        c, kvs_client_exists_async(c, keys, n, present_out, sync_cb, &w), &w);
}

KVS_API int kvs_client_delete(kvs_client_t *c, const kvs_client_key_t *keys,
                              size_t n, int *status_out)
{
    sync_wait_t w = {0};

    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_DELETE, keys, n, 0,
                                         status_out, sync_cb, &w),
                       &w);
}

KVS_API int kvs_client_pin(kvs_client_t *c, const kvs_client_key_t *keys,
                           size_t n, uint32_t flags, int *status_out)
{
    sync_wait_t w = {0};

    if (flags & ~KVS_CLIENT_PIN_RETAIN)
        return -EINVAL;
    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_PIN, keys, n, flags,
                                         status_out, sync_cb, &w),
                       &w);
}

KVS_API int kvs_client_unpin(kvs_client_t *c, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, int *status_out)
{
    sync_wait_t w = {0};

    if (flags & ~KVS_CLIENT_PIN_RETAIN)
        return -EINVAL;
    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_UNPIN, keys, n, flags,
                                         status_out, sync_cb, &w),
                       &w);
}

KVS_API int kvs_client_prefetch(kvs_client_t *c, const kvs_client_key_t *keys,
                                size_t n, uint64_t *promoted_out)
{
    sync_wait_t w = {0};
    uint64_t dummy;

    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_PREFETCH, keys, n, 0,
                                         promoted_out ? promoted_out : &dummy,
                                         sync_cb, &w),
                       &w);
}

/* Requests without keys: RELEASE, STAT, VERIFY. */
static int plain_sync(kvs_client_t *c, op_t *op, kvs_wire_msg_t *m)
{
    sync_wait_t w = {0};

    return sync_finish(c, op_submit(c, op, m, NULL, 0, 0, sync_cb, &w, false),
                       &w);
}

KVS_API int kvs_client_release(kvs_client_t *c, uint64_t lease_id)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!(op = op_alloc(c, KVS_OP_RELEASE)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.u.release.lease_id = lease_id;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_stat(kvs_client_t *c, kvs_client_stat_t *out,
                            size_t cap, size_t *n_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!n_out || (cap && !out))
        return -EINVAL;
    if (!(op = op_alloc(c, KVS_OP_STAT)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    op->out.stat.out = out;
    op->out.stat.cap = cap;
    op->out.stat.n_out = n_out;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_verify(kvs_client_t *c, uint64_t *checked_out,
                              uint64_t *bad_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!checked_out || !bad_out)
        return -EINVAL;
    if (!(op = op_alloc(c, KVS_OP_VERIFY)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    op->out.verify.checked = checked_out;
    op->out.verify.bad = bad_out;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_scan(kvs_client_t *c, uint64_t group, uint32_t cursor,
                            kvs_client_scan_ent_t *out, size_t cap,
                            size_t *n_out, uint32_t *next_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!out || !n_out || !next_out || cap == 0)
        return -EINVAL;
    if (!(c->limits.features & KVS_WIRE_FEAT_SCAN))
        return -ENOTSUP;
    if (!(op = op_alloc(c, KVS_OP_SCAN)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)KVS_MIN(cap, (size_t)c->limits.max_keys);
    m.u.scan.group = group;
    m.u.scan.cursor = cursor;
    op->n = m.hdr.count;
    op->out.scan.out = out;
    op->out.scan.cap = cap;
    op->out.scan.n_out = n_out;
    op->out.scan.next_out = next_out;
    return plain_sync(c, op, &m);
}

/* ---- PUT ----------------------------------------------------------- */

/* Bytes one PUT entry takes in a frame. */
static size_t put_ent_bytes(const kvs_client_put_t *it)
{
    return KVS_WIRE_PUT_ENT_FIXED + it->key.len + it->parent.len +
           4 * (size_t)it->nparts;
}

static int put_check(const kvs_client_put_t *it)
{
    if (!it->key.data || it->key.len == 0 || it->nparts == 0 || !it->parts ||
        (it->parent.len && !it->parent.data) || it->cls >= KVS_CLASS_COUNT ||
        (it->flags & ~(KVS_CLIENT_PUT_DURABLE | KVS_CLIENT_PUT_NO_DRAM)))
        return -EINVAL;
    if (it->key.len > KVS_KEY_MAX || it->parent.len > KVS_KEY_MAX ||
        it->nparts > KVS_PARTS_MAX)
        return KVS_ETOOBIG;
    for (uint32_t j = 0; j < it->nparts; j++)
        if (it->parts[j].len > UINT32_MAX || (it->parts[j].len &&
                                              !it->parts[j].base))
            return it->parts[j].base ? KVS_ETOOBIG : -EINVAL;
    return 0;
}

/* How many of items[0..n) fit one frame: inline frame size, max_keys and
 * max_payload. At least one, unless the first is too big on its own. */
static size_t put_fit(const kvs_client_t *c, const kvs_client_put_t *items,
                      size_t n, uint64_t *payload_out, size_t *niov_out)
{
    size_t bytes = KVS_WIRE_HDR_SIZE, k = 0, niov = 0;
    uint64_t payload = 0;

    for (; k < n && k < c->limits.max_keys; k++) {
        uint64_t blen = 0;

        for (uint32_t j = 0; j < items[k].nparts; j++)
            blen += items[k].parts[j].len;
        if (bytes + put_ent_bytes(&items[k]) > KVS_WIRE_INLINE_MAX ||
            payload + blen > c->limits.max_payload)
            break;
        bytes += put_ent_bytes(&items[k]);
        payload += blen;
        niov += items[k].nparts;
    }
    *payload_out = payload;
    *niov_out = niov;
    return k;
}

KVS_API int kvs_client_put_batch_async(kvs_client_t *c,
                                       kvs_client_put_t *items, size_t n,
                                       kvs_client_cb_t cb, void *arg)
{
    kvs_wire_put_ent_t ents[64];
    kvs_wire_put_ent_t *pe = ents;
    static __thread uint32_t lens[KVS_WIRE_INLINE_MAX / 4];
    kvs_wire_msg_t m;
    uint64_t payload;
    size_t niov, nl = 0, k;
    op_t *op;
    int ret;

    if (c->failed)
        return KVS_EPEER;
    if (!items || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((ret = put_check(&items[i])))
            return ret;
    k = put_fit(c, items, n, &payload, &niov);
    if (k < n)
        return KVS_ETOOBIG;
    /* An inline frame holds at most this many entries. */
    if (n > KVS_WIRE_INLINE_MAX / KVS_WIRE_PUT_ENT_FIXED)
        return KVS_ETOOBIG;
    _Static_assert(KVS_WIRE_INLINE_MAX / KVS_WIRE_PUT_ENT_FIXED <= 256,
                   "ents below must hold a full frame");
    if (n > KVS_ARRAY_SIZE(ents)) {
        pe = malloc(n * sizeof(*pe));
        if (!pe)
            return -ENOMEM;
    }
    op = op_alloc(c, KVS_OP_PUT);
    if (!op) {
        if (pe != ents)
            free(pe);
        return c->failed ? KVS_EPEER : -ENOMEM;
    }
    if (op->iov_cap < niov) {
        ucp_dt_iov_t *iov = realloc(op->iov, niov * sizeof(*iov));

        if (!iov) {
            op_abort(c, op);
            if (pe != ents)
                free(pe);
            return -ENOMEM;
        }
        op->iov = iov;
        op->iov_cap = niov;
    }
    niov = 0;
    for (size_t i = 0; i < n; i++) {
        const kvs_client_put_t *it = &items[i];

        memset(&pe[i], 0, sizeof(pe[i]));
        pe[i].key.data = it->key.data;
        pe[i].key.len = it->key.len;
        pe[i].parent.data = it->parent.data;
        pe[i].parent.len = it->parent.len;
        pe[i].cls = it->cls;
        pe[i].elem_size = it->elem_size;
        pe[i].flags = it->flags;
        pe[i].ttl_ms = it->ttl_ms;
        pe[i].group = it->group;
        pe[i].nparts = it->nparts;
        pe[i].part_lens = &lens[nl];
        for (uint32_t j = 0; j < it->nparts; j++) {
            lens[nl++] = (uint32_t)it->parts[j].len;
            if (it->parts[j].len) {
                op->iov[niov].buffer = (void *)it->parts[j].base;
                op->iov[niov].length = it->parts[j].len;
                niov++;
            }
        }
        items[i].status = 0;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.count = (uint32_t)n;
    m.u.put.ents = pe;
    op->n = (uint32_t)n;
    op->out.put = items;
    if (niov == 1) {
        ret = op_submit(c, op, &m, op->iov[0].buffer, op->iov[0].length, 0, cb,
                        arg, false);
    } else if (niov == 0) {
        static const uint8_t none;
        ret = op_submit(c, op, &m, &none, 0, 0, cb, arg, false);
    } else {
        ret = op_submit(c, op, &m, NULL, payload, niov, cb, arg, false);
    }
    if (pe != ents)
        free(pe);
    return ret;
}

KVS_API int kvs_client_put_batch(kvs_client_t *c, kvs_client_put_t *items,
                                 size_t n)
{
    int first = 0;
    size_t done = 0;

    if (!items || n == 0)
        return -EINVAL;
    while (done < n) {
        uint64_t payload;
        size_t niov, k = put_fit(c, items + done, n - done, &payload, &niov);
        sync_wait_t w = {0};
        int ret;

        if (c->failed)
            return KVS_EPEER;
        if (k == 0) {
            /* One block larger than a frame or a payload allows. */
            items[done].status = KVS_ETOOBIG;
            if (!first)
                first = KVS_ETOOBIG;
            done++;
            continue;
        }
        ret = sync_finish(
            c, kvs_client_put_batch_async(c, items + done, k, sync_cb, &w), &w);
        if (ret && !first)
            first = ret;
        done += k;
    }
    return first;
}

KVS_API int kvs_client_put(kvs_client_t *c, const void *key, uint32_t key_len,
                           const void *buf, size_t len, uint32_t flags)
{
    kvs_iov_t part = {.base = buf, .len = len};
    kvs_client_put_t it = {
        .key = {.data = key, .len = key_len},
        .parts = &part,
        .nparts = 1,
        .flags = flags,
    };

    return kvs_client_put_batch(c, &it, 1);
}

/* ---- GET ----------------------------------------------------------- */

static size_t get_frame_bytes(const kvs_client_get_t *items, size_t n)
{
    size_t b = KVS_WIRE_HDR_SIZE + KVS_WIRE_GET_FIXED;

    for (size_t i = 0; i < n; i++)
        b += KVS_WIRE_GET_ENT_FIXED + 1 + items[i].key.len;
    return b;
}

KVS_API int kvs_client_get_batch_async(kvs_client_t *c,
                                       kvs_client_get_t *items, size_t n,
                                       uint64_t lease_id, kvs_client_cb_t cb,
                                       void *arg)
{
    static __thread kvs_wire_get_ent_t ents[KVS_WIRE_KEYS_MAX];
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!items || n == 0)
        return -EINVAL;
    if (n > c->limits.max_keys ||
        get_frame_bytes(items, n) > KVS_WIRE_HDR_SIZE + c->max_body)
        return KVS_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].key.data || !items[i].key.len ||
            (items[i].cap && !items[i].buf))
            return -EINVAL;
        if (items[i].key.len > KVS_KEY_MAX)
            return KVS_ETOOBIG;
    }
    op = op_alloc(c, KVS_OP_GET);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ents[i].key.data = items[i].key.data;
        ents[i].key.len = items[i].key.len;
        ents[i].cap = items[i].cap;
        items[i].status = 0;
        items[i].len = 0;
        items[i].nparts = 0;
        items[i].tier = KVS_TIER_NONE;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.get.lease_id = lease_id;
    m.u.get.ents = ents;
    op->n = (uint32_t)n;
    op->out.get = items;
    return op_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

static int get_first_error(const kvs_client_get_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status)
            return items[i].status;
    return 0;
}

KVS_API int kvs_client_get_batch(kvs_client_t *c, kvs_client_get_t *items,
                                 size_t n, uint64_t lease_id)
{
    int first = 0;
    size_t done = 0;

    if (!items || n == 0)
        return -EINVAL;
    while (done < n) {
        size_t k = KVS_MIN(n - done, (size_t)c->limits.max_keys);
        sync_wait_t w = {0};
        int ret;

        while (k > 1 && get_frame_bytes(items + done, k) >
                            KVS_WIRE_HDR_SIZE + c->max_body)
            k /= 2;
        /* The lease ends with the first frame that names it. */
        ret = sync_finish(c,
                          kvs_client_get_batch_async(c, items + done, k,
                                                     done ? 0 : lease_id,
                                                     sync_cb, &w),
                          &w);
        if (ret && !first)
            first = ret;
        if (!ret && !first)
            first = get_first_error(items + done, k);
        if (c->failed)
            return first ? first : KVS_EPEER;
        done += k;
    }
    return first;
}

KVS_API int kvs_client_get(kvs_client_t *c, const void *key, uint32_t key_len,
                           void *buf, size_t cap, size_t *len_out)
{
    kvs_client_get_t it = {
        .key = {.data = key, .len = key_len},
        .buf = buf,
        .cap = cap,
    };
    int ret = kvs_client_get_batch(c, &it, 1, 0);

    if ((ret == 0 || ret == -ENOBUFS) && len_out)
        *len_out = it.len;
    return ret;
}
