/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming puts from clients: SPUT_BEGIN reserves the block in the store,
 * each SPUT_PART lands straight in its arena bytes, SPUT_SEAL publishes it
 * once every follower (source) has sent every part.
 */
#include "transport/server/stream_int.h"
#include "transport/server/shm.h"

/* Streaming puts. */

/* Reserves a block of nparts parts of lens[i] bytes in the store (a
 * client's streaming put, or a block arriving from a peer) and fills in
 * each part's offset in it. -EAGAIN while DRAM is full. */
int kvs_sput_store_begin(kvs_srvstream_t *st, uint32_t ns, const uint8_t *key,
                         uint8_t key_len, const uint32_t *lens, uint64_t *offs,
                         uint32_t nparts, uint8_t cls, uint32_t flags,
                         const kvs_smeta_t *meta, kvs_put_stream_t *ps)
{
    kvs_iov_t *iov = st->iovs;
    kvs_put_args_t a;
    int ret;

    for (uint32_t i = 0; i < nparts; i++) {
        offs[i] = i ? offs[i - 1] + lens[i - 1] : 0;
        iov[i].base = NULL;
        iov[i].len = lens[i];
    }
    memset(&a, 0, sizeof(a));
    a.ns = ns;
    a.key = key;
    a.key_len = key_len;
    a.parts = iov;
    a.nparts = nparts;
    a.cls = cls;
    if (meta) {
        a.parent = meta->parent_len ? meta->parent : NULL;
        a.parent_len = meta->parent_len;
        a.ttl_ms = meta->ttl_ms;
        a.group = meta->group;
    }
    /* The serving thread never waits for room in DRAM: while it is full
     * (the write-behind has been woken) the block is refused with -EAGAIN,
     * try again, at once. */
    a.flags = (flags & KVS_WIRE_PUT_KNOWN) | KVS_PUT_NO_WAIT;
    ret = kvs_store_put_begin(st->store, &a, ps);
    return ret == -EWOULDBLOCK ? -EAGAIN : ret;
}

void kvs_sput_reply(kvs_srvstream_t *st, sput_t *p)
{
    kvs_smsg_t m = {.op = KVS_OP_SPUT_DONE, .id = p->cid};

    if (p->replied || !p->finished || p->push_wait)
        return;
    p->replied = true;
    m.status = p->status ? p->status : p->push_status;
    kvs_srvstream_send(st, kvs_srvstream_conn_ep(p->conn), &m, NULL, 0, NULL, 0,
                       NULL, NULL, NULL);
}

void kvs_sput_free_if_idle(kvs_srvstream_t *st, sput_t *p)
{
    if (!p->finished || p->inflight || p->push_wait || (p->conn && !p->replied))
        return;
    for (src_t *s = st->srcs; s; s = s->next)
        if (s->put == p)
            return; /* detached in kvs_sput_maybe_finish before this */
    for (sput_t **pp = &st->sputs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    kvs_srvstream_sput_put(st, p);
    atomic_fetch_sub(&st->nsputs, 1);
}

/* True while a source following p has parts still to send: the block is
 * sealed only after every follower has sent every part (a push whose link
 * is still being set up, or a slow peer, holds the seal back). */
static bool sput_followers_behind(kvs_srvstream_t *st, const sput_t *p)
{
    for (const src_t *s = st->srcs; s; s = s->next)
        if (s->put == p && !s->ended && s->next_part < p->nparts)
            return true;
    return false;
}

/* Seals (or aborts) once nothing reads or writes the block's bytes. */
void kvs_sput_maybe_finish(kvs_srvstream_t *st, sput_t *p)
{
    if (!p->finished && !p->inflight &&
        (p->abort_req || !sput_followers_behind(st, p)) &&
        (p->abort_req || (p->seal_req && p->ndone == p->nparts))) {
        int ret;

        p->finished = true;
        if (p->abort_req) {
            kvs_store_put_abort(st->store, &p->ps);
            ret = p->status ? p->status : KVS_EPEER;
        } else {
            /* The part table is rewritten from the daemon's lengths: an
             * in-place writer could have overwritten it. */
            ret = kvs_store_put_seal_parts(st->store, &p->ps, p->lens);
            if (ret)
                kvs_warn("stream put: seal: %s", kvs_strerror(ret));
            else
                st->blocks_sealed++;
        }
        p->status = ret;
        for (src_t *s = st->srcs, *next; s; s = next) {
            next = s->next;
            if (s->put != p)
                continue;
            s->put = NULL;
            s->has_sum = ret == 0 && p->ps.has_xxh;
            s->sum = p->ps.data_xxh;
            kvs_source_end(st, s, ret);
        }
        kvs_sput_reply(st, p);
    } else if (p->seal_req && !p->abort_req && p->ndone < p->nparts &&
               !p->finished && !p->inflight) {
        /* SEAL before every part: the store says KVS_EINCOMPLETE. */
        p->status = KVS_EINCOMPLETE;
        p->abort_req = true;
        kvs_sput_maybe_finish(st, p);
        return;
    }
    kvs_sput_reply(st, p);
    kvs_sput_free_if_idle(st, p);
}

sput_t *kvs_sput_find(kvs_srvstream_t *st, kvs_conn_t *conn, uint64_t cid)
{
    for (sput_t *p = st->sputs; p; p = p->next)
        if (p->conn == conn && p->cid == cid && !p->finished)
            return p;
    return NULL;
}

void kvs_sput_part_landed(kvs_srvstream_t *st, sput_t *p, uint32_t part)
{
    if (kvs_store_put_part_done(st->store, &p->ps, part) == 0 &&
        !p->done[part]) {
        p->done[part] = 1;
        p->ndone++;
        st->parts_in++;
    }
    for (src_t *s = st->srcs; s; s = s->next)
        if (s->put == p)
            kvs_source_pump(st, s);
}

/* An in-place put's answer to SPUT_BEGIN: BLOCK with where the block's
 * first byte lies in the arena (the parts follow back to back), or why
 * there is none. Sent before any SPUT_DONE, on the same endpoint. */
static void sput_tell_block(kvs_srvstream_t *st, sput_t *p, uint64_t total)
{
    kvs_smsg_t r = {.op = KVS_OP_BLOCK,
                    .flags = KVS_SMSG_F_INPLACE,
                    .id = p->cid,
                    .status = p->status,
                    .nparts = p->nparts};

    if (!p->status) {
        r.off = (uint64_t)(part_buf(st, &p->ps, p->offs, 0) - st->abase);
        r.len = total;
    }
    kvs_srvstream_send(st, kvs_srvstream_conn_ep(p->conn), &r, NULL, 0, NULL,
                       0, NULL, NULL, NULL);
}

void kvs_sput_begin(kvs_srvstream_t *st, kvs_conn_t *conn, const kvs_smsg_t *m)
{
    kvs_smsg_rd_t rd;
    uint64_t total = 0;
    sput_t *p;
    int ret = 0;

    p = kvs_srvstream_sput_get(st);
    if (!p)
        return;
    p->conn = conn;
    p->cid = m->id;
    p->ns = conn->ns;
    p->next = st->sputs;
    st->sputs = p;
    atomic_fetch_add(&st->nsputs, 1);
    p->finished = true; /* until begun */
    p->inplace = m->flags & KVS_SMSG_F_INPLACE;
    if (p->inplace && !kvs_shm_stream_key_ok(st->shm, m->off)) {
        kvs_warn("stream put: conn %llu asked to write in place without "
                 "the stream key of an attached shm session; refused",
                 (unsigned long long)conn->id);
        p->status = KVS_EAUTH;
        goto out;
    }
    if (!conn->ns_ok) {
        p->status = -EACCES; /* as a PUT, docs/protocol.md 8 */
        goto out;
    }
    if (m->str_len < 1 || m->str_len > KVS_KEY_MAX) {
        p->status = KVS_EPROTO;
        goto out;
    }
    memcpy(p->key, m->body, m->str_len);
    p->key_len = (uint8_t)m->str_len;
    p->nparts = m->nparts;
    if (m->nparts < 1 || m->nparts > KVS_PARTS_MAX) {
        p->status = KVS_EPROTO;
        goto out;
    }
    p->pv = kvs_srvstream_parts_get(st, m->nparts);
    if (!p->pv) {
        p->status = -ENOMEM;
        goto out;
    }
    p->lens = p->pv->lens;
    p->offs = p->pv->offs;
    p->done = p->pv->flag;
    kvs_smsg_rd_init(&rd, m);
    ret = kvs_smsg_rd_lens(&rd, m->nparts, p->lens, &total);
    if (ret) {
        p->status = ret;
        goto out;
    }
    p->cls = (uint8_t)m->block;
    p->flags = m->part & KVS_WIRE_PUT_KNOWN;
    if ((m->flags & KVS_SMSG_F_META) && kvs_smsg_rd_meta(&rd, &p->meta)) {
        p->status = KVS_EPROTO;
        goto out;
    }
    ret = kvs_sput_store_begin(st, p->ns, p->key, p->key_len, p->lens, p->offs,
                               p->nparts, p->cls, p->flags, &p->meta, &p->ps);
    if (ret) {
        p->status = ret;
        goto out;
    }
    p->finished = false;
    if (m->flags & KVS_SMSG_F_PUSH) {
        char peer[256];
        uint32_t plen, nsid = 0;
        link_t *l;

        /* After the lengths: (u8 len, namespace name), then the peer. */
        if (rd.left >= 1 && rd.p[0] >= 1 && rd.p[0] + 1u <= rd.left) {
            uint32_t nl = rd.p[0];

            memcpy(p->ns_name, rd.p + 1, nl);
            p->ns_name[nl] = '\0';
            rd.left -= nl + 1;
            rd.p += nl + 1;
        }
        plen = rd.left;
        if (!p->ns_name[0] ||
            kvs_store_ns_open(st->store, p->ns_name, 0, &nsid) ||
            nsid != p->ns) {
            p->status = KVS_ENOTFOUND;
            p->abort_req = true;
            goto out;
        }
        if (plen == 0 || plen >= sizeof(peer)) {
            p->status = KVS_EPROTO;
            p->abort_req = true;
            goto out;
        }
        memcpy(peer, rd.p, plen);
        peer[plen] = '\0';
        ret = kvs_peer_get(st, peer, &l);
        if (ret) {
            p->status = ret;
            p->abort_req = true;
            goto out;
        }
        p->push_id = ++st->next_id;
        p->push_src =
            kvs_source_new(st, l, p->push_id, 0, p->ns, p->key, p->key_len, 0);
        if (!p->push_src) {
            p->status = -ENOMEM;
            p->abort_req = true;
            goto out;
        }
        p->push_src->push = true;
        p->push_src->put = p;
        p->push_wait = true;
        p->push_status = KVS_EPEER;
    }
    /* Fetches from peers that were waiting for this block. */
    for (src_t *s = st->srcs; s; s = s->next)
        if (!s->began && !s->ended && s->ns == p->ns &&
            s->key_len == p->key_len && !memcmp(s->key, p->key, p->key_len))
            s->put = p;
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->put == p)
            kvs_source_pump(st, s);
    }
out:
    if (p->inplace)
        sput_tell_block(st, p, total);
    kvs_sput_maybe_finish(st, p);
}

ucs_status_t kvs_sput_part(kvs_srvstream_t *st, kvs_conn_t *conn,
                           const kvs_smsg_t *m, void *data, size_t len,
                           bool rndv)
{
    sput_t *p = kvs_sput_find(st, conn, m->id);
    bool inplace = m->flags & KVS_SMSG_F_INPLACE;
    const char *why = NULL;
    void *dst;

    if (!p)
        return UCS_OK; /* failed earlier: SEAL reports it */
    /* Every check against the daemon's own lengths. */
    if (m->part >= p->nparts)
        why = "part index out of range";
    else if (p->done[m->part])
        why = "part committed twice";
    else if (inplace && !p->inplace)
        why = "committed in place, but the put was not begun in place";
    else if (inplace && (len || rndv || m->len != p->lens[m->part]))
        why = "committed in place with a length other than the part's";
    else if (!inplace && len != p->lens[m->part])
        why = "bytes other than the part's length";
    if (why || p->abort_req) {
        if (why)
            kvs_warn("stream put: conn %llu, put %llu, part %u: %s; the "
                     "block is dropped (KVS_EPROTO at seal)",
                     (unsigned long long)conn->id, (unsigned long long)m->id,
                     m->part, why);
        if (!p->abort_req)
            p->status = KVS_EPROTO;
        p->abort_req = true;
        kvs_sput_maybe_finish(st, p);
        return UCS_OK;
    }
    if (inplace) {
        /* The client wrote the bytes in the arena already. */
        st->parts_inplace++;
        kvs_sput_part_landed(st, p, m->part);
        kvs_sput_maybe_finish(st, p);
        return UCS_OK;
    }
    dst = part_buf(st, &p->ps, p->offs, m->part);
    p->inflight++;
    return kvs_srvstream_rx_start(st, p, NULL, 0, m->part, 1, dst, data, len,
                                  rndv);
}
