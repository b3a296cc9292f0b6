/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash: streaming (kvstash/stream.h; stream_int.h has the map): the
 * state, the dispatch of what the sidecar sends, the sends, and streaming
 * puts. Fetches are stream_fetch.c's.
 *
 * The stream opcodes (transport/proto/stream_op.h) are opcodes of the one
 * wire protocol, on the client's connection (its bound bulk endpoint when
 * it has one), so they share the connection, its tenant and its namespace
 * with the request/reply calls, and are progressed by the same worker;
 * request.c hands each one received to kvs_client_stream_rx(). The state
 * (the live fetches and puts, by id) is made on first use and hangs off
 * the client.
 *
 * In place (a client that maps its sidecar's arena, kvstash/shm.h): a put
 * begun with kvs_stream_put_begin_inplace() learns where the block lies in
 * the arena from the sidecar's BLOCK answer (checked against the mapping),
 * the caller writes each part there, and a commit is a PART message
 * without bytes. Without a mapping the same calls work on a buffer of the
 * library's own (one allocation per block), with the ordinary messages.
 */
#include "kvstash/kvstash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ucp/api/ucp.h>

#include "common/clock.h"
#include "common/log.h"
#include "transport/client/client_int.h"
#include "transport/client/stream_int.h"
#include "transport/proto/stream_op.h"
#include "transport/proto/ucx.h"

/* The sidecar's answer to an in-place SPUT_BEGIN: where the block lies. */
static void put_on_block(cstate_t *cs, kvs_stream_put_t *p, const kvs_smsg_t *m)
{
    uint8_t *base;
    size_t len;
    uint64_t key;

    p->began = true;
    if (m->status) {
        p->begin_status = m->status;
        return;
    }
    if (!kvs_client_shm_map(cs->c, &base, &len, &key) ||
        m->nparts != p->nparts || m->len != p->len || m->off > len ||
        p->len > len - m->off) {
        p->begin_status = KVS_EPROTO;
        return;
    }
    p->data = base + m->off;
}

ucs_status_t kvs_client_stream_rx(kvs_client_t *c, const kvs_wire_msg_t *w,
                                  void *data, size_t len, bool rndv)
{
    kvs_client_internals_t ci;
    cstate_t *cs;
    kvs_smsg_t m;

    kvs_client_internals(c, &ci);
    cs = *ci.stream;
    if (!cs)
        return UCS_OK; /* nothing streamed yet: nothing to match */
    kvs_smsg_from_wire(w, &m);
    if (m.op == KVS_OP_SPUT_DONE) {
        for (kvs_stream_put_t *p = cs->puts; p; p = p->next)
            if (p->id == m.id) {
                p->done = true;
                p->status = m.status;
            }
        return UCS_OK;
    }
    if (m.op == KVS_OP_BLOCK && (m.flags & KVS_SMSG_F_INPLACE)) {
        /* The answer to an in-place SPUT_BEGIN (puts and fetches share
         * one id space). */
        for (kvs_stream_put_t *p = cs->puts; p; p = p->next)
            if (p->id == m.id && p->inplace && !p->began) {
                put_on_block(cs, p, &m);
                return UCS_OK;
            }
    }
    for (kvs_stream_fetch_t *f = cs->fetches; f; f = f->next)
        if (f->id == m.id)
            return kvs_stream_fetch_rx(f, &m, data, len, rndv, ci.worker);
    return UCS_OK;
}

int kvs_stream_state_get(kvs_client_t *c, cstate_t **out)
{
    kvs_client_internals_t ci;
    kvs_client_limits_t lim;
    cstate_t *cs;

    kvs_client_internals(c, &ci);
    if (ci.failed || !ci.ep)
        return ci.failed ? ci.failed : KVS_EPEER;
    /* Without STREAM the daemon drops stream opcodes, so a call would only
     * time out: refuse it now. A connection lacks STREAM when the daemon
     * moved it to another serving thread (daemon.threads > 1). */
    kvs_client_limits(c, &lim);
    if (!(lim.features & KVS_WIRE_FEAT_STREAM)) {
        kvs_warn("stream: this connection has no streaming (the daemon "
                 "moved it to a serving thread of its own, or does not "
                 "stream); create the client with KVSTASH_NO_MOVE=1 to "
                 "stream");
        return -EOPNOTSUPP;
    }
    if (*ci.stream) {
        *out = *ci.stream;
        return 0;
    }
    cs = calloc(1, sizeof(*cs));
    if (!cs)
        return -ENOMEM;
    cs->c = c;
    *ci.stream = cs;
    *out = cs;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sending: every send is waited for, so the buffers are the caller's
 * again when a call returns. */

static void csend_cb(void *request, ucs_status_t status, void *user_data)
{
    csend_t *s = user_data;

    s->done = true;
    s->status = status;
    ucp_request_free(request);
    if (s->abandoned)
        free(s); /* its client may be gone: not pooled */
}

static csend_t *csend_get(cstate_t *cs)
{
    csend_t *s = cs->send_free;

    if (s)
        cs->send_free = s->next;
    else if (!(s = malloc(sizeof(*s) + KVS_SMSG_MAX)))
        return NULL;
    s->next = NULL;
    s->cs = cs;
    s->req = NULL;
    s->done = s->abandoned = false;
    s->status = UCS_OK;
    return s;
}

static void csend_put(csend_t *s)
{
    s->next = s->cs->send_free;
    s->cs->send_free = s;
}

void kvs_client_stream_free(void *stream)
{
    cstate_t *cs = stream;

    if (!cs)
        return;
    while (cs->send_free) {
        csend_t *s = cs->send_free;

        cs->send_free = s->next;
        free(s);
    }
    while (cs->rx_free) {
        crx_t *r = cs->rx_free;

        cs->rx_free = r->next;
        free(r);
    }
    while (cs->put_free) {
        kvs_stream_put_t *p = cs->put_free;

        cs->put_free = p->next;
        free(p);
    }
    kvs_partpool_drain(&cs->parts);
    free(cs);
}

/* Posts m (with data bytes, if any) and returns at once. *out is NULL if
 * the send completed in place; otherwise kvs_stream_msg_wait() must be called. */
int kvs_stream_msg_post(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                        size_t blen, const void *data, size_t dlen,
                        csend_t **out)
{
    kvs_client_internals_t ci;
    csend_t *s;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = csend_cb,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_ptr_t sp;
    size_t flen;

    *out = NULL;
    if (blen > KVS_SMSG_BODY_MAX)
        return KVS_ETOOBIG;
    kvs_client_internals(c, &ci);
    if (!ci.ep)
        return ci.failed ? ci.failed : KVS_EPEER;
    if (!*ci.stream || !(s = csend_get(*ci.stream)))
        return -ENOMEM;
    prm.user_data = s;
    if (kvs_smsg_encode(m, body, blen, s->hdr, &flen) != 0) {
        csend_put(s);
        return -EINVAL;
    }
    /* On the bulk endpoint (when bound) part bytes move by CMA. */
    sp = ucp_am_send_nbx(ci.data_ep, KVS_AM_ID, s->hdr, flen, data, dlen, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        csend_put(s);
        return sp == NULL ? 0 : KVS_EPEER;
    }
    s->req = sp;
    *out = s;
    return 0;
}

/* Waits for s to complete and frees it. */
int kvs_stream_msg_wait(kvs_client_t *c, csend_t *s)
{
    kvs_client_internals_t ci;
    uint64_t idle = 0;
    int ret;

    kvs_client_internals(c, &ci);
    while (!s->done) {
        ret = kvs_client_progress_idle(c, &idle);
        if (ret < 0 && !s->done) {
            /* The connection is gone. On the control endpoint UCX fails
             * the send; on the bulk endpoint (no error handling) it may
             * never complete it. The daemon is gone and UCX only reads
             * the caller's bytes, so after a last try the send is left to
             * UCX, which frees s if it ever calls back. */
            for (int i = 0; i < 10000 && !s->done; i++)
                ucp_worker_progress(ci.worker);
            if (!s->done)
                ucp_request_cancel(ci.worker, s->req);
            for (int i = 0; i < 10000 && !s->done; i++)
                ucp_worker_progress(ci.worker);
            if (s->done)
                csend_put(s);
            else
                s->abandoned = true;
            return ret;
        }
    }
    ret = s->status == UCS_OK ? 0 : KVS_EPEER;
    csend_put(s);
    return ret;
}

int kvs_stream_msg_send(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                        size_t blen, const void *data, size_t dlen)
{
    csend_t *s;
    int ret = kvs_stream_msg_post(c, m, body, blen, data, dlen, &s);

    return ret || !s ? ret : kvs_stream_msg_wait(c, s);
}

/* ------------------------------------------------------------------ */
/* Streaming puts. */

static void put_unlink_free(kvs_stream_put_t *p);
static int put_wait_block(kvs_stream_put_t *p);

/* The parts' places, for kvs_stream_put_begin_inplace(): in the arena
 * once the sidecar answers (inplace), else in a buffer of ours. */
static int put_layout(kvs_stream_put_t *p, const uint32_t *part_lens,
                      bool inplace)
{
    p->pv = kvs_partpool_get(&p->cs->parts, p->nparts);
    if (!p->pv)
        return -ENOMEM;
    p->lens = p->pv->lens;
    p->offs = p->pv->offs;
    p->committed = p->pv->flag;
    for (uint32_t i = 0; i < p->nparts; i++) {
        p->lens[i] = part_lens[i];
        p->offs[i] = p->len;
        p->len += part_lens[i];
    }
    p->buffered = true;
    p->inplace = inplace;
    if (!inplace && !(p->data = malloc(p->len ? p->len : 1)))
        return -ENOMEM;
    return 0;
}

static int put_begin(kvs_client_t *c, const kvs_stream_put_args_t *a,
                     kvs_stream_put_t **put_out)
{
    const kvs_client_key_t *key = &a->key;
    const uint32_t *part_lens = a->part_lens;
    const char *push_peer = a->push_peer;
    uint32_t nparts = a->nparts;
    bool buffered = a->inplace, inplace = false;
    uint8_t *abase;
    size_t alen;
    uint64_t skey = 0;
    uint8_t body[KVS_SMSG_BODY_MAX];
    kvs_client_internals_t ci;
    kvs_smeta_t meta = {.ttl_ms = a->ttl_ms, .group = a->group};
    kvs_smsg_t m;
    size_t blen;
    kvs_stream_put_t *p;
    cstate_t *cs;
    int ret;

    if (!c || !key->data || !part_lens || !put_out || key->len < 1 ||
        key->len > KVS_KEY_MAX || nparts < 1 || nparts > KVS_PARTS_MAX ||
        a->parent.len > KVS_KEY_MAX || (a->parent.len && !a->parent.data))
        return -EINVAL;
    meta.parent_len = (uint8_t)a->parent.len;
    if (a->parent.len)
        memcpy(meta.parent, a->parent.data, a->parent.len);
    blen = key->len + 4ull * nparts;
    if (kvs_smeta_any(&meta))
        blen += KVS_SMETA_FIXED + meta.parent_len;
    kvs_client_internals(c, &ci);
    if (push_peer)
        blen += 1 + strlen(ci.ns) + strlen(push_peer);
    if (blen > sizeof(body) || (push_peer && strlen(ci.ns) > 255))
        return KVS_ETOOBIG;
    ret = kvs_stream_state_get(c, &cs);
    if (ret)
        return ret;
    p = cs->put_free;
    if (p)
        cs->put_free = p->next;
    else if (!(p = malloc(sizeof(*p))))
        return -ENOMEM;
    memset(p, 0, sizeof(*p));
    p->cs = cs;
    p->id = ++cs->next_id;
    p->nparts = nparts;
    if (buffered) {
        inplace = kvs_client_shm_map(c, &abase, &alen, &skey);
        ret = put_layout(p, part_lens, inplace);
        if (ret) {
            put_unlink_free(p); /* not listed yet: only freed */
            return ret;
        }
    }
    memset(&m, 0, sizeof(m));
    m.op = KVS_OP_SPUT_BEGIN;
    m.id = p->id;
    if (inplace) {
        m.flags |= KVS_SMSG_F_INPLACE;
        m.off = skey;
    }
    m.block = a->cls;
    m.part = a->flags;
    m.nparts = nparts;
    m.str_len = (uint16_t)key->len;
    memcpy(body, key->data, key->len);
    blen = key->len;
    for (uint32_t i = 0; i < nparts; i++) {
        kvs_le32_store(body + blen, part_lens[i]);
        blen += 4;
    }
    if (kvs_smeta_any(&meta)) {
        m.flags |= KVS_SMSG_F_META;
        blen += kvs_smeta_put(&meta, body + blen);
    }
    if (push_peer) {
        m.flags |= KVS_SMSG_F_PUSH;
        body[blen] = (uint8_t)strlen(ci.ns);
        memcpy(body + blen + 1, ci.ns, body[blen]);
        blen += 1u + body[blen];
        memcpy(body + blen, push_peer, strlen(push_peer));
        blen += strlen(push_peer);
    }
    p->next = cs->puts;
    cs->puts = p;
    /* In place, the sidecar's answer (where the block lies) is waited
     * for by the first kvs_stream_put_buf(), so that a caller who begins
     * the next block before writing this one never waits for it. */
    ret = kvs_stream_msg_send(c, &m, body, blen, NULL, 0);
    if (ret) {
        put_unlink_free(p);
        return ret;
    }
    *put_out = p;
    return 0;
}

KVS_API int kvs_stream_put_begin(kvs_client_t *c, const kvs_client_key_t *key,
                                 const uint32_t *part_lens, uint32_t nparts,
                                 uint8_t cls, uint32_t flags,
                                 const char *push_peer,
                                 kvs_stream_put_t **put_out)
{
    kvs_stream_put_args_t a = {.part_lens = part_lens,
                               .nparts = nparts,
                               .flags = flags,
                               .cls = cls,
                               .push_peer = push_peer};

    if (!key)
        return -EINVAL;
    a.key = *key;
    return put_begin(c, &a, put_out);
}

KVS_API int kvs_stream_put_open(kvs_client_t *c,
                                const kvs_stream_put_args_t *args,
                                kvs_stream_put_t **put_out)
{
    if (!args)
        return -EINVAL;
    return put_begin(c, args, put_out);
}

KVS_API int kvs_stream_put_begin_inplace(kvs_client_t *c,
                                         const kvs_client_key_t *key,
                                         const uint32_t *part_lens,
                                         uint32_t nparts, uint8_t cls,
                                         uint32_t flags, const char *push_peer,
                                         kvs_stream_put_t **put_out)
{
    kvs_stream_put_args_t a = {.part_lens = part_lens,
                               .nparts = nparts,
                               .flags = flags,
                               .cls = cls,
                               .inplace = 1,
                               .push_peer = push_peer};

    if (!key)
        return -EINVAL;
    a.key = *key;
    return put_begin(c, &a, put_out);
}

/* Waits for the sidecar's BLOCK answer to an in-place begin. */
static int put_wait_block(kvs_stream_put_t *p)
{
    uint64_t idle = 0;
    int ret;

    while (!p->began && !p->done) {
        ret = kvs_client_progress_idle(p->cs->c, &idle);
        if (ret < 0)
            return ret;
    }
    if (!p->began) { /* SPUT_DONE before BLOCK: cannot be, but say why */
        p->began = true;
        p->begin_status = p->status ? p->status : KVS_EPROTO;
    }
    return p->begin_status;
}

KVS_API int kvs_stream_put_buf(kvs_stream_put_t *p, uint32_t part,
                               void **buf_out, size_t *len_out)
{
    if (!p || !buf_out || !len_out)
        return -EINVAL;
    if (!p->buffered)
        return -EOPNOTSUPP; /* begun with kvs_stream_put_begin() */
    if (part >= p->nparts)
        return -ERANGE;
    if (p->inplace && !p->began) {
        int ret = put_wait_block(p);

        if (ret)
            return ret;
    }
    *buf_out = p->data + p->offs[part];
    *len_out = p->lens[part];
    return 0;
}

KVS_API int kvs_stream_put_commit(kvs_stream_put_t *p, uint32_t part)
{
    kvs_smsg_t m;
    csend_t *s;
    int ret;

    if (!p)
        return -EINVAL;
    if (!p->buffered)
        return -EOPNOTSUPP;
    if (part >= p->nparts)
        return -ERANGE;
    if (p->committed[part])
        return -EALREADY;
    if (p->done)
        return p->status ? p->status : KVS_EPROTO;
    if (!p->inplace) {
        /* No mapping: the part goes as an ordinary one, from our buffer,
         * which stays unchanged until seal or abort. */
        ret = kvs_stream_put_part_nb(p, part, p->data + p->offs[part],
                                     p->lens[part]);
        if (!ret)
            p->committed[part] = 1;
        return ret;
    }
    memset(&m, 0, sizeof(m));
    m.op = KVS_OP_SPUT_PART;
    m.flags = KVS_SMSG_F_INPLACE;
    m.id = p->id;
    m.part = part;
    m.len = p->lens[part];
    ret = kvs_stream_msg_post(p->cs->c, &m, NULL, 0, NULL, 0, &s);
    if (!ret && s) {
        /* Not sent at once (a full FIFO): one turn of progress pushes it
         * out now rather than at the caller's next wait, a block later. */
        s->next = p->posted;
        p->posted = s;
        kvs_req_worker_progress(p->cs->c);
    }
    if (!ret)
        p->committed[part] = 1;
    return ret;
}

/* The PUT_PART message for part of p, or why there is none. */
static int part_msg(const kvs_stream_put_t *p, uint32_t part, size_t len,
                    kvs_smsg_t *m)
{
    if (!p || part >= p->nparts)
        return -EINVAL;
    if (p->done)
        return p->status ? p->status : KVS_EPROTO;
    memset(m, 0, sizeof(*m));
    m->op = KVS_OP_SPUT_PART;
    m->id = p->id;
    m->part = part;
    m->len = len;
    return 0;
}

KVS_API int kvs_stream_put_part(kvs_stream_put_t *p, uint32_t part,
                                const void *buf, size_t len)
{
    kvs_smsg_t m;
    int ret = part_msg(p, part, len, &m);

    return ret ? ret : kvs_stream_msg_send(p->cs->c, &m, NULL, 0, buf, len);
}

KVS_API int kvs_stream_put_part_nb(kvs_stream_put_t *p, uint32_t part,
                                   const void *buf, size_t len)
{
    kvs_smsg_t m;
    csend_t *s;
    int ret = part_msg(p, part, len, &m);

    if (ret)
        return ret;
    ret = kvs_stream_msg_post(p->cs->c, &m, NULL, 0, buf, len, &s);
    if (!ret && s) {
        s->next = p->posted;
        p->posted = s;
    }
    return ret;
}

/* Waits for every part posted with kvs_stream_put_part_nb(): the caller's
 * buffers are its own again after this. Returns the first error. */
static int put_wait_posted(kvs_stream_put_t *p)
{
    int ret = 0;

    while (p->posted) {
        csend_t *s = p->posted;
        int r;

        p->posted = s->next;
        r = kvs_stream_msg_wait(p->cs->c, s);
        if (!ret)
            ret = r;
    }
    return ret;
}

static void put_unlink_free(kvs_stream_put_t *p)
{
    for (kvs_stream_put_t **pp = &p->cs->puts; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    kvs_partpool_put(&p->cs->parts, p->pv);
    if (!p->inplace)
        free(p->data); /* ours; in place, the arena's */
    p->next = p->cs->put_free;
    p->cs->put_free = p;
}

static int put_finish(kvs_stream_put_t *p, uint8_t op)
{
    kvs_client_t *c = p->cs->c;
    uint64_t idle = 0;
    kvs_smsg_t m;
    int ret;

    memset(&m, 0, sizeof(m));
    m.op = op;
    m.id = p->id;
    /* SEAL or ABORT follows the posted parts on the same endpoint. */
    ret = kvs_stream_msg_send(c, &m, NULL, 0, NULL, 0);
    if (put_wait_posted(p) && !ret && op == KVS_OP_SPUT_SEAL)
        ret = KVS_EPEER;
    while (!ret && !p->done) {
        ret = kvs_client_progress_idle(c, &idle);
        if (ret > 0)
            ret = 0;
    }
    if (!ret)
        ret = p->status;
    put_unlink_free(p);
    return ret;
}

KVS_API int kvs_stream_put_seal(kvs_stream_put_t *p)
{
    if (!p)
        return -EINVAL;
    return put_finish(p, KVS_OP_SPUT_SEAL);
}

KVS_API void kvs_stream_put_abort(kvs_stream_put_t *p)
{
    if (p)
        (void)put_finish(p, KVS_OP_SPUT_ABORT);
}
