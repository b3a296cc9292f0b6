// SPDX-License-Identifier: Apache-2.0
/*
 * The locator (kvstash/locate.h): one thread that, every second, reads the
 * node records from etcd (cluster/etcd.h) and follows each node's events:
 * a SUB socket on the record's "events" endpoint, then a replay from 0 on
 * its "replay" endpoint so that nothing published before the subscription
 * is missed; live messages at or past the next expected sequence number
 * are applied, older ones dropped (already replayed), and a sequence 0
 * from a node we had followed means the node restarted (its first batch
 * is AllBlocksCleared). A node whose record goes, or whose endpoints
 * change, is forgotten (and followed anew). Events feed the index
 * (cluster/kvindex.h) that kvs_locate() reads.
 *
 * Locking: lock guards the index, the node names and the sync state; the
 * sockets are the thread's alone.
 */
#include "kvstash/kvstash.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cluster/etcd.h"
#include "cluster/kvevent.h"
#include "cluster/kvindex.h"
#include "common/log.h"

#define LOC_EP_MAX 128

struct lnode {
    bool used, seen;
    char name[KVS_LOCATE_NODE_MAX];
    char events[LOC_EP_MAX], replay[LOC_EP_MAX];
    void *sub;
    uint64_t next; /* next sequence number expected */
};

struct kvs_locator {
    kvs_etcd_t *etcd;
    char *prefix;
    void *zctx;
    pthread_t thr;

    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool stop;
    kvs_kvindex_t *ix;
    struct lnode nodes[KVS_KVINDEX_NODES];
    uint64_t rounds; /* etcd reads completed */
    int last_err;
    uint32_t followed;

    uint32_t cur; /* the node whose events are applied */
};

/* ---- applying events (lock held) ---- */

static void on_stored(void *arg, const void *key, size_t len, uint8_t tier)
{
    kvs_locator_t *l = arg;

    if (kvs_kvindex_stored(l->ix, l->cur, key, len, tier) == -ENOMEM)
        kvs_warn("locate: out of memory; the index misses a block");
}

static void on_removed(void *arg, const void *key, size_t len, uint8_t tier)
{
    kvs_locator_t *l = arg;

    kvs_kvindex_removed(l->ix, l->cur, key, len, tier);
}

static void on_cleared(void *arg)
{
    kvs_locator_t *l = arg;

    kvs_kvindex_clear_node(l->ix, l->cur);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void apply(kvs_locator_t *l, uint32_t id, uint64_t seq,
                  const void *payload, size_t len)
{
    struct lnode *n = &l->nodes[id];
    kvs_kvevent_sink_t sink = {on_stored, on_removed, on_cleared, l};

    if (seq == 0 && n->next > 0)
        n->next = 0; /* the publisher restarted */
    if (seq < n->next)
        return;
    if (seq > n->next)
        kvs_warn("locate: node %s: batches %llu..%llu missed", n->name,
                 (unsigned long long)n->next, (unsigned long long)seq - 1);
    n->next = seq + 1;
    pthread_mutex_lock(&l->lock);
    l->cur = id;
    if (kvs_kvevent_decode(payload, len, &sink))
        kvs_warn("locate: node %s: batch %llu is not a KVEventBatch; "
                 "skipped",
                 n->name, (unsigned long long)seq);
    pthread_mutex_unlock(&l->lock);
}

/* Receives one multipart message into parts (at most max); the count, or
 * -1 when nothing was there. Frames past max are dropped. */
static int recv_parts(void *s, zmq_msg_t *parts, int max, int flags)
{
    int n = 0, more = 1;

    while (more) {
        zmq_msg_t m;

        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, n ? 0 : flags) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n && i < max; i++)
                zmq_msg_close(&parts[i]);
            return -1;
        }
        more = zmq_msg_more(&m);
        if (n < max)
            parts[n] = m;
        else
            zmq_msg_close(&m);
        n++;
    }
    return n;
}

static void close_parts(zmq_msg_t *parts, int n, int max)
{
    for (int i = 0; i < n && i < max; i++)
        zmq_msg_close(&parts[i]);
}

/* Replays node id from its next sequence number (blocking, 2 s at most
 * per answer). */
static void replay(kvs_locator_t *l, uint32_t id)
{
    struct lnode *n = &l->nodes[id];
    void *s = zmq_socket(l->zctx, ZMQ_DEALER);
    int tmo = 2000, linger = 0;
    uint8_t start[8];
    zmq_msg_t p[3];

    if (!s)
        return;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(s, n->replay) != 0)
        goto out;
    for (int i = 0; i < 8; i++)
        start[i] = (uint8_t)(n->next >> (56 - 8 * i));
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, start, 8, 0);
    for (;;) {
        int k = recv_parts(s, p, 3, 0);

        if (k < 0) {
            kvs_warn("locate: node %s: no replay from %s", n->name, n->replay);
            break;
        }
        if (k != 3 || zmq_msg_size(&p[1]) != 8) {
            close_parts(p, k, 3);
            break;
        }
        uint64_t seq = be64(zmq_msg_data(&p[1]));

        if (seq == UINT64_MAX) {
            close_parts(p, k, 3);
            break; /* the end marker, -1 */
        }
        if (seq >= n->next)
            apply(l, id, seq, zmq_msg_data(&p[2]), zmq_msg_size(&p[2]));
        close_parts(p, k, 3);
    }
out:
    zmq_close(s);
}

static void forget(kvs_locator_t *l, uint32_t id)
{
    struct lnode *n = &l->nodes[id];

    if (n->sub)
        zmq_close(n->sub);
    pthread_mutex_lock(&l->lock);
    kvs_kvindex_clear_node(l->ix, id);
    memset(n, 0, sizeof(*n));
    pthread_mutex_unlock(&l->lock);
}

static void follow(kvs_locator_t *l, const char *name, const char *ev,
                   const char *rp)
{
    uint32_t id, free_id = KVS_KVINDEX_NODES;
    int zero = 0;
    struct lnode *n;

    for (id = 0; id < KVS_KVINDEX_NODES; id++) {
        n = &l->nodes[id];
        if (!n->used) {
            if (free_id == KVS_KVINDEX_NODES)
                free_id = id;
            continue;
        }
        if (strcmp(n->name, name))
            continue;
        if (!strcmp(n->events, ev) && !strcmp(n->replay, rp)) {
            n->seen = true;
            return;
        }
        forget(l, id); /* moved: follow it anew */
        free_id = id;
        break;
    }
    if (free_id == KVS_KVINDEX_NODES) {
        kvs_warn("locate: more than %u nodes; %s not followed",
                 KVS_KVINDEX_NODES, name);
        return;
    }
    n = &l->nodes[free_id];
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", name);
    snprintf(n->events, sizeof(n->events), "%s", ev);
    snprintf(n->replay, sizeof(n->replay), "%s", rp);
    n->sub = zmq_socket(l->zctx, ZMQ_SUB);
    if (!n->sub || zmq_setsockopt(n->sub, ZMQ_SUBSCRIBE, "", 0) ||
        zmq_setsockopt(n->sub, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_connect(n->sub, ev)) {
        kvs_warn("locate: node %s: cannot subscribe to %s", name, ev);
        if (n->sub)
            zmq_close(n->sub);
        memset(n, 0, sizeof(*n));
        return;
    }
    pthread_mutex_lock(&l->lock);
    n->used = n->seen = true;
    pthread_mutex_unlock(&l->lock);
    /* Subscribe first, replay second: a batch published in between comes
     * on both and is applied once. */
    replay(l, free_id);
}

static void on_record(void *arg, const char *key, const char *val, size_t len)
{
    kvs_locator_t *l = arg;
    json_object *o = json_tokener_parse(val), *jn, *je, *jr;

    if (o && json_object_object_get_ex(o, "name", &jn) &&
        json_object_object_get_ex(o, "events", &je) &&
        json_object_object_get_ex(o, "replay", &jr) &&
        json_object_is_type(jn, json_type_string) &&
        json_object_is_type(je, json_type_string) &&
        json_object_is_type(jr, json_type_string) &&
        json_object_get_string_len(jn) < KVS_LOCATE_NODE_MAX &&
        json_object_get_string_len(je) < LOC_EP_MAX &&
        json_object_get_string_len(jr) < LOC_EP_MAX)
        follow(l, json_object_get_string(jn), json_object_get_string(je),
               json_object_get_string(jr));
    else
        kvs_debug("locate: record %s has no events; not followed", key);
    json_object_put(o);
}

static void refresh(kvs_locator_t *l)
{
    uint32_t n = 0;
    int ret;

    for (uint32_t i = 0; i < KVS_KVINDEX_NODES; i++)
        l->nodes[i].seen = false;
    ret = kvs_etcd_range_prefix(l->etcd, l->prefix, on_record, l, NULL);
    if (ret == 0)
        for (uint32_t i = 0; i < KVS_KVINDEX_NODES; i++) {
            if (l->nodes[i].used && !l->nodes[i].seen)
                forget(l, i);
            n += l->nodes[i].used;
        }
    pthread_mutex_lock(&l->lock);
    l->last_err = ret;
    if (ret == 0)
        l->followed = n;
    l->rounds++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->lock);
}

static void drain(kvs_locator_t *l, int timeout_ms)
{
    zmq_pollitem_t it[KVS_KVINDEX_NODES];
    uint32_t map[KVS_KVINDEX_NODES], n = 0;

    for (uint32_t i = 0; i < KVS_KVINDEX_NODES; i++)
        if (l->nodes[i].used) {
            it[n] = (zmq_pollitem_t){l->nodes[i].sub, 0, ZMQ_POLLIN, 0};
            map[n++] = i;
        }
    if (n == 0) {
        struct timespec d = {0, timeout_ms * 1000000L};

        nanosleep(&d, NULL);
        return;
    }
    if (zmq_poll(it, (int)n, timeout_ms) <= 0)
        return;
    for (uint32_t k = 0; k < n; k++) {
        zmq_msg_t p[3];
        int c;

        if (!(it[k].revents & ZMQ_POLLIN))
            continue;
        while ((c = recv_parts(it[k].socket, p, 3, ZMQ_DONTWAIT)) >= 0) {
            if (c == 3 && zmq_msg_size(&p[1]) == 8)
                apply(l, map[k], be64(zmq_msg_data(&p[1])), zmq_msg_data(&p[2]),
                      zmq_msg_size(&p[2]));
            close_parts(p, c, 3);
        }
    }
}

static void *locator_main(void *arg)
{
    kvs_locator_t *l = arg;
    struct timespec last = {0, 0}, now;

    for (;;) {
        pthread_mutex_lock(&l->lock);
        bool stop = l->stop;

        pthread_mutex_unlock(&l->lock);
        if (stop)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - last.tv_sec >= 1) {
            refresh(l);
            last = now;
        }
        drain(l, 20);
    }
    for (uint32_t i = 0; i < KVS_KVINDEX_NODES; i++)
        if (l->nodes[i].sub)
            zmq_close(l->nodes[i].sub);
    return NULL;
}

KVS_API int kvs_locator_open(const char *etcd_url, const char *prefix,
                             kvs_locator_t **out)
{
    kvs_locator_t *l;
    int ret;

    if (!etcd_url || !prefix || !*prefix || !out)
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->prefix = strdup(prefix);
    ret = l->prefix ? kvs_kvindex_create(&l->ix) : -ENOMEM;
    if (ret)
        goto err_free;
    ret = kvs_etcd_open(etcd_url, 1000, &l->etcd);
    if (ret)
        goto err_index;
    l->zctx = zmq_ctx_new();
    if (!l->zctx) {
        ret = -ENOMEM;
        goto err_etcd;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cv, NULL);
    ret = -pthread_create(&l->thr, NULL, locator_main, l);
    if (ret)
        goto err_ctx;
    *out = l;
    return 0;

err_ctx:
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->lock);
    zmq_ctx_term(l->zctx);
err_etcd:
    kvs_etcd_close(l->etcd);
err_index:
    kvs_kvindex_destroy(l->ix);
err_free:
    free(l->prefix);
    free(l);
    return ret;
}

KVS_API int kvs_locator_sync(kvs_locator_t *l, int timeout_ms)
{
    struct timespec until;
    uint64_t want;
    int ret = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->lock);
    /* A round that starts after this call has followed (and replayed)
     * every node in etcd now: wait for the one after the current. */
    want = l->rounds + 2;
    while (l->rounds < want && ret == 0)
        ret = pthread_cond_timedwait(&l->cv, &l->lock, &until);
    if (l->rounds >= want)
        ret = l->last_err ? KVS_EPEER : (int)l->followed;
    else
        ret = -ETIMEDOUT;
    pthread_mutex_unlock(&l->lock);
    return ret;
}

KVS_API int kvs_locate(kvs_locator_t *l, const kvs_client_key_t *keys, size_t n,
                       kvs_locate_result_t *out)
{
    kvs_kvindex_key_t stackk[64], *kk = stackk;
    uint32_t node = 0;
    uint8_t tier = KVS_TIER_NONE;
    size_t matched = 0;

    if (!l || !out || (n && !keys))
        return -EINVAL;
    if (n > 64) {
        kk = malloc(n * sizeof(*kk));
        if (!kk)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        kk[i] = (kvs_kvindex_key_t){keys[i].data, keys[i].len};
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&l->lock);
    kvs_kvindex_longest(l->ix, kk, n, &node, &matched, &tier);
    if (matched) {
        snprintf(out->node, sizeof(out->node), "%s", l->nodes[node].name);
        out->matched = matched;
        out->tier = tier;
    }
    pthread_mutex_unlock(&l->lock);
    if (kk != stackk)
        free(kk);
    return 0;
}

KVS_API size_t kvs_locator_blocks(kvs_locator_t *l)
{
    size_t n;

    pthread_mutex_lock(&l->lock);
    n = kvs_kvindex_count(l->ix);
    pthread_mutex_unlock(&l->lock);
    return n;
}

KVS_API void kvs_locator_close(kvs_locator_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thr, NULL);
    zmq_ctx_term(l->zctx);
    kvs_etcd_close(l->etcd);
    kvs_kvindex_destroy(l->ix);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->lock);
    free(l->prefix);
    free(l);
}
