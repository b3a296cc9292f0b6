/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block codec (see codec.h for the contract, docs/codec.md for figures).
 *
 * KV blocks are tensors of 16-bit floats (bf16/fp16), sometimes fp32 or
 * fp8. In a bf16 value the high byte holds the sign and 7 of the 8 exponent
 * bits, which take few distinct values in one block; the low byte holds one
 * exponent bit and the mantissa, which is close to random. zstd of the
 * interleaved bytes sees neither pattern well (ratio ~1.25). Splitting the
 * block into byte planes (byte 0 of every element, then byte 1, ...) gives
 * zstd one plane that compresses 2.4-3x and one that does not compress at
 * all; the whole block then reaches ~1.45, and the incompressible plane is
 * stored as it is instead of costing zstd time.
 *
 * RAW: the payload is the block. ZSTD: the payload is one zstd frame (or
 * several, concatenated) of the block. SHUF_ZSTD: the payload is a small
 * header, the planes and the tail, all little-endian:
 *
 *   P = plane count = elem_size (2 or 4), n = raw_len / P (bytes per plane),
 *   t = raw_len % P (tail bytes, not part of any element)
 *
 *   byte 0       1       2       3       4             4+4P
 *   +-------+-------+-------+-------+-------------+-------------+------+
 *   |version|   P   | flags |   0   | len[0..P-1] | planes      | tail |
 *   |  = 1  | 2 / 4 |       |       | u32 LE each | 0 .. P-1    | t B  |
 *   +-------+-------+-------+-------+-------------+-------------+------+
 *
 *   flags bit i = 1: plane i is zstd frame(s) of len[i] bytes that decode
 *                    to exactly n bytes;
 *   flags bit i = 0: plane i is n raw bytes (len[i] == n);
 *   flag bits >= P and byte 3 are zero.
 *   Plane i holds byte i (in memory order) of every element; for
 *   little-endian bf16 plane 0 is the mantissa, plane 1 sign and exponent.
 *   The payload is exactly 4 + 4P + sum(len[i]) + t bytes.
 *
 * Every one of these rules is checked on decode; any mismatch is
 * KVS_ECORRUPT. The checksum over the stored block lives in the block
 * header (XXH3), not here, so frames carry no zstd checksum.
 *
 * Skipping incompressible planes: every plane is compressed into a
 * destination capped at 31/32 of its size; when zstd reports that its
 * output does not fit, the plane is stored raw. So a plane that saves less
 * than ~3% costs no decode time, and zstd gives up on it early (at level 1
 * a random 128 KiB plane fails in ~45 us, a compressible one takes ~500 us).
 * A plane that was stored raw by the previous encode of this context (same
 * plane count, same plane) is first tried on a 4 KiB sample from its middle,
 * which costs ~3 us when it fails; planes that compressed last time skip
 * the sample, which would cost ~15 us on them for nothing. Measured
 * (docs/codec.md): sampling every plane was 3-15% slower than no sampling
 * at level 1; sampling only planes that were raw last time is 0-7% faster.
 * The hint changes the work done, not the format: at worst a plane whose
 * sample did not compress is stored raw although the whole might have.
 *
 * The keep rule (min_saving_pct) is enforced the same way: every zstd call
 * is given at most the bytes still allowed by the budget, so an encoding
 * that would not pay fails early with "destination too small" and becomes
 * RAW. Hence no output is ever larger than its input and kvs_codec_bound()
 * is the identity.
 *
 * Scratch: the shuffled planes (encode) or the decoded planes (decode) live
 * in one buffer owned by the context, grown to the size needed and never
 * shrunk. Raw planes are read straight from the source on decode.
 */
#include "kvstore/codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "common/debug.h"
#include "common/log.h"
#include "kvstore/store.h"

#define SHUF_VERSION 1u
#define SHUF_FIXED_HDR 4u /* version, P, flags, reserved */
#define SHUF_MAX_PLANES 4u
#define SAMPLE_BYTES 4096u  /* plane sample for the skip test */
#define PLANE_MIN_BYTES 64u /* smaller planes are stored raw */
#define SHUF_CHUNK 32u      /* elements per inner shuffle loop */

_Static_assert(SHUF_FIXED_HDR + 4 * SHUF_MAX_PLANES == KVS_CODEC_SHUF_HDR_MAX,
               "header size");

/* Owned by one thread; see codec.h. */
struct kvs_codec {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *scratch;                       /* planes; see the file comment */
    size_t scratch_cap;                     /* bytes at scratch */
    bool plane_was_raw[2][SHUF_MAX_PLANES]; /* [P == 4][plane]: the last
                                             * encode stored it raw */
};

int kvs_codec_create(kvs_codec_t **codec_out)
{
    kvs_codec_t *codec;

    codec = calloc(1, sizeof(*codec));
    if (!codec)
        return -ENOMEM;
    codec->cctx = ZSTD_createCCtx();
    if (!codec->cctx)
        goto err_free_codec;
    codec->dctx = ZSTD_createDCtx();
    if (!codec->dctx)
        goto err_free_cctx;
    *codec_out = codec;
    return 0;

err_free_cctx:
    ZSTD_freeCCtx(codec->cctx);
err_free_codec:
    free(codec);
    return -ENOMEM;
}

void kvs_codec_destroy(kvs_codec_t *codec)
{
    if (!codec)
        return;
    ZSTD_freeDCtx(codec->dctx);
    ZSTD_freeCCtx(codec->cctx);
    free(codec->scratch);
    free(codec);
}

int kvs_codec_reserve(kvs_codec_t *codec, size_t max_len)
{
    uint8_t *p;

    if (!codec)
        return -EINVAL;
    if (max_len <= codec->scratch_cap)
        return 0;
    /* free + malloc, not realloc: the old contents never need keeping. */
    p = malloc(max_len);
    if (!p) {
        kvs_error("codec: cannot grow scratch to %zu bytes", max_len);
        return -ENOMEM;
    }
    free(codec->scratch);
    codec->scratch = p;
    codec->scratch_cap = max_len;
    return 0;
}

size_t kvs_codec_bound(size_t len, uint32_t elem_size)
{
    (void)elem_size;
    return len;
}

/* ---- byte-plane shuffle ----
 *
 * Plain loops with restrict pointers. The inner loops have a constant trip
 * count so that GCC's -O2 "very cheap" vectorizer accepts them (it will not
 * add a scalar epilogue to a loop of unknown length); the remainder is a
 * scalar loop of fewer than SHUF_CHUNK elements. */

static void shuffle2(const uint8_t *restrict s, uint8_t *restrict p0,
                     uint8_t *restrict p1, size_t n)
{
    size_t i = 0;

    for (; i + SHUF_CHUNK <= n; i += SHUF_CHUNK) {
        const uint8_t *restrict c = s + 2 * i;
        for (size_t j = 0; j < SHUF_CHUNK; j++) {
            p0[i + j] = c[2 * j];
            p1[i + j] = c[2 * j + 1];
        }
    }
    for (; i < n; i++) {
        p0[i] = s[2 * i];
        p1[i] = s[2 * i + 1];
    }
}

static void unshuffle2(const uint8_t *restrict p0, const uint8_t *restrict p1,
                       uint8_t *restrict d, size_t n)
{
    size_t i = 0;

    for (; i + SHUF_CHUNK <= n; i += SHUF_CHUNK) {
        uint8_t *restrict c = d + 2 * i;
        for (size_t j = 0; j < SHUF_CHUNK; j++) {
            c[2 * j] = p0[i + j];
            c[2 * j + 1] = p1[i + j];
        }
    }
    for (; i < n; i++) {
        d[2 * i] = p0[i];
        d[2 * i + 1] = p1[i];
    }
}

static void shuffle4(const uint8_t *restrict s, uint8_t *restrict p0,
                     uint8_t *restrict p1, uint8_t *restrict p2,
                     uint8_t *restrict p3, size_t n)
{
    size_t i = 0;

    for (; i + SHUF_CHUNK <= n; i += SHUF_CHUNK) {
        const uint8_t *restrict c = s + 4 * i;
        for (size_t j = 0; j < SHUF_CHUNK; j++) {
            p0[i + j] = c[4 * j];
            p1[i + j] = c[4 * j + 1];
            p2[i + j] = c[4 * j + 2];
            p3[i + j] = c[4 * j + 3];
        }
    }
    for (; i < n; i++) {
        p0[i] = s[4 * i];
        p1[i] = s[4 * i + 1];
        p2[i] = s[4 * i + 2];
        p3[i] = s[4 * i + 3];
    }
}

static void unshuffle4(const uint8_t *restrict p0, const uint8_t *restrict p1,
                       const uint8_t *restrict p2, const uint8_t *restrict p3,
                       uint8_t *restrict d, size_t n)
{
    size_t i = 0;

    for (; i + SHUF_CHUNK <= n; i += SHUF_CHUNK) {
        uint8_t *restrict c = d + 4 * i;
        for (size_t j = 0; j < SHUF_CHUNK; j++) {
            c[4 * j] = p0[i + j];
            c[4 * j + 1] = p1[i + j];
            c[4 * j + 2] = p2[i + j];
            c[4 * j + 3] = p3[i + j];
        }
    }
    for (; i < n; i++) {
        d[4 * i] = p0[i];
        d[4 * i + 1] = p1[i];
        d[4 * i + 2] = p2[i];
        d[4 * i + 3] = p3[i];
    }
}

/* Splits n elements of P bytes at src into P planes of n bytes, back to back
 * at planes. */
static void shuffle(const uint8_t *src, uint8_t *planes, uint32_t P, size_t n)
{
    if (P == 2)
        shuffle2(src, planes, planes + n, n);
    else
        shuffle4(src, planes, planes + n, planes + 2 * n, planes + 3 * n, n);
}

static void unshuffle(const uint8_t *const *planes, uint8_t *dst, uint32_t P,
                      size_t n)
{
    if (P == 2)
        unshuffle2(planes[0], planes[1], dst, n);
    else
        unshuffle4(planes[0], planes[1], planes[2], planes[3], dst, n);
}

/* ---- encode ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The largest encoded size that is kept: smaller than len and saving at
 * least pct percent. Computed without overflow for any len. */
static size_t keep_limit(size_t len, uint32_t pct)
{
    size_t k = len / 100 * (100 - pct) + len % 100 * (100 - pct) / 100;

    return k < len ? k : len - 1;
}

/*
 * zstd of src into at most cap bytes at dst. Returns the compressed size,
 * 0 if it does not fit in cap (the caller stores raw), or KVS_ECODEC.
 */
static ssize_t zstd_capped(kvs_codec_t *codec, void *dst, size_t cap,
                           const void *src, size_t len, int level)
{
    size_t r;

    if (cap == 0)
        return 0;
    r = ZSTD_compressCCtx(codec->cctx, dst, cap, src, len, level);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
            return 0;
        kvs_error("codec: zstd compress of %zu bytes at level %d: %s", len,
                  level, ZSTD_getErrorName(r));
        return KVS_ECODEC;
    }
    return (ssize_t)r;
}

/*
 * Compresses one plane of n bytes into dst, using at most room bytes.
 * Returns the compressed size, 0 to store the plane raw (it does not
 * compress, or not into room), or KVS_ECODEC.
 */
static ssize_t encode_plane(kvs_codec_t *codec, const uint8_t *plane, size_t n,
                            bool sample, uint8_t *dst, size_t room, int level)
{
    const size_t sample_cap = SAMPLE_BYTES - SAMPLE_BYTES / 32;

    if (n < PLANE_MIN_BYTES)
        return 0;
    if (sample && n >= 4 * SAMPLE_BYTES && room >= sample_cap) {
        const uint8_t *mid = plane + (n / 2 - SAMPLE_BYTES / 2);
        ssize_t r =
            zstd_capped(codec, dst, sample_cap, mid, SAMPLE_BYTES, level);
        if (r <= 0)
            return r;
    }
    return zstd_capped(codec, dst, KVS_MIN(room, n - n / 32), plane, n, level);
}

/*
 * The shuffled path. Returns the payload size (> 0), 0 when it does not fit
 * in limit (the caller stores RAW), or a negative status.
 */
static ssize_t encode_shuf(kvs_codec_t *codec, const uint8_t *src, size_t len,
                           uint32_t P, int level, uint8_t *dst, size_t limit)
{
    const size_t n = len / P;
    const size_t t = len % P;
    const size_t hdr = SHUF_FIXED_HDR + 4 * (size_t)P;
    size_t pos = hdr;
    uint8_t flags = 0;
    int ret;

    if (limit < hdr + t || n < PLANE_MIN_BYTES)
        return 0;
    ret = kvs_codec_reserve(codec, P * n);
    if (ret < 0)
        return ret;
    shuffle(src, codec->scratch, P, n);

    for (uint32_t i = 0; i < P; i++) {
        const uint8_t *plane = codec->scratch + i * n;
        size_t room = limit - t - pos; /* this plane and the later ones */
        bool *was_raw = &codec->plane_was_raw[P == 4][i];
        ssize_t z =
            encode_plane(codec, plane, n, *was_raw, dst + pos, room, level);

        if (z < 0)
            return z;
        *was_raw = z == 0;
        if (z > 0) {
            flags |= (uint8_t)(1u << i);
            put_le32(dst + SHUF_FIXED_HDR + 4 * i, (uint32_t)z);
            pos += (size_t)z;
            continue;
        }
        if (n > room)
            return 0;
        memcpy(dst + pos, plane, n);
        put_le32(dst + SHUF_FIXED_HDR + 4 * i, (uint32_t)n);
        pos += n;
    }
    if (flags == 0)
        return 0; /* nothing compressed: RAW is the same size, smaller */
    memcpy(dst + pos, src + P * n, t);
    pos += t;
    dst[0] = SHUF_VERSION;
    dst[1] = (uint8_t)P;
    dst[2] = flags;
    dst[3] = 0;
    kvs_assert(pos <= limit);
    return (ssize_t)pos;
}

int kvs_codec_encode(kvs_codec_t *codec, const void *src, size_t len,
                     uint32_t elem_size, int level, uint32_t min_saving_pct,
                     void *dst, size_t dst_cap, uint8_t *codec_out,
                     size_t *dst_len_out)
{
    uint8_t id = KVS_CODEC_RAW;
    ssize_t enc = 0;

    if (!codec || (!src && len) || !dst || !codec_out || !dst_len_out ||
        min_saving_pct > 100 || level > ZSTD_maxCLevel() ||
        (elem_size > 2 && elem_size != 4))
        return -EINVAL;
    if (dst_cap < kvs_codec_bound(len, elem_size))
        return -ENOBUFS;

    if (len > 0 && level > 0 && min_saving_pct < 100) {
        size_t limit = keep_limit(len, min_saving_pct);

        if ((elem_size == 2 || elem_size == 4) &&
            len / elem_size <= UINT32_MAX) {
            id = KVS_CODEC_SHUF_ZSTD;
            enc = encode_shuf(codec, src, len, elem_size, level, dst, limit);
        } else {
            id = KVS_CODEC_ZSTD;
            enc = zstd_capped(codec, dst, limit, src, len, level);
        }
        if (enc < 0)
            return (int)enc;
    }
    if (enc == 0) {
        id = KVS_CODEC_RAW;
        if (len)
            memcpy(dst, src, len);
        enc = (ssize_t)len;
    }
    *codec_out = id;
    *dst_len_out = (size_t)enc;
    return 0;
}

/* ---- decode ---- */

/* One zstd payload that must decode to exactly len bytes at dst. */
static int zstd_exact(kvs_codec_t *codec, void *dst, size_t len,
                      const void *src, size_t src_len)
{
    size_t r;

    if (len == 0 || src_len == 0)
        return KVS_ECORRUPT;
    r = ZSTD_decompressDCtx(codec->dctx, dst, len, src, src_len);
    if (ZSTD_isError(r)) {
        kvs_debug("codec: zstd decode of %zu bytes: %s", src_len,
                  ZSTD_getErrorName(r));
        return KVS_ECORRUPT;
    }
    return r == len ? 0 : KVS_ECORRUPT;
}

static int decode_shuf(kvs_codec_t *codec, const uint8_t *src, size_t src_len,
                       uint32_t elem_size, uint8_t *dst, size_t raw_len)
{
    const uint8_t *planes[SHUF_MAX_PLANES];
    uint32_t lens[SHUF_MAX_PLANES];
    uint32_t P, flags, nzstd = 0;
    size_t n, t, hdr, total, off;
    int ret;

    if (src_len < SHUF_FIXED_HDR)
        return KVS_ECORRUPT;
    P = src[1];
    flags = src[2];
    if (src[0] != SHUF_VERSION || (P != 2 && P != 4) || src[3] != 0 ||
        (flags >> P) != 0 || (elem_size != 0 && elem_size != P))
        return KVS_ECORRUPT;
    hdr = SHUF_FIXED_HDR + 4 * (size_t)P;
    if (src_len < hdr)
        return KVS_ECORRUPT;
    n = raw_len / P;
    t = raw_len % P;

    /* Sizes first, before any byte is decoded or any memory grown. Each
     * len[i] is < 2^32 and there are at most 4, so the sum cannot wrap. */
    total = hdr + t;
    for (uint32_t i = 0; i < P; i++) {
        lens[i] = get_le32(src + SHUF_FIXED_HDR + 4 * i);
        if (flags & (1u << i)) {
            if (n == 0 || lens[i] == 0)
                return KVS_ECORRUPT;
            nzstd++;
        } else if (lens[i] != n) {
            return KVS_ECORRUPT;
        }
        total += lens[i];
    }
    if (total != src_len)
        return KVS_ECORRUPT;

    ret = kvs_codec_reserve(codec, nzstd * n);
    if (ret < 0)
        return ret;
    off = hdr;
    nzstd = 0;
    for (uint32_t i = 0; i < P; i++) {
        if (flags & (1u << i)) {
            uint8_t *out = codec->scratch + nzstd++ * n;
            ret = zstd_exact(codec, out, n, src + off, lens[i]);
            if (ret < 0)
                return ret;
            planes[i] = out;
        } else {
            planes[i] = src + off;
        }
        off += lens[i];
    }
    unshuffle(planes, dst, P, n);
    memcpy(dst + P * n, src + off, t);
    return 0;
}

int kvs_codec_decode(kvs_codec_t *codec, uint8_t codec_id, const void *src,
                     size_t src_len, uint32_t elem_size, void *dst,
                     size_t raw_len)
{
    if (!codec || (!src && src_len) || (!dst && raw_len))
        return -EINVAL;

    switch (codec_id) {
    case KVS_CODEC_RAW:
        if (src_len != raw_len)
            return KVS_ECORRUPT;
        if (raw_len)
            memcpy(dst, src, raw_len);
        return 0;
    case KVS_CODEC_ZSTD:
        return zstd_exact(codec, dst, raw_len, src, src_len);
    case KVS_CODEC_SHUF_ZSTD:
        return decode_shuf(codec, src, src_len, elem_size, dst, raw_len);
    default:
        return KVS_ECORRUPT;
    }
}

/* ---- measurement ---- */

#define MEASURE_NS 30000000ull /* per figure */
#define MEASURE_MIN 3          /* runs per figure, at least */

enum measure_op { OP_ENCODE, OP_DECODE, OP_SHUFFLE, OP_UNSHUFFLE };

struct measure_run {
    kvs_codec_t *codec;
    const uint8_t *sample;
    size_t len;
    uint32_t elem_size; /* as given to encode */
    int level;
    uint8_t *enc;   /* len bytes */
    uint8_t *dec;   /* len bytes */
    uint8_t id;     /* codec of the last encode */
    size_t enc_len; /* bytes of the last encode */
};

static int measure_once(struct measure_run *m, enum measure_op op)
{
    const uint32_t P = m->elem_size;
    const size_t n = m->len / (P ? P : 1);

    switch (op) {
    case OP_ENCODE:
        return kvs_codec_encode(m->codec, m->sample, m->len, m->elem_size,
                                m->level, 0, m->enc, m->len, &m->id,
                                &m->enc_len);
    case OP_DECODE:
        return kvs_codec_decode(m->codec, m->id, m->enc, m->enc_len,
                                m->elem_size, m->dec, m->len);
    case OP_SHUFFLE:
        shuffle(m->sample, m->enc, P, n);
        return 0;
    case OP_UNSHUFFLE: {
        const uint8_t *planes[SHUF_MAX_PLANES];
        for (uint32_t i = 0; i < P; i++)
            planes[i] = m->enc + i * n;
        unshuffle(planes, m->dec, P, n);
        return 0;
    }
    }
    return -EINVAL;
}

/* Bytes per second of the fastest of the runs made in MEASURE_NS. */
static int measure_bps(struct measure_run *m, enum measure_op op,
                       double *bps_out)
{
    uint64_t start = kvs_clock_mono_ns(), best = UINT64_MAX, now = start;

    for (int runs = 0; runs < MEASURE_MIN || now - start < MEASURE_NS; runs++) {
        uint64_t t0 = now;
        int ret = measure_once(m, op);

        if (ret < 0)
            return ret;
        now = kvs_clock_mono_ns();
        best = KVS_MIN(best, KVS_MAX(now - t0, 1));
    }
    *bps_out = (double)m->len * 1e9 / (double)best;
    return 0;
}

static int measure_path(struct measure_run *m, uint32_t elem_size, int level,
                        kvs_codec_path_perf_t *out)
{
    int ret;

    m->elem_size = elem_size;
    m->level = level;
    ret = measure_bps(m, OP_ENCODE, &out->compress_bps);
    if (ret < 0)
        return ret;
    ret = measure_bps(m, OP_DECODE, &out->decompress_bps);
    if (ret < 0)
        return ret;
    if (memcmp(m->dec, m->sample, m->len) != 0) {
        kvs_error("codec: measure: codec %u does not round-trip", m->id);
        return KVS_ECODEC;
    }
    out->codec = m->id;
    out->ratio = (double)m->len / (double)m->enc_len;
    if (m->id == KVS_CODEC_SHUF_ZSTD) {
        out->planes = m->enc[1];
        out->planes_zstd = (uint8_t)__builtin_popcount(m->enc[2]);
    }
    return 0;
}

int kvs_codec_measure(const void *sample, size_t len, uint32_t elem_size,
                      int level, kvs_codec_perf_t *perf_out)
{
    kvs_codec_perf_t perf = {.sample_len = len, .level = level};
    struct measure_run m = {.sample = sample, .len = len};
    int ret;

    if (!sample || len == 0 || !perf_out || level <= 0 ||
        level > ZSTD_maxCLevel() || (elem_size > 2 && elem_size != 4))
        return -EINVAL;
    ret = kvs_codec_create(&m.codec);
    if (ret < 0)
        return ret;
    ret = kvs_codec_reserve(m.codec, len);
    if (ret < 0)
        goto destroy_ctx;
    ret = -ENOMEM;
    m.enc = malloc(len);
    if (!m.enc)
        goto destroy_ctx;
    m.dec = malloc(len);
    if (!m.dec)
        goto free_enc;

    ret = measure_path(&m, 0, 0, &perf.raw);
    if (ret < 0)
        goto free_dec;
    ret = measure_path(&m, 0, level, &perf.zstd);
    if (ret < 0)
        goto free_dec;
    if (elem_size == 2 || elem_size == 4) {
        ret = measure_path(&m, elem_size, level, &perf.shuf_zstd);
        if (ret < 0)
            goto free_dec;
        ret = measure_bps(&m, OP_SHUFFLE, &perf.shuffle_bps);
        if (ret < 0)
            goto free_dec;
        ret = measure_bps(&m, OP_UNSHUFFLE, &perf.unshuffle_bps);
        if (ret < 0)
            goto free_dec;
    }
    *perf_out = perf;
    ret = 0;

free_dec:
    free(m.dec);
free_enc:
    free(m.enc);
destroy_ctx:
    kvs_codec_destroy(m.codec);
    return ret;
}
