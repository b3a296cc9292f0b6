/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block table: the entries allocated at open, the chained hash that
 * finds them by (namespace, key), the DRAM LRU list and the TTL list, and
 * an entry's life from allocation to free.
 *
 * Invariants: an entry is in the hash exactly while E_LINKED; on the LRU
 * list exactly while E_INLRU (only entries with a DRAM copy); on the TTL
 * list exactly while E_INTTL, which is while it is linked and has a TTL
 * (kvs_table_check_locked verifies the lists). A free entry is on the free
 * list, chained through hnext. An entry is freed only when it is unlinked
 * and neither busy nor referenced.
 *
 * Called by every other module of the engine; every function here needs
 * the store's `lock` held and takes no lock itself. Which entry leaves
 * when space runs out is not decided here but in evict.c.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"

#include <string.h>

struct entry *kvs_table_lookup_locked(kvs_store_t *s, uint32_t ns,
                                      const void *key, uint32_t len,
                                      uint64_t hash)
{
    for (uint32_t i = s->buckets[hash & s->bucket_mask]; i != NIL;
         i = s->ents[i].hnext) {
        struct entry *e = &s->ents[i];
        if (e->hash == hash && e->ns == ns && e->key_len == len &&
            memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

/* A visible entry, or NULL if absent or past its TTL. */
struct entry *kvs_table_find_locked(kvs_store_t *s, uint32_t ns,
                                    const void *key, uint32_t len)
{
    struct entry *e =
        kvs_table_lookup_locked(s, ns, key, len, key_hash(ns, key, len));

    if (e && expired(e, kvs_clock_real_ms()))
        return NULL;
    return e;
}

/* The TTL list holds exactly the visible entries that have a TTL, so that
 * the sweep visits those and not the whole table (80 MiB at the default
 * 2^18 entries): walking 16,384 table slots a second cost an idle store
 * 15 ms of CPU a second on this project's VMs. kvs_table_ttl_sync() puts e on
 * the list or takes it off after its visibility or its TTL changed. */
void kvs_table_ttl_del(kvs_store_t *s, struct entry *e)
{
    if (e->ttl_prev != NIL)
        s->ents[e->ttl_prev].ttl_next = e->ttl_next;
    else
        s->ttl_head = e->ttl_next;
    if (e->ttl_next != NIL)
        s->ents[e->ttl_next].ttl_prev = e->ttl_prev;
    else
        s->ttl_tail = e->ttl_prev;
    e->flags &= ~E_INTTL;
    s->nttl--;
}

void kvs_table_ttl_append(kvs_store_t *s, struct entry *e)
{
    uint32_t i = eidx(s, e);

    e->ttl_prev = s->ttl_tail;
    e->ttl_next = NIL;
    if (s->ttl_tail != NIL)
        s->ents[s->ttl_tail].ttl_next = i;
    else
        s->ttl_head = i;
    s->ttl_tail = i;
    e->flags |= E_INTTL;
    s->nttl++;
}

void kvs_table_ttl_sync(kvs_store_t *s, struct entry *e)
{
    bool want = (e->flags & E_LINKED) && e->expiry_ms;

    if (want && !(e->flags & E_INTTL))
        kvs_table_ttl_append(s, e);
    else if (!want && (e->flags & E_INTTL))
        kvs_table_ttl_del(s, e);
}

void kvs_table_link(kvs_store_t *s, struct entry *e)
{
    uint32_t *b = &s->buckets[e->hash & s->bucket_mask];

    e->hnext = *b;
    *b = eidx(s, e);
    e->flags |= E_LINKED;
    kvs_table_ttl_sync(s, e);
}

void kvs_table_unlink(kvs_store_t *s, struct entry *e)
{
    uint32_t *p = &s->buckets[e->hash & s->bucket_mask];
    uint32_t i = eidx(s, e);

    while (*p != i) {
        kvs_assert(*p != NIL);
        p = &s->ents[*p].hnext;
    }
    *p = e->hnext;
    e->flags &= ~E_LINKED;
    kvs_table_ttl_sync(s, e);
}

void kvs_table_lru_push(kvs_store_t *s, struct entry *e)
{
    uint32_t i = eidx(s, e);

    kvs_assert(!(e->flags & E_INLRU));
    e->flags |= E_INLRU;
    e->lru_prev = NIL;
    e->lru_next = s->lru_head;
    if (s->lru_head != NIL)
        s->ents[s->lru_head].lru_prev = i;
    else
        s->lru_tail = i;
    s->lru_head = i;
}

/* Inserts e just behind p (less recent than p): a block goes behind its
 * parent so that a chain is ordered root first and least recently used
 * order always reaches a leaf before its ancestors. */
void kvs_table_lru_insert_after(kvs_store_t *s, struct entry *e,
                                struct entry *p)
{
    uint32_t i = eidx(s, e), pi = eidx(s, p);

    kvs_assert(!(e->flags & E_INLRU) && (p->flags & E_INLRU));
    e->flags |= E_INLRU;
    e->lru_prev = pi;
    e->lru_next = p->lru_next;
    if (p->lru_next != NIL)
        s->ents[p->lru_next].lru_prev = i;
    else
        s->lru_tail = i;
    p->lru_next = i;
}

void kvs_table_lru_remove(kvs_store_t *s, struct entry *e)
{
    if (!(e->flags & E_INLRU))
        return;
    e->flags &= ~E_INLRU;
    if (e->lru_prev != NIL)
        s->ents[e->lru_prev].lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next != NIL)
        s->ents[e->lru_next].lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NIL;
}

static void lru_touch(kvs_store_t *s, struct entry *e)
{
    if ((e->flags & E_INLRU) && s->lru_head != eidx(s, e)) {
        kvs_table_lru_remove(s, e);
        kvs_table_lru_push(s, e);
    }
}

/* Whether e[0..n-1] are all on the LRU list, each right behind the one
 * before it (e[0] the most recent of them). */
static bool lru_run_in_order(const kvs_store_t *s, struct entry *const *e,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!(e[i]->flags & E_INLRU))
            return false;
        if (i + 1 < n && e[i]->lru_next != eidx(s, e[i + 1]))
            return false;
    }
    return true;
}

/* Moves the run first..last (linked by lru_next) to the head, in order. */
static void lru_run_to_head(kvs_store_t *s, struct entry *first,
                            struct entry *last)
{
    uint32_t fi = eidx(s, first), li = eidx(s, last);

    if (s->lru_head == fi)
        return;
    /* Not the head, so first has a predecessor. */
    s->ents[first->lru_prev].lru_next = last->lru_next;
    if (last->lru_next != NIL)
        s->ents[last->lru_next].lru_prev = first->lru_prev;
    else
        s->lru_tail = first->lru_prev;
    first->lru_prev = NIL;
    last->lru_next = s->lru_head;
    s->ents[s->lru_head].lru_prev = li;
    s->lru_head = fi;
}

static void count_hit(struct entry *e)
{
    if (e->hits < UINT16_MAX)
        e->hits++;
}

/* An access: recency for eviction, a hit for flash admission. */
void kvs_table_touch_locked(kvs_store_t *s, struct entry *e)
{
    count_hit(e);
    lru_touch(s, e);
}

/* Touches e[0..n-1] (a MATCH's chain, root first) the way touching them
 * one by one deepest first would, when they already lie in the LRU list in
 * that order: in one piece. False, touching nothing, otherwise. */
bool kvs_table_touch_run_locked(kvs_store_t *s, struct entry *const *e,
                                size_t n)
{
    if (n == 0 || !lru_run_in_order(s, e, n))
        return false;
    for (size_t i = 0; i < n; i++)
        count_hit(e[i]);
    lru_run_to_head(s, e[0], e[n - 1]);
    return true;
}

struct entry *kvs_table_alloc_locked(kvs_store_t *s)
{
    struct entry *e;

    if (s->free_head == NIL)
        return NULL;
    e = &s->ents[s->free_head];
    s->free_head = e->hnext;
    memset(e, 0, sizeof(*e));
    e->flags = E_USED;
    e->hnext = e->lru_prev = e->lru_next = e->rg_prev = e->rg_next = NIL;
    e->uid = ++s->uid_seq;
    return e;
}

/* Frees an entry that is unlinked and not busy. */
void kvs_table_free_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(!(e->flags & E_LINKED));
    kvs_assert(e->busy == 0 && e->refs == 0);
    if (e->flags & E_DRAM)
        kvs_dram_drop_locked(s, e);
    if (e->flags & E_DISK) {
        kvs_region_remove(s, e);
        s->st.nvme_blocks--;
    }
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes -= e->raw_len;
    e->flags = 0;
    e->hnext = s->free_head;
    s->free_head = eidx(s, e);
}

/* Makes a linked entry invisible; frees it unless the store is still
 * working on it. */
void kvs_table_remove_locked(kvs_store_t *s, struct entry *e)
{
    kvs_table_unlink(s, e);
    s->st.blocks--;
    if (e->busy)
        e->flags |= E_DEAD;
    else
        kvs_table_free_locked(s, e);
}

void kvs_table_set_key(struct entry *e, uint32_t ns, const void *key,
                       uint32_t len, uint64_t hash)
{
    e->ns = ns;
    e->key_len = (uint8_t)len;
    memcpy(e->key, key, len);
    e->hash = hash;
}

void kvs_table_info(kvs_block_info_t *info, const struct entry *e)
{
    info->data_len = e->raw_len;
    info->nparts = e->nparts;
    info->cls = e->cls;
    info->tier = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
    info->expiry_ms = e->expiry_ms;
    info->group = e->group;
}

/* One list of entries linked by index (LRU or TTL): walks it from the head
 * by next and checks each back link and the tail, then that exactly the
 * entries with flag are on it, as many as expected (UINT32_MAX: any). */
static int check_list_locked(kvs_store_t *s, const char *what, uint32_t head,
                             uint32_t tail, size_t next_off, size_t prev_off,
                             uint32_t flag, uint32_t expect)
{
    uint32_t n = 0, prev = NIL, flagged = 0;

    for (uint32_t i = head; i != NIL; i = *(uint32_t *)((char *)&s->ents[i] +
                                                        next_off)) {
        if (i >= s->nents || n++ > s->nents) {
            kvs_error("store check: %s list runs off the table", what);
            return KVS_ECORRUPT;
        }
        if (*(uint32_t *)((char *)&s->ents[i] + prev_off) != prev ||
            !(s->ents[i].flags & flag)) {
            kvs_error("store check: %s list entry %u: bad back link or flag",
                      what, i);
            return KVS_ECORRUPT;
        }
        prev = i;
    }
    for (uint32_t i = 0; i < s->nents; i++)
        flagged += (s->ents[i].flags & flag) != 0;
    if (prev != tail || flagged != n || (expect != UINT32_MAX && n != expect)) {
        kvs_error("store check: %s list: %u entries, %u flagged, tail %s",
                  what, n, flagged, prev == tail ? "right" : "wrong");
        return KVS_ECORRUPT;
    }
    return 0;
}

int kvs_table_check_locked(kvs_store_t *s)
{
    uint32_t with_ttl = 0;
    int ret;

    for (uint32_t i = 0; i < s->nents; i++)
        with_ttl += (s->ents[i].flags & E_LINKED) && s->ents[i].expiry_ms;
    ret = check_list_locked(s, "LRU", s->lru_head, s->lru_tail,
                            offsetof(struct entry, lru_next),
                            offsetof(struct entry, lru_prev), E_INLRU,
                            UINT32_MAX);
    if (!ret)
        ret = check_list_locked(s, "TTL", s->ttl_head, s->ttl_tail,
                                offsetof(struct entry, ttl_next),
                                offsetof(struct entry, ttl_prev), E_INTTL,
                                with_ttl);
    if (!ret && s->nttl != with_ttl) {
        kvs_error("store check: TTL count %u, %u entries with a TTL", s->nttl,
                  with_ttl);
        ret = KVS_ECORRUPT;
    }
    return ret;
}
