/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash: streaming puts and streaming fetches (kvstash/stream.h).
 *
 * The stream opcodes (transport/proto/stream_op.h) are opcodes of the one
 * wire protocol, on the client's connection (its bound bulk endpoint when
 * it has one), so they share the connection, its tenant and its namespace
 * with the request/reply calls, and are progressed by the same worker;
 * request.c hands each one received to kvs_client_stream_rx(). The state
 * (the live fetches and puts, by id) is made on first use and hangs off
 * the client.
 *
 * A fetch's block buffer receives each part at its offset: rendezvous data
 * is written there by UCX straight from the sidecar's arena (the one copy);
 * small parts that came eagerly are copied from UCX's receive buffer.
 *
 * In place (a client that maps its sidecar's arena, kvstash/shm.h): a put
 * begun with kvs_stream_put_begin_inplace() learns where the block lies in
 * the arena from the sidecar's BLOCK answer, the caller writes each part
 * there, and a commit is a PART message without bytes; a fetch with
 * blocks whose buf is NULL gets PART messages without bytes and the
 * caller reads each part where it landed in the sidecar's arena. Offsets
 * the sidecar sends are checked against the mapping before a pointer is
 * made of them. Without a mapping the same calls work on buffers of the
 * library's own (one allocation per block), with the ordinary messages.
 */
#include "kvstash/kvstash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ucp/api/ucp.h>

#include "common/clock.h"
#include "transport/client/client_int.h"
#include "transport/proto/stream_op.h"
#include "transport/proto/ucx.h"

typedef struct cstate {
    kvs_client_t *c;
    kvs_stream_fetch_t *fetches;
    kvs_stream_put_t *puts;
    uint64_t next_id;
} cstate_t;

typedef struct cblk {
    void *buf;
    size_t cap;
    int status;
    bool began, complete;
    uint32_t nparts;
    uint32_t parts_in;
    uint32_t inflight; /* rendezvous receives into buf */
    uint64_t len;
    uint64_t *offs;
    uint32_t *lens;
    uint8_t *got;
    uint64_t first_ns, complete_ns;
    const uint8_t *view; /* in place: the block in the sidecar's arena */
    void *own;           /* buf NULL, not in place: the library's buffer */
} cblk_t;

struct kvs_stream_fetch {
    kvs_stream_fetch_t *next;
    cstate_t *cs;
    uint64_t id;
    uint32_t n;
    int status;   /* the whole fetch failed */
    bool inplace; /* the sidecar sends PART without bytes */
    cblk_t blk[];
};

struct kvs_stream_put {
    kvs_stream_put_t *next;
    cstate_t *cs;
    uint64_t id;
    uint32_t nparts;
    bool done;
    int status;
    struct csend *posted; /* kvs_stream_put_part_nb() sends */
    /* kvs_stream_put_begin_inplace(): where part i goes (data + offs[i],
     * lens[i] bytes), in the arena when inplace, else in the library's
     * own buffer (data is then malloc'd); which parts were committed. */
    bool buffered, inplace, began;
    int begin_status; /* the sidecar's BLOCK answer */
    uint8_t *data;
    uint64_t len;
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *committed;
};

typedef struct crx {
    kvs_stream_fetch_t *f;
    uint32_t block, part;
} crx_t;

/* ------------------------------------------------------------------ */

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
    free(r);
    ucp_request_free(request);
}

static ucs_status_t on_part(cstate_t *cs, kvs_stream_fetch_t *f,
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

    (void)cs;
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
    r = malloc(sizeof(*r));
    if (!r) {
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
    if (sp == NULL) {
        k->inflight--;
        free(r);
        part_landed(f, m->block, m->part, 0);
    } else if (UCS_PTR_IS_ERR(sp)) {
        k->inflight--;
        free(r);
        part_landed(f, m->block, m->part, KVS_EPEER);
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
    k->lens = calloc(m->nparts, sizeof(*k->lens));
    k->offs = calloc(m->nparts, sizeof(*k->offs));
    k->got = calloc(m->nparts, 1);
    kvs_smsg_rd_init(&rd, m);
    if (!k->lens || !k->offs || !k->got) {
        k->status = -ENOMEM;
        return;
    }
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
    }
}

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
    for (kvs_stream_fetch_t *f = cs->fetches; f; f = f->next) {
        if (f->id != m.id)
            continue;
        switch (m.op) {
        case KVS_OP_BLOCK:
            on_block(f, &m);
            break;
        case KVS_OP_PART:
            return on_part(cs, f, &m, data, len, rndv, ci.worker);
        case KVS_OP_END:
            on_end(f, &m);
            break;
        default:
            break;
        }
        break;
    }
    return UCS_OK;
}

static int cstate_get(kvs_client_t *c, cstate_t **out)
{
    kvs_client_internals_t ci;
    cstate_t *cs;

    kvs_client_internals(c, &ci);
    if (ci.failed || !ci.ep)
        return ci.failed ? ci.failed : KVS_EPEER;
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

typedef struct csend {
    struct csend *next; /* a put's sends not yet waited for */
    void *req;          /* the UCX request; NULL once done */
    bool done;
    bool abandoned; /* the caller gave up: the callback frees */
    ucs_status_t status;
    uint8_t hdr[]; /* UCX may read it until the send is done */
} csend_t;

static void csend_cb(void *request, ucs_status_t status, void *user_data)
{
    csend_t *s = user_data;

    s->done = true;
    s->status = status;
    ucp_request_free(request);
    if (s->abandoned)
        free(s);
}

/* Posts m (with data bytes, if any) and returns at once. *out is NULL if
 * the send completed in place; otherwise csend_wait() must be called. */
static int smsg_post(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                     size_t blen, const void *data, size_t dlen, csend_t **out)
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
    if (!(s = calloc(1, sizeof(*s) + KVS_SMSG_MAX)))
        return -ENOMEM;
    prm.user_data = s;
    if (kvs_smsg_encode(m, body, blen, s->hdr, &flen) != 0) {
        free(s);
        return -EINVAL;
    }
    /* On the bulk endpoint (when bound) part bytes move by CMA. */
    sp = ucp_am_send_nbx(ci.data_ep, KVS_AM_ID, s->hdr, flen, data, dlen, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        free(s);
        return sp == NULL ? 0 : KVS_EPEER;
    }
    s->req = sp;
    *out = s;
    return 0;
}

/* Waits for s to complete and frees it. */
static int csend_wait(kvs_client_t *c, csend_t *s)
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
                free(s);
            else
                s->abandoned = true;
            return ret;
        }
    }
    ret = s->status == UCS_OK ? 0 : KVS_EPEER;
    free(s);
    return ret;
}

static int smsg_send(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                     size_t blen, const void *data, size_t dlen)
{
    csend_t *s;
    int ret = smsg_post(c, m, body, blen, data, dlen, &s);

    return ret || !s ? ret : csend_wait(c, s);
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
    p->lens = malloc(4ull * p->nparts);
    p->offs = malloc(8ull * p->nparts);
    p->committed = calloc(p->nparts, 1);
    if (!p->lens || !p->offs || !p->committed)
        return -ENOMEM;
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

static int put_begin(kvs_client_t *c, const kvs_client_key_t *key,
                     const uint32_t *part_lens, uint32_t nparts, uint8_t cls,
                     uint32_t flags, const char *push_peer, bool buffered,
                     kvs_stream_put_t **put_out)
{
    uint8_t *abase;
    size_t alen;
    uint64_t skey = 0;
    bool inplace = false;
    uint8_t body[KVS_SMSG_BODY_MAX];
    kvs_client_internals_t ci;
    kvs_smsg_t m;
    size_t blen;
    kvs_stream_put_t *p;
    cstate_t *cs;
    int ret;

    if (!c || !key || !part_lens || !put_out || key->len < 1 ||
        key->len > KVS_KEY_MAX || nparts < 1 || nparts > KVS_PARTS_MAX)
        return -EINVAL;
    blen = key->len + 4ull * nparts;
    kvs_client_internals(c, &ci);
    if (push_peer)
        blen += 1 + strlen(ci.ns) + strlen(push_peer);
    if (blen > sizeof(body) || (push_peer && strlen(ci.ns) > 255))
        return KVS_ETOOBIG;
    ret = cstate_get(c, &cs);
    if (ret)
        return ret;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
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
    m.block = cls;
    m.part = flags;
    m.nparts = nparts;
    m.str_len = (uint16_t)key->len;
    memcpy(body, key->data, key->len);
    blen = key->len;
    for (uint32_t i = 0; i < nparts; i++) {
        kvs_le32_store(body + blen, part_lens[i]);
        blen += 4;
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
    ret = smsg_send(c, &m, body, blen, NULL, 0);
    if (!ret && inplace)
        ret = put_wait_block(p);
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
    return put_begin(c, key, part_lens, nparts, cls, flags, push_peer, false,
                     put_out);
}

KVS_API int kvs_stream_put_begin_inplace(kvs_client_t *c,
                                         const kvs_client_key_t *key,
                                         const uint32_t *part_lens,
                                         uint32_t nparts, uint8_t cls,
                                         uint32_t flags, const char *push_peer,
                                         kvs_stream_put_t **put_out)
{
    return put_begin(c, key, part_lens, nparts, cls, flags, push_peer, true,
                     put_out);
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
    if (!p->began) /* SPUT_DONE before BLOCK: cannot be, but say why */
        return p->status ? p->status : KVS_EPROTO;
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
    ret = smsg_post(p->cs->c, &m, NULL, 0, NULL, 0, &s);
    if (!ret && s) {
        s->next = p->posted;
        p->posted = s;
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

    return ret ? ret : smsg_send(p->cs->c, &m, NULL, 0, buf, len);
}

KVS_API int kvs_stream_put_part_nb(kvs_stream_put_t *p, uint32_t part,
                                   const void *buf, size_t len)
{
    kvs_smsg_t m;
    csend_t *s;
    int ret = part_msg(p, part, len, &m);

    if (ret)
        return ret;
    ret = smsg_post(p->cs->c, &m, NULL, 0, buf, len, &s);
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
        r = csend_wait(p->cs->c, s);
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
    free(p->lens);
    free(p->offs);
    free(p->committed);
    if (!p->inplace)
        free(p->data); /* ours; in place, the arena's */
    free(p);
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
    ret = smsg_send(c, &m, NULL, 0, NULL, 0);
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

/* ------------------------------------------------------------------ */
/* Streaming fetches. */

KVS_API int kvs_stream_fetch(kvs_client_t *c, const char *peer,
                             const kvs_stream_block_t *blocks, size_t n,
                             uint32_t wait_ms, kvs_stream_fetch_t **fetch_out)
{
    uint8_t body[KVS_SMSG_BODY_MAX];
    kvs_client_internals_t ci;
    kvs_stream_fetch_t *f;
    kvs_smsg_t m;
    size_t blen, plen, nl;
    cstate_t *cs;
    int ret;

    if (!c || !peer || !blocks || !fetch_out || n < 1 || n > UINT32_MAX - 1)
        return -EINVAL;
    kvs_client_internals(c, &ci);
    plen = strlen(peer);
    nl = strlen(ci.ns);
    blen = plen + 1 + nl;
    for (size_t i = 0; i < n; i++) {
        if (blocks[i].key.len < 1 || blocks[i].key.len > KVS_KEY_MAX)
            return -EINVAL;
        blen += 1 + blocks[i].key.len;
    }
    if (blen > sizeof(body) || plen < 1 || plen > 255 || nl > 255)
        return KVS_ETOOBIG;
    ret = cstate_get(c, &cs);
    if (ret)
        return ret;
    f = calloc(1, sizeof(*f) + n * sizeof(cblk_t));
    if (!f)
        return -ENOMEM;
    f->cs = cs;
    f->id = ++cs->next_id;
    f->n = (uint32_t)n;
    memcpy(body, peer, plen);
    blen = plen;
    body[blen] = (uint8_t)nl;
    memcpy(body + blen + 1, ci.ns, nl);
    blen += 1 + nl;
    {
        uint8_t *abase;
        size_t alen;
        uint64_t skey;

        for (size_t i = 0; i < n; i++)
            f->inplace |= blocks[i].buf == NULL;
        f->inplace = f->inplace && kvs_client_shm_map(c, &abase, &alen, &skey);
    }
    for (size_t i = 0; i < n; i++) {
        f->blk[i].buf = blocks[i].buf;
        f->blk[i].cap = blocks[i].cap;
        body[blen] = (uint8_t)blocks[i].key.len;
        memcpy(body + blen + 1, blocks[i].key.data, blocks[i].key.len);
        blen += 1 + blocks[i].key.len;
    }
    memset(&m, 0, sizeof(m));
    m.op = KVS_OP_FETCH;
    m.flags = f->inplace ? KVS_SMSG_F_INPLACE : 0;
    m.id = f->id;
    m.nparts = (uint32_t)n;
    m.len = wait_ms;
    m.str_len = (uint16_t)plen;
    f->next = cs->fetches;
    cs->fetches = f;
    ret = smsg_send(c, &m, body, blen, NULL, 0);
    if (ret) {
        cs->fetches = f->next;
        free(f);
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

        (void)smsg_send(c, &m, NULL, 0, NULL, 0);
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
        free(f->blk[b].lens);
        free(f->blk[b].offs);
        free(f->blk[b].got);
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
