/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire codec: every message type round-trips encode -> decode with the same
 * meaning, and malformed frames (truncated, wrong magic or version, unknown
 * opcode, oversized keys and counts, lying lengths, trailing bytes) are
 * rejected with the right status instead of being trusted.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvstash/wire.h"
#include "transport/proto/stream_op.h"

static kvs_wire_scratch_t *scratch;
static kvs_wire_limits_t lim;
static uint8_t buf[1 << 16];

static int setup(void **state)
{
    (void)state;
    scratch = kvs_wire_scratch_create();
    kvs_wire_limits_default(&lim);
    return scratch ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kvs_wire_scratch_destroy(scratch);
    return 0;
}

static kvs_wire_bytes_t B(const char *s)
{
    return (kvs_wire_bytes_t){.data = (const uint8_t *)s,
                              .len = (uint32_t)strlen(s)};
}

static void assert_bytes(kvs_wire_bytes_t a, kvs_wire_bytes_t b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.data, b.data, a.len);
}

/* Encodes m, decodes it into out, checks the header fields survived. */
static size_t roundtrip(const kvs_wire_msg_t *m, uint64_t payload_len,
                        kvs_wire_msg_t *out)
{
    size_t len = 0;

    assert_int_equal(kvs_wire_encode(m, buf, sizeof(buf), &len), 0);
    assert_true(len >= KVS_WIRE_HDR_SIZE);
    assert_int_equal(kvs_wire_decode(buf, len, payload_len, &lim, scratch, out),
                     0);
    assert_int_equal(out->hdr.magic, KVS_WIRE_MAGIC);
    assert_int_equal(out->hdr.version, KVS_WIRE_VERSION);
    assert_int_equal(out->hdr.opcode, m->hdr.opcode);
    assert_int_equal(out->hdr.flags, m->hdr.flags);
    assert_true(out->hdr.req_id == m->hdr.req_id);
    assert_int_equal(out->hdr.status, m->hdr.status);
    assert_int_equal(out->hdr.count, m->hdr.count);
    assert_int_equal(out->hdr.body_len, len - KVS_WIRE_HDR_SIZE);
    return len;
}

static kvs_wire_msg_t req(uint8_t op, uint32_t count)
{
    kvs_wire_msg_t m;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = op;
    m.hdr.req_id = 0x1122334455667788ull + op;
    m.hdr.count = count;
    return m;
}

static kvs_wire_msg_t rep(uint8_t op, uint32_t count)
{
    kvs_wire_msg_t m = req(op, count);

    m.hdr.flags = KVS_WIRE_F_REPLY;
    return m;
}

/* The third key is 64 bytes, written in two pieces (in parentheses, so that
 * clang's -Wstring-concatenation sees it is meant). */
static const char *keys3[] = {"k0", "a-longer-key-1",
                              ("key-two-with-64-bytes-"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")};

static void test_hello(void **state)
{
    (void)state;
    kvs_wire_msg_t m = req(KVS_OP_HELLO, 0), o;

    m.u.hello.features = KVS_WIRE_FEAT_ALL;
    m.u.hello.elem_size = 2;
    m.u.hello.token = B("secret-token");
    m.u.hello.ns = B("model=llama-3.1-8b;dtype=bf16");
    roundtrip(&m, 0, &o);
    assert_int_equal(o.u.hello.features, KVS_WIRE_FEAT_ALL);
    assert_int_equal(o.u.hello.elem_size, 2);
    assert_bytes(o.u.hello.token, m.u.hello.token);
    assert_bytes(o.u.hello.ns, m.u.hello.ns);

    /* No token at all is a valid request (open daemons). */
    m.u.hello.token = (kvs_wire_bytes_t){0};
    roundtrip(&m, 0, &o);
    assert_int_equal(o.u.hello.token.len, 0);

    kvs_wire_msg_t r = rep(KVS_OP_HELLO, 0);
    r.u.hello_rep.features = 5;
    r.u.hello_rep.max_body = 65536;
    r.u.hello_rep.max_payload = 1u << 26;
    r.u.hello_rep.max_inflight = 64;
    r.u.hello_rep.max_keys = 1024;
    r.u.hello_rep.lease_max_ms = 60000;
    r.u.hello_rep.session = 42;
    r.u.hello_rep.bind_secret = 0x0123456789abcdefull;
    r.u.hello_rep.bulk_port = 40001;
    r.u.hello_rep.worker_port = 40002; /* MOVE: the former rsvd word */
    roundtrip(&r, 0, &o);
    assert_memory_equal(&o.u.hello_rep, &r.u.hello_rep, sizeof(r.u.hello_rep));
}

static void test_put(void **state)
{
    (void)state;
    uint32_t lens0[] = {100, 200, 300};
    uint32_t lens1[] = {4096};
    kvs_wire_put_ent_t ents[2] = {
        {.key = B("block-0"),
         .cls = KVS_CLASS_USER,
         .elem_size = 2,
         .flags = KVS_WIRE_PUT_DURABLE,
         .ttl_ms = 3600000,
         .group = 7,
         .nparts = 3,
         .part_lens = lens0},
        {.key = B("block-1"),
         .parent = B("block-0"),
         .nparts = 1,
         .part_lens = lens1},
    };
    kvs_wire_msg_t m = req(KVS_OP_PUT, 2), o;

    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.u.put.ents = ents;
    roundtrip(&m, 600 + 4096, &o);
    for (int i = 0; i < 2; i++) {
        const kvs_wire_put_ent_t *a = &ents[i], *b = &o.u.put.ents[i];
        assert_bytes(a->key, b->key);
        assert_bytes(a->parent, b->parent);
        assert_int_equal(a->cls, b->cls);
        assert_int_equal(a->elem_size, b->elem_size);
        assert_int_equal(a->flags, b->flags);
        assert_true(a->ttl_ms == b->ttl_ms && a->group == b->group);
        assert_int_equal(a->nparts, b->nparts);
        assert_memory_equal(a->part_lens, b->part_lens, 4 * a->nparts);
    }
    assert_true(o.u.put.ents[0].data_off == 0);
    assert_true(o.u.put.ents[0].data_len == 600);
    assert_true(o.u.put.ents[1].data_off == 600);
    assert_true(o.u.put.ents[1].data_len == 4096);

    /* The payload must be exactly the blocks' bytes. */
    size_t len;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(kvs_wire_decode(buf, len, 4695, &lim, scratch, &o),
                     KVS_EPROTO);
    assert_int_equal(kvs_wire_decode(buf, len, 4697, &lim, scratch, &o),
                     KVS_EPROTO);

    int32_t st[2] = {0, KVS_EFULL};
    kvs_wire_msg_t r = rep(KVS_OP_PUT, 2);
    r.u.status_rep.status = st;
    roundtrip(&r, 0, &o);
    assert_memory_equal(o.u.status_rep.status, st, sizeof(st));
}

static void test_get_and_data(void **state)
{
    (void)state;
    kvs_wire_get_ent_t ents[3];
    kvs_wire_msg_t m = req(KVS_OP_GET, 3), o;

    for (int i = 0; i < 3; i++) {
        ents[i].key = B(keys3[i]);
        ents[i].cap = (1ull << 20) * (uint64_t)(i + 1);
    }
    m.u.get.lease_id = 99;
    m.u.get.ents = ents;
    roundtrip(&m, 0, &o);
    assert_true(o.u.get.lease_id == 99);
    for (int i = 0; i < 3; i++) {
        assert_bytes(o.u.get.ents[i].key, ents[i].key);
        assert_true(o.u.get.ents[i].cap == ents[i].cap);
    }

    kvs_wire_block_t blk[3] = {
        {.status = 0,
         .nparts = 2,
         .len = 1 << 20,
         .tier = KVS_TIER_DRAM,
         .cls = KVS_CLASS_SCRATCH},
        {.status = KVS_ENOTFOUND},
        {.status = -ENOBUFS,
         .nparts = 1,
         .len = 5 << 20,
         .tier = KVS_TIER_NVME,
         .cls = KVS_CLASS_PINNED},
    };
    kvs_wire_msg_t r = rep(KVS_OP_GET, 3);
    r.u.get_rep.blocks = blk;
    roundtrip(&r, 0, &o);
    assert_memory_equal(o.u.get_rep.blocks, blk, sizeof(blk));

    uint32_t lens[] = {1000, 24};
    kvs_wire_msg_t d = req(KVS_OP_DATA, 2);
    d.hdr.flags = KVS_WIRE_F_PAYLOAD;
    d.u.data.len = 1024;
    d.u.data.nparts = 2;
    d.u.data.tier = KVS_TIER_DRAM;
    d.u.data.cls = KVS_CLASS_USER;
    d.u.data.part_lens = lens;
    roundtrip(&d, 1024, &o);
    assert_true(o.u.data.len == 1024);
    assert_int_equal(o.u.data.nparts, 2);
    assert_int_equal(o.u.data.tier, KVS_TIER_DRAM);
    assert_int_equal(o.u.data.cls, KVS_CLASS_USER);
    assert_memory_equal(o.u.data.part_lens, lens, sizeof(lens));
}

static void test_key_ops(void **state)
{
    (void)state;
    static const uint8_t ops[] = {KVS_OP_MATCH, KVS_OP_EXISTS, KVS_OP_DELETE,
                                  KVS_OP_PIN,   KVS_OP_UNPIN,  KVS_OP_PREFETCH};
    kvs_wire_bytes_t keys[3];

    for (int i = 0; i < 3; i++)
        keys[i] = B(keys3[i]);
    for (size_t k = 0; k < sizeof(ops); k++) {
        kvs_wire_msg_t m = req(ops[k], 3), o;

        m.u.keys.keys = keys;
        if (ops[k] == KVS_OP_MATCH) {
            m.u.keys.flags = KVS_WIRE_MATCH_LEASE;
            m.u.keys.lease_ms = 1500;
        } else if (ops[k] == KVS_OP_PIN || ops[k] == KVS_OP_UNPIN) {
            m.u.keys.flags = KVS_WIRE_PIN_RETAIN;
        }
        roundtrip(&m, 0, &o);
        assert_int_equal(o.u.keys.flags, m.u.keys.flags);
        assert_int_equal(o.u.keys.lease_ms, m.u.keys.lease_ms);
        for (int i = 0; i < 3; i++)
            assert_bytes(o.u.keys.keys[i], keys[i]);
    }

    uint8_t tiers[2] = {KVS_TIER_DRAM, KVS_TIER_NVME};
    kvs_wire_msg_t r = rep(KVS_OP_MATCH, 2), o;
    r.u.match_rep.lease_id = 0xabcdefull;
    r.u.match_rep.tiers = tiers;
    roundtrip(&r, 0, &o);
    assert_int_equal(o.u.match_rep.matched, 2);
    assert_true(o.u.match_rep.lease_id == 0xabcdefull);
    assert_memory_equal(o.u.match_rep.tiers, tiers, 2);

    /* A match of nothing: no tiers at all. */
    r = rep(KVS_OP_MATCH, 0);
    roundtrip(&r, 0, &o);
    assert_int_equal(o.u.match_rep.matched, 0);

    uint8_t present[3] = {1, 0, 1};
    r = rep(KVS_OP_EXISTS, 3);
    r.u.exists_rep.present = present;
    roundtrip(&r, 0, &o);
    assert_memory_equal(o.u.exists_rep.present, present, 3);

    int32_t st[3] = {0, KVS_ENOTFOUND, KVS_EBUSY};
    static const uint8_t sops[] = {KVS_OP_DELETE, KVS_OP_PIN, KVS_OP_UNPIN};
    for (size_t k = 0; k < sizeof(sops); k++) {
        r = rep(sops[k], 3);
        r.u.status_rep.status = st;
        roundtrip(&r, 0, &o);
        assert_memory_equal(o.u.status_rep.status, st, sizeof(st));
    }

    r = rep(KVS_OP_PREFETCH, 0);
    r.u.prefetch_rep.promoted = 12;
    roundtrip(&r, 0, &o);
    assert_true(o.u.prefetch_rep.promoted == 12);
}

static void test_admin_ops(void **state)
{
    (void)state;
    kvs_wire_msg_t m = req(KVS_OP_RELEASE, 0), o;

    m.u.release.lease_id = 77;
    roundtrip(&m, 0, &o);
    assert_true(o.u.release.lease_id == 77);
    m = rep(KVS_OP_RELEASE, 0);
    roundtrip(&m, 0, &o);

    m = req(KVS_OP_STAT, 0);
    roundtrip(&m, 0, &o);
    kvs_wire_stat_t st[2] = {{.name = B("refs"), .value = 3},
                             {.name = B("dram_used_bytes"), .value = 1u << 30}};
    m = rep(KVS_OP_STAT, 2);
    m.u.stat_rep.ents = st;
    roundtrip(&m, 0, &o);
    for (int i = 0; i < 2; i++) {
        assert_bytes(o.u.stat_rep.ents[i].name, st[i].name);
        assert_true(o.u.stat_rep.ents[i].value == st[i].value);
    }

    m = req(KVS_OP_BIND, 0);
    m.u.bind.session = 3;
    m.u.bind.secret = 0xfeedfacecafebeefull;
    roundtrip(&m, 0, &o);
    assert_true(o.u.bind.session == 3);
    assert_true(o.u.bind.secret == 0xfeedfacecafebeefull);
    m = rep(KVS_OP_BIND, 0);
    roundtrip(&m, 0, &o);

    m = req(KVS_OP_VERIFY, 0);
    roundtrip(&m, 0, &o);
    m = rep(KVS_OP_VERIFY, 0);
    m.u.verify_rep.checked = 1000;
    m.u.verify_rep.bad = 2;
    roundtrip(&m, 0, &o);
    assert_true(o.u.verify_rep.checked == 1000 && o.u.verify_rep.bad == 2);

    /* An error reply has an empty body whatever the opcode. */
    m = rep(KVS_OP_GET, 0);
    m.hdr.status = KVS_EAUTH;
    size_t len = roundtrip(&m, 0, &o);
    assert_int_equal(len, KVS_WIRE_HDR_SIZE);
}

/* A valid EXISTS request of one key, for the malformed-frame tests. */
static size_t good_frame(void)
{
    kvs_wire_bytes_t k = B("key");
    kvs_wire_msg_t m = req(KVS_OP_EXISTS, 1);
    size_t len;

    m.u.keys.keys = &k;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), 0);
    return len;
}

static int dec(size_t len, uint64_t payload)
{
    kvs_wire_msg_t o;
    return kvs_wire_decode(buf, len, payload, &lim, scratch, &o);
}

/* SCAN, with the request's group and cursor, and a page of blocks with and
 * without parents; a truncated entry and an empty key are malformed. */
static void test_scan(void **state)
{
    kvs_wire_msg_t m = req(KVS_OP_SCAN, 100), o;
    kvs_wire_scan_ent_t ents[3];
    size_t len;

    (void)state;
    m.u.scan.group = 0xfeedfacecafebeefull;
    m.u.scan.cursor = 4242;
    len = roundtrip(&m, 0, &o);
    assert_int_equal(len, KVS_WIRE_HDR_SIZE + KVS_WIRE_SCAN_FIXED);
    assert_true(o.u.scan.group == m.u.scan.group);
    assert_int_equal(o.u.scan.cursor, 4242);

    /* A SCAN with count 0 asks for nothing: malformed. */
    m.hdr.count = 0;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);

    memset(ents, 0, sizeof(ents));
    for (int i = 0; i < 3; i++) {
        ents[i].key = B(keys3[i]);
        ents[i].parent = i ? B(keys3[i - 1]) : B("");
        ents[i].tier = (uint8_t)(1 + (i & 1));
        ents[i].cls = (uint8_t)i;
        ents[i].nparts = 32u + (uint32_t)i;
        ents[i].len = (1ull << 33) + (uint64_t)i;
        ents[i].group = 77u * (uint64_t)i;
        ents[i].expiry_ms = 1700000000000ull + (uint64_t)i;
    }
    m = rep(KVS_OP_SCAN, 3);
    m.u.scan_rep.next = 9;
    m.u.scan_rep.ents = ents;
    len = roundtrip(&m, 0, &o);
    assert_int_equal(o.u.scan_rep.next, 9);
    for (int i = 0; i < 3; i++) {
        const kvs_wire_scan_ent_t *e = &o.u.scan_rep.ents[i];

        assert_bytes(e->key, ents[i].key);
        assert_bytes(e->parent, ents[i].parent);
        assert_int_equal(e->tier, ents[i].tier);
        assert_int_equal(e->cls, ents[i].cls);
        assert_int_equal(e->nparts, ents[i].nparts);
        assert_true(e->len == ents[i].len);
        assert_true(e->group == ents[i].group);
        assert_true(e->expiry_ms == ents[i].expiry_ms);
    }
    /* Cut inside the last entry: truncated. */
    buf[16] = (uint8_t)(len - 1 - KVS_WIRE_HDR_SIZE);
    assert_int_equal(kvs_wire_decode(buf, len - 1, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    /* An entry with an empty key cannot be encoded, nor decoded. */
    ents[1].key = B("");
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    ents[1].key = B(keys3[1]);
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), 0);
    buf[KVS_WIRE_HDR_SIZE + KVS_WIRE_SCAN_REP_FIXED] = 0;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
}

static void test_malformed(void **state)
{
    (void)state;
    size_t len = good_frame();
    kvs_wire_msg_t o;

    assert_int_equal(dec(len, 0), 0);
    /* Truncated anywhere, header or body. */
    for (size_t l = 0; l < len; l++)
        assert_int_not_equal(dec(l, 0), 0);
    /* Trailing bytes after a consistent body_len. */
    buf[len] = 0;
    buf[16]++;
    assert_int_equal(dec(len + 1, 0), KVS_EPROTO);
    buf[16]--;
    /* body_len past the bytes received. */
    buf[16] += 10;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[16] -= 10;
    /* body_len past the limit. */
    len = good_frame();
    buf[19] = 0x7f;
    assert_int_equal(dec(len, 0), KVS_ETOOBIG);
    len = good_frame();
    /* Bad magic, then wrong version; the header is still reported. */
    buf[0] ^= 0xff;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    buf[0] ^= 0xff;
    buf[4] = KVS_WIRE_VERSION + 1;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO_VERSION);
    buf[4] = 1; /* before the stream opcodes joined: refused too */
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO_VERSION);
    assert_int_equal(o.hdr.opcode, KVS_OP_EXISTS);
    buf[4] = KVS_WIRE_VERSION;
    /* Unknown opcode and unknown flags. */
    buf[5] = 0;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[5] = KVS_OP_COUNT;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[5] = 200;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[5] = KVS_OP_EXISTS;
    buf[6] = 0x80;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[6] = 0;
    /* A payload where none belongs. */
    assert_int_equal(dec(len, 10), KVS_EPROTO);
    /* Count of zero, count past the limit, count past the body. */
    buf[24] = 0;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[24] = 2;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[24] = 0;
    buf[26] = 1;
    assert_int_equal(dec(len, 0), KVS_ETOOBIG);
    buf[26] = 0;
    buf[24] = 1;
    /* A key length of zero, and one longer than the body. */
    buf[32] = 0;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[32] = 4;
    assert_int_equal(dec(len, 0), KVS_EPROTO);
    buf[32] = 3;
    assert_int_equal(dec(len, 0), 0);
}

static void test_key_too_big(void **state)
{
    (void)state;
    uint8_t raw[KVS_WIRE_HDR_SIZE + 1 + 65];
    char big[66];
    kvs_wire_bytes_t k;
    kvs_wire_msg_t m = req(KVS_OP_EXISTS, 1), o;
    size_t len;

    memset(big, 'x', sizeof(big));
    big[65] = 0;
    k = B(big);
    m.u.keys.keys = &k;
    /* The encoder refuses... */
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    /* ...and a hand-made frame with a 65-byte key is KVS_ETOOBIG. */
    big[64] = 0;
    k = B(big);
    assert_int_equal(kvs_wire_encode(&m, raw, sizeof(raw), &len), 0);
    assert_int_equal(len, sizeof(raw) - 1);
    raw[16] = 66;
    raw[32] = 65;
    raw[len] = 'x';
    assert_int_equal(kvs_wire_decode(raw, sizeof(raw), 0, &lim, scratch, &o),
                     KVS_ETOOBIG);
}

/* The stream opcodes: one fixed part, a string, the rest; parts carry a
 * payload; no reply flag, no count. And the peer form of HELLO. */
static void test_stream(void **state)
{
    static const uint8_t body[] = {'p', 'r', 'e', 'f', 'i', 'l', 'l',
                                   1,   'k', 4,   0,   0,   0};
    kvs_wire_msg_t m = req(KVS_OP_SPUT_BEGIN, 0), o;
    size_t len;

    (void)state;
    m.hdr.req_id = 77;
    m.u.stream.block = 1;
    m.u.stream.part = 2;
    m.u.stream.nparts = 1;
    m.u.stream.flags = KVS_WIRE_STREAM_PUSH;
    m.u.stream.len = 1234;
    m.u.stream.off = 5678;
    m.u.stream.str = (kvs_wire_bytes_t){.data = body, .len = 7};
    m.u.stream.rest =
        (kvs_wire_bytes_t){.data = body + 7, .len = sizeof(body) - 7};
    len = roundtrip(&m, 0, &o);
    assert_int_equal(len,
                     KVS_WIRE_HDR_SIZE + KVS_WIRE_STREAM_FIXED + sizeof(body));
    assert_int_equal(o.u.stream.block, 1);
    assert_int_equal(o.u.stream.part, 2);
    assert_int_equal(o.u.stream.nparts, 1);
    assert_int_equal(o.u.stream.flags, KVS_WIRE_STREAM_PUSH);
    assert_true(o.u.stream.len == 1234 && o.u.stream.off == 5678);
    assert_bytes(o.u.stream.str, m.u.stream.str);
    assert_bytes(o.u.stream.rest, m.u.stream.rest);
    assert_string_equal(kvs_wire_op_name(KVS_OP_SPUT_BEGIN), "SPUT_BEGIN");

    /* String beyond the body; unknown stream flag; reply flag; count. */
    buf[KVS_WIRE_HDR_SIZE + 12] = 200;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    buf[KVS_WIRE_HDR_SIZE + 12] = 7;
    buf[KVS_WIRE_HDR_SIZE + 14] = 0x80;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    buf[KVS_WIRE_HDR_SIZE + 14] = KVS_WIRE_STREAM_PUSH;
    buf[6] = KVS_WIRE_F_REPLY;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    buf[6] = 0;
    buf[24] = 1;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o),
                     KVS_EPROTO);
    buf[24] = 0;
    assert_int_equal(kvs_wire_decode(buf, len, 0, &lim, scratch, &o), 0);
    /* Truncated fixed part. */
    m = req(KVS_OP_PING, 0);
    len = roundtrip(&m, 0, &o);
    assert_int_equal(len, KVS_WIRE_HDR_SIZE + KVS_WIRE_STREAM_FIXED);
    buf[16] = KVS_WIRE_STREAM_FIXED - 1;
    assert_int_equal(kvs_wire_decode(buf, len - 1, 0, &lim, scratch, &o),
                     KVS_EPROTO);

    /* A part: always the payload flag, the payload may be empty. */
    m = req(KVS_OP_PART, 0);
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.u.stream.len = 4096;
    roundtrip(&m, 4096, &o);
    roundtrip(&m, 0, &o);
    m.hdr.flags = 0;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), 0);
    assert_int_equal(kvs_wire_decode(buf, len, 4096, &lim, scratch, &o),
                     KVS_EPROTO);
    /* A body over what fits the AM header is refused both ways. */
    m = req(KVS_OP_FETCH, 0);
    m.u.stream.rest = (kvs_wire_bytes_t){.data = buf + 8192,
                                         .len = KVS_WIRE_STREAM_BODY_MAX + 1};
    assert_int_equal(kvs_wire_encode(&m, buf, 8192, &len), -EINVAL);

    /* HELLO: only the peer form may name no namespace. */
    m = req(KVS_OP_HELLO, 0);
    m.u.hello.features = KVS_WIRE_FEAT_PEER | KVS_WIRE_FEAT_STREAM;
    m.u.hello.token = B("peer-secret");
    roundtrip(&m, 0, &o);
    assert_int_equal(o.u.hello.ns.len, 0);
    assert_bytes(o.u.hello.token, m.u.hello.token);
    m.u.hello.features = KVS_WIRE_FEAT_STREAM;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
}

static void test_encode_rules(void **state)
{
    (void)state;
    kvs_wire_msg_t m = req(KVS_OP_HELLO, 0);
    size_t len;

    /* No namespace. */
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m.u.hello.ns = B("ns");
    /* Too small a buffer. */
    assert_int_equal(kvs_wire_encode(&m, buf, 20, &len), -ENOBUFS);
    assert_int_equal(kvs_wire_encode(&m, buf, KVS_WIRE_HDR_SIZE + 5, &len),
                     -ENOBUFS);
    m.hdr.opcode = 0;
    assert_int_equal(kvs_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    assert_string_equal(kvs_wire_op_name(KVS_OP_MATCH), "MATCH");
    assert_string_equal(kvs_wire_op_name(99), "?");
}

/* A PART between daemons names one part or a run of them (PART_RUN): the
 * run is taken only where it is consecutive parts of the block, none in
 * yet, whose lengths add up to the payload. */
static void test_part_run(void **state)
{
    const uint32_t lens[4] = {100, 200, 300, 0};
    uint8_t got[4] = {0, 0, 0, 0};
    kvs_smsg_t m = {.op = KVS_OP_PART};

    (void)state;
    m.part = 1, m.nparts = 0, m.len = 200;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 200), 1);
    m.nparts = 1;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 200), 1);
    m.part = 0, m.nparts = 3, m.len = 600;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 600), 3);
    m.nparts = 4; /* the empty last part joins too */
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 600), 4);
    /* Lengths that are not the parts', or a payload of another length. */
    m.nparts = 3, m.len = 599;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 599), 0);
    m.len = 600;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 601), 0);
    /* Past the last part, from outside the block, or with a count so
     * large that part + count wraps. */
    m.part = 2, m.nparts = 3, m.len = 300;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 300), 0);
    m.part = 4, m.nparts = 0, m.len = 0;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 0), 0);
    m.part = 1, m.nparts = UINT32_MAX, m.len = 500;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 500), 0);
    /* Onto a part received already. */
    got[2] = 1;
    m.part = 1, m.nparts = 2, m.len = 500;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 500), 0);
    m.nparts = 0, m.len = 200;
    assert_int_equal(kvs_smsg_part_run(&m, 4, lens, got, 200), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),        cmocka_unit_test(test_put),
        cmocka_unit_test(test_get_and_data), cmocka_unit_test(test_key_ops),
        cmocka_unit_test(test_admin_ops),    cmocka_unit_test(test_scan),
        cmocka_unit_test(test_malformed),    cmocka_unit_test(test_stream),
        cmocka_unit_test(test_part_run),     cmocka_unit_test(test_key_too_big),
        cmocka_unit_test(test_encode_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
