/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fetches: blocks received from a peer link, for a client's FETCH (each
 * part is forwarded to the client from the arena as it lands) or for a
 * peer's PUSH. Received blocks are sealed into the local store before END
 * reaches the client.
 */
#include "transport/server/stream_int.h"

/* Fetches: blocks received from a link. */

void kvs_fetch_free_if_done(kvs_srvstream_t *st, fetch_t *f)
{
    /* In place, the client reads the sealed blocks where they lie until
     * it cancels the fetch (or goes away). */
    if (f->inplace && f->conn)
        return;
    for (uint32_t i = 0; i < f->nblocks; i++)
        if (f->blk[i].state != B_DONE || f->blk[i].inflight)
            return;
    for (fetch_t **pp = &st->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    for (uint32_t i = 0; i < f->nblocks; i++) {
        if (f->blk[i].has_view) {
            kvs_store_unpin_view(st->store, &f->blk[i].view);
            st->nheld--;
        }
        kvs_partpool_put(&st->parts, f->blk[i].pv);
    }
    free(f);
    atomic_fetch_sub(&st->nfetches, 1);
}

/* In place: holds the block just sealed for the client, which goes on
 * reading it where it landed. 0, or KVS_EEXPIRED when it is not there any
 * more (evicted between the seal and the pin: what was read of it must be
 * discarded, as with an expired lease). */
static int fetch_blk_hold(kvs_srvstream_t *st, fetch_t *f, dblk_t *b,
                          uint64_t off)
{
    int ret = kvs_store_pin_flags(st->store, f->ns, b->key, b->key_len,
                                  KVS_PIN_NO_READ, &b->view, NULL);

    if (ret == 0 && b->view.arena_off != off) {
        kvs_store_unpin_view(st->store, &b->view);
        ret = KVS_EEXPIRED;
    }
    if (ret)
        return KVS_EEXPIRED;
    b->has_view = true;
    b->lease_end_ns = kvs_clock_mono_ns() + st->lease_ns;
    st->nheld++;
    return 0;
}

/* Blocks held for in-place fetches past their lease are let go (the
 * client was told when, in END, and kvs_stream_data refuses them then):
 * a client that never cancels its fetch does not hold DRAM for ever. */
void kvs_fetch_expire(kvs_srvstream_t *st, uint64_t now)
{
    for (fetch_t *f = st->fetches; f; f = f->next)
        for (uint32_t i = 0; f->inplace && i < f->nblocks; i++) {
            dblk_t *b = &f->blk[i];

            if (b->has_view && now >= b->lease_end_ns) {
                kvs_store_unpin_view(st->store, &b->view);
                b->has_view = false;
                st->nheld--;
            }
        }
}

void kvs_fetch_blk_try_finish(kvs_srvstream_t *st, fetch_t *f, uint32_t i)
{
    dblk_t *b = &f->blk[i];
    int ret;

    if (b->state == B_DONE)
        return;
    if (b->status == 0 &&
        !(b->remote_end && b->state == B_OPEN && b->ngot == b->nparts))
        return;
    if (b->status && !b->told) {
        /* The client hears of a failure at once; the arena bytes are
         * dropped once nothing is reading them. */
        b->told = true;
        kvs_srvstream_send_end(st, kvs_srvstream_conn_ep(f->conn), f->cid,
                               f->base + i, b->status);
    }
    if (b->inflight)
        return;
    if (b->status) {
        if (b->put_open)
            kvs_store_put_abort(st->store, &b->ps);
        st->blocks_failed++;
        ret = b->status;
    } else {
        uint64_t off = (uint64_t)(part_buf(st, &b->ps, b->offs, 0) - st->abase);

        /* The part table is rewritten from the daemon's lengths: a client
         * reading in place maps the arena and could have written it. */
        ret = kvs_store_put_seal_sum(st->store, &b->ps, b->lens,
                                     b->has_sum ? &b->sum : NULL);
        if (ret == 0)
            st->blocks_sealed++;
        if (ret == 0 && f->inplace && f->conn)
            ret = fetch_blk_hold(st, f, b, off);
    }
    b->put_open = false;
    b->state = B_DONE;
    if (!b->told) {
        /* In place, END says until when the block is held (off). */
        kvs_smsg_t e = {.op = KVS_OP_END,
                        .id = f->cid,
                        .block = f->base + i,
                        .status = ret,
                        .off = b->has_view ? b->lease_end_ns : 0};

        b->told = true;
        kvs_srvstream_send(st, kvs_srvstream_conn_ep(f->conn), &e, NULL, 0,
                           NULL, 0, NULL, NULL, NULL);
    }
    if (f->push)
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(f->link), f->cid, 0,
                               ret);
}

void kvs_fetch_blk_remote_end(dblk_t *b, const kvs_smsg_t *m)
{
    b->remote_end = true;
    if (m->flags & KVS_SMSG_F_SUM) {
        b->has_sum = true;
        b->sum = m->len;
    }
}

void kvs_fetch_blk_fail(kvs_srvstream_t *st, fetch_t *f, uint32_t i, int status)
{
    dblk_t *b = &f->blk[i];

    if (b->state == B_DONE || b->status)
        return;
    b->status = status;
    kvs_fetch_blk_try_finish(st, f, i);
}

static void fwd_sent(kvs_srvstream_t *st, void *obj, void *obj2, int status)
{
    fetch_t *f = obj;
    uint32_t i = (uint32_t)(uintptr_t)obj2;

    kvs_debug("fetch %llu block %u: a part reached the client (%d)",
              (unsigned long long)f->id, i, status);
    f->blk[i].inflight--;
    kvs_fetch_blk_try_finish(st, f, i);
    kvs_fetch_free_if_done(st, f);
}

void kvs_fetch_part_landed(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                           uint32_t part, int status)
{
    dblk_t *b = &f->blk[i];

    b->inflight--;
    kvs_debug("fetch %llu block %u part %u landed (%d)",
              (unsigned long long)f->id, i, part, status);
    if (status) {
        kvs_fetch_blk_fail(st, f, i, status);
    } else if (b->state == B_OPEN && !b->got[part]) {
        kvs_store_put_part_done(st->store, &b->ps, part);
        b->got[part] = 1;
        b->ngot++;
        st->parts_in++;
        if (f->conn && !b->status) {
            kvs_smsg_t m = {.op = KVS_OP_PART,
                            .id = f->cid,
                            .block = f->base + i,
                            .part = part,
                            .off = b->offs[part],
                            .len = b->lens[part]};

            if (f->inplace) {
                /* The client reads the part where it landed. */
                m.flags = KVS_SMSG_F_INPLACE;
                st->parts_out++;
                st->parts_inplace++;
                kvs_srvstream_send(st, kvs_srvstream_conn_ep(f->conn), &m,
                                   NULL, 0, NULL, 0, NULL, NULL, NULL);
                goto out;
            }
            b->inflight++;
            st->parts_out++;
            kvs_srvstream_send(st, kvs_srvstream_conn_ep(f->conn), &m, NULL, 0,
                               part_buf(st, &b->ps, b->offs, part),
                               b->lens[part], fwd_sent, f,
                               (void *)(uintptr_t)i);
        }
    }
out:
    kvs_fetch_blk_try_finish(st, f, i);
    kvs_fetch_free_if_done(st, f);
}

fetch_t *kvs_fetch_new(kvs_srvstream_t *st, uint32_t n)
{
    fetch_t *f = calloc(1, sizeof(*f) + n * sizeof(dblk_t));

    if (!f)
        return NULL;
    f->nblocks = n;
    f->id = ++st->next_id;
    f->next = st->fetches;
    st->fetches = f;
    atomic_fetch_add(&st->nfetches, 1);
    return f;
}

/* BLOCK (or PUSH): the block's parts are known; reserve it in the store. */
int kvs_fetch_blk_open(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                       const kvs_smsg_t *m, kvs_smsg_rd_t *rd, uint8_t cls,
                       uint32_t flags)
{
    dblk_t *b = &f->blk[i];
    kvs_smeta_t meta;
    uint64_t total;
    int ret;

    if (b->state != B_WAIT || m->nparts < 1 || m->nparts > KVS_PARTS_MAX)
        return KVS_EPROTO;
    b->pv = kvs_srvstream_parts_get(st, m->nparts);
    if (!b->pv)
        return -ENOMEM;
    b->lens = b->pv->lens;
    b->offs = b->pv->offs;
    b->got = b->pv->flag;
    ret = kvs_smsg_rd_lens(rd, m->nparts, b->lens, &total);
    if (ret)
        return ret;
    /* A PUSH carries the put's parent, TTL and group (META). */
    memset(&meta, 0, sizeof(meta));
    if ((m->flags & KVS_SMSG_F_META) && kvs_smsg_rd_meta(rd, &meta))
        return KVS_EPROTO;
    b->nparts = m->nparts;
    ret = kvs_sput_store_begin(st, f->ns, b->key, b->key_len, b->lens, b->offs,
                               b->nparts, cls, flags, &meta, &b->ps);
    if (ret)
        return ret;
    b->put_open = true;
    b->state = B_OPEN;
    if (f->conn) {
        kvs_smsg_t c = *m;
        uint8_t body[4 * KVS_PARTS_MAX];

        c.op = KVS_OP_BLOCK;
        c.id = f->cid;
        c.block = f->base + i;
        c.str_len = 0;
        c.len = total;
        c.flags = f->inplace ? KVS_SMSG_F_INPLACE : 0;
        /* In place: where the block lies in the arena. */
        c.off = f->inplace ? (uint64_t)(part_buf(st, &b->ps, b->offs, 0) -
                                        st->abase)
                           : 0;
        for (uint32_t j = 0; j < b->nparts; j++)
            kvs_le32_store(body + 4 * j, b->lens[j]);
        kvs_srvstream_send(st, kvs_srvstream_conn_ep(f->conn), &c, body,
                           4ull * b->nparts, NULL, 0, NULL, NULL, NULL);
    }
    return 0;
}

void kvs_fetch_start(kvs_srvstream_t *st, kvs_conn_t *conn, const kvs_smsg_t *m)
{
    uint8_t body[KVS_SMSG_BODY_MAX];
    char peer[256];
    char ns[KVS_NS_NAME_MAX + 1];
    kvs_smsg_rd_t rd;
    kvs_smsg_t out;
    size_t blen;
    uint32_t nsid = 0, n = m->nparts;
    fetch_t *f;
    link_t *l;
    int ret = 0;

    /* The body: peer name, namespace name (u8 len, bytes), keys. */
    kvs_smsg_rd_init(&rd, m);
    /* A fetch of more keys than one message holds comes as several
     * FETCHes with the fetch's id, each naming its first block. */
    if (m->str_len == 0 || m->str_len >= sizeof(peer) || n < 1 ||
        n > KVS_WIRE_KEYS_MAX || m->block >= UINT32_MAX - n || rd.left < 1 ||
        rd.p[0] + 1u > rd.left) {
        kvs_srvstream_send_end(st, kvs_srvstream_conn_ep(conn), m->id,
                               UINT32_MAX, KVS_EPROTO);
        return;
    }
    memcpy(peer, m->body, m->str_len);
    peer[m->str_len] = '\0';
    memcpy(ns, rd.p + 1, rd.p[0]);
    ns[rd.p[0]] = '\0';
    blen = rd.p[0] + 1u;
    rd.p += blen;
    rd.left -= (uint32_t)blen;
    /* The namespace named must be the connection's own. */
    if (!conn->ns_ok || !ns[0] || kvs_store_ns_open(st->store, ns, 0, &nsid) ||
        nsid != conn->ns) {
        kvs_srvstream_send_end(st, kvs_srvstream_conn_ep(conn), m->id,
                               UINT32_MAX, KVS_ENOTFOUND);
        return;
    }
    f = kvs_fetch_new(st, n);
    if (!f) {
        kvs_srvstream_send_end(st, kvs_srvstream_conn_ep(conn), m->id,
                               UINT32_MAX, -ENOMEM);
        return;
    }
    f->conn = conn;
    f->cid = m->id;
    f->ns = conn->ns;
    f->inplace = m->flags & KVS_SMSG_F_INPLACE;
    f->base = m->block;
    /* The peer gets: namespace, then the keys as they came. */
    body[0] = (uint8_t)strlen(ns);
    memcpy(body + 1, ns, body[0]);
    blen = 1u + body[0];
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *k;
        uint32_t kl;

        ret = kvs_smsg_rd_key(&rd, &k, &kl);
        if (ret)
            break;
        memcpy(f->blk[i].key, k, kl);
        f->blk[i].key_len = (uint8_t)kl;
        body[blen] = (uint8_t)kl;
        memcpy(body + blen + 1, k, kl);
        blen += 1 + kl;
    }
    if (!ret)
        ret = kvs_peer_get(st, peer, &l);
    if (ret) {
        for (uint32_t i = 0; i < n; i++)
            kvs_fetch_blk_fail(st, f, i, ret);
        kvs_fetch_free_if_done(st, f);
        return;
    }
    f->link = l;
    out = *m;
    out.id = f->id;
    out.str_len = 0;
    out.flags = 0; /* in place is between this daemon and its client */
    out.block = 0; /* the peer numbers this message's blocks from 0 */
    if (kvs_srvstream_link_send(st, l, &out, body, blen))
        l->dead = true; /* failed by the next tick */
}
