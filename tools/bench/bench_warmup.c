/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench warmup: kvstash-warmup's import rate next to the daemon's
 * raw put rate, measured in the same run against the same running daemon
 * (docs/warmup.md).
 *
 * Writes a synthetic safetensors file (bf16, --layers layers of [tokens,
 * kv_heads, head_dim]) and a one-line manifest into a temporary directory,
 * then measures against the daemon:
 *  1. raw puts: blocks of the same size and parts, prepared in memory, put
 *     with the same number of batches in flight and the same batch budget
 *     (the limit: the daemon's put rate through libkvstash);
 *  2. import of the manifest into a fresh namespace (parse, map, hash,
 *     EXISTS, assemble parts, put), through the import module of
 *     kvstash-warmup itself (tools/kvstash-warmup/import.c).
 * and prints the figure warmup-import beside that limit. The raw puts run
 * twice and the second is reported (the first pays the daemon's first touch
 * of its arena); the raw blocks are deleted before the import so both runs
 * see the same free DRAM.
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvstash/kvstash.h"
#include "tools/kvstash-warmup/import.h"
#include "tools/kvstash-warmup/safetensors.h"
#include "tools/kvstash-warmup/warmup.h"

typedef struct raw_batch {
    bool busy;
    kvs_client_put_t items[64];
} raw_batch_t;

static void raw_done(void *arg, int status)
{
    raw_batch_t *b = arg;

    (void)status;
    b->busy = false;
}

/* Puts nblocks blocks of nparts parts of part bytes from mem, jobs batches
 * in flight. Returns seconds, or a negative number on failure. */
static double raw_puts(kvs_client_t *c, const kvs_warmup_opts_t *o,
                       const uint8_t *mem, uint32_t nparts, uint64_t part,
                       uint32_t nblocks, uint8_t (*keys)[16])
{
    kvs_client_limits_t lim;
    raw_batch_t *b = calloc(o->jobs, sizeof(*b));
    kvs_iov_t *iov = malloc(nparts * sizeof(*iov));
    uint64_t block = nparts * part;
    double t0;
    uint32_t per, next = 0;
    int failed = 0;

    if (!b || !iov) {
        free(b);
        free(iov);
        return -1;
    }
    kvs_client_limits(c, &lim);
    for (uint32_t p = 0; p < nparts; p++) {
        iov[p].base = mem + p * part;
        iov[p].len = part;
    }
    per = (uint32_t)(o->batch_bytes < lim.max_payload ? o->batch_bytes
                                                      : lim.max_payload) /
          (uint32_t)block;
    per = per ? per : 1;
    per = per < 64 ? per : 64;
    while ((32 + 16 + 16 + 4 * nparts) * per + 32 > 4608 && per > 1)
        per--;
    unsigned idle = 0;

    t0 = bench_now();
    while (next < nblocks) {
        bool sent = false;

        for (uint32_t j = 0; j < o->jobs && next < nblocks; j++) {
            raw_batch_t *rb = &b[j];
            uint32_t n = nblocks - next < per ? nblocks - next : per;

            if (rb->busy)
                continue;
            for (uint32_t i = 0; i < n; i++) {
                kvs_client_put_t *it = &rb->items[i];

                memset(it, 0, sizeof(*it));
                it->key.data = keys[next + i];
                it->key.len = 16;
                it->parts = iov;
                it->nparts = nparts;
                it->flags = o->put_flags;
            }
            rb->busy = true;
            if (kvs_client_put_batch_async(c, rb->items, n, raw_done, rb)) {
                rb->busy = false;
                failed = 1;
                next = nblocks;
                break;
            }
            next += n;
            sent = true;
        }
        if (!sent) {
            int got = kvs_client_progress(c);

            if (got < 0)
                failed = 1;
            /* The same back-off as import's wait: a spinning client would
             * starve a daemon on the same cores. */
            if (got == 0 && ++idle > 64) {
                struct timespec ts = {0, 20000};
                nanosleep(&ts, NULL);
            } else if (got > 0) {
                idle = 0;
            }
        }
    }
    kvs_client_wait(c);
    t0 = bench_now() - t0;
    for (uint32_t j = 0; j < o->jobs; j++)
        for (uint32_t i = 0; i < per && i < 64; i++)
            failed |= b[j].items[i].status != 0;
    free(b);
    free(iov);
    return failed ? -1 : t0;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: kvstash-bench warmup [options]   (needs a running kvstashd)\n"
        "  -a, --addr IP           daemon address ($KVSTASH_ADDR, 127.0.0.1)\n"
        "  -p, --port N            daemon port ($KVSTASH_PORT, %u)\n"
        "  -t, --token T           auth token ($KVSTASH_TOKEN)\n"
        "  -n, --ns NAME           namespace prefix ($KVSTASH_NS)\n"
        "  -j, --jobs N            put batches in flight (8)\n"
        "      --batch-kib N       payload of one put batch, at most (4096)\n"
        "      --durable           puts acknowledged once on disk\n"
        "      --no-dram           puts go straight to NVMe\n"
        "      --blocks N          blocks (256)\n"
        "      --layers N          parts of a block, one per layer (8)\n"
        "      --kv-heads N        (8)\n"
        "      --head-dim N        (128)\n"
        "      --tokens-per-block N (16)\n"
        "      --json              one JSON object per figure\n",
        KVS_DEFAULT_PORT);
}

/* A number in [lo, hi], or false with the option named on stderr. */
static bool parse_u32(const char *opt, const char *arg, uint32_t lo,
                      uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr,
                "kvstash-bench warmup: %s: '%s' is not a number in "
                "%u..%u\n",
                opt, arg, lo, hi);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

int bench_warmup_main(int argc, char **argv)
{
    enum { OPT_BATCH = 256, OPT_DURABLE, OPT_NO_DRAM, OPT_JSON };
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},
        {"ns", required_argument, NULL, 'n'},
        {"jobs", required_argument, NULL, 'j'},
        {"batch-kib", required_argument, NULL, OPT_BATCH},
        {"durable", no_argument, NULL, OPT_DURABLE},
        {"no-dram", no_argument, NULL, OPT_NO_DRAM},
        {"json", no_argument, NULL, OPT_JSON},
        {"blocks", required_argument, NULL, 'b'},
        {"layers", required_argument, NULL, 'l'},
        {"kv-heads", required_argument, NULL, 'H'},
        {"head-dim", required_argument, NULL, 'd'},
        {"tokens-per-block", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint32_t nblocks = 256, layers = 8, heads = 8, dim = 128, tpb = 16;
    uint32_t port = KVS_DEFAULT_PORT, batch_kib = 4096;
    const char *ns = getenv("KVSTASH_NS");
    kvs_warmup_opts_t o;
    char dir[] = "/tmp/kvstash-warmup-bench-XXXXXX", path[4200], raw_ns[300],
         imp_ns[300], note[160];
    kvs_safetensors_out_t *t = NULL;
    kvs_import_result_t r;
    kvs_client_t *c = NULL;
    uint8_t *data = NULL, (*keys)[16] = NULL;
    uint64_t row, half, part, total;
    double raw_s, raw_rate, imp_rate;
    char(*names)[32] = NULL;
    FILE *mf;
    int opt, rc = 2;
    bool ok = true;

    kvs_warmup_opts_default(&o);
    if (getenv("KVSTASH_PORT"))
        ok = parse_u32("KVSTASH_PORT", getenv("KVSTASH_PORT"), 1, 65535, &port);
    while (ok &&
           (opt = getopt_long(argc, argv, "a:p:t:n:j:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            o.addr = optarg;
            break;
        case 'p':
            ok = parse_u32("--port", optarg, 1, 65535, &port);
            break;
        case 't':
            o.token = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'j':
            ok = parse_u32("--jobs", optarg, 1, 256, &o.jobs);
            break;
        case OPT_BATCH:
            ok = parse_u32("--batch-kib", optarg, 1, 1u << 20, &batch_kib);
            break;
        case OPT_DURABLE:
            o.put_flags |= KVS_CLIENT_PUT_DURABLE;
            break;
        case OPT_NO_DRAM:
            o.put_flags |= KVS_CLIENT_PUT_NO_DRAM;
            break;
        case OPT_JSON:
            bench_json = true;
            break;
        case 'b':
            ok = parse_u32("--blocks", optarg, 1, 1u << 20, &nblocks);
            break;
        case 'l':
            ok = parse_u32("--layers", optarg, 1, 512, &layers);
            break;
        case 'H':
            ok = parse_u32("--kv-heads", optarg, 1, 1024, &heads);
            break;
        case 'd':
            ok = parse_u32("--head-dim", optarg, 1, 4096, &dim);
            break;
        case 'T':
            ok = parse_u32("--tokens-per-block", optarg, 1, 4096, &tpb);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!ok)
        return 2;
    if (optind != argc) {
        fprintf(stderr, "kvstash-bench warmup: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    o.port = (uint16_t)port;
    o.batch_bytes = batch_kib << 10;
    o.quiet = true;
    snprintf(raw_ns, sizeof(raw_ns), "%s-raw-%d",
             ns ? ns : "warmup-bench;dtype=bf16", (int)getpid());
    snprintf(imp_ns, sizeof(imp_ns), "%s;tokens_per_block=%u;run=%d",
             ns ? ns : "warmup-bench;dtype=bf16", tpb, (int)getpid());
    row = (uint64_t)heads * dim * 2;
    half = (uint64_t)tpb * row;
    part = 2 * half;
    total = (uint64_t)nblocks * layers * part;
    if (!mkdtemp(dir)) {
        perror("kvstash-bench warmup: mkdtemp");
        return 2;
    }
    data = malloc(total);
    keys = malloc((size_t)nblocks * sizeof(*keys));
    t = calloc(2 * layers, sizeof(*t));
    names = calloc(2 * layers, sizeof(*names));
    if (!data || !keys || !t || !names)
        goto out;
    /* Random-looking bf16 values (an LCG: the content does not matter to
     * the daemon's put path, DRAM holds blocks raw). */
    {
        uint64_t x = 0x9e3779b97f4a7c15ull;

        for (uint64_t i = 0; i + 8 <= total; i += 8) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            memcpy(data + i, &x, 8);
        }
    }
    for (uint32_t l = 0; l < 2 * layers; l++) {
        snprintf(names[l], sizeof(names[l]), "layers.%u.%c", l / 2,
                 l % 2 ? 'v' : 'k');
        t[l].name = names[l];
        t[l].dtype = "BF16";
        t[l].ndim = 3;
        t[l].shape[0] = (uint64_t)nblocks * tpb;
        t[l].shape[1] = heads;
        t[l].shape[2] = dim;
        t[l].data = data + (uint64_t)l * nblocks * half;
        t[l].len = (uint64_t)nblocks * half;
    }
    snprintf(path, sizeof(path), "%s/kv.safetensors", dir);
    if (kvs_safetensors_write(path, t, 2 * layers)) {
        fprintf(stderr, "kvstash-bench warmup: cannot write %s\n", path);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/manifest.jsonl", dir);
    mf = fopen(path, "w");
    if (!mf)
        goto out;
    fprintf(mf,
            "{\"namespace\": \"%s\", \"kv_file\": \"kv.safetensors\", "
            "\"tokens\": [",
            imp_ns);
    for (uint64_t i = 0; i < (uint64_t)nblocks * tpb; i++)
        fprintf(mf, "%s%llu", i ? "," : "",
                (unsigned long long)((i * 2654435761u) % 128000));
    fprintf(mf, "]}\n");
    if (fclose(mf))
        goto out;

    /* 1. Raw puts, then delete them. */
    if (kvs_warmup_connect(&o, raw_ns, 2, &c))
        goto out;
    for (uint32_t i = 0; i < nblocks; i++) {
        memset(keys[i], 0, 16);
        memcpy(keys[i], &i, sizeof(i));
        keys[i][8] = 0x5a;
    }
    /* Twice: the first pass touches the daemon's arena for the first
     * time (page faults), which the import would otherwise not pay. */
    for (int pass = 0; pass < 2; pass++) {
        kvs_client_key_t k[256];

        raw_s = raw_puts(c, &o, data, layers, part, nblocks, keys);
        if (raw_s <= 0) {
            fprintf(stderr,
                    "kvstash-bench warmup: raw puts failed (is DRAM "
                    "+ NVMe large enough for %.1f MiB?)\n",
                    (double)nblocks * layers * part / 1048576);
            goto out;
        }
        for (uint32_t i = 0; i < nblocks; i += 256) {
            uint32_t n = nblocks - i < 256 ? nblocks - i : 256;

            for (uint32_t j = 0; j < n; j++) {
                k[j].data = keys[i + j];
                k[j].len = 16;
            }
            kvs_client_delete(c, k, n, NULL);
        }
    }
    raw_rate = (double)nblocks * layers * part / raw_s;

    /* 2. Import. */
    if (kvs_import_run(&o, path, &r) || r.failed || r.bad_lines ||
        r.imported != nblocks) {
        fprintf(stderr, "kvstash-bench warmup: the import failed\n");
        goto out;
    }
    imp_rate = (double)r.bytes / r.seconds;
    if (!bench_json) {
        printf("blocks %u x %u parts x %llu bytes (%.1f MiB), %u batches "
               "in flight\n",
               nblocks, layers, (unsigned long long)part,
               (double)nblocks * layers * part / 1048576, o.jobs);
        printf("raw put:  %.0f blocks/s; import: %.0f blocks/s\n",
               nblocks / raw_s, nblocks / r.seconds);
    }
    snprintf(note, sizeof(note),
             "blocks=%u block_bytes=%llu jobs=%u; "
             "limit: raw client puts, same daemon",
             nblocks, (unsigned long long)(layers * part), o.jobs);
    bench_figure("warmup-import", imp_rate / 1e6, "MB/s", raw_rate / 1e6, note);
    rc = 0;
out:
    kvs_client_destroy(c);
    snprintf(path, sizeof(path), "%s/kv.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/manifest.jsonl", dir);
    unlink(path);
    rmdir(dir);
    free(names);
    free(t);
    free(keys);
    free(data);
    return rc;
}
