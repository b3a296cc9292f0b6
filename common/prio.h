/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CPU priority of the daemon's helper threads.
 *
 * The serving thread answers MATCH, whose latency sits on an inference
 * scheduler's critical path. On a machine with few cores it shares the
 * CPU with the threads that do bulk work for it: the I/O threads (disk
 * reads, checksums, zstd decode, PUTs that wait), the VERIFY thread and
 * the store's write-behind. At the same priority, a MATCH that arrives
 * while the cores are busy with such work waits for their time slices
 * (a perf sched profile showed the serving thread never blocked on a lock
 * while MATCH p99 rose 2.6x under a cold GET load on 2 cores). A helper
 * thread therefore lowers its own priority when it starts, so that the
 * scheduler runs the serving thread first when it wakes.
 *
 * Lowering is what an unprivileged process may always do (a higher nice
 * value), and the thread cannot undo it without CAP_SYS_NICE, which is why
 * only helper threads do it, and never one that creates threads. No
 * real-time or SCHED_IDLE policy: a client waits for every one of these
 * threads' results (even VERIFY's), and SCHED_IDLE could starve them on a
 * machine kept busy by other processes. Failure (a seccomp filter) is
 * logged at debug level and ignored: the daemon works, only less well
 * under load.
 */
#ifndef KVS_COMMON_PRIO_H
#define KVS_COMMON_PRIO_H

typedef enum kvs_prio {
    /* Work a client waits for, behind the serving thread: GET reads
     * from disk, PUTs that wait for room, write-behind. */
    KVS_PRIO_IO,
    /* Work that may take as long as the machine needs (VERIFY). */
    KVS_PRIO_BACKGROUND,
} kvs_prio_t;

/* Nice steps of KVS_PRIO_IO above the process's: 5 gives a scheduler
 * weight of 335 against the serving thread's 1024, so a core both want is
 * about three quarters the serving thread's, and an otherwise idle core is
 * the I/O thread's whole. Measured with net-match-load on 2 busy cores:
 * 5 lowered the loaded MATCH p99 more than 10 did,
 * and cost the cold GETs less. */
#define KVS_PRIO_IO_NICE 5
/* KVS_PRIO_BACKGROUND: the lowest nice value, 19 (weight 15). */

/* Lowers the calling thread's priority to p; 0 or a negative errno
 * (nothing changed). */
int kvs_prio_lower_self(kvs_prio_t p);

#endif
