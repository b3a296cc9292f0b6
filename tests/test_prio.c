/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The helper threads' CPU priority (common/prio.h): a thread that lowers
 * its own priority changes its own nice value only, by the documented
 * steps; and the disk queue's threads really run lowered, an ordinary I/O
 * thread KVS_PRIO_IO_NICE below the process and the VERIFY thread at 19.
 * Raising a nice value needs no privilege, so this holds as root (CI) and
 * as any user. And what the serving loop asks the queue before it sleeps:
 * whether a client waits for a disk job.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/prio.h"
#include "transport/server/diskq.h"

static int nice_of_self(void)
{
    errno = 0;
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

static int lowered(int base, int by)
{
    return base + by > 19 ? 19 : base + by;
}

typedef struct lower_arg {
    kvs_prio_t p;
    int ret, before, after;
} lower_arg_t;

static void *lower_main(void *arg)
{
    lower_arg_t *a = arg;

    a->before = nice_of_self();
    a->ret = kvs_prio_lower_self(a->p);
    a->after = nice_of_self();
    return NULL;
}

static lower_arg_t run_lower(kvs_prio_t p)
{
    lower_arg_t a = {.p = p};
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, lower_main, &a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    return a;
}

static void test_lowers_only_the_calling_thread(void **state)
{
    int base = nice_of_self();
    lower_arg_t a;

    (void)state;
    a = run_lower(KVS_PRIO_IO);
    assert_int_equal(a.ret, 0);
    assert_int_equal(a.before, base); /* a new thread starts with ours */
    assert_int_equal(a.after, lowered(base, KVS_PRIO_IO_NICE));
    a = run_lower(KVS_PRIO_BACKGROUND);
    assert_int_equal(a.ret, 0);
    assert_int_equal(a.after, 19);
    assert_int_equal(nice_of_self(), base); /* ours is untouched */
}

/* A disk-queue job that records the nice value of the thread running it. */
typedef struct nice_job {
    kvs_djob_t job; /* first: the queue hands back this pointer */
    int nice;
    bool done;
} nice_job_t;

static void nice_run(kvs_djob_t *j)
{
    ((nice_job_t *)j)->nice = nice_of_self();
}

static void nice_done(kvs_djob_t *j, bool cancelled)
{
    assert_false(cancelled);
    ((nice_job_t *)j)->done = true;
}

static void test_disk_queue_threads_run_lowered(void **state)
{
    int base = nice_of_self();
    nice_job_t io = {.job = {.run = nice_run, .done = nice_done}};
    nice_job_t slow = {.job = {.run = nice_run, .done = nice_done}};
    kvs_diskq_t *q;

    (void)state;
    slow.job.slow = true;
    assert_int_equal(kvs_diskq_create(2, &q), 0);
    kvs_diskq_submit(q, &io.job);
    kvs_diskq_submit(q, &slow.job);
    for (int i = 0; i < 5000 && !(io.done && slow.done); i++) {
        kvs_diskq_poll(q);
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    kvs_diskq_destroy(q);
    assert_true(io.done && slow.done);
    assert_int_equal(io.nice, lowered(base, KVS_PRIO_IO_NICE));
    assert_int_equal(slow.nice, 19);
    assert_int_equal(nice_of_self(), base);
}

/* A job that holds its I/O thread until released. */
typedef struct gate_job {
    kvs_djob_t job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open, running, done;
} gate_job_t;

static void gate_run(kvs_djob_t *j)
{
    gate_job_t *g = (gate_job_t *)j;

    pthread_mutex_lock(&g->mu);
    g->running = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_done(kvs_djob_t *j, bool cancelled)
{
    assert_false(cancelled);
    ((gate_job_t *)j)->done = true;
}

static void gate_init(gate_job_t *g, bool slow)
{
    *g =
        (gate_job_t){.job = {.run = gate_run, .done = gate_done, .slow = slow}};
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_wait_running(gate_job_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->running)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_job_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void poll_until_done(kvs_diskq_t *q, const gate_job_t *g)
{
    for (int i = 0; i < 5000 && !g->done; i++) {
        kvs_diskq_poll(q);
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    assert_true(g->done);
}

/* The serving loop spins while kvs_diskq_client_waits() (busy_poll_disk_us):
 * true from a client's job's submit until its done() has been called,
 * and never for VERIFY's slow job, which may run for minutes. */
static void test_disk_queue_client_waits_for_client_jobs_only(void **state)
{
    gate_job_t fast, slow;
    kvs_diskq_t *q;

    (void)state;
    gate_init(&fast, false);
    gate_init(&slow, true);
    assert_int_equal(kvs_diskq_create(1, &q), 0);
    assert_false(kvs_diskq_client_waits(q));
    kvs_diskq_submit(q, &slow.job);
    gate_wait_running(&slow);
    assert_false(kvs_diskq_client_waits(q));
    kvs_diskq_submit(q, &fast.job);
    assert_true(kvs_diskq_client_waits(q)); /* queued counts */
    gate_wait_running(&fast);
    assert_true(kvs_diskq_client_waits(q));
    gate_open(&fast);
    /* Finished but done() not yet called: the reply is still to send. */
    while (!kvs_diskq_ready(q))
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    assert_true(kvs_diskq_client_waits(q));
    poll_until_done(q, &fast);
    assert_false(kvs_diskq_client_waits(q));
    assert_int_equal(kvs_diskq_pending(q), 1); /* VERIFY's, still running */
    gate_open(&slow);
    poll_until_done(q, &slow);
    assert_int_equal(kvs_diskq_pending(q), 0);
    kvs_diskq_destroy(q);
    for (gate_job_t *g = &fast; g; g = g == &fast ? &slow : NULL) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowers_only_the_calling_thread),
        cmocka_unit_test(test_disk_queue_threads_run_lowered),
        cmocka_unit_test(test_disk_queue_client_waits_for_client_jobs_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
