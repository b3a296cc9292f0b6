// SPDX-License-Identifier: Apache-2.0
/*
 * The checks of the [events] and [cluster] settings, part of the one
 * validation (kvs_config_finish): endpoints that ZeroMQ can bind, an etcd
 * URL libcurl can reach over plain HTTP, a node name and a prefix that
 * make a key, a lease long enough to be renewed. It also links the strings
 * into cfg->events and cfg->cluster and lists the namespaces the record
 * announces (the tenants' lists; "*" when any namespace is served).
 */
#include "tools/kvstashd/config.h"

#include <stdio.h>
#include <string.h>

#include "kvstash/status.h"

static bool is_set(const char *s)
{
    return s && *s;
}

static int bad(const char *setting, const char *value, const char *want)
{
    fprintf(stderr, "kvstashd: %s = %s: %s\n", setting, value, want);
    return KVS_ECONFIG;
}

static int check_endpoint(const char *setting, const char *v)
{
    if (!is_set(v))
        return 0;
    if (strncmp(v, "tcp://", 6) && strncmp(v, "ipc://", 6))
        return bad(setting, v, "want tcp://ip:port or ipc://path");
    return 0;
}

static void list_namespaces(kvs_config_t *cfg)
{
    size_t n = 0;

    cfg->cl_ns[0] = '\0';
    for (size_t i = 0; i < cfg->ntenants; i++) {
        const kvs_config_tenant_t *t = &cfg->tenants[i];

        if (t->all_ns) {
            snprintf(cfg->cl_ns, sizeof(cfg->cl_ns), "*");
            return;
        }
        for (size_t j = 0; j < t->nns; j++) {
            int w = snprintf(cfg->cl_ns + n, sizeof(cfg->cl_ns) - n, "%s%s",
                             n ? "," : "", t->ns[j]);

            if (w < 0 || (size_t)w >= sizeof(cfg->cl_ns) - n) {
                cfg->cl_ns[n] = '\0'; /* the record lists what fits */
                return;
            }
            n += (size_t)w;
        }
    }
    if (!n)
        snprintf(cfg->cl_ns, sizeof(cfg->cl_ns), "*");
}

int kvs_config_cluster_finish(kvs_config_t *cfg)
{
    kvs_cluster_config_t *c = &cfg->cluster;
    int ret;

    ret = check_endpoint("events.endpoint", cfg->ev_endpoint);
    if (ret == 0)
        ret = check_endpoint("events.replay_endpoint", cfg->ev_replay);
    if (ret)
        return ret;
    if (is_set(cfg->ev_replay) && !is_set(cfg->ev_endpoint))
        return bad("events.replay_endpoint", cfg->ev_replay,
                   "needs events.endpoint set too");
    if (cfg->events.queue_events < 16 || cfg->events.queue_events > (1u << 24))
        return bad("events.queue_events", "(value)", "want 16 .. 16777216");
    cfg->events.endpoint = cfg->ev_endpoint;
    cfg->events.replay_endpoint = cfg->ev_replay;
    cfg->events.topic = cfg->ev_topic ? cfg->ev_topic : "";
    if (!is_set(cfg->cl_etcd))
        return 0;
    if (strncmp(cfg->cl_etcd, "http://", 7))
        return bad("cluster.etcd", cfg->cl_etcd,
                   "want http://ip:port of etcd's client URL (the v3 JSON "
                   "gateway; TLS is not supported yet)");
    if (!is_set(cfg->cl_node) || strlen(cfg->cl_node) >= 64 ||
        strpbrk(cfg->cl_node, "/,= \t"))
        return bad("cluster.node", is_set(cfg->cl_node) ? cfg->cl_node : "",
                   "give this node a unique name of 1..63 characters "
                   "without '/', ',', '=' or blanks");
    if (!is_set(cfg->cl_prefix) ||
        cfg->cl_prefix[strlen(cfg->cl_prefix) - 1] != '/')
        return bad("cluster.prefix", cfg->cl_prefix ? cfg->cl_prefix : "",
                   "want a key prefix ending in '/', e.g. /kvstash/nodes/");
    if (c->ttl_s < 2 || c->ttl_s > 3600)
        return bad("cluster.ttl_s", "(value)", "want 2 .. 3600 seconds");
    list_namespaces(cfg);
    c->etcd = cfg->cl_etcd;
    c->prefix = cfg->cl_prefix;
    c->node = cfg->cl_node;
    c->events = cfg->ev_endpoint;
    c->replay = cfg->ev_replay;
    c->namespaces = cfg->cl_ns;
    c->dram_bytes = cfg->store.dram_bytes;
    c->nvme_bytes = cfg->store.nvme_bytes;
    return 0;
}
