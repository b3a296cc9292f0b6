/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A kvstashd started by kvstash-bench (bench_daemon.c): on 127.0.0.1, an
 * ephemeral port, its data and log under a directory of the bench's, and
 * stopped by its pid. Used by the modes that start daemons of their own
 * with settings of their own (bench_load.c).
 */
#ifndef KVS_BENCH_DAEMON_H
#define KVS_BENCH_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* kvstashd next to this program, else "kvstashd" (found on PATH). */
void bench_daemon_default_path(char *out, size_t cap);

/* Starts kvstashd at path with --dir DIR/data (emptied first), its log in
 * DIR/kvstashd.log, and the NULL-terminated extra arguments args (at most
 * 16). The daemon gets SIGTERM if this process dies. Returns its pid and
 * its port in *port_out once it listens; -1 when it could not start (the
 * reason and the log on stderr). */
pid_t bench_daemon_start(const char *path, const char *dir,
                         const char *const *args, uint16_t *port_out);

/* SIGTERM (an orderly shutdown) and waits for it; pid <= 0 is a no-op. */
void bench_daemon_stop(pid_t pid);

#endif
