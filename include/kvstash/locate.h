/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Locating blocks across sidecars (docs/cluster.md). A locator reads the
 * nodes' records from etcd, subscribes to each node's KV events (vLLM's
 * format, with a replay from the start of each publisher's buffer) and
 * keeps the index a router keeps: which node holds which block in which
 * tier. kvs_locate() then answers, for a chain of keys, which node holds
 * the longest prefix, so that a decode sidecar can fetch from the right
 * prefill sidecar (kvs_stream_fetch with that node's name) without a
 * static peer list. The index is as fresh as the events: a block stored a
 * few milliseconds ago may not be in it yet, and a node cut off from
 * etcd leaves the index when its record does.
 *
 * Threading: a locator runs one thread of its own; every call is
 * thread-safe. Include kvstash/kvstash.h, which includes this.
 */
#ifndef KVS_LOCATE_H
#define KVS_LOCATE_H

#include <stddef.h>
#include <stdint.h>

#ifndef KVS_API_VERSION
#error "include kvstash/kvstash.h, not kvstash/locate.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_locator kvs_locator_t;

#define KVS_LOCATE_NODE_MAX 64 /* bytes of a node name, NUL included */

typedef struct kvs_locate_result {
    char node[KVS_LOCATE_NODE_MAX]; /* the node; "" when matched is 0 */
    size_t matched;                 /* leading keys that node holds */
    uint8_t tier;                   /* enum kvs_tier: KVS_TIER_DRAM when all
                                     * of them are in its DRAM, else NVME */
} kvs_locate_result_t;

/*
 * Starts a locator for the records under prefix (e.g. "/kvstash/nodes/")
 * in the etcd at etcd_url ("http://ip:port", the v3 JSON gateway). etcd
 * need not be up yet. -EINVAL on a bad argument, -ENOMEM. *out is the
 * caller's until kvs_locator_close().
 */
KVS_API int kvs_locator_open(const char *etcd_url, const char *prefix,
                             kvs_locator_t **out);

/*
 * Waits until the locator has read etcd once and replayed the events of
 * every node it found (or timeout_ms passed). Returns the number of nodes
 * followed, -ETIMEDOUT, or KVS_EPEER when etcd could not be read.
 */
KVS_API int kvs_locator_sync(kvs_locator_t *loc, int timeout_ms);

/* The longest prefix of keys[0..n) held by one node, into *out. 0, or
 * -EINVAL. */
KVS_API int kvs_locate(kvs_locator_t *loc, const kvs_client_key_t *keys,
                       size_t n, kvs_locate_result_t *out);

/* Blocks in the index (held by at least one node). */
KVS_API size_t kvs_locator_blocks(kvs_locator_t *loc);

/* Stops the thread and frees loc. NULL is a no-op. */
KVS_API void kvs_locator_close(kvs_locator_t *loc);

#ifdef __cplusplus
}
#endif
#endif
