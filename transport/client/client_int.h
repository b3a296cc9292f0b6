/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What client_stream.c needs of a client's internals (client.c). Not a
 * public header and not exported from libkvstash.
 */
#ifndef KVS_CLIENT_INT_H
#define KVS_CLIENT_INT_H

#include <ucp/api/ucp.h>

#include <stdbool.h>
#include <stddef.h>

#include "kvstash/kvstash.h"
#include "kvstash/wire.h"

typedef struct kvs_client_internals {
    ucp_worker_h worker;
    ucp_ep_h ep;                  /* NULL once the connection failed */
    ucp_ep_h data_ep;             /* where stream messages go: the bound
                                     bulk endpoint, else ep */
    const char *ns;               /* the namespace named in HELLO */
    void **stream;                /* client_stream.c's state; freed with
                                     the client */
    int failed;                   /* 0, or why every call now fails */
} kvs_client_internals_t;

void kvs_client_internals(kvs_client_t *client, kvs_client_internals_t *out);
int kvs_client_progress_idle(kvs_client_t *client, uint64_t *idle_since);
/* client.c hands every stream opcode it receives to client_stream.c: data
 * and len are the AM data (part bytes); UCS_INPROGRESS keeps them. */
ucs_status_t kvs_client_stream_rx(kvs_client_t *client,
                                  const kvs_wire_msg_t *m, void *data,
                                  size_t len, bool rndv);

#endif
