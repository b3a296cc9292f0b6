/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The background thread: writes DRAM behind to disk between the
 * watermarks, serves flushes (kvs_store_flush asks by bumping flush_gen
 * and waits on space_cv for flush_done), and expires TTLs.
 *
 * Invariants: while the thread runs, it is the only one that degrades
 * DRAM or sweeps TTLs; it never sleeps with writes pending, and waits on
 * work_cv (signalled by a put over the high watermark, an unpin, a flush
 * or close) for at most a second. After a write error it backs off for a
 * second, during which puts waiting for space time out with KVS_EFULL.
 *
 * Started and stopped by kvs_store_open and kvs_store_close. It takes
 * `lock` to choose work, wlock (then `lock`) to write and to sweep, as the
 * lock layers in store_int.h allow.
 */
#include "kvstore/store_int.h"
#include "common/clock.h"
#include "common/prio.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/*
 * Removes blocks past their TTL that nobody uses. Visits up to SWEEP_WINDOW
 * of the side records (table.c: the blocks with a TTL or a group) from
 * where the last call stopped, SWEEP_SLICE under the store's lock at a
 * time so that a MATCH or GET arriving meanwhile does not wait for the
 * window, so successive calls go round them. Expired blocks are invisible
 * from the moment they expire; this only gives their space back.
 */
#define SWEEP_WINDOW 16384u
#define SWEEP_SLICE 256u
static void expire_sweep(kvs_store_t *s)
{
    uint64_t now = kvs_clock_real_ms();
    uint64_t gone[64]; /* uids of the records to delete */
    uint32_t budget = SWEEP_WINDOW;

    while (budget > 0) {
        uint32_t ngone = 0, k = 0;

        pthread_mutex_lock(&s->wlock);
        pthread_mutex_lock(&s->lock);
        if (budget > s->nxrecs)
            budget = s->nxrecs;
        for (; k < SWEEP_SLICE && k < budget && ngone < KVS_ARRAY_SIZE(gone);
             k++) {
            if (s->xsweep >= s->nxrecs)
                s->xsweep = 0;
            uint32_t x = s->xsweep;
            struct entry *e = &s->ents[s->xrecs[x].e];

            if (!(e->flags & E_LINKED) || !expired(s, e, now) || e->refs ||
                e->busy) {
                s->xsweep++;
                continue;
            }
            if (e->flags & E_DISK)
                gone[ngone++] = e->uid;
            /* Freed, so its record goes and the last takes slot x, which
             * is visited next. */
            kvs_table_remove_locked(s, e);
            s->st.expired++;
        }
        budget -= k;
        pthread_mutex_unlock(&s->lock);
        for (uint32_t i = 0; i < ngone; i++)
            kvs_index_block_delete(s->index, gone[i]);
        pthread_mutex_unlock(&s->wlock);
        if (k == 0)
            break;
    }
}

static void bg_wait_locked(kvs_store_t *s, long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->work_cv, &s->lock, &ts);
}

/*
 * The background thread: writes DRAM behind to disk between the
 * watermarks, serves flushes, and expires TTLs once a second. Writes are
 * queued without waiting; the thread only waits for the disk when DRAM
 * cannot drain otherwise, and it never sleeps with writes pending.
 */
static void *background_main(void *arg)
{
    kvs_store_t *s = arg;
    uint32_t picked[DEGRADE_BATCH];
    uint64_t last_sweep = kvs_clock_mono_ns();
    int err_backoff = 0;

    /* Write-behind and its zstd run behind the daemon's serving thread
     * for the CPU (common/prio.h). */
    kvs_prio_lower_self(KVS_PRIO_IO);
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        /* TTLs are swept at most every 100 ms while the thread is busy,
         * and once a second when idle (its longest wait). */
        if (kvs_clock_mono_ns() - last_sweep > 100000000ull) {
            pthread_mutex_unlock(&s->lock);
            expire_sweep(s);
            last_sweep = kvs_clock_mono_ns();
            pthread_mutex_lock(&s->lock);
            continue;
        }
        bool flush = s->flush_done != s->flush_gen;
        uint32_t want = s->flush_gen;
        bool degrade = kvs_dram_need_degrade_locked(s) && !err_backoff;
        uint32_t n = 0;

        if (flush || degrade)
            n = kvs_evict_pick_degrade_locked(s, picked, DEGRADE_BATCH, flush);
        pthread_mutex_unlock(&s->lock);

        int ret = 0;
        if (s->seg) {
            pthread_mutex_lock(&s->wlock);
            for (uint32_t k = 0; k < n; k++) {
                kvs_writer_queue_wlocked(s, picked[k],
                                         flush ? JOB_KEEP : JOB_DEGRADE, NULL);
                if (s->ndone)
                    kvs_writer_publish_wlocked(s, false);
            }
            if (flush && n == 0) {
                /* Every DRAM-only block is queued: write out, sync data
                 * and index once, and the flush is done. */
                ret = kvs_writer_drain_wlocked(s, true);
            } else if (n == 0 && s->npend) {
                /* Nothing more to queue: push out the partial buffer and
                 * wait for the disk, which is what frees DRAM now. */
                kvs_segment_submit(s->seg);
                kvs_segment_poll(s->seg, true);
                ret = kvs_writer_publish_wlocked(s, false);
            } else {
                kvs_segment_poll(s->seg, false);
                ret = kvs_writer_publish_wlocked(s, false);
            }
            pthread_mutex_unlock(&s->wlock);
        }

        pthread_mutex_lock(&s->lock);
        if (flush && !ret && s->flush_job_err)
            ret = s->flush_job_err;
        if (flush && !ret && n == 0) {
            /* Whatever this flush wrote but a reclaim took off the disk
             * again did not fit: the disk tier is smaller than DRAM. */
            for (uint32_t i = 0; i < s->nents_used && !ret; i++) {
                const struct entry *e = &s->ents[i];
                if ((e->flags & (E_LINKED | E_DRAM | E_DISK)) ==
                        (E_LINKED | E_DRAM) &&
                    e->dram->flush_gen == want)
                    ret = KVS_EFULL;
            }
        }
        if (flush)
            s->flush_job_err = 0;
        if (flush && (n == 0 || ret)) {
            s->flush_status = ret;
            s->flush_done = want;
            pthread_cond_broadcast(&s->space_cv);
        }
        if (ret && !flush) {
            /* A write error (disk full, EIO): back off a second; puts
             * waiting for space time out with KVS_EFULL meanwhile. */
            err_backoff = 1;
            s->st.io_errors++;
            pthread_cond_broadcast(&s->space_cv);
            bg_wait_locked(s, 1000);
            continue;
        }
        err_backoff = 0;
        if (n || flush || s->npend)
            continue;
        if (degrade) {
            /* Over the watermark but nothing can move (pinned or
             * referenced): let waiters see it, retry shortly. */
            pthread_cond_broadcast(&s->space_cv);
            bg_wait_locked(s, 50);
            continue;
        }
        bg_wait_locked(s, 1000);
    }
    pthread_mutex_unlock(&s->lock);
    if (s->seg) {
        pthread_mutex_lock(&s->wlock);
        kvs_writer_drain_wlocked(s, false);
        pthread_mutex_unlock(&s->wlock);
    }
    return NULL;
}

int kvs_background_start(kvs_store_t *s)
{
    int ret = pthread_create(&s->bg, NULL, background_main, s);

    if (ret)
        return -ret;
    s->bg_started = true;
    return 0;
}

/* Stops the thread, which first writes out what it queued. */
void kvs_background_stop(kvs_store_t *s)
{
    if (!s->bg_started)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->bg, NULL);
    s->bg_started = false;
}
