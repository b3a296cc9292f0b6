// SPDX-License-Identifier: Apache-2.0
/*
 * The membership thread. Once a second it either (no lease) grants a lease
 * of ttl_s and writes this node's record under it, or (lease held) renews
 * the lease every ttl_s / 3 seconds, and it reads every record under the
 * prefix into the peer cache. A lease that etcd no longer has (it expired
 * while etcd was unreachable, or etcd restarted without its data) is
 * granted again and the record written again. Errors never stop the
 * daemon: the cache keeps the last records read, and the thread retries.
 *
 * The record is one JSON object (docs/cluster.md, "Records"):
 * {"name", "addr", "port", "version", "events", "replay",
 *  "tiers": {"dram_bytes", "nvme_bytes"}, "namespaces": [...]}.
 *
 * Locking: lock guards the cache and the stats; the server's peer hook
 * (kvs_cluster_resolve, on the server thread) takes it for a lookup only.
 */
#include "transport/server/cluster.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/etcd.h"
#include "common/clock.h"
#include "common/log.h"
#include "kvstash/kvstash.h"
#include "kvstash/status.h"

#define KVS_STR_(x) #x
#define KVS_STR(x) KVS_STR_(x)
#define CL_PEERS_MAX 1024
#define CL_NAME_MAX 64

struct cpeer {
    char name[CL_NAME_MAX];
    char addr[64];
    uint16_t port;
};

struct kvs_cluster {
    kvs_cluster_config_t cfg;
    char *key;    /* prefix + node */
    char *record; /* the JSON written */
    kvs_etcd_t *etcd;
    pthread_t thr;
    bool started;
    char addr[64];

    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool stop;           /* under lock */
    struct cpeer *peers; /* under lock */
    uint32_t npeers;
    kvs_cluster_stats_t st; /* under lock */

    /* The thread's own. */
    int64_t lease; /* 0: none */
    uint64_t renew_ns;
    struct cpeer *scan; /* records being read */
    uint32_t nscan;
};

void kvs_cluster_config_default(kvs_cluster_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ttl_s = 5;
}

static void json_add_str(json_object *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_object_add(o, k, json_object_new_string(v));
}

static char *make_record(const kvs_cluster_config_t *c)
{
    json_object *o = json_object_new_object(), *t = json_object_new_object();
    json_object *ns = json_object_new_array();
    char *list = strdup(c->namespaces ? c->namespaces : "*"), *save = NULL;
    char *out;

    json_add_str(o, "name", c->node);
    json_add_str(o, "addr", c->addr);
    json_object_object_add(o, "port", json_object_new_int(c->port));
    json_add_str(o, "version",
                 KVS_STR(KVS_VERSION_MAJOR) "." KVS_STR(
                     KVS_VERSION_MINOR) "." KVS_STR(KVS_VERSION_PATCH));
    json_add_str(o, "events", c->events);
    json_add_str(o, "replay", c->replay);
    json_object_object_add(t, "dram_bytes",
                           json_object_new_int64((int64_t)c->dram_bytes));
    json_object_object_add(t, "nvme_bytes",
                           json_object_new_int64((int64_t)c->nvme_bytes));
    json_object_object_add(o, "tiers", t);
    for (char *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save))
        json_object_array_add(ns, json_object_new_string(tok));
    json_object_object_add(o, "namespaces", ns);
    out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    free(list);
    return out;
}

/* One record read from etcd into the scan list; bad ones are skipped. */
static void on_record(void *arg, const char *key, const char *val, size_t len)
{
    kvs_cluster_t *c = arg;
    json_object *o = json_tokener_parse(val), *jn, *ja, *jp;
    struct cpeer *p;

    if (!o || c->nscan == CL_PEERS_MAX ||
        !json_object_object_get_ex(o, "name", &jn) ||
        !json_object_object_get_ex(o, "addr", &ja) ||
        !json_object_object_get_ex(o, "port", &jp) ||
        !json_object_is_type(jn, json_type_string) ||
        !json_object_is_type(ja, json_type_string) ||
        !json_object_is_type(jp, json_type_int) ||
        json_object_get_string_len(jn) >= CL_NAME_MAX ||
        json_object_get_string_len(ja) >= 64 || json_object_get_int(jp) <= 0 ||
        json_object_get_int(jp) > 65535) {
        kvs_debug("cluster: record %s is not a node record; skipped", key);
        json_object_put(o);
        return;
    }
    p = &c->scan[c->nscan++];
    snprintf(p->name, sizeof(p->name), "%s", json_object_get_string(jn));
    snprintf(p->addr, sizeof(p->addr), "%s", json_object_get_string(ja));
    p->port = (uint16_t)json_object_get_int(jp);
    json_object_put(o);
}

static void set_connected(kvs_cluster_t *c, bool ok, int err)
{
    pthread_mutex_lock(&c->lock);
    if (ok != c->st.connected) {
        if (ok)
            kvs_info("cluster: etcd at %s reachable; node %s registered",
                     c->cfg.etcd, c->cfg.node);
        else
            kvs_warn("cluster: etcd at %s unreachable (%s): serving on "
                     "with %u cached peers, retrying every second",
                     c->cfg.etcd, kvs_strerror(err), c->npeers);
    }
    c->st.connected = ok;
    if (!ok)
        c->st.errors++;
    pthread_mutex_unlock(&c->lock);
}

/* One round: register or renew, then refresh the cache. */
static int step(kvs_cluster_t *c)
{
    uint64_t now = kvs_clock_mono_ns();
    int ret;

    if (c->lease && now >= c->renew_ns) {
        ret = kvs_etcd_lease_keepalive(c->etcd, c->lease);
        if (ret == KVS_ENOTFOUND) {
            kvs_warn("cluster: etcd lost the lease of node %s; registering "
                     "again",
                     c->cfg.node);
            c->lease = 0;
        } else if (ret) {
            return ret;
        } else {
            c->renew_ns = now + c->cfg.ttl_s * 1000000000ull / 3;
        }
    }
    if (!c->lease) {
        int64_t id;

        ret = kvs_etcd_lease_grant(c->etcd, c->cfg.ttl_s, &id);
        if (ret)
            return ret;
        ret = kvs_etcd_put(c->etcd, c->key, c->record, strlen(c->record), id);
        if (ret) {
            kvs_etcd_lease_revoke(c->etcd, id);
            return ret;
        }
        c->lease = id;
        c->renew_ns = now + c->cfg.ttl_s * 1000000000ull / 3;
        pthread_mutex_lock(&c->lock);
        c->st.registrations++;
        pthread_mutex_unlock(&c->lock);
    }
    c->nscan = 0;
    ret = kvs_etcd_range_prefix(c->etcd, c->cfg.prefix, on_record, c, NULL);
    if (ret)
        return ret;
    pthread_mutex_lock(&c->lock);
    memcpy(c->peers, c->scan, c->nscan * sizeof(*c->peers));
    c->npeers = c->nscan;
    c->st.peers = c->nscan;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void *cluster_main(void *arg)
{
    kvs_cluster_t *c = arg;

    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec until;
        int ret;

        pthread_mutex_unlock(&c->lock);
        ret = step(c);
        set_connected(c, ret == 0, ret);
        pthread_mutex_lock(&c->lock);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (!c->stop)
            pthread_cond_timedwait(&c->cv, &c->lock, &until);
    }
    pthread_mutex_unlock(&c->lock);
    if (c->lease)
        kvs_etcd_lease_revoke(c->etcd, c->lease);
    return NULL;
}

int kvs_cluster_create(const kvs_cluster_config_t *cfg, kvs_cluster_t **out)
{
    kvs_cluster_t *c = calloc(1, sizeof(*c));
    int ret = -ENOMEM;

    if (!c)
        return -ENOMEM;
    c->cfg = *cfg;
    c->key = malloc(strlen(cfg->prefix) + strlen(cfg->node) + 1);
    c->peers = calloc(CL_PEERS_MAX, sizeof(*c->peers));
    c->scan = calloc(CL_PEERS_MAX, sizeof(*c->scan));
    if (!c->key || !c->peers || !c->scan)
        goto err_free;
    sprintf(c->key, "%s%s", cfg->prefix, cfg->node);
    /* Each request is bounded well inside a lease, so one slow etcd cannot
     * make this node miss its renewal by much. */
    ret = kvs_etcd_open(cfg->etcd, 1000, &c->etcd);
    if (ret)
        goto err_free;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cv, NULL);
    *out = c;
    return 0;

err_free:
    free(c->scan);
    free(c->peers);
    free(c->key);
    free(c);
    return ret;
}

int kvs_cluster_announce(kvs_cluster_t *c, const char *addr, uint16_t port)
{
    int ret;

    if (!c)
        return 0;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->cfg.addr = c->addr;
    c->cfg.port = port;
    c->record = make_record(&c->cfg);
    if (!c->record)
        return -ENOMEM;
    ret = -pthread_create(&c->thr, NULL, cluster_main, c);
    if (ret)
        return ret;
    c->started = true;
    kvs_info("cluster: node %s, record %s in etcd at %s (lease %u s)",
             c->cfg.node, c->key, c->cfg.etcd, c->cfg.ttl_s);
    return 0;
}

void kvs_cluster_destroy(kvs_cluster_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->lock);
    if (c->started)
        pthread_join(c->thr, NULL);
    kvs_etcd_close(c->etcd);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->lock);
    free(c->scan);
    free(c->peers);
    free(c->record);
    free(c->key);
    free(c);
}

int kvs_cluster_resolve(void *arg, const char *name, char *addr, size_t cap,
                        uint16_t *port)
{
    kvs_cluster_t *c = arg;
    int ret = KVS_ENOTFOUND;

    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < c->npeers; i++)
        if (!strcmp(c->peers[i].name, name)) {
            snprintf(addr, cap, "%s", c->peers[i].addr);
            *port = c->peers[i].port;
            ret = 0;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

void kvs_cluster_stats(kvs_cluster_t *c, kvs_cluster_stats_t *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}
