/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counted mutex acquisitions: how often a lock was wanted, how often it was
 * held by another thread at that moment, and how long the waits took in
 * all. A trylock first tells the two apart at the cost of one atomic
 * operation that a plain lock makes anyway; only a contended acquisition
 * reads the clock. The figures answer "would more serving threads wait on
 * the engine's locks?" by measurement (STAT's *_contended lines).
 *
 * Threading: the counters are relaxed atomics, so any thread may count
 * and any may read them without holding the lock they describe.
 */
#ifndef KVS_COMMON_LOCKSTAT_H
#define KVS_COMMON_LOCKSTAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/clock.h"

typedef struct kvs_lockstat {
    _Atomic uint64_t acquired;  /* acquisitions counted */
    _Atomic uint64_t contended; /* of them, the lock was held already */
    _Atomic uint64_t wait_ns;   /* time those waited, in all */
} kvs_lockstat_t;

static inline void kvs_lockstat_lock(pthread_mutex_t *m, kvs_lockstat_t *ls)
{
    uint64_t t0;

    atomic_fetch_add_explicit(&ls->acquired, 1, memory_order_relaxed);
    if (pthread_mutex_trylock(m) == 0)
        return;
    t0 = kvs_clock_mono_ns();
    pthread_mutex_lock(m);
    atomic_fetch_add_explicit(&ls->contended, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ls->wait_ns, kvs_clock_mono_ns() - t0,
                              memory_order_relaxed);
}

/* The counters now: acquisitions, contended ones, microseconds waited. */
static inline void kvs_lockstat_read(const kvs_lockstat_t *ls,
                                     uint64_t *acquired, uint64_t *contended,
                                     uint64_t *wait_us)
{
    *acquired = atomic_load_explicit(&ls->acquired, memory_order_relaxed);
    *contended = atomic_load_explicit(&ls->contended, memory_order_relaxed);
    *wait_us = atomic_load_explicit(&ls->wait_ns, memory_order_relaxed) / 1000;
}

#endif
