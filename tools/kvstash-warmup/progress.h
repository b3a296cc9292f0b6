/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress reporting for kvstash-warmup: on a terminal a bar redrawn in
 * place (blocks, bytes, rate, ETA) at most ten times a second; otherwise a
 * plain line every interval; and a summary line at the end. Output goes to
 * stderr so that stdout stays free for machine-readable results.
 */
#ifndef KVS_PROGRESS_H
#define KVS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct kvs_progress {
    const char *what; /* "import", "promote", "export" */
    FILE *out;
    bool tty;             /* redraw a bar in place */
    bool quiet;           /* summary only */
    uint64_t interval_ns; /* between plain lines */
    uint64_t start_ns, last_ns;
    uint64_t total;               /* blocks expected; 0: unknown */
    uint64_t done;                /* blocks: ok + skipped + failed */
    uint64_t ok, skipped, failed; /* blocks */
    uint64_t bytes;               /* bytes moved by the ok blocks */
} kvs_progress_t;

/* tty: -1 decide with isatty(), 0 plain lines, 1 bar. */
void kvs_progress_init(kvs_progress_t *p, const char *what, uint64_t total,
                       int tty, bool quiet, uint32_t interval_ms);
/* Accounts blocks and redraws when due. */
void kvs_progress_add(kvs_progress_t *p, uint64_t ok, uint64_t skipped,
                      uint64_t failed, uint64_t bytes);
/* Prints the summary (ok_word: "imported", "promoted", "exported"). */
void kvs_progress_finish(kvs_progress_t *p, const char *ok_word);
/* Seconds since init. */
double kvs_progress_elapsed(const kvs_progress_t *p);

#endif
