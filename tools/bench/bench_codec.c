/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench codec: ratio and single-thread speed of each codec path on
 * one block (kvs_codec_measure), so that a run can set them beside the disk
 * figures of kvstash-bench store measured on the same machine.
 *
 *   kvstash-bench codec [-s BYTES] [-l LEVEL] [-e ELEM_SIZE] [-f FILE]
 *                       [-x SEED] [--json]
 *
 * Without -f the block is made of normal floats cut to the element size
 * (bench_fill_floats): bf16 for -e 2, the default; fp32 for -e 4; the top
 * byte of each float for -e 0 or 1. With -f it is the first BYTES of FILE
 * (all of it if shorter). MB is 10^6 bytes. No limit is printed: the codec
 * has none of its own; compare compress_out with the disk write limit.
 */
#include "tools/bench/bench.h"
#include "kvstore/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_file(const char *path, uint8_t *buf, size_t *len_io)
{
    FILE *f = fopen(path, "rb");
    size_t got;

    if (!f) {
        fprintf(stderr, "kvstash-bench codec: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    got = fread(buf, 1, *len_io, f);
    fclose(f);
    if (got == 0) {
        fprintf(stderr, "kvstash-bench codec: %s: empty\n", path);
        return -EINVAL;
    }
    *len_io = got;
    return 0;
}

static void figure(const char *name, double value, const char *unit)
{
    bench_figure(name, value, unit, -1, NULL);
}

static void figures_path(const char *name, const kvs_codec_path_perf_t *p)
{
    char fig[64];

    snprintf(fig, sizeof(fig), "codec.%s.ratio", name);
    figure(fig, p->ratio, "x");
    snprintf(fig, sizeof(fig), "codec.%s.compress", name);
    figure(fig, p->compress_bps / 1e6, "MB/s");
    /* What one thread hands the disk: compare with the disk write speed. */
    snprintf(fig, sizeof(fig), "codec.%s.compress_out", name);
    figure(fig, p->compress_bps / p->ratio / 1e6, "MB/s");
    snprintf(fig, sizeof(fig), "codec.%s.decompress", name);
    figure(fig, p->decompress_bps / 1e6, "MB/s");
    snprintf(fig, sizeof(fig), "codec.%s.codec_id", name);
    figure(fig, p->codec, "id");
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kvstash-bench codec [options]\n"
            "  -s, --size BYTES     block size (default 256k)\n"
            "  -l, --level N        zstd level (default 1)\n"
            "  -e, --elem-size N    2 bf16, 4 fp32, 0/1 bytes (default 2)\n"
            "  -f, --file FILE      measure the first BYTES of FILE\n"
            "  -x, --seed N         seed of the generated floats (1)\n"
            "      --json           one JSON object per figure\n");
}

int bench_codec_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"size", 1, 0, 's'}, {"level", 1, 0, 'l'}, {"elem-size", 1, 0, 'e'},
        {"file", 1, 0, 'f'}, {"seed", 1, 0, 'x'},  {"json", 0, 0, 'j'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    size_t len = 256 * 1024;
    int level = 1, opt, ret;
    uint32_t elem_size = 2;
    uint64_t seed = 1;
    const char *file = NULL;
    kvs_codec_perf_t perf;
    uint8_t *buf;

    while ((opt = getopt_long(argc, argv, "s:l:e:f:x:h", lo, NULL)) != -1) {
        switch (opt) {
        case 's':
            len = bench_parse_size(optarg);
            break;
        case 'l':
            level = atoi(optarg);
            break;
        case 'e':
            elem_size = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'f':
            file = optarg;
            break;
        case 'x':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'j':
            bench_json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (len == 0 || optind != argc) {
        usage(stderr);
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
        bench_fill_floats(buf, len, elem_size, seed);
    }

    ret = kvs_codec_measure(buf, len, elem_size, level, &perf);
    if (ret < 0) {
        fprintf(stderr, "kvstash-bench codec: %s\n", kvs_strerror(ret));
        goto out_free;
    }
    figure("codec.block_bytes", (double)len, "B");
    figure("codec.level", level, "level");
    figure("codec.elem_size", elem_size, "B");
    figure("codec.raw.copy", perf.raw.compress_bps / 1e6, "MB/s");
    figures_path("zstd", &perf.zstd);
    if (elem_size == 2 || elem_size == 4) {
        figures_path("shuf_zstd", &perf.shuf_zstd);
        figure("codec.shuf_zstd.planes_zstd", perf.shuf_zstd.planes_zstd,
               "planes");
        figure("codec.shuffle", perf.shuffle_bps / 1e6, "MB/s");
        figure("codec.unshuffle", perf.unshuffle_bps / 1e6, "MB/s");
    }
out_free:
    free(buf);
    return ret < 0 ? 1 : 0;
}
