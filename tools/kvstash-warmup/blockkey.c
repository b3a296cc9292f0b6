/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chained block keys (see blockkey.h for the scheme). The digest comes from
 * OpenSSL's libcrypto through EVP, so any digest it knows (sha256, sha512,
 * sha3-256, blake2b512 ...) can be chosen by name, matching the engine that
 * will look the blocks up.
 */
#include "tools/kvstash-warmup/blockkey.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "kvstash/status.h"

static const EVP_MD *digest(const kvs_blockkey_params_t *p)
{
    return EVP_get_digestbyname(p->hash ? p->hash : "sha256");
}

int kvs_blockkey_size(const kvs_blockkey_params_t *p)
{
    const EVP_MD *md = digest(p);
    int n;

    if (!md)
        return -EINVAL;
    n = EVP_MD_size(md);
    if (n <= 0 || n > (int)KVS_KEY_MAX)
        return KVS_ETOOBIG;
    return n;
}

int kvs_blockkey_chain(const kvs_blockkey_params_t *p, const uint32_t *tokens,
                       uint32_t tokens_per_block, size_t nblocks,
                       uint8_t *keys_out, int key_size)
{
    const EVP_MD *md = digest(p);
    EVP_MD_CTX *ctx;
    uint8_t le[4 * 256];
    int ret = 0;

    if (!md || EVP_MD_size(md) != key_size || p->root_len > KVS_KEY_MAX)
        return -EINVAL;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    for (size_t b = 0; b < nblocks && !ret; b++) {
        const uint32_t *t = tokens + b * tokens_per_block;
        uint8_t *key = keys_out + b * (size_t)key_size;
        unsigned int out_len = 0;

        if (EVP_DigestInit_ex(ctx, md, NULL) != 1) {
            ret = -EINVAL;
            break;
        }
        if (b == 0)
            EVP_DigestUpdate(ctx, p->root, p->root_len);
        else
            EVP_DigestUpdate(ctx, key - key_size, (size_t)key_size);
        /* Token ids as u32 LE, whatever the host's byte order. */
        for (uint32_t i = 0; i < tokens_per_block; i += 256) {
            uint32_t n =
                tokens_per_block - i < 256 ? tokens_per_block - i : 256;

            for (uint32_t j = 0; j < n; j++)
                for (int k = 0; k < 4; k++)
                    le[4 * j + k] = (uint8_t)(t[i + j] >> (8 * k));
            EVP_DigestUpdate(ctx, le, 4 * (size_t)n);
        }
        if (p->extra_len)
            EVP_DigestUpdate(ctx, p->extra, p->extra_len);
        if (EVP_DigestFinal_ex(ctx, key, &out_len) != 1 ||
            (int)out_len != key_size)
            ret = -EINVAL;
    }
    EVP_MD_CTX_free(ctx);
    return ret;
}
