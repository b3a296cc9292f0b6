/* SPDX-License-Identifier: Apache-2.0 */
/*
 * KV events in vLLM's format (vllm/distributed/kv_events.py): the store's
 * tier changes, queued by the store's event callback, batched and published
 * on a ZeroMQ PUB socket as multipart [topic, seq (8 bytes, big-endian),
 * msgpack KVEventBatch], with a ROUTER socket that replays past batches.
 * docs/cluster.md describes the bytes; tests/cluster/ checks them.
 */
#ifndef KVS_SERVER_EVENTS_H
#define KVS_SERVER_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "kvstore/store.h"

typedef struct kvs_events_config {
    const char *endpoint;        /* PUB bind address (tcp://ip:port);
                                  * NULL or "": no events */
    const char *replay_endpoint; /* ROUTER bind address; NULL/"": none */
    const char *topic;           /* first frame of every message ("") */
    uint32_t queue_events;       /* queue between store and publisher */
    uint32_t buffer_steps;       /* batches kept for replay */
    uint32_t batch_max;          /* events per batch at most */
    uint32_t block_size;         /* tokens per block, as BlockStored says
                                  * it (0: not known to kvstash) */
    int32_t dp_rank;             /* EventBatch.data_parallel_rank */
} kvs_events_config_t;

typedef struct kvs_events kvs_events_t;

typedef struct kvs_events_stats {
    uint64_t queued;  /* tier changes taken from the store */
    uint64_t dropped; /* lost to a full queue (see below) */
    uint64_t batches; /* messages published */
    uint64_t events;  /* events in them (after coalescing) */
    uint64_t replays; /* replay requests served */
} kvs_events_stats_t;

void kvs_events_config_default(kvs_events_config_t *cfg);

/* Binds the sockets (so that a bad endpoint fails the start) and starts the
 * publisher thread. The first batch published is AllBlocksCleared: a
 * consumer forgets what it knew of this node before the restart. */
int kvs_events_create(const kvs_events_config_t *cfg, kvs_events_t **out);

/* The store's event callback (kvs_store_config_t.event_cb, arg: the
 * kvs_events_t). Takes the queue's mutex for a copy of at most 140 bytes;
 * never waits for the publisher: on a full queue the event is dropped,
 * counted in stats.dropped and logged (once a second at most); consumers
 * then hold a stale view of this node until it restarts (docs/cluster.md,
 * "Failures"). */
void kvs_events_store_cb(void *arg, const kvs_store_event_t *ev);

/* Publishes what is queued, then stops the thread and closes the sockets.
 * NULL is a no-op. */
void kvs_events_destroy(kvs_events_t *ev);

void kvs_events_stats(kvs_events_t *ev, kvs_events_stats_t *out);

#endif
