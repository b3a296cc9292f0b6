/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Adaptive DRAM order (see policy.h and docs/policy.md). Two doubly linked
 * lists over a node array indexed by slot, most recent at the head, and
 * two ghost lists of key hashes:
 *
 *   window: head <-> ... <-> tail   blocks seen once      -> ghost_w
 *   main:   head <-> ... <-> tail   hit, or seen again    -> ghost_m
 *
 * A put whose key is in ghost_w goes to the main list: it was seen
 * before. If it left the window among the last cap / 4 blocks to leave it
 * (ghost_wr), a window a quarter of the DRAM larger would have kept it
 * until now: the target share grows (a marginal signal; counting the last
 * cap drops grew the window too far on short traces, see docs/policy.md). Older drops say nothing about the window's
 * size (no window could have kept them) and leave it alone. A put whose
 * key is in ghost_m means the main list was too small: the share shrinks. Steps
 * follow ARC (the larger the other ghost, the larger the step). Eviction takes
 * the window's tail first while the window holds more than its share, else the
 * main list's.
 *
 * Each node counts its tracked children (blocks inserted naming it as
 * parent, still tracked); a node with children is not evictable. The
 * parent link carries the parent's generation, so a child of a block that
 * was replaced meanwhile does not count against the new occupant.
 *
 * Memory: 24 bytes a slot (calloc'd: resident as slots are first used),
 * plus the ghosts, sized by what the cache can hold, not by the slots: 4, 1
 * and 1 x cap hashes (cap: the most blocks DRAM holds at once, at most
 * nslots), each 8 bytes in a ring and 2 to 4 set slots of 8 bytes, so at
 * most 6 x 40 = 240 bytes per block of cache. ARC's ghosts are as long as
 * the cache; a ghost as long as max_blocks, which counts the disk's blocks
 * too, remembered keys no window could have kept.
 */
#include "kvstore/policy.h"
#include "kvstore/ghost.h"
#include "common/log.h"
#include "kvstash/status.h"

#include <errno.h>
#include <stdlib.h>

#define NIL KVS_POLICY_NIL
#define SHARE_ONE 65536u            /* a share of 1, fixed point */
#define GHOST_W_FACTOR 4            /* window ghost: 4 x cap keys */
#define GHOST_M_FACTOR 1            /* main ghost: 1 x cap keys */
#define GHOST_WR_DIV 4              /* recent window drops: cap / 4 keys */
#define START_SHARE (SHARE_ONE / 2) /* no prior: halfway */

enum { L_NONE = 0, L_WIN, L_MAIN, L_COUNT };

struct node {
    uint32_t prev, next; /* toward the head / the tail */
    uint32_t parent;     /* tracked parent slot, or NIL */
    uint32_t nchild;     /* tracked children */
    uint16_t gen;        /* bumped at each insert and removal */
    uint16_t parent_gen; /* the parent's gen when linked */
    uint8_t list;        /* L_* */
    uint8_t pad[3];
};
_Static_assert(sizeof(struct node) == 24, "24 bytes a slot");

struct kvs_policy {
    struct node *n;
    uint32_t nslots;
    uint32_t cap; /* the cache's size in blocks, <= nslots */
    uint32_t head[L_COUNT], tail[L_COUNT], count[L_COUNT];
    uint32_t share; /* window target, 1/65536 of tracked blocks */
    bool adaptive;
    uint8_t walk_first; /* the list a walk started in */
    kvs_ghost_t *ghost_w, *ghost_m;
    kvs_ghost_t *ghost_wr; /* the last cap / 4 of ghost_w's keys */
};

/* Ghost lists hold at most 2^28 keys (ghost.h). */
static uint32_t ghost_cap(uint32_t factor, uint32_t cap)
{
    uint64_t n = (uint64_t)factor * cap;

    return (uint32_t)(n < (1u << 28) ? n : (1u << 28));
}

int kvs_policy_create(uint32_t nslots, uint32_t cache_blocks,
                      uint32_t window_pct, kvs_policy_t **policy_out)
{
    uint32_t cap =
        cache_blocks && cache_blocks < nslots ? cache_blocks : nslots;
    kvs_policy_t *p;

    if (nslots == 0 || nslots > (1u << 28) ||
        (window_pct > 100 && window_pct != KVS_POLICY_ADAPTIVE))
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->n = calloc(nslots, sizeof(*p->n));
    if (!p->n ||
        kvs_ghost_create(ghost_cap(GHOST_W_FACTOR, cap), &p->ghost_w) ||
        kvs_ghost_create(ghost_cap(GHOST_M_FACTOR, cap), &p->ghost_m) ||
        kvs_ghost_create(cap / GHOST_WR_DIV + 1, &p->ghost_wr)) {
        kvs_policy_destroy(p);
        return -ENOMEM;
    }
    p->nslots = nslots;
    p->cap = cap;
    for (int l = 0; l < L_COUNT; l++)
        p->head[l] = p->tail[l] = NIL;
    p->adaptive = window_pct == KVS_POLICY_ADAPTIVE;
    p->share = p->adaptive ? START_SHARE
                           : (uint32_t)((uint64_t)window_pct * SHARE_ONE / 100);
    *policy_out = p;
    return 0;
}

void kvs_policy_destroy(kvs_policy_t *p)
{
    if (!p)
        return;
    kvs_ghost_destroy(p->ghost_w);
    kvs_ghost_destroy(p->ghost_m);
    kvs_ghost_destroy(p->ghost_wr);
    free(p->n);
    free(p);
}

static void unlink_node(kvs_policy_t *p, uint32_t i)
{
    struct node *x = &p->n[i];
    uint8_t l = x->list;

    if (x->prev != NIL)
        p->n[x->prev].next = x->next;
    else
        p->head[l] = x->next;
    if (x->next != NIL)
        p->n[x->next].prev = x->prev;
    else
        p->tail[l] = x->prev;
    p->count[l]--;
    x->prev = x->next = NIL;
    x->list = L_NONE;
}

static void push_head(kvs_policy_t *p, uint32_t i, uint8_t l)
{
    struct node *x = &p->n[i];

    x->list = l;
    x->prev = NIL;
    x->next = p->head[l];
    if (p->head[l] != NIL)
        p->n[p->head[l]].prev = i;
    else
        p->tail[l] = i;
    p->head[l] = i;
    p->count[l]++;
}

/* Links i just behind a (less recent than a), in a's list. */
static void link_behind(kvs_policy_t *p, uint32_t i, uint32_t a)
{
    struct node *x = &p->n[i], *y = &p->n[a];
    uint8_t l = y->list;

    x->list = l;
    x->prev = a;
    x->next = y->next;
    if (y->next != NIL)
        p->n[y->next].prev = i;
    else
        p->tail[l] = i;
    y->next = i;
    p->count[l]++;
}

/* ARC's step: one block, or the ratio of the other ghost to this one. */
static void adapt(kvs_policy_t *p, bool grow)
{
    uint32_t gw = kvs_ghost_count(p->ghost_w), gm = kvs_ghost_count(p->ghost_m);
    uint64_t ratio = grow ? (gw ? gm / gw : 1) : (gm ? gw / gm : 1);
    uint64_t step = (ratio ? ratio : 1) * SHARE_ONE / p->cap;

    if (!p->adaptive)
        return;
    if (step == 0)
        step = 1;
    if (grow)
        p->share = (uint32_t)(p->share + step > SHARE_ONE ? SHARE_ONE
                                                          : p->share + step);
    else
        p->share = (uint32_t)(p->share > step ? p->share - step : 0);
}

void kvs_policy_insert(kvs_policy_t *p, uint32_t slot, uint64_t hash,
                       uint32_t parent)
{
    struct node *x = &p->n[slot];
    uint8_t l = L_WIN;

    if (x->list != L_NONE)
        return;
    if (kvs_ghost_contains(p->ghost_w, hash)) {
        kvs_ghost_remove(p->ghost_w, hash);
        /* Only a recent drop says the window was too small: one that a
         * window of at most cap blocks would have kept. */
        if (kvs_ghost_contains(p->ghost_wr, hash)) {
            kvs_ghost_remove(p->ghost_wr, hash);
            adapt(p, true);
        }
        l = L_MAIN;
    } else if (kvs_ghost_contains(p->ghost_m, hash)) {
        kvs_ghost_remove(p->ghost_m, hash);
        adapt(p, false);
        l = L_MAIN;
    }
    x->gen++;
    x->nchild = 0;
    x->parent = NIL;
    if (parent != NIL && parent != slot && p->n[parent].list != L_NONE) {
        struct node *y = &p->n[parent];
        x->parent = parent;
        x->parent_gen = y->gen;
        y->nchild++;
        if (y->list == l) {
            link_behind(p, slot, parent);
            return;
        }
    }
    push_head(p, slot, l);
}

void kvs_policy_touch(kvs_policy_t *p, uint32_t slot)
{
    struct node *x = &p->n[slot];

    if (x->list == L_NONE || (x->list == L_MAIN && p->head[L_MAIN] == slot))
        return;
    unlink_node(p, slot);
    push_head(p, slot, L_MAIN);
}

bool kvs_policy_touch_run(kvs_policy_t *p, const uint32_t *slots, size_t n)
{
    uint32_t first, last;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p->n[slots[i]].list != L_MAIN ||
            (i + 1 < n && p->n[slots[i]].next != slots[i + 1]))
            return false;
    }
    first = slots[0];
    last = slots[n - 1];
    if (p->head[L_MAIN] == first)
        return true;
    /* Not the head, so first has a predecessor. */
    p->n[p->n[first].prev].next = p->n[last].next;
    if (p->n[last].next != NIL)
        p->n[p->n[last].next].prev = p->n[first].prev;
    else
        p->tail[L_MAIN] = p->n[first].prev;
    p->n[first].prev = NIL;
    p->n[last].next = p->head[L_MAIN];
    p->n[p->head[L_MAIN]].prev = last;
    p->head[L_MAIN] = first;
    return true;
}

void kvs_policy_remove(kvs_policy_t *p, uint32_t slot, uint64_t hash,
                       bool remember)
{
    struct node *x = &p->n[slot];

    if (x->list == L_NONE)
        return;
    if (remember && x->list == L_WIN) {
        kvs_ghost_add(p->ghost_w, hash);
        kvs_ghost_add(p->ghost_wr, hash);
    } else if (remember) {
        kvs_ghost_add(p->ghost_m, hash);
    }
    if (x->parent != NIL) {
        struct node *y = &p->n[x->parent];
        if (y->list != L_NONE && y->gen == x->parent_gen && y->nchild)
            y->nchild--;
        x->parent = NIL;
    }
    unlink_node(p, slot);
    /* Its children stay; their parent link no longer matches a gen. */
    x->gen++;
    x->nchild = 0;
}

bool kvs_policy_tracked(const kvs_policy_t *p, uint32_t slot)
{
    return p->n[slot].list != L_NONE;
}

static uint8_t other(uint8_t l)
{
    return l == L_WIN ? L_MAIN : L_WIN;
}

uint32_t kvs_policy_coldest(kvs_policy_t *p)
{
    uint64_t total = (uint64_t)p->count[L_WIN] + p->count[L_MAIN];
    uint64_t target = total * p->share / SHARE_ONE;

    p->walk_first =
        (p->count[L_WIN] > target || !p->count[L_MAIN]) ? L_WIN : L_MAIN;
    if (p->tail[p->walk_first] != NIL)
        return p->tail[p->walk_first];
    return p->tail[other(p->walk_first)];
}

uint32_t kvs_policy_warmer(const kvs_policy_t *p, uint32_t slot)
{
    const struct node *x = &p->n[slot];

    if (x->prev != NIL)
        return x->prev;
    if (x->list == p->walk_first)
        return p->tail[other(x->list)];
    return NIL;
}

bool kvs_policy_evictable(const kvs_policy_t *p, uint32_t slot)
{
    return p->n[slot].nchild == 0;
}

uint32_t kvs_policy_window_share(const kvs_policy_t *p)
{
    return p->share;
}

size_t kvs_policy_bytes(const kvs_policy_t *p)
{
    return sizeof(*p) + (size_t)p->nslots * sizeof(*p->n) +
           kvs_ghost_bytes(p->ghost_w) + kvs_ghost_bytes(p->ghost_m) +
           kvs_ghost_bytes(p->ghost_wr);
}

int kvs_policy_check(const kvs_policy_t *p)
{
    uint32_t seen = 0;

    for (uint8_t l = L_WIN; l < L_COUNT; l++) {
        uint32_t prev = NIL, n = 0;
        for (uint32_t i = p->head[l]; i != NIL; i = p->n[i].next) {
            if (i >= p->nslots || n++ > p->nslots || p->n[i].list != l ||
                p->n[i].prev != prev) {
                kvs_error("policy check: list %u broken at slot %u", l, i);
                return KVS_ECORRUPT;
            }
            prev = i;
        }
        if (prev != p->tail[l] || n != p->count[l]) {
            kvs_error("policy check: list %u: %u nodes, count %u", l, n,
                      p->count[l]);
            return KVS_ECORRUPT;
        }
        seen += n;
    }
    for (uint32_t i = 0; i < p->nslots; i++)
        seen -= p->n[i].list != L_NONE;
    if (seen) {
        kvs_error("policy check: tracked slots not on a list");
        return KVS_ECORRUPT;
    }
    return 0;
}
