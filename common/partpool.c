/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-part arrays' pool (partpool.h): one allocation per entry, the
 * header followed by its three arrays, offsets first (8-byte aligned).
 */
#include "common/partpool.h"

#include <stdlib.h>
#include <string.h>

static int class_of(uint32_t n)
{
    int c = 0;

    while ((1u << c) < n)
        c++;
    return c;
}

kvs_partv_t *kvs_partpool_get(kvs_partpool_t *pool, uint32_t n)
{
    kvs_partv_t *v;
    uint32_t cap;
    int c;

    if (n < 1 || n > KVS_PARTS_MAX)
        return NULL;
    c = class_of(n);
    cap = 1u << c;
    v = pool->free[c];
    if (v) {
        pool->free[c] = v->next;
    } else {
        v = malloc(sizeof(*v) + (size_t)cap * (8 + 4 + 1));
        if (!v)
            return NULL;
        v->cap = cap;
        v->offs = (uint64_t *)(void *)(v + 1);
        v->lens = (uint32_t *)(void *)(v->offs + cap);
        v->flag = (uint8_t *)(v->lens + cap);
        pool->allocs++;
    }
    v->next = NULL;
    memset(v->offs, 0, (size_t)cap * (8 + 4 + 1));
    return v;
}

void kvs_partpool_put(kvs_partpool_t *pool, kvs_partv_t *v)
{
    int c;

    if (!v)
        return;
    c = class_of(v->cap);
    v->next = pool->free[c];
    pool->free[c] = v;
}

void kvs_partpool_drain(kvs_partpool_t *pool)
{
    for (int c = 0; c < KVS_PARTPOOL_CLASSES; c++)
        while (pool->free[c]) {
            kvs_partv_t *v = pool->free[c];

            pool->free[c] = v->next;
            free(v);
        }
}
