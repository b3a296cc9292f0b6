/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics of the daemon: counters the serving thread bumps with
 * relaxed atomics, and an HTTP endpoint (libmicrohttpd, its own thread)
 * that renders them in the text exposition format at /metrics.
 *
 * Threading: the kvs_metrics_note_* and kvs_metrics_publish calls are made
 * by the serving thread and cost an atomic add or store each; the HTTP
 * thread only loads those atomics and calls kvs_store_stats(), which holds
 * the store's lock for one copy of its counters. Neither thread waits for
 * the other.
 */
#ifndef KVS_METRICS_H
#define KVS_METRICS_H

#include <stdint.h>

#include "kvstore/store.h"

typedef struct kvs_metrics kvs_metrics_t;

/* What the serving thread publishes of its own state (gauges and
 * counters it owns), at every timer tick. */
typedef struct kvs_metrics_srv {
    uint64_t connections; /* gauge: open connections */
    uint64_t connections_accepted;
    uint64_t connections_rejected;
    uint64_t leases;    /* gauge: leases held */
    uint64_t conn_pins; /* gauge: connection-held pins */
    uint64_t bad_frames;
    uint64_t auth_failures;
    uint64_t disk_jobs; /* gauge: disk reads queued or running */
} kvs_metrics_srv_t;

/* Directions of kvs_metrics_note_bytes. */
enum { KVS_METRICS_IN = 0, KVS_METRICS_OUT = 1 };

/*
 * Starts the endpoint on addr (numeric IPv4) and port. port 0: metrics are
 * off, *out is NULL and every other call is a no-op on it. The store is
 * borrowed. Errors: KVS_ECONFIG (bad address), -EADDRINUSE or -errno from
 * the listener, -ENOMEM.
 */
int kvs_metrics_start(const char *addr, uint16_t port, kvs_store_t *store,
                      kvs_metrics_t **out);
/* Stops the HTTP thread and frees m. NULL is a no-op. */
void kvs_metrics_stop(kvs_metrics_t *m);

/* One request of opcode op handled in ns nanoseconds. */
void kvs_metrics_note_request(kvs_metrics_t *m, unsigned op, uint64_t ns);
/* Block bytes a client sent (IN) or received (OUT), by tier. */
void kvs_metrics_note_bytes(kvs_metrics_t *m, int dir, uint8_t tier,
                            uint64_t bytes);
void kvs_metrics_publish(kvs_metrics_t *m, const kvs_metrics_srv_t *srv);

#endif
