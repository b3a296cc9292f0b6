/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming puts: a block whose parts arrive one at a time (the daemon's
 * streaming put, a prefill engine's layers). kvs_store_put_begin reserves
 * the entry and its DRAM as a put does; each part is then written in
 * place (kvs_store_put_part, or into kvs_store_put_part_buf and marked
 * with kvs_store_put_part_done); kvs_store_put_seal commits the block once
 * every part is done, and kvs_store_put_abort frees it.
 *
 * Until sealed the entry is busy and invisible, so readers never see a
 * partial block. Filling parts takes no lock (the stream's owner is the
 * only writer of its extent); begin, seal and abort take `lock` as put.c
 * does.
 */
#include "kvstore/store_int.h"

#include <errno.h>
#include <string.h>

int kvs_store_put_begin(kvs_store_t *s, const kvs_put_args_t *a,
                        kvs_put_stream_t *ps)
{
    uint64_t total;
    struct entry *e = NULL;
    int ret = kvs_put_check(s, a, false, &total);

    if (ret)
        return ret;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    ret = kvs_put_reserve_locked(s, a, total, &e);
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
    pl = part_table(e);
    for (uint32_t p = 0; p < part; p++)
        off += pl[p];
    *len_out = pl[part];
    return ent_data(s, e) + off;
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

int kvs_store_put_part_done(kvs_store_t *s, kvs_put_stream_t *ps, uint32_t part)
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

/* Seals with the checksum known (known) or computed here. */
static int put_seal(kvs_store_t *s, kvs_put_stream_t *ps, const uint64_t *known)
{
    struct entry *e = ps->ref;
    int status = 0;

    if (!e)
        return -EINVAL;
    if (ps->ndone != ps->nparts)
        return KVS_EINCOMPLETE;
    /* What commit_entries reads of the put: its flags and key. */
    kvs_put_args_t a = {.ns = ps->ns,
                        .key = ent_key(s, e),
                        .key_len = e->key_len,
                        .flags = ps->flags};
    const kvs_put_args_t *ap = &a;
    uint32_t idx = eidx(s, e);

    kvs_put_seal(s, e, known);
    ps->has_xxh = s->cfg.dram_shared;
    ps->data_xxh = e->dram->xxh;
    ps->ref = NULL;
    kvs_put_commit(s, &ap, &idx, 1, &status);
    return status;
}

int kvs_store_put_seal(kvs_store_t *s, kvs_put_stream_t *ps)
{
    return put_seal(s, ps, NULL);
}

int kvs_store_put_seal_sum(kvs_store_t *s, kvs_put_stream_t *ps,
                           const uint32_t *part_lens, const uint64_t *sum)
{
    struct entry *e = ps->ref;

    if (!e)
        return -EINVAL;
    memcpy(part_table(e), part_lens, 4ull * e->nparts);
    for (uint32_t p = 0; p < ps->nparts; p++)
        (void)kvs_store_put_part_done(s, ps, p);
    return put_seal(s, ps, sum);
}

int kvs_store_put_seal_parts(kvs_store_t *s, kvs_put_stream_t *ps,
                             const uint32_t *part_lens)
{
    return kvs_store_put_seal_sum(s, ps, part_lens, NULL);
}

void kvs_store_put_abort(kvs_store_t *s, kvs_put_stream_t *ps)
{
    struct entry *e = ps->ref;

    if (!e)
        return;
    kvs_lockstat_lock(&s->lock, &s->lock_stat);
    e->busy = 0;
    kvs_table_free_locked(s, e);
    pthread_mutex_unlock(&s->lock);
    ps->ref = NULL;
}
