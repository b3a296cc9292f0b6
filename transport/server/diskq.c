/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's I/O threads and the queues between them and the serving
 * thread (see diskq.h for the contract).
 *
 * Why threads and not io_uring completions on the serving loop: a disk
 * read in the engine is more than a read. It takes DRAM for the block
 * (possibly waiting for the write-behind to make room), reads through the
 * segment's bounce slots under the read lock, checks the header and the
 * checksum, decodes zstd, and publishes the block under the store's lock.
 * Driving that from the serving loop would turn kvstore/read.c into a state
 * machine and still leave the decode on the serving thread. An I/O thread
 * calls the engine as it is, under its documented locks, and reports back
 * through a list and an eventfd, which the serving loop polls beside UCX's
 * event fd.
 *
 * Two lists go each way: `todo` (ordinary jobs) and `slow_todo` (VERIFY,
 * served by a thread of its own so a background check never delays a GET),
 * and `fin`, jobs finished and waiting for done(). One mutex guards all
 * three and is held for a list operation only; the I/O threads sleep on
 * `cv` and the slow one on `slow_cv` when there is nothing to do (the
 * serving thread never waits on either). A submit wakes one thread of the
 * right kind: waking them all cost the serving thread a futex wake per
 * sleeping thread per job, and each woken thread a trip through the
 * scheduler that the serving thread then waited behind on a busy core.
 */
#include "transport/server/diskq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/prio.h"

#define DISKQ_MAX_THREADS 16

struct kvs_diskq {
    pthread_mutex_t mu;     /* guards the lists and stop */
    pthread_cond_t cv;      /* I/O threads wait for work */
    pthread_cond_t slow_cv; /* the slow thread waits for work */
    kvs_djob_t *todo, **todo_tail;
    kvs_djob_t *slow_todo, **slow_tail;
    kvs_djob_t *fin, **fin_tail;
    bool stop;
    atomic_int stopping;        /* the same, for slow run()s to poll */
    _Atomic uint64_t pending;   /* submitted, done() not yet called */
    atomic_uint client_pending; /* the same, jobs that are not slow */
    atomic_uint nfin;           /* jobs on fin: lets poll skip the
                                 * eventfd read and the mutex */
    int efd;
    unsigned nthreads; /* threads started, the slow one last */
    pthread_t threads[DISKQ_MAX_THREADS + 1];
};

typedef struct worker_arg {
    kvs_diskq_t *q;
    bool slow;
} worker_arg_t;

static kvs_djob_t *pop(kvs_djob_t **head, kvs_djob_t ***tail)
{
    kvs_djob_t *j = *head;

    if (j) {
        *head = j->next;
        if (!*head)
            *tail = head;
        j->next = NULL;
    }
    return j;
}

static void push(kvs_djob_t ***tail, kvs_djob_t *j)
{
    j->next = NULL;
    **tail = j;
    *tail = &j->next;
}

static void *worker(void *arg)
{
    worker_arg_t wa = *(worker_arg_t *)arg;
    kvs_diskq_t *q = wa.q;

    free(arg);
    /* Behind the serving thread for the CPU (common/prio.h); VERIFY,
     * which no client waits on, behind everything. */
    kvs_prio_lower_self(wa.slow ? KVS_PRIO_BACKGROUND : KVS_PRIO_IO);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        kvs_djob_t *j = wa.slow ? pop(&q->slow_todo, &q->slow_tail)
                                : pop(&q->todo, &q->todo_tail);
        uint64_t one = 1;

        if (!j) {
            if (q->stop)
                break;
            pthread_cond_wait(wa.slow ? &q->slow_cv : &q->cv, &q->mu);
            continue;
        }
        pthread_mutex_unlock(&q->mu);
        j->run(j);
        pthread_mutex_lock(&q->mu);
        push(&q->fin_tail, j);
        atomic_fetch_add_explicit(&q->nfin, 1, memory_order_release);
        /* A full eventfd counter cannot happen (one write per job). */
        if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            kvs_warn("diskq: eventfd write: %m");
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static int start_thread(kvs_diskq_t *q, bool slow)
{
    worker_arg_t *a = malloc(sizeof(*a));
    int ret;

    if (!a)
        return -ENOMEM;
    *a = (worker_arg_t){.q = q, .slow = slow};
    ret = pthread_create(&q->threads[q->nthreads], NULL, worker, a);
    if (ret) {
        free(a);
        return -ret;
    }
    q->nthreads++;
    return 0;
}

int kvs_diskq_create(unsigned nthreads, kvs_diskq_t **out)
{
    kvs_diskq_t *q;
    int ret;

    if (nthreads < 1 || nthreads > DISKQ_MAX_THREADS)
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    pthread_cond_init(&q->slow_cv, NULL);
    q->todo_tail = &q->todo;
    q->slow_tail = &q->slow_todo;
    q->fin_tail = &q->fin;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        ret = -errno;
        goto err_free;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        ret = start_thread(q, false);
        if (ret)
            goto err_stop;
    }
    ret = start_thread(q, true);
    if (ret)
        goto err_stop;
    *out = q;
    return 0;

err_stop:
    kvs_diskq_destroy(q);
    return ret;
err_free:
    pthread_cond_destroy(&q->slow_cv);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return ret;
}

int kvs_diskq_fd(const kvs_diskq_t *q)
{
    return q->efd;
}

/* Before j's done(): j no longer counts as pending. */
static void job_finished(kvs_diskq_t *q, const kvs_djob_t *j)
{
    atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
    if (!j->slow)
        atomic_fetch_sub_explicit(&q->client_pending, 1, memory_order_relaxed);
}

void kvs_diskq_submit(kvs_diskq_t *q, kvs_djob_t *job)
{
    atomic_fetch_add_explicit(&q->pending, 1, memory_order_relaxed);
    if (!job->slow)
        atomic_fetch_add_explicit(&q->client_pending, 1, memory_order_relaxed);
    pthread_mutex_lock(&q->mu);
    if (job->slow) {
        push(&q->slow_tail, job);
        pthread_cond_signal(&q->slow_cv);
    } else {
        push(&q->todo_tail, job);
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
}

unsigned kvs_diskq_poll(kvs_diskq_t *q)
{
    kvs_djob_t *list;
    uint64_t v;
    unsigned n = 0;

    /* The serving loop calls this at every turn: one load when idle. */
    if (!kvs_diskq_ready(q))
        return 0;
    pthread_mutex_lock(&q->mu);
    list = q->fin;
    q->fin = NULL;
    q->fin_tail = &q->fin;
    atomic_store_explicit(&q->nfin, 0, memory_order_relaxed);
    pthread_mutex_unlock(&q->mu);
    /* After taking the list: the writes for the jobs taken (made under
     * mu) are consumed; one for a later job may be too, but that job's
     * nfin is then seen by kvs_diskq_ready() before the loop sleeps. */
    if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        kvs_warn("diskq: eventfd read: %m");
    while (list) {
        kvs_djob_t *j = list;

        list = j->next;
        job_finished(q, j);
        j->done(j, false);
        n++;
    }
    return n;
}

bool kvs_diskq_ready(const kvs_diskq_t *q)
{
    return atomic_load_explicit(&((kvs_diskq_t *)q)->nfin,
                                memory_order_acquire) != 0;
}

uint64_t kvs_diskq_pending(const kvs_diskq_t *q)
{
    return atomic_load_explicit(&q->pending, memory_order_relaxed);
}

bool kvs_diskq_client_waits(const kvs_diskq_t *q)
{
    return atomic_load_explicit(&q->client_pending, memory_order_relaxed) != 0;
}

const atomic_int *kvs_diskq_stopping(const kvs_diskq_t *q)
{
    return &q->stopping;
}

void kvs_diskq_destroy(kvs_diskq_t *q)
{
    kvs_djob_t *cancel;

    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    atomic_store(&q->stopping, 1);
    /* Jobs not started are cancelled, not run. */
    cancel = q->todo;
    if (cancel)
        *q->todo_tail = q->slow_todo;
    else
        cancel = q->slow_todo;
    q->todo = q->slow_todo = NULL;
    q->todo_tail = &q->todo;
    q->slow_tail = &q->slow_todo;
    pthread_cond_broadcast(&q->cv);
    pthread_cond_broadcast(&q->slow_cv);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    kvs_diskq_poll(q);
    while (cancel) {
        kvs_djob_t *j = cancel;

        cancel = j->next;
        job_finished(q, j);
        j->done(j, true);
    }
    if (q->efd >= 0)
        close(q->efd);
    pthread_cond_destroy(&q->slow_cv);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}
