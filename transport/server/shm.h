/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's shared-memory service: a Unix-domain socket beside the UCX
 * listener (daemon.shm_socket) through which a client on this host gets
 * the DRAM arena's memfd and then puts and gets blocks in place
 * (kvstash/wire_shm.h, docs/protocol.md section 11). It runs on a thread
 * of its own, so that a reservation waiting for room or a view reading a
 * block from disk never stalls the UCX event loop; the store is
 * thread-safe and everything else here belongs to that thread.
 */
#ifndef KVS_SERVER_SHM_H
#define KVS_SERVER_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstore/store.h"
#include "transport/server/server.h"

typedef struct kvs_shm kvs_shm_t;

/* Counters and gauges, for STAT. */
typedef struct kvs_shm_stats {
    uint64_t sessions;     /* gauge: attached clients */
    uint64_t reservations; /* gauge: reserved, not committed or aborted */
    uint64_t views;        /* gauge: leased views held (not expired) */
    uint64_t attached;     /* ATTACHes accepted */
    uint64_t refused;      /* ATTACHes refused (uid, token, tenant) */
    uint64_t commits;      /* blocks committed */
    uint64_t reclaimed;    /* reservations and views dropped because their
                              client went away */
    uint64_t expired;      /* views whose lease ran out */
    uint64_t rings;        /* gauge: sessions on a request ring */
    uint64_t arena_cut;    /* 1 once a client cut the arena's file: shared
                              memory is off until a restart */
} kvs_shm_stats_t;

/* Creates the socket at cfg->shm_socket (mode 0600, or 0660 and group
 * cfg->shm_gid), and starts the thread. The store's arena must be on a
 * memfd (kvs_store_arena_fd). cfg and store must outlive the service.
 * 0, KVS_ECONFIG (with the reason logged), or -errno. */
int kvs_shm_start(const kvs_server_config_t *cfg, kvs_store_t *store,
                  kvs_shm_t **shm_out);
/* Stops the thread, drops every session's reservations and views, and
 * removes the socket. NULL is a no-op. */
void kvs_shm_stop(kvs_shm_t *shm);

/* Whether a tenant may map the arena: no tenants configured, or one marked
 * tenant.NAME.shm = true. */
bool kvs_shm_tenant_allowed(const kvs_server_config_t *cfg,
                            const kvs_tenant_t *tenant);

void kvs_shm_stats(kvs_shm_t *shm, kvs_shm_stats_t *out);

/* Whether key is the stream key of a session attached now (the ATTACH
 * reply gave it to that client): a streaming put in place over UCX
 * carries it, so only a client that passed ATTACH's checks (uid, tenant)
 * gets a block written in place. Any thread; shm may be NULL (false). */
bool kvs_shm_stream_key_ok(kvs_shm_t *shm, uint64_t key);

#endif
