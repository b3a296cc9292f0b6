/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming between sidecars: streaming puts from clients, streaming
 * fetches from a named peer daemon, pushes into a peer daemon, and the
 * peer links that carry them (transport/server/stream.c). Called by server.c
 * only, on the server's thread.
 */
#ifndef KVS_STREAM_H
#define KVS_STREAM_H

#include <stdint.h>

#include "transport/server/server_int.h"

typedef struct kvs_stream kvs_stream_t;

/* Parses the peer table of the server's config and registers the stream
 * AM handler on the server's worker. */
int kvs_stream_create(kvs_server_t *srv);
/* Timers: liveness pings, dead links, fetches waiting for a block. */
void kvs_stream_tick(kvs_server_t *srv, uint64_t now_ns);
/* A connection is closing (client or inbound peer): its puts are aborted,
 * its fetches cancelled, a link it carried fails. */
void kvs_stream_conn_closed(kvs_server_t *srv, kvs_conn_t *conn);
/* Before the worker goes: force-closes outbound links. */
void kvs_stream_stop(kvs_server_t *srv);
/* After the worker is destroyed: drops what is left (aborting unsealed
 * blocks, unpinning views). NULL stream is a no-op. */
void kvs_stream_destroy(kvs_server_t *srv);

#endif
