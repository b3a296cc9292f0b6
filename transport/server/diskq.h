/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The disk queue: work that may read the NVMe tier (a GET or MATCH of
 * blocks on disk only, PREFETCH, VERIFY) runs on I/O threads, so that the
 * serving thread never waits on the disk. A job is handed over with
 * kvs_diskq_submit(); an I/O thread runs its run() (which may block on the
 * disk, the store's locks and its condition variables), then queues it
 * back; the serving thread, woken by the queue's eventfd next to UCX's,
 * calls kvs_diskq_poll(), which runs each finished job's done() on the
 * serving thread, where replies are sent.
 *
 * Ownership: a job belongs to its submitter until submit, to the queue
 * until done() is called, then to done() (which frees it). run() touches
 * only the job and the (thread-safe) store, never the server's state.
 *
 * Threading: submit and poll are serving-thread calls; each holds the
 * queue's mutex for a list operation only.
 */
#ifndef KVS_DISKQ_H
#define KVS_DISKQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct kvs_diskq kvs_diskq_t;
typedef struct kvs_djob kvs_djob_t;

struct kvs_djob {
    kvs_djob_t *next;             /* the queue's */
    void (*run)(kvs_djob_t *job); /* on an I/O thread */
    void (*done)(kvs_djob_t *job,
                 bool cancelled); /* on the serving thread;
                                   * cancelled: run() was never called */
    bool slow;                    /* VERIFY: a thread of its own (below) */
};

/* Starts nthreads I/O threads (1..16) for ordinary jobs and one for slow
 * ones (a background VERIFY must not hold up a GET). */
int kvs_diskq_create(unsigned nthreads, kvs_diskq_t **out);
/* Stops the threads: a job running is finished, jobs not started are
 * cancelled; every done() is called, on the caller's thread. Then frees
 * the queue. NULL is a no-op. */
void kvs_diskq_destroy(kvs_diskq_t *q);
/* The eventfd that becomes readable when a job is finished. */
int kvs_diskq_fd(const kvs_diskq_t *q);
void kvs_diskq_submit(kvs_diskq_t *q, kvs_djob_t *job);
/* Calls done() of every finished job; returns how many. */
unsigned kvs_diskq_poll(kvs_diskq_t *q);
/* True when finished jobs wait for kvs_diskq_poll(): the serving loop
 * checks this before it sleeps. */
bool kvs_diskq_ready(const kvs_diskq_t *q);
/* Jobs submitted and not yet done (a gauge). */
uint64_t kvs_diskq_pending(const kvs_diskq_t *q);
/* True while a job that is not slow is submitted and its done() not yet
 * called: a GET, a leased MATCH, a PREFETCH, a stream source's read or a
 * deferred PUT, each with a client waiting for its reply (everything but
 * VERIFY). The serving loop spins rather than sleeps then
 * (busy_poll_disk_us). */
bool kvs_diskq_client_waits(const kvs_diskq_t *q);
/* Set while the queue is being destroyed: a slow run() (VERIFY) polls it
 * to stop early. */
const atomic_int *kvs_diskq_stopping(const kvs_diskq_t *q);

#endif
