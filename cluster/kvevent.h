/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoding one vLLM KVEventBatch payload (msgpack, map-encoded, events
 * tagged by "type"), the consumer half of transport/server/events.c.
 */
#ifndef KVS_CLUSTER_KVEVENT_H
#define KVS_CLUSTER_KVEVENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvs_kvevent_sink {
    /* tier: KVS_TIER_DRAM for medium "CPU", KVS_TIER_NVME for "STORAGE" */
    void (*stored)(void *arg, const void *key, size_t len, uint8_t tier);
    void (*removed)(void *arg, const void *key, size_t len, uint8_t tier);
    void (*cleared)(void *arg);
    void *arg;
} kvs_kvevent_sink_t;

/* Checks the whole payload first, then reports its events in order.
 * -EPROTO (nothing reported) when it is not a KVEventBatch: not msgpack,
 * a missing or mistyped field, an unknown event type. Events of another
 * medium (vLLM's "GPU") and integer block hashes are skipped. */
int kvs_kvevent_decode(const void *payload, size_t len,
                       const kvs_kvevent_sink_t *sink);

#endif
