/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for kvs_codec_decode(), the codec's parser of bytes read
 * from disk. Input layout (all that follows byte 5 is the payload):
 *
 *   byte 0      codec id, passed as is (ids >= 3 must be KVS_ECORRUPT)
 *   byte 1      elem_size selector: low 2 bits pick 0, 1, 2 or 4
 *   bytes 2..5  raw_len, u32 little-endian, reduced modulo 4 MiB
 *   bytes 6..   the encoded payload
 *
 * Decode must return 0 or KVS_ECORRUPT, and never touch memory outside its
 * buffers (dst is allocated at exactly raw_len bytes). The payload is then
 * also encoded with every element size and decoded back, which must give
 * the same bytes: the encoder sees odd sizes and odd data this way.
 *
 * Built with libFuzzer by tests/fuzz/CMakeLists.txt under KVS_FUZZ=ON; in
 * ordinary builds tests/fuzz/replay.c runs it on tests/fuzz/corpus/codec/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/debug.h"
#include "kvstore/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_RAW_MAX (4u << 20)

static const uint32_t elem_sizes[4] = {0, 1, 2, 4};

static void round_trip(kvs_codec_t *codec, const uint8_t *p, size_t len,
                       uint32_t elem_size)
{
    size_t cap = kvs_codec_bound(len, elem_size), enc_len;
    uint8_t *enc = malloc(cap ? cap : 1), *dec = malloc(len ? len : 1);
    uint8_t id;
    int ret;

    if (!enc || !dec)
        kvs_panic("fuzz: out of memory");
    ret = kvs_codec_encode(codec, p, len, elem_size, 1, 0, enc, cap, &id,
                           &enc_len);
    if (ret != 0)
        kvs_panic("fuzz: encode failed: %s", kvs_strerror(ret));
    ret = kvs_codec_decode(codec, id, enc, enc_len, elem_size, dec, len);
    if (ret != 0 || (len && memcmp(dec, p, len) != 0))
        kvs_panic("fuzz: codec %u does not round-trip %zu bytes", id, len);
    free(dec);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvs_codec_t *codec;
    uint8_t id;
    uint32_t elem_size, raw_len;
    uint8_t *dst;
    int ret;

    if (!codec && kvs_codec_create(&codec) != 0)
        kvs_panic("fuzz: cannot create a codec");
    if (size < 6)
        return 0;
    id = data[0];
    elem_size = elem_sizes[data[1] & 3];
    raw_len = ((uint32_t)data[2] | (uint32_t)data[3] << 8 |
               (uint32_t)data[4] << 16 | (uint32_t)data[5] << 24) %
              FUZZ_RAW_MAX;
    data += 6;
    size -= 6;

    dst = malloc(raw_len ? raw_len : 1);
    if (!dst)
        kvs_panic("fuzz: out of memory");
    ret = kvs_codec_decode(codec, id, size ? data : NULL, size, elem_size, dst,
                           raw_len);
    if (ret != 0 && ret != KVS_ECORRUPT)
        kvs_panic("fuzz: decode returned %d (%s)", ret, kvs_strerror(ret));
    if (ret == 0 && id > KVS_CODEC_SHUF_ZSTD)
        kvs_panic("fuzz: unknown codec %u decoded", id);
    free(dst);

    for (int i = 0; i < 4; i++)
        round_trip(codec, data, size, elem_sizes[i]);
    return 0;
}
