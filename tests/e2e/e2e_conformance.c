/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The conformance table of docs/protocol.md (§10), walked row by row: each
 * row is one request in one connection state, the status its reply must
 * carry, and whether the daemon must then close the connection. Every row
 * runs on a fresh raw connection (after a HELLO with the row's features,
 * unless the row is about what comes before HELLO); a row that leaves the
 * connection open is followed by an EXISTS that must succeed on it. The
 * rows here and the table in the document are the same list: change both.
 */
#include <errno.h>
#include <string.h>

#include "kvstash/wire.h"
#include "tests/e2e/e2e.h"
#include "tests/e2e/raw.h"

enum state { PRE, AUTH, NOFEAT }; /* before HELLO; after; after, no features */

typedef size_t (*build_fn)(uint8_t *buf);

typedef struct row {
    const char *what;
    enum state state;
    build_fn build;
    const uint8_t *payload; /* PUT rows: the payload, plen bytes */
    size_t plen;
    int status;
    bool closed;
} row_t;

static uint8_t payload10[10];

/* A request of opcode op, req_id 9, all else zero. */
static void req(kvs_wire_msg_t *m, unsigned op)
{
    memset(m, 0, sizeof(*m));
    m->hdr.opcode = (uint8_t)op;
    m->hdr.req_id = 9;
}

static size_t b_hello(uint8_t *buf)
{
    return raw_hello(buf, 9, "tok", "ns", KVS_WIRE_FEAT_ALL);
}
static size_t b_hello_badtok(uint8_t *buf)
{
    return raw_hello(buf, 9, "wrong", "ns", 0);
}
static size_t b_hello_version(uint8_t *buf)
{
    size_t n = b_hello(buf);

    buf[4] = 1;
    return n;
}
static size_t b_hello_elem(uint8_t *buf)
{
    size_t n = b_hello(buf);

    buf[KVS_WIRE_HDR_SIZE + 4] = 200; /* elem_size */
    return n;
}
static size_t b_hello_nul(uint8_t *buf)
{
    size_t n = raw_hello(buf, 9, "tok", "nX", 0);

    buf[n - 1] = 0; /* the namespace is last */
    return n;
}
static size_t b_exists(uint8_t *buf)
{
    return raw_keys(buf, KVS_OP_EXISTS, 9, "k");
}
static size_t b_magic(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[0] ^= 0x55;
    return n;
}
static size_t b_short(uint8_t *buf)
{
    b_exists(buf);
    return 10;
}
static size_t b_unknown_op(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[5] = 99;
    return n;
}
static size_t b_unknown_flag(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[6] |= 0x80;
    return n;
}
static size_t b_reply_flag(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[6] |= KVS_WIRE_F_REPLY;
    return n;
}
static size_t b_truncated(uint8_t *buf)
{
    return b_exists(buf) - 1; /* body_len says one byte more */
}
static size_t b_body_huge(uint8_t *buf)
{
    size_t n = b_exists(buf);

    memset(buf + 16, 0xff, 4);
    return n;
}
static size_t b_count0(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[24] = 0;
    return n;
}
static size_t b_count1025(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[24] = 0x01;
    buf[25] = 0x04; /* 1025 */
    return n;
}
static size_t b_key0(uint8_t *buf)
{
    size_t n = b_exists(buf);

    buf[KVS_WIRE_HDR_SIZE] = 0; /* key_len 0, one trailing byte */
    return n;
}
static size_t b_key65(uint8_t *buf)
{
    size_t n = raw_keys(buf, KVS_OP_EXISTS, 9, "k");

    buf[KVS_WIRE_HDR_SIZE] = 65;
    memset(buf + n - 1, 'k', 65);
    buf[16] = 1 + 65; /* body_len */
    return KVS_WIRE_HDR_SIZE + 1 + 65;
}
static size_t b_data(uint8_t *buf)
{
    kvs_wire_msg_t m;
    uint32_t pl = 10;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_DATA;
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.req_id = 9;
    m.u.data.len = 10;
    m.u.data.nparts = 1;
    m.u.data.part_lens = &pl;
    return raw_enc(buf, 4096, &m);
}
static size_t b_bind(uint8_t *buf)
{
    kvs_wire_msg_t m;

    req(&m, KVS_OP_BIND);
    return raw_enc(buf, 4096, &m);
}
static size_t b_release(uint8_t *buf)
{
    kvs_wire_msg_t m;

    req(&m, KVS_OP_RELEASE);
    m.u.release.lease_id = 12345;
    return raw_enc(buf, 4096, &m);
}
static size_t b_stat(uint8_t *buf)
{
    kvs_wire_msg_t m;

    req(&m, KVS_OP_STAT);
    return raw_enc(buf, 4096, &m);
}
static size_t b_verify(uint8_t *buf)
{
    size_t n = b_stat(buf);

    buf[5] = KVS_OP_VERIFY;
    return n;
}
static size_t b_scan(uint8_t *buf)
{
    kvs_wire_msg_t m;

    req(&m, KVS_OP_SCAN);
    m.hdr.count = 4;
    return raw_enc(buf, 4096, &m);
}
static size_t b_prefetch(uint8_t *buf)
{
    return raw_keys(buf, KVS_OP_PREFETCH, 9, "k");
}
static size_t b_match_lease(uint8_t *buf)
{
    kvs_wire_msg_t m;
    kvs_wire_bytes_t k = {(const uint8_t *)"k", 1};

    req(&m, KVS_OP_MATCH);
    m.hdr.count = 1;
    m.u.keys.flags = KVS_WIRE_MATCH_LEASE;
    m.u.keys.keys = &k;
    return raw_enc(buf, 4096, &m);
}
static size_t put_frame(uint8_t *buf, uint8_t cls, uint64_t ttl)
{
    static uint32_t pl = 10;
    kvs_wire_put_ent_t pe = {.key = {(const uint8_t *)"pk", 2},
                             .cls = cls,
                             .ttl_ms = ttl,
                             .nparts = 1,
                             .part_lens = &pl};
    kvs_wire_msg_t m;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_PUT;
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.req_id = 9;
    m.hdr.count = 1;
    m.u.put.ents = &pe;
    return raw_enc(buf, 4096, &m);
}
static size_t b_put(uint8_t *buf)
{
    return put_frame(buf, 0, 0);
}
/* A well-formed PUT whose frame is over 4608 bytes: two entries of 600
 * one-byte parts (payload1200). */
static uint8_t payload1200[1200];
static size_t b_put_big_frame(uint8_t *buf)
{
    static uint32_t pl[600];
    kvs_wire_put_ent_t pe[2] = {
        {.key = {(const uint8_t *)"b1", 2}, .nparts = 600, .part_lens = pl},
        {.key = {(const uint8_t *)"b2", 2}, .nparts = 600, .part_lens = pl}};
    kvs_wire_msg_t m;
    size_t n;

    for (int i = 0; i < 600; i++)
        pl[i] = 1;
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_PUT;
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.req_id = 9;
    m.hdr.count = 2;
    m.u.put.ents = pe;
    n = raw_enc(buf, 1 << 16, &m);
    CHECK(n > KVS_WIRE_INLINE_MAX);
    return n;
}
static size_t b_put_noflag(uint8_t *buf)
{
    size_t n = put_frame(buf, 0, 0);

    buf[6] &= (uint8_t)~KVS_WIRE_F_PAYLOAD;
    return n;
}

static const row_t rows[] = {
    {"EXISTS before HELLO", PRE, b_exists, NULL, 0, KVS_EAUTH, true},
    {"STAT before HELLO", PRE, b_stat, NULL, 0, KVS_EAUTH, true},
    {"HELLO, bad token", PRE, b_hello_badtok, NULL, 0, KVS_EAUTH, true},
    {"HELLO, version 1", PRE, b_hello_version, NULL, 0, KVS_EPROTO_VERSION,
     true},
    {"HELLO, elem_size 200", PRE, b_hello_elem, NULL, 0, -EINVAL, true},
    {"HELLO, NUL in namespace", PRE, b_hello_nul, NULL, 0, KVS_EPROTO, true},
    {"bad magic before HELLO", PRE, b_magic, NULL, 0, KVS_EPROTO, true},
    {"frame of 10 bytes", PRE, b_short, NULL, 0, KVS_EPROTO, true},
    {"malformed frame before HELLO", PRE, b_count0, NULL, 0, KVS_EPROTO, true},
    {"HELLO", PRE, b_hello, NULL, 0, 0, false},
    {"HELLO twice", AUTH, b_hello, NULL, 0, KVS_EPROTO, false},
    {"bad magic", AUTH, b_magic, NULL, 0, KVS_EPROTO, true},
    {"version 1", AUTH, b_hello_version, NULL, 0, KVS_EPROTO_VERSION, true},
    {"frame of 10 bytes after HELLO", AUTH, b_short, NULL, 0, KVS_EPROTO, true},
    {"unknown opcode", AUTH, b_unknown_op, NULL, 0, KVS_EPROTO, false},
    {"unknown flag", AUTH, b_unknown_flag, NULL, 0, KVS_EPROTO, false},
    {"REPLY flag on a request", AUTH, b_reply_flag, NULL, 0, KVS_EPROTO, false},
    {"DATA from a client", AUTH, b_data, payload10, 10, KVS_EPROTO, false},
    {"truncated body", AUTH, b_truncated, NULL, 0, KVS_EPROTO, false},
    {"body_len 0xffffffff", AUTH, b_body_huge, NULL, 0, KVS_ETOOBIG, false},
    {"count 0", AUTH, b_count0, NULL, 0, KVS_EPROTO, false},
    {"count 1025", AUTH, b_count1025, NULL, 0, KVS_ETOOBIG, false},
    {"zero-length key", AUTH, b_key0, NULL, 0, KVS_EPROTO, false},
    {"key of 65 bytes", AUTH, b_key65, NULL, 0, KVS_ETOOBIG, false},
    {"BIND on the control endpoint", AUTH, b_bind, NULL, 0, KVS_EPROTO, false},
    {"RELEASE of an unknown lease", AUTH, b_release, NULL, 0, KVS_ENOTFOUND,
     false},
    {"PUT", AUTH, b_put, payload10, 10, 0, false},
    {"PUT, payload longer than its parts", AUTH, b_put, payload10, 9,
     KVS_EPROTO, false},
    {"PUT without PAYLOAD flag", AUTH, b_put_noflag, NULL, 0, KVS_EPROTO,
     false},
    {"PUT, frame over 4608 bytes", AUTH, b_put_big_frame, payload1200, 1200,
     KVS_ETOOBIG, false},
    {"STAT", AUTH, b_stat, NULL, 0, 0, false},
    {"VERIFY", AUTH, b_verify, NULL, 0, 0, false},
    {"SCAN", AUTH, b_scan, NULL, 0, 0, false},
    {"VERIFY without VERIFY", NOFEAT, b_verify, NULL, 0, KVS_EPROTO, false},
    {"SCAN without SCAN", NOFEAT, b_scan, NULL, 0, KVS_EPROTO, false},
    {"PREFETCH without PREFETCH", NOFEAT, b_prefetch, NULL, 0, KVS_EPROTO,
     false},
    {"RELEASE without LEASE", NOFEAT, b_release, NULL, 0, KVS_EPROTO, false},
    {"MATCH LEASE without LEASE", NOFEAT, b_match_lease, NULL, 0, KVS_EPROTO,
     false},
};

int main(void)
{
    static uint8_t buf[1 << 16];
    kvs_e2e_daemon_t d;
    unsigned n = 0;

    kvs_e2e_daemon_init(&d, "e2e_conformance");
    kvs_e2e_write_config(&d, "[tenant.t]\ntoken = tok\nnamespaces = ns\n");
    kvs_e2e_daemon_start(&d, NULL);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *row = &rows[i];
        raw_t *r = calloc(1, sizeof(*r));
        size_t len;
        int st;

        CHECK(r);
        fprintf(stderr, "row %zu: %s\n", i, row->what);
        raw_connect(r, d.port);
        if (row->state != PRE)
            CHECK_EQ(
                raw_send(r, buf,
                         raw_hello(buf, 1, "tok", "ns",
                                   row->state == AUTH ? KVS_WIRE_FEAT_ALL : 0),
                         NULL, 0, false),
                0);
        len = row->build(buf);
        st = raw_send(r, buf, len, row->payload, row->plen, false);
        if (st != row->status) {
            fprintf(stderr, "row '%s': status %d (%s), wanted %d (%s)\n",
                    row->what, st, kvs_strerror(st), row->status,
                    kvs_strerror(row->status));
            exit(1);
        }
        if (row->closed) {
            raw_wait_closed(r);
        } else {
            int ok = raw_send(r, buf, b_exists(buf), NULL, 0, false);

            if (ok != (row->state == PRE && row->status ? KVS_EAUTH : 0) ||
                r->closed) {
                fprintf(stderr, "row '%s': connection not usable after\n",
                        row->what);
                exit(1);
            }
        }
        raw_close(r);
        free(r);
        n++;
    }
    kvs_e2e_daemon_stop(&d);
    printf("e2e_conformance: ok (%u rows)\n", n);
    return 0;
}
