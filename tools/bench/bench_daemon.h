/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A kvstashd for a benchmark: the one next to kvstash-bench, started on an
 * ephemeral port with its data under a scratch directory, stopped with
 * SIGTERM (also at exit, if still running). For modes that need nothing
 * more of it (bench_shm.c).
 */
#ifndef KVS_BENCH_DAEMON_H
#define KVS_BENCH_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

typedef struct bench_daemon {
    pid_t pid;
    uint16_t port;
} bench_daemon_t;

/* Starts it in dir (data in dir/data, log in dir/kvstashd.log) with extra
 * arguments (NULL-terminated) and waits until it listens. 0, or -errno
 * with the reason on stderr. */
int bench_daemon_start(bench_daemon_t *d, const char *dir,
                       const char *const *extra);
void bench_daemon_stop(bench_daemon_t *d);

#endif
