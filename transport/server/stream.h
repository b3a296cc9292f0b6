/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming between sidecars: streaming puts from clients, streaming
 * fetches from a named peer daemon, pushes into a peer daemon, and the
 * peer links that carry them (transport/server/stream.c). Called by
 * server.c and handler.c, on the server's thread.
 */
#ifndef KVS_STREAM_H
#define KVS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/server/server_int.h"

typedef struct kvs_srvstream kvs_srvstream_t;

/* What the stream module needs of the daemon, given once at create. */
typedef struct kvs_srvstream_params {
    kvs_store_t *store;
    ucp_worker_h worker;
    ucp_mem_h memh;     /* the arena's registration; NULL: none */
    const char *secret; /* [peer] secret; NULL: accept no links */
    const char *peers;  /* [peer] list: name=ip:port,... */
    int (*resolve)(void *, const char *, char *, size_t, uint16_t *);
    void *resolve_arg;       /* kvs_server_config_t.peer_resolve */
    uint32_t timeout_ms;     /* [peer] timeout_ms; 0: 5000 */
    uint32_t lease_ms;       /* how long a block fetched in place stays
                              * held after its seal (daemon.lease_max_ms);
                              * 0: 60000 */
    struct kvs_diskq *diskq; /* reads a source's block from disk off
                              * this thread; NULL: inline */
} kvs_srvstream_params_t;

/* The shared-memory service whose stream keys admit in-place puts
 * (kvstash/wire.h, KVS_WIRE_STREAM_INPLACE); NULL before it stops. */
void kvs_srvstream_set_shm(kvs_srvstream_t *st, struct kvs_shm *shm);
/* What STAT shows of the module; any thread. */
typedef struct kvs_srvstream_stats {
    uint64_t parts_inplace; /* parts committed or delivered in place */
    uint64_t puts_open;     /* streaming puts not yet freed */
    uint64_t fetches_open;  /* fetches not yet freed (in place: held
                               until the client cancels them) */
    uint64_t pool_allocs;   /* puts, sources, receives and part arrays
                               ever allocated: flat once the pools are warm */
} kvs_srvstream_stats_t;
void kvs_srvstream_stats(kvs_srvstream_t *st, kvs_srvstream_stats_t *out);
/* From now on, sources read disk-only blocks inline (the daemon's disk
 * queue is going away at shutdown). */
void kvs_srvstream_drop_diskq(kvs_srvstream_t *st);
/* Parses the peer table; the module then runs on the caller's thread. */
int kvs_srvstream_create(const kvs_srvstream_params_t *params,
                         kvs_srvstream_t **stream_out);
/* A stream opcode from a connection (a client, or a peer whose HELLO was
 * accepted): the table in handler.c sends every stream opcode here. data,
 * len and rndv are the AM data (part bytes); returns UCS_INPROGRESS when
 * it keeps the data descriptor. */
ucs_status_t kvs_srvstream_rx(kvs_srvstream_t *st, kvs_conn_t *conn,
                              const kvs_wire_msg_t *m, void *data, size_t len,
                              bool rndv);
/* A frame that came on an endpoint that is no connection of ours: if it is
 * one of our outbound links, the peer's HELLO reply or a stream opcode. */
ucs_status_t kvs_srvstream_link_rx(kvs_srvstream_t *st, ucp_ep_h ep,
                                   const kvs_wire_msg_t *m, void *data,
                                   size_t len, bool rndv);
/* handler.c accepted a peer's HELLO on conn, asking features: it now
 * carries a link. */
int kvs_srvstream_peer_accept(kvs_srvstream_t *st, kvs_conn_t *conn,
                              uint32_t features);
/* Timers: liveness pings, dead links, fetches waiting for a block. */
void kvs_srvstream_tick(kvs_srvstream_t *st, uint64_t now_ns);
/* A connection is closing (client or inbound peer): its puts are aborted,
 * its fetches cancelled, a link it carried fails. */
void kvs_srvstream_conn_closed(kvs_srvstream_t *st, kvs_conn_t *conn);
/* An endpoint without peer error handling is going away: the stream sends
 * still on it are finished now with KVS_EPEER (UCX 1.13 would never
 * complete them). st may be NULL. */
void kvs_srvstream_stx_orphan_ep(kvs_srvstream_t *st, ucp_ep_h ep);
/* Before the worker goes: force-closes outbound links. */
void kvs_srvstream_stop(kvs_srvstream_t *st);
/* After the worker is destroyed: drops what is left (aborting unsealed
 * blocks, unpinning views) and frees st. NULL is a no-op. */
void kvs_srvstream_destroy(kvs_srvstream_t *st);

#endif
