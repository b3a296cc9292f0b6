/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block table: the entries allocated at open, the chained hash that
 * finds them by (namespace, key), the side records of TTLs and groups, the
 * glue to the DRAM order of kvstore/policy.c, and an entry's life from
 * allocation to free.
 *
 * Entries are handed out from the free list, else from the untouched part
 * of the table above nents_used, so the table's resident memory follows
 * the most blocks it held at once, not max_blocks.
 *
 * Invariants: an entry is in the hash exactly while E_LINKED; tracked by
 * the policy only while it has a DRAM copy; an allocated entry with a TTL
 * or a group has one side record, which names it back, and the others none
 * (kvs_table_check_locked verifies both). A free entry is on the free
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

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct entry *kvs_table_lookup_locked(kvs_store_t *s, uint32_t ns,
                                      const void *key, uint32_t len,
                                      uint64_t hash)
{
    for (uint32_t i = s->buckets[hash & s->bucket_mask]; i != NIL;
         i = s->ents[i].hnext) {
        struct entry *e = &s->ents[i];
        if (e->hash == hash && e->ns == ns && e->key_len == len &&
            memcmp(ent_key(s, e), key, len) == 0)
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

    if (e && expired(s, e, kvs_clock_real_ms()))
        return NULL;
    return e;
}

/* TTLs and groups live in a dense array beside the table, one record per
 * entry that has either (issue 19: 24 B for those, 4 B of xslot for the
 * rest, where both in the entry cost 16 B more for every block). The
 * sweep (background.c) walks the array, not the whole table. A record
 * leaving is replaced by the last one, so every step is O(1). */
static void xrec_drop(kvs_store_t *s, struct entry *e)
{
    uint32_t x = e->xslot, last = s->nxrecs - 1;

    if (x == NIL)
        return;
    if (x != last) {
        s->xrecs[x] = s->xrecs[last];
        s->ents[s->xrecs[x].e].xslot = x;
    }
    s->nxrecs--;
    e->xslot = NIL;
}

/* Gives e the TTL (an absolute wall-clock time, 0: none) and the group
 * (0: none). 0, or -ENOMEM with e unchanged. */
int kvs_table_xrec_set(kvs_store_t *s, struct entry *e, uint64_t expiry_ms,
                       uint64_t group)
{
    if (!expiry_ms && !group) {
        xrec_drop(s, e);
        return 0;
    }
    if (e->xslot == NIL) {
        if (s->nxrecs == s->xrecs_cap) {
            uint32_t cap = s->xrecs_cap ? s->xrecs_cap * 2 : 256;
            struct xrec *x = realloc(s->xrecs, sizeof(*x) * (size_t)cap);

            if (!x)
                return -ENOMEM;
            s->xrecs = x;
            s->xrecs_cap = cap;
        }
        e->xslot = s->nxrecs++;
        s->xrecs[e->xslot].e = eidx(s, e);
    }
    s->xrecs[e->xslot].expiry_ms = expiry_ms;
    s->xrecs[e->xslot].group = group;
    return 0;
}

/* The buckets start at BUCKETS_MIN and double whenever the hash holds more
 * blocks than buckets, up to the power of two at or above max_blocks: at
 * most 8 bytes of buckets per linked block, and an idle store with a large
 * max_blocks holds 256 KiB of them. A doubling rehashes every linked entry
 * under `lock`, a pause that grows with the blocks held (not measured on
 * its own: the restart of 1,000,000 blocks in docs/operations.md includes
 * four); the amortised cost of a link stays O(1). A doubling that cannot get
 * memory leaves the hash as it is, longer chains but correct. */
#define BUCKETS_MIN (1u << 16)

static int buckets_map(uint32_t nb, kvs_huge_t *mem)
{
    if (kvs_huge_map((size_t)nb * sizeof(uint32_t), mem) != 0)
        return -ENOMEM;
    memset(mem->base, 0xff, (size_t)nb * sizeof(uint32_t));
    return 0;
}

int kvs_table_buckets_init(kvs_store_t *s)
{
    uint32_t nb = 1;

    while (nb < s->nents && nb < BUCKETS_MIN)
        nb <<= 1;
    if (buckets_map(nb, &s->buckets_mem))
        return -ENOMEM;
    s->buckets = s->buckets_mem.base;
    s->bucket_mask = nb - 1;
    return 0;
}

/* Rehashes into nb buckets (a power of two); on no memory, stays. */
static void buckets_resize(kvs_store_t *s, uint32_t nb)
{
    kvs_huge_t mem;
    uint32_t *b;

    if (buckets_map(nb, &mem))
        return;
    b = mem.base;
    for (uint32_t i = 0; i < s->nents_used; i++) {
        struct entry *e = &s->ents[i];
        if (!(e->flags & E_LINKED))
            continue;
        e->hnext = b[e->hash & (nb - 1)];
        b[e->hash & (nb - 1)] = i;
    }
    kvs_huge_unmap(&s->buckets_mem);
    s->buckets_mem = mem;
    s->buckets = b;
    s->bucket_mask = nb - 1;
}

/* Recovery knows about how many blocks it will link: buckets for them at
 * once, rather than a doubling (a rehash of all linked so far) every time
 * the count passes a power of two. */
void kvs_table_buckets_reserve(kvs_store_t *s, uint64_t nblocks)
{
    uint64_t nb = s->bucket_mask + 1ull;

    nblocks = KVS_MIN(nblocks, (uint64_t)s->nents);
    while (nb < nblocks && nb < (1ull << 31))
        nb <<= 1;
    if (nb > s->bucket_mask + 1ull)
        buckets_resize(s, (uint32_t)nb);
}

void kvs_table_link(kvs_store_t *s, struct entry *e)
{
    uint32_t *b;

    if (s->nlinked > s->bucket_mask && s->bucket_mask + 1 < s->nents &&
        s->bucket_mask < (1u << 31) - 1)
        buckets_resize(s, (s->bucket_mask + 1) * 2);
    b = &s->buckets[e->hash & s->bucket_mask];
    e->hnext = *b;
    *b = eidx(s, e);
    e->flags |= E_LINKED;
    s->nlinked++;
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
    s->nlinked--;
}

/* The DRAM order is the policy's (kvstore/policy.h); these adapt it to
 * entries. The policy numbers its blocks by slot, and has one slot per
 * block DRAM can hold at once (an arena page at least each), not one
 * per entry: an entry takes a slot (pslot) when it enters DRAM and gives
 * it back when it leaves, so the order's 24 bytes a block are paid for
 * DRAM's blocks only. pslot_ent maps a slot back to its entry, and
 * chains the free slots. A block goes behind its parent when the parent
 * is in DRAM, so that a chain's leaves are reached before its ancestors. */
int kvs_table_pslots_init(kvs_store_t *s, uint32_t npslots)
{
    s->pslot_ent = malloc((size_t)npslots * sizeof(*s->pslot_ent));
    if (!s->pslot_ent)
        return -ENOMEM;
    s->npslots = npslots;
    for (uint32_t i = 0; i < npslots; i++)
        s->pslot_ent[i] = i + 1 < npslots ? i + 1 : NIL;
    s->pslot_free = 0;
    return 0;
}

void kvs_table_lru_push(kvs_store_t *s, struct entry *e, struct entry *parent)
{
    uint32_t slot = s->pslot_free;

    kvs_assert(e->flags & E_DRAM);
    if (e->dram->pslot != NIL)
        return;
    /* DRAM holds fewer blocks than slots (see above). */
    kvs_assert(slot != NIL);
    s->pslot_free = s->pslot_ent[slot];
    s->pslot_ent[slot] = eidx(s, e);
    e->dram->pslot = slot;
    kvs_policy_insert(s->policy, slot, e->hash,
                      parent ? ent_pslot(parent) : KVS_POLICY_NIL);
}

void kvs_table_lru_remove(kvs_store_t *s, struct entry *e, bool remember)
{
    uint32_t slot = ent_pslot(e);

    if (slot == NIL)
        return;
    kvs_policy_remove(s->policy, slot, e->hash, remember);
    s->pslot_ent[slot] = s->pslot_free;
    s->pslot_free = slot;
    e->dram->pslot = NIL;
}

static uint32_t ent_of(const kvs_store_t *s, uint32_t slot)
{
    return slot == KVS_POLICY_NIL ? NIL : s->pslot_ent[slot];
}

uint32_t kvs_table_lru_coldest(kvs_store_t *s)
{
    return ent_of(s, kvs_policy_coldest(s->policy));
}

uint32_t kvs_table_lru_warmer(kvs_store_t *s, uint32_t i)
{
    return ent_of(s, kvs_policy_warmer(s->policy, ent_pslot(&s->ents[i])));
}

bool kvs_table_lru_evictable(kvs_store_t *s, const struct entry *e)
{
    uint32_t slot = ent_pslot(e);

    return slot == NIL || kvs_policy_evictable(s->policy, slot);
}

static void count_hit(struct entry *e)
{
    if ((e->flags & E_DRAM) && e->dram->hits < UINT16_MAX)
        e->dram->hits++;
}

/* An access: recency for eviction, a hit for flash admission. */
void kvs_table_touch_locked(kvs_store_t *s, struct entry *e)
{
    uint32_t slot = ent_pslot(e);

    count_hit(e);
    if (slot != NIL)
        kvs_policy_touch(s->policy, slot);
}

/* Touches e[0..n-1] (a MATCH's chain, root first) in one splice when the
 * policy can (kvs_policy_touch_run); false, touching nothing, otherwise. */
bool kvs_table_touch_run_locked(kvs_store_t *s, struct entry *const *e,
                                size_t n)
{
    uint32_t slots[256];

    if (n == 0 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++) {
        slots[i] = ent_pslot(e[i]);
        if (slots[i] == NIL)
            return false;
    }
    if (!kvs_policy_touch_run(s->policy, slots, n))
        return false;
    for (size_t i = 0; i < n; i++)
        count_hit(e[i]);
    return true;
}

struct entry *kvs_table_alloc_locked(kvs_store_t *s)
{
    struct entry *e;

    if (s->free_head != NIL) {
        e = &s->ents[s->free_head];
        s->free_head = e->hnext;
    } else if (s->nents_used < s->nents) {
        e = &s->ents[s->nents_used++]; /* first write makes it resident */
    } else {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    e->flags = E_USED;
    e->hnext = e->rg_prev = e->rg_next = e->xslot = NIL;
    e->kref = e->pref = KVS_KEYS_NIL;
    e->uid = ++s->uid_seq;
    return e;
}

/* Frees an entry that is unlinked and not busy. */
void kvs_table_free_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(!(e->flags & E_LINKED));
    kvs_assert(e->busy == 0 && e->refs == 0);
    kvs_table_lru_remove(s, e, false); /* deleted or replaced: no ghost */
    if (e->flags & E_DRAM)
        kvs_dram_drop_locked(s, e);
    if (e->flags & E_DISK) {
        kvs_region_remove(s, e);
        s->st.nvme_blocks--;
    }
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes -= e->raw_len;
    kvs_keys_unref(&s->keys, e->kref);
    kvs_keys_unref(&s->keys, e->pref);
    e->kref = e->pref = KVS_KEYS_NIL;
    xrec_drop(s, e);
    e->flags = 0;
    e->hnext = s->free_head;
    s->free_head = eidx(s, e);
}

/* Makes a linked entry invisible; frees it unless the store is still
 * working on it. */
void kvs_table_remove_locked(kvs_store_t *s, struct entry *e)
{
    if (e->flags & E_DRAM)
        ev_tier_locked(s, e, KVS_STORE_EV_REMOVED, KVS_TIER_DRAM);
    if (e->flags & E_DISK)
        ev_tier_locked(s, e, KVS_STORE_EV_REMOVED, KVS_TIER_NVME);
    kvs_table_unlink(s, e);
    s->st.blocks--;
    if (e->busy)
        e->flags |= E_DEAD;
    else
        kvs_table_free_locked(s, e);
}

/* A parent that is in the table lends its own key chunk, which its
 * children keep alive after it leaves: a chain pays for each key once. */
int kvs_table_set_key(kvs_store_t *s, struct entry *e, uint32_t ns,
                      const void *key, uint32_t len, uint64_t hash,
                      const void *parent, uint32_t plen)
{
    struct entry *p = plen ? kvs_table_lookup_locked(s, ns, parent, plen,
                                                     key_hash(ns, parent, plen))
                           : NULL;
    uint32_t kref = kvs_keys_add(&s->keys, key, len), pref = KVS_KEYS_NIL;

    if (kref == KVS_KEYS_NIL)
        return KVS_EFULL;
    if (p && kvs_keys_ref(&s->keys, p->kref))
        pref = p->kref;
    else if (plen &&
             (pref = kvs_keys_add(&s->keys, parent, plen)) == KVS_KEYS_NIL) {
        kvs_keys_unref(&s->keys, kref);
        return KVS_EFULL;
    }
    e->ns = ns;
    e->key_len = (uint8_t)len;
    e->kref = kref;
    e->parent_len = (uint8_t)plen;
    e->pref = pref;
    e->hash = hash;
    return 0;
}

/* A parent put in the same batch as its child, or loaded after it, was not
 * in the table when the child got its key: the child's copy of the
 * parent's key gives way to the parent's own chunk once it is. */
void kvs_table_share_parent(kvs_store_t *s, struct entry *e,
                            const struct entry *parent)
{
    if (!parent || e->pref == KVS_KEYS_NIL || e->pref == parent->kref ||
        kvs_keys_refs(&s->keys, e->pref) != 1 ||
        !kvs_keys_ref(&s->keys, parent->kref))
        return;
    kvs_keys_unref(&s->keys, e->pref);
    e->pref = parent->kref;
}

void kvs_table_info(const kvs_store_t *s, kvs_block_info_t *info,
                    const struct entry *e)
{
    info->data_len = e->raw_len;
    info->nparts = e->nparts;
    info->cls = e->cls;
    info->tier = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
    info->expiry_ms = ent_expiry(s, e);
    info->group = ent_group(s, e);
}

/* Every xrec names an allocated entry that names it back, and every
 * entry with an xslot has its record. */
static int check_xrecs_locked(kvs_store_t *s)
{
    uint32_t with = 0;

    for (uint32_t x = 0; x < s->nxrecs; x++) {
        uint32_t i = s->xrecs[x].e;

        if (i >= s->nents_used || !(s->ents[i].flags & E_USED) ||
            s->ents[i].xslot != x) {
            kvs_error("store check: side record %u: entry %u does not name it",
                      x, i);
            return KVS_ECORRUPT;
        }
    }
    for (uint32_t i = 0; i < s->nents_used; i++)
        with += s->ents[i].xslot != NIL;
    if (with != s->nxrecs) {
        kvs_error("store check: %u side records, %u entries with one",
                  s->nxrecs, with);
        return KVS_ECORRUPT;
    }
    return 0;
}

int kvs_table_check_locked(kvs_store_t *s)
{
    int ret = kvs_policy_check(s->policy);

    for (uint32_t i = 0; i < s->nents_used && !ret; i++) {
        const struct entry *e = &s->ents[i];
        uint32_t slot = ent_pslot(e);
        if (slot == NIL)
            continue;
        if (slot >= s->npslots || s->pslot_ent[slot] != i ||
            !kvs_policy_tracked(s->policy, slot)) {
            kvs_error("store check: entry %u: policy slot %u not its own", i,
                      slot);
            ret = KVS_ECORRUPT;
        }
    }
    if (!ret)
        ret = check_xrecs_locked(s);
    return ret;
}
