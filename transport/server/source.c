/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sources: one block being sent to a peer link, for the peer's FETCH or
 * for a PUSH. A source follows a live streaming put (each part goes out as
 * soon as it and every part before it are done) or a sealed block (pinned
 * view, every part at once).
 */
#include "transport/server/stream_int.h"
#include "transport/server/diskq.h"

/* Sources: blocks sent to a link. */

void kvs_source_free_if_idle(kvs_srvstream_t *st, src_t *s)
{
    if (!s->ended || s->inflight)
        return;
    for (src_t **pp = &st->srcs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (s->has_view)
        kvs_store_unpin_view(st->store, &s->view);
    if (s->put && s->put->push_src == s)
        s->put->push_src = NULL;
    kvs_srvstream_src_put(st, s);
}

void kvs_source_end(kvs_srvstream_t *st, src_t *s, int status)
{
    if (s->ended)
        return;
    s->ended = true;
    if (s->has_view && s->view.has_xxh) {
        s->has_sum = true;
        s->sum = s->view.data_xxh;
    }
    if ((s->began || status) && !status && s->has_sum) {
        /* The checksum this daemon settled at the seal goes with END, so
         * the receiver need not read the block again to settle its own. */
        kvs_smsg_t m = {.op = KVS_OP_END,
                        .flags = KVS_SMSG_F_SUM,
                        .id = s->id,
                        .block = s->block,
                        .len = s->sum};

        kvs_srvstream_send(st, kvs_srvstream_link_ep(s->link), &m, NULL, 0,
                           NULL, 0, NULL, NULL, NULL);
    } else if (s->began || status) {
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(s->link), s->id,
                               s->block, status);
    }
    if (status)
        st->blocks_failed++;
    kvs_source_free_if_idle(st, s);
}

static void src_part_sent(kvs_srvstream_t *st, void *obj, void *obj2,
                          int status)
{
    src_t *s = obj;
    sput_t *p = obj2;

    (void)status;
    /* s stays counted until the put has had its say: finishing the put
     * ends s, and must not free it under us. */
    if (p) {
        p->inflight--;
        kvs_sput_maybe_finish(st, p);
    }
    s->inflight--;
    kvs_source_free_if_idle(st, s);
}

/* A disk read of a source's block into DRAM, on an I/O thread: a pin
 * (which reads it in, making room as a GET would) and its unpin. It
 * touches only its copy of the key, never the source, which may be gone
 * by the time it runs. */
typedef struct src_read {
    kvs_djob_t job; /* first: the job is the read */
    kvs_store_t *store;
    uint32_t ns;
    uint8_t key_len;
    uint8_t key[KVS_KEY_MAX];
} src_read_t;

static void src_read_run(kvs_djob_t *job)
{
    src_read_t *r = (src_read_t *)job;

    if (kvs_store_pin(r->store, r->ns, r->key, r->key_len, NULL) == 0)
        kvs_store_unpin(r->store, r->ns, r->key, r->key_len);
}

static void src_read_done(kvs_djob_t *job, bool cancelled)
{
    (void)cancelled;
    free(job);
}

/* Asks for s's block to be read in, at most once a second per source. */
static void source_read(kvs_srvstream_t *st, src_t *s)
{
    uint64_t now = kvs_clock_mono_ns();
    src_read_t *r;

    if (s->read_ns && now - s->read_ns < 1000000000ull)
        return;
    r = calloc(1, sizeof(*r));
    if (!r)
        return; /* asked again at the next tick */
    s->read_ns = now;
    r->job.run = src_read_run;
    r->job.done = src_read_done;
    r->store = st->store;
    r->ns = s->ns;
    r->key_len = s->key_len;
    memcpy(r->key, s->key, s->key_len);
    kvs_diskq_submit(st->diskq, &r->job);
}

void kvs_source_pump(kvs_srvstream_t *st, src_t *s)
{
    const uint32_t *lens;
    const uint8_t *base;
    uint32_t nparts;
    kvs_smsg_t m;

    if (s->ended)
        return;
    if (!kvs_srvstream_link_ep(s->link)) {
        kvs_source_end(st, s, KVS_EPEER);
        return;
    }
    if (!s->link->ready)
        return; /* pumped again when the link's HELLO is answered */
    if (!s->put && !s->has_view) {
        for (sput_t *p = st->sputs; p; p = p->next)
            if (!p->finished && !p->abort_req && p->ns == s->ns &&
                p->key_len == s->key_len && !memcmp(p->key, s->key, s->key_len))
                s->put = p;
        if (!s->put) {
            /* A block on disk only is read into DRAM on an I/O thread;
             * the tick pumps this source again until it is there. */
            int ret = kvs_store_pin_flags(st->store, s->ns, s->key, s->key_len,
                                          st->diskq ? KVS_PIN_NO_READ : 0,
                                          &s->view, NULL);
            if (ret == -EWOULDBLOCK)
                source_read(st, s);
            if (ret != 0) {
                if (kvs_clock_mono_ns() >= s->deadline_ns)
                    kvs_source_end(st, s, KVS_ENOTFOUND); /* may free s */
                return;
            }
            s->has_view = true;
        }
    }
    if (s->put) {
        nparts = s->put->nparts;
        lens = s->put->lens;
        base = part_buf(st, &s->put->ps, s->put->offs, 0);
    } else {
        nparts = s->view.nparts;
        lens = s->view.part_lens;
        base = s->view.data;
    }
    if (!s->began) {
        uint8_t body[KVS_SMSG_BODY_MAX];
        size_t blen = 0;
        uint64_t total = 0;
        bool meta = s->push && kvs_smeta_any(&s->put->meta);

        memset(&m, 0, sizeof(m));
        m.id = s->id;
        m.block = s->block;
        m.nparts = nparts;
        if (s->push) {
            /* Namespace, then the key, then the lengths. */
            m.op = KVS_OP_PUSH;
            m.block = s->put->cls;
            m.part = s->put->flags;
            m.str_len = (uint16_t)strlen(s->put->ns_name);
            memcpy(body, s->put->ns_name, m.str_len);
            blen = m.str_len;
            body[blen] = s->key_len;
            memcpy(body + blen + 1, s->key, s->key_len);
            blen += 1u + s->key_len;
        } else {
            m.op = KVS_OP_BLOCK;
        }
        if (blen + 4ull * nparts +
                (meta ? KVS_SMETA_FIXED + s->put->meta.parent_len : 0) >
            sizeof(body)) {
            kvs_source_end(st, s, KVS_ETOOBIG);
            return;
        }
        for (uint32_t i = 0; i < nparts; i++) {
            kvs_le32_store(body + blen, lens[i]);
            blen += 4;
            total += lens[i];
        }
        /* A push carries the put's parent, TTL and group. */
        if (meta) {
            m.flags |= KVS_SMSG_F_META;
            blen += kvs_smeta_put(&s->put->meta, body + blen);
        }
        m.len = total;
        s->began = true;
        if (kvs_srvstream_link_send(st, s->link, &m, body, blen)) {
            kvs_source_end(st, s, KVS_EPEER);
            return;
        }
    }
    while (s->next_part < nparts) {
        uint32_t i = s->next_part, n = 0;
        const uint8_t *data;
        uint64_t off = 0, len = 0;

        if (s->put) {
            if (!s->put->done[i])
                break;
            off = s->put->offs[i];
            data = part_buf(st, &s->put->ps, s->put->offs, i);
        } else {
            for (uint32_t j = 0; j < i; j++)
                off += lens[j];
            data = base + off;
        }
        /* The parts from i on that are ready now go as one run, up to
         * KVS_PART_RUN_BYTES, where the peer takes runs: a transfer and
         * its completion cost both daemons a wake-up on a small machine,
         * about 40 us a part (docs/operations.md, "Streaming
         * throughput"), and a part waits for nothing not there yet. */
        do {
            len += lens[i + n];
            n++;
        } while (s->link->part_runs && i + n < nparts &&
                 len + lens[i + n] <= KVS_PART_RUN_BYTES &&
                 (!s->put || s->put->done[i + n]));
        memset(&m, 0, sizeof(m));
        m.op = KVS_OP_PART;
        m.id = s->id;
        m.block = s->block;
        m.part = i;
        m.nparts = n > 1 ? n : 0;
        m.off = off;
        m.len = len;
        s->next_part += n;
        s->inflight++;
        if (s->put)
            s->put->inflight++;
        st->parts_out += n;
        s->link->last_tx_ns = kvs_clock_mono_ns();
        kvs_srvstream_send(st, kvs_srvstream_link_ep(s->link), &m, NULL, 0,
                           data, len, src_part_sent, s, s->put);
        if (s->ended)
            return;
    }
    if (s->next_part == nparts && s->has_view)
        kvs_source_end(st, s, 0);
}

src_t *kvs_source_new(kvs_srvstream_t *st, link_t *l, uint64_t id,
                      uint32_t block, uint32_t ns, const uint8_t *key,
                      uint32_t key_len, uint64_t wait_ms)
{
    src_t *s = kvs_srvstream_src_get(st);

    if (!s)
        return NULL;
    s->link = l;
    s->id = id;
    s->block = block;
    s->ns = ns;
    memcpy(s->key, key, key_len);
    s->key_len = (uint8_t)key_len;
    s->deadline_ns = kvs_clock_mono_ns() + wait_ms * 1000000ull;
    s->next = st->srcs;
    st->srcs = s;
    return s;
}
