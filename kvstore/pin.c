/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pins and promotion: a caller's reference on a block in DRAM (a view the
 * daemon sends from directly), and bringing disk-only blocks into DRAM
 * ahead of use.
 *
 * A pinned block (refs > 0) is never freed, evicted or written over, and
 * a delete or replace of it fails with KVS_EBUSY; every pin is undone by
 * one unpin. Pinning a disk-only block promotes it first (read.c).
 *
 * Takes `lock`; promotion takes rlock with `lock` released.
 */
#include "kvstore/store_int.h"
#include "common/debug.h"

#include <errno.h>

int kvs_store_pin_flags(kvs_store_t *s, uint32_t ns, const void *key,
                        uint32_t key_len, uint32_t flags, kvs_view_t *view_out,
                        uint8_t *tier_out)
{
    struct entry *e;
    uint8_t tier;
    int ret;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    e = ns_valid_locked(s, ns) ? kvs_table_find_locked(s, ns, key, key_len)
                               : NULL;
    if (!e) {
        if (flags & KVS_PIN_GET) {
            s->st.gets++;
            s->st.misses++;
        }
        pthread_mutex_unlock(&s->lock);
        return KVS_ENOTFOUND;
    }
    tier = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
    if ((flags & KVS_PIN_NO_READ) && tier != KVS_TIER_DRAM) {
        pthread_mutex_unlock(&s->lock);
        return -EWOULDBLOCK;
    }
    ret = kvs_read_promote_locked(s, e, true);
    if (ret == 0 && !(e->flags & E_LINKED))
        ret = KVS_ENOTFOUND;
    if (flags & KVS_PIN_GET) {
        s->st.gets++;
        if (ret == 0) {
            s->st.hits++;
            if (tier == KVS_TIER_DRAM)
                s->st.dram_hits++;
            else
                s->st.nvme_hits++;
        } else {
            s->st.misses++;
        }
    }
    if (ret == 0) {
        e->refs++;
        s->st.refs++;
        kvs_table_touch_locked(s, e);
        if (view_out) {
            view_out->data = ent_data(s, e);
            view_out->len = e->raw_len;
            view_out->nparts = e->nparts;
            view_out->part_lens = part_table(e);
            view_out->arena_off = e->dram->off;
            view_out->cls = e->cls;
            view_out->tier = tier;
            view_out->has_xxh = s->cfg.dram_shared;
            view_out->data_xxh = e->dram->xxh;
            view_out->ref = e;
        }
        if (tier_out)
            *tier_out = tier;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int kvs_store_pin(kvs_store_t *s, uint32_t ns, const void *key,
                  uint32_t key_len, kvs_view_t *view_out)
{
    return kvs_store_pin_flags(s, ns, key, key_len, 0, view_out, NULL);
}

static void unref_locked(kvs_store_t *s, struct entry *e)
{
    kvs_assert(e->refs > 0);
    e->refs--;
    s->st.refs--;
    if (kvs_dram_need_degrade_locked(s))
        pthread_cond_signal(&s->work_cv);
}

void kvs_store_unpin_view(kvs_store_t *s, kvs_view_t *view)
{
    if (!view || !view->ref)
        return;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    unref_locked(s, view->ref);
    pthread_mutex_unlock(&s->lock);
    view->ref = NULL;
}

int kvs_store_unpin(kvs_store_t *s, uint32_t ns, const void *key,
                    uint32_t key_len)
{
    struct entry *e;
    int ret = KVS_ENOTFOUND;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    /* An expired block can still be unpinned. */
    e = kvs_table_lookup_locked(s, ns, key, key_len,
                                key_hash(ns, key, key_len));
    if (e && e->refs) {
        unref_locked(s, e);
        ret = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int kvs_store_promote(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                      size_t n, size_t *promoted_out)
{
    size_t promoted = 0;
    int ret = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        struct entry *e;
        if (!keys[i].data || keys[i].len == 0 || keys[i].len > KVS_KEY_MAX)
            continue;
        e = ns_valid_locked(s, ns)
                ? kvs_table_find_locked(s, ns, keys[i].data, keys[i].len)
                : NULL;
        if (!e || (e->flags & E_DRAM))
            continue;
        /* Stop at the DRAM budget rather than push out other blocks. */
        uint64_t bytes = kvs_dram_bytes_for(e->raw_len);
        if (kvs_arena_used(s->arena) + bytes > s->dram_high ||
            kvs_arena_largest_free(s->arena) < bytes) {
            ret = KVS_EFULL;
            break;
        }
        if (kvs_read_promote_locked(s, e, true) == 0)
            promoted++;
    }
    pthread_mutex_unlock(&s->lock);
    if (promoted_out)
        *promoted_out = promoted;
    return ret;
}
