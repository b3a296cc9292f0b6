/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer: the write pipeline that puts DRAM blocks on disk (write-
 * behind, flushes, durable puts), their index records, and region reclaim.
 *
 *   QUEUED --append--> APPENDED --buffer written--> DONE --publish--> gone
 *
 * (the pipeline is described above wbuf_done). kvs_writer_open sets up the
 * NVMe tier: the segment, the regions, the pipeline's buffers and codecs.
 *
 * Invariants: a job's entry is busy until the job is published; a
 * region's pending counts its appended, unpublished jobs; a reclaimed
 * region is freed only after the blocks moved out of it are durable
 * elsewhere, so a crash at any point loses no durable block.
 *
 * Callers: the background thread (write-behind, flushes), durable puts and
 * kvs_store_set_retention (kvs_writer_rec). Every function needs wlock
 * and takes `lock` (and, reclaiming, rlock through a promote) for the
 * metadata it changes.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The index record of entry e with its disk copy at loc. */
void kvs_writer_rec(const kvs_store_t *s, const struct entry *e,
                    const kvs_seg_loc_t *loc, uint8_t codec,
                    uint64_t stored_len, uint64_t data_xxh,
                    kvs_index_rec_t *rec)
{
    *rec = (kvs_index_rec_t){
        .ns = e->ns,
        .key_len = e->key_len,
        .parent_len = e->parent_len,
        .codec = codec,
        .elem_size = e->elem_size,
        .cls = e->cls,
        .nparts = e->nparts,
        .region = loc->region,
        .disk_len = loc->disk_len,
        .disk_off = loc->off,
        .gen = loc->gen,
        .raw_len = e->raw_len,
        .stored_len = stored_len,
        .data_xxh = data_xxh,
        .expiry_ms = ent_expiry(s, e),
        .group = ent_group(s, e),
        .uid = e->uid,
    };
    memcpy(rec->key, ent_key(s, e), e->key_len);
    if (e->parent_len)
        memcpy(rec->parent, ent_parent(s, e), e->parent_len);
}

/*
 * The write pipeline. Blocks to write become jobs in s->pend (under wlock):
 * a job is appended into one of the segment's write buffers (APPENDED),
 * becomes DONE when that buffer's write completes (wbuf_done, called from
 * inside the segment), and is published by kvs_writer_publish_wlocked(): its
 * index record is committed, the entry gets its disk location, and a
 * degraded block leaves DRAM. Nothing waits for a write unless it has to,
 * so the disk stays busy while the next blocks are copied.
 *
 * Job kinds: DEGRADE drops the DRAM copy once on disk; KEEP (a flush, or a
 * block moved out of a reclaimed region) keeps it; PUT is a durable put
 * whose caller holds the entry busy and publishes it itself.
 */
static void wbuf_done(void *arg, uint64_t buf, int res)
{
    kvs_store_t *s = arg;

    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        if (job->state != JOB_APPENDED || job->buf != buf)
            continue;
        job->state = JOB_DONE;
        if (res && !job->status)
            job->status = res;
        s->ndone++;
    }
}

/* Encodes the entry's block and appends it, opening (and reclaiming) a
 * region when the current one is full. */
static void append_one_wlocked(kvs_store_t *s, struct wjob *job)
{
    struct entry *e = &s->ents[job->e];
    const uint8_t *src = ent_data(s, e);
    kvs_seg_block_t blk = {
        .ns = e->ns,
        .key_len = e->key_len,
        .key = ent_key(s, e),
        .key_hash = e->hash,
        .elem_size = e->elem_size,
        .nparts = e->nparts,
        .part_lens = part_table(e),
        .raw_len = e->raw_len,
        /* In a private arena, here rather than at put time: on the
         * writer's thread, and only for blocks that reach the disk (a
         * sealed block never changes there). In a shared arena the one
         * settled at seal (kvs_put_seal). */
        .data_xxh =
            s->cfg.dram_shared ? e->dram->xxh : XXH3_64bits(src, e->raw_len),
    };
    kvs_iov_t payload = {src, e->raw_len};
    size_t out_len = 0;
    uint8_t codec = KVS_CODEC_RAW;

    /* The codec is slower than the disk here: while puts wait for DRAM,
     * blocks go out raw so that compression never limits the drain. */
    bool backlog = __atomic_load_n(&s->space_waiters, __ATOMIC_RELAXED) > 0;
    if (backlog && s->cfg.compress_level > 0) {
        pthread_mutex_lock(&s->lock);
        s->st.compress_skipped++;
        pthread_mutex_unlock(&s->lock);
    }
    /* A compressed block is copied into a write buffer, so it must fit
     * one (8 MiB): else it goes out raw from DRAM. */
    if (s->cfg.compress_level > 0 && e->raw_len > 0 && !backlog &&
        kvs_codec_encode(s->wcodec, src, e->raw_len, e->elem_size,
                         s->cfg.compress_level, s->cfg.compress_min_saving_pct,
                         s->wscratch, s->wscratch_len, &codec, &out_len) == 0 &&
        codec != KVS_CODEC_RAW &&
        kvs_segment_disk_len(e->key_len, e->nparts, out_len) <=
            kvs_segment_buf_bytes(s->seg))
        payload = (kvs_iov_t){s->wscratch, out_len};
    else
        codec = KVS_CODEC_RAW;
    blk.codec = codec;
    blk.stored_len = payload.len;
    job->codec = codec;
    job->stored_len = payload.len;
    job->data_xxh = blk.data_xxh;
    /* Raw blocks are written from their bytes in DRAM, behind a header
     * the segment builds from blk (private memory, never the arena);
     * compressed ones are copied into the segment's write buffers. */
    const uint8_t *image = codec == KVS_CODEC_RAW ? src : NULL;
    uint64_t tag = image ? ++s->tag_seq : 0;
    for (;;) {
        if (image)
            job->status =
                kvs_segment_append_image(s->seg, &blk, image, tag, &job->loc);
        else
            job->status =
                kvs_segment_append(s->seg, &blk, &payload, 1, &job->loc);
        if (job->status != -ENOSPC)
            break;
        job->status = kvs_region_open_next_wlocked(s);
        if (job->status)
            break;
    }
    if (job->status) {
        job->state = JOB_DONE;
        s->ndone++;
    } else {
        job->state = JOB_APPENDED;
        job->buf = image ? tag : kvs_segment_last_buf(s->seg);
        pthread_mutex_lock(&s->lock);
        s->regions[job->loc.region].pending++;
        job->state_appended = true;
        s->st.logical_bytes_degraded += e->raw_len;
        s->st.stored_bytes_degraded += payload.len;
        pthread_mutex_unlock(&s->lock);
    }
}

/* Queues the write of entry e (busy, in DRAM) without making room. */
static void queue_one_wlocked(kvs_store_t *s, uint32_t e, uint8_t kind,
                              int *result)
{
    if (s->npend == s->njobs_max)
        kvs_writer_drain_wlocked(s, false);
    struct wjob *job = &s->pend[s->npend++];
    *job = (struct wjob){.e = e, .kind = kind, .result = result};
    append_one_wlocked(s, job);
}

/*
 * Reads the blocks of a victim region that are worth keeping (pinned, and
 * user blocks before their TTL) back into DRAM, from where they are
 * written again. Only DRAM that is free now is used: the writer cannot
 * wait for write-behind, which needs the writer. What does not fit stays
 * where it is, and keeps the region from being freed (pinned) or is
 * evicted (user).
 */
static void region_relocate_locked(kvs_store_t *s, uint32_t r)
{
    uint64_t now = kvs_clock_real_ms();
    uint32_t n = 0;

    for (uint32_t i = s->regions[r].head; i != NIL && n < s->njobs_max;
         i = s->ents[i].rg_next) {
        struct entry *e = &s->ents[i];
        if (kvs_region_must_keep(s, e, now)) {
            e->busy++;
            s->reloc[n++] = i;
        }
    }
    for (uint32_t k = 0; k < n; k++)
        kvs_read_promote_locked(s, &s->ents[s->reloc[k]], false);
    for (uint32_t k = 0; k < n; k++) {
        struct entry *e = &s->ents[s->reloc[k]];
        e->busy--;
        if ((e->flags & E_DEAD) && !e->busy)
            kvs_table_free_locked(s, e);
    }
}

/*
 * Keeps REGION_RESERVE regions free by reclaiming the oldest region whose
 * reclaim pays: blocks on disk only are evicted (records deleted in the
 * writer's batch), blocks also in DRAM lose their disk copy, and the ones
 * that must keep one (durable or pinned, and the pinned or user blocks
 * read back by region_relocate_locked) are written again into the open
 * region first. The victim is freed only after that write, its data and
 * index records, are synced: until then its old copies stay valid, so a
 * crash at any point loses no durable block.
 *
 * Called only between appends (never from inside one), with no job
 * pointer held, since it drains the pipeline.
 */
static void ensure_space_wlocked(kvs_store_t *s, bool force)
{
    uint32_t v, n = 0;

    pthread_mutex_lock(&s->lock);
    if ((!force && s->nfree_regions >= REGION_RESERVE) ||
        kvs_clock_mono_ns() < s->reclaim_retry_ns) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if ((v = kvs_region_victim_locked(s)) == NIL) {
        /* Choosing a victim walks every block on disk: when none pays,
         * do not walk them again at every append. */
        s->reclaim_retry_ns = kvs_clock_mono_ns() + 100000000ull;
        pthread_mutex_unlock(&s->lock);
        return;
    }
    kvs_region_set_state(s, v, RG_RECLAIMING);
    region_relocate_locked(s, v);
    for (uint32_t i = s->regions[v].head, next; i != NIL; i = next) {
        struct entry *e = &s->ents[i];
        next = e->rg_next;
        if (e->busy)
            continue; /* stays; the region is not freed this time */
        if (e->flags & E_DRAM) {
            if ((e->flags & E_DURABLE) || e->cls == KVS_CLASS_PINNED) {
                /* Moved: the old copy is dropped when the new one is
                 * published (finish_job_locked). */
                e->busy++;
                s->requeue[n++] = i;
            } else {
                ev_tier_locked(s, e, KVS_STORE_EV_REMOVED, KVS_TIER_NVME);
                kvs_region_remove(s, e);
                e->flags &= ~E_DISK;
                s->st.nvme_blocks--;
            }
            continue;
        }
        if (e->cls == KVS_CLASS_PINNED)
            continue; /* did not fit in DRAM: stays */
        kvs_index_batch_delete(s->batch, e->uid);
        kvs_table_remove_locked(s, e);
        s->st.evicted++;
    }
    pthread_mutex_unlock(&s->lock);

    for (uint32_t k = 0; k < n; k++)
        queue_one_wlocked(s, s->requeue[k], JOB_KEEP, NULL);
    kvs_writer_drain_wlocked(s, true);

    pthread_mutex_lock(&s->lock);
    struct region *rg = &s->regions[v];
    if (rg->nblocks == 0 && rg->pending == 0) {
        kvs_region_set_state(s, v, RG_FREE);
        s->st.regions_reclaimed++;
    } else {
        /* Something had to stay (a pinned block with no DRAM to move
         * through, a failed write): do not retry at every append. */
        kvs_region_set_state(s, v, RG_SEALED);
        s->reclaim_retry_ns = kvs_clock_mono_ns() + 100000000ull;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Queues the write of entry e (busy, in DRAM), making room first. */
void kvs_writer_queue_wlocked(kvs_store_t *s, uint32_t e, uint8_t kind,
                              int *result)
{
    ensure_space_wlocked(s, false);
    queue_one_wlocked(s, e, kind, result);
    struct wjob *job = &s->pend[s->npend - 1];
    if (job->status != KVS_EFULL)
        return;
    /* No region was free (the reserve was used up, or the file system
     * filled): take the job back, reclaim now, and try once more. */
    s->npend--;
    s->ndone--;
    s->reclaim_retry_ns = 0;
    ensure_space_wlocked(s, true);
    queue_one_wlocked(s, e, kind, result);
}

/* Applies a finished job to its entry. Dead entries that reached the disk
 * are collected so that their records can be deleted. */
static void finish_job_locked(kvs_store_t *s, struct wjob *job)
{
    struct entry *e = &s->ents[job->e];

    if (job->state_appended) {
        s->regions[job->loc.region].pending--;
        kvs_region_maybe_free_locked(s, job->loc.region);
    }
    if (job->status == 0) {
        bool moved = e->flags & E_DISK; /* a relocation: no event */

        if (moved) {
            kvs_region_remove(s, e);
            s->st.nvme_blocks--;
        }
        e->codec = job->codec;
        e->stored_len = job->stored_len;
        ent_set_loc(s, e, &job->loc);
        e->flags |= E_DISK;
        kvs_region_add(s, e);
        s->st.nvme_blocks++;
        if (!moved)
            ev_tier_locked(s, e, KVS_STORE_EV_STORED, KVS_TIER_NVME);
        s->st.bytes_written += job->loc.disk_len;
    }
    if (job->kind == JOB_PUT) {
        *job->result = job->status;
        return;
    }
    /* A flush that could not write a block ends with that error instead
     * of picking the block again forever. */
    if (job->kind == JOB_KEEP && job->status && !s->flush_job_err)
        s->flush_job_err = job->status;
    kvs_assert(e->busy > 0);
    e->busy--;
    if (job->kind == JOB_DEGRADE)
        s->degrade_pending -= kvs_dram_bytes_of(e);
    if (e->flags & E_DEAD) {
        if (e->busy == 0)
            s->dead[s->ndead++] = job->e;
        return;
    }
    if (job->kind == JOB_DEGRADE && job->status == 0) {
        s->st.degraded++;
        if ((e->flags & E_DRAM) && !e->refs && !e->busy &&
            e->cls != KVS_CLASS_PINNED)
            kvs_dram_drop_locked(s, e);
    }
}

/* Commits the records of finished jobs, publishes them and removes them
 * from the pending list. */
int kvs_writer_publish_wlocked(kvs_store_t *s, bool sync)
{
    int ret;
    uint32_t k = 0;

    if (s->ndone == 0)
        return 0;
    /* lock, for the TTLs and groups (s->xrecs moves as others change). */
    pthread_mutex_lock(&s->lock);
    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        struct entry *e = &s->ents[job->e];
        if (job->state != JOB_DONE || job->status)
            continue;
        kvs_index_rec_t rec;
        kvs_writer_rec(s, e, &job->loc, job->codec, job->stored_len,
                       job->data_xxh, &rec);
        kvs_index_batch_put(s->batch, &rec);
    }
    pthread_mutex_unlock(&s->lock);
    ret = kvs_index_commit(s->index, s->batch, sync || s->cfg.sync_index);
    kvs_index_batch_clear(s->batch);

    pthread_mutex_lock(&s->lock);
    for (uint32_t j = 0; j < s->npend; j++) {
        struct wjob *job = &s->pend[j];
        if (job->state != JOB_DONE) {
            s->pend[k++] = *job;
            continue;
        }
        if (ret && !job->status)
            job->status = ret;
        finish_job_locked(s, job);
    }
    s->npend = k;
    s->ndone = 0;
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->lock);

    for (uint32_t i = 0; i < s->ndead; i++) {
        struct entry *e = &s->ents[s->dead[i]];
        if (e->flags & E_DISK)
            kvs_index_block_delete(s->index, e->uid);
        pthread_mutex_lock(&s->lock);
        if ((e->flags & E_DEAD) && e->busy == 0)
            kvs_table_free_locked(s, e);
        pthread_mutex_unlock(&s->lock);
    }
    s->ndead = 0;
    return ret;
}

/* Writes out everything queued, waits for it, optionally syncs data and
 * index, and publishes. Returns the first error. */
int kvs_writer_drain_wlocked(kvs_store_t *s, bool sync)
{
    int ret;

    if (s->test_write_delay_ms) { /* the test hook (store_int.h) */
        struct timespec ts = {.tv_sec = s->test_write_delay_ms / 1000,
                              .tv_nsec = (long)(s->test_write_delay_ms % 1000) *
                                         1000000};

        nanosleep(&ts, NULL);
    }
    ret = kvs_segment_flush(s->seg);

    if (ret == 0 && sync)
        ret = kvs_segment_sync(s->seg);
    if (ret) {
        /* The data of every block not yet published is in doubt. */
        for (uint32_t j = 0; j < s->npend; j++) {
            if (s->pend[j].state == JOB_APPENDED)
                s->ndone++;
            s->pend[j].state = JOB_DONE;
            if (!s->pend[j].status)
                s->pend[j].status = ret;
        }
    }
    int pret = kvs_writer_publish_wlocked(s, sync);
    return ret ? ret : pret;
}

int kvs_writer_open(kvs_store_t *s)
{
    char path[PATH_MAX];
    kvs_segment_config_t sc;
    int ret;

    snprintf(path, sizeof(path), "%s/data.kvs", s->dir);
    sc = (kvs_segment_config_t){
        .path = path,
        .file_bytes = s->cfg.nvme_bytes,
        .region_bytes = s->cfg.region_bytes,
        .max_block_bytes = s->cfg.max_block_bytes,
        .io_depth = s->cfg.io_depth,
        .read_slots = s->cfg.io_depth,
        .write_buf_bytes = 8u << 20,
    };
    /* Bounce slots for reads: io_depth of them, but not more than 256 MiB
     * of memory. */
    uint32_t per = kvs_segment_disk_len(KVS_KEY_MAX, KVS_PARTS_MAX,
                                        s->cfg.max_block_bytes);
    sc.read_slots =
        (uint32_t)KVS_MAX(1u, KVS_MIN(s->cfg.io_depth, (256u << 20) / per));
    ret = kvs_segment_open(&sc, &s->seg);
    if (ret)
        return ret;
    kvs_segment_set_write_cb(s->seg, wbuf_done, s);
    s->tag_seq = 4;
    s->nregions = kvs_segment_nregions(s->seg);
    s->regions = calloc(s->nregions, sizeof(*s->regions));
    if (!s->regions)
        return -ENOMEM;
    for (uint32_t r = 0; r < s->nregions; r++)
        s->regions[r].head = NIL;
    s->nfree_regions = s->nregions;
    for (uint32_t r = 0; r < s->nregions; r++)
        s->regions[r].reserved = kvs_segment_preallocated(s->seg);
    s->wscratch_len = kvs_codec_bound(s->cfg.max_block_bytes, 4);
    s->wscratch = malloc(s->wscratch_len);
    /* Jobs in flight: every block that fits in the write buffers, one
     * batch being queued, and a region's worth moved by a reclaim. */
    s->njobs_max = 4 * (8u << 20) / KVS_SEG_ALIGN + DEGRADE_BATCH +
                   s->cfg.region_bytes / KVS_SEG_ALIGN;
    s->pend = calloc(s->njobs_max, sizeof(*s->pend));
    s->requeue = calloc(s->njobs_max, sizeof(*s->requeue));
    s->dead = calloc(s->njobs_max, sizeof(*s->dead));
    s->reloc = calloc(s->njobs_max, sizeof(*s->reloc));
    if (!s->wscratch || !s->pend || !s->requeue || !s->dead || !s->reloc)
        return -ENOMEM;
    ret = kvs_codec_create(&s->wcodec);
    if (ret == 0)
        ret = kvs_codec_create(&s->rcodec);
    if (ret == 0)
        ret = kvs_codec_reserve(s->wcodec, s->cfg.max_block_bytes);
    if (ret == 0)
        ret = kvs_codec_reserve(s->rcodec, s->cfg.max_block_bytes);
    if (ret == 0)
        ret = kvs_index_batch_create(&s->batch);
    return ret;
}

/* Frees what kvs_writer_open made (NULL members are skipped). */
void kvs_writer_close(kvs_store_t *s)
{
    kvs_segment_close(s->seg);
    kvs_index_batch_destroy(s->batch);
    kvs_codec_destroy(s->wcodec);
    kvs_codec_destroy(s->rcodec);
    free(s->pend);
    free(s->requeue);
    free(s->dead);
    free(s->reloc);
    free(s->wscratch);
    free(s->regions);
}
