/* SPDX-License-Identifier: Apache-2.0 */
/* Time helpers: monotonic for durations, real time for TTLs that outlive a
 * restart. */
#ifndef KVS_CLOCK_H
#define KVS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t kvs_clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wall-clock milliseconds since the epoch; used for expiry times stored on
 * disk, which must mean the same after a restart. */
static inline uint64_t kvs_clock_real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

#endif
