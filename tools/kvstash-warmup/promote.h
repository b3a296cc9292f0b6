/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup promote: brings the blocks of given groups (or a list of
 * keys) from NVMe into DRAM before traffic, parents first, and stops at a
 * DRAM budget rather than make the daemon evict pinned or fresher blocks.
 */
#ifndef KVS_PROMOTE_H
#define KVS_PROMOTE_H

#include "tools/kvstash-warmup/warmup.h"

/* argv[0] is "promote". Returns the exit status. */
int kvs_promote_main(const kvs_warmup_opts_t *o, const char *ns, int argc,
                     char **argv);

#endif
