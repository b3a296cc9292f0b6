/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-codec-bench: ratio and single-thread speed of each codec path on
 * one block, printed as JSON lines {"figure":..., "value":..., "unit":...}
 * so that a benchmark run can set them beside the disk figures of
 * ../shared/bench/limits.sh measured in the same run.
 *
 *   kvstash-codec-bench [-s BYTES] [-l LEVEL] [-e ELEM_SIZE] [-f FILE]
 *                       [-x SEED]
 *
 * Without -f the block is made of normal floats (Box-Muller) cut to the
 * element size: bf16 (the top 16 bits of each float) for -e 2, the default;
 * fp32 for -e 4; the top byte of each float for -e 0 or 1. Little-endian. With -f it is the
 * first BYTES of FILE (all of it if shorter). MB is 10^6 bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/status.h"
#include "kvstore/codec.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1). */
static double uniform(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* Normal floats, each stored little-endian as its top elem_size bytes:
 * bf16 for 2, fp32 for 4, the top byte (an fp8-like stand-in) otherwise. */
static void fill_floats(uint8_t *p, size_t len, uint32_t elem_size,
                        uint64_t seed)
{
    const uint32_t w = elem_size == 2 || elem_size == 4 ? elem_size : 1;

    for (size_t i = 0; i < len; i += w) {
        double g = sqrt(-2.0 * log(uniform(&seed))) *
                   cos(6.283185307179586 * uniform(&seed));
        float f = (float)g;
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        for (uint32_t b = 0; b < w && i + b < len; b++)
            p[i + b] = (uint8_t)(u >> (8 * (4 - w + b)));
    }
}

static int read_file(const char *path, uint8_t *buf, size_t *len_io)
{
    FILE *f = fopen(path, "rb");
    size_t got;

    if (!f) {
        fprintf(stderr, "kvstash-codec-bench: %s: %s\n", path,
                strerror(errno));
        return -errno;
    }
    got = fread(buf, 1, *len_io, f);
    fclose(f);
    if (got == 0) {
        fprintf(stderr, "kvstash-codec-bench: %s: empty\n", path);
        return -EINVAL;
    }
    *len_io = got;
    return 0;
}

static void emit(const char *figure, double value, const char *unit)
{
    printf("{\"figure\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"}\n", figure,
           value, unit);
}

static void emit_path(const char *name, const kvs_codec_path_perf_t *p)
{
    char fig[64];

    snprintf(fig, sizeof(fig), "codec.%s.ratio", name);
    emit(fig, p->ratio, "x");
    snprintf(fig, sizeof(fig), "codec.%s.compress", name);
    emit(fig, p->compress_bps / 1e6, "MB/s");
    /* What one thread hands the disk: compare with the disk write speed. */
    snprintf(fig, sizeof(fig), "codec.%s.compress_out", name);
    emit(fig, p->compress_bps / p->ratio / 1e6, "MB/s");
    snprintf(fig, sizeof(fig), "codec.%s.decompress", name);
    emit(fig, p->decompress_bps / 1e6, "MB/s");
    snprintf(fig, sizeof(fig), "codec.%s.codec_id", name);
    emit(fig, p->codec, "id");
}

static void usage(void)
{
    fprintf(stderr, "usage: kvstash-codec-bench [-s BYTES] [-l LEVEL] "
                    "[-e ELEM_SIZE] [-f FILE] [-x SEED]\n");
}

int main(int argc, char **argv)
{
    size_t len = 256 * 1024;
    int level = 1, opt, ret;
    uint32_t elem_size = 2;
    uint64_t seed = 1;
    const char *file = NULL;
    kvs_codec_perf_t perf;
    uint8_t *buf;

    while ((opt = getopt(argc, argv, "s:l:e:f:x:h")) != -1) {
        switch (opt) {
        case 's': len = strtoull(optarg, NULL, 0); break;
        case 'l': level = atoi(optarg); break;
        case 'e': elem_size = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'f': file = optarg; break;
        case 'x': seed = strtoull(optarg, NULL, 0); break;
        default: usage(); return opt == 'h' ? 0 : 2;
        }
    }
    if (len == 0) {
        usage();
        return 2;
    }
    buf = malloc(len);
    if (!buf)
        return 1;
    if (file) {
        ret = read_file(file, buf, &len);
        if (ret < 0)
            goto out_free;
    } else {
        fill_floats(buf, len, elem_size, seed);
    }

    ret = kvs_codec_measure(buf, len, elem_size, level, &perf);
    if (ret < 0) {
        fprintf(stderr, "kvstash-codec-bench: %s\n", kvs_strerror(ret));
        goto out_free;
    }
    emit("codec.block_bytes", (double)len, "B");
    emit("codec.level", level, "level");
    emit("codec.elem_size", elem_size, "B");
    emit("codec.raw.copy", perf.raw.compress_bps / 1e6, "MB/s");
    emit_path("zstd", &perf.zstd);
    if (elem_size == 2 || elem_size == 4) {
        emit_path("shuf_zstd", &perf.shuf_zstd);
        emit("codec.shuf_zstd.planes_zstd", perf.shuf_zstd.planes_zstd,
             "planes");
        emit("codec.shuffle", perf.shuffle_bps / 1e6, "MB/s");
        emit("codec.unshuffle", perf.unshuffle_bps / 1e6, "MB/s");
    }
out_free:
    free(buf);
    return ret < 0 ? 1 : 0;
}
