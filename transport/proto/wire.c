/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire codec: encodes host-form messages into frames and decodes frames back,
 * with no I/O and no allocation (the scratch is allocated once by its owner).
 * This is the module the fuzzer drives, so every read goes through a cursor
 * that checks the remaining length first, and every count is checked against
 * the limits before anything is sized from it.
 *
 * A frame, as laid out by this file (see include/kvstash/wire.h):
 *
 *   +------------------- 32-byte header -------------------+---- body ----+
 *   | magic | ver | op | flags | req_id | body_len | status | count | rsvd |
 *   +-------------------------------------------------------+--------------+
 *
 * Bodies are sequences of fixed-width little-endian integers and byte
 * strings, each string preceded by its length. Keys are "u8 len, bytes".
 * Decoding is strict: a body must be consumed exactly (trailing bytes are
 * KVS_EPROTO), so one byte sequence has one meaning.
 */
#include "kvstash/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"

struct kvs_wire_scratch {
    kvs_wire_bytes_t keys[KVS_WIRE_KEYS_MAX];
    kvs_wire_put_ent_t puts[KVS_WIRE_KEYS_MAX];
    kvs_wire_get_ent_t gets[KVS_WIRE_KEYS_MAX];
    kvs_wire_block_t blocks[KVS_WIRE_KEYS_MAX];
    kvs_wire_stat_t stats[KVS_WIRE_KEYS_MAX];
    kvs_wire_scan_ent_t scans[KVS_WIRE_KEYS_MAX];
    int32_t status[KVS_WIRE_KEYS_MAX];
    /* Every part length of one frame: each takes 4 body bytes, so a body can
     * never describe more than this. */
    uint32_t part_lens[KVS_WIRE_BODY_MAX / 4];
};

kvs_wire_scratch_t *kvs_wire_scratch_create(void)
{
    return calloc(1, sizeof(kvs_wire_scratch_t));
}

void kvs_wire_scratch_destroy(kvs_wire_scratch_t *scratch)
{
    free(scratch);
}

void kvs_wire_limits_default(kvs_wire_limits_t *lim)
{
    lim->max_body = 64u << 10;
    lim->max_keys = KVS_WIRE_KEYS_MAX;
    lim->max_payload = 64u << 20;
}

static const char *const op_names[KVS_OP_COUNT] = {
    [KVS_OP_HELLO] = "HELLO",
    [KVS_OP_PUT] = "PUT",
    [KVS_OP_GET] = "GET",
    [KVS_OP_DATA] = "DATA",
    [KVS_OP_MATCH] = "MATCH",
    [KVS_OP_EXISTS] = "EXISTS",
    [KVS_OP_DELETE] = "DELETE",
    [KVS_OP_PIN] = "PIN",
    [KVS_OP_UNPIN] = "UNPIN",
    [KVS_OP_PREFETCH] = "PREFETCH",
    [KVS_OP_RELEASE] = "RELEASE",
    [KVS_OP_STAT] = "STAT",
    [KVS_OP_VERIFY] = "VERIFY",
    [KVS_OP_BIND] = "BIND",
    [KVS_OP_SCAN] = "SCAN",
    [KVS_OP_SPUT_BEGIN] = "SPUT_BEGIN",
    [KVS_OP_SPUT_PART] = "SPUT_PART",
    [KVS_OP_SPUT_SEAL] = "SPUT_SEAL",
    [KVS_OP_SPUT_DONE] = "SPUT_DONE",
    [KVS_OP_SPUT_ABORT] = "SPUT_ABORT",
    [KVS_OP_FETCH] = "FETCH",
    [KVS_OP_CANCEL] = "CANCEL",
    [KVS_OP_BLOCK] = "BLOCK",
    [KVS_OP_PART] = "PART",
    [KVS_OP_END] = "END",
    [KVS_OP_PING] = "PING",
    [KVS_OP_PUSH] = "PUSH",
};

const char *kvs_wire_op_name(unsigned opcode)
{
    if (opcode < KVS_OP_COUNT && op_names[opcode])
        return op_names[opcode];
    return "?";
}

/* ------------------------------------------------------------------ */
/* Little-endian loads and stores through memcpy: no alignment assumed. */

static inline void st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

/* ------------------------------------------------------------------ */
/* Encoding: a cursor that records overflow and keeps going, so the body
 * code has no error branches; the result is checked once at the end. */

typedef struct enc {
    uint8_t *p;
    size_t cap;
    size_t len;
    int err;
} enc_t;

static uint8_t *enc_take(enc_t *e, size_t n)
{
    if (e->err || n > e->cap - e->len) {
        if (!e->err)
            e->err = -ENOBUFS;
        return NULL;
    }
    uint8_t *p = e->p + e->len;
    e->len += n;
    return p;
}

static void enc_u8(enc_t *e, uint8_t v)
{
    uint8_t *p = enc_take(e, 1);
    if (p)
        *p = v;
}

static void enc_u16(enc_t *e, uint16_t v)
{
    uint8_t *p = enc_take(e, 2);
    if (p)
        st16(p, v);
}

static void enc_u32(enc_t *e, uint32_t v)
{
    uint8_t *p = enc_take(e, 4);
    if (p)
        st32(p, v);
}

static void enc_u64(enc_t *e, uint64_t v)
{
    uint8_t *p = enc_take(e, 8);
    if (p)
        st64(p, v);
}

static void enc_bytes(enc_t *e, const void *src, size_t n)
{
    uint8_t *p = enc_take(e, n);
    if (p && n)
        memcpy(p, src, n);
}

static void enc_key(enc_t *e, kvs_wire_bytes_t k, uint32_t min_len)
{
    if (k.len < min_len || k.len > KVS_KEY_MAX || (k.len && !k.data)) {
        e->err = -EINVAL;
        return;
    }
    enc_u8(e, (uint8_t)k.len);
    enc_bytes(e, k.data, k.len);
}

static void enc_keys(enc_t *e, const kvs_wire_bytes_t *keys, uint32_t n)
{
    if (n && !keys) {
        e->err = -EINVAL;
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        enc_key(e, keys[i], 1);
}

static void enc_put(enc_t *e, const kvs_wire_msg_t *m)
{
    const kvs_wire_put_ent_t *ents = m->u.put.ents;

    if (!ents) {
        e->err = -EINVAL;
        return;
    }
    for (uint32_t i = 0; i < m->hdr.count; i++) {
        const kvs_wire_put_ent_t *pe = &ents[i];

        if (pe->key.len < 1 || pe->key.len > KVS_KEY_MAX ||
            pe->parent.len > KVS_KEY_MAX || pe->nparts < 1 ||
            pe->nparts > KVS_PARTS_MAX || !pe->part_lens ||
            (pe->flags & ~KVS_WIRE_PUT_KNOWN) || pe->cls >= KVS_CLASS_COUNT) {
            e->err = -EINVAL;
            return;
        }
        enc_u8(e, (uint8_t)pe->key.len);
        enc_u8(e, (uint8_t)pe->parent.len);
        enc_u8(e, pe->cls);
        enc_u8(e, pe->elem_size);
        enc_u32(e, pe->flags);
        enc_u64(e, pe->ttl_ms);
        enc_u64(e, pe->group);
        enc_u32(e, pe->nparts);
        enc_u32(e, 0);
        enc_bytes(e, pe->key.data, pe->key.len);
        enc_bytes(e, pe->parent.data, pe->parent.len);
        for (uint32_t j = 0; j < pe->nparts; j++)
            enc_u32(e, pe->part_lens[j]);
    }
}

/* Every stream opcode: the 32-byte fixed part, the string, the rest. */
static void enc_stream(enc_t *e, const kvs_wire_msg_t *m)
{
    kvs_wire_bytes_t str = m->u.stream.str, rest = m->u.stream.rest;

    if (str.len > UINT16_MAX || (str.len && !str.data) ||
        (rest.len && !rest.data) ||
        (m->u.stream.flags & ~KVS_WIRE_STREAM_KNOWN) ||
        (size_t)str.len + rest.len > KVS_WIRE_STREAM_BODY_MAX) {
        e->err = -EINVAL;
        return;
    }
    enc_u32(e, m->u.stream.block);
    enc_u32(e, m->u.stream.part);
    enc_u32(e, m->u.stream.nparts);
    enc_u16(e, (uint16_t)str.len);
    enc_u16(e, (uint16_t)m->u.stream.flags);
    enc_u64(e, m->u.stream.len);
    enc_u64(e, m->u.stream.off);
    enc_bytes(e, str.data, str.len);
    enc_bytes(e, rest.data, rest.len);
}

static void enc_body(enc_t *e, const kvs_wire_msg_t *m)
{
    const kvs_wire_hdr_t *h = &m->hdr;
    bool reply = h->flags & KVS_WIRE_F_REPLY;
    uint32_t n = h->count;

    if (kvs_wire_op_is_stream(h->opcode)) {
        enc_stream(e, m);
        return;
    }
    if (reply && h->status != 0)
        return;
    switch (h->opcode) {
    case KVS_OP_HELLO:
        if (!reply) {
            kvs_wire_bytes_t tok = m->u.hello.token, ns = m->u.hello.ns;

            bool peer = m->u.hello.features & KVS_WIRE_FEAT_PEER;

            if (tok.len > KVS_WIRE_TOKEN_MAX || (ns.len < 1 && !peer) ||
                ns.len > KVS_NS_NAME_MAX || (tok.len && !tok.data) ||
                (ns.len && !ns.data)) {
                e->err = -EINVAL;
                return;
            }
            enc_u32(e, m->u.hello.features);
            enc_u8(e, m->u.hello.elem_size);
            enc_u8(e, 0);
            enc_u16(e, 0);
            enc_u16(e, (uint16_t)tok.len);
            enc_u16(e, (uint16_t)ns.len);
            enc_bytes(e, tok.data, tok.len);
            enc_bytes(e, ns.data, ns.len);
        } else {
            enc_u32(e, m->u.hello_rep.features);
            enc_u32(e, m->u.hello_rep.max_body);
            enc_u32(e, m->u.hello_rep.max_payload);
            enc_u32(e, m->u.hello_rep.max_inflight);
            enc_u32(e, m->u.hello_rep.max_keys);
            enc_u32(e, m->u.hello_rep.lease_max_ms);
            enc_u64(e, m->u.hello_rep.session);
            enc_u64(e, m->u.hello_rep.bind_secret);
            enc_u32(e, m->u.hello_rep.bulk_port);
            enc_u32(e, m->u.hello_rep.worker_port);
        }
        return;
    case KVS_OP_BIND:
        if (!reply) {
            enc_u64(e, m->u.bind.session);
            enc_u64(e, m->u.bind.secret);
        }
        return;
    case KVS_OP_PUT:
    case KVS_OP_DELETE:
    case KVS_OP_PIN:
    case KVS_OP_UNPIN:
        if (reply) {
            if (n && !m->u.status_rep.status) {
                e->err = -EINVAL;
                return;
            }
            for (uint32_t i = 0; i < n; i++)
                enc_u32(e, (uint32_t)m->u.status_rep.status[i]);
            return;
        }
        if (h->opcode == KVS_OP_PUT) {
            enc_put(e, m);
            return;
        }
        if (h->opcode != KVS_OP_DELETE) {
            enc_u32(e, m->u.keys.flags);
            enc_u32(e, 0);
        }
        enc_keys(e, m->u.keys.keys, n);
        return;
    case KVS_OP_GET:
        if (!reply) {
            if (!m->u.get.ents) {
                e->err = -EINVAL;
                return;
            }
            enc_u64(e, m->u.get.lease_id);
            for (uint32_t i = 0; i < n; i++) {
                enc_u64(e, m->u.get.ents[i].cap);
                enc_key(e, m->u.get.ents[i].key, 1);
            }
        } else {
            if (n && !m->u.get_rep.blocks) {
                e->err = -EINVAL;
                return;
            }
            for (uint32_t i = 0; i < n; i++) {
                const kvs_wire_block_t *b = &m->u.get_rep.blocks[i];

                enc_u32(e, (uint32_t)b->status);
                enc_u32(e, b->nparts);
                enc_u64(e, b->len);
                enc_u8(e, b->tier);
                enc_u8(e, b->cls);
                enc_u16(e, 0);
                enc_u32(e, 0);
            }
        }
        return;
    case KVS_OP_DATA:
        if (m->u.data.nparts < 1 || m->u.data.nparts > KVS_PARTS_MAX ||
            !m->u.data.part_lens) {
            e->err = -EINVAL;
            return;
        }
        enc_u64(e, m->u.data.len);
        enc_u32(e, m->u.data.nparts);
        enc_u8(e, m->u.data.tier);
        enc_u8(e, m->u.data.cls);
        enc_u16(e, 0);
        for (uint32_t i = 0; i < m->u.data.nparts; i++)
            enc_u32(e, m->u.data.part_lens[i]);
        return;
    case KVS_OP_MATCH:
        if (!reply) {
            enc_u32(e, m->u.keys.flags);
            enc_u32(e, m->u.keys.lease_ms);
            enc_keys(e, m->u.keys.keys, n);
        } else {
            if (n && !m->u.match_rep.tiers) {
                e->err = -EINVAL;
                return;
            }
            enc_u64(e, m->u.match_rep.lease_id);
            enc_bytes(e, m->u.match_rep.tiers, n);
        }
        return;
    case KVS_OP_EXISTS:
        if (!reply) {
            enc_keys(e, m->u.keys.keys, n);
        } else {
            if (n && !m->u.exists_rep.present) {
                e->err = -EINVAL;
                return;
            }
            enc_bytes(e, m->u.exists_rep.present, n);
        }
        return;
    case KVS_OP_PREFETCH:
        if (!reply)
            enc_keys(e, m->u.keys.keys, n);
        else
            enc_u64(e, m->u.prefetch_rep.promoted);
        return;
    case KVS_OP_RELEASE:
        if (!reply)
            enc_u64(e, m->u.release.lease_id);
        return;
    case KVS_OP_STAT:
        if (!reply)
            return;
        if (n && !m->u.stat_rep.ents) {
            e->err = -EINVAL;
            return;
        }
        for (uint32_t i = 0; i < n; i++) {
            kvs_wire_bytes_t name = m->u.stat_rep.ents[i].name;

            if (name.len < 1 || name.len > KVS_WIRE_STAT_NAME_MAX ||
                !name.data) {
                e->err = -EINVAL;
                return;
            }
            enc_u8(e, (uint8_t)name.len);
            enc_bytes(e, name.data, name.len);
            enc_u64(e, m->u.stat_rep.ents[i].value);
        }
        return;
    case KVS_OP_VERIFY:
        if (reply) {
            enc_u64(e, m->u.verify_rep.checked);
            enc_u64(e, m->u.verify_rep.bad);
        }
        return;
    case KVS_OP_SCAN:
        if (!reply) {
            enc_u64(e, m->u.scan.group);
            enc_u32(e, m->u.scan.cursor);
            enc_u32(e, 0);
            return;
        }
        if (n && !m->u.scan_rep.ents) {
            e->err = -EINVAL;
            return;
        }
        enc_u32(e, m->u.scan_rep.next);
        enc_u32(e, 0);
        for (uint32_t i = 0; i < n; i++) {
            const kvs_wire_scan_ent_t *se = &m->u.scan_rep.ents[i];

            if (se->key.len < 1 || se->key.len > KVS_KEY_MAX ||
                se->parent.len > KVS_KEY_MAX) {
                e->err = -EINVAL;
                return;
            }
            enc_u8(e, (uint8_t)se->key.len);
            enc_u8(e, (uint8_t)se->parent.len);
            enc_u8(e, se->tier);
            enc_u8(e, se->cls);
            enc_u32(e, se->nparts);
            enc_u64(e, se->len);
            enc_u64(e, se->group);
            enc_u64(e, se->expiry_ms);
            enc_bytes(e, se->key.data, se->key.len);
            enc_bytes(e, se->parent.data, se->parent.len);
        }
        return;
    default:
        e->err = -EINVAL;
        return;
    }
}

int kvs_wire_encode(const kvs_wire_msg_t *msg, void *buf, size_t cap,
                    size_t *len_out)
{
    const kvs_wire_hdr_t *h = &msg->hdr;
    enc_t e = {.p = buf, .cap = cap};
    uint8_t *hp;

    if (h->opcode == 0 || h->opcode >= KVS_OP_COUNT ||
        (h->flags & ~KVS_WIRE_F_KNOWN) || h->count > KVS_WIRE_KEYS_MAX)
        return -EINVAL;
    hp = enc_take(&e, KVS_WIRE_HDR_SIZE);
    if (!hp)
        return -ENOBUFS;
    enc_body(&e, msg);
    if (e.err)
        return e.err;
    if (e.len - KVS_WIRE_HDR_SIZE > KVS_WIRE_BODY_MAX)
        return -EINVAL;
    kvs_wire_hdr_store(hp, h, (uint32_t)(e.len - KVS_WIRE_HDR_SIZE));
    *len_out = e.len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding: a bounded cursor. Every take checks the remaining bytes. */

typedef struct dec {
    const uint8_t *p;
    size_t len;
    size_t off;
} dec_t;

static const uint8_t *dec_take(dec_t *d, size_t n)
{
    if (n > d->len - d->off)
        return NULL;
    const uint8_t *p = d->p + d->off;
    d->off += n;
    return p;
}

#define DEC_FIXED(d, n, ptr)                                                   \
    do {                                                                       \
        (ptr) = dec_take((d), (n));                                            \
        if (!(ptr))                                                            \
            return KVS_EPROTO;                                                 \
    } while (0)

/* A key: u8 length then bytes. Length 0 is malformed; over KVS_KEY_MAX is
 * too big (a distinct status, so a client learns which rule it broke). */
static int dec_key(dec_t *d, uint32_t min_len, kvs_wire_bytes_t *out)
{
    const uint8_t *p = dec_take(d, 1);
    const uint8_t *data;

    if (!p)
        return KVS_EPROTO;
    if (*p < min_len)
        return KVS_EPROTO;
    if (*p > KVS_KEY_MAX)
        return KVS_ETOOBIG;
    data = dec_take(d, *p);
    if (!data)
        return KVS_EPROTO;
    out->data = data;
    out->len = *p;
    return 0;
}

static int dec_keys(dec_t *d, uint32_t n, kvs_wire_scratch_t *s,
                    const kvs_wire_bytes_t **keys_out)
{
    for (uint32_t i = 0; i < n; i++) {
        int ret = dec_key(d, 1, &s->keys[i]);
        if (ret)
            return ret;
    }
    *keys_out = s->keys;
    return 0;
}

static int dec_put(dec_t *d, const kvs_wire_msg_t *m, uint64_t payload_len,
                   const kvs_wire_limits_t *lim, kvs_wire_scratch_t *s,
                   const kvs_wire_put_ent_t **ents_out)
{
    size_t nlens = 0;
    uint64_t off = 0;

    for (uint32_t i = 0; i < m->hdr.count; i++) {
        kvs_wire_put_ent_t *pe = &s->puts[i];
        const uint8_t *f;
        uint32_t klen, plen;

        DEC_FIXED(d, KVS_WIRE_PUT_ENT_FIXED, f);
        klen = f[0];
        plen = f[1];
        pe->cls = f[2];
        pe->elem_size = f[3];
        pe->flags = ld32(f + 4);
        pe->ttl_ms = ld64(f + 8);
        pe->group = ld64(f + 16);
        pe->nparts = ld32(f + 24);
        if (klen == 0 || pe->nparts == 0 || pe->cls >= KVS_CLASS_COUNT ||
            (pe->flags & ~KVS_WIRE_PUT_KNOWN))
            return KVS_EPROTO;
        if (klen > KVS_KEY_MAX || plen > KVS_KEY_MAX ||
            pe->nparts > KVS_PARTS_MAX)
            return KVS_ETOOBIG;
        DEC_FIXED(d, klen, pe->key.data);
        pe->key.len = klen;
        if (plen) {
            DEC_FIXED(d, plen, pe->parent.data);
        } else {
            pe->parent.data = NULL;
        }
        pe->parent.len = plen;
        /* Each length takes 4 body bytes, so a bounded body bounds nlens
         * below the scratch's capacity; check the bytes first anyway. */
        if ((uint64_t)pe->nparts * 4 > d->len - d->off ||
            nlens + pe->nparts > KVS_ARRAY_SIZE(s->part_lens))
            return KVS_EPROTO;
        pe->data_len = 0;
        for (uint32_t j = 0; j < pe->nparts; j++) {
            s->part_lens[nlens + j] = ld32(d->p + d->off + 4 * j);
            pe->data_len += s->part_lens[nlens + j];
        }
        d->off += (size_t)pe->nparts * 4;
        pe->part_lens = &s->part_lens[nlens];
        nlens += pe->nparts;
        pe->data_off = off;
        off += pe->data_len;
        if (off > lim->max_payload)
            return KVS_ETOOBIG;
    }
    if (off != payload_len)
        return KVS_EPROTO;
    *ents_out = s->puts;
    return 0;
}

int kvs_wire_decode_hdr(const void *buf, size_t len,
                        const kvs_wire_limits_t *lim, kvs_wire_hdr_t *hdr_out)
{
    kvs_wire_hdr_t h;

    if (len < KVS_WIRE_HDR_SIZE)
        return KVS_EPROTO;
    kvs_wire_hdr_load(buf, &h);
    *hdr_out = h;
    if (h.magic != KVS_WIRE_MAGIC)
        return KVS_EPROTO;
    if (h.version != KVS_WIRE_VERSION)
        return KVS_EPROTO_VERSION;
    if ((h.flags & ~KVS_WIRE_F_KNOWN) || h.opcode == 0 ||
        h.opcode >= KVS_OP_COUNT)
        return KVS_EPROTO;
    if (h.body_len > lim->max_body || h.body_len > KVS_WIRE_BODY_MAX)
        return KVS_ETOOBIG;
    if (h.body_len != len - KVS_WIRE_HDR_SIZE)
        return KVS_EPROTO;
    return 0;
}

/* Which messages carry a payload: PUT requests, DATA, SPUT_PART and PART,
 * always (a stream part's payload may be empty: a part of 0 bytes). */
static bool has_payload(const kvs_wire_hdr_t *h)
{
    if (h->opcode == KVS_OP_DATA || h->opcode == KVS_OP_SPUT_PART ||
        h->opcode == KVS_OP_PART)
        return true;
    return h->opcode == KVS_OP_PUT && !(h->flags & KVS_WIRE_F_REPLY);
}

/* Batch requests carry 1..max_keys entries. */
static int check_count(uint32_t n, const kvs_wire_limits_t *lim)
{
    if (n == 0)
        return KVS_EPROTO;
    if (n > lim->max_keys || n > KVS_WIRE_KEYS_MAX)
        return KVS_ETOOBIG;
    return 0;
}

static int dec_request(dec_t *d, kvs_wire_msg_t *m, uint64_t payload_len,
                       const kvs_wire_limits_t *lim, kvs_wire_scratch_t *s)
{
    uint32_t n = m->hdr.count;
    const uint8_t *f;
    int ret;

    switch (m->hdr.opcode) {
    case KVS_OP_HELLO: {
        uint32_t tlen, nlen;

        DEC_FIXED(d, KVS_WIRE_HELLO_FIXED, f);
        m->u.hello.features = ld32(f);
        m->u.hello.elem_size = f[4];
        tlen = ld16(f + 8);
        nlen = ld16(f + 10);
        if (tlen > KVS_WIRE_TOKEN_MAX || nlen > KVS_NS_NAME_MAX)
            return KVS_ETOOBIG;
        if (nlen == 0 && !(m->u.hello.features & KVS_WIRE_FEAT_PEER))
            return KVS_EPROTO; /* only a peer's HELLO names no namespace */
        m->u.hello.token.len = tlen;
        m->u.hello.token.data = NULL;
        if (tlen)
            DEC_FIXED(d, tlen, m->u.hello.token.data);
        m->u.hello.ns.len = nlen;
        if (nlen)
            DEC_FIXED(d, nlen, m->u.hello.ns.data);
        return 0;
    }
    case KVS_OP_PUT:
        if ((ret = check_count(n, lim)))
            return ret;
        return dec_put(d, m, payload_len, lim, s, &m->u.put.ents);
    case KVS_OP_GET:
        if ((ret = check_count(n, lim)))
            return ret;
        DEC_FIXED(d, KVS_WIRE_GET_FIXED, f);
        m->u.get.lease_id = ld64(f);
        for (uint32_t i = 0; i < n; i++) {
            DEC_FIXED(d, KVS_WIRE_GET_ENT_FIXED, f);
            s->gets[i].cap = ld64(f);
            if ((ret = dec_key(d, 1, &s->gets[i].key)))
                return ret;
        }
        m->u.get.ents = s->gets;
        return 0;
    case KVS_OP_DATA:
        /* DATA travels from the daemon to a client; decode it anyway so
         * that a client can use the same decoder. */
        DEC_FIXED(d, KVS_WIRE_DATA_FIXED, f);
        m->u.data.len = ld64(f);
        m->u.data.nparts = ld32(f + 8);
        m->u.data.tier = f[12];
        m->u.data.cls = f[13];
        if (m->u.data.nparts == 0)
            return KVS_EPROTO;
        if (m->u.data.nparts > KVS_PARTS_MAX)
            return KVS_ETOOBIG;
        if ((uint64_t)m->u.data.nparts * 4 > d->len - d->off)
            return KVS_EPROTO;
        {
            uint64_t sum = 0;

            for (uint32_t i = 0; i < m->u.data.nparts; i++) {
                s->part_lens[i] = ld32(d->p + d->off + 4 * i);
                sum += s->part_lens[i];
            }
            d->off += (size_t)m->u.data.nparts * 4;
            if (sum != m->u.data.len || m->u.data.len != payload_len)
                return KVS_EPROTO;
        }
        m->u.data.part_lens = s->part_lens;
        return 0;
    case KVS_OP_MATCH:
    case KVS_OP_PIN:
    case KVS_OP_UNPIN:
        if ((ret = check_count(n, lim)))
            return ret;
        DEC_FIXED(d, KVS_WIRE_MATCH_FIXED, f);
        m->u.keys.flags = ld32(f);
        m->u.keys.lease_ms = m->hdr.opcode == KVS_OP_MATCH ? ld32(f + 4) : 0;
        if (m->hdr.opcode == KVS_OP_MATCH
                ? (m->u.keys.flags & ~KVS_WIRE_MATCH_LEASE)
                : (m->u.keys.flags & ~KVS_WIRE_PIN_RETAIN))
            return KVS_EPROTO;
        return dec_keys(d, n, s, &m->u.keys.keys);
    case KVS_OP_EXISTS:
    case KVS_OP_DELETE:
    case KVS_OP_PREFETCH:
        if ((ret = check_count(n, lim)))
            return ret;
        m->u.keys.flags = 0;
        m->u.keys.lease_ms = 0;
        return dec_keys(d, n, s, &m->u.keys.keys);
    case KVS_OP_RELEASE:
        DEC_FIXED(d, 8, f);
        m->u.release.lease_id = ld64(f);
        return 0;
    case KVS_OP_BIND:
        DEC_FIXED(d, KVS_WIRE_BIND_SIZE, f);
        m->u.bind.session = ld64(f);
        m->u.bind.secret = ld64(f + 8);
        return 0;
    case KVS_OP_STAT:
    case KVS_OP_VERIFY:
        return 0;
    case KVS_OP_SCAN:
        if ((ret = check_count(n, lim)))
            return ret;
        DEC_FIXED(d, KVS_WIRE_SCAN_FIXED, f);
        m->u.scan.group = ld64(f);
        m->u.scan.cursor = ld32(f + 8);
        return 0;
    default:
        return KVS_EPROTO;
    }
}

static int dec_reply(dec_t *d, kvs_wire_msg_t *m, const kvs_wire_limits_t *lim,
                     kvs_wire_scratch_t *s)
{
    uint32_t n = m->hdr.count;
    const uint8_t *f;

    if (n > lim->max_keys || n > KVS_WIRE_KEYS_MAX)
        return KVS_ETOOBIG;
    if (m->hdr.status != 0)
        return 0; /* the body was checked to be empty */
    switch (m->hdr.opcode) {
    case KVS_OP_HELLO:
        DEC_FIXED(d, KVS_WIRE_HELLO_REP_SIZE, f);
        m->u.hello_rep.features = ld32(f);
        m->u.hello_rep.max_body = ld32(f + 4);
        m->u.hello_rep.max_payload = ld32(f + 8);
        m->u.hello_rep.max_inflight = ld32(f + 12);
        m->u.hello_rep.max_keys = ld32(f + 16);
        m->u.hello_rep.lease_max_ms = ld32(f + 20);
        m->u.hello_rep.session = ld64(f + 24);
        m->u.hello_rep.bind_secret = ld64(f + 32);
        m->u.hello_rep.bulk_port = ld32(f + 40);
        m->u.hello_rep.worker_port = ld32(f + 44); /* rsvd before MOVE */
        return 0;
    case KVS_OP_PUT:
    case KVS_OP_DELETE:
    case KVS_OP_PIN:
    case KVS_OP_UNPIN:
        DEC_FIXED(d, (size_t)n * 4, f);
        for (uint32_t i = 0; i < n; i++)
            s->status[i] = (int32_t)ld32(f + 4 * i);
        m->u.status_rep.status = s->status;
        return 0;
    case KVS_OP_GET:
        for (uint32_t i = 0; i < n; i++) {
            kvs_wire_block_t *b = &s->blocks[i];

            DEC_FIXED(d, KVS_WIRE_BLOCK_SIZE, f);
            b->status = (int32_t)ld32(f);
            b->nparts = ld32(f + 4);
            b->len = ld64(f + 8);
            b->tier = f[16];
            b->cls = f[17];
        }
        m->u.get_rep.blocks = s->blocks;
        return 0;
    case KVS_OP_MATCH:
        DEC_FIXED(d, 8, f);
        m->u.match_rep.lease_id = ld64(f);
        m->u.match_rep.matched = n;
        DEC_FIXED(d, n, m->u.match_rep.tiers);
        return 0;
    case KVS_OP_EXISTS:
        DEC_FIXED(d, n, m->u.exists_rep.present);
        return 0;
    case KVS_OP_PREFETCH:
        DEC_FIXED(d, 8, f);
        m->u.prefetch_rep.promoted = ld64(f);
        return 0;
    case KVS_OP_RELEASE:
    case KVS_OP_BIND:
        return 0;
    case KVS_OP_STAT:
        for (uint32_t i = 0; i < n; i++) {
            kvs_wire_stat_t *st = &s->stats[i];
            const uint8_t *l = dec_take(d, 1);

            if (!l || *l == 0 || *l > KVS_WIRE_STAT_NAME_MAX)
                return KVS_EPROTO;
            st->name.len = *l;
            DEC_FIXED(d, *l, st->name.data);
            DEC_FIXED(d, 8, f);
            st->value = ld64(f);
        }
        m->u.stat_rep.ents = s->stats;
        return 0;
    case KVS_OP_VERIFY:
        DEC_FIXED(d, 16, f);
        m->u.verify_rep.checked = ld64(f);
        m->u.verify_rep.bad = ld64(f + 8);
        return 0;
    case KVS_OP_SCAN:
        DEC_FIXED(d, KVS_WIRE_SCAN_REP_FIXED, f);
        m->u.scan_rep.next = ld32(f);
        for (uint32_t i = 0; i < n; i++) {
            kvs_wire_scan_ent_t *se = &s->scans[i];

            DEC_FIXED(d, KVS_WIRE_SCAN_ENT_FIXED, f);
            se->key.len = f[0];
            se->parent.len = f[1];
            se->tier = f[2];
            se->cls = f[3];
            se->nparts = ld32(f + 4);
            se->len = ld64(f + 8);
            se->group = ld64(f + 16);
            se->expiry_ms = ld64(f + 24);
            if (se->key.len == 0)
                return KVS_EPROTO;
            if (se->key.len > KVS_KEY_MAX || se->parent.len > KVS_KEY_MAX)
                return KVS_ETOOBIG;
            DEC_FIXED(d, se->key.len, se->key.data);
            se->parent.data = NULL;
            if (se->parent.len)
                DEC_FIXED(d, se->parent.len, se->parent.data);
        }
        m->u.scan_rep.ents = s->scans;
        return 0;
    default:
        return KVS_EPROTO;
    }
}

/* Every stream opcode: the fixed part, then a string of str_len bytes,
 * then the rest (read by the stream handlers with kvs_wire_stream_*). */
static int dec_stream(dec_t *d, kvs_wire_msg_t *m)
{
    const uint8_t *f;
    uint32_t slen;

    if (m->hdr.flags & KVS_WIRE_F_REPLY)
        return KVS_EPROTO; /* stream opcodes answer with opcodes */
    if (m->hdr.count != 0)
        return KVS_EPROTO;
    if (m->hdr.body_len > KVS_WIRE_STREAM_FIXED + KVS_WIRE_STREAM_BODY_MAX)
        return KVS_ETOOBIG;
    DEC_FIXED(d, KVS_WIRE_STREAM_FIXED, f);
    m->u.stream.block = ld32(f);
    m->u.stream.part = ld32(f + 4);
    m->u.stream.nparts = ld32(f + 8);
    slen = ld16(f + 12);
    m->u.stream.flags = ld16(f + 14);
    m->u.stream.len = ld64(f + 16);
    m->u.stream.off = ld64(f + 24);
    if (m->u.stream.flags & ~KVS_WIRE_STREAM_KNOWN)
        return KVS_EPROTO;
    if (slen > d->len - d->off)
        return KVS_EPROTO;
    m->u.stream.str.data = d->p + d->off;
    m->u.stream.str.len = slen;
    d->off += slen;
    m->u.stream.rest.data = d->p + d->off;
    m->u.stream.rest.len = (uint32_t)(d->len - d->off);
    d->off = d->len;
    return 0;
}

int kvs_wire_decode(const void *buf, size_t len, uint64_t payload_len,
                    const kvs_wire_limits_t *lim, kvs_wire_scratch_t *scratch,
                    kvs_wire_msg_t *msg_out)
{
    kvs_wire_msg_t *m = msg_out;
    dec_t d;
    int ret;

    memset(m, 0, sizeof(*m));
    ret = kvs_wire_decode_hdr(buf, len, lim, &m->hdr);
    if (ret)
        return ret;
    m->payload_len = payload_len;
    if (payload_len > lim->max_payload || payload_len > KVS_WIRE_PAYLOAD_MAX)
        return KVS_ETOOBIG;
    /* The payload flag, the opcode and the payload must agree. */
    if (has_payload(&m->hdr) != !!(m->hdr.flags & KVS_WIRE_F_PAYLOAD))
        return KVS_EPROTO;
    if (!has_payload(&m->hdr) && payload_len)
        return KVS_EPROTO;
    if ((m->hdr.flags & KVS_WIRE_F_REPLY) && m->hdr.status != 0 &&
        m->hdr.body_len != 0)
        return KVS_EPROTO;
    if (m->hdr.opcode == KVS_OP_DATA && (m->hdr.flags & KVS_WIRE_F_REPLY))
        return KVS_EPROTO;
    /* Every count (entries, or DATA's index into its GET) is bounded. */
    if (m->hdr.count > lim->max_keys || m->hdr.count > KVS_WIRE_KEYS_MAX)
        return KVS_ETOOBIG;
    d.p = (const uint8_t *)buf + KVS_WIRE_HDR_SIZE;
    d.len = m->hdr.body_len;
    d.off = 0;
    if (kvs_wire_op_is_stream(m->hdr.opcode))
        ret = dec_stream(&d, m);
    else if (m->hdr.flags & KVS_WIRE_F_REPLY)
        ret = dec_reply(&d, m, lim, scratch);
    else
        ret = dec_request(&d, m, payload_len, lim, scratch);
    if (ret)
        return ret;
    if (d.off != d.len)
        return KVS_EPROTO; /* trailing bytes */
    return 0;
}
