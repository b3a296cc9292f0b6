/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup import: loads every block a manifest describes into the
 * daemon, skipping blocks already present (so a run that was interrupted
 * finishes the job when run again), with several put batches in flight.
 */
#ifndef KVS_IMPORT_H
#define KVS_IMPORT_H

#include <stdint.h>

#include "tools/kvstash-warmup/warmup.h"

typedef struct kvs_import_result {
    uint64_t imported;  /* blocks put */
    uint64_t skipped;   /* blocks already present */
    uint64_t failed;    /* blocks whose put failed */
    uint64_t bad_lines; /* manifest lines not loaded */
    uint64_t bytes;     /* bytes of the imported blocks */
    double seconds;
} kvs_import_result_t;

/* Imports manifest. Returns 0 when it ran (res_out says what happened), or
 * a status when it could not run at all (no manifest, no daemon). */
int kvs_import_run(const kvs_warmup_opts_t *o, const char *manifest,
                   kvs_import_result_t *res_out);

#endif
