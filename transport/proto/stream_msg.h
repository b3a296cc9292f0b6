/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stream messages: streaming puts, streaming fetches and peer links
 * (docs/protocol.md, "Streaming"). They travel as UCX active messages with
 * their own id (KVS_STREAM_AM_ID), beside the request/reply frames of
 * kvstash/wire.h, on the same endpoints: a client's stream messages are
 * authenticated by the HELLO of the connection they arrive on, a peer's by
 * the stream HELLO that carried the shared secret.
 *
 * A message is a fixed 48-byte little-endian header plus a body of at most
 * KVS_SMSG_BODY_MAX bytes, all in the AM header; part bytes, when there are
 * any, are the AM data (eager or rendezvous, UCX picks).
 *
 *   0      4    5     6        8            16      20      24      28
 *   +------+----+-----+--------+------------+-------+-------+-------+
 *   |magic | op |flags| str_len|   id       | block | part  |status |
 *   +------+----+-----+--------+------------+-------+-------+-------+
 *   28      32           40           48
 *   +-------+------------+------------+---- body (str_len bytes of a
 *   |nparts |   len      |   off      |     string, then op-specific)
 *   +-------+------------+------------+
 *
 * Not a public header: shared by the daemon (stream.c) and the client
 * library (client_stream.c). Decoding checks every length against the
 * received size; nothing from the network is asserted.
 */
#ifndef KVS_STREAM_MSG_H
#define KVS_STREAM_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/endian.h"
#include "kvstash/status.h"
#include "kvstash/types.h"

#define KVS_STREAM_AM_ID   8u          /* beside KVS_AM_ID (7) */
#define KVS_SMSG_MAGIC     0x5353564bu /* bytes "KVSS" */
#define KVS_SMSG_HDR_SIZE  48u
#define KVS_SMSG_MAX       4608u       /* header + body: fits any AM header
                                          kvstashd accepts */
#define KVS_SMSG_BODY_MAX  (KVS_SMSG_MAX - KVS_SMSG_HDR_SIZE)
#define KVS_SMSG_SECRET_MAX 256u

/* Opcodes. Direction: C client, D its daemon, P a peer daemon. */
enum kvs_smsg_op {
    KVS_SOP_PUT_BEGIN = 1,  /* C->D id, block=cls, part=put flags, nparts;
                               body: key, part lens (u32 x nparts), then
                               optional push peer (flags PUSH) */
    KVS_SOP_PUT_PART  = 2,  /* C->D id, part; data: the part's bytes */
    KVS_SOP_PUT_SEAL  = 3,  /* C->D id -> PUT_DONE */
    KVS_SOP_PUT_DONE  = 4,  /* D->C id, status */
    KVS_SOP_PUT_ABORT = 5,  /* C->D id */
    KVS_SOP_FETCH     = 6,  /* C->D id, nparts=nkeys, len=wait ms;
                               body: peer name, keys (u8 len, bytes)...
                               D->P the same with the namespace name */
    KVS_SOP_CANCEL    = 7,  /* C->D, D->P: id */
    KVS_SOP_BLOCK     = 8,  /* P->D, D->C: id, block, nparts, len;
                               body: part lens */
    KVS_SOP_PART      = 9,  /* P->D, D->C: id, block, part, off, len; data */
    KVS_SOP_END       = 10, /* P->D, D->C, D->P (push): id, block, status */
    KVS_SOP_HELLO     = 11, /* D->P body: secret; P->D status (REPLY) */
    KVS_SOP_PING      = 12, /* either way on a link: liveness */
    KVS_SOP_PUSH      = 13, /* D->P id, nparts, block=cls, part=put flags;
                               body: namespace, key (u8 len, bytes), lens */
    KVS_SOP_COUNT
};

#define KVS_SMSG_F_REPLY (1u << 0)
#define KVS_SMSG_F_PUSH  (1u << 1) /* PUT_BEGIN: a peer name follows */

typedef struct kvs_smsg {
    uint8_t op;
    uint8_t flags;
    uint16_t str_len;             /* bytes of the leading body string */
    uint64_t id;
    uint32_t block;
    uint32_t part;
    int32_t status;
    uint32_t nparts;
    uint64_t len;
    uint64_t off;
    const uint8_t *body;          /* decode: points into the message */
    uint32_t body_len;            /* bytes of body */
} kvs_smsg_t;

/* Writes the header of m into buf (KVS_SMSG_HDR_SIZE bytes). */
static inline void kvs_smsg_put_hdr(void *buf, const kvs_smsg_t *m)
{
    uint8_t *p = buf;

    kvs_le32_store(p, KVS_SMSG_MAGIC);
    p[4] = m->op;
    p[5] = m->flags;
    kvs_le16_store(p + 6, m->str_len);
    kvs_le64_store(p + 8, m->id);
    kvs_le32_store(p + 16, m->block);
    kvs_le32_store(p + 20, m->part);
    kvs_le32_store(p + 24, (uint32_t)m->status);
    kvs_le32_store(p + 28, m->nparts);
    kvs_le64_store(p + 32, m->len);
    kvs_le64_store(p + 40, m->off);
}

/* Reads a message of len bytes; KVS_EPROTO when it is not one. */
static inline int kvs_smsg_decode(const void *buf, size_t len, kvs_smsg_t *m)
{
    const uint8_t *p = buf;

    if (len < KVS_SMSG_HDR_SIZE || len > KVS_SMSG_MAX ||
        kvs_le32_load(p) != KVS_SMSG_MAGIC)
        return KVS_EPROTO;
    m->op = p[4];
    m->flags = p[5];
    m->str_len = kvs_le16_load(p + 6);
    m->id = kvs_le64_load(p + 8);
    m->block = kvs_le32_load(p + 16);
    m->part = kvs_le32_load(p + 20);
    m->status = (int32_t)kvs_le32_load(p + 24);
    m->nparts = kvs_le32_load(p + 28);
    m->len = kvs_le64_load(p + 32);
    m->off = kvs_le64_load(p + 40);
    m->body = p + KVS_SMSG_HDR_SIZE;
    m->body_len = (uint32_t)(len - KVS_SMSG_HDR_SIZE);
    if (m->op == 0 || m->op >= KVS_SOP_COUNT || m->str_len > m->body_len)
        return KVS_EPROTO;
    return 0;
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

#endif
