/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What promote and export share: the blocks of a namespace (or of a group)
 * listed through SCAN, and an order in which parents come before their
 * children (the order an engine reads a prompt in).
 */
#ifndef KVS_SCAN_H
#define KVS_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/kvstash.h"

typedef struct kvs_scan_list {
    kvs_client_scan_ent_t *ents;
    size_t n, cap;
} kvs_scan_list_t;

/* Appends every block of group (0: all) to list. Returns 0 or a status. */
int kvs_scan_collect(kvs_client_t *c, uint64_t group, kvs_scan_list_t *list);

/* Reorders ents so that a block whose parent is in the list comes after
 * it (by depth in the chain, stable otherwise). */
int kvs_scan_sort_chains(kvs_client_scan_ent_t *ents, size_t n);

void kvs_scan_list_fini(kvs_scan_list_t *list);

#endif
