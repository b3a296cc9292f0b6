/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block codec: round trips of every path on random, constant and
 * float-like data over many sizes and element sizes; the shuffle earns its
 * keep on bf16-like data; corrupted, truncated and mislabelled payloads are
 * KVS_ECORRUPT and never read or write out of bounds (every buffer here is
 * allocated at its exact size so that ASan sees one byte too far).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "kvstore/codec.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

enum data_kind { DATA_RANDOM, DATA_CONSTANT, DATA_BF16, DATA_FP32 };

/* A standard normal variate from the sum of 12 uniforms (Irwin-Hall):
 * close enough for the exponent statistics of KV tensors, and needs no
 * libm. */
static float normal(uint64_t *rng)
{
    double s = 0;

    for (int i = 0; i < 12; i++)
        s += (double)(kvs_test_rand(rng) >> 11) / 9007199254740992.0;
    return (float)(s - 6.0);
}

static uint32_t float_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return u;
}

/* Fills buf with len bytes of the given kind; bf16 values are the top 16
 * bits of normal floats, stored little-endian. */
static void fill(void *buf, size_t len, enum data_kind kind, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t rng = seed;

    switch (kind) {
    case DATA_RANDOM:
        kvs_test_fill(buf, len, seed);
        return;
    case DATA_CONSTANT:
        memset(buf, 0x3c, len);
        return;
    case DATA_BF16:
        for (size_t i = 0; i < len; i += 2) {
            uint16_t h = (uint16_t)(float_bits(normal(&rng)) >> 16);
            p[i] = (uint8_t)h;
            if (i + 1 < len)
                p[i + 1] = (uint8_t)(h >> 8);
        }
        return;
    case DATA_FP32:
        for (size_t i = 0; i < len; i += 4) {
            uint32_t u = float_bits(normal(&rng));
            for (size_t b = 0; b < 4 && i + b < len; b++)
                p[i + b] = (uint8_t)(u >> (8 * b));
        }
        return;
    }
}

static void *xmalloc(size_t len)
{
    void *p = malloc(len ? len : 1);

    assert_non_null(p);
    return p;
}

static kvs_codec_t *new_codec(void)
{
    kvs_codec_t *codec = NULL;

    assert_int_equal(kvs_codec_create(&codec), 0);
    assert_non_null(codec);
    return codec;
}

/* An encoded block in a buffer of exactly its size. */
struct encoded {
    uint8_t *buf;
    size_t len;
    uint8_t id;
};

static struct encoded encode(kvs_codec_t *codec, const void *src, size_t len,
                             uint32_t elem_size, int level, uint32_t pct)
{
    size_t cap = kvs_codec_bound(len, elem_size);
    uint8_t *dst = xmalloc(cap);
    struct encoded e = {0};

    assert_int_equal(kvs_codec_encode(codec, src, len, elem_size, level, pct,
                                      dst, cap, &e.id, &e.len),
                     0);
    assert_true(e.len <= len);
    e.buf = xmalloc(e.len);
    memcpy(e.buf, dst, e.len);
    free(dst);
    return e;
}

/* Decodes into a buffer of exactly raw_len bytes; returns the status and
 * compares with want when it is 0 and want is given. */
static int decode(kvs_codec_t *codec, uint8_t id, const void *src,
                  size_t src_len, uint32_t elem_size, size_t raw_len,
                  const void *want)
{
    uint8_t *dst = xmalloc(raw_len);
    int ret =
        kvs_codec_decode(codec, id, src, src_len, elem_size, dst, raw_len);

    if (ret == 0 && want)
        assert_memory_equal(dst, want, raw_len);
    free(dst);
    return ret;
}

static void check_round_trip(kvs_codec_t *codec, enum data_kind kind,
                             size_t len, uint32_t elem_size, int level,
                             uint32_t pct)
{
    uint8_t *src = xmalloc(len);
    struct encoded e;

    fill(src, len, kind, len * 31 + elem_size);
    e = encode(codec, src, len, elem_size, level, pct);

    if (level <= 0 || pct == 100 || len == 0)
        assert_int_equal(e.id, KVS_CODEC_RAW);
    if (elem_size == 2 || elem_size == 4)
        assert_int_not_equal(e.id, KVS_CODEC_ZSTD);
    else
        assert_int_not_equal(e.id, KVS_CODEC_SHUF_ZSTD);
    if (e.id == KVS_CODEC_RAW)
        assert_int_equal(e.len, len);
    else
        assert_true((e.len * 100) <= len * (100 - pct) && e.len < len);
    if (kind == DATA_RANDOM)
        assert_int_equal(e.id, KVS_CODEC_RAW);
    if (kind == DATA_CONSTANT && len >= 4096 && level > 0 && pct <= 10)
        assert_int_not_equal(e.id, KVS_CODEC_RAW);

    assert_int_equal(decode(codec, e.id, e.buf, e.len, elem_size, len, src), 0);
    /* elem_size 0 means "trust the header" on decode. */
    if (e.id == KVS_CODEC_SHUF_ZSTD)
        assert_int_equal(decode(codec, e.id, e.buf, e.len, 0, len, src), 0);
    free(e.buf);
    free(src);
}

static void test_round_trips(void **state)
{
    static const size_t sizes[] = {
        1,    2,    3,    5,    63,    64,    65,     127,    129,
        1001, 4095, 4096, 4097, 16387, 65536, 262144, 262147, 1 << 20,
    };
    static const uint32_t elems[] = {0, 1, 2, 4};
    static const enum data_kind kinds[] = {
        DATA_RANDOM,
        DATA_CONSTANT,
        DATA_BF16,
        DATA_FP32,
    };
    kvs_codec_t *codec = new_codec();

    (void)state;
    for (size_t k = 0; k < KVS_ARRAY_SIZE(kinds); k++)
        for (size_t s = 0; s < KVS_ARRAY_SIZE(sizes); s++)
            for (size_t e = 0; e < KVS_ARRAY_SIZE(elems); e++) {
                check_round_trip(codec, kinds[k], sizes[s], elems[e], 1, 0);
                check_round_trip(codec, kinds[k], sizes[s], elems[e], 1, 10);
                check_round_trip(codec, kinds[k], sizes[s], elems[e], 1, 100);
                check_round_trip(codec, kinds[k], sizes[s], elems[e], 0, 0);
                if (sizes[s] <= 65536)
                    check_round_trip(codec, kinds[k], sizes[s], elems[e], 3, 5);
            }
    kvs_codec_destroy(codec);
}

static void test_len_zero(void **state)
{
    kvs_codec_t *codec = new_codec();
    uint8_t dst[1], id = 0xff;
    size_t n = 99;

    (void)state;
    assert_int_equal(kvs_codec_encode(codec, NULL, 0, 2, 1, 0, dst, 0, &id, &n),
                     0);
    assert_int_equal(id, KVS_CODEC_RAW);
    assert_int_equal(n, 0);
    assert_int_equal(
        kvs_codec_decode(codec, KVS_CODEC_RAW, NULL, 0, 2, NULL, 0), 0);
    /* The encoder never writes an empty ZSTD or SHUF_ZSTD block. */
    assert_int_equal(
        kvs_codec_decode(codec, KVS_CODEC_ZSTD, NULL, 0, 0, NULL, 0),
        KVS_ECORRUPT);
    assert_int_equal(
        kvs_codec_decode(codec, KVS_CODEC_SHUF_ZSTD, NULL, 0, 2, NULL, 0),
        KVS_ECORRUPT);
    kvs_codec_destroy(codec);
}

static void test_bad_args(void **state)
{
    kvs_codec_t *codec = new_codec();
    uint8_t src[256] = {0}, dst[256], id;
    size_t n;

    (void)state;
    assert_int_equal(kvs_codec_encode(codec, src, sizeof(src), 3, 1, 0, dst,
                                      sizeof(dst), &id, &n),
                     -EINVAL);
    assert_int_equal(kvs_codec_encode(codec, src, sizeof(src), 8, 1, 0, dst,
                                      sizeof(dst), &id, &n),
                     -EINVAL);
    assert_int_equal(kvs_codec_encode(codec, src, sizeof(src), 2, 1, 101, dst,
                                      sizeof(dst), &id, &n),
                     -EINVAL);
    assert_int_equal(kvs_codec_encode(codec, src, sizeof(src), 2, 1000, 0, dst,
                                      sizeof(dst), &id, &n),
                     -EINVAL);
    assert_int_equal(
        kvs_codec_encode(codec, NULL, 1, 2, 1, 0, dst, sizeof(dst), &id, &n),
        -EINVAL);
    assert_int_equal(
        kvs_codec_encode(NULL, src, 1, 2, 1, 0, dst, sizeof(dst), &id, &n),
        -EINVAL);
    assert_int_equal(kvs_codec_encode(codec, src, sizeof(src), 2, 1, 0, dst,
                                      sizeof(src) - 1, &id, &n),
                     -ENOBUFS);
    assert_int_equal(kvs_codec_decode(codec, KVS_CODEC_RAW, NULL, 1, 0, dst, 1),
                     -EINVAL);
    assert_int_equal(kvs_codec_decode(codec, KVS_CODEC_RAW, src, 1, 0, NULL, 1),
                     -EINVAL);
    assert_int_equal(kvs_codec_reserve(codec, 1 << 20), 0);
    kvs_codec_destroy(codec);
    kvs_codec_destroy(NULL);
}

/* The reason the shuffle exists: on bf16 data it beats plain zstd, by
 * compressing the high-byte plane and storing the low one raw. */
static void test_shuffle_beats_zstd_on_bf16(void **state)
{
    const size_t len = 256 * 1024;
    kvs_codec_t *codec = new_codec();
    uint8_t *src = xmalloc(len);
    struct encoded plain, shuf;
    double r_plain, r_shuf;

    (void)state;
    fill(src, len, DATA_BF16, 7);
    plain = encode(codec, src, len, 0, 1, 0);
    shuf = encode(codec, src, len, 2, 1, 0);
    assert_int_equal(plain.id, KVS_CODEC_ZSTD);
    assert_int_equal(shuf.id, KVS_CODEC_SHUF_ZSTD);
    r_plain = (double)len / (double)plain.len;
    r_shuf = (double)len / (double)shuf.len;
    print_message("bf16 256 KiB level 1: zstd %.3f, shuffle+zstd %.3f\n",
                  r_plain, r_shuf);
    assert_true(r_plain > 1.1);
    assert_true(r_shuf > 1.3);
    assert_true(r_shuf > r_plain * 1.08);
    /* Header: version 1, 2 planes, only plane 1 (sign, exponent) zstd'd,
     * plane 0 (mantissa) raw at its full size. */
    assert_int_equal(shuf.buf[0], 1);
    assert_int_equal(shuf.buf[1], 2);
    assert_int_equal(shuf.buf[2], 0x2);
    assert_int_equal(shuf.buf[3], 0);
    assert_int_equal(shuf.buf[4] | shuf.buf[5] << 8 | shuf.buf[6] << 16 |
                         shuf.buf[7] << 24,
                     len / 2);
    free(plain.buf);
    free(shuf.buf);
    free(src);
    kvs_codec_destroy(codec);
}

/* fp32: the top plane (sign, exponent) compresses, the lowest (mantissa
 * tail) does not; a tail of 3 bytes rides at the end. */
static void test_fp32_planes_and_tail(void **state)
{
    const size_t len = 64 * 1024 + 3;
    kvs_codec_t *codec = new_codec();
    uint8_t *src = xmalloc(len);
    struct encoded e;

    (void)state;
    fill(src, len, DATA_FP32, 11);
    e = encode(codec, src, len, 4, 1, 0);
    assert_int_equal(e.id, KVS_CODEC_SHUF_ZSTD);
    assert_int_equal(e.buf[1], 4);
    assert_true(e.buf[2] & 0x8);
    assert_false(e.buf[2] & 0x1);
    assert_memory_equal(e.buf + e.len - 3, src + len - 3, 3);
    assert_int_equal(decode(codec, e.id, e.buf, e.len, 4, len, src), 0);
    free(e.buf);
    free(src);
    kvs_codec_destroy(codec);
}

/* Any status but KVS_ECORRUPT or a correct decode is a failure; a decode
 * that "succeeds" on a flipped payload byte is the block checksum's job. */
static void expect_corrupt_or_ok(int ret)
{
    if (ret != 0 && ret != KVS_ECORRUPT)
        fail_msg("decode returned %d", ret);
}

static void corrupt_one(kvs_codec_t *codec, enum data_kind kind, size_t len,
                        uint32_t elem_size)
{
    uint8_t *src = xmalloc(len);
    struct encoded e;
    uint8_t *buf;
    uint64_t rng = len;

    fill(src, len, kind, 5);
    e = encode(codec, src, len, elem_size, 1, 0);
    assert_int_not_equal(e.id, KVS_CODEC_RAW);

    /* Every truncation, and one extra byte. */
    for (size_t cut = 0; cut < e.len; cut += 1 + cut / 64) {
        buf = xmalloc(cut);
        memcpy(buf, e.buf, cut);
        assert_int_equal(decode(codec, e.id, buf, cut, elem_size, len, NULL),
                         KVS_ECORRUPT);
        free(buf);
    }
    buf = xmalloc(e.len + 1);
    memcpy(buf, e.buf, e.len);
    buf[e.len] = 0;
    assert_int_equal(decode(codec, e.id, buf, e.len + 1, elem_size, len, NULL),
                     KVS_ECORRUPT);
    free(buf);

    /* Wrong raw_len. */
    assert_int_equal(
        decode(codec, e.id, e.buf, e.len, elem_size, len + 1, NULL),
        KVS_ECORRUPT);
    assert_int_equal(
        decode(codec, e.id, e.buf, e.len, elem_size, len - 1, NULL),
        KVS_ECORRUPT);
    assert_int_equal(
        decode(codec, e.id, e.buf, e.len, elem_size, len + 4, NULL),
        KVS_ECORRUPT);
    assert_int_equal(
        decode(codec, e.id, e.buf, e.len, elem_size, len * 2, NULL),
        KVS_ECORRUPT);
    assert_int_equal(
        decode(codec, e.id, e.buf, e.len, elem_size, len / 2, NULL),
        KVS_ECORRUPT);
    assert_int_equal(decode(codec, e.id, e.buf, e.len, elem_size, 0, NULL),
                     KVS_ECORRUPT);

    /* Wrong or unknown codec id. */
    for (int id = 0; id < 256; id++)
        if (id != e.id)
            assert_int_equal(
                decode(codec, (uint8_t)id, e.buf, e.len, elem_size, len, NULL),
                KVS_ECORRUPT);

    /* Every bit of the shuffle header and of the zstd frame header is
     * checked; flips further in may decode (the checksum catches those)
     * but must never crash. */
    buf = xmalloc(e.len);
    for (size_t pos = 0; pos < e.len; pos++) {
        size_t hdr = e.id == KVS_CODEC_SHUF_ZSTD ? 4 + 4 * elem_size : 0;
        for (int bit = 0; bit < 8; bit++) {
            int ret;

            if (pos >= hdr + 4 && (kvs_test_rand(&rng) & 31))
                continue; /* sample the body, every bit of the headers */
            memcpy(buf, e.buf, e.len);
            buf[pos] ^= (uint8_t)(1u << bit);
            ret = decode(codec, e.id, buf, e.len, elem_size, len, NULL);
            if (pos < hdr)
                assert_int_equal(ret, KVS_ECORRUPT);
            else if (e.id == KVS_CODEC_ZSTD && pos < 4)
                assert_int_equal(ret, KVS_ECORRUPT); /* frame magic */
            else
                expect_corrupt_or_ok(ret);
        }
    }
    free(buf);
    if (e.id == KVS_CODEC_SHUF_ZSTD)
        assert_int_equal(decode(codec, e.id, e.buf, e.len,
                                elem_size == 2 ? 4 : 2, len, NULL),
                         KVS_ECORRUPT);
    free(e.buf);
    free(src);
}

static void test_corrupt_input(void **state)
{
    kvs_codec_t *codec = new_codec();

    (void)state;
    corrupt_one(codec, DATA_BF16, 4096, 2);
    corrupt_one(codec, DATA_BF16, 4099, 2);
    corrupt_one(codec, DATA_FP32, 8192 + 2, 4);
    corrupt_one(codec, DATA_BF16, 4097, 0);
    corrupt_one(codec, DATA_CONSTANT, 65536, 2);
    corrupt_one(codec, DATA_CONSTANT, 65536, 1);
    kvs_codec_destroy(codec);
}

/* Random bytes labelled with every codec and many raw lengths. */
static void test_garbage_input(void **state)
{
    kvs_codec_t *codec = new_codec();
    uint64_t rng = 42;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        size_t src_len = kvs_test_rand(&rng) % 300;
        size_t raw_len = kvs_test_rand(&rng) % 600;
        uint8_t id = (uint8_t)(kvs_test_rand(&rng) % 4);
        uint8_t *src = xmalloc(src_len);

        kvs_test_fill(src, src_len, kvs_test_rand(&rng));
        if (id == KVS_CODEC_SHUF_ZSTD && src_len >= 12) {
            /* A plausible header, so the checks past it are reached. */
            src[0] = 1;
            src[1] = 2;
            src[2] &= 3;
            src[3] = 0;
        }
        expect_corrupt_or_ok(decode(codec, id, src, src_len,
                                    (uint32_t)(i % 3) * 2, raw_len, NULL));
        free(src);
    }
    kvs_codec_destroy(codec);
}

static void test_measure(void **state)
{
    const size_t len = 64 * 1024;
    uint8_t *src = xmalloc(len);
    kvs_codec_perf_t perf;

    (void)state;
    fill(src, len, DATA_BF16, 3);
    assert_int_equal(kvs_codec_measure(src, len, 2, 1, &perf), 0);
    assert_int_equal(perf.sample_len, len);
    assert_int_equal(perf.raw.codec, KVS_CODEC_RAW);
    assert_int_equal(perf.zstd.codec, KVS_CODEC_ZSTD);
    assert_int_equal(perf.shuf_zstd.codec, KVS_CODEC_SHUF_ZSTD);
    assert_int_equal(perf.shuf_zstd.planes, 2);
    assert_int_equal(perf.shuf_zstd.planes_zstd, 1);
    assert_true(perf.raw.ratio == 1.0);
    assert_true(perf.shuf_zstd.ratio > perf.zstd.ratio);
    assert_true(perf.zstd.compress_bps > 0 && perf.zstd.decompress_bps > 0);
    assert_true(perf.shuf_zstd.compress_bps > 0);
    assert_true(perf.shuffle_bps > 0 && perf.unshuffle_bps > 0);

    assert_int_equal(kvs_codec_measure(src, len, 0, 1, &perf), 0);
    assert_true(perf.shuf_zstd.ratio == 0 && perf.shuffle_bps == 0);
    assert_int_equal(kvs_codec_measure(src, 0, 2, 1, &perf), -EINVAL);
    assert_int_equal(kvs_codec_measure(src, len, 2, 0, &perf), -EINVAL);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_len_zero),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_shuffle_beats_zstd_on_bf16),
        cmocka_unit_test(test_fp32_planes_and_tail),
        cmocka_unit_test(test_corrupt_input),
        cmocka_unit_test(test_garbage_input),
        cmocka_unit_test(test_measure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
