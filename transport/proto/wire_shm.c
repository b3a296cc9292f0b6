/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shm socket's codec (include/kvstash/wire_shm.h): fixed bodies, no
 * payload, every length checked against the packet before it is read.
 * Pure like wire.c: no I/O, no allocation. The header is wire.c's
 * (kvs_wire_hdr_load / kvs_wire_hdr_store); only the opcodes differ.
 */
#include "kvstash/wire_shm.h"
#include "common/endian.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static bool is_shm_op(unsigned op)
{
    return op >= KVS_OP_SHM_ATTACH && op <= KVS_OP_SHM_RING;
}

static size_t body_len_of(const kvs_wire_shm_msg_t *m)
{
    const kvs_wire_hdr_t *h = &m->hdr;
    bool reply = h->flags & KVS_WIRE_F_REPLY;

    if (reply && h->status != 0)
        return 0;
    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        return reply ? KVS_WIRE_SHM_ATTACH_REP
                     : KVS_WIRE_SHM_ATTACH_FIXED + m->u.attach.token.len +
                           m->u.attach.ns.len;
    case KVS_OP_SHM_RESERVE:
        return reply ? KVS_WIRE_SHM_RESERVE_REP
                     : KVS_WIRE_SHM_RESERVE_FIXED + m->u.reserve.key.len +
                           m->u.reserve.parent.len + 4ull * h->count;
    case KVS_OP_SHM_VIEW:
        return reply ? KVS_WIRE_SHM_VIEW_REP_FIXED + 4ull * h->count
                     : KVS_WIRE_SHM_VIEW_FIXED + m->u.view.key.len;
    case KVS_OP_SHM_RING:
        return reply ? 0 : KVS_WIRE_SHM_RING_REQ;
    default: /* COMMIT, ABORT, RELEASE */
        return reply ? 0 : KVS_WIRE_SHM_ID_SIZE;
    }
}

/* Whether the lengths and counts of m are within the format's limits. */
static bool within_limits(const kvs_wire_shm_msg_t *m)
{
    const kvs_wire_hdr_t *h = &m->hdr;
    bool reply = h->flags & KVS_WIRE_F_REPLY;

    if (reply && h->status != 0)
        return h->count == 0;
    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        if (reply)
            return (h->count & ~KVS_WIRE_SHM_FEAT_RING) == 0;
        return (m->u.attach.token.len <= KVS_WIRE_TOKEN_MAX &&
                m->u.attach.ns.len >= 1 &&
                m->u.attach.ns.len <= KVS_NS_NAME_MAX);
    case KVS_OP_SHM_RESERVE:
        return reply ? h->count == 0
                     : m->u.reserve.key.len >= 1 &&
                           m->u.reserve.key.len <= KVS_KEY_MAX &&
                           m->u.reserve.parent.len <= KVS_KEY_MAX &&
                           h->count >= 1 && h->count <= KVS_PARTS_MAX;
    case KVS_OP_SHM_VIEW:
        return reply ? h->count >= 1 && h->count <= KVS_PARTS_MAX
                     : m->u.view.key.len >= 1 &&
                           m->u.view.key.len <= KVS_KEY_MAX && h->count == 0;
    default:
        return h->count == 0;
    }
}

static uint8_t *put_bytes(uint8_t *p, kvs_wire_bytes_t b)
{
    if (b.len)
        memcpy(p, b.data, b.len);
    return p + b.len;
}

static void put_lens(uint8_t *p, const uint32_t *lens, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        kvs_le32_store(p + 4ull * i, lens[i]);
}

int kvs_wire_shm_encode(const kvs_wire_shm_msg_t *m, void *buf, size_t cap,
                        size_t *len_out)
{
    const kvs_wire_hdr_t *h = &m->hdr;
    bool reply = h->flags & KVS_WIRE_F_REPLY;
    uint8_t *b = (uint8_t *)buf + KVS_WIRE_HDR_SIZE, *p;
    size_t body;

    if (!is_shm_op(h->opcode) || (h->flags & ~KVS_WIRE_F_REPLY) ||
        !within_limits(m))
        return -EINVAL;
    body = body_len_of(m);
    if (cap < KVS_WIRE_HDR_SIZE + body)
        return -ENOBUFS;
    memset(b, 0, body);
    kvs_wire_hdr_store(buf, h, (uint32_t)body);
    if (reply && h->status != 0)
        goto done;
    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        if (reply) {
            kvs_le64_store(b, m->u.attach_rep.arena_len);
            kvs_le32_store(b + 8, m->u.attach_rep.max_block);
            kvs_le32_store(b + 12, m->u.attach_rep.lease_max_ms);
            kvs_le64_store(b + 16, m->u.attach_rep.stream_key);
            break;
        }
        kvs_le32_store(b, m->u.attach.features);
        kvs_le16_store(b + 4, (uint16_t)m->u.attach.token.len);
        kvs_le16_store(b + 6, (uint16_t)m->u.attach.ns.len);
        b[8] = m->u.attach.elem_size;
        p = put_bytes(b + KVS_WIRE_SHM_ATTACH_FIXED, m->u.attach.token);
        (void)put_bytes(p, m->u.attach.ns);
        break;
    case KVS_OP_SHM_RESERVE:
        if (reply) {
            kvs_le64_store(b, m->u.block.id);
            kvs_le64_store(b + 8, m->u.block.off);
            kvs_le64_store(b + 16, m->u.block.len);
            break;
        }
        b[0] = m->u.reserve.cls;
        b[1] = m->u.reserve.elem_size;
        kvs_le16_store(b + 2, (uint16_t)m->u.reserve.key.len);
        kvs_le16_store(b + 4, (uint16_t)m->u.reserve.parent.len);
        kvs_le32_store(b + 8, m->u.reserve.flags);
        kvs_le64_store(b + 16, m->u.reserve.ttl_ms);
        kvs_le64_store(b + 24, m->u.reserve.group);
        p = put_bytes(b + KVS_WIRE_SHM_RESERVE_FIXED, m->u.reserve.key);
        p = put_bytes(p, m->u.reserve.parent);
        put_lens(p, m->u.reserve.part_lens, h->count);
        break;
    case KVS_OP_SHM_VIEW:
        if (reply) {
            kvs_le64_store(b, m->u.block.id);
            kvs_le64_store(b + 8, m->u.block.off);
            kvs_le64_store(b + 16, m->u.block.len);
            b[24] = m->u.block.tier;
            b[25] = m->u.block.cls;
            kvs_le64_store(b + 32, m->u.block.expiry_ns);
            put_lens(b + KVS_WIRE_SHM_VIEW_REP_FIXED, m->u.block.part_lens,
                     h->count);
            break;
        }
        kvs_le32_store(b, m->u.view.lease_ms);
        kvs_le16_store(b + 4, (uint16_t)m->u.view.key.len);
        (void)put_bytes(b + KVS_WIRE_SHM_VIEW_FIXED, m->u.view.key);
        break;
    case KVS_OP_SHM_RING:
        if (!reply) {
            kvs_le32_store(b, m->u.ring.slots);
            kvs_le32_store(b + 4, m->u.ring.slot_size);
        }
        break;
    default:
        if (!reply)
            kvs_le64_store(b, m->u.id.id);
        break;
    }
done:
    *len_out = KVS_WIRE_HDR_SIZE + body;
    return 0;
}

static void get_lens(const uint8_t *p, uint32_t *lens, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        lens[i] = kvs_le32_load(p + 4ull * i);
}

/* The body's variable part, once the fixed part gave its lengths. */
static int decode_body(const uint8_t *b, size_t blen, uint32_t *part_lens,
                       kvs_wire_shm_msg_t *m)
{
    kvs_wire_hdr_t *h = &m->hdr;
    bool reply = h->flags & KVS_WIRE_F_REPLY;

    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        if (reply) {
            m->u.attach_rep.arena_len = kvs_le64_load(b);
            m->u.attach_rep.max_block = kvs_le32_load(b + 8);
            m->u.attach_rep.lease_max_ms = kvs_le32_load(b + 12);
            m->u.attach_rep.stream_key = kvs_le64_load(b + 16);
            break;
        }
        m->u.attach.features = kvs_le32_load(b);
        m->u.attach.token.len = kvs_le16_load(b + 4);
        m->u.attach.ns.len = kvs_le16_load(b + 6);
        m->u.attach.elem_size = b[8];
        m->u.attach.token.data = b + KVS_WIRE_SHM_ATTACH_FIXED;
        m->u.attach.ns.data = m->u.attach.token.data + m->u.attach.token.len;
        break;
    case KVS_OP_SHM_RESERVE:
        if (reply) {
            m->u.block.id = kvs_le64_load(b);
            m->u.block.off = kvs_le64_load(b + 8);
            m->u.block.len = kvs_le64_load(b + 16);
            break;
        }
        m->u.reserve.cls = b[0];
        m->u.reserve.elem_size = b[1];
        m->u.reserve.key.len = kvs_le16_load(b + 2);
        m->u.reserve.parent.len = kvs_le16_load(b + 4);
        m->u.reserve.flags = kvs_le32_load(b + 8);
        if (m->u.reserve.flags & ~KVS_WIRE_PUT_DURABLE)
            return KVS_EPROTO; /* the one flag a RESERVE takes */
        m->u.reserve.ttl_ms = kvs_le64_load(b + 16);
        m->u.reserve.group = kvs_le64_load(b + 24);
        m->u.reserve.key.data = b + KVS_WIRE_SHM_RESERVE_FIXED;
        m->u.reserve.parent.data = m->u.reserve.key.data + m->u.reserve.key.len;
        m->u.reserve.part_lens = part_lens;
        break;
    case KVS_OP_SHM_VIEW:
        if (reply) {
            m->u.block.id = kvs_le64_load(b);
            m->u.block.off = kvs_le64_load(b + 8);
            m->u.block.len = kvs_le64_load(b + 16);
            m->u.block.tier = b[24];
            m->u.block.cls = b[25];
            m->u.block.expiry_ns = kvs_le64_load(b + 32);
            m->u.block.part_lens = part_lens;
        } else {
            m->u.view.lease_ms = kvs_le32_load(b);
            m->u.view.key.len = kvs_le16_load(b + 4);
            m->u.view.key.data = b + KVS_WIRE_SHM_VIEW_FIXED;
        }
        break;
    case KVS_OP_SHM_RING:
        if (!reply) {
            m->u.ring.slots = kvs_le32_load(b);
            m->u.ring.slot_size = kvs_le32_load(b + 4);
        }
        break;
    default:
        if (!reply)
            m->u.id.id = kvs_le64_load(b);
        break;
    }
    /* Only a VIEW reply has entries, and an ATTACH reply features. */
    if (reply && h->opcode != KVS_OP_SHM_VIEW &&
        h->opcode != KVS_OP_SHM_ATTACH && h->count != 0)
        return KVS_EPROTO;
    if (!within_limits(m))
        return KVS_ETOOBIG;
    if (body_len_of(m) != blen)
        return KVS_EPROTO;
    if (h->opcode == KVS_OP_SHM_RESERVE && !reply)
        get_lens(b + blen - 4ull * h->count, part_lens, h->count);
    else if (h->opcode == KVS_OP_SHM_VIEW && reply)
        get_lens(b + KVS_WIRE_SHM_VIEW_REP_FIXED, part_lens, h->count);
    return 0;
}

int kvs_wire_shm_decode(const void *buf, size_t len, uint32_t *part_lens,
                        kvs_wire_shm_msg_t *m)
{
    const uint8_t *b = (const uint8_t *)buf + KVS_WIRE_HDR_SIZE;
    kvs_wire_hdr_t *h = &m->hdr;
    size_t fixed;
    bool reply;

    memset(m, 0, sizeof(*m));
    if (len < KVS_WIRE_HDR_SIZE)
        return KVS_EPROTO;
    kvs_wire_hdr_load(buf, h);
    if (h->magic != KVS_WIRE_MAGIC)
        return KVS_EPROTO;
    if (h->version != KVS_WIRE_VERSION)
        return KVS_EPROTO_VERSION;
    if (!is_shm_op(h->opcode) || (h->flags & ~KVS_WIRE_F_REPLY) ||
        h->body_len != len - KVS_WIRE_HDR_SIZE)
        return KVS_EPROTO;
    reply = h->flags & KVS_WIRE_F_REPLY;
    if (reply && h->status != 0)
        return h->body_len == 0 && h->count == 0 ? 0 : KVS_EPROTO;
    if (h->count > KVS_PARTS_MAX)
        return KVS_ETOOBIG;
    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        fixed = reply ? KVS_WIRE_SHM_ATTACH_REP : KVS_WIRE_SHM_ATTACH_FIXED;
        break;
    case KVS_OP_SHM_RESERVE:
        fixed = reply ? KVS_WIRE_SHM_RESERVE_REP : KVS_WIRE_SHM_RESERVE_FIXED;
        break;
    case KVS_OP_SHM_VIEW:
        fixed = reply ? KVS_WIRE_SHM_VIEW_REP_FIXED : KVS_WIRE_SHM_VIEW_FIXED;
        break;
    case KVS_OP_SHM_RING:
        fixed = reply ? 0 : KVS_WIRE_SHM_RING_REQ;
        break;
    default:
        fixed = reply ? 0 : KVS_WIRE_SHM_ID_SIZE;
        break;
    }
    if (h->body_len < fixed)
        return KVS_EPROTO;
    return decode_body(b, h->body_len, part_lens, m);
}
