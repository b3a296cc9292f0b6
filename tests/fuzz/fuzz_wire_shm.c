/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the shm socket's frame decoder (transport/proto/
 * wire_shm.c). Input: one SOCK_SEQPACKET packet, as the daemon's and the
 * client's shm handlers receive it (there is never a payload). The decoder
 * must never crash or read out of bounds; whatever it accepts must keep
 * every byte string inside the packet, keep every count within its limit,
 * and re-encode to a packet of the same length that decodes to the same
 * meaning, field by field. The same entry point is replayed over the
 * committed corpus by replay.c in ordinary CTest runs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/wire_shm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[KVS_WIRE_SHM_FRAME_MAX];
static uint32_t lens1[KVS_PARTS_MAX], lens2[KVS_PARTS_MAX];

/* b lies inside [base, base + size). */
static void check_inside(kvs_wire_bytes_t b, const uint8_t *base, size_t size)
{
    const uint8_t *p = b.data;

    if (b.len == 0)
        return;
    if (p < base || b.len > size || (size_t)(p - base) > size - b.len)
        abort();
}

static void check_same_bytes(kvs_wire_bytes_t a, kvs_wire_bytes_t b)
{
    if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
        abort();
}

static void check_same_lens(const uint32_t *a, const uint32_t *b, uint32_t n)
{
    if (n && memcmp(a, b, 4ull * n) != 0)
        abort();
}

/* m was decoded from the packet [base, base + size), m2 from its
 * re-encoding: the same meaning, with everything inside its own packet. */
static void check_same(const kvs_wire_shm_msg_t *m,
                       const kvs_wire_shm_msg_t *m2, const uint8_t *base,
                       size_t size)
{
    const kvs_wire_hdr_t *h = &m->hdr, *h2 = &m2->hdr;
    int reply = (h->flags & KVS_WIRE_F_REPLY) != 0;

    if (h2->opcode != h->opcode || h2->flags != h->flags ||
        h2->req_id != h->req_id || h2->status != h->status ||
        h2->count != h->count || h->count > KVS_PARTS_MAX)
        abort();
    if (reply && h->status != 0) {
        if (h->count != 0 || h->body_len != 0)
            abort();
        return;
    }
    switch (h->opcode) {
    case KVS_OP_SHM_ATTACH:
        if (reply) {
            if (m2->u.attach_rep.arena_len != m->u.attach_rep.arena_len ||
                m2->u.attach_rep.max_block != m->u.attach_rep.max_block ||
                m2->u.attach_rep.lease_max_ms != m->u.attach_rep.lease_max_ms ||
                m2->u.attach_rep.stream_key != m->u.attach_rep.stream_key)
                abort();
            break;
        }
        check_inside(m->u.attach.token, base, size);
        check_inside(m->u.attach.ns, base, size);
        if (m->u.attach.token.len > KVS_WIRE_TOKEN_MAX ||
            m->u.attach.ns.len < 1 || m->u.attach.ns.len > KVS_NS_NAME_MAX ||
            m2->u.attach.features != m->u.attach.features ||
            m2->u.attach.elem_size != m->u.attach.elem_size)
            abort();
        check_same_bytes(m->u.attach.token, m2->u.attach.token);
        check_same_bytes(m->u.attach.ns, m2->u.attach.ns);
        break;
    case KVS_OP_SHM_RESERVE:
        if (reply) {
            if (h->count != 0 || m2->u.block.id != m->u.block.id ||
                m2->u.block.off != m->u.block.off ||
                m2->u.block.len != m->u.block.len)
                abort();
            break;
        }
        check_inside(m->u.reserve.key, base, size);
        check_inside(m->u.reserve.parent, base, size);
        if (m->u.reserve.key.len < 1 || m->u.reserve.key.len > KVS_KEY_MAX ||
            m->u.reserve.parent.len > KVS_KEY_MAX || h->count < 1 ||
            m2->u.reserve.cls != m->u.reserve.cls ||
            m2->u.reserve.elem_size != m->u.reserve.elem_size ||
            m2->u.reserve.flags != m->u.reserve.flags ||
            m2->u.reserve.ttl_ms != m->u.reserve.ttl_ms ||
            m2->u.reserve.group != m->u.reserve.group)
            abort();
        check_same_bytes(m->u.reserve.key, m2->u.reserve.key);
        check_same_bytes(m->u.reserve.parent, m2->u.reserve.parent);
        check_same_lens(m->u.reserve.part_lens, m2->u.reserve.part_lens,
                        h->count);
        break;
    case KVS_OP_SHM_VIEW:
        if (reply) {
            if (h->count < 1 || m2->u.block.id != m->u.block.id ||
                m2->u.block.off != m->u.block.off ||
                m2->u.block.len != m->u.block.len ||
                m2->u.block.tier != m->u.block.tier ||
                m2->u.block.cls != m->u.block.cls ||
                m2->u.block.expiry_ns != m->u.block.expiry_ns)
                abort();
            check_same_lens(m->u.block.part_lens, m2->u.block.part_lens,
                            h->count);
            break;
        }
        check_inside(m->u.view.key, base, size);
        if (h->count != 0 || m->u.view.key.len < 1 ||
            m->u.view.key.len > KVS_KEY_MAX ||
            m2->u.view.lease_ms != m->u.view.lease_ms)
            abort();
        check_same_bytes(m->u.view.key, m2->u.view.key);
        break;
    default: /* COMMIT, ABORT, RELEASE */
        if (h->count != 0 || (!reply && m2->u.id.id != m->u.id.id))
            abort();
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_wire_shm_msg_t m, m2;
    uint8_t *copy;
    size_t len;

    /* An exact-size heap copy so ASan sees any read past the packet. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    if (kvs_wire_shm_decode(copy, size, lens1, &m) == 0) {
        if (kvs_wire_shm_encode(&m, out, sizeof(out), &len) != 0)
            abort();
        if (len != size)
            abort();
        if (kvs_wire_shm_decode(out, len, lens2, &m2) != 0)
            abort();
        check_same(&m, &m2, copy, size);
    }
    free(copy);
    return 0;
}
