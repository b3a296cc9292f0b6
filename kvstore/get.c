/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Gets: copies blocks out to the caller's buffers. DRAM hits are copied
 * with `lock` released while the entry is busy; disk hits are collected
 * and read in one batch (read.c), then touched. A block whose disk copy
 * fails its check is dropped and is a miss, never wrong data.
 *
 * Takes `lock` per key and rlock for the batch of disk reads.
 */
#include "kvstore/store_int.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>

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
            kvs_table_info(s, &info, e);
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
                memcpy(a->buf, ent_data(s, e), e->raw_len);
                if (a->part_lens)
                    memcpy(a->part_lens, part_table(e),
                           sizeof(uint32_t) * e->nparts);
                pthread_mutex_lock(&s->lock);
                e->busy--;
                if ((e->flags & E_DEAD) && !e->busy)
                    kvs_table_free_locked(s, e);
                pthread_mutex_unlock(&s->lock);
                continue;
            }
            struct rd *r = &rds[nrd++];
            kvs_read_init(s, r, e);
            r->a = a;
            r->info = info;
            status_out[i] = 1;
            pthread_mutex_unlock(&s->lock);
        }

        /* Disk reads, up to the number of bounce slots in flight. */
        if (nrd) {
            kvs_lockstat_lock(&s->rlock, &s->rlock_stat);
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
                if (r->status < 0 && r->status > KVS_EBASE)
                    s->st.io_errors++; /* a negative errno: the read */
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
