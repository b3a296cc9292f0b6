/* SPDX-License-Identifier: Apache-2.0 */
/* Value types shared by the engine, the wire protocol and the client API. */
#ifndef KVSTASH_TYPES_H
#define KVSTASH_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVS_KEY_MAX 64u      /* bytes; keys are 1..KVS_KEY_MAX */
#define KVS_NS_NAME_MAX 255u /* bytes of a namespace name */
#define KVS_PARTS_MAX 1024u  /* parts (layers) in one block */

/* Retention class of a block. The numeric values are part of the wire and
 * disk formats. */
enum kvs_class {
    KVS_CLASS_SCRATCH = 0, /* ordinary prefix cache: evicted first */
    KVS_CLASS_USER = 1,    /* conversation memory: kept until its TTL */
    KVS_CLASS_PINNED = 2,  /* system prompts: never evicted */
    KVS_CLASS_COUNT
};

/* Where a block lives. Values are part of the wire format. */
enum kvs_tier {
    KVS_TIER_NONE = 0, /* not present */
    KVS_TIER_DRAM = 1, /* in DRAM (maybe also on NVMe) */
    KVS_TIER_NVME = 2  /* on NVMe only */
};

/* One contiguous piece of memory, owned by the caller. */
typedef struct kvs_iov {
    const void *base;
    size_t len; /* bytes */
} kvs_iov_t;

#ifdef __cplusplus
}
#endif
#endif
