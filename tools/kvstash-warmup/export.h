/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup export: writes the blocks of a group, or of a whole
 * namespace, to safetensors files plus a manifest (layout "blocks") that
 * import reads back, so memory can move between clusters. import(export(x))
 * stores the same keys, parents, parts and bytes.
 */
#ifndef KVS_EXPORT_H
#define KVS_EXPORT_H

#include "tools/kvstash-warmup/warmup.h"

/* argv[0] is "export". Returns the exit status. */
int kvs_export_main(const kvs_warmup_opts_t *o, const char *ns, int argc,
                    char **argv);

#endif
