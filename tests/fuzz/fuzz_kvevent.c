/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for kvs_kvevent_decode(), the decoder of the KV event
 * batches (msgpack) that a router reads from every node's ZeroMQ socket,
 * feeding the router's block index as kvs_locator does.
 *
 * Input: one payload, exactly as it comes off the socket. The decoder must
 * never crash or read out of bounds; a payload it refuses must report
 * nothing (it checks the whole batch first); every key it reports must be
 * 1..KVS_KEY_MAX readable bytes with a tier of ours. The reported
 * events then go into a real kvs_kvindex, which is queried with the keys
 * it was given and must count no more blocks than were stored.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/kvevent.h"
#include "cluster/kvindex.h"
#include "kvstash/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    kvs_kvindex_t *ix;
    size_t events; /* reported by the decoder */
    size_t stored; /* stored events */
    int counting;  /* 1: first pass, nothing applied */
    uint32_t node; /* the node the batch is from */
    kvs_kvindex_key_t keys[64];
    uint8_t copies[64][KVS_KEY_MAX];
    size_t nkeys;
} fz_t;

static void check_key(const void *key, size_t len, uint8_t tier)
{
    const uint8_t *k = key;
    volatile uint8_t x = 0;

    if (len == 0 || len > KVS_KEY_MAX ||
        (tier != KVS_TIER_DRAM && tier != KVS_TIER_NVME))
        abort();
    /* Every byte of a reported key must be readable (ASan checks). */
    for (size_t i = 0; i < len; i++)
        x ^= k[i];
    (void)x;
}

static void on_stored(void *arg, const void *key, size_t len, uint8_t tier)
{
    fz_t *f = arg;

    check_key(key, len, tier);
    f->events++;
    if (f->counting)
        return;
    f->stored++;
    if (kvs_kvindex_stored(f->ix, f->node, key, len, tier) != 0)
        abort(); /* a valid node, key and tier: only -ENOMEM may fail */
    if (f->nkeys < 64) {
        memcpy(f->copies[f->nkeys], key, len);
        f->keys[f->nkeys] =
            (kvs_kvindex_key_t){f->copies[f->nkeys], (uint32_t)len};
        f->nkeys++;
    }
}

static void on_removed(void *arg, const void *key, size_t len, uint8_t tier)
{
    fz_t *f = arg;

    check_key(key, len, tier);
    f->events++;
    if (!f->counting)
        kvs_kvindex_removed(f->ix, f->node, key, len, tier);
}

static void on_cleared(void *arg)
{
    fz_t *f = arg;

    f->events++;
    if (!f->counting)
        kvs_kvindex_clear_node(f->ix, f->node);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_kvevent_sink_t sink;
    fz_t f = {0};
    uint32_t node;
    size_t matched;
    uint8_t tier;
    uint8_t *copy;
    int ret;

    /* An exact-size heap copy so ASan sees any read past the payload. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    f.counting = 1;
    f.node = size % KVS_KVINDEX_NODES;
    sink = (kvs_kvevent_sink_t){on_stored, on_removed, on_cleared, &f};
    ret = kvs_kvevent_decode(copy, size, &sink);
    if (ret != 0 && f.events != 0)
        abort(); /* refused, yet something was reported */
    /* Without a sink the decoder only checks: the same verdict. */
    if (kvs_kvevent_decode(copy, size, NULL) != ret)
        abort();
    if (ret == 0) {
        if (kvs_kvindex_create(&f.ix) != 0) {
            free(copy);
            return 0;
        }
        f.counting = 0;
        f.events = 0;
        if (kvs_kvevent_decode(copy, size, &sink) != 0)
            abort(); /* the same bytes, another verdict */
        if (kvs_kvindex_count(f.ix) > f.stored)
            abort();
        kvs_kvindex_longest(f.ix, f.keys, f.nkeys, &node, &matched, &tier);
        if (matched > f.nkeys || (matched && node != f.node))
            abort();
        kvs_kvindex_clear_node(f.ix, f.node);
        if (kvs_kvindex_count(f.ix) != 0)
            abort(); /* one node's blocks, all cleared */
        kvs_kvindex_destroy(f.ix);
    }
    free(copy);
    return 0;
}
