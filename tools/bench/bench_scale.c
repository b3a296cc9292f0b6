/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench scale: one node holding many blocks (issue 19). The engine
 * runs in this process, so its memory is this process's RSS
 * (/proc/self/statm) less what was resident before it opened; the DRAM
 * arena, populated at open, is subtracted as a whole.
 *
 *   scale-fixed-mib         an idle store with max_blocks 1024, less its
 *                           arena: RocksDB, io_uring rings and buffers,
 *                           bounce and staging buffers, the first buckets.
 *   scale-bytes-per-slot    what an idle store pays per max_blocks slot:
 *                           (idle RSS at max_blocks 4 N - idle RSS at 1024)
 *                           / the slots added. A table paid for by slots
 *                           and not by blocks shows here.
 *   scale-bytes-per-block   RSS growth / blocks indexed, after N blocks
 *                           (chains of 64, batches of 256, keys and parents
 *                           of 32 bytes) were put, written behind to disk
 *                           as DRAM filled (each leaving a ghost), and
 *                           flushed; limit 100 (or --max-bpb).
 *   scale-put-blocks-per-s  those puts and the flush.
 *   scale-restart-s         close, then open until it returns (the index is
 *                           loaded and the store serves); then 1,000 sampled
 *                           blocks are read back and compared byte for byte.
 *                           Target 5 s at N = 10,000,000.
 *   scale-dram-amp-<size>,  for blocks of 4 KiB, 64 KiB, 1 MiB and 2 MiB:
 *   scale-disk-amp-<size>   arena bytes taken / block bytes with the blocks
 *                           in DRAM, and data file bytes written / block
 *                           bytes after a flush (no compression). Limit 2 at
 *                           4 KiB, 1.05 above.
 *
 * --check makes the exit status 1 when bytes per block or per slot is over
 * its limit, which is what the CTest test at a small N uses.
 */
#include "tools/bench/bench.h"
#include "kvstore/store.h"
#include "common/compiler.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCALE_KEY 32u
#define SCALE_CHAIN 64u
#define SCALE_BATCH 256u

struct opts {
    const char *dir;
    uint64_t blocks;
    uint64_t block;
    uint64_t dram;
    double max_bpb; /* bytes per block allowed */
    double max_bps; /* bytes per slot allowed */
    bool amp, restart, check;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: kvstash-bench scale [options]\n"
            "  --blocks N       blocks indexed (default 100000)\n"
            "  --block BYTES    their size (default 256)\n"
            "  --dram BYTES     DRAM arena (default 64m)\n"
            "  --dir DIR        data directory, removed at the end\n"
            "                   (default ./var/bench-scale)\n"
            "  --max-bpb B      limit of scale-bytes-per-block (default 100)\n"
            "  --max-bps B      limit of scale-bytes-per-slot (default 8)\n"
            "  --no-amp         skip the space amplification runs\n"
            "  --no-restart     skip the restart\n"
            "  --check          exit 1 when a memory figure is over its limit\n"
            "  --json           one JSON object per figure\n");
}

static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void make_key(uint8_t *key, uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;

    for (unsigned w = 0; w < SCALE_KEY / 8; w++) {
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        memcpy(key + 8 * w, &x, 8);
    }
    memcpy(key, &i, 8); /* unique whatever the mixing */
}

/* The block's bytes: its number, repeated. */
static void make_block(uint8_t *p, uint64_t len, uint64_t i)
{
    for (uint64_t o = 0; o < len; o += 8)
        memcpy(p + o, &i, KVS_MIN(8ull, len - o));
}

static void config(kvs_store_config_t *c, const char *dir, uint64_t dram,
                   uint64_t block, uint64_t nblocks, uint32_t max_blocks)
{
    const uint64_t region = 64ull << 20;
    uint64_t disk = 4096 + KVS_ALIGN_UP(block, 4096ull);
    uint64_t per_region = region / disk;

    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = dram;
    c->region_bytes = (uint32_t)region;
    c->nvme_bytes = ((nblocks + per_region - 1) / per_region + 6) * region;
    c->max_block_bytes = (uint32_t)KVS_MAX(block, 4096ull);
    c->max_blocks = max_blocks;
    c->compress_level = 0;
    c->full_wait_ms = 60000;
}

static void wipe(const char *dir)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/index", dir);
    bench_rmtree(path);
    snprintf(path, sizeof(path), "%s/data.kvs", dir);
    bench_rmtree(path);
}

/* An empty store of c, and its namespace: 0, or 1 with the reason
 * printed. */
static int open_fresh(const kvs_store_config_t *c, kvs_store_t **s,
                      uint32_t *ns)
{
    int ret;

    wipe(c->dir);
    ret = kvs_store_open(c, s);
    if (ret) {
        fprintf(stderr, "scale: open: %s\n", kvs_strerror(ret));
        return 1;
    }
    ret = kvs_store_ns_open(*s, "scale", 2, ns);
    if (ret) {
        fprintf(stderr, "scale: namespace: %s\n", kvs_strerror(ret));
        kvs_store_close(*s);
        return 1;
    }
    return 0;
}

/* RSS of an idle, empty store of c, less the RSS before it opened and its
 * arena; -1 on failure. */
static double idle_rss(const kvs_store_config_t *c)
{
    uint64_t before = rss_bytes(), after;
    kvs_store_stats_t st;
    kvs_store_t *s;
    uint32_t ns;

    if (open_fresh(c, &s, &ns))
        return -1;
    usleep(200 * 1000); /* the background thread has started and slept */
    after = rss_bytes();
    kvs_store_stats(s, &st);
    kvs_store_close(s);
    wipe(c->dir);
    return (double)after - (double)before - (double)st.dram_capacity_bytes;
}

/* Puts blocks [0, n) in chains of SCALE_CHAIN, SCALE_BATCH at a time. */
static int put_all(kvs_store_t *s, uint32_t ns, uint64_t n, uint64_t block,
                   uint32_t flags, uint8_t *buf)
{
    static uint8_t keys[SCALE_BATCH + 1][SCALE_KEY];
    kvs_put_args_t pa[SCALE_BATCH];
    kvs_iov_t iov[SCALE_BATCH];
    int st[SCALE_BATCH];

    for (uint64_t i = 0; i < n; i += SCALE_BATCH) {
        unsigned m = (unsigned)KVS_MIN((uint64_t)SCALE_BATCH, n - i);
        if (i)
            make_key(keys[0], i - 1);
        for (unsigned k = 0; k < m; k++) {
            uint64_t b = i + k;
            make_key(keys[k + 1], b);
            make_block(buf + k * block, block, b);
            iov[k] = (kvs_iov_t){buf + k * block, block};
            pa[k] = (kvs_put_args_t){.ns = ns,
                                     .key = keys[k + 1],
                                     .key_len = SCALE_KEY,
                                     .parts = &iov[k],
                                     .nparts = 1,
                                     .flags = flags};
            if (b % SCALE_CHAIN) {
                pa[k].parent = keys[k];
                pa[k].parent_len = SCALE_KEY;
            }
        }
        int ret = kvs_store_put_batch(s, pa, m, st);
        for (unsigned k = 0; !ret && k < m; k++)
            ret = st[k];
        if (ret) {
            fprintf(stderr, "scale: put of block %llu: %s\n",
                    (unsigned long long)i, kvs_strerror(ret));
            return ret;
        }
    }
    return kvs_store_flush(s);
}

/* Reads 1,000 blocks spread over [0, n) and compares them; the misses. */
static uint64_t sample(kvs_store_t *s, uint32_t ns, uint64_t n, uint64_t block,
                       uint8_t *buf)
{
    uint64_t bad = 0, step = n > 1000 ? n / 1000 : 1;
    uint8_t key[SCALE_KEY];

    for (uint64_t i = 0; i < n; i += step) {
        kvs_get_args_t ga = {.ns = ns,
                             .key = key,
                             .key_len = SCALE_KEY,
                             .buf = buf,
                             .cap = block};
        kvs_block_info_t info;
        make_key(key, i);
        make_block(buf + block, block, i);
        if (kvs_store_get(s, &ga, &info) || info.data_len != block ||
            memcmp(buf, buf + block, block))
            bad++;
    }
    return bad;
}

static int scale_run(const struct opts *o, bool *over)
{
    uint64_t n = o->blocks;
    uint32_t slots = (uint32_t)KVS_MIN(4 * n, 1ull << 28);
    kvs_store_config_t c;
    kvs_store_stats_t st;
    kvs_store_t *s;
    uint8_t *buf;
    uint32_t ns;
    char note[256];
    double small, big;
    int ret;

    /* The first open of a process also pays for what stays after close
     * (RocksDB's statics, the heap's growth): one open first, not counted. */
    config(&c, o->dir, o->dram, o->block, n, 1024);
    if (idle_rss(&c) < 0)
        return 1;
    small = idle_rss(&c);
    config(&c, o->dir, o->dram, o->block, n, slots);
    big = idle_rss(&c);
    if (small < 0 || big < 0)
        return 1;
    snprintf(note, sizeof(note), "engine only, %llu MiB arena left out",
             (unsigned long long)(o->dram >> 20));
    bench_figure("scale-fixed-mib", small / 1048576.0, "MiB", 64, note);
    double per_slot = (big - small) / (double)(slots - 1024);
    snprintf(note, sizeof(note), "max_blocks %u vs 1024, idle", slots);
    bench_figure("scale-bytes-per-slot", per_slot, "B", o->max_bps, note);
    *over |= per_slot > o->max_bps;

    buf = malloc(2 * KVS_MAX(SCALE_BATCH * o->block, 2 * o->block));
    if (!buf)
        return 1;
    uint64_t before = rss_bytes();
    if (open_fresh(&c, &s, &ns)) {
        free(buf);
        return 1;
    }
    usleep(200 * 1000);
    uint64_t idle = rss_bytes();
    double t0 = bench_now();
    ret = put_all(s, ns, n, o->block, 0, buf);
    double t1 = bench_now();
    uint64_t full = rss_bytes();
    kvs_store_stats(s, &st);
    if (ret || st.blocks != n) {
        fprintf(stderr, "scale: %llu blocks indexed of %llu\n",
                (unsigned long long)st.blocks, (unsigned long long)n);
        kvs_store_close(s);
        free(buf);
        return 1;
    }
    double bpb = ((double)full - (double)idle) / (double)n;
    snprintf(note, sizeof(note),
             "%llu blocks of %llu B, max_blocks %u; idle store %.1f MiB",
             (unsigned long long)n, (unsigned long long)o->block, slots,
             ((double)idle - (double)before - (double)st.dram_capacity_bytes) /
                 1048576.0);
    bench_figure("scale-bytes-per-block", bpb, "B", o->max_bpb, note);
    *over |= bpb > o->max_bpb;
    snprintf(note, sizeof(note), "batches of %u, written behind, then flush",
             SCALE_BATCH);
    bench_figure("scale-put-blocks-per-s", (double)n / (t1 - t0), "blocks/s",
                 -1, note);

    if (o->restart) {
        kvs_store_close(s);
        t0 = bench_now();
        ret = kvs_store_open(&c, &s);
        t1 = bench_now();
        if (ret) {
            fprintf(stderr, "scale: reopen: %s\n", kvs_strerror(ret));
            free(buf);
            return 1;
        }
        kvs_store_ns_open(s, "scale", 2, &ns);
        kvs_store_stats(s, &st);
        uint64_t bad = sample(s, ns, n, o->block, buf);
        snprintf(note, sizeof(note),
                 "%llu blocks indexed after restart, %llu of %llu sampled "
                 "blocks unreadable; RSS %.1f MiB",
                 (unsigned long long)st.blocks, (unsigned long long)bad,
                 (unsigned long long)KVS_MIN(n, 1000ull),
                 ((double)rss_bytes() - (double)before -
                  (double)st.dram_capacity_bytes) /
                     1048576.0);
        bench_figure("scale-restart-s", t1 - t0, "s", 5, note);
        if (bad || st.blocks != n)
            ret = 1;
    }
    kvs_store_close(s);
    wipe(o->dir);
    free(buf);
    return ret ? 1 : 0;
}

/* Space amplification of one block size in DRAM and on disk. */
static int amp_run(const struct opts *o, uint64_t size, const char *name)
{
    uint64_t k = KVS_MAX(16ull, (32ull << 20) / size);
    kvs_store_config_t c;
    kvs_store_stats_t st;
    kvs_store_t *s;
    uint8_t *buf;
    uint32_t ns;
    char fig[64];
    int ret = 0;

    /* DRAM room for all of them at three times their size, so nothing is
     * written behind before they are measured. */
    config(&c, o->dir, KVS_ALIGN_UP(3 * k * (size + 8192), 2ull << 20), size, k,
           (uint32_t)(k + 1024));
    c.dram_high_pct = 95;
    buf = malloc(size);
    if (!buf)
        return 1;
    if (open_fresh(&c, &s, &ns)) {
        free(buf);
        return 1;
    }
    uint8_t key[SCALE_KEY];
    for (uint64_t i = 0; i < k && !ret; i++) {
        kvs_iov_t iov = {buf, size};
        kvs_put_args_t pa = {.ns = ns,
                             .key = key,
                             .key_len = SCALE_KEY,
                             .parts = &iov,
                             .nparts = 1};
        make_key(key, i);
        make_block(buf, size, i);
        ret = kvs_store_put(s, &pa);
    }
    kvs_store_stats(s, &st);
    double logical = (double)k * (double)size;
    double dram = (double)st.dram_used_bytes / logical;
    if (!ret)
        ret = kvs_store_flush(s);
    kvs_store_stats(s, &st);
    double disk = (double)st.bytes_written / logical;
    kvs_store_close(s);
    wipe(o->dir);
    free(buf);
    if (ret) {
        fprintf(stderr, "scale: %s blocks: %s\n", name, kvs_strerror(ret));
        return 1;
    }
    double limit = size <= 4096 ? 2.0 : 1.05;
    snprintf(fig, sizeof(fig), "scale-dram-amp-%s", name);
    bench_figure(fig, dram, "ratio", limit, "arena bytes / block bytes");
    snprintf(fig, sizeof(fig), "scale-disk-amp-%s", name);
    bench_figure(fig, disk, "ratio", limit,
                 "data file bytes written / block bytes, no compression");
    return 0;
}

int bench_scale_main(int argc, char **argv)
{
    struct opts o = {.dir = "./var/bench-scale",
                     .blocks = 100000,
                     .block = 256,
                     .dram = 64ull << 20,
                     .max_bpb = 100,
                     .max_bps = 8,
                     .amp = true,
                     .restart = true};
    static const struct option lo[] = {
        {"blocks", 1, 0, 'n'},  {"block", 1, 0, 'b'},
        {"dram", 1, 0, 'm'},    {"dir", 1, 0, 'd'},
        {"max-bpb", 1, 0, 'B'}, {"max-bps", 1, 0, 'S'},
        {"no-amp", 0, 0, 'A'},  {"no-restart", 0, 0, 'R'},
        {"check", 0, 0, 'c'},   {"json", 0, 0, 'j'},
        {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    bool over = false;
    int ch, ret;

    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'n':
            o.blocks = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            o.block = bench_parse_size(optarg);
            break;
        case 'm':
            o.dram = bench_parse_size(optarg);
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'B':
            o.max_bpb = strtod(optarg, NULL);
            break;
        case 'S':
            o.max_bps = strtod(optarg, NULL);
            break;
        case 'A':
            o.amp = false;
            break;
        case 'R':
            o.restart = false;
            break;
        case 'c':
            o.check = true;
            break;
        case 'j':
            bench_json = true;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    if (o.blocks < 1024 || o.blocks > (1ull << 26) || o.block == 0 ||
        o.block > (16ull << 20) || o.dram < (16ull << 20)) {
        fprintf(stderr, "scale: --blocks 1024 .. 2^26, --block 1 .. 16m, "
                        "--dram at least 16m\n");
        return 2;
    }
    ret = scale_run(&o, &over);
    if (!ret && o.amp) {
        static const struct {
            uint64_t size;
            const char *name;
        } sz[] = {
            {4096, "4k"}, {65536, "64k"}, {1u << 20, "1m"}, {2u << 20, "2m"}};
        for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]) && !ret; i++)
            ret = amp_run(&o, sz[i].size, sz[i].name);
    }
    if (ret)
        return 1;
    return o.check && over ? 1 : 0;
}
