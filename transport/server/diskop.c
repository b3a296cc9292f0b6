/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Requests that read the disk, served off the serving thread: the blocks
 * of a GET that are on disk only, a MATCH with a lease whose chain reaches
 * such a block, PREFETCH, and VERIFY. handler.c answers everything that
 * memory can answer at once and hands the rest here; each request becomes
 * one or more kvs_diskq jobs whose run() calls the engine on an I/O thread
 * and whose done() replies on the serving thread (diskq.h).
 *
 *   serving thread                     I/O thread
 *   GET k1 (DRAM) k2 k3 (disk)
 *     DATA 0 sent at once
 *     chunk {k2, k3} ----------------> pin k2 (read), pin k3 (read)
 *     (MATCH, GET of others served)
 *     DATA 1, DATA 2, GET reply  <---- done
 *
 * A GET's disk blocks go in chunks of GET_CHUNK keys, each chunk a job, so
 * its DATA messages leave as the chunks finish, several chunks read at once
 * on the I/O threads, and the reply follows the last.
 *
 * Ownership: a deferred request holds a reference on its connection and
 * one of its in-flight slots (conn->refs, conn->inflight) until done()
 * ends it. If the connection closed meanwhile, done() drops what run()
 * pinned and sends nothing. run() reads only the job and the store.
 */
#include "transport/server/server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

#define GET_CHUNK 8

/* What every deferred request carries. */
typedef struct dreq {
    kvs_server_t *srv;
    kvs_conn_t *conn;   /* referenced until dreq_end */
    kvs_wire_hdr_t hdr; /* of the request: opcode, req_id */
    uint64_t t0;        /* arrival, for the latency metric */
} dreq_t;

static void dreq_begin(dreq_t *d, kvs_server_t *srv, kvs_conn_t *conn,
                       const kvs_wire_msg_t *m)
{
    d->srv = srv;
    d->conn = conn;
    d->hdr = m->hdr;
    d->t0 = kvs_clock_mono_ns();
    conn->refs++;
    conn->inflight++;
    srv->deferred = true;
}

static void dreq_end(dreq_t *d)
{
    kvs_metrics_note_request(d->srv->metrics, d->hdr.opcode,
                             kvs_clock_mono_ns() - d->t0);
    d->conn->inflight--;
    kvs_conn_unref(d->conn);
}

/* Replies still make sense: the connection is open. */
static bool dreq_live(const dreq_t *d)
{
    return !d->conn->closing;
}

/* ------------------------------------------------------------------ */
/* GET. */

typedef struct dget {
    dreq_t req;
    uint32_t chunks; /* chunk jobs not yet done */
    uint32_t n;
    kvs_wire_block_t blocks[]; /* the reply's entries */
} dget_t;

typedef struct dget_chunk {
    kvs_djob_t job; /* first: the job is the chunk */
    dget_t *get;
    kvs_store_t *store;
    uint32_t ns;
    uint32_t nents;
    struct {
        uint32_t idx; /* entry of the GET */
        uint64_t cap;
        uint8_t key_len;
        uint8_t tier;
        int status;
        kvs_view_t view; /* pinned when status is 0 */
        uint8_t key[KVS_KEY_MAX];
    } ents[GET_CHUNK];
} dget_chunk_t;

static void get_run(kvs_djob_t *job)
{
    dget_chunk_t *c = (dget_chunk_t *)job;

    for (uint32_t i = 0; i < c->nents; i++)
        c->ents[i].status = kvs_store_pin_flags(
            c->store, c->ns, c->ents[i].key, c->ents[i].key_len, KVS_PIN_GET,
            &c->ents[i].view, &c->ents[i].tier);
}

static void get_done(kvs_djob_t *job, bool cancelled)
{
    dget_chunk_t *c = (dget_chunk_t *)job;
    dget_t *g = c->get;
    kvs_server_t *srv = g->req.srv;

    for (uint32_t i = 0; i < c->nents; i++) {
        kvs_wire_block_t *b = &g->blocks[c->ents[i].idx];
        kvs_tx_t *tx;

        if (cancelled) {
            b->status = -ECANCELED;
            continue;
        }
        if (c->ents[i].status) {
            b->status = c->ents[i].status;
            continue;
        }
        tx = dreq_live(&g->req) ? kvs_send_tx_get(srv, g->req.conn) : NULL;
        if (!tx) {
            kvs_store_unpin_view(srv->store, &c->ents[i].view);
            b->status = dreq_live(&g->req) ? -ENOMEM : KVS_EPEER;
            continue;
        }
        tx->view = c->ents[i].view;
        kvs_send_block(srv, tx, g->req.hdr.req_id, c->ents[i].idx,
                       c->ents[i].cap, c->ents[i].tier, b);
    }
    free(c);
    if (--g->chunks > 0)
        return;
    for (uint32_t i = 0; i < g->n; i++)
        srv->get_misses += g->blocks[i].status != 0;
    if (dreq_live(&g->req)) {
        kvs_wire_msg_t r = kvs_reply_to(&g->req.hdr, g->n);

        r.u.get_rep.blocks = g->blocks;
        kvs_send_reply(srv, g->req.conn, &r);
    }
    dreq_end(&g->req);
    free(g);
}

int kvs_diskop_get(kvs_server_t *srv, kvs_conn_t *conn, const kvs_wire_msg_t *m,
                   const kvs_wire_block_t *blocks, const uint32_t *idx,
                   uint32_t nidx)
{
    uint32_t n = m->hdr.count, nchunks = (nidx + GET_CHUNK - 1) / GET_CHUNK;
    dget_chunk_t **cs;
    dget_t *g;

    g = malloc(sizeof(*g) + (size_t)n * sizeof(g->blocks[0]));
    cs = calloc(nchunks, sizeof(*cs));
    if (!g || !cs)
        goto err_free;
    for (uint32_t k = 0; k < nchunks; k++) {
        cs[k] = calloc(1, sizeof(*cs[k]));
        if (!cs[k])
            goto err_free;
    }
    memcpy(g->blocks, blocks, (size_t)n * sizeof(g->blocks[0]));
    g->n = n;
    g->chunks = nchunks;
    dreq_begin(&g->req, srv, conn, m);
    for (uint32_t k = 0; k < nchunks; k++) {
        dget_chunk_t *c = cs[k];

        c->job.run = get_run;
        c->job.done = get_done;
        c->get = g;
        c->store = srv->store;
        c->ns = conn->ns;
        for (uint32_t j = k * GET_CHUNK; j < nidx && j < (k + 1) * GET_CHUNK;
             j++) {
            const kvs_wire_get_ent_t *ge = &m->u.get.ents[idx[j]];

            c->ents[c->nents].idx = idx[j];
            c->ents[c->nents].cap = ge->cap;
            c->ents[c->nents].key_len = (uint8_t)ge->key.len;
            memcpy(c->ents[c->nents].key, ge->key.data, ge->key.len);
            c->nents++;
        }
    }
    for (uint32_t k = 0; k < nchunks; k++)
        kvs_diskq_submit(srv->diskq, &cs[k]->job);
    free(cs);
    return 0;

err_free:
    for (uint32_t k = 0; cs && k < nchunks; k++)
        free(cs[k]);
    free(cs);
    free(g);
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* MATCH with a lease, PREFETCH and VERIFY: one job each. */

typedef struct dkeys {
    kvs_djob_t job; /* first: the job is the request */
    dreq_t req;
    kvs_store_t *store;
    uint32_t ns;
    uint32_t n;
    uint32_t lease_ms;      /* MATCH */
    uint64_t max_bps;       /* VERIFY */
    const atomic_int *stop; /* VERIFY */
    bool one_ns;            /* VERIFY of the namespace ns only */
    int status;
    size_t result;         /* matched, promoted */
    uint64_t checked, bad; /* VERIFY */
    kvs_key_t *keys;       /* n entries, into bytes */
    uint8_t *tiers;        /* n entries */
    uint8_t bytes[];
} dkeys_t;

/* A deferred request of m, with a copy of its keys if with_keys, that
 * runs run and then done; the caller fills what else run needs and
 * submits it. */
static dkeys_t *dkeys_new(kvs_server_t *srv, kvs_conn_t *conn,
                          const kvs_wire_msg_t *m, bool with_keys,
                          void (*run)(kvs_djob_t *),
                          void (*done)(kvs_djob_t *, bool))
{
    uint32_t n = with_keys ? m->hdr.count : 0;
    size_t kb = 0, off;
    dkeys_t *d;

    for (uint32_t i = 0; i < n; i++)
        kb += m->u.keys.keys[i].len;
    d = calloc(1, sizeof(*d) + (size_t)n * (sizeof(kvs_key_t) + 1) + kb + 8);
    if (!d)
        return NULL;
    d->store = srv->store;
    d->ns = conn->ns;
    d->n = n;
    d->keys = (kvs_key_t *)(void *)d->bytes;
    d->tiers = d->bytes + (size_t)n * sizeof(kvs_key_t);
    off = (size_t)n * (sizeof(kvs_key_t) + 1);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(d->bytes + off, m->u.keys.keys[i].data, m->u.keys.keys[i].len);
        d->keys[i].data = d->bytes + off;
        d->keys[i].len = m->u.keys.keys[i].len;
        off += m->u.keys.keys[i].len;
    }
    d->job.run = run;
    d->job.done = done;
    dreq_begin(&d->req, srv, conn, m);
    return d;
}

static void match_run(kvs_djob_t *job)
{
    dkeys_t *d = (dkeys_t *)job;

    d->status = kvs_store_match(d->store, d->ns, d->keys, d->n, KVS_MATCH_PIN,
                                d->tiers, &d->result);
}

static void match_done(kvs_djob_t *job, bool cancelled)
{
    dkeys_t *d = (dkeys_t *)job;
    kvs_server_t *srv = d->req.srv;
    kvs_conn_t *conn = d->req.conn;
    kvs_wire_msg_t r;
    uint64_t id = 0;
    int ret = cancelled ? -ECANCELED : d->status;

    if (ret == 0 && d->result > 0) {
        ret = dreq_live(&d->req)
                  ? kvs_conn_lease_add(conn, d->keys, d->result,
                                       d->lease_ms ? d->lease_ms
                                                   : srv->cfg.lease_default_ms,
                                       &id)
                  : KVS_EPEER;
        if (ret) /* no lease to hold the references: drop them */
            for (size_t i = 0; i < d->result; i++)
                kvs_store_unpin(srv->store, d->ns, d->keys[i].data,
                                d->keys[i].len);
    }
    if (ret) {
        kvs_send_status(srv, conn, &d->req.hdr, ret, false);
    } else {
        r = kvs_reply_to(&d->req.hdr, (uint32_t)d->result);
        r.u.match_rep.tiers = d->tiers;
        r.u.match_rep.lease_id = id;
        kvs_send_reply(srv, conn, &r);
    }
    dreq_end(&d->req);
    free(d);
}

int kvs_diskop_match(kvs_server_t *srv, kvs_conn_t *conn,
                     const kvs_wire_msg_t *m)
{
    dkeys_t *d = dkeys_new(srv, conn, m, true, match_run, match_done);

    if (!d)
        return -ENOMEM;
    d->lease_ms = m->u.keys.lease_ms;
    kvs_diskq_submit(srv->diskq, &d->job);
    return 0;
}

static void prefetch_run(kvs_djob_t *job)
{
    dkeys_t *d = (dkeys_t *)job;

    d->status = kvs_store_promote(d->store, d->ns, d->keys, d->n, &d->result);
}

static void prefetch_done(kvs_djob_t *job, bool cancelled)
{
    dkeys_t *d = (dkeys_t *)job;
    int ret = cancelled ? -ECANCELED : d->status;

    if (ret) {
        kvs_send_status(d->req.srv, d->req.conn, &d->req.hdr, ret, false);
    } else {
        kvs_wire_msg_t r = kvs_reply_to(&d->req.hdr, 0);

        r.u.prefetch_rep.promoted = d->result;
        kvs_send_reply(d->req.srv, d->req.conn, &r);
    }
    dreq_end(&d->req);
    free(d);
}

int kvs_diskop_prefetch(kvs_server_t *srv, kvs_conn_t *conn,
                        const kvs_wire_msg_t *m)
{
    dkeys_t *d = dkeys_new(srv, conn, m, true, prefetch_run, prefetch_done);

    if (!d)
        return -ENOMEM;
    kvs_diskq_submit(srv->diskq, &d->job);
    return 0;
}

static void verify_run(kvs_djob_t *job)
{
    dkeys_t *d = (dkeys_t *)job;

    d->status =
        kvs_store_verify_paced(d->store, d->one_ns ? &d->ns : NULL, NULL, NULL,
                               d->max_bps, d->stop, &d->checked, &d->bad);
}

static void verify_done(kvs_djob_t *job, bool cancelled)
{
    dkeys_t *d = (dkeys_t *)job;
    int ret = cancelled ? -ECANCELED : d->status;

    if (ret) {
        kvs_warn("verify: %s", kvs_strerror(ret));
        kvs_send_status(d->req.srv, d->req.conn, &d->req.hdr, ret, false);
    } else {
        kvs_wire_msg_t r = kvs_reply_to(&d->req.hdr, 0);

        kvs_info("verify: done: %llu blocks checked, %llu bad",
                 (unsigned long long)d->checked, (unsigned long long)d->bad);
        r.u.verify_rep.checked = d->checked;
        r.u.verify_rep.bad = d->bad;
        kvs_send_reply(d->req.srv, d->req.conn, &r);
    }
    dreq_end(&d->req);
    free(d);
}

int kvs_diskop_verify(kvs_server_t *srv, kvs_conn_t *conn,
                      const kvs_wire_msg_t *m)
{
    dkeys_t *d;

    /* An operator checks the whole store, a tenant its own namespace, and
     * a tenant on a namespace it may not use nothing. */
    if (!(conn->tenant && conn->tenant->is_operator) && !conn->ns_ok) {
        kvs_wire_msg_t r = kvs_reply_to(&m->hdr, 0);

        kvs_send_reply(srv, conn, &r);
        return 0;
    }
    d = dkeys_new(srv, conn, m, false, verify_run, verify_done);
    if (!d)
        return -ENOMEM;
    d->one_ns = !(conn->tenant && conn->tenant->is_operator);
    d->max_bps = (uint64_t)srv->cfg.verify_mib_s << 20;
    d->stop = kvs_diskq_stopping(srv->diskq);
    d->job.slow = true;
    kvs_info("verify: started in the background (%s)",
             srv->cfg.verify_mib_s ? "rate-limited" : "at disk speed");
    kvs_diskq_submit(srv->diskq, &d->job);
    return 0;
}

/* ------------------------------------------------------------------ */
/* PUT that must wait: durable entries are written to disk before they are
 * answered, and an entry that finds DRAM full waits for the write-behind
 * to make room (up to the store's full_wait_ms). handler.c stores what it
 * can without waiting (KVS_PUT_NO_WAIT) and hands the rest of the request
 * here: entries first..n-1, with a copy of their keys and payload (the
 * AM data or staging slot they came in is released when the handler
 * returns).
 *
 * PUTs are ordered among themselves (docs/protocol.md): a connection's
 * deferred PUTs run one at a time, in arrival order, the head of
 * conn->dput_head running; a PUT that arrives while one is queued goes
 * behind it, whatever it holds. The copies of all connections together
 * are bounded by dput_cap(); past it a PUT's entries are answered -EAGAIN
 * (try again), never held without bound. */

struct kvs_dput {
    kvs_djob_t job; /* first: the job is the request */
    dreq_t req;
    struct kvs_dput *next; /* the connection's queue */
    kvs_store_t *store;
    uint32_t n;           /* entries of the request */
    uint32_t first;       /* entries first..n-1 are put here */
    uint64_t bytes;       /* of this allocation (srv->dput_bytes) */
    int32_t *status;      /* n: the reply's */
    kvs_put_args_t *args; /* n - first */
    uint8_t buf[];        /* status, args, iovs, keys, payload */
};

/* Payload copies the daemon holds for deferred PUTs, at most: as many
 * full-size payloads as it stages at once. */
static uint64_t dput_cap(const kvs_server_t *srv)
{
    return (uint64_t)srv->cfg.max_payload * srv->cfg.staging_slots;
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static void put_run(kvs_djob_t *job)
{
    kvs_dput_t *p = (kvs_dput_t *)job;

    kvs_store_put_batch(p->store, p->args, p->n - p->first,
                        p->status + p->first);
}

static void put_done(kvs_djob_t *job, bool cancelled);

/* Ends p (run, or cancelled) and starts the connection's next PUT, or,
 * once nothing more will run (the connection closing, the queue
 * stopping), ends every one queued behind it too. */
static void put_finish(kvs_dput_t *p, bool cancelled)
{
    kvs_server_t *srv = p->req.srv;
    kvs_conn_t *conn = p->req.conn;
    kvs_dput_t *next;

    for (uint32_t i = p->first; i < p->n; i++) {
        const kvs_put_args_t *a = &p->args[i - p->first];
        uint64_t len = 0;

        if (cancelled)
            p->status[i] = -ECANCELED;
        for (uint32_t j = 0; p->status[i] == 0 && j < a->nparts; j++)
            len += a->parts[j].len;
        kvs_metrics_note_bytes(
            srv->metrics, KVS_METRICS_IN,
            (a->flags & KVS_PUT_NO_DRAM) ? KVS_TIER_NVME : KVS_TIER_DRAM, len);
    }
    if (dreq_live(&p->req)) {
        kvs_wire_msg_t r = kvs_reply_to(&p->req.hdr, p->n);

        r.u.status_rep.status = p->status;
        kvs_send_reply(srv, conn, &r);
    }
    srv->dput_bytes -= p->bytes;
    /* p is the head of its connection's queue. */
    next = p->next;
    conn->dput_head = next;
    if (!next)
        conn->dput_tail = NULL;
    dreq_end(&p->req); /* the next one holds a reference of its own */
    free(p);
    if (!next)
        return;
    if (cancelled || !dreq_live(&next->req) ||
        atomic_load(kvs_diskq_stopping(srv->diskq)))
        put_finish(next, true);
    else
        kvs_diskq_submit(srv->diskq, &next->job);
}

static void put_done(kvs_djob_t *job, bool cancelled)
{
    put_finish((kvs_dput_t *)job, cancelled);
}

int kvs_diskop_put(kvs_server_t *srv, kvs_conn_t *conn, const kvs_wire_msg_t *m,
                   const uint8_t *payload, const int32_t *status,
                   uint32_t first)
{
    uint32_t n = m->hdr.count, nparts = 0, k;
    uint64_t data = 0, data_off = first < n ? m->u.put.ents[first].data_off : 0;
    size_t keys = 0, size, off;
    kvs_iov_t *iovs;
    uint8_t *copy;
    kvs_dput_t *p;

    for (uint32_t i = first; i < n; i++) {
        const kvs_wire_put_ent_t *pe = &m->u.put.ents[i];

        nparts += pe->nparts;
        keys += pe->key.len + pe->parent.len;
        for (uint32_t j = 0; j < pe->nparts; j++)
            data += pe->part_lens[j];
    }
    /* Entries lie in the payload in order, back to back (the decoder
     * checked): first's offset and on, data bytes. */
    if (data && !payload)
        return -EINVAL;
    size = align8(sizeof(*p)) + align8((size_t)n * sizeof(int32_t)) +
           (size_t)(n - first) * sizeof(kvs_put_args_t) +
           (size_t)nparts * sizeof(kvs_iov_t) + keys + data;
    if (srv->dput_bytes + size > dput_cap(srv))
        return -EAGAIN;
    p = malloc(size);
    if (!p)
        return -ENOMEM;
    memset(p, 0, sizeof(*p));
    p->job.run = put_run;
    p->job.done = put_done;
    p->store = srv->store;
    p->n = n;
    p->first = first;
    p->bytes = size;
    off = align8(sizeof(*p));
    p->status = (int32_t *)(void *)((uint8_t *)p + off);
    off += align8((size_t)n * sizeof(int32_t));
    p->args = (kvs_put_args_t *)(void *)((uint8_t *)p + off);
    off += (size_t)(n - first) * sizeof(kvs_put_args_t);
    iovs = (kvs_iov_t *)(void *)((uint8_t *)p + off);
    off += (size_t)nparts * sizeof(kvs_iov_t);
    copy = (uint8_t *)p + off;
    for (uint32_t i = 0; i < n; i++)
        p->status[i] = i < first ? status[i] : 0;
    k = 0;
    for (uint32_t i = first; i < n; i++) {
        const kvs_wire_put_ent_t *pe = &m->u.put.ents[i];
        kvs_put_args_t *a = &p->args[i - first];

        kvs_handler_put_args(conn, pe, NULL, a, &iovs[k]);
        memcpy(copy, pe->key.data, pe->key.len);
        a->key = copy;
        copy += pe->key.len;
        if (pe->parent.len) {
            memcpy(copy, pe->parent.data, pe->parent.len);
            a->parent = copy;
            copy += pe->parent.len;
        }
        k += pe->nparts;
    }
    /* The payload last: iovs point into it, at each part's offset. */
    if (data)
        memcpy(copy, payload + data_off, data);
    k = 0;
    for (uint32_t i = first; i < n; i++) {
        const kvs_wire_put_ent_t *pe = &m->u.put.ents[i];
        uint64_t at = pe->data_off - data_off;

        for (uint32_t j = 0; j < pe->nparts; j++, k++) {
            iovs[k].base = copy + at;
            at += pe->part_lens[j];
        }
    }
    srv->dput_bytes += size;
    srv->puts_waited++;
    dreq_begin(&p->req, srv, conn, m);
    if (conn->dput_tail) {
        conn->dput_tail->next = p;
        conn->dput_tail = p;
        return 0;
    }
    conn->dput_head = conn->dput_tail = p;
    kvs_diskq_submit(srv->diskq, &p->job);
    return 0;
}
