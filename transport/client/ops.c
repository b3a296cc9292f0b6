/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash's operations (include/kvstash/client.h): PUT, GET, MATCH,
 * EXISTS, DELETE, PIN, UNPIN, PREFETCH, RELEASE, STAT, VERIFY and SCAN,
 * each built into a request and submitted through request.c.
 */
#include "transport/client/client_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/ucx.h"

/* Requests. */

static int check_keys(const kvs_client_t *c, const kvs_client_key_t *keys,
                      size_t n)
{
    if (c->failed)
        return c->failed == -ETIMEDOUT ? KVS_EPEER : c->failed;
    if (n == 0 || !keys)
        return -EINVAL;
    if (n > c->limits.max_keys)
        return KVS_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].data || keys[i].len == 0)
            return -EINVAL;
        if (keys[i].len > KVS_KEY_MAX)
            return KVS_ETOOBIG;
    }
    return 0;
}

/* Keys in wire form; the frame copies them, so a stack array is enough.
 * Sized for the largest batch. */
typedef struct keyset {
    kvs_wire_bytes_t k[KVS_WIRE_KEYS_MAX];
} keyset_t;

static const kvs_wire_bytes_t *wire_keys(keyset_t *ks,
                                         const kvs_client_key_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ks->k[i].data = keys[i].data;
        ks->k[i].len = keys[i].len;
    }
    return ks->k;
}

KVS_API int kvs_client_match_async(kvs_client_t *c,
                                   const kvs_client_key_t *keys, size_t n,
                                   uint32_t flags, uint32_t lease_ms,
                                   uint8_t *tiers_out,
                                   kvs_client_match_result_t *result_out,
                                   kvs_client_cb_t cb, void *arg)
{
    static __thread keyset_t ks;
    kvs_wire_msg_t m;
    op_t *op;
    int ret = check_keys(c, keys, n);

    if (ret)
        return ret;
    if (!result_out || (flags & ~KVS_CLIENT_MATCH_LEASE))
        return -EINVAL;
    op = kvs_req_alloc(c, KVS_OP_MATCH);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.keys.flags = flags;
    m.u.keys.lease_ms = lease_ms;
    m.u.keys.keys = wire_keys(&ks, keys, n);
    op->n = (uint32_t)n;
    op->out.match.tiers = tiers_out;
    op->out.match.res = result_out;
    return kvs_req_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

/* Runs an async call synchronously: submit, then wait for its callback. */
typedef struct sync_wait {
    bool done;
    int status;
} sync_wait_t;

static void sync_cb(void *arg, int status)
{
    sync_wait_t *w = arg;

    w->status = status;
    w->done = true;
}

static int sync_finish(kvs_client_t *c, int submit_ret, sync_wait_t *w)
{
    if (submit_ret)
        return submit_ret;
    return kvs_req_wait(c, &w->done, &w->status);
}

KVS_API int kvs_client_match(kvs_client_t *c, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, uint32_t lease_ms,
                             uint8_t *tiers_out,
                             kvs_client_match_result_t *result_out)
{
    sync_wait_t w = {0};

    return sync_finish(c,
                       kvs_client_match_async(c, keys, n, flags, lease_ms,
                                              tiers_out, result_out, sync_cb,
                                              &w),
                       &w);
}

/* EXISTS, DELETE, PIN, UNPIN, PREFETCH share one shape. */
static int simple_keys_async(kvs_client_t *c, uint8_t opcode,
                             const kvs_client_key_t *keys, size_t n,
                             uint32_t flags, void *out, kvs_client_cb_t cb,
                             void *arg)
{
    static __thread keyset_t ks;
    kvs_wire_msg_t m;
    op_t *op;
    int ret = check_keys(c, keys, n);

    if (ret)
        return ret;
    op = kvs_req_alloc(c, opcode);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.keys.flags = flags;
    m.u.keys.keys = wire_keys(&ks, keys, n);
    op->n = (uint32_t)n;
    switch (opcode) {
    case KVS_OP_EXISTS:
        op->out.present = out;
        break;
    case KVS_OP_PREFETCH:
        op->out.promoted = out;
        break;
    default:
        op->out.status = out;
        break;
    }
    return kvs_req_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

KVS_API int kvs_client_exists_async(kvs_client_t *c,
                                    const kvs_client_key_t *keys, size_t n,
                                    uint8_t *present_out, kvs_client_cb_t cb,
                                    void *arg)
{
    if (!present_out)
        return -EINVAL;
    return simple_keys_async(c, KVS_OP_EXISTS, keys, n, 0, present_out, cb,
                             arg);
}

KVS_API int kvs_client_exists(kvs_client_t *c, const kvs_client_key_t *keys,
                              size_t n, uint8_t *present_out)
{
    sync_wait_t w = {0};

    return sync_finish(
        c, kvs_client_exists_async(c, keys, n, present_out, sync_cb, &w), &w);
}

KVS_API int kvs_client_delete(kvs_client_t *c, const kvs_client_key_t *keys,
                              size_t n, int *status_out)
{
    sync_wait_t w = {0};

    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_DELETE, keys, n, 0,
                                         status_out, sync_cb, &w),
                       &w);
}

/* PIN and UNPIN: the same request with another opcode. */
static int pin_op(kvs_client_t *c, uint8_t op, const kvs_client_key_t *keys,
                  size_t n, uint32_t flags, int *status_out)
{
    sync_wait_t w = {0};

    if (flags & ~KVS_CLIENT_PIN_RETAIN)
        return -EINVAL;
    return sync_finish(
        c, simple_keys_async(c, op, keys, n, flags, status_out, sync_cb, &w),
        &w);
}

KVS_API int kvs_client_pin(kvs_client_t *c, const kvs_client_key_t *keys,
                           size_t n, uint32_t flags, int *status_out)
{
    return pin_op(c, KVS_OP_PIN, keys, n, flags, status_out);
}

KVS_API int kvs_client_unpin(kvs_client_t *c, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, int *status_out)
{
    return pin_op(c, KVS_OP_UNPIN, keys, n, flags, status_out);
}

KVS_API int kvs_client_prefetch(kvs_client_t *c, const kvs_client_key_t *keys,
                                size_t n, uint64_t *promoted_out)
{
    sync_wait_t w = {0};
    uint64_t dummy;

    return sync_finish(c,
                       simple_keys_async(c, KVS_OP_PREFETCH, keys, n, 0,
                                         promoted_out ? promoted_out : &dummy,
                                         sync_cb, &w),
                       &w);
}

/* Requests without keys: RELEASE, STAT, VERIFY. */
static int plain_sync(kvs_client_t *c, op_t *op, kvs_wire_msg_t *m)
{
    sync_wait_t w = {0};

    return sync_finish(
        c, kvs_req_submit(c, op, m, NULL, 0, 0, sync_cb, &w, false), &w);
}

KVS_API int kvs_client_release(kvs_client_t *c, uint64_t lease_id)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!(op = kvs_req_alloc(c, KVS_OP_RELEASE)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.u.release.lease_id = lease_id;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_stat(kvs_client_t *c, kvs_client_stat_t *out, size_t cap,
                            size_t *n_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!n_out || (cap && !out))
        return -EINVAL;
    if (!(op = kvs_req_alloc(c, KVS_OP_STAT)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    op->out.stat.out = out;
    op->out.stat.cap = cap;
    op->out.stat.n_out = n_out;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_verify(kvs_client_t *c, uint64_t *checked_out,
                              uint64_t *bad_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!checked_out || !bad_out)
        return -EINVAL;
    if (!(op = kvs_req_alloc(c, KVS_OP_VERIFY)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    op->out.verify.checked = checked_out;
    op->out.verify.bad = bad_out;
    return plain_sync(c, op, &m);
}

KVS_API int kvs_client_scan(kvs_client_t *c, uint64_t group, uint32_t cursor,
                            kvs_client_scan_ent_t *out, size_t cap,
                            size_t *n_out, uint32_t *next_out)
{
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!out || !n_out || !next_out || cap == 0)
        return -EINVAL;
    if (!(c->limits.features & KVS_WIRE_FEAT_SCAN))
        return -ENOTSUP;
    if (!(op = kvs_req_alloc(c, KVS_OP_SCAN)))
        return c->failed ? KVS_EPEER : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)KVS_MIN(cap, (size_t)c->limits.max_keys);
    m.u.scan.group = group;
    m.u.scan.cursor = cursor;
    op->n = m.hdr.count;
    op->out.scan.out = out;
    op->out.scan.cap = cap;
    op->out.scan.n_out = n_out;
    op->out.scan.next_out = next_out;
    return plain_sync(c, op, &m);
}

/* ---- PUT ----------------------------------------------------------- */

/* Bytes one PUT entry takes in a frame. */
static size_t put_ent_bytes(const kvs_client_put_t *it)
{
    return KVS_WIRE_PUT_ENT_FIXED + it->key.len + it->parent.len +
           4 * (size_t)it->nparts;
}

static int put_check(const kvs_client_put_t *it)
{
    if (!it->key.data || it->key.len == 0 || it->nparts == 0 || !it->parts ||
        (it->parent.len && !it->parent.data) || it->cls >= KVS_CLASS_COUNT ||
        (it->flags & ~(KVS_CLIENT_PUT_DURABLE | KVS_CLIENT_PUT_NO_DRAM)))
        return -EINVAL;
    if (it->key.len > KVS_KEY_MAX || it->parent.len > KVS_KEY_MAX ||
        it->nparts > KVS_PARTS_MAX)
        return KVS_ETOOBIG;
    for (uint32_t j = 0; j < it->nparts; j++)
        if (it->parts[j].len > UINT32_MAX ||
            (it->parts[j].len && !it->parts[j].base))
            return it->parts[j].base ? KVS_ETOOBIG : -EINVAL;
    return 0;
}

/* How many of items[0..n) fit one frame: inline frame size, max_keys and
 * max_payload. At least one, unless the first is too big on its own. */
static size_t put_fit(const kvs_client_t *c, const kvs_client_put_t *items,
                      size_t n, uint64_t *payload_out, size_t *niov_out)
{
    size_t bytes = KVS_WIRE_HDR_SIZE, k = 0, niov = 0;
    uint64_t payload = 0;

    for (; k < n && k < c->limits.max_keys; k++) {
        uint64_t blen = 0;

        for (uint32_t j = 0; j < items[k].nparts; j++)
            blen += items[k].parts[j].len;
        if (bytes + put_ent_bytes(&items[k]) > KVS_WIRE_INLINE_MAX ||
            payload + blen > c->limits.max_payload)
            break;
        bytes += put_ent_bytes(&items[k]);
        payload += blen;
        niov += items[k].nparts;
    }
    *payload_out = payload;
    *niov_out = niov;
    return k;
}

KVS_API int kvs_client_put_batch_async(kvs_client_t *c, kvs_client_put_t *items,
                                       size_t n, kvs_client_cb_t cb, void *arg)
{
    kvs_wire_put_ent_t ents[64];
    kvs_wire_put_ent_t *pe = ents;
    static __thread uint32_t lens[KVS_WIRE_INLINE_MAX / 4];
    kvs_wire_msg_t m;
    uint64_t payload;
    size_t niov, nl = 0, k;
    op_t *op;
    int ret;

    if (c->failed)
        return KVS_EPEER;
    if (!items || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((ret = put_check(&items[i])))
            return ret;
    k = put_fit(c, items, n, &payload, &niov);
    if (k < n)
        return KVS_ETOOBIG;
    /* An inline frame holds at most this many entries. */
    if (n > KVS_WIRE_INLINE_MAX / KVS_WIRE_PUT_ENT_FIXED)
        return KVS_ETOOBIG;
    _Static_assert(KVS_WIRE_INLINE_MAX / KVS_WIRE_PUT_ENT_FIXED <= 256,
                   "ents below must hold a full frame");
    if (n > KVS_ARRAY_SIZE(ents)) {
        pe = malloc(n * sizeof(*pe));
        if (!pe)
            return -ENOMEM;
    }
    if (payload >= PUT_EP_MIN && !c->put_tried)
        kvs_client_put_connect(c);
    op = kvs_req_alloc(c, KVS_OP_PUT);
    if (!op) {
        if (pe != ents)
            free(pe);
        return c->failed ? KVS_EPEER : -ENOMEM;
    }
    if (op->iov_cap < niov) {
        ucp_dt_iov_t *iov = realloc(op->iov, niov * sizeof(*iov));

        if (!iov) {
            kvs_req_abort(c, op);
            if (pe != ents)
                free(pe);
            return -ENOMEM;
        }
        op->iov = iov;
        op->iov_cap = niov;
    }
    niov = 0;
    for (size_t i = 0; i < n; i++) {
        const kvs_client_put_t *it = &items[i];

        memset(&pe[i], 0, sizeof(pe[i]));
        pe[i].key.data = it->key.data;
        pe[i].key.len = it->key.len;
        pe[i].parent.data = it->parent.data;
        pe[i].parent.len = it->parent.len;
        pe[i].cls = it->cls;
        pe[i].elem_size = it->elem_size;
        pe[i].flags = it->flags;
        pe[i].ttl_ms = it->ttl_ms;
        pe[i].group = it->group;
        pe[i].nparts = it->nparts;
        pe[i].part_lens = &lens[nl];
        for (uint32_t j = 0; j < it->nparts; j++) {
            lens[nl++] = (uint32_t)it->parts[j].len;
            if (it->parts[j].len) {
                op->iov[niov].buffer = (void *)it->parts[j].base;
                op->iov[niov].length = it->parts[j].len;
                niov++;
            }
        }
        items[i].status = 0;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.count = (uint32_t)n;
    m.u.put.ents = pe;
    op->n = (uint32_t)n;
    op->out.put = items;
    if (niov == 1) {
        ret = kvs_req_submit(c, op, &m, op->iov[0].buffer, op->iov[0].length, 0,
                             cb, arg, false);
    } else if (niov == 0) {
        static const uint8_t none;
        ret = kvs_req_submit(c, op, &m, &none, 0, 0, cb, arg, false);
    } else {
        ret = kvs_req_submit(c, op, &m, NULL, payload, niov, cb, arg, false);
    }
    if (pe != ents)
        free(pe);
    return ret;
}

KVS_API int kvs_client_put_batch(kvs_client_t *c, kvs_client_put_t *items,
                                 size_t n)
{
    int first = 0;
    size_t done = 0;

    if (!items || n == 0)
        return -EINVAL;
    while (done < n) {
        uint64_t payload;
        size_t niov, k = put_fit(c, items + done, n - done, &payload, &niov);
        sync_wait_t w = {0};
        int ret;

        if (c->failed)
            return KVS_EPEER;
        if (k == 0) {
            /* One block larger than a frame or a payload allows. */
            items[done].status = KVS_ETOOBIG;
            if (!first)
                first = KVS_ETOOBIG;
            done++;
            continue;
        }
        ret = sync_finish(
            c, kvs_client_put_batch_async(c, items + done, k, sync_cb, &w), &w);
        if (ret && !first)
            first = ret;
        done += k;
    }
    return first;
}

KVS_API int kvs_client_put(kvs_client_t *c, const void *key, uint32_t key_len,
                           const void *buf, size_t len, uint32_t flags)
{
    kvs_iov_t part = {.base = buf, .len = len};
    kvs_client_put_t it = {
        .key = {.data = key, .len = key_len},
        .parts = &part,
        .nparts = 1,
        .flags = flags,
    };

    return kvs_client_put_batch(c, &it, 1);
}

/* ---- GET ----------------------------------------------------------- */

static size_t get_frame_bytes(const kvs_client_get_t *items, size_t n)
{
    size_t b = KVS_WIRE_HDR_SIZE + KVS_WIRE_GET_FIXED;

    for (size_t i = 0; i < n; i++)
        b += KVS_WIRE_GET_ENT_FIXED + 1 + items[i].key.len;
    return b;
}

KVS_API int kvs_client_get_batch_async(kvs_client_t *c, kvs_client_get_t *items,
                                       size_t n, uint64_t lease_id,
                                       kvs_client_cb_t cb, void *arg)
{
    static __thread kvs_wire_get_ent_t ents[KVS_WIRE_KEYS_MAX];
    kvs_wire_msg_t m;
    op_t *op;

    if (c->failed)
        return KVS_EPEER;
    if (!items || n == 0)
        return -EINVAL;
    if (n > c->limits.max_keys ||
        get_frame_bytes(items, n) > KVS_WIRE_HDR_SIZE + c->max_body)
        return KVS_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].key.data || !items[i].key.len ||
            (items[i].cap && !items[i].buf))
            return -EINVAL;
        if (items[i].key.len > KVS_KEY_MAX)
            return KVS_ETOOBIG;
    }
    op = kvs_req_alloc(c, KVS_OP_GET);
    if (!op)
        return c->failed ? KVS_EPEER : -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ents[i].key.data = items[i].key.data;
        ents[i].key.len = items[i].key.len;
        ents[i].cap = items[i].cap;
        items[i].status = 0;
        items[i].len = 0;
        items[i].nparts = 0;
        items[i].tier = KVS_TIER_NONE;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.count = (uint32_t)n;
    m.u.get.lease_id = lease_id;
    m.u.get.ents = ents;
    op->n = (uint32_t)n;
    op->out.get = items;
    return kvs_req_submit(c, op, &m, NULL, 0, 0, cb, arg, false);
}

static int get_first_error(const kvs_client_get_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].status)
            return items[i].status;
    return 0;
}

KVS_API int kvs_client_get_batch(kvs_client_t *c, kvs_client_get_t *items,
                                 size_t n, uint64_t lease_id)
{
    int first = 0;
    size_t done = 0;

    if (!items || n == 0)
        return -EINVAL;
    while (done < n) {
        size_t k = KVS_MIN(n - done, (size_t)c->limits.max_keys);
        sync_wait_t w = {0};
        int ret;

        while (k > 1 && get_frame_bytes(items + done, k) >
                            KVS_WIRE_HDR_SIZE + c->max_body)
            k /= 2;
        /* The lease ends with the first frame that names it. */
        ret = sync_finish(c,
                          kvs_client_get_batch_async(c, items + done, k,
                                                     done ? 0 : lease_id,
                                                     sync_cb, &w),
                          &w);
        if (ret && !first)
            first = ret;
        if (!ret && !first)
            first = get_first_error(items + done, k);
        if (c->failed)
            return first ? first : KVS_EPEER;
        done += k;
    }
    return first;
}

KVS_API int kvs_client_get(kvs_client_t *c, const void *key, uint32_t key_len,
                           void *buf, size_t cap, size_t *len_out)
{
    kvs_client_get_t it = {
        .key = {.data = key, .len = key_len},
        .buf = buf,
        .cap = cap,
    };
    int ret = kvs_client_get_batch(c, &it, 1, 0);

    if ((ret == 0 || ret == -ENOBUFS) && len_out)
        *len_out = it.len;
    return ret;
}
