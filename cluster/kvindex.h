/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index a router keeps: for every block hash, which nodes hold it in
 * DRAM ("CPU") and which on NVMe ("STORAGE"), built from the nodes' KV
 * events. Nodes are small ids 0..KVS_KVINDEX_NODES-1 that the caller maps
 * to names. Not thread-safe: the caller serializes (kvs_locator does).
 */
#ifndef KVS_CLUSTER_KVINDEX_H
#define KVS_CLUSTER_KVINDEX_H

#include <stddef.h>
#include <stdint.h>

#define KVS_KVINDEX_NODES 64

typedef struct kvs_kvindex kvs_kvindex_t;

int kvs_kvindex_create(kvs_kvindex_t **out);
void kvs_kvindex_destroy(kvs_kvindex_t *ix);

/* tier: KVS_TIER_DRAM or KVS_TIER_NVME. -EINVAL on a bad node, key or
 * tier; -ENOMEM. */
int kvs_kvindex_stored(kvs_kvindex_t *ix, uint32_t node, const void *key,
                       size_t len, uint8_t tier);
void kvs_kvindex_removed(kvs_kvindex_t *ix, uint32_t node, const void *key,
                         size_t len, uint8_t tier);
/* Forgets everything of node (AllBlocksCleared, or the node left). */
void kvs_kvindex_clear_node(kvs_kvindex_t *ix, uint32_t node);

/* The longest prefix of keys[0..n) that one node holds: *node_out,
 * *matched_out (0: no node holds keys[0]; then *node_out is undefined)
 * and *tier_out (KVS_TIER_DRAM when every matched block is in that node's
 * DRAM, else KVS_TIER_NVME). Ties go to the node with more of the prefix
 * in DRAM, then the lower id. keys are (pointer, length) pairs. */
typedef struct kvs_kvindex_key {
    const void *data;
    uint32_t len;
} kvs_kvindex_key_t;
void kvs_kvindex_longest(const kvs_kvindex_t *ix, const kvs_kvindex_key_t *keys,
                         size_t n, uint32_t *node_out, size_t *matched_out,
                         uint8_t *tier_out);

/* Blocks indexed (hashes held by at least one node). */
size_t kvs_kvindex_count(const kvs_kvindex_t *ix);

#endif
