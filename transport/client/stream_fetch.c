/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash: streaming fetches (kvstash/stream.h; stream_int.h has the
 * map). A fetch's block buffer receives each part at its offset:
 * rendezvous data is written there by UCX straight from the sidecar's
 * arena (the one copy); small parts that came eagerly are copied from
 * UCX's receive buffer. In place (blocks without a buffer, a client that
 * maps its sidecar's arena) the sidecar sends PART without bytes and the
 * caller reads each part where it landed; BLOCK's offset is checked
 * against the mapping before a pointer is made of it. A fetch of more
 * keys than one message holds goes out as several FETCH messages.
 */
#include "kvstash/kvstash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ucp/api/ucp.h>

#include "common/clock.h"
#include "transport/client/client_int.h"
#include "transport/client/stream_int.h"
#include "transport/proto/stream_op.h"
#include "transport/proto/ucx.h"

/* Receiving. */

static void part_landed(kvs_stream_fetch_t *f, uint32_t b, uint32_t part,
                        int status)
{
    cblk_t *k = &f->blk[b];

    if (status) {
        if (!k->status)
            k->status = status;
        return;
    }
    if (!k->got[part]) {
        k->got[part] = 1;
        k->parts_in++;
        if (!k->first_ns)
            k->first_ns = kvs_clock_mono_ns();
    }
}

static void crx_cb(void *request, ucs_status_t status, size_t length,
                   void *user_data)
{
    crx_t *r = user_data;

    (void)length;
    r->f->blk[r->block].inflight--;
    part_landed(r->f, r->block, r->part, status == UCS_OK ? 0 : KVS_EPEER);
    r->next = r->f->cs->rx_free;
    r->f->cs->rx_free = r;
    ucp_request_free(request);
}

static ucs_status_t on_part(kvs_stream_fetch_t *f,
                            const kvs_smsg_t *m, void *data, size_t len,
                            bool rndv, ucp_worker_h worker)
{
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = crx_cb,
    };
    ucs_status_ptr_t sp;
    cblk_t *k;
    crx_t *r;

    if (m->block >= f->n)
        return UCS_OK;
    k = &f->blk[m->block];
    if ((m->flags & KVS_SMSG_F_INPLACE) && k->view) {
        /* No bytes: the part is in the arena, where BLOCK said. */
        if (!k->began || m->part >= k->nparts || k->got[m->part] || len ||
            rndv || m->len != k->lens[m->part] || m->off != k->offs[m->part]) {
            if (!k->status)
                k->status = KVS_EPROTO;
            return UCS_OK;
        }
        if (k->buf && !k->status)
            memcpy((uint8_t *)k->buf + m->off, k->view + m->off, m->len);
        part_landed(f, m->block, m->part, 0);
        return UCS_OK;
    }
    if (!k->began || m->part >= k->nparts || k->got[m->part] || len != m->len ||
        len != k->lens[m->part] || m->off != k->offs[m->part]) {
        if (!k->status)
            k->status = KVS_EPROTO;
        return UCS_OK;
    }
    if (k->status)
        return UCS_OK;
    if (!rndv) {
        memcpy((uint8_t *)k->buf + m->off, data, len);
        part_landed(f, m->block, m->part, 0);
        return UCS_OK;
    }
    r = f->cs->rx_free;
    if (r)
        f->cs->rx_free = r->next;
    else if (!(r = malloc(sizeof(*r)))) {
        k->status = -ENOMEM;
        return UCS_OK;
    }
    r->f = f;
    r->block = m->block;
    r->part = m->part;
    prm.user_data = r;
    k->inflight++;
    sp = ucp_am_recv_data_nbx(worker, data, (uint8_t *)k->buf + m->off, len,
                              &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        k->inflight--;
        r->next = f->cs->rx_free;
        f->cs->rx_free = r;
        part_landed(f, m->block, m->part, sp == NULL ? 0 : KVS_EPEER);
    }
    return UCS_INPROGRESS;
}

/* BLOCK of an in-place fetch: where the block lies in the mapping. */
static int on_block_view(cstate_t *cs, cblk_t *k, const kvs_smsg_t *m,
                         uint64_t total)
{
    uint8_t *base;
    size_t len;
    uint64_t key;

    if (!(m->flags & KVS_SMSG_F_INPLACE) ||
        !kvs_client_shm_map(cs->c, &base, &len, &key) || m->off > len ||
        total > len - m->off || m->len != total)
        return KVS_EPROTO;
    k->view = base + m->off;
    return 0;
}

static void on_block(kvs_stream_fetch_t *f, const kvs_smsg_t *m)
{
    kvs_smsg_rd_t rd;
    cblk_t *k;
    uint64_t total;

    if (m->block >= f->n)
        return;
    k = &f->blk[m->block];
    if (k->began || m->nparts < 1 || m->nparts > KVS_PARTS_MAX)
        return;
    k->pv = kvs_partpool_get(&f->cs->parts, m->nparts);
    kvs_smsg_rd_init(&rd, m);
    if (!k->pv) {
        k->status = -ENOMEM;
        return;
    }
    k->lens = k->pv->lens;
    k->offs = k->pv->offs;
    k->got = k->pv->flag;
    if (kvs_smsg_rd_lens(&rd, m->nparts, k->lens, &total)) {
        k->status = KVS_EPROTO;
        return;
    }
    if (f->inplace && (k->status = on_block_view(f->cs, k, m, total)) != 0)
        return;
    if (!k->buf && !k->view) {
        /* Read "in place" without a mapping: into a buffer of ours. */
        k->own = malloc(total ? total : 1);
        if (!k->own) {
            k->status = -ENOMEM;
            return;
        }
        k->buf = k->own;
        k->cap = total;
    }
    if (k->buf && total > k->cap) {
        k->status = -ENOBUFS;
        k->len = total;
        return;
    }
    for (uint32_t i = 0; i < m->nparts; i++)
        k->offs[i] = i ? k->offs[i - 1] + k->lens[i - 1] : 0;
    k->nparts = m->nparts;
    k->len = total;
    k->began = true;
}

static void on_end(kvs_stream_fetch_t *f, const kvs_smsg_t *m)
{
    if (m->block == UINT32_MAX) {
        f->status = m->status ? m->status : KVS_EPROTO;
        for (uint32_t i = 0; i < f->n; i++)
            if (!f->blk[i].complete && !f->blk[i].status)
                f->blk[i].status = f->status;
        return;
    }
    if (m->block >= f->n)
        return;
    if (m->status) {
        if (!f->blk[m->block].status)
            f->blk[m->block].status = m->status;
    } else {
        f->blk[m->block].complete = true;
        f->blk[m->block].complete_ns = kvs_clock_mono_ns();
        f->blk[m->block].lease_end_ns = m->off;
    }
}

ucs_status_t kvs_stream_fetch_rx(kvs_stream_fetch_t *f, const kvs_smsg_t *m,
                                 void *data, size_t len, bool rndv,
                                 ucp_worker_h worker)
{
    switch (m->op) {
    case KVS_OP_BLOCK:
        on_block(f, m);
        break;
    case KVS_OP_PART:
        return on_part(f, m, data, len, rndv, worker);
    case KVS_OP_END:
        on_end(f, m);
        break;
    default:
        break;
    }
    return UCS_OK;
}

/* ------------------------------------------------------------------ */
/* Streaming fetches. */

/* Sends the FETCH messages of f: as many as the keys need, each with the
 * peer and the namespace, then keys from index first on (its `block`). */
static int fetch_send(kvs_client_t *c, kvs_stream_fetch_t *f, const char *peer,
                      const kvs_stream_block_t *blocks, uint32_t wait_ms)
{
    uint8_t body[KVS_SMSG_BODY_MAX];
    kvs_client_internals_t ci;
    size_t plen = strlen(peer), nl, hlen;
    uint32_t first = 0;
    kvs_smsg_t m;

    kvs_client_internals(c, &ci);
    nl = strlen(ci.ns);
    memcpy(body, peer, plen);
    body[plen] = (uint8_t)nl;
    memcpy(body + plen + 1, ci.ns, nl);
    hlen = plen + 1 + nl;
    while (first < f->n) {
        size_t blen = hlen;
        uint32_t k = first;
        int ret;

        while (k < f->n && k - first < KVS_WIRE_KEYS_MAX &&
               blen + 1 + blocks[k].key.len <= sizeof(body)) {
            body[blen] = (uint8_t)blocks[k].key.len;
            memcpy(body + blen + 1, blocks[k].key.data, blocks[k].key.len);
            blen += 1 + blocks[k].key.len;
            k++;
        }
        memset(&m, 0, sizeof(m));
        m.op = KVS_OP_FETCH;
        m.flags = f->inplace ? KVS_SMSG_F_INPLACE : 0;
        m.id = f->id;
        m.block = first;
        m.nparts = k - first;
        m.len = wait_ms;
        m.str_len = (uint16_t)plen;
        ret = kvs_stream_msg_send(c, &m, body, blen, NULL, 0);
        if (ret)
            return ret;
        first = k;
    }
    return 0;
}

KVS_API int kvs_stream_fetch(kvs_client_t *c, const char *peer,
                             const kvs_stream_block_t *blocks, size_t n,
                             uint32_t wait_ms, kvs_stream_fetch_t **fetch_out)
{
    kvs_client_internals_t ci;
    kvs_stream_fetch_t *f;
    uint8_t *abase;
    size_t alen, plen;
    uint64_t skey;
    cstate_t *cs;
    int ret;

    if (!c || !peer || !blocks || !fetch_out || n < 1 ||
        n > KVS_STREAM_FETCH_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (blocks[i].key.len < 1 || blocks[i].key.len > KVS_KEY_MAX)
            return -EINVAL;
    kvs_client_internals(c, &ci);
    plen = strlen(peer);
    /* The peer, the namespace and the longest key fit one message. */
    if (plen < 1 || plen > 255 || strlen(ci.ns) > 255 ||
        plen + 1 + strlen(ci.ns) + 1 + KVS_KEY_MAX > KVS_SMSG_BODY_MAX)
        return KVS_ETOOBIG;
    ret = kvs_stream_state_get(c, &cs);
    if (ret)
        return ret;
    f = calloc(1, sizeof(*f) + n * sizeof(cblk_t));
    if (!f)
        return -ENOMEM;
    f->cs = cs;
    f->id = ++cs->next_id;
    f->n = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        f->inplace |= blocks[i].buf == NULL;
        f->blk[i].buf = blocks[i].buf;
        f->blk[i].cap = blocks[i].cap;
    }
    f->inplace = f->inplace && kvs_client_shm_map(c, &abase, &alen, &skey);
    f->next = cs->fetches;
    cs->fetches = f;
    ret = fetch_send(c, f, peer, blocks, wait_ms);
    if (ret) {
        /* Whatever part of it went out is cancelled. */
        kvs_stream_fetch_destroy(f);
        return ret;
    }
    *fetch_out = f;
    return 0;
}

static int wait_state(const kvs_stream_fetch_t *f, uint32_t block,
                      uint32_t part)
{
    const cblk_t *k = &f->blk[block];

    if (part == KVS_STREAM_BLOCK) {
        if (k->complete && k->parts_in == k->nparts && !k->inflight)
            return 0;
    } else if (k->began && part < k->nparts && k->got[part]) {
        return 0;
    } else if (k->began && part >= k->nparts) {
        return -EINVAL;
    }
    if (k->status)
        return k->status;
    return 1; /* not yet */
}

KVS_API int kvs_stream_wait(kvs_stream_fetch_t *f, uint32_t block,
                            uint32_t part, int timeout_ms)
{
    kvs_client_t *c;
    uint64_t deadline, idle;
    int ret;

    if (!f || block >= f->n)
        return -EINVAL;
    c = f->cs->c;
    idle = 0;
    deadline = timeout_ms < 0
                   ? UINT64_MAX
                   : kvs_clock_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        ret = wait_state(f, block, part);
        if (ret <= 0)
            return ret;
        if (kvs_clock_mono_ns() >= deadline)
            return -ETIMEDOUT;
        ret = kvs_client_progress_idle(c, &idle);
        if (ret < 0) {
            ret = wait_state(f, block, part);
            return ret <= 0 ? ret : KVS_EPEER;
        }
    }
}

KVS_API int kvs_stream_info(const kvs_stream_fetch_t *f, uint32_t block,
                            kvs_stream_info_t *out)
{
    const cblk_t *k;

    if (!f || !out || block >= f->n)
        return -EINVAL;
    k = &f->blk[block];
    memset(out, 0, sizeof(*out));
    out->status = k->status;
    out->complete = k->complete && k->parts_in == k->nparts && !k->inflight;
    out->nparts = k->nparts;
    out->parts_in = k->parts_in;
    out->len = k->len;
    out->first_part_ns = k->first_ns;
    out->complete_ns = out->complete ? k->complete_ns : 0;
    return 0;
}

KVS_API void kvs_stream_fetch_destroy(kvs_stream_fetch_t *f)
{
    kvs_client_internals_t ci;
    kvs_client_t *c;
    bool busy = true;

    if (!f)
        return;
    c = f->cs->c;
    kvs_client_internals(c, &ci);
    if (ci.ep) {
        kvs_smsg_t m = {.op = KVS_OP_CANCEL, .id = f->id};

        (void)kvs_stream_msg_send(c, &m, NULL, 0, NULL, 0);
    }
    /* Receives in flight write into the caller's buffers: wait them out. */
    for (int i = 0; busy && i < 100000; i++) {
        busy = false;
        for (uint32_t b = 0; b < f->n; b++)
            busy |= f->blk[b].inflight > 0;
        if (busy)
            ucp_worker_progress(ci.worker);
    }
    for (kvs_stream_fetch_t **pp = &f->cs->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    for (uint32_t b = 0; b < f->n; b++) {
        kvs_partpool_put(&f->cs->parts, f->blk[b].pv);
        free(f->blk[b].own);
    }
    free(f);
}

KVS_API int kvs_stream_data(const kvs_stream_fetch_t *f, uint32_t block,
                            uint32_t part, const void **data_out,
                            size_t *len_out)
{
    const cblk_t *k;
    const uint8_t *base;
    int ret;

    if (!f || !data_out || !len_out || block >= f->n)
        return -EINVAL;
    ret = wait_state(f, block, part);
    if (ret < 0)
        return ret;
    if (ret > 0)
        return -EAGAIN; /* not landed yet: kvs_stream_wait() first */
    k = &f->blk[block];
    /* The sidecar holds a sealed block for the fetch until the lease's
     * end it gave in END (the host's one monotonic clock). */
    if (k->view && k->lease_end_ns && kvs_clock_mono_ns() >= k->lease_end_ns)
        return KVS_EEXPIRED;
    base = k->view ? k->view : (const uint8_t *)k->buf;
    if (part == KVS_STREAM_BLOCK) {
        *data_out = base;
        *len_out = k->len;
    } else {
        *data_out = base + k->offs[part];
        *len_out = k->lens[part];
    }
    return 0;
}
