/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership in etcd: this daemon's record under a lease, kept alive, and a
 * cache of the other nodes' records, refreshed every second, which the peer
 * links use to find a peer by name (docs/cluster.md, "Records"). A daemon
 * that cannot reach etcd keeps serving with the cache it has, retries
 * every second, logs the change both ways and shows it in its stats.
 */
#ifndef KVS_SERVER_CLUSTER_H
#define KVS_SERVER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_cluster_config {
    const char *etcd;   /* http://ip:port of the v3 JSON gateway;
                         * NULL or "": no membership */
    const char *prefix; /* records are prefix + node */
    const char *node;   /* this node's name */
    uint32_t ttl_s;     /* lease TTL */
    /* What the record says (filled by the daemon once listening). */
    const char *addr; /* the UCX listener's numeric address */
    uint16_t port;
    const char *events; /* the PUB endpoint, or NULL */
    const char *replay; /* the ROUTER endpoint, or NULL */
    uint64_t dram_bytes, nvme_bytes;
    const char *namespaces; /* comma-separated; "*": any */
} kvs_cluster_config_t;

typedef struct kvs_cluster kvs_cluster_t;

typedef struct kvs_cluster_stats {
    bool connected;         /* the last request to etcd succeeded */
    uint64_t registrations; /* leases granted and records written */
    uint64_t errors;        /* failed requests to etcd */
    uint32_t peers;         /* records in the cache, this one too */
} kvs_cluster_stats_t;

void kvs_cluster_config_default(kvs_cluster_config_t *cfg);

/* Prepares membership (the peer cache answers from then on, empty). */
int kvs_cluster_create(const kvs_cluster_config_t *cfg, kvs_cluster_t **out);

/* Once listening: writes addr and port into the record and starts the
 * membership thread; etcd need not be up (it retries). c NULL: 0. */
int kvs_cluster_announce(kvs_cluster_t *c, const char *addr, uint16_t port);

/* Revokes the lease (the record goes at once) and stops. NULL: no-op. */
void kvs_cluster_destroy(kvs_cluster_t *c);

/* The peer-name hook of the server (kvs_server_config_t.peer_resolve):
 * the address of node name from the cache, 0 or KVS_ENOTFOUND. */
int kvs_cluster_resolve(void *arg, const char *name, char *addr, size_t cap,
                        uint16_t *port);

void kvs_cluster_stats(kvs_cluster_t *c, kvs_cluster_stats_t *out);

#endif
