/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bad input from the network: a raw UCX client sends frames that break the
 * protocol (truncated, lengths past the limits, unknown opcodes, a wrong
 * version, bad magic, a bad token, keys over 64 bytes, requests before the
 * handshake, a PUT whose payload disagrees with its frame). Each one gets an
 * error reply, and the fatal ones a clean close as well; after every one a
 * well-behaved client, connected all along, still puts and gets.
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ucp/api/ucp.h>

#include "kvstash/wire.h"
#include "transport/proto/ucx.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define AM_ID KVS_AM_ID /* the one id, transport/proto/ucx.h */

typedef struct raw {
    ucp_context_h ctx;
    ucp_worker_h w;
    ucp_ep_h ep;
    bool closed;
    bool got;
    size_t len;
    uint8_t frame[1 << 16];
} raw_t;

static ucs_status_t raw_am(void *arg, const void *hdr, size_t hlen, void *data,
                           size_t len, const ucp_am_recv_param_t *prm)
{
    raw_t *r = arg;

    (void)hdr;
    (void)hlen;
    if (!(prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) && len <= sizeof(r->frame)) {
        memcpy(r->frame, data, len);
        r->len = len;
        r->got = true;
    }
    return UCS_OK;
}

static void raw_err(void *arg, ucp_ep_h ep, ucs_status_t st)
{
    (void)ep;
    (void)st;
    ((raw_t *)arg)->closed = true;
}

static void raw_connect_mode(raw_t *r, uint16_t port, ucp_err_handling_mode_t mode)
{
    ucp_params_t up = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                       .features = UCP_FEATURE_AM};
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    ucp_am_handler_param_t ap = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                      UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = AM_ID, .cb = raw_am, .arg = r};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    ucp_ep_params_t ep = {0};

    memset(r, 0, sizeof(*r));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(ucp_init(&up, NULL, &r->ctx) == UCS_OK);
    CHECK(ucp_worker_create(r->ctx, &wp, &r->w) == UCS_OK);
    CHECK(ucp_worker_set_am_recv_handler(r->w, &ap) == UCS_OK);
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = (struct sockaddr *)&sa;
    ep.sockaddr.addrlen = sizeof(sa);
    ep.err_mode = mode;
    ep.err_handler.cb = raw_err;
    ep.err_handler.arg = r;
    CHECK(ucp_ep_create(r->w, &ep, &r->ep) == UCS_OK);
}

static void raw_connect(raw_t *r, uint16_t port)
{
    raw_connect_mode(r, port, UCP_ERR_HANDLING_MODE_PEER);
}

static void raw_close(raw_t *r)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t sp = ucp_ep_close_nbx(r->ep, &p);

    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS)
            ucp_worker_progress(r->w);
        ucp_request_free(sp);
    }
    ucp_worker_destroy(r->w);
    ucp_cleanup(r->ctx);
}

/* Sends raw bytes: the frame as AM data (or AM header when payload), then
 * waits for the reply. Returns the reply's status. */
static int raw_send(raw_t *r, const void *frame, size_t flen,
                    const void *payload, size_t plen, bool rndv)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_AM_SEND_FLAG_REPLY |
                                      (rndv ? UCP_AM_SEND_FLAG_RNDV
                                            : UCP_AM_SEND_FLAG_EAGER)};
    ucs_status_ptr_t sp;
    kvs_wire_hdr_t h;
    kvs_wire_limits_t lim;

    r->got = false;
    if (payload)
        sp = ucp_am_send_nbx(r->ep, AM_ID, frame, flen, payload, plen, &p);
    else
        sp = ucp_am_send_nbx(r->ep, AM_ID, NULL, 0, frame, flen, &p);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS && !r->closed)
            ucp_worker_progress(r->w);
        ucp_request_free(sp);
    }
    while (!r->got && !r->closed)
        ucp_worker_progress(r->w);
    CHECK(r->got); /* an error reply comes before any close */
    /* Read the header by hand: a reply to an unknown opcode echoes it,
     * which the strict decoder would refuse. */
    kvs_wire_limits_default(&lim);
    (void)kvs_wire_decode_hdr(r->frame, r->len, &lim, &h);
    CHECK(r->len >= KVS_WIRE_HDR_SIZE);
    CHECK_EQ(h.magic, KVS_WIRE_MAGIC);
    CHECK(h.flags & KVS_WIRE_F_REPLY);
    return h.status;
}

static void wait_closed(raw_t *r)
{
    while (!r->closed)
        ucp_worker_progress(r->w);
}

static size_t enc(void *buf, size_t cap, kvs_wire_msg_t *m)
{
    size_t len = 0;

    CHECK_EQ(kvs_wire_encode(m, buf, cap, &len), 0);
    return len;
}

static size_t hello(uint8_t *buf, const char *token)
{
    kvs_wire_msg_t m;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_HELLO;
    m.hdr.req_id = 1;
    m.u.hello.features = KVS_WIRE_FEAT_ALL;
    m.u.hello.ns.data = (const uint8_t *)"ns";
    m.u.hello.ns.len = 2;
    m.u.hello.token.data = (const uint8_t *)token;
    m.u.hello.token.len = (uint32_t)strlen(token);
    return enc(buf, 4096, &m);
}

static size_t exists_frame(uint8_t *buf, const char *key)
{
    kvs_wire_msg_t m;
    kvs_wire_bytes_t k = {(const uint8_t *)key, (uint32_t)strlen(key)};

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_EXISTS;
    m.hdr.req_id = 2;
    m.hdr.count = 1;
    m.u.keys.keys = &k;
    return enc(buf, 4096, &m);
}

/* A frame on a fresh connection, answered with status and then closed. */
static void refused(raw_t *r, uint16_t port, const uint8_t *frame,
                    size_t len, int status)
{
    raw_connect(r, port);
    CHECK_EQ(raw_send(r, frame, len, NULL, 0, false), status);
    wait_closed(r);
    raw_close(r);
}

/* The well-behaved client, after each bad input. */
static void still_serving(kvs_client_t *good, int round)
{
    char val[32], back[32];
    size_t len = 0;

    snprintf(val, sizeof(val), "value-%d", round);
    CHECK_EQ(kvs_client_put(good, "good-key", 8, val, strlen(val), 0), 0);
    CHECK_EQ(kvs_client_get(good, "good-key", 8, back, sizeof(back), &len), 0);
    CHECK(len == strlen(val) && memcmp(back, val, len) == 0);
}

int main(void)
{
    static uint8_t buf[1 << 18];
    kvs_e2e_daemon_t d;
    kvs_client_t *good;
    kvs_wire_msg_t sm;
    raw_t r;
    size_t len;
    int round = 0;

    kvs_e2e_daemon_init(&d, "e2e_badinput");
    kvs_e2e_write_config(&d, "[tenant.t]\ntoken = right\nnamespaces = ns\n");
    kvs_e2e_daemon_start(&d, NULL);
    good = kvs_e2e_connect(&d, "ns", "right");
    still_serving(good, round++);

    /* A bad token: KVS_EAUTH, then the daemon closes. */
    raw_connect(&r, d.port);
    len = hello(buf, "wrong");
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EAUTH);
    wait_closed(&r);
    raw_close(&r);
    still_serving(good, round++);

    /* A request before HELLO. */
    raw_connect(&r, d.port);
    len = exists_frame(buf, "k");
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EAUTH);
    wait_closed(&r);
    raw_close(&r);
    still_serving(good, round++);

    /* A stream opcode before HELLO: the same as any request. */
    memset(&sm, 0, sizeof(sm));
    sm.hdr.opcode = KVS_OP_SPUT_SEAL;
    sm.hdr.req_id = 3;
    refused(&r, d.port, buf, enc(buf, 4096, &sm), KVS_EAUTH);
    still_serving(good, round++);

    /* The peer form of HELLO, on a daemon with no peer secret: refused. */
    memset(&sm, 0, sizeof(sm));
    sm.hdr.opcode = KVS_OP_HELLO;
    sm.hdr.req_id = 1;
    sm.u.hello.features = KVS_WIRE_FEAT_PEER | KVS_WIRE_FEAT_STREAM;
    sm.u.hello.token.data = (const uint8_t *)"right";
    sm.u.hello.token.len = 5;
    refused(&r, d.port, buf, enc(buf, 4096, &sm), KVS_EAUTH);
    still_serving(good, round++);

    /* A version the daemon does not speak. */
    raw_connect(&r, d.port);
    len = hello(buf, "right");
    buf[4] = 9;
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EPROTO_VERSION);
    wait_closed(&r);
    raw_close(&r);
    still_serving(good, round++);

    /* Bad magic. */
    raw_connect(&r, d.port);
    len = hello(buf, "right");
    buf[0] ^= 0x55;
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EPROTO);
    wait_closed(&r);
    raw_close(&r);
    still_serving(good, round++);

    /* After a good handshake, errors are answered and the connection
     * stays usable. */
    raw_connect(&r, d.port);
    len = hello(buf, "right");
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), 0);
    /* A BIND with the wrong secret on the bulk port is refused (answered on
     * the control endpoint) and its endpoint closed. */
    {
        kvs_wire_msg_t m, hr;
        kvs_wire_limits_t lim;
        kvs_wire_scratch_t *sc = kvs_wire_scratch_create();
        raw_t *b = calloc(1, sizeof(*b));

        kvs_wire_limits_default(&lim);
        CHECK(sc && b);
        CHECK_EQ(kvs_wire_decode(r.frame, r.len, 0, &lim, sc, &hr), 0);
        CHECK(hr.u.hello_rep.bulk_port != 0);
        /* As libkvstash does: no peer error handling on a bulk endpoint. */
        raw_connect_mode(b, (uint16_t)hr.u.hello_rep.bulk_port,
                         UCP_ERR_HANDLING_MODE_NONE);
        memset(&m, 0, sizeof(m));
        m.hdr.opcode = KVS_OP_BIND;
        m.hdr.req_id = 77;
        m.u.bind.session = hr.u.hello_rep.session;
        m.u.bind.secret = hr.u.hello_rep.bind_secret ^ 1;
        len = enc(buf, 4096, &m);
        r.got = false;
        {
            ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                     .flags = UCP_AM_SEND_FLAG_REPLY |
                                              UCP_AM_SEND_FLAG_EAGER};
            ucs_status_ptr_t sp = ucp_am_send_nbx(b->ep, AM_ID, NULL, 0, buf,
                                                  len, &p);

            if (UCS_PTR_IS_PTR(sp)) {
                while (ucp_request_check_status(sp) == UCS_INPROGRESS)
                    ucp_worker_progress(b->w);
                ucp_request_free(sp);
            }
        }
        while (!r.got) {
            ucp_worker_progress(r.w);
            ucp_worker_progress(b->w);
        }
        CHECK_EQ((int32_t)(r.frame[20] | r.frame[21] << 8 | r.frame[22] << 16 |
                           (uint32_t)r.frame[23] << 24), KVS_EAUTH);
        /* The daemon force-closes that bulk endpoint; a peer without a
         * keepalive may not hear of it, so do not wait for it. */
        raw_close(b);
        free(b);
        kvs_wire_scratch_destroy(sc);
    }
    still_serving(good, round++);
    CHECK(kvs_e2e_stat(good, "bulk_endpoints_bound") >= 1);
    /* Truncated: body_len says more than arrived. */
    len = exists_frame(buf, "abc");
    CHECK_EQ(raw_send(&r, buf, len - 2, NULL, 0, false), KVS_EPROTO);
    still_serving(good, round++);
    /* body_len past the daemon's limit (a 200 KiB body). */
    len = exists_frame(buf, "abc");
    memset(buf + len, 0, (200u << 10));
    buf[16] = 0;
    buf[17] = 0x20;
    buf[18] = 0x03; /* 0x032000 = 204800 */
    CHECK_EQ(raw_send(&r, buf, 32 + 204800, NULL, 0, false), KVS_ETOOBIG);
    still_serving(good, round++);
    /* Unknown opcode. */
    len = exists_frame(buf, "abc");
    buf[5] = 99;
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EPROTO);
    CHECK_EQ(r.frame[5], 99); /* the reply names the opcode it refuses */
    still_serving(good, round++);
    /* A key of 65 bytes. */
    {
        char k65[66];

        memset(k65, 'k', 64);
        k65[64] = '\0';
        len = exists_frame(buf, k65);
        buf[32] = 65;
        buf[len] = 'k';
        buf[16]++;
        CHECK_EQ(raw_send(&r, buf, len + 1, NULL, 0, false), KVS_ETOOBIG);
    }
    still_serving(good, round++);
    /* A count that the body does not hold. */
    len = exists_frame(buf, "abc");
    buf[24] = 7;
    CHECK_EQ(raw_send(&r, buf, len, NULL, 0, false), KVS_EPROTO);
    still_serving(good, round++);
    /* A PUT whose payload is longer than its parts say. */
    {
        kvs_wire_msg_t m;
        uint32_t plen = 10;
        kvs_wire_put_ent_t pe = {
            .key = {(const uint8_t *)"pk", 2}, .nparts = 1, .part_lens = &plen};
        static uint8_t payload[20000];

        memset(&m, 0, sizeof(m));
        m.hdr.opcode = KVS_OP_PUT;
        m.hdr.flags = KVS_WIRE_F_PAYLOAD;
        m.hdr.req_id = 5;
        m.hdr.count = 1;
        m.u.put.ents = &pe;
        len = enc(buf, 4096, &m);
        CHECK_EQ(raw_send(&r, buf, len, payload, 11, false), KVS_EPROTO);
        /* The same by rendezvous: refused before any byte is pulled. */
        CHECK_EQ(raw_send(&r, buf, len, payload, sizeof(payload), true),
                 KVS_EPROTO);
        /* And a correct one still works on this connection. */
        CHECK_EQ(raw_send(&r, buf, len, payload, 10, false), 0);
    }
    still_serving(good, round++);
    /* A frame shorter than a header: answered, then closed. */
    CHECK_EQ(raw_send(&r, buf, 10, NULL, 0, false), KVS_EPROTO);
    wait_closed(&r);
    raw_close(&r);
    still_serving(good, round++);

    CHECK(kvs_e2e_stat(good, "bad_frames") >= 9);
    CHECK_EQ(kvs_e2e_stat(good, "connections"), 1);
    kvs_client_destroy(good);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_badinput: ok (%d rounds)\n", round);
    return 0;
}
