/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lookups that return no data: which keys exist, how long a chain of keys
 * matches (the prefix-cache question, with its LRU touch and optional
 * pins), and a scan of a namespace's blocks.
 *
 * A match touches the blocks it found deepest first, so that eviction
 * reaches leaves before their ancestors and never leaves a gap in a chain.
 * Only visible blocks within their TTL are reported.
 *
 * Takes `lock` for the whole call (a pinned match releases it inside a
 * promote).
 */
#include "kvstore/store_int.h"
#include "common/clock.h"

#include <errno.h>

int kvs_store_exists(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                     size_t n, uint8_t *present_out)
{
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    bool nsok = ns_valid_locked(s, ns);
    uint64_t now = kvs_clock_real_ms();
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = NULL;
        if (nsok && keys[i].data && keys[i].len >= 1 &&
            keys[i].len <= KVS_KEY_MAX)
            e = kvs_table_lookup_locked(
                s, ns, keys[i].data, keys[i].len,
                key_hash(ns, keys[i].data, keys[i].len));
        present_out[i] = e && !expired(s, e, now);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int kvs_store_match(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                    size_t n, uint32_t flags, uint8_t *tiers_out,
                    size_t *matched_out)
{
    /* Hashes are computed and bucket heads prefetched a window ahead, so
     * the cache misses of a long prompt overlap instead of queueing; the
     * entries found are remembered for the touch pass (up to MATCH_WIN
     * of them; past that the pass looks them up again). */
    enum { MATCH_WIN = 256, AHEAD = 8 };
    struct entry *found[MATCH_WIN];
    uint64_t hashes[MATCH_WIN];
    uint64_t now = kvs_clock_real_ms();
    size_t m = 0;

    for (size_t i = 0; i < n && i < MATCH_WIN; i++)
        hashes[i] =
            keys[i].data && keys[i].len >= 1 && keys[i].len <= KVS_KEY_MAX
                ? key_hash(ns, keys[i].data, keys[i].len)
                : 0;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    if (!ns_valid_locked(s, ns))
        n = 0;
    for (size_t i = 0; i < n && i < 2 * AHEAD && i < MATCH_WIN; i++)
        __builtin_prefetch(&s->buckets[hashes[i] & s->bucket_mask]);
    for (; m < n; m++) {
        struct entry *e;
        if (!keys[m].data || keys[m].len == 0 || keys[m].len > KVS_KEY_MAX)
            break;
        if (m + 2 * AHEAD < n && m + 2 * AHEAD < MATCH_WIN)
            __builtin_prefetch(
                &s->buckets[hashes[m + 2 * AHEAD] & s->bucket_mask]);
        if (m + AHEAD < n && m + AHEAD < MATCH_WIN) {
            uint32_t b = s->buckets[hashes[m + AHEAD] & s->bucket_mask];
            if (b != NIL)
                __builtin_prefetch(&s->ents[b]);
        }
        e = kvs_table_lookup_locked(
            s, ns, keys[m].data, keys[m].len,
            m < MATCH_WIN ? hashes[m]
                          : key_hash(ns, keys[m].data, keys[m].len));
        if (!e || expired(s, e, now))
            break;
        if (tiers_out)
            tiers_out[m] = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
        if ((flags & KVS_MATCH_PIN) && (flags & KVS_MATCH_NO_READ) &&
            !(e->flags & E_DRAM)) {
            /* The lock was never released: found[] is exact. */
            for (size_t i = 0; i < m; i++) {
                struct entry *p =
                    i < MATCH_WIN
                        ? found[i]
                        : kvs_table_lookup_locked(
                              s, ns, keys[i].data, keys[i].len,
                              key_hash(ns, keys[i].data, keys[i].len));
                p->refs--;
                s->st.refs--;
            }
            pthread_mutex_unlock(&s->lock);
            return -EWOULDBLOCK;
        }
        if (flags & KVS_MATCH_PIN) {
            /* A pinned match needs the block in DRAM; the read happens
             * with the lock released, so the chain is re-checked. */
            if (kvs_read_promote_locked(s, e, true) || !(e->flags & E_LINKED))
                break;
            e->refs++;
            s->st.refs++;
            if (tiers_out)
                tiers_out[m] = KVS_TIER_DRAM;
        }
        if (m < MATCH_WIN)
            found[m] = e;
    }
    /* Accessed deepest first, so each block ends up more recent than the
     * blocks after it: eviction reaches leaves before their ancestors. A
     * chain matched before already lies in the main list in that order,
     * and then it moves to the head in one piece (docs/operations.md). A
     * pinned match may have released the lock, so only then are the
     * entries looked up again. */
    bool spliced = !(flags & KVS_MATCH_PIN) && m <= MATCH_WIN &&
                   kvs_table_touch_run_locked(s, found, m);
    for (size_t i = m; !spliced && i-- > 0;) {
        struct entry *e;
        if (i < MATCH_WIN && !(flags & KVS_MATCH_PIN))
            e = found[i];
        else
            e = kvs_table_lookup_locked(
                s, ns, keys[i].data, keys[i].len,
                key_hash(ns, keys[i].data, keys[i].len));
        if (e)
            kvs_table_touch_locked(s, e);
    }
    s->st.matches++;
    s->st.match_keys += n;
    s->st.match_hits += m;
    for (size_t i = 0; tiers_out && i < m; i++) {
        if (tiers_out[i] == KVS_TIER_DRAM)
            s->st.match_dram_hits++;
        else
            s->st.match_nvme_hits++;
    }
    pthread_mutex_unlock(&s->lock);
    *matched_out = m;
    return 0;
}

int kvs_store_scan(kvs_store_t *s, uint32_t ns, uint64_t group, kvs_scan_cb cb,
                   void *arg, uint64_t *count_out)
{
    uint64_t now = kvs_clock_real_ms(), n = 0;

    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->nents_used; i++) {
        const struct entry *e = &s->ents[i];
        kvs_block_info_t info;
        if (!(e->flags & E_LINKED) || e->ns != ns || expired(s, e, now) ||
            (group && ent_group(s, e) != group))
            continue;
        kvs_table_info(s, &info, e);
        n++;
        if (cb(arg, ent_key(s, e), e->key_len, ent_parent(s, e), e->parent_len,
               &info))
            break;
    }
    pthread_mutex_unlock(&s->lock);
    if (count_out)
        *count_out = n;
    return 0;
}
