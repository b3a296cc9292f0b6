/* SPDX-License-Identifier: Apache-2.0 */
/* kvstash locate: the longest prefix of a chain, across the cluster. */
#ifndef KVS_CLI_LOCATE_H
#define KVS_CLI_LOCATE_H

#include <stdint.h>

#include "kvstash/kvstash.h"

/* Prints "NODE TIER MATCHED/N" (or "none 0/N"); with repeat > 1 also the
 * latency of the call over the index. Returns the exit status: 0 when a
 * node holds keys[0], 1 when none does, 2 when etcd cannot be read. */
int kvs_cli_locate(const char *etcd, const char *prefix, uint32_t repeat,
                   const kvs_client_key_t *keys, int n);

#endif
