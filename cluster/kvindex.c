// SPDX-License-Identifier: Apache-2.0
/*
 * The router's block index: an open-addressing hash table (linear probing,
 * backward-shift deletion, grown at 70 % load) of block hash -> two node
 * bitmasks, one per medium. An entry whose masks are both empty is
 * deleted. A longest-prefix query walks the chain once with a mask of the
 * nodes still matching.
 */
#include "cluster/kvindex.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xxh.h"

#include "kvstash/types.h"

struct slot {
    uint64_t cpu, sto; /* node bitmasks; both 0: empty slot */
    uint8_t len;
    uint8_t key[KVS_KEY_MAX];
};

struct kvs_kvindex {
    struct slot *t;
    size_t cap; /* a power of two */
    size_t n;
};

int kvs_kvindex_create(kvs_kvindex_t **out)
{
    kvs_kvindex_t *ix = calloc(1, sizeof(*ix));

    if (!ix)
        return -ENOMEM;
    ix->cap = 1024;
    ix->t = calloc(ix->cap, sizeof(*ix->t));
    if (!ix->t) {
        free(ix);
        return -ENOMEM;
    }
    *out = ix;
    return 0;
}

void kvs_kvindex_destroy(kvs_kvindex_t *ix)
{
    if (!ix)
        return;
    free(ix->t);
    free(ix);
}

static bool used(const struct slot *s)
{
    return s->cpu || s->sto;
}

static size_t home(const kvs_kvindex_t *ix, const void *key, size_t len)
{
    return XXH3_64bits(key, len) & (ix->cap - 1);
}

static struct slot *find(const kvs_kvindex_t *ix, const void *key, size_t len)
{
    for (size_t i = home(ix, key, len);; i = (i + 1) & (ix->cap - 1)) {
        struct slot *s = &ix->t[i];

        if (!used(s))
            return NULL;
        if (s->len == len && !memcmp(s->key, key, len))
            return s;
    }
}

static int grow(kvs_kvindex_t *ix)
{
    struct slot *old = ix->t;
    size_t ocap = ix->cap;

    ix->t = calloc(ocap * 2, sizeof(*ix->t));
    if (!ix->t) {
        ix->t = old;
        return -ENOMEM;
    }
    ix->cap = ocap * 2;
    for (size_t i = 0; i < ocap; i++) {
        size_t j;

        if (!used(&old[i]))
            continue;
        for (j = home(ix, old[i].key, old[i].len); used(&ix->t[j]);
             j = (j + 1) & (ix->cap - 1))
            ;
        ix->t[j] = old[i];
    }
    free(old);
    return 0;
}

int kvs_kvindex_stored(kvs_kvindex_t *ix, uint32_t node, const void *key,
                       size_t len, uint8_t tier)
{
    struct slot *s;
    size_t i;

    if (node >= KVS_KVINDEX_NODES || !len || len > KVS_KEY_MAX ||
        (tier != KVS_TIER_DRAM && tier != KVS_TIER_NVME))
        return -EINVAL;
    s = find(ix, key, len);
    if (!s) {
        if ((ix->n + 1) * 10 > ix->cap * 7 && grow(ix))
            return -ENOMEM;
        for (i = home(ix, key, len); used(&ix->t[i]);
             i = (i + 1) & (ix->cap - 1))
            ;
        s = &ix->t[i];
        s->len = (uint8_t)len;
        memcpy(s->key, key, len);
        ix->n++;
    }
    if (tier == KVS_TIER_DRAM)
        s->cpu |= 1ull << node;
    else
        s->sto |= 1ull << node;
    return 0;
}

/* Deletes slot i, shifting back the entries of its probe run. */
static void erase(kvs_kvindex_t *ix, size_t i)
{
    size_t mask = ix->cap - 1, j = i;

    for (;;) {
        j = (j + 1) & mask;
        if (!used(&ix->t[j]))
            break;
        size_t h = home(ix, ix->t[j].key, ix->t[j].len);

        /* Move j to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
            ix->t[i] = ix->t[j];
            i = j;
        }
    }
    memset(&ix->t[i], 0, sizeof(ix->t[i]));
    ix->n--;
}

void kvs_kvindex_removed(kvs_kvindex_t *ix, uint32_t node, const void *key,
                         size_t len, uint8_t tier)
{
    struct slot *s;

    if (node >= KVS_KVINDEX_NODES || !len || len > KVS_KEY_MAX)
        return;
    s = find(ix, key, len);
    if (!s)
        return;
    if (tier == KVS_TIER_DRAM)
        s->cpu &= ~(1ull << node);
    else if (tier == KVS_TIER_NVME)
        s->sto &= ~(1ull << node);
    if (!used(s))
        erase(ix, (size_t)(s - ix->t));
}

void kvs_kvindex_clear_node(kvs_kvindex_t *ix, uint32_t node)
{
    uint64_t bit;
    size_t i = 0;

    if (node >= KVS_KVINDEX_NODES)
        return;
    bit = 1ull << node;
    while (i < ix->cap) {
        struct slot *s = &ix->t[i];

        if (used(s) && ((s->cpu | s->sto) & bit)) {
            s->cpu &= ~bit;
            s->sto &= ~bit;
            if (!used(s)) {
                erase(ix, i);
                continue; /* another entry may have moved into i */
            }
        }
        i++;
    }
}

void kvs_kvindex_longest(const kvs_kvindex_t *ix, const kvs_kvindex_key_t *keys,
                         size_t n, uint32_t *node_out, size_t *matched_out,
                         uint8_t *tier_out)
{
    uint64_t alive = ~0ull, all_cpu = ~0ull, best_mask = 0, best_cpu = 0;
    size_t matched = 0;

    for (size_t i = 0; i < n; i++) {
        const struct slot *s = keys[i].len && keys[i].len <= KVS_KEY_MAX
                                   ? find(ix, keys[i].data, keys[i].len)
                                   : NULL;
        uint64_t have = s ? (s->cpu | s->sto) & alive : 0;

        if (!have)
            break;
        alive = have;
        all_cpu &= s->cpu | ~have;
        matched = i + 1;
        best_mask = alive;
        best_cpu = alive & all_cpu;
    }
    *matched_out = matched;
    if (!matched)
        return;
    uint64_t pick = best_cpu ? best_cpu : best_mask;

    *node_out = (uint32_t)__builtin_ctzll(pick);
    *tier_out = best_cpu ? KVS_TIER_DRAM : KVS_TIER_NVME;
}

size_t kvs_kvindex_count(const kvs_kvindex_t *ix)
{
    return ix->n;
}
