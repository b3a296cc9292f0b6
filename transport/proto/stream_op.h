/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stream opcodes' host form (docs/protocol.md section 9): streaming
 * puts, streaming fetches and peer links. They are opcodes of the one wire
 * protocol (kvstash/wire.h, KVS_OP_SPUT_BEGIN..KVS_OP_PUSH), encoded and
 * decoded by transport/proto/wire.c; this header gives the stream code a
 * flat view of one (kvs_smsg_t), the call that encodes one, and the readers
 * of the op-specific bytes after the body's string. A client's stream
 * opcodes are authenticated by the HELLO of the connection they arrive on,
 * a peer's by its HELLO with KVS_WIRE_FEAT_PEER and the shared secret.
 *
 * The frame travels in the UCX AM header (at most KVS_WIRE_INLINE_MAX
 * bytes); part bytes, when there are any (SPUT_PART, PART), are the AM data
 * (eager or rendezvous, UCX picks).
 *
 * Not a public header: shared by the daemon (server/) and the client
 * library (client/). The readers check every length against what is left;
 * nothing from the network is asserted.
 */
#ifndef KVS_STREAM_OP_H
#define KVS_STREAM_OP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/endian.h"
#include "kvstash/status.h"
#include "kvstash/types.h"
#include "kvstash/wire.h"

#define KVS_SMSG_MAX KVS_WIRE_INLINE_MAX /* frame bytes, at most */
#define KVS_SMSG_BODY_MAX KVS_WIRE_STREAM_BODY_MAX
#define KVS_SMSG_SECRET_MAX KVS_WIRE_TOKEN_MAX

#define KVS_SMSG_F_PUSH KVS_WIRE_STREAM_PUSH /* SPUT_BEGIN: a peer follows */
#define KVS_SMSG_F_INPLACE KVS_WIRE_STREAM_INPLACE /* in the shared arena */
#define KVS_SMSG_F_META KVS_WIRE_STREAM_META /* parent, TTL, group follow */
#define KVS_SMSG_F_SUM KVS_WIRE_STREAM_SUM   /* END: len is the checksum */

/* One stream opcode, flat: the header's opcode, req_id and status with the
 * body's fixed fields; body is the string and the rest, back to back. */
typedef struct kvs_smsg {
    uint8_t op;       /* KVS_OP_SPUT_BEGIN..KVS_OP_PUSH */
    uint8_t flags;    /* KVS_SMSG_F_* */
    uint16_t str_len; /* bytes of the leading body string */
    uint64_t id;
    uint32_t block;
    uint32_t part;
    int32_t status;
    uint32_t nparts;
    uint64_t len;
    uint64_t off;
    const uint8_t *body; /* decode: points into the frame */
    uint32_t body_len;   /* bytes of body */
} kvs_smsg_t;

/* The flat view of a decoded stream opcode. */
static inline void kvs_smsg_from_wire(const kvs_wire_msg_t *w, kvs_smsg_t *m)
{
    m->op = w->hdr.opcode;
    m->flags = (uint8_t)w->u.stream.flags;
    m->str_len = (uint16_t)w->u.stream.str.len;
    m->id = w->hdr.req_id;
    m->block = w->u.stream.block;
    m->part = w->u.stream.part;
    m->status = w->hdr.status;
    m->nparts = w->u.stream.nparts;
    m->len = w->u.stream.len;
    m->off = w->u.stream.off;
    m->body = w->u.stream.str.data;
    m->body_len = w->u.stream.str.len + w->u.stream.rest.len;
}

/* Encodes m with body (blen bytes: m->str_len of string, then the rest)
 * into buf (KVS_SMSG_MAX bytes); *len_out is the frame's size. payload:
 * part bytes follow as the AM data. -EINVAL when m does not fit. */
static inline int kvs_smsg_encode(const kvs_smsg_t *m, const void *body,
                                  size_t blen, void *buf, size_t *len_out)
{
    const uint8_t *b = body;
    kvs_wire_msg_t w;

    if (m->str_len > blen || blen > KVS_SMSG_BODY_MAX)
        return -EINVAL;
    memset(&w, 0, sizeof(w));
    w.hdr.opcode = m->op;
    w.hdr.flags = (m->op == KVS_OP_SPUT_PART || m->op == KVS_OP_PART)
                      ? KVS_WIRE_F_PAYLOAD
                      : 0;
    w.hdr.req_id = m->id;
    w.hdr.status = m->status;
    w.u.stream.block = m->block;
    w.u.stream.part = m->part;
    w.u.stream.nparts = m->nparts;
    w.u.stream.flags = m->flags;
    w.u.stream.len = m->len;
    w.u.stream.off = m->off;
    w.u.stream.str.data = b;
    w.u.stream.str.len = m->str_len;
    w.u.stream.rest.data = b ? b + m->str_len : NULL;
    w.u.stream.rest.len = (uint32_t)(blen - m->str_len);
    return kvs_wire_encode(&w, buf, KVS_SMSG_MAX, len_out);
}

/* A cursor over the body after its leading string. */
typedef struct kvs_smsg_rd {
    const uint8_t *p;
    uint32_t left;
} kvs_smsg_rd_t;

static inline void kvs_smsg_rd_init(kvs_smsg_rd_t *rd, const kvs_smsg_t *m)
{
    rd->p = m->body + m->str_len;
    rd->left = m->body_len - m->str_len;
}

/* A (u8 len, bytes) key; KVS_EPROTO when short or out of range. */
static inline int kvs_smsg_rd_key(kvs_smsg_rd_t *rd, const uint8_t **key_out,
                                  uint32_t *len_out)
{
    uint32_t l;

    if (rd->left < 1)
        return KVS_EPROTO;
    l = rd->p[0];
    if (l < 1 || l > KVS_KEY_MAX || rd->left < 1 + l)
        return KVS_EPROTO;
    *key_out = rd->p + 1;
    *len_out = l;
    rd->p += 1 + l;
    rd->left -= 1 + l;
    return 0;
}

/* n part lengths (u32 each) into lens; their sum into *total_out. */
static inline int kvs_smsg_rd_lens(kvs_smsg_rd_t *rd, uint32_t n,
                                   uint32_t *lens, uint64_t *total_out)
{
    uint64_t total = 0;

    if (n < 1 || n > KVS_PARTS_MAX || rd->left < 4ull * n)
        return KVS_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        lens[i] = kvs_le32_load(rd->p + 4 * i);
        total += lens[i];
    }
    rd->p += 4 * n;
    rd->left -= 4 * n;
    *total_out = total;
    return 0;
}

/* The parts a PART between daemons carries into a block of nparts parts of
 * lens, of which got[i] != 0 are in already: its part and, with nparts >= 2
 * (a run, KVS_WIRE_FEAT_PART_RUN), the ones after it, whose lengths add up
 * to len. The count, or 0 when the PART does not fit the block (a
 * part out of range, a run past the last part or onto one received, or a
 * length that is not the parts'). */
static inline uint32_t kvs_smsg_part_run(const kvs_smsg_t *m, uint32_t nparts,
                                         const uint32_t *lens,
                                         const uint8_t *got, uint64_t len)
{
    uint32_t n = m->nparts ? m->nparts : 1;
    uint64_t total = 0;

    if (m->part >= nparts || n > nparts - m->part || m->len != len)
        return 0;
    for (uint32_t k = 0; k < n; k++) {
        if (got[m->part + k])
            return 0;
        total += lens[m->part + k];
    }
    return total == len ? n : 0;
}

/* What a streaming put carries beyond class and flags, as an ordinary put
 * does (KVS_SMSG_F_META). All zero: none. */
typedef struct kvs_smeta {
    uint64_t ttl_ms;
    uint64_t group;
    uint8_t parent_len; /* 0: no parent */
    uint8_t parent[KVS_KEY_MAX];
} kvs_smeta_t;

#define KVS_SMETA_FIXED 17u /* ttl, group, parent_len */

static inline int kvs_smeta_any(const kvs_smeta_t *mt)
{
    return mt->ttl_ms || mt->group || mt->parent_len;
}

/* Writes mt at p (KVS_SMETA_FIXED + parent_len bytes); returns that. */
static inline size_t kvs_smeta_put(const kvs_smeta_t *mt, uint8_t *p)
{
    kvs_le64_store(p, mt->ttl_ms);
    kvs_le64_store(p + 8, mt->group);
    p[16] = mt->parent_len;
    if (mt->parent_len)
        memcpy(p + KVS_SMETA_FIXED, mt->parent, mt->parent_len);
    return KVS_SMETA_FIXED + mt->parent_len;
}

/* Reads what kvs_smeta_put wrote; KVS_EPROTO when short or out of range. */
static inline int kvs_smsg_rd_meta(kvs_smsg_rd_t *rd, kvs_smeta_t *mt)
{
    uint32_t pl;

    if (rd->left < KVS_SMETA_FIXED)
        return KVS_EPROTO;
    pl = rd->p[16];
    if (pl > KVS_KEY_MAX || rd->left < KVS_SMETA_FIXED + pl)
        return KVS_EPROTO;
    mt->ttl_ms = kvs_le64_load(rd->p);
    mt->group = kvs_le64_load(rd->p + 8);
    mt->parent_len = (uint8_t)pl;
    if (pl)
        memcpy(mt->parent, rd->p + KVS_SMETA_FIXED, pl);
    rd->p += KVS_SMETA_FIXED + pl;
    rd->left -= KVS_SMETA_FIXED + pl;
    return 0;
}

#endif
