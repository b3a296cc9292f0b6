/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The raw UCX client of the end-to-end tests (raw.h): one context, worker
 * and endpoint per raw_t, the one AM id of the protocol, and a bounded
 * queue of the frames the daemon sends. Kept out of the e2e_*.c glob so
 * that it is linked into every test, not run as one.
 */
#include "tests/e2e/raw.h"

#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "transport/proto/ucx.h"
#include "tests/e2e/e2e.h"

/* The queue is a ring of RAW_QUEUE - 1 slots; the last slot keeps the
 * reply raw_send returned. */
static raw_frame_t *last_reply(raw_t *r)
{
    return &r->q[RAW_QUEUE - 1];
}

static ucs_status_t raw_am(void *arg, const void *hdr, size_t hlen, void *data,
                           size_t len, const ucp_am_recv_param_t *prm)
{
    raw_t *r = arg;
    bool rndv = prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
    const void *frame = hlen ? hdr : data;
    size_t flen = hlen ? hlen : len;
    raw_frame_t *f;

    r->received++;
    CHECK(r->tail - r->head < RAW_QUEUE - 1); /* the last slot: raw_send's */
    CHECK(flen <= RAW_FRAME_MAX);
    f = &r->q[r->tail++ % (RAW_QUEUE - 1)];
    memcpy(f->bytes, frame, flen);
    f->len = flen;
    f->rndv = rndv;
    if (rndv) {
        CHECK(r->rndv_held < RAW_HELD_MAX);
        r->held[r->rndv_held++] = data;
        return UCS_INPROGRESS; /* never pulled: held until raw_close */
    }
    return UCS_OK;
}

static void raw_err(void *arg, ucp_ep_h ep, ucs_status_t st)
{
    (void)ep;
    (void)st;
    ((raw_t *)arg)->closed = true;
}

ucp_ep_h raw_ep_create(ucp_worker_h w, uint16_t port,
                       ucp_err_handling_mode_t mode, ucp_err_handler_cb_t cb,
                       void *arg)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    ucp_ep_params_t ep = {0};
    ucp_ep_h h = NULL;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = (struct sockaddr *)&sa;
    ep.sockaddr.addrlen = sizeof(sa);
    ep.err_mode = mode;
    ep.err_handler.cb = cb;
    ep.err_handler.arg = arg;
    CHECK(ucp_ep_create(w, &ep, &h) == UCS_OK);
    return h;
}

void raw_connect_mode(raw_t *r, uint16_t port, ucp_err_handling_mode_t mode)
{
    ucp_params_t up = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                       .features = UCP_FEATURE_AM};
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    ucp_am_handler_param_t ap = {.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                                               UCP_AM_HANDLER_PARAM_FIELD_CB |
                                               UCP_AM_HANDLER_PARAM_FIELD_ARG,
                                 .id = KVS_AM_ID,
                                 .cb = raw_am,
                                 .arg = r};

    memset(r, 0, sizeof(*r));
    r->q = calloc(RAW_QUEUE, sizeof(*r->q));
    CHECK(r->q);
    CHECK(ucp_init(&up, NULL, &r->ctx) == UCS_OK);
    CHECK(ucp_worker_create(r->ctx, &wp, &r->w) == UCS_OK);
    CHECK(ucp_worker_set_am_recv_handler(r->w, &ap) == UCS_OK);
    r->ep = raw_ep_create(r->w, port, mode, raw_err, r);
}

void raw_connect(raw_t *r, uint16_t port)
{
    raw_connect_mode(r, port, UCP_ERR_HANDLING_MODE_PEER);
}

void raw_close(raw_t *r)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t sp;

    for (unsigned i = 0; i < r->rndv_held; i++)
        ucp_am_data_release(r->w, r->held[i]);
    r->rndv_held = 0;
    sp = ucp_ep_close_nbx(r->ep, &p);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS)
            ucp_worker_progress(r->w);
        ucp_request_free(sp);
    }
    ucp_worker_destroy(r->w);
    ucp_cleanup(r->ctx);
    free(r->q);
    r->q = NULL;
}

void raw_progress(raw_t *r)
{
    ucp_worker_progress(r->w);
}

void raw_post(raw_t *r, const void *frame, size_t flen, const void *payload,
              size_t plen, bool rndv)
{
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY |
                 (rndv ? UCP_AM_SEND_FLAG_RNDV : UCP_AM_SEND_FLAG_EAGER)};
    ucs_status_ptr_t sp;

    if (payload)
        sp = ucp_am_send_nbx(r->ep, KVS_AM_ID, frame, flen, payload, plen, &p);
    else
        sp = ucp_am_send_nbx(r->ep, KVS_AM_ID, NULL, 0, frame, flen, &p);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS && !r->closed)
            ucp_worker_progress(r->w);
        ucp_request_free(sp);
    }
}

bool raw_wait(raw_t *r)
{
    while (r->head == r->tail && !r->closed)
        ucp_worker_progress(r->w);
    return r->head != r->tail;
}

static void hdr_by_hand(const uint8_t *b, size_t len, kvs_wire_hdr_t *h)
{
    kvs_wire_limits_t lim;

    memset(h, 0, sizeof(*h));
    kvs_wire_limits_default(&lim);
    (void)kvs_wire_decode_hdr(b, len, &lim, h);
    if (len >= KVS_WIRE_HDR_SIZE) {
        /* What the strict decoder may refuse (an unknown opcode echoed). */
        memcpy(&h->magic, b, 4);
        h->opcode = b[5];
        memcpy(&h->flags, b + 6, 2);
        memcpy(&h->req_id, b + 8, 8);
        memcpy(&h->body_len, b + 16, 4);
        memcpy(&h->status, b + 20, 4);
        memcpy(&h->count, b + 24, 4);
    }
}

bool raw_pop(raw_t *r, kvs_wire_hdr_t *h, raw_frame_t **frame)
{
    raw_frame_t *f;

    if (r->head == r->tail)
        return false;
    f = &r->q[r->head++ % (RAW_QUEUE - 1)];
    hdr_by_hand(f->bytes, f->len, h);
    if (frame)
        *frame = f;
    return true;
}

int raw_send(raw_t *r, const void *frame, size_t flen, const void *payload,
             size_t plen, bool rndv)
{
    kvs_wire_hdr_t h;
    raw_frame_t *f;

    raw_post(r, frame, flen, payload, plen, rndv);
    for (;;) {
        CHECK(raw_wait(r)); /* an error reply comes before any close */
        CHECK(raw_pop(r, &h, &f));
        if (h.opcode != KVS_OP_DATA || (h.flags & KVS_WIRE_F_REPLY))
            break; /* a reply, even one refusing a DATA */
    }
    CHECK(f->len >= KVS_WIRE_HDR_SIZE);
    CHECK_EQ(h.magic, KVS_WIRE_MAGIC);
    CHECK(h.flags & KVS_WIRE_F_REPLY);
    memcpy(last_reply(r), f, sizeof(*f));
    return h.status;
}

const raw_frame_t *raw_last(const raw_t *r)
{
    return &r->q[RAW_QUEUE - 1];
}

void raw_wait_closed(raw_t *r)
{
    while (!r->closed)
        ucp_worker_progress(r->w);
}

size_t raw_enc(void *buf, size_t cap, kvs_wire_msg_t *m)
{
    size_t len = 0;

    CHECK_EQ(kvs_wire_encode(m, buf, cap, &len), 0);
    return len;
}

size_t raw_hello(uint8_t *buf, uint64_t req_id, const char *token,
                 const char *ns, uint32_t features)
{
    kvs_wire_msg_t m;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_HELLO;
    m.hdr.req_id = req_id;
    m.u.hello.features = features;
    m.u.hello.ns.data = (const uint8_t *)ns;
    m.u.hello.ns.len = (uint32_t)strlen(ns);
    m.u.hello.token.data = (const uint8_t *)token;
    m.u.hello.token.len = (uint32_t)strlen(token);
    return raw_enc(buf, 4096, &m);
}

size_t raw_keys(uint8_t *buf, unsigned opcode, uint64_t req_id, const char *key)
{
    kvs_wire_msg_t m;
    kvs_wire_bytes_t k = {(const uint8_t *)key, (uint32_t)strlen(key)};

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = (uint8_t)opcode;
    m.hdr.req_id = req_id;
    m.hdr.count = 1;
    m.u.keys.keys = &k;
    return raw_enc(buf, 4096, &m);
}

void raw_decode(const raw_frame_t *f, kvs_wire_msg_t *out)
{
    static kvs_wire_scratch_t *sc;
    kvs_wire_limits_t lim;

    if (!sc)
        sc = kvs_wire_scratch_create();
    CHECK(sc);
    kvs_wire_limits_default(&lim);
    CHECK_EQ(kvs_wire_decode(f->bytes, f->len, 0, &lim, sc, out), 0);
}

void raw_hello_reply(const raw_t *r, kvs_wire_msg_t *out)
{
    raw_decode(raw_last(r), out);
    CHECK_EQ(out->hdr.opcode, KVS_OP_HELLO);
    CHECK_EQ(out->hdr.status, 0);
}
