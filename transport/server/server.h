/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon side of the transport: a UCX listener on a socket address, one
 * UCX worker driven by one thread, and the opcode handlers that call the
 * storage engine. tools/kvstashd creates one server, runs it until a signal,
 * then destroys it before closing the store.
 */
#ifndef KVS_SERVER_H
#define KVS_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstore/store.h"

/* One tenant: the connections that present token act as name and may use
 * the listed namespaces (or every namespace when all_ns). STAT and VERIFY
 * of a tenant describe its own namespace and connections only, unless it
 * is an operator. Strings are the
 * caller's and must outlive the server. */
typedef struct kvs_tenant {
    const char *name;
    const char *token;
    const char *const *namespaces;
    size_t nnamespaces;
    bool all_ns;
    bool is_operator; /* STAT and VERIFY see the whole store */
    bool shm;         /* may map the DRAM arena (shm.h); with tenants
                         configured, only those marked may */
} kvs_tenant_t;

typedef struct kvs_server_config {
    const char *listen_addr;      /* numeric IPv4/IPv6 address */
    uint16_t port;                /* 0: any free port (see kvs_server_port) */
    uint32_t max_conns;           /* connections at once */
    uint32_t max_prehello;        /* of them before HELLO; 0: max_conns / 4
                                     (at least 1) */
    uint32_t hello_timeout_ms;    /* a connection without HELLO after this
                                     is closed */
    uint32_t max_inflight;        /* requests in flight per connection */
    uint32_t max_inflight_blocks; /* DATA messages not yet taken by the
                                     client, per connection */
    uint64_t max_inflight_bytes;  /* their bytes, per connection */
    uint32_t max_body;            /* bytes of a request body */
    uint32_t max_keys;            /* entries per batch frame */
    uint32_t max_payload;         /* bytes of one PUT payload */
    uint32_t staging_slots;       /* PUT payloads received at once (each
                                     max_payload bytes, allocated at start) */
    uint32_t lease_default_ms;    /* a MATCH lease without a time */
    uint32_t lease_max_ms;
    uint32_t max_leases;         /* per connection */
    uint32_t max_pins;           /* connection-held pins per connection */
    uint32_t busy_poll_us;       /* spin this long before sleeping */
    uint32_t busy_poll_disk_us;  /* the same while a disk read that a
                                    client waits for is in flight */
    bool bulk_ep;                /* offer a second endpoint for DATA */
    uint32_t put_endpoints;      /* put endpoints (PUT_EP) bound at once in
                                    the daemon; more are refused (the
                                    client then PUTs on its bulk endpoint);
                                    0: none. Default: half the online
                                    CPUs, at least 1 */
    const char *shm_socket;      /* Unix socket for same-host clients to
                                    map the arena (shm.h); NULL: none */
    int shm_gid;                 /* -1: the socket is 0600; else 0660 and
                                    this group, whose members may attach */
    const kvs_tenant_t *tenants; /* none: every token is accepted */
    size_t ntenants;
    /* Streaming between sidecars (transport/server/stream.c). */
    const char *peer_secret;  /* shared by peers; NULL: no peer links in */
    const char *peers;        /* "name=ip:port,..."; NULL: none */
    uint32_t peer_timeout_ms; /* a silent peer link fails after this */
    /* Peers not in the list: found by name through this hook (membership,
     * transport/server/cluster.h), called on the server thread; it must
     * not block. NULL: only the list. */
    int (*peer_resolve)(void *arg, const char *name, char *addr, size_t cap,
                        uint16_t *port);
    void *peer_resolve_arg;
    uint32_t io_threads; /* I/O threads for disk reads (1..16), per
                            serving thread */
    /* Serving threads (1..16), each its own UCX worker. Thread 0 has the
     * listener at port and everything with state beyond one connection
     * (peer links, streaming, shm, metrics); each other one has a listener
     * of its own on an ephemeral port of listen_addr, where a client is
     * told to move in its HELLO reply (docs/protocol.md, worker_port). */
    uint32_t threads;
    uint32_t verify_mib_s; /* VERIFY reads at most this (MiB/s);
                              0: as fast as the disk goes */
    /* Prometheus /metrics over HTTP (transport/server/metrics.c). */
    const char *metrics_addr; /* numeric IPv4; NULL: 127.0.0.1 */
    uint16_t metrics_port;    /* 0: no metrics endpoint */
} kvs_server_config_t;

typedef struct kvs_server kvs_server_t;

void kvs_server_config_default(kvs_server_config_t *cfg);

/* The checks kvs_server_create() makes of cfg, without creating anything:
 * 0, or KVS_ECONFIG with the reason logged. */
int kvs_server_config_check(const kvs_server_config_t *cfg);

/*
 * Creates the UCX context and worker, registers the store's DRAM arena with
 * UCX once, and starts listening. The store is borrowed and must outlive the
 * server. On success *server_out is the caller's until kvs_server_destroy().
 */
int kvs_server_create(const kvs_server_config_t *cfg, kvs_store_t *store,
                      kvs_server_t **server_out);

/* The port actually listened on (useful with port 0). */
uint16_t kvs_server_port(const kvs_server_t *server);

/* Serves until *stop becomes non-zero (set it from a signal handler). */
int kvs_server_run(kvs_server_t *server, volatile sig_atomic_t *stop);

/* Closes every connection (releasing its leases, pins and buffers), waits
 * for in-flight sends to finish, and frees the server. NULL is a no-op. */
void kvs_server_destroy(kvs_server_t *server);

#endif
