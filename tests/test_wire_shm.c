/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm socket's codec (kvstash/wire_shm.h): every request and reply
 * round-trips with the same meaning, and every truncation, trailing byte,
 * lying length or count, and over-limit key of a frame is refused with
 * the right status, never read past.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvstash/wire_shm.h"

static uint8_t buf[KVS_WIRE_SHM_FRAME_MAX];
static uint32_t lens[KVS_PARTS_MAX];

static kvs_wire_bytes_t B(const char *s)
{
    return (kvs_wire_bytes_t){.data = (const uint8_t *)s,
                              .len = (uint32_t)strlen(s)};
}

static size_t enc(const kvs_wire_shm_msg_t *m)
{
    size_t len = 0;

    assert_int_equal(kvs_wire_shm_encode(m, buf, sizeof(buf), &len), 0);
    return len;
}

static kvs_wire_shm_msg_t reserve_msg(void)
{
    static const uint32_t pl[3] = {4096, 7, 0};
    kvs_wire_shm_msg_t m = {0};

    m.hdr.opcode = KVS_OP_SHM_RESERVE;
    m.hdr.req_id = 42;
    m.hdr.count = 3;
    m.u.reserve.key = B("key-1");
    m.u.reserve.parent = B("parent");
    m.u.reserve.cls = 2;
    m.u.reserve.elem_size = 2;
    m.u.reserve.flags = 1;
    m.u.reserve.ttl_ms = 1234;
    m.u.reserve.group = 99;
    m.u.reserve.part_lens = pl;
    return m;
}

static void test_roundtrip(void **state)
{
    kvs_wire_shm_msg_t m = reserve_msg(), o;
    size_t len = enc(&m);
    static const uint32_t vl[2] = {10, 20};

    (void)state;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
    assert_int_equal(o.hdr.req_id, 42);
    assert_int_equal(o.hdr.count, 3);
    assert_memory_equal(o.u.reserve.key.data, "key-1", 5);
    assert_memory_equal(o.u.reserve.parent.data, "parent", 6);
    assert_int_equal(o.u.reserve.ttl_ms, 1234);
    assert_int_equal(o.u.reserve.group, 99);
    assert_int_equal(o.u.reserve.flags, 1);
    assert_int_equal(lens[0], 4096);
    assert_int_equal(lens[1], 7);
    assert_int_equal(lens[2], 0);

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SHM_ATTACH;
    m.u.attach.token = B("tok");
    m.u.attach.ns = B("ns");
    m.u.attach.elem_size = 2;
    len = enc(&m);
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
    assert_memory_equal(o.u.attach.token.data, "tok", 3);
    assert_memory_equal(o.u.attach.ns.data, "ns", 2);
    assert_int_equal(o.u.attach.elem_size, 2);

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SHM_VIEW;
    m.hdr.flags = KVS_WIRE_F_REPLY;
    m.hdr.count = 2;
    m.u.block.id = 7;
    m.u.block.off = 1 << 20;
    m.u.block.len = 30;
    m.u.block.tier = 2;
    m.u.block.cls = 1;
    m.u.block.expiry_ns = 123456789;
    m.u.block.part_lens = vl;
    len = enc(&m);
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
    assert_int_equal(o.u.block.off, 1 << 20);
    assert_int_equal(o.u.block.expiry_ns, 123456789);
    assert_int_equal(o.u.block.tier, 2);
    assert_int_equal(lens[1], 20);

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SHM_RELEASE;
    m.u.id.id = 0xabcdef;
    len = enc(&m);
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
    assert_int_equal(o.u.id.id, 0xabcdef);

    /* An error reply: header only. */
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SHM_COMMIT;
    m.hdr.flags = KVS_WIRE_F_REPLY;
    m.hdr.status = KVS_ENOTFOUND;
    len = enc(&m);
    assert_int_equal(len, KVS_WIRE_HDR_SIZE);
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
    assert_int_equal(o.hdr.status, KVS_ENOTFOUND);
}

static void test_malformed(void **state)
{
    kvs_wire_shm_msg_t m = reserve_msg(), o;
    size_t len = enc(&m);

    (void)state;
    /* Every truncation and one trailing byte. */
    for (size_t l = 0; l < len; l++)
        assert_int_not_equal(kvs_wire_shm_decode(buf, l, lens, &o), 0);
    buf[len] = 0;
    assert_int_equal(kvs_wire_shm_decode(buf, len + 1, lens, &o), KVS_EPROTO);
    /* The header's body_len must match the packet. */
    buf[16]++;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), KVS_EPROTO);
    buf[16]--;
    /* A count that does not match the body. */
    buf[24] = 4;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), KVS_EPROTO);
    buf[24] = 3;
    /* Bad magic, version, flags, opcodes (the UCX ones too). */
    buf[0] ^= 1;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), KVS_EPROTO);
    buf[0] ^= 1;
    buf[4] = 9;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o),
                     KVS_EPROTO_VERSION);
    buf[4] = KVS_WIRE_VERSION;
    buf[6] = KVS_WIRE_F_PAYLOAD;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), KVS_EPROTO);
    buf[6] = 0;
    buf[5] = KVS_OP_GET;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), KVS_EPROTO);
    buf[5] = KVS_OP_SHM_RESERVE;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &o), 0);
}

static void test_limits(void **state)
{
    kvs_wire_shm_msg_t m = reserve_msg();
    char key[KVS_KEY_MAX + 2];
    size_t len;

    (void)state;
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    m.u.reserve.key = B(key); /* KVS_KEY_MAX + 1 */
    assert_int_equal(kvs_wire_shm_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m = reserve_msg();
    m.hdr.count = 0;
    assert_int_equal(kvs_wire_shm_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m.hdr.count = KVS_PARTS_MAX + 1;
    assert_int_equal(kvs_wire_shm_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m = reserve_msg();
    assert_int_equal(kvs_wire_shm_encode(&m, buf, 40, &len), -ENOBUFS);
    /* A key length in the body over the limit: ETOOBIG, not read. */
    len = enc(&m);
    buf[KVS_WIRE_HDR_SIZE + 2] = KVS_KEY_MAX + 1;
    assert_int_equal(kvs_wire_shm_decode(buf, len, lens, &(kvs_wire_shm_msg_t){0}),
                     KVS_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
