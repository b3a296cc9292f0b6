/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The storage engine's facade: opening a store (configuration, the block
 * table, the arena, the NVMe tier, recovery, the background thread) and
 * closing it, namespaces, and the calls of kvstore/store.h that act on the
 * store as a whole or on one key's metadata: delete, retention, flush,
 * check, stats and verify. The other public calls live in the file named
 * for what they do (put.c, put_stream.c, get.c, pin.c, lookup.c); the
 * store's layout, its locks and their order are in kvstore/store_int.h.
 *
 * Open builds in order and close undoes in reverse: close accepts a store
 * that open left half built. Calls here take wlock before `lock` when they
 * write an index record (ns_open, delete, set_retention) and rlock for
 * verify's reads.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/fs.h"
#include "common/hugemem.h"
#include "common/log.h"

#include <errno.h>
#include <time.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Open and close */

void kvs_store_config_default(kvs_store_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->dir = "./var/kvstash";
    cfg->dram_bytes = 1ull << 30;
    cfg->nvme_bytes = 4ull << 30;
    cfg->region_bytes = 64u << 20;
    cfg->max_block_bytes = 16u << 20;
    cfg->max_blocks = 1u << 18;
    cfg->io_depth = 32;
    cfg->dram_high_pct = 90;
    cfg->dram_low_pct = 80;
    cfg->pinned_max_pct = 25;
    cfg->compress_level = 1;
    cfg->compress_min_saving_pct = 5;
    cfg->full_wait_ms = 2000;
    cfg->sync_index = false;
    cfg->policy_window_pct = KVS_STORE_WINDOW_ADAPTIVE;
}

int kvs_store_config_check(const kvs_store_config_t *c)
{
    const char *why = NULL;

    if (!c->dir || !*c->dir)
        why = "dir is empty";
    else if (c->dram_bytes < (4u << 20))
        why = "dram_bytes must be at least 4 MiB";
    else if (c->max_block_bytes == 0 || c->max_block_bytes > (1u << 30))
        why = "max_block_bytes must be 1 B .. 1 GiB";
    else if (c->max_block_bytes > c->dram_bytes / 2)
        why = "max_block_bytes must be at most half of dram_bytes";
    else if (c->min_block_bytes > c->max_block_bytes)
        why = "min_block_bytes must be at most max_block_bytes";
    else if (c->max_blocks == 0 || c->max_blocks > (1u << 28))
        why = "max_blocks must be 1 .. 2^28";
    else if (c->policy_window_pct > 100 &&
             c->policy_window_pct != KVS_STORE_WINDOW_ADAPTIVE)
        why = "policy_window_pct must be 0 .. 100, or adaptive";
    else if (c->io_depth == 0 || c->io_depth > 1024)
        why = "io_depth must be 1 .. 1024";
    else if (c->dram_low_pct > c->dram_high_pct || c->dram_high_pct > 100)
        why = "need dram_low_pct <= dram_high_pct <= 100";
    else if (c->pinned_max_pct > 100)
        why = "pinned_max_pct must be at most 100";
    else if (c->nvme_bytes &&
             (c->region_bytes < (1u << 20) || c->region_bytes % (1u << 20)))
        why = "region_bytes must be a multiple of 1 MiB";
    else if (c->nvme_bytes && c->nvme_bytes < 2ull * c->region_bytes)
        why = "nvme_bytes must hold at least two regions";
    else if (c->nvme_bytes > (uint64_t)UINT32_MAX * KVS_SEG_ALIGN)
        why = "nvme_bytes must be at most 16 TiB (an entry keeps a block's "
              "place in 4 KiB pages, 32 bits)";
    else if (c->nvme_bytes &&
             kvs_segment_disk_len(KVS_KEY_MAX, KVS_PARTS_MAX,
                                  c->max_block_bytes) > c->region_bytes)
        why = "max_block_bytes (plus its header) must fit in one region";
    if (why) {
        kvs_error("store: bad configuration: %s", why);
        return KVS_ECONFIG;
    }
    return 0;
}

int kvs_store_open(const kvs_store_config_t *cfg, kvs_store_t **store_out)
{
    kvs_store_t *s;
    int ret;

    ret = kvs_store_config_check(cfg);
    if (ret)
        return ret;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->dir = strdup(cfg->dir);
    s->cfg.dir = s->dir;
    /* A test hook, never set in production: a slow disk on demand, for
     * tests that show the daemon serving while a disk read waits. */
    const char *delay = getenv("KVSTASH_TEST_READ_DELAY_MS");
    if (delay && *delay) {
        s->test_read_delay_ms = (uint32_t)strtoul(delay, NULL, 10);
        kvs_warn("store: TEST HOOK KVSTASH_TEST_READ_DELAY_MS: every disk "
                 "read is delayed by %u ms",
                 s->test_read_delay_ms);
    }
    delay = getenv("KVSTASH_TEST_WRITE_DELAY_MS");
    if (delay && *delay) {
        s->test_write_delay_ms = (uint32_t)strtoul(delay, NULL, 10);
        kvs_warn("store: TEST HOOK KVSTASH_TEST_WRITE_DELAY_MS: every disk "
                 "write is delayed by %u ms",
                 s->test_write_delay_ms);
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    s->ns_cap = 1u << 16;
    s->ns = calloc(s->ns_cap, sizeof(*s->ns));
    /* The block table and the buckets are read at random by every lookup
     * (a MATCH of 128 keys spread over 200,000 blocks took 250 ns a key on
     * 4 KiB pages on the CI machine): 2 MiB pages. The table is reserved
     * for max_blocks entries but only the entries handed out become
     * resident, and the buckets start small and double with the blocks
     * linked (kvstore/table.c), so an idle store costs little whatever
     * its max_blocks. */
    s->nents = cfg->max_blocks;
    if (kvs_huge_reserve((size_t)s->nents * sizeof(*s->ents), &s->ents_mem) ==
        0)
        s->ents = s->ents_mem.base;
    s->free_head = NIL;
    /* Each entry holds its key and, at worst, a parent of its own. */
    if (!s->dir || !s->ns || !s->ents ||
        kvs_keys_init(&s->keys, 2ull * s->nents) != 0 ||
        kvs_table_buckets_init(s) != 0) {
        ret = -ENOMEM;
        goto err_close;
    }
    ret = kvs_fs_mkdir_p(s->dir);
    if (ret) {
        kvs_error("store: cannot create %s: %s", s->dir, strerror(-ret));
        goto err_close;
    }
    ret = cfg->dram_shared ? kvs_arena_create_shared(cfg->dram_bytes, &s->arena)
                           : kvs_arena_create(cfg->dram_bytes, &s->arena);
    if (ret) {
        kvs_error("store: cannot map a DRAM arena of %llu bytes",
                  (unsigned long long)cfg->dram_bytes);
        goto err_close;
    }
    s->abase = kvs_arena_base(s->arena);
    /* A block in DRAM takes at least an arena page, which bounds the
     * blocks the policy orders at once: its slots are sized by that, not
     * by max_blocks. Its cache size (ghost lists, adaptation step) stays
     * the arena over two pages, what it was while every DRAM copy had a
     * header page: blocks of one page are not what engines store
     * (docs/operations.md, "Space amplification"). */
    uint32_t nslots = (uint32_t)KVS_MIN(
        kvs_arena_size(s->arena) / KVS_ARENA_PAGE, (uint64_t)cfg->max_blocks);
    uint32_t cache_blocks =
        (uint32_t)KVS_MIN(kvs_arena_size(s->arena) / (2 * KVS_ARENA_PAGE),
                          (uint64_t)cfg->max_blocks);
    ret = kvs_table_pslots_init(s, nslots);
    if (!ret)
        ret = kvs_policy_create(nslots, cache_blocks,
                                cfg->policy_window_pct, &s->policy);
    if (ret)
        goto err_close;
    if (cfg->admit_ghost_factor) {
        ret = kvs_ghost_create(
            (uint32_t)KVS_MIN((uint64_t)cfg->admit_ghost_factor *
                                  cfg->max_blocks,
                              1ull << 28),
            &s->ghost);
        if (ret)
            goto err_close;
    }
    s->dram_high = kvs_arena_size(s->arena) / 100 * cfg->dram_high_pct;
    s->dram_low = kvs_arena_size(s->arena) / 100 * cfg->dram_low_pct;
    if (cfg->nvme_bytes) {
        ret = kvs_writer_open(s);
        if (ret)
            goto err_close;
    }
    ret = kvs_recover_load(s);
    if (ret)
        goto err_close;
    ret = kvs_background_start(s);
    if (ret)
        goto err_close;
    *store_out = s;
    return 0;

err_close:
    kvs_store_close(s);
    return ret;
}

void kvs_store_close(kvs_store_t *s)
{
    if (!s)
        return;
    kvs_background_stop(s);
    kvs_writer_close(s);
    kvs_index_close(s->index);
    kvs_arena_destroy(s->arena);
    kvs_ghost_destroy(s->ghost);
    kvs_policy_destroy(s->policy);
    free(s->pslot_ent);
    free(s->xrecs);
    if (s->ns)
        for (uint32_t i = 0; i < s->nns; i++)
            free(s->ns[i].name);
    free(s->ns);
    kvs_dram_close(s);
    kvs_huge_unmap(&s->buckets_mem);
    kvs_huge_unmap(&s->ents_mem);
    kvs_keys_fini(&s->keys);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->rlock);
    free(s->dir);
    free(s);
}

int kvs_store_ns_open(kvs_store_t *s, const char *name, uint32_t elem_size,
                      uint32_t *ns_out)
{
    size_t len = name ? strlen(name) : 0;
    uint32_t id;
    bool found;
    int ret;

    if (len == 0 || len > KVS_NS_NAME_MAX || elem_size > 8)
        return -EINVAL;
    /* A namespace that exists is found under `lock` alone: a daemon's
     * HELLO must not wait for wlock, which a writer holds across its disk
     * writes. Only a new one takes wlock (its index record), and looks
     * again under it. */
    pthread_mutex_lock(&s->lock);
    for (id = 0; id < s->nns; id++)
        if (s->ns[id].name && strcmp(s->ns[id].name, name) == 0)
            break;
    found = id < s->nns;
    pthread_mutex_unlock(&s->lock);
    if (found) {
        *ns_out = id;
        return 0;
    }
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    for (id = 0; id < s->nns; id++)
        if (s->ns[id].name && strcmp(s->ns[id].name, name) == 0)
            break;
    if (id < s->nns) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        *ns_out = id;
        return 0;
    }
    if (s->nns == s->ns_cap) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        return KVS_EFULL;
    }
    id = s->nns;
    pthread_mutex_unlock(&s->lock);
    ret = kvs_index_ns_put(s->index, name, len, id, elem_size);
    if (ret == 0) {
        char *copy = strdup(name);
        pthread_mutex_lock(&s->lock);
        if (!copy) {
            ret = -ENOMEM;
        } else {
            s->ns[id] = (struct ns_rec){copy, elem_size};
            s->nns = id + 1;
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->wlock);
    if (ret == 0)
        *ns_out = id;
    return ret;
}

int kvs_store_delete(kvs_store_t *s, uint32_t ns, const void *key,
                     uint32_t key_len)
{
    struct entry *e;
    bool on_disk;
    uint64_t uid;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? kvs_table_find_locked(s, ns, key, key_len)
                               : NULL;
    if (!e || e->refs) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->wlock);
        return e ? KVS_EBUSY : KVS_ENOTFOUND;
    }
    on_disk = e->flags & E_DISK;
    uid = e->uid;
    kvs_table_remove_locked(s, e);
    pthread_mutex_unlock(&s->lock);
    if (on_disk)
        kvs_index_block_delete(s->index, uid);
    pthread_mutex_unlock(&s->wlock);
    return 0;
}

int kvs_store_set_retention(kvs_store_t *s, uint32_t ns, const void *key,
                            uint32_t key_len, uint8_t cls, uint64_t ttl_ms)
{
    struct entry *e;
    int ret = 0;
    bool rewrite = false;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX || cls >= KVS_CLASS_COUNT)
        return -EINVAL;
    pthread_mutex_lock(&s->wlock);
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? kvs_table_find_locked(s, ns, key, key_len)
                               : NULL;
    if (!e) {
        ret = KVS_ENOTFOUND;
    } else if (cls == KVS_CLASS_PINNED && e->cls != KVS_CLASS_PINNED &&
               s->pinned_bytes + e->raw_len >
                   (kvs_arena_size(s->arena) / 100) * s->cfg.pinned_max_pct) {
        ret = KVS_EPINNED_FULL;
    } else if (kvs_table_xrec_set(s, e,
                                  ttl_ms ? kvs_clock_real_ms() + ttl_ms : 0,
                                  ent_group(s, e))) {
        ret = -ENOMEM;
    } else {
        if (e->cls == KVS_CLASS_PINNED)
            s->pinned_bytes -= e->raw_len;
        if (cls == KVS_CLASS_PINNED)
            s->pinned_bytes += e->raw_len;
        e->cls = cls;
        rewrite = e->flags & E_DISK;
    }
    kvs_index_rec_t rec;
    if (rewrite) {
        kvs_seg_loc_t loc = ent_loc(s, e);
        /* The checksum is the record's own: the entry does not keep it
         * (8 B a block), and the record cannot change while wlock is held.
         * So a change of retention on disk reads the record (a point read,
         * mostly from RocksDB's memtable or cache) before it writes it,
         * as it already did its commit, once a key. */
        kvs_writer_rec(s, e, &loc, e->codec, e->stored_len, 0, &rec);
    }
    pthread_mutex_unlock(&s->lock);
    if (rewrite) {
        kvs_index_rec_t old;

        ret = kvs_index_block_get(s->index, rec.uid, &old);
        if (ret) {
            pthread_mutex_unlock(&s->wlock);
            return ret;
        }
        rec.data_xxh = old.data_xxh;
        kvs_index_batch_put(s->batch, &rec);
        ret = kvs_index_commit(s->index, s->batch, s->cfg.sync_index);
        kvs_index_batch_clear(s->batch);
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int kvs_store_flush(kvs_store_t *s)
{
    int ret;

    if (!s->seg)
        return 0;
    pthread_mutex_lock(&s->lock);
    uint32_t want = ++s->flush_gen;
    pthread_cond_signal(&s->work_cv);
    while ((int32_t)(s->flush_done - want) < 0 && !s->stop)
        pthread_cond_wait(&s->space_cv, &s->lock);
    ret = s->flush_status;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int kvs_store_check(kvs_store_t *s)
{
    int ret;

    pthread_mutex_lock(&s->lock);
    ret = kvs_table_check_locked(s);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void kvs_store_stats(kvs_store_t *s, kvs_store_stats_t *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->dram_used_bytes = kvs_arena_used(s->arena);
    out->dram_capacity_bytes = kvs_arena_size(s->arena);
    out->nvme_capacity_bytes = s->seg ? s->cfg.nvme_bytes : 0;
    out->nvme_used_bytes = 0;
    for (uint32_t r = 0; r < s->nregions; r++)
        if (s->regions[r].state == RG_SEALED || s->regions[r].state == RG_OPEN)
            out->nvme_used_bytes += s->cfg.region_bytes;
    out->pinned_bytes = s->pinned_bytes;
    out->degrade_backlog_bytes = s->degrade_pending;
    pthread_mutex_unlock(&s->lock);
    kvs_lockstat_read(&s->lock_stat, &out->lock_acquired,
                      &out->lock_contended, &out->lock_wait_us);
    kvs_lockstat_read(&s->rlock_stat, &out->rlock_acquired,
                      &out->rlock_contended, &out->rlock_wait_us);
}

#define NS_ALL UINT64_MAX

/* Sleeps until done bytes at max_bps would have taken since t0. */
static void verify_pace(uint64_t t0, uint64_t done, uint64_t max_bps)
{
    uint64_t due = t0 + (uint64_t)((double)done * 1e9 / (double)max_bps);
    uint64_t now = kvs_clock_mono_ns();

    if (due > now) {
        struct timespec ts = {.tv_sec = (time_t)((due - now) / 1000000000ull),
                              .tv_nsec = (long)((due - now) % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

/* Verifies the blocks of namespace ns (NS_ALL: every namespace). */
static int verify(kvs_store_t *s, uint64_t ns, kvs_verify_cb cb, void *arg,
                  uint64_t max_bps, const atomic_int *stop,
                  uint64_t *checked_out, uint64_t *bad_out)
{
    uint64_t checked = 0, bad = 0, done = 0, t0 = kvs_clock_mono_ns();
    uint8_t *tmp;

    if (!s->seg) {
        *checked_out = *bad_out = 0;
        return 0;
    }
    tmp = malloc(s->cfg.max_block_bytes ? s->cfg.max_block_bytes : 1);
    if (!tmp)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nents_used; i++) {
        struct rd r;
        uint8_t key[KVS_KEY_MAX];
        uint32_t key_len;
        int ret;

        if (stop && atomic_load_explicit(stop, memory_order_relaxed)) {
            free(tmp);
            return -ECANCELED;
        }
        pthread_mutex_lock(&s->lock);
        struct entry *e = &s->ents[i];
        if (!(e->flags & E_LINKED) || !(e->flags & E_DISK) ||
            (ns != NS_ALL && e->ns != ns)) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        kvs_read_init(s, &r, e);
        key_len = e->key_len;
        memcpy(key, ent_key(s, e), key_len);
        pthread_mutex_unlock(&s->lock);

        kvs_lockstat_lock(&s->rlock, &s->rlock_stat);
        ret = kvs_read_one_rlocked(s, &r, key, key_len, tmp, NULL, 0);
        pthread_mutex_unlock(&s->rlock);
        checked++;
        done += r.loc.disk_len;
        if (max_bps)
            verify_pace(t0, done, max_bps);
        if (ret) {
            bad++;
            if (cb)
                cb(arg, r.ns, key, key_len, ret);
            /* Drop the record too, as documented. wlock keeps a writer
             * from committing a new record for this entry in between. */
            uint64_t uid;
            pthread_mutex_lock(&s->wlock);
            pthread_mutex_lock(&s->lock);
            bool dropped = kvs_read_drop_corrupt_locked(s, r.ns, key, key_len,
                                                        &r.loc, &uid);
            pthread_mutex_unlock(&s->lock);
            if (dropped)
                kvs_index_block_delete(s->index, uid);
            pthread_mutex_unlock(&s->wlock);
        }
    }
    free(tmp);
    *checked_out = checked;
    *bad_out = bad;
    return 0;
}

int kvs_store_verify(kvs_store_t *s, kvs_verify_cb cb, void *arg,
                     uint64_t *checked_out, uint64_t *bad_out)
{
    return verify(s, NS_ALL, cb, arg, 0, NULL, checked_out, bad_out);
}

int kvs_store_verify_ns(kvs_store_t *s, uint32_t ns, kvs_verify_cb cb,
                        void *arg, uint64_t *checked_out, uint64_t *bad_out)
{
    return verify(s, ns, cb, arg, 0, NULL, checked_out, bad_out);
}

int kvs_store_verify_paced(kvs_store_t *s, const uint32_t *ns, kvs_verify_cb cb,
                           void *arg, uint64_t max_bps, const atomic_int *stop,
                           uint64_t *checked_out, uint64_t *bad_out)
{
    return verify(s, ns ? *ns : NS_ALL, cb, arg, max_bps, stop, checked_out,
                  bad_out);
}

void *kvs_store_arena(kvs_store_t *s, size_t *len_out)
{
    *len_out = kvs_arena_size(s->arena);
    return kvs_arena_base(s->arena);
}

bool kvs_store_arena_cut(kvs_store_t *s)
{
    return kvs_arena_cut(s->arena);
}

int kvs_store_arena_fd(kvs_store_t *s)
{
    return kvs_arena_fd(s->arena);
}
