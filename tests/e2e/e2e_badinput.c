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
#include "tests/e2e/raw.h"
#include "tests/testutil.h"

static void wait_closed(raw_t *r)
{
    raw_wait_closed(r);
}

static size_t enc(void *buf, size_t cap, kvs_wire_msg_t *m)
{
    return raw_enc(buf, cap, m);
}

static size_t hello(uint8_t *buf, const char *token)
{
    return raw_hello(buf, 1, token, "ns", KVS_WIRE_FEAT_ALL);
}

static size_t exists_frame(uint8_t *buf, const char *key)
{
    return raw_keys(buf, KVS_OP_EXISTS, 2, key);
}

/* A frame on a fresh connection, answered with status and then closed. */
static void refused(raw_t *r, uint16_t port, const uint8_t *frame, size_t len,
                    int status)
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
    /* An operator: the counters below are store-wide. */
    kvs_e2e_write_config(&d, "[tenant.t]\ntoken = right\nnamespaces = ns\n"
                             "operator = true\n");
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
     * that bulk endpoint) and its endpoint closed. */
    {
        kvs_wire_msg_t m, hr;
        kvs_wire_hdr_t h;
        raw_t *b = calloc(1, sizeof(*b));

        CHECK(b);
        raw_hello_reply(&r, &hr);
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
        /* Answered on the bulk endpoint it came on (e2e_bind). */
        CHECK_EQ(raw_send(b, buf, len, NULL, 0, false), KVS_EAUTH);
        CHECK_EQ(raw_last(b)->bytes[8], 77);
        CHECK(!raw_pop(&r, &h, NULL));
        /* The daemon force-closes that bulk endpoint; a peer without a
         * keepalive may not hear of it, so do not wait for it. */
        raw_close(b);
        free(b);
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
    CHECK_EQ(raw_last(&r)->bytes[5],
             99); /* the reply names the opcode it refuses */
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
