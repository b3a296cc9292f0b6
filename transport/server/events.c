// SPDX-License-Identifier: Apache-2.0
/*
 * The KV event publisher. The store's callback copies each tier change into
 * a bounded queue (a mutex ring: the callback runs under the store's lock
 * and must not wait, so a full ring drops); one thread drains the ring
 * every few milliseconds, turns runs of changes into vLLM events (a chain
 * of stored blocks, each the parent of the next, becomes one BlockStored;
 * consecutive removals from one tier one BlockRemoved), encodes them as one
 * KVEventBatch in msgspec's map encoding with tagged events, and publishes
 * [topic, seq, payload]. The same thread answers replay requests on the
 * ROUTER socket from a ring of the last buffer_steps payloads, so no
 * socket is ever used by two threads.
 *
 * Medium names: DRAM is "CPU", NVMe "STORAGE" (vLLM's own offloading says
 * "CPU" for host memory; "STORAGE" is kvstash's name for disk).
 */
#include "transport/server/events.h"

#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"
#include "kvstash/status.h"

#define EV_POLL_MS 5

/* One queued tier change: what the callback copies. */
struct qev {
    uint8_t type, tier, key_len, parent_len;
    uint8_t key[KVS_KEY_MAX];
    uint8_t parent[KVS_KEY_MAX];
};

/* A published payload kept for replay. */
struct kept {
    uint64_t seq;
    size_t len;
    char *data;
};

struct kvs_events {
    kvs_events_config_t cfg;
    char *topic;
    void *zctx, *pub, *replay;

    /* The queue. Guarded by qlock. */
    pthread_mutex_t qlock;
    struct qev *q;
    uint32_t qcap, qhead, qlen;
    bool stop;
    kvs_events_stats_t st; /* queued, dropped under qlock */
    uint64_t warned_ns;

    /* The publisher thread's own. */
    pthread_t thr;
    struct qev *work;  /* batch_max events taken from the queue */
    struct kept *kept; /* buffer_steps entries, a ring */
    uint32_t nkept, kept_head;
    uint64_t seq;
    msgpack_sbuffer sbuf;
    bool cleared_sent;
    uint64_t batches, events, replays; /* read with qlock (stats) */
};

void kvs_events_config_default(kvs_events_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->topic = "";
    cfg->queue_events = 65536;
    cfg->buffer_steps = 10000; /* vLLM's default */
    cfg->batch_max = 1024;
}

void kvs_events_store_cb(void *arg, const kvs_store_event_t *e)
{
    kvs_events_t *ev = arg;
    struct qev *slot;

    if (e->key_len > KVS_KEY_MAX || e->parent_len > KVS_KEY_MAX)
        return; /* the store never makes these */
    pthread_mutex_lock(&ev->qlock);
    if (ev->qlen == ev->qcap) {
        uint64_t now = kvs_clock_mono_ns();

        ev->st.dropped++;
        if (now - ev->warned_ns > 1000000000ull) {
            ev->warned_ns = now;
            kvs_warn("events: queue full (%u): %llu tier changes dropped "
                     "so far; consumers' view of this node is stale "
                     "(raise events.queue_events)",
                     ev->qcap, (unsigned long long)ev->st.dropped);
        }
        pthread_mutex_unlock(&ev->qlock);
        return;
    }
    slot = &ev->q[(ev->qhead + ev->qlen) % ev->qcap];
    ev->qlen++;
    ev->st.queued++;
    slot->type = e->type;
    slot->tier = e->tier;
    slot->key_len = (uint8_t)e->key_len;
    slot->parent_len = (uint8_t)e->parent_len;
    memcpy(slot->key, e->key, e->key_len);
    memcpy(slot->parent, e->parent, e->parent_len);
    pthread_mutex_unlock(&ev->qlock);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

static const char *medium(uint8_t tier)
{
    return tier == KVS_TIER_NVME ? "STORAGE" : "CPU";
}

/* How many events of work[i..n) go into one vLLM event. */
static uint32_t run_len(const struct qev *w, uint32_t i, uint32_t n)
{
    uint32_t j = i + 1;

    for (; j < n; j++) {
        const struct qev *a = &w[j - 1], *b = &w[j];

        if (b->type != w[i].type || b->tier != w[i].tier)
            break;
        if (b->type == KVS_STORE_EV_STORED &&
            (b->parent_len != a->key_len ||
             memcmp(b->parent, a->key, a->key_len)))
            break; /* BlockStored has one parent for its whole chain */
    }
    return j - i;
}

/* One vLLM event from w[0..n): map-encoded, tag field "type" first, the
 * fields in vLLM's order, those with defaults omitted (omit_defaults). */
static void pack_event(kvs_events_t *ev, msgpack_packer *pk,
                       const struct qev *w, uint32_t n)
{
    bool stored = w[0].type == KVS_STORE_EV_STORED;

    msgpack_pack_map(pk, stored ? 8 : 3);
    pack_str(pk, "type");
    pack_str(pk, stored ? "BlockStored" : "BlockRemoved");
    pack_str(pk, "block_hashes");
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        pack_bin(pk, w[i].key, w[i].key_len);
    if (stored) {
        pack_str(pk, "parent_block_hash");
        if (w[0].parent_len)
            pack_bin(pk, w[0].parent, w[0].parent_len);
        else
            msgpack_pack_nil(pk);
        pack_str(pk, "token_ids");
        msgpack_pack_array(pk, 0); /* kvstash never sees tokens */
        pack_str(pk, "block_size");
        msgpack_pack_uint32(pk, ev->cfg.block_size);
        pack_str(pk, "lora_id");
        msgpack_pack_nil(pk);
    }
    pack_str(pk, "medium");
    pack_str(pk, medium(w[0].tier));
    if (stored) {
        pack_str(pk, "lora_name");
        msgpack_pack_nil(pk);
    }
}

/* Encodes work[0..n) (n may be 0 with clear) as one KVEventBatch into
 * ev->sbuf; returns the number of vLLM events in it. */
static uint32_t encode_batch(kvs_events_t *ev, uint32_t n, bool clear)
{
    msgpack_packer pk;
    uint32_t nev = clear ? 1 : 0, i;
    struct timespec ts;

    for (i = 0; i < n; i += run_len(ev->work, i, n))
        nev++;
    msgpack_sbuffer_clear(&ev->sbuf);
    msgpack_packer_init(&pk, &ev->sbuf, msgpack_sbuffer_write);
    clock_gettime(CLOCK_REALTIME, &ts);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "ts");
    msgpack_pack_double(&pk, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    pack_str(&pk, "events");
    msgpack_pack_array(&pk, nev);
    if (clear) {
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "type");
        pack_str(&pk, "AllBlocksCleared");
    }
    for (i = 0; i < n;) {
        uint32_t r = run_len(ev->work, i, n);

        pack_event(ev, &pk, &ev->work[i], r);
        i += r;
    }
    pack_str(&pk, "data_parallel_rank");
    msgpack_pack_int32(&pk, ev->cfg.dp_rank);
    return nev;
}

static void seq_bytes(uint64_t seq, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--, seq >>= 8)
        out[i] = (uint8_t)seq;
}

/* Publishes ev->sbuf as the next sequence number and keeps it for replay. */
static void publish(kvs_events_t *ev, uint32_t nev)
{
    uint8_t sb[8];
    struct kept *k;
    char *copy = malloc(ev->sbuf.size ? ev->sbuf.size : 1);

    seq_bytes(ev->seq, sb);
    if (zmq_send(ev->pub, ev->topic, strlen(ev->topic), ZMQ_SNDMORE) < 0 ||
        zmq_send(ev->pub, sb, 8, ZMQ_SNDMORE) < 0 ||
        zmq_send(ev->pub, ev->sbuf.data, ev->sbuf.size, 0) < 0)
        kvs_warn("events: publishing batch %llu failed: %s",
                 (unsigned long long)ev->seq, zmq_strerror(zmq_errno()));
    if (copy && ev->cfg.buffer_steps) {
        memcpy(copy, ev->sbuf.data, ev->sbuf.size);
        if (ev->nkept == ev->cfg.buffer_steps) {
            k = &ev->kept[ev->kept_head];
            free(k->data);
            ev->kept_head = (ev->kept_head + 1) % ev->cfg.buffer_steps;
            ev->nkept--;
        }
        k = &ev->kept[(ev->kept_head + ev->nkept) % ev->cfg.buffer_steps];
        *k = (struct kept){ev->seq, ev->sbuf.size, copy};
        ev->nkept++;
    } else {
        free(copy);
    }
    ev->seq++;
    pthread_mutex_lock(&ev->qlock);
    ev->batches++;
    ev->events += nev;
    pthread_mutex_unlock(&ev->qlock);
}

/* One replay request: [identity, "", start seq (8 bytes)] in; every kept
 * batch from start as [identity, "", seq, payload], then [identity, "",
 * -1 (8 bytes 0xff), ""] out. Malformed requests are ignored and logged. */
static void serve_replay(kvs_events_t *ev)
{
    zmq_msg_t part[3];
    int nparts = 0, more = 1;
    uint64_t start = 0;
    static const uint8_t end_seq[8] = {0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff};

    while (more) {
        zmq_msg_t m;

        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, ev->replay, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nparts < 3)
            part[nparts] = m;
        else
            zmq_msg_close(&m);
        nparts++;
    }
    if (nparts != 3 || zmq_msg_size(&part[1]) != 0 ||
        zmq_msg_size(&part[2]) != 8) {
        kvs_warn("events: replay request of %d frames ignored (expected "
                 "[identity, empty, 8-byte start sequence])",
                 nparts);
        goto out;
    }
    const uint8_t *p = zmq_msg_data(&part[2]);

    for (int i = 0; i < 8; i++)
        start = start << 8 | p[i];
    for (uint32_t i = 0; i < ev->nkept; i++) {
        const struct kept *k =
            &ev->kept[(ev->kept_head + i) % ev->cfg.buffer_steps];
        uint8_t sb[8];

        if (k->seq < start)
            continue;
        seq_bytes(k->seq, sb);
        zmq_send(ev->replay, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]),
                 ZMQ_SNDMORE);
        zmq_send(ev->replay, "", 0, ZMQ_SNDMORE);
        zmq_send(ev->replay, sb, 8, ZMQ_SNDMORE);
        zmq_send(ev->replay, k->data, k->len, 0);
    }
    zmq_send(ev->replay, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]),
             ZMQ_SNDMORE);
    zmq_send(ev->replay, "", 0, ZMQ_SNDMORE);
    zmq_send(ev->replay, end_seq, 8, ZMQ_SNDMORE);
    zmq_send(ev->replay, "", 0, 0);
    pthread_mutex_lock(&ev->qlock);
    ev->replays++;
    pthread_mutex_unlock(&ev->qlock);
out:
    for (int i = 0; i < nparts && i < 3; i++)
        zmq_msg_close(&part[i]);
}

/* Takes up to batch_max queued events into ev->work. */
static uint32_t take(kvs_events_t *ev, bool *stop_out)
{
    uint32_t n;

    pthread_mutex_lock(&ev->qlock);
    n = ev->qlen < ev->cfg.batch_max ? ev->qlen : ev->cfg.batch_max;
    for (uint32_t i = 0; i < n; i++)
        ev->work[i] = ev->q[(ev->qhead + i) % ev->qcap];
    ev->qhead = (ev->qhead + n) % ev->qcap;
    ev->qlen -= n;
    *stop_out = ev->stop && ev->qlen == 0;
    pthread_mutex_unlock(&ev->qlock);
    return n;
}

static void *publisher_main(void *arg)
{
    kvs_events_t *ev = arg;
    bool stop = false;

    while (!stop) {
        zmq_pollitem_t it = {ev->replay, 0, ZMQ_POLLIN, 0};
        uint32_t n;

        if (ev->replay) {
            if (zmq_poll(&it, 1, EV_POLL_MS) > 0)
                serve_replay(ev);
        } else {
            struct timespec d = {0, EV_POLL_MS * 1000000L};

            nanosleep(&d, NULL);
        }
        while ((n = take(ev, &stop)) > 0 || !ev->cleared_sent) {
            bool clear = !ev->cleared_sent;

            ev->cleared_sent = true;
            publish(ev, encode_batch(ev, n, clear));
        }
    }
    return NULL;
}

static int bind_socket(void *zctx, int type, const char *ep, int hwm,
                       void **out)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0;

    if (!s)
        return -ENOMEM;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (hwm)
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    if (zmq_bind(s, ep) != 0) {
        kvs_error("events: cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return KVS_ECONFIG;
    }
    *out = s;
    return 0;
}

/* Frees the memory of ev (sockets and thread already gone). */
static void free_events(kvs_events_t *ev)
{
    for (uint32_t i = 0; i < ev->nkept; i++)
        free(ev->kept[(ev->kept_head + i) % ev->cfg.buffer_steps].data);
    msgpack_sbuffer_destroy(&ev->sbuf);
    pthread_mutex_destroy(&ev->qlock);
    free(ev->kept);
    free(ev->work);
    free(ev->q);
    free(ev->topic);
    free(ev);
}

int kvs_events_create(const kvs_events_config_t *cfg, kvs_events_t **out)
{
    kvs_events_t *ev;
    int ret = -ENOMEM;

    if (!cfg->endpoint || !*cfg->endpoint || !cfg->queue_events ||
        !cfg->batch_max)
        return KVS_ECONFIG;
    ev = calloc(1, sizeof(*ev));
    if (!ev)
        return -ENOMEM;
    ev->cfg = *cfg;
    ev->topic = strdup(cfg->topic ? cfg->topic : "");
    ev->q = calloc(cfg->queue_events, sizeof(*ev->q));
    ev->work = calloc(cfg->batch_max, sizeof(*ev->work));
    ev->kept =
        calloc(cfg->buffer_steps ? cfg->buffer_steps : 1, sizeof(*ev->kept));
    ev->qcap = cfg->queue_events;
    msgpack_sbuffer_init(&ev->sbuf);
    pthread_mutex_init(&ev->qlock, NULL);
    if (!ev->topic || !ev->q || !ev->work || !ev->kept)
        goto err_free;
    ev->zctx = zmq_ctx_new();
    if (!ev->zctx)
        goto err_free;
    ret = bind_socket(ev->zctx, ZMQ_PUB, cfg->endpoint, 100000, &ev->pub);
    if (ret)
        goto err_ctx;
    if (cfg->replay_endpoint && *cfg->replay_endpoint) {
        ret = bind_socket(ev->zctx, ZMQ_ROUTER, cfg->replay_endpoint, 0,
                          &ev->replay);
        if (ret)
            goto err_pub;
    }
    ret = -pthread_create(&ev->thr, NULL, publisher_main, ev);
    if (ret)
        goto err_replay;
    kvs_info("events: publishing on %s%s%s, topic '%s'", cfg->endpoint,
             ev->replay ? ", replay on " : "",
             ev->replay ? cfg->replay_endpoint : "", ev->topic);
    *out = ev;
    return 0;

err_replay:
    if (ev->replay)
        zmq_close(ev->replay);
err_pub:
    zmq_close(ev->pub);
err_ctx:
    zmq_ctx_term(ev->zctx);
err_free:
    free_events(ev);
    return ret;
}

void kvs_events_destroy(kvs_events_t *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->qlock);
    ev->stop = true;
    pthread_mutex_unlock(&ev->qlock);
    pthread_join(ev->thr, NULL);
    if (ev->replay)
        zmq_close(ev->replay);
    zmq_close(ev->pub);
    zmq_ctx_term(ev->zctx);
    free_events(ev);
}

void kvs_events_stats(kvs_events_t *ev, kvs_events_stats_t *out)
{
    pthread_mutex_lock(&ev->qlock);
    *out = ev->st;
    out->batches = ev->batches;
    out->events = ev->events;
    out->replays = ev->replays;
    pthread_mutex_unlock(&ev->qlock);
}
