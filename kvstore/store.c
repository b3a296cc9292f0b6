/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The storage engine facade: open and close, namespaces, and the public
 * calls of kvstore/store.h that are not put, get, pin or lookups. The
 * store's layout, its locks and their order are described in
 * kvstore/store_int.h.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/fs.h"
#include "common/hugemem.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define PUT_CHUNK 64 /* puts sharing one durable write */

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
}

static int check_config(const kvs_store_config_t *c)
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
    else if (c->max_blocks == 0 || c->max_blocks > (1u << 28))
        why = "max_blocks must be 1 .. 2^28";
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
    uint32_t nb;
    int ret;

    ret = check_config(cfg);
    if (ret)
        return ret;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->dir = strdup(cfg->dir);
    s->cfg.dir = s->dir;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->space_cv, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    s->lru_head = s->lru_tail = NIL;
    s->ttl_head = s->ttl_tail = NIL;
    s->ns_cap = 1u << 16;
    s->ns = calloc(s->ns_cap, sizeof(*s->ns));
    /* The block table and the buckets are read at random by every lookup
     * (a MATCH of 128 keys spread over 200,000 blocks took 250 ns a key on
     * 4 KiB pages on the CI machine): 2 MiB pages. */
    s->nents = cfg->max_blocks;
    if (kvs_huge_map((size_t)s->nents * sizeof(*s->ents), &s->ents_mem) == 0)
        s->ents = s->ents_mem.base;
    for (nb = 1; nb < s->nents; nb <<= 1)
        ;
    s->bucket_mask = nb - 1;
    if (kvs_huge_map((size_t)nb * sizeof(uint32_t), &s->buckets_mem) == 0)
        s->buckets = s->buckets_mem.base;
    if (!s->dir || !s->ns || !s->ents || !s->buckets) {
        ret = -ENOMEM;
        goto err_close;
    }
    memset(s->buckets, 0xff, (size_t)nb * sizeof(uint32_t));
    s->free_head = NIL;
    for (uint32_t i = s->nents; i-- > 0;) {
        s->ents[i].hnext = s->free_head;
        s->free_head = i;
    }
    ret = kvs_fs_mkdir_p(s->dir);
    if (ret) {
        kvs_error("store: cannot create %s: %s", s->dir, strerror(-ret));
        goto err_close;
    }
    ret = kvs_arena_create(cfg->dram_bytes, &s->arena);
    if (ret) {
        kvs_error("store: cannot map a DRAM arena of %llu bytes",
                  (unsigned long long)cfg->dram_bytes);
        goto err_close;
    }
    s->abase = kvs_arena_base(s->arena);
    if (cfg->admit_ghost_factor) {
        ret = kvs_ghost_create(
            (uint32_t)KVS_MIN((uint64_t)cfg->admit_ghost_factor *
                                  cfg->max_blocks, 1ull << 28),
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
    if (s->ns)
        for (uint32_t i = 0; i < s->nns; i++)
            free(s->ns[i].name);
    free(s->ns);
    kvs_huge_unmap(&s->buckets_mem);
    kvs_huge_unmap(&s->ents_mem);
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
    int ret;

    if (len == 0 || len > KVS_NS_NAME_MAX || elem_size > 8)
        return -EINVAL;
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

static bool ns_valid_locked(const kvs_store_t *s, uint32_t ns)
{
    return ns < s->nns && s->ns[ns].name;
}

/* ---------------------------------------------------------------------- */
/* Put */

static int check_put(const kvs_store_t *s, const kvs_put_args_t *a,
                     bool need_data, uint64_t *total_out)
{
    uint64_t total = 0;

    if (!a || !a->key || a->key_len == 0 || a->key_len > KVS_KEY_MAX ||
        a->nparts == 0 || a->nparts > KVS_PARTS_MAX || !a->parts ||
        a->cls >= KVS_CLASS_COUNT || a->parent_len > KVS_KEY_MAX ||
        (a->parent_len && !a->parent))
        return -EINVAL;
    for (uint32_t i = 0; i < a->nparts; i++) {
        if (a->parts[i].len > UINT32_MAX ||
            (need_data && a->parts[i].len && !a->parts[i].base))
            return -EINVAL;
        total += a->parts[i].len;
    }
    if (total > s->cfg.max_block_bytes)
        return KVS_ETOOBIG;
    *total_out = total;
    return 0;
}

/* Replaces or inserts e (busy, filled) under its key; returns 0 or
 * KVS_EBUSY if the old block is referenced. *old_uid_out is set when an old
 * block's index record must be deleted (the new block has none yet). */
static int publish_locked(kvs_store_t *s, struct entry *e, bool *del_old,
                          uint64_t *old_uid)
{
    struct entry *old =
        kvs_table_lookup_locked(s, e->ns, e->key, e->key_len, e->hash);

    *del_old = false;
    if (old) {
        if (old->refs)
            return KVS_EBUSY;
        if ((old->flags & E_DISK) && !(e->flags & E_DISK)) {
            *del_old = true;
            *old_uid = old->uid;
        }
        kvs_table_remove_locked(s, old);
    }
    kvs_table_link(s, e);
    struct entry *parent =
        e->parent_len
            ? kvs_table_lookup_locked(s, e->ns, e->parent, e->parent_len,
                                      key_hash(e->ns, e->parent, e->parent_len))
            : NULL;
    if (parent && (parent->flags & E_INLRU))
        kvs_table_lru_insert_after(s, e, parent);
    else
        kvs_table_lru_push(s, e);
    s->st.blocks++;
    s->st.dram_blocks++;
    return 0;
}

int kvs_store_put(kvs_store_t *s, const kvs_put_args_t *a)
{
    int status;

    return kvs_store_put_batch(s, a, 1, &status);
}

/*
 * Reserves an entry and DRAM for a block of total bytes: the entry is busy
 * and invisible (not in the hash) until published. 0 with *e_out, 1 when
 * admission declined the put, or an error.
 */
static int reserve_locked(kvs_store_t *s, const kvs_put_args_t *a,
                          uint64_t total, struct entry **e_out)
{
    uint64_t bytes = kvs_dram_bytes_for(total, a->nparts), off;
    struct entry *e;
    int ret;

    if (!ns_valid_locked(s, a->ns))
        return KVS_ENOTFOUND;
    if (a->cls == KVS_CLASS_PINNED &&
        s->pinned_bytes + total >
            (kvs_arena_size(s->arena) / 100) * s->cfg.pinned_max_pct)
        return KVS_EPINNED_FULL;
    if (s->ghost && a->cls == KVS_CLASS_SCRATCH &&
        !kvs_evict_admit_locked(s, a)) {
        s->st.admission_rejected++;
        return 1;
    }
    e = kvs_table_alloc_locked(s);
    if (!e && kvs_evict_one_locked(s))
        e = kvs_table_alloc_locked(s);
    ret = e ? kvs_dram_alloc_locked(s, bytes, &off) : KVS_EFULL;
    if (ret) {
        if (e) {
            e->flags = 0;
            e->hnext = s->free_head;
            s->free_head = eidx(s, e);
        }
        s->st.full_errors++;
        return ret;
    }
    kvs_table_set_key(e, a->ns, a->key, a->key_len,
                      key_hash(a->ns, a->key, a->key_len));
    e->dram_off = off + kvs_segment_hdr_bytes(a->nparts);
    e->dram_bytes = bytes;
    e->flags |= E_DRAM;
    e->busy = 1;
    e->nparts = a->nparts;
    e->raw_len = total;
    e->cls = a->cls;
    e->elem_size = a->elem_size ? a->elem_size
                                : (uint8_t)s->ns[a->ns].elem_size;
    e->group = a->group;
    e->expiry_ms = a->ttl_ms ? kvs_clock_real_ms() + a->ttl_ms : 0;
    e->parent_len = (uint8_t)a->parent_len;
    if (a->parent_len)
        memcpy(e->parent, a->parent, a->parent_len);
    if (a->flags & (KVS_PUT_DURABLE | KVS_PUT_NO_DRAM))
        e->flags |= E_DURABLE;
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes += total;
    uint32_t *pl = part_table(s, e);
    for (uint32_t p = 0; p < a->nparts; p++)
        pl[p] = (uint32_t)a->parts[p].len;
    *e_out = e;
    return 0;
}

/* Checksums a filled block and clears what follows it. */
static void seal_bytes(kvs_store_t *s, struct entry *e)
{
    e->data_xxh = XXH3_64bits(s->abase + e->dram_off, e->raw_len);
    kvs_dram_zero_tail(s->abase + e->dram_off, e->raw_len, e->nparts);
}

/*
 * Makes filled entries visible: durable ones are written first (one flush
 * and one synced index commit for all of them), then each replaces any
 * block of the same key. status[k] is 0 on entry, and the result after.
 */
static void commit_entries(kvs_store_t *s, const kvs_put_args_t *const *args,
                           const uint32_t *ents, uint32_t n, int *status)
{
    bool any_durable = false;

    for (uint32_t k = 0; k < n && s->seg; k++)
        any_durable |= (s->ents[ents[k]].flags & E_DURABLE) != 0;
    if (any_durable) {
        pthread_mutex_lock(&s->wlock);
        for (uint32_t k = 0; k < n; k++)
            if (s->ents[ents[k]].flags & E_DURABLE)
                kvs_writer_queue_wlocked(s, ents[k], JOB_PUT, &status[k]);
        kvs_writer_drain_wlocked(s, true);
        pthread_mutex_unlock(&s->wlock);
    }
    for (uint32_t k = 0; k < n; k++) {
        const kvs_put_args_t *a = args[k];
        struct entry *e = &s->ents[ents[k]];
        bool del_old = false, del_own = false;
        uint64_t old_uid = 0, own_uid = e->uid;
        int ret = status[k];

        pthread_mutex_lock(&s->lock);
        if (ret == 0)
            ret = publish_locked(s, e, &del_old, &old_uid);
        if (ret) {
            /* Not published: a record written for it must go. */
            del_own = e->flags & E_DISK;
            e->busy = 0;
            kvs_table_free_locked(s, e);
        } else {
            e->busy--;
            s->st.puts++;
            if ((a->flags & KVS_PUT_NO_DRAM) && (e->flags & E_DISK) &&
                !e->refs && !e->busy)
                kvs_dram_drop_locked(s, e);
        }
        pthread_mutex_unlock(&s->lock);
        if (del_old || del_own) {
            pthread_mutex_lock(&s->wlock);
            kvs_index_block_delete_if(s->index, a->ns, a->key, a->key_len,
                                      del_own ? own_uid : old_uid);
            pthread_mutex_unlock(&s->wlock);
        }
        status[k] = ret;
    }
}

int kvs_store_put_batch(kvs_store_t *s, const kvs_put_args_t *args, size_t n,
                        int *status_out)
{
    const kvs_put_args_t *cargs[PUT_CHUNK];
    uint32_t ents[PUT_CHUNK];
    int wstat[PUT_CHUNK];
    size_t pos[PUT_CHUNK] = {0}; /* set for each filled slot */
    int first = 0;

    for (size_t done = 0; done < n;) {
        size_t chunk = KVS_MIN(n - done, (size_t)PUT_CHUNK);
        uint32_t nd = 0;

        /* Room in DRAM and an entry for each block, then the copy with
         * the lock released. */
        for (size_t i = done; i < done + chunk; i++) {
            const kvs_put_args_t *a = &args[i];
            uint64_t total;
            struct entry *e = NULL;
            int ret = check_put(s, a, true, &total);

            if (ret == 0) {
                pthread_mutex_lock(&s->lock);
                ret = reserve_locked(s, a, total, &e);
                pthread_mutex_unlock(&s->lock);
            }
            status_out[i] = ret == 1 ? 0 : ret; /* 1: declined */
            if (ret)
                continue;
            uint8_t *dst = s->abase + e->dram_off;
            for (uint32_t p = 0; p < a->nparts; p++) {
                if (a->parts[p].len)
                    memcpy(dst, a->parts[p].base, a->parts[p].len);
                dst += a->parts[p].len;
            }
            seal_bytes(s, e);
            cargs[nd] = a;
            pos[nd] = i;
            wstat[nd] = 0;
            ents[nd++] = eidx(s, e);
        }
        commit_entries(s, cargs, ents, nd, wstat);
        for (uint32_t k = 0; k < nd; k++)
            status_out[pos[k]] = wstat[k];
        for (size_t i = done; i < done + chunk; i++)
            if (status_out[i] && !first)
                first = status_out[i];
        done += chunk;
    }
    return first;
}

/* ---------------------------------------------------------------------- */
/* Streaming puts: a block whose parts arrive one at a time */

int kvs_store_put_begin(kvs_store_t *s, const kvs_put_args_t *a,
                        kvs_put_stream_t *ps)
{
    uint64_t total;
    struct entry *e = NULL;
    int ret = check_put(s, a, false, &total);

    if (ret)
        return ret;
    pthread_mutex_lock(&s->lock);
    ret = reserve_locked(s, a, total, &e);
    pthread_mutex_unlock(&s->lock);
    if (ret == 1)
        return KVS_EBUSY; /* declined by admission: nothing to stream into */
    if (ret)
        return ret;
    memset(ps, 0, sizeof(*ps));
    ps->ref = e;
    ps->nparts = a->nparts;
    ps->flags = a->flags;
    ps->ns = a->ns;
    return 0;
}

void *kvs_store_put_part_buf(kvs_store_t *s, kvs_put_stream_t *ps,
                             uint32_t part, size_t *len_out)
{
    struct entry *e = ps->ref;
    const uint32_t *pl;
    uint64_t off = 0;

    if (!e || part >= ps->nparts)
        return NULL;
    pl = part_table(s, e);
    for (uint32_t p = 0; p < part; p++)
        off += pl[p];
    *len_out = pl[part];
    return s->abase + e->dram_off + off;
}

int kvs_store_put_part(kvs_store_t *s, kvs_put_stream_t *ps, uint32_t part,
                       const void *data, size_t len)
{
    size_t want;
    void *dst = kvs_store_put_part_buf(s, ps, part, &want);

    if (!dst)
        return -EINVAL;
    if (len != want)
        return KVS_EPROTO;
    if (len)
        memcpy(dst, data, len);
    return kvs_store_put_part_done(s, ps, part);
}

int kvs_store_put_part_done(kvs_store_t *s, kvs_put_stream_t *ps,
                            uint32_t part)
{
    (void)s;
    if (!ps->ref || part >= ps->nparts)
        return -EINVAL;
    uint64_t bit = 1ull << (part % 64);
    if (!(ps->done[part / 64] & bit)) {
        ps->done[part / 64] |= bit;
        ps->ndone++;
    }
    return 0;
}

int kvs_store_put_seal(kvs_store_t *s, kvs_put_stream_t *ps)
{
    struct entry *e = ps->ref;
    int status = 0;

    if (!e)
        return -EINVAL;
    if (ps->ndone != ps->nparts)
        return KVS_EINCOMPLETE;
    /* What commit_entries reads of the put: its flags and key. */
    kvs_put_args_t a = {.ns = ps->ns, .key = e->key, .key_len = e->key_len,
                        .flags = ps->flags};
    const kvs_put_args_t *ap = &a;
    uint32_t idx = eidx(s, e);

    seal_bytes(s, e);
    ps->ref = NULL;
    commit_entries(s, &ap, &idx, 1, &status);
    return status;
}

void kvs_store_put_abort(kvs_store_t *s, kvs_put_stream_t *ps)
{
    struct entry *e = ps->ref;

    if (!e)
        return;
    pthread_mutex_lock(&s->lock);
    e->busy = 0;
    kvs_table_free_locked(s, e);
    pthread_mutex_unlock(&s->lock);
    ps->ref = NULL;
}

/* ---------------------------------------------------------------------- */
/* Get */

int kvs_store_get_batch(kvs_store_t *s, const kvs_get_args_t *args, size_t n,
                        kvs_block_info_t *infos_out, int *status_out)
{
    struct rd rds[64];
    size_t nrd = 0;
    int first = 0;

    for (size_t done = 0; done < n;) {
        size_t chunk = KVS_MIN(n - done, KVS_ARRAY_SIZE(rds));
        nrd = 0;

        /* DRAM hits are copied now; disk reads are collected. */
        for (size_t i = done; i < done + chunk; i++) {
            const kvs_get_args_t *a = &args[i];
            kvs_block_info_t info;
            struct entry *e;

            status_out[i] = 0;
            if (!a->key || a->key_len == 0 || a->key_len > KVS_KEY_MAX) {
                status_out[i] = -EINVAL;
                continue;
            }
            pthread_mutex_lock(&s->lock);
            s->st.gets++;
            e = ns_valid_locked(s, a->ns)
                    ? kvs_table_find_locked(s, a->ns, a->key, a->key_len)
                    : NULL;
            if (!e) {
                s->st.misses++;
                pthread_mutex_unlock(&s->lock);
                status_out[i] = KVS_ENOTFOUND;
                continue;
            }
            kvs_table_info(&info, e);
            if (infos_out)
                infos_out[i] = info;
            if (a->cap < e->raw_len ||
                (a->part_lens && a->part_cap < e->nparts)) {
                pthread_mutex_unlock(&s->lock);
                status_out[i] = -ENOBUFS;
                continue;
            }
            if (e->flags & E_DRAM) {
                e->busy++;
                kvs_table_touch_locked(s, e);
                s->st.hits++;
                s->st.dram_hits++;
                pthread_mutex_unlock(&s->lock);
                memcpy(a->buf, s->abase + e->dram_off, e->raw_len);
                if (a->part_lens)
                    memcpy(a->part_lens, part_table(s, e),
                           sizeof(uint32_t) * e->nparts);
                pthread_mutex_lock(&s->lock);
                e->busy--;
                if ((e->flags & E_DEAD) && !e->busy)
                    kvs_table_free_locked(s, e);
                pthread_mutex_unlock(&s->lock);
                continue;
            }
            struct rd *r = &rds[nrd++];
            kvs_read_init(r, e);
            r->a = a;
            r->info = info;
            status_out[i] = 1;
            pthread_mutex_unlock(&s->lock);
        }

        /* Disk reads, up to the number of bounce slots in flight. */
        if (nrd) {
            pthread_mutex_lock(&s->rlock);
            kvs_read_batch_rlocked(s, rds, nrd);
            pthread_mutex_unlock(&s->rlock);
            pthread_mutex_lock(&s->lock);
            for (size_t k = 0; k < nrd; k++) {
                struct rd *r = &rds[k];
                size_t i = (size_t)(r->a - args);
                if (r->status == 0) {
                    struct entry *e = kvs_table_lookup_locked(
                        s, r->ns, r->a->key, r->a->key_len, r->hash);
                    if (e)
                        kvs_table_touch_locked(s, e);
                    s->st.hits++;
                    s->st.nvme_hits++;
                    s->st.bytes_read += r->loc.disk_len;
                    status_out[i] = 0;
                    continue;
                }
                s->st.misses++;
                if (r->status == KVS_ECORRUPT || r->status == -EIO)
                    kvs_read_drop_corrupt_locked(s, r->ns, r->a->key,
                                                 r->a->key_len, &r->loc, NULL);
                status_out[i] = KVS_ENOTFOUND;
            }
            pthread_mutex_unlock(&s->lock);
        }
        done += chunk;
    }
    for (size_t i = 0; i < n; i++)
        if (status_out[i] && !first)
            first = status_out[i];
    return first;
}

int kvs_store_get(kvs_store_t *s, const kvs_get_args_t *a,
                  kvs_block_info_t *info_out)
{
    kvs_block_info_t info;
    int status;

    kvs_store_get_batch(s, a, 1, &info, &status);
    if (status == 0 || status == -ENOBUFS) {
        if (info_out)
            *info_out = info;
    }
    return status;
}

/* ---------------------------------------------------------------------- */
/* Pin, promote */

int kvs_store_pin(kvs_store_t *s, uint32_t ns, const void *key,
                  uint32_t key_len, kvs_view_t *view_out)
{
    struct entry *e;
    int ret;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    e = ns_valid_locked(s, ns) ? kvs_table_find_locked(s, ns, key, key_len)
                               : NULL;
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return KVS_ENOTFOUND;
    }
    ret = kvs_read_promote_locked(s, e, true);
    if (ret == 0 && !(e->flags & E_LINKED))
        ret = KVS_ENOTFOUND;
    if (ret == 0) {
        e->refs++;
        s->st.refs++;
        kvs_table_touch_locked(s, e);
        if (view_out) {
            view_out->data = s->abase + e->dram_off;
            view_out->len = e->raw_len;
            view_out->nparts = e->nparts;
            view_out->part_lens = part_table(s, e);
            view_out->arena_off = e->dram_off;
            view_out->ref = e;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
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
    pthread_mutex_lock(&s->lock);
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
    pthread_mutex_lock(&s->lock);
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
        uint64_t bytes = kvs_dram_bytes_for(e->raw_len, e->nparts);
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

/* ---------------------------------------------------------------------- */
/* Lookups */

int kvs_store_exists(kvs_store_t *s, uint32_t ns, const kvs_key_t *keys,
                     size_t n, uint8_t *present_out)
{
    pthread_mutex_lock(&s->lock);
    bool nsok = ns_valid_locked(s, ns);
    uint64_t now = kvs_clock_real_ms();
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = NULL;
        if (nsok && keys[i].data && keys[i].len >= 1 &&
            keys[i].len <= KVS_KEY_MAX)
            e = kvs_table_lookup_locked(
                s, ns, keys[i].data, keys[i].len,
                key_hash(ns, keys[i].data, keys[i].len));
        present_out[i] = e && !expired(e, now);
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
        hashes[i] = keys[i].data && keys[i].len >= 1 &&
                            keys[i].len <= KVS_KEY_MAX
                        ? key_hash(ns, keys[i].data, keys[i].len) : 0;
    pthread_mutex_lock(&s->lock);
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
        e = kvs_table_lookup_locked(s, ns, keys[m].data, keys[m].len,
                                    m < MATCH_WIN ? hashes[m]
                                        : key_hash(ns, keys[m].data,
                                                   keys[m].len));
        if (!e || expired(e, now))
            break;
        if (tiers_out)
            tiers_out[m] = (e->flags & E_DRAM) ? KVS_TIER_DRAM : KVS_TIER_NVME;
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
     * blocks after it: eviction reaches leaves before their ancestors and
     * never leaves a gap in a chain. A chain matched before (or put in
     * order) already lies in the LRU list in that order, and then moving
     * it to the head in one piece gives the same list. A pinned match may
     * have released the lock, so only then are the entries looked up
     * again. */
    if ((flags & KVS_MATCH_PIN) || m > MATCH_WIN ||
        !kvs_table_touch_run_locked(s, found, m)) {
        for (size_t i = m; i-- > 0;) {
            struct entry *e;
            /* Each touch unlinks a block from between two others that are
             * likely cold: fetch them ahead of time. */
            if (i >= AHEAD && i - AHEAD < MATCH_WIN &&
                !(flags & KVS_MATCH_PIN)) {
                const struct entry *p = found[i - AHEAD];
                if (p->lru_prev != NIL)
                    __builtin_prefetch(&s->ents[p->lru_prev].lru_next, 1);
                if (p->lru_next != NIL)
                    __builtin_prefetch(&s->ents[p->lru_next].lru_prev, 1);
            }
            if (i < MATCH_WIN && !(flags & KVS_MATCH_PIN))
                e = found[i];
            else
                e = kvs_table_lookup_locked(
                    s, ns, keys[i].data, keys[i].len,
                    key_hash(ns, keys[i].data, keys[i].len));
            if (e)
                kvs_table_touch_locked(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    *matched_out = m;
    return 0;
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
        kvs_index_block_delete_if(s->index, ns, key, key_len, uid);
    pthread_mutex_unlock(&s->wlock);
    return 0;
}

int kvs_store_set_retention(kvs_store_t *s, uint32_t ns, const void *key,
                            uint32_t key_len, uint8_t cls, uint64_t ttl_ms)
{
    struct entry *e;
    int ret = 0;
    bool rewrite = false;

    if (!key || key_len == 0 || key_len > KVS_KEY_MAX ||
        cls >= KVS_CLASS_COUNT)
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
    } else {
        if (e->cls == KVS_CLASS_PINNED)
            s->pinned_bytes -= e->raw_len;
        if (cls == KVS_CLASS_PINNED)
            s->pinned_bytes += e->raw_len;
        e->cls = cls;
        e->expiry_ms = ttl_ms ? kvs_clock_real_ms() + ttl_ms : 0;
        kvs_table_ttl_sync(s, e);
        rewrite = e->flags & E_DISK;
    }
    kvs_index_rec_t rec;
    if (rewrite) {
        kvs_writer_rec(e, &e->loc, e->codec, e->stored_len, &rec);
    }
    pthread_mutex_unlock(&s->lock);
    if (rewrite) {
        kvs_index_batch_put(s->batch, &rec);
        ret = kvs_index_commit(s->index, s->batch, s->cfg.sync_index);
        kvs_index_batch_clear(s->batch);
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int kvs_store_scan(kvs_store_t *s, uint32_t ns, uint64_t group,
                   kvs_scan_cb cb, void *arg, uint64_t *count_out)
{
    uint64_t now = kvs_clock_real_ms(), n = 0;

    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->nents; i++) {
        const struct entry *e = &s->ents[i];
        kvs_block_info_t info;
        if (!(e->flags & E_LINKED) || e->ns != ns || expired(e, now) ||
            (group && e->group != group))
            continue;
        kvs_table_info(&info, e);
        n++;
        if (cb(arg, e->key, e->key_len, e->parent, e->parent_len, &info))
            break;
    }
    pthread_mutex_unlock(&s->lock);
    if (count_out)
        *count_out = n;
    return 0;
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
    pthread_mutex_unlock(&s->lock);
}

int kvs_store_verify(kvs_store_t *s, kvs_verify_cb cb, void *arg,
                     uint64_t *checked_out, uint64_t *bad_out)
{
    uint64_t checked = 0, bad = 0;
    uint8_t *tmp;

    if (!s->seg) {
        *checked_out = *bad_out = 0;
        return 0;
    }
    tmp = malloc(s->cfg.max_block_bytes ? s->cfg.max_block_bytes : 1);
    if (!tmp)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nents; i++) {
        struct rd r;
        uint8_t key[KVS_KEY_MAX];
        uint32_t key_len;
        int ret;

        pthread_mutex_lock(&s->lock);
        struct entry *e = &s->ents[i];
        if (!(e->flags & E_LINKED) || !(e->flags & E_DISK)) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        kvs_read_init(&r, e);
        key_len = e->key_len;
        memcpy(key, e->key, key_len);
        pthread_mutex_unlock(&s->lock);

        pthread_mutex_lock(&s->rlock);
        ret = kvs_read_one_rlocked(s, &r, key, key_len, tmp, NULL, 0);
        pthread_mutex_unlock(&s->rlock);
        checked++;
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
                kvs_index_block_delete_if(s->index, r.ns, key, key_len, uid);
            pthread_mutex_unlock(&s->wlock);
        }
    }
    free(tmp);
    *checked_out = checked;
    *bad_out = bad;
    return 0;
}

void *kvs_store_arena(kvs_store_t *s, size_t *len_out)
{
    *len_out = kvs_arena_size(s->arena);
    return kvs_arena_base(s->arena);
}
