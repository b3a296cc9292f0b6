/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ghost list (see ghost.h): a FIFO ring of hashes for age, and an
 * open-addressing set with linear probing for membership, at most half
 * full. Removal shifts later entries of the probe run back, so the set has
 * no tombstones and lookups stay short.
 *
 *   ring: [h5 h6 h7 h1 h2 h3 h4]   oldest at `head`, overwritten when full
 *   set:  [ . h3 .  h1 h6 . h2 ...] slot = mix(h) & mask, 0 = empty
 *
 * A hash removed from the set stays in the ring until its turn comes; if it
 * was added again meanwhile, that turn forgets it early. A ghost only
 * guides admission, so the cost of that is a block admitted one put later.
 */
#include "kvstore/ghost.h"

#include <errno.h>
#include <stdlib.h>

struct kvs_ghost {
    uint64_t *ring; /* capacity hashes */
    uint32_t cap, head, count;
    uint64_t *set; /* mask + 1 slots; 0 is empty */
    uint32_t mask;
};

/* Stored hashes are never 0. */
static uint64_t norm(uint64_t h)
{
    return h ? h : 1;
}

static uint32_t slot_of(const kvs_ghost_t *g, uint64_t h)
{
    return (uint32_t)((h * 0x9e3779b97f4a7c15ull) >> 32) & g->mask;
}

int kvs_ghost_create(uint32_t capacity, kvs_ghost_t **ghost_out)
{
    kvs_ghost_t *g;
    uint32_t n = 2;

    if (capacity == 0 || capacity > (1u << 28))
        return -EINVAL;
    while (n < 2 * capacity)
        n <<= 1;
    g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->ring = calloc(capacity, sizeof(*g->ring));
    g->set = calloc(n, sizeof(*g->set));
    if (!g->ring || !g->set) {
        kvs_ghost_destroy(g);
        return -ENOMEM;
    }
    g->cap = capacity;
    g->mask = n - 1;
    *ghost_out = g;
    return 0;
}

void kvs_ghost_destroy(kvs_ghost_t *g)
{
    if (!g)
        return;
    free(g->ring);
    free(g->set);
    free(g);
}

/* The slot holding h, or the empty slot where it would go. */
static uint32_t find(const kvs_ghost_t *g, uint64_t h)
{
    uint32_t i = slot_of(g, h);

    while (g->set[i] && g->set[i] != h)
        i = (i + 1) & g->mask;
    return i;
}

bool kvs_ghost_contains(const kvs_ghost_t *g, uint64_t hash)
{
    return g->set[find(g, norm(hash))] != 0;
}

static void set_delete(kvs_ghost_t *g, uint64_t h)
{
    uint32_t i = find(g, h), j = i;

    if (!g->set[i])
        return;
    for (;;) {
        j = (j + 1) & g->mask;
        if (!g->set[j])
            break;
        uint32_t home = slot_of(g, g->set[j]);
        /* Move j back into the hole at i unless its home lies in (i, j]. */
        if (((j - home) & g->mask) >= ((j - i) & g->mask)) {
            g->set[i] = g->set[j];
            i = j;
        }
    }
    g->set[i] = 0;
}

void kvs_ghost_remove(kvs_ghost_t *g, uint64_t hash)
{
    set_delete(g, norm(hash));
}

void kvs_ghost_add(kvs_ghost_t *g, uint64_t hash)
{
    uint64_t h = norm(hash);
    uint32_t i = find(g, h);

    if (g->set[i])
        return;
    if (g->count == g->cap) {
        set_delete(g, g->ring[g->head]);
        g->ring[g->head] = h;
        g->head = (g->head + 1) % g->cap;
        i = find(g, h); /* the delete may have moved slots */
    } else {
        g->ring[(g->head + g->count++) % g->cap] = h;
    }
    g->set[i] = h;
}

uint32_t kvs_ghost_count(const kvs_ghost_t *g)
{
    return g->count;
}

size_t kvs_ghost_bytes(const kvs_ghost_t *g)
{
    return sizeof(*g) + (size_t)g->cap * sizeof(*g->ring) +
           ((size_t)g->mask + 1) * sizeof(*g->set);
}
