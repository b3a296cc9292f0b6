/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block codec: how a KV block's bytes are encoded on their way to NVMe
 * and decoded on the way back. DRAM always holds blocks raw.
 *
 * Three encodings exist, named by a codec id that is stored with the block
 * (block header and index entry). For bf16/fp16 tensors the best one is a
 * byte-plane shuffle followed by zstd of each plane that compresses: the
 * high bytes (sign and exponent) compress 2.4-3x, the low bytes (mantissa)
 * not at all, so those are stored as they are and cost no zstd time. See
 * docs/codec.md for the format and measured figures.
 *
 * Output is never larger than the input: anything that would not save
 * enough is stored RAW, as a copy into dst. So the caller always writes dst
 * and never needs to look at src again.
 *
 * Threading: a kvs_codec_t is a per-thread context (it owns one ZSTD_CCtx,
 * one ZSTD_DCtx and one scratch buffer); it is not thread-safe. Use one per
 * thread that encodes or decodes.
 *
 * Memory: encode and decode of the shuffled format need a scratch buffer as
 * large as the block. It grows on demand (exactly to the size needed, never
 * shrinks), so after the first call with the largest block a context never
 * allocates again. Call kvs_codec_reserve() at start-up with the largest
 * block size to keep every allocation off the data path.
 *
 * Errors: 0 or a negative status from kvstash/status.h. Output parameters
 * are written only on success.
 */
#ifndef KVS_CODEC_H
#define KVS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Codec ids: part of the disk format, never renumber. */
enum kvs_codec_id {
    KVS_CODEC_RAW = 0,       /* stored as is */
    KVS_CODEC_ZSTD = 1,      /* zstd of the bytes as they are */
    KVS_CODEC_SHUF_ZSTD = 2, /* byte-plane shuffle by elem_size, then each
                              * plane zstd'd or stored raw (per-plane flag) */
};

/* Largest SHUF_ZSTD header: 4 fixed bytes plus one u32 length per plane,
 * for at most 4 planes. */
#define KVS_CODEC_SHUF_HDR_MAX 20u

typedef struct kvs_codec kvs_codec_t; /* per-thread context; not thread-safe */

/* Creates a context. On success *codec_out belongs to the caller until
 * kvs_codec_destroy(). -ENOMEM if zstd's contexts cannot be allocated. */
int kvs_codec_create(kvs_codec_t **codec_out);

/* Frees a context and its scratch buffer. NULL is a no-op. */
void kvs_codec_destroy(kvs_codec_t *codec);

/* Grows the context's scratch buffer to hold blocks of up to max_len bytes,
 * so that later encodes and decodes of such blocks do not allocate.
 * -ENOMEM on failure (the context stays usable). */
int kvs_codec_reserve(kvs_codec_t *codec, size_t max_len);

/* Worst-case encoded size of len input bytes (for sizing dst). It is len:
 * an encoding that is not smaller than the input is replaced by RAW. */
size_t kvs_codec_bound(size_t len, uint32_t elem_size);

/*
 * Encodes src (len bytes) into dst (dst_cap bytes, at least
 * kvs_codec_bound(len, elem_size)).
 *
 * level: zstd level (1..ZSTD_maxCLevel()); <= 0 means "do not compress" and
 *   gives RAW. Use 1: on bf16 KV data level 3 is twice as slow and no
 *   better (docs/codec.md).
 * min_saving_pct (0..100): the encoding is kept only if it is smaller than
 *   len and saves at least this percentage of len; otherwise the output is
 *   RAW. 100 forces RAW for any len > 0.
 * elem_size: 2 (bf16/fp16) or 4 (fp32) selects the shuffled path; 0
 *   (unknown) or 1 (fp8, int8) selects plain zstd. Other values: -EINVAL.
 *
 * On success *codec_out is the codec id to store with the block and
 * *dst_len_out the number of bytes written to dst. RAW output is a copy of
 * src in dst (*dst_len_out == len). len 0 is valid and gives RAW, 0 bytes.
 * The encoder may write anywhere in the first kvs_codec_bound(len) bytes
 * of dst; only the first *dst_len_out bytes are meaningful afterwards.
 * src and dst must not overlap; src may be NULL when len is 0.
 *
 * Errors: -EINVAL (bad argument), -ENOBUFS (dst_cap too small), -ENOMEM
 * (scratch growth; never after kvs_codec_reserve() of len), KVS_ECODEC
 * (zstd failed for another reason than "output does not fit").
 */
int kvs_codec_encode(kvs_codec_t *codec, const void *src, size_t len,
                     uint32_t elem_size, int level, uint32_t min_saving_pct,
                     void *dst, size_t dst_cap, uint8_t *codec_out,
                     size_t *dst_len_out);

/*
 * Decodes src (src_len bytes, encoded with codec_id) into exactly raw_len
 * bytes at dst. src comes from the disk and is fully validated: a decode
 * never reads past src + src_len, never writes past dst + raw_len, and
 * answers KVS_ECORRUPT for any mismatch (unknown codec id, sizes that do not
 * add up, a bad zstd frame, a frame that does not decode to exactly the
 * expected size).
 *
 * elem_size: for SHUF_ZSTD the element size the block was encoded with, or
 * 0 to take the plane count from the header; a different value is
 * KVS_ECORRUPT. Ignored by the other codecs.
 *
 * Errors: KVS_ECORRUPT, -EINVAL (NULL pointers with non-zero lengths),
 * -ENOMEM (scratch growth). dst's contents are unspecified after an error.
 */
int kvs_codec_decode(kvs_codec_t *codec, uint8_t codec_id, const void *src,
                     size_t src_len, uint32_t elem_size, void *dst,
                     size_t raw_len);

/* kvs_codec_measure(), the codec's speed and ratio on this machine, is
 * declared in kvstore/store.h: benchmarks and start-up code call it, and
 * store.h is the only engine header they include. */

#ifdef __cplusplus
}
#endif
#endif
