/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd's configuration: defaults that work on a laptop, overridden by an
 * INI file (inih) and then by command-line flags, validated as a whole and
 * printed at start. Every setting has one name, "section.key", used alike in
 * the file, in --set, and in the printed configuration.
 */
#ifndef KVS_DAEMON_CONFIG_H
#define KVS_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "common/resolve.h"
#include "kvstore/store.h"
#include "transport/server/cluster.h"
#include "transport/server/events.h"
#include "transport/server/server.h"

#define KVS_CONFIG_TENANTS_MAX 64
#define KVS_CONFIG_NS_MAX 64 /* namespaces listed per tenant */

typedef struct kvs_config_tenant {
    char *name;
    char *token;
    char *ns_list;               /* the raw list, for printing */
    char *ns[KVS_CONFIG_NS_MAX]; /* split */
    size_t nns;
    bool all_ns;      /* "*" */
    bool is_operator; /* "operator = true": store-wide STAT */
    bool shm;         /* "shm = true": may map the DRAM arena */
} kvs_config_tenant_t;

typedef struct kvs_config {
    char *config_path; /* NULL: none */
    char *log_level;
    char *port_file; /* written with the port once listening */
    char *listen;    /* as given: an address or a host name */
    char listen_num[KVS_RESOLVE_ADDR_MAX]; /* resolved by kvs_config_finish */
    char *dir;
    kvs_server_config_t server; /* strings point into this struct */
    kvs_store_config_t store;
    kvs_config_tenant_t tenants[KVS_CONFIG_TENANTS_MAX];
    size_t ntenants;
    kvs_tenant_t server_tenants[KVS_CONFIG_TENANTS_MAX];
    char *peer_secret;    /* [peer] secret */
    char *peers;          /* [peer] list: name=host:port,... */
    char *metrics_listen; /* [metrics] listen: numeric IPv4 */
    char *shm_group;      /* daemon.shm_group: a group name or number */
    char *peers_num;      /* the same, hosts resolved (finish) */
    /* [events] and [cluster] (docs/cluster.md); strings point below. */
    kvs_events_config_t events;
    char *ev_endpoint, *ev_replay, *ev_topic;
    kvs_cluster_config_t cluster;
    char *cl_etcd, *cl_prefix, *cl_node;
    char cl_ns[1024]; /* the namespaces the record lists */
} kvs_config_t;

/* Fills cfg with the laptop defaults. */
void kvs_config_init(kvs_config_t *cfg);
/* Frees what kvs_config_init and the setters allocated. */
void kvs_config_fini(kvs_config_t *cfg);

/* Sets "section.key" (or a tenant's key, section "tenant.NAME") to value.
 * Returns 0 or KVS_ECONFIG with a message on stderr. */
int kvs_config_set(kvs_config_t *cfg, const char *section, const char *key,
                   const char *value);
/* Reads an INI file. */
int kvs_config_load(kvs_config_t *cfg, const char *path);
/* Checks the whole, resolves host names and links the tenant table into
 * cfg->server: the one validation, used by --print-config and by a start
 * alike. Returns 0 or KVS_ECONFIG with a message on stderr naming the
 * setting. */
int kvs_config_finish(kvs_config_t *cfg);
/* The [events] and [cluster] part of kvs_config_finish (cluster_config.c). */
int kvs_config_cluster_finish(kvs_config_t *cfg);
/* Prints the effective configuration as INI (tokens masked). */
void kvs_config_print(const kvs_config_t *cfg, FILE *out);

#endif
