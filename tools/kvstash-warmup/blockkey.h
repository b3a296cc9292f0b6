/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chained block keys, computed the way inference engines compute prefix
 * hashes (documented in docs/warmup.md, "Block keys"):
 *
 *   key[0] = H(root   || tokens[0 .. B) || extra)
 *   key[i] = H(key[i-1] || tokens[iB .. (i+1)B) || extra)
 *
 * where H is a digest named by its OpenSSL name (default "sha256"), root is
 * a byte string (default empty), each token id is a u32 little-endian, and
 * extra is each extra key as "u32 LE length, bytes". The key is the whole
 * digest (at most KVS_KEY_MAX bytes). So key i depends on every token
 * before the end of block i, and equal prefixes give equal keys.
 */
#ifndef KVS_BLOCKKEY_H
#define KVS_BLOCKKEY_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/types.h"

typedef struct kvs_blockkey_params {
    const char *hash;     /* OpenSSL digest name; NULL: "sha256" */
    const uint8_t *root;  /* parent bytes of block 0 */
    uint32_t root_len;    /* 0..KVS_KEY_MAX */
    const uint8_t *extra; /* extra keys, already length-prefixed */
    size_t extra_len;
} kvs_blockkey_params_t;

/* The digest size of p->hash, or a negative status if it is unknown or
 * longer than KVS_KEY_MAX. */
int kvs_blockkey_size(const kvs_blockkey_params_t *p);

/*
 * Computes nblocks chained keys of tokens (nblocks * tokens_per_block ids)
 * into keys_out, key_size bytes each (key_size from kvs_blockkey_size()).
 * Returns 0, -EINVAL or -ENOMEM.
 */
int kvs_blockkey_chain(const kvs_blockkey_params_t *p, const uint32_t *tokens,
                       uint32_t tokens_per_block, size_t nblocks,
                       uint8_t *keys_out, int key_size);

#endif
