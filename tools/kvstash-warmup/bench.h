/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup bench: the import rate next to the daemon's raw put rate,
 * measured in the same run against the same daemon.
 */
#ifndef KVS_BENCH_H
#define KVS_BENCH_H

#include "tools/kvstash-warmup/warmup.h"

/* argv[0] is "bench". Returns the exit status. */
int kvs_bench_main(const kvs_warmup_opts_t *o, const char *ns, int argc,
                   char **argv);

#endif
