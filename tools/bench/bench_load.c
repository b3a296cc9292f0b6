/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench modes of the daemon under load (issue 12), each against a
 * kvstashd this bench starts, every client a process of its own (forked
 * before it opens UCX, which does not survive fork()):
 *
 *   net-match-load  MATCH of a 128-key chain, p99, by one client while a
 *                   second GETs cold blocks from the NVMe tier as fast as
 *                   the disk gives them (a window of GETs in flight) and a
 *                   third runs VERIFY after VERIFY; the limit is the same
 *                   client's MATCH p99 with the daemon otherwise idle,
 *                   measured in the same run. Rounds of (alone, loaded)
 *                   back to back, the order alternating; the round with the
 *                   median ratio is reported. Target ratio <= 1.5.
 *   net-mixed       N client processes (64), each a loop of GET (50%),
 *                   PUT (25%) and MATCH (25%), one at a time: aggregate
 *                   MB/s of block bytes moved and p99 per opcode over every
 *                   client's samples; the median of the rounds (no limit,
 *                   no target: a figure to watch).
 *   net-load        both.
 *
 * The daemon of net-match-load has a small DRAM tier (64 MiB) and cold
 * blocks (256 MiB, random bytes so zstd cannot shrink them) put straight
 * to disk, so that a GET promotes a disk-only block far more often than it
 * finds one in DRAM (the loader reports how often). net-mixed runs on a
 * DRAM-only daemon that holds its whole working set.
 */
#include "tools/bench/bench.h"
#include "tools/bench/bench_daemon.h"
#include "common/compiler.h"
#include "common/fs.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvstash/kvstash.h"

#define CHAIN 128        /* keys of a MATCH */
#define CHAIN_BLOCK 4096 /* bytes of a chain's block */
#define MIXED_BLOCK (64u << 10)
#define MIXED_SHARED 1024 /* blocks every net-mixed client GETs */
#define MIXED_OWN 16      /* blocks each net-mixed client replaces */
#define LAT_CAP 2000000   /* latency samples per process and opcode */

typedef struct load_opts {
    const char *daemon;
    const char *dir;
    unsigned seconds;
    unsigned rounds;
    unsigned clients;   /* net-mixed processes */
    unsigned threads;   /* the daemon's daemon.threads */
    unsigned window;    /* cold GETs in flight */
    unsigned cold_mib;  /* cold blocks, in all */
    unsigned block_kib; /* bytes of a cold block */
    unsigned dram_mib;  /* of the net-match-load daemon */
    int busy_us;        /* daemon and clients spin this long; -1: auto */
    int disk_spin_us;   /* the daemon's busy_poll_disk_us; -1: its default */
    uint16_t port;      /* the daemon of the figure being run */
} load_opts_t;

/* ---- processes ------------------------------------------------------ */

static kvs_client_t *connect_or_die(const load_opts_t *o, uint32_t busy_us)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS |
                      KVS_CLIENT_PARAM_BUSY_POLL_US |
                      KVS_CLIENT_PARAM_TIMEOUT_MS,
        .port = o->port,
        .ns = "bench-load",
        .busy_poll_us = busy_us,
        .timeout_ms = 60000,
    };
    kvs_client_t *c;
    int ret = kvs_client_create(&p, &c);

    if (ret) {
        fprintf(stderr, "bench: cannot connect to port %u: %s\n", o->port,
                kvs_strerror(ret));
        _exit(1);
    }
    return c;
}

/* A child process: runs fn, which writes its result to fd, then exits.
 * The parent gets the read end of the pipe in *fd_out. */
typedef void (*child_fn)(const load_opts_t *o, unsigned idx, int fd);

static pid_t spawn(const load_opts_t *o, child_fn fn, unsigned idx, int *fd_out)
{
    int p[2];
    pid_t pid;

    if (pipe(p) != 0) {
        fprintf(stderr, "bench: pipe: %m\n");
        exit(1);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %m\n");
        exit(1);
    }
    if (pid == 0) {
        close(p[0]);
        fn(o, idx, p[1]);
        close(p[1]);
        _exit(0);
    }
    close(p[1]);
    *fd_out = p[0];
    return pid;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(1);
        p += w;
        len -= (size_t)w;
    }
}

/* Reads len bytes; false at a short read (the child failed). */
static bool read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t r = read(fd, p, len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
    }
    return true;
}

/* Waits for a child; false (and a word on stderr) unless it exited 0. */
static bool reap(pid_t pid, const char *what)
{
    int st;

    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "bench: %s process failed\n", what);
        return false;
    }
    return true;
}

/* ---- data ------------------------------------------------------------ */

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    for (size_t i = 0; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

/* The 32-byte keys of a 128-block chain, like sha256 prefix hashes. */
typedef struct chain {
    char names[CHAIN][33];
    kvs_client_key_t keys[CHAIN];
} chain_t;

static void chain_init(chain_t *ch, unsigned id)
{
    for (unsigned k = 0; k < CHAIN; k++) {
        snprintf(ch->names[k], sizeof(ch->names[k]), "%08x%024x", id,
                 k * 2654435761u);
        ch->keys[k] = (kvs_client_key_t){.data = ch->names[k], .len = 32};
    }
}

static void chain_put(kvs_client_t *c, const chain_t *ch)
{
    uint8_t block[CHAIN_BLOCK];

    memset(block, 1, sizeof(block));
    for (unsigned k = 0; k < CHAIN; k++)
        if (kvs_client_put(c, ch->names[k], 32, block, sizeof(block), 0)) {
            fprintf(stderr, "bench: put of a chain block failed\n");
            _exit(1);
        }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return x < y ? -1 : x > y;
}

static double pct(float *lat, size_t n, unsigned p)
{
    if (!n)
        return -1;
    qsort(lat, n, sizeof(*lat), cmp_float);
    return lat[KVS_MIN(n - 1, n * p / 100)];
}

static void key_of(char *buf, size_t cap, const char *pfx, unsigned i)
{
    snprintf(buf, cap, "%s-%u", pfx, i);
}

/* Prints the daemon's lock counters (STAT lock_*, rlock_*: how often the
 * store's locks were found held, common/lockstat.h) for the runs so far;
 * a process of its own, like every client. */
static void locks_child(const load_opts_t *o, unsigned idx, int fd)
{
    static const char *const names[] = {
        "lock_acquired",  "lock_contended",  "lock_wait_us",
        "rlock_acquired", "rlock_contended", "rlock_wait_us"};
    kvs_client_t *c = connect_or_die(o, 0);
    kvs_client_stat_t st[160];
    uint64_t v[6] = {0};
    size_t n = 0;
    uint8_t ok = 1;

    (void)idx;
    if (kvs_client_stat(c, st, KVS_ARRAY_SIZE(st), &n) == 0)
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < KVS_ARRAY_SIZE(names); k++)
                if (!strcmp(st[i].name, names[k]))
                    v[k] = st[i].value;
    kvs_client_destroy(c);
    fprintf(stderr,
            "bench: store lock: %llu taken by requests, %llu found held "
            "(%.3f%%), %llu us waited; reader lock: %llu taken, %llu found "
            "held, %llu us waited\n",
            (unsigned long long)v[0], (unsigned long long)v[1],
            v[0] ? 100.0 * (double)v[1] / (double)v[0] : 0.0,
            (unsigned long long)v[2], (unsigned long long)v[3],
            (unsigned long long)v[4], (unsigned long long)v[5]);
    write_all(fd, &ok, 1);
}

static void report_locks(const load_opts_t *o)
{
    uint8_t ok = 0;
    int fd;
    pid_t p = spawn(o, locks_child, 0, &fd);

    (void)read_all(fd, &ok, 1);
    (void)reap(p, "STAT");
    close(fd);
}

/* ---- net-match-load ---------------------------------------------------- */

static unsigned cold_blocks(const load_opts_t *o)
{
    return (unsigned)(((uint64_t)o->cold_mib << 10) / o->block_kib);
}

/* Puts the cold blocks straight to disk, and the MATCH chain. */
static void preload_child(const load_opts_t *o, unsigned idx, int fd)
{
    kvs_client_t *c = connect_or_die(o, 0);
    size_t size = (size_t)o->block_kib << 10;
    uint8_t *buf = malloc(size);
    unsigned n = cold_blocks(o);
    chain_t *ch = malloc(sizeof(*ch));
    char key[32];
    uint8_t ok = 1;

    (void)idx;
    if (!buf || !ch)
        _exit(1);
    for (unsigned i = 0; i < n; i++) {
        int ret;

        fill_random(buf, size, i + 1);
        key_of(key, sizeof(key), "cold", i);
        ret = kvs_client_put(c, key, (uint32_t)strlen(key), buf, size,
                             KVS_CLIENT_PUT_NO_DRAM);
        if (ret) {
            fprintf(stderr, "bench: put %s: %s\n", key, kvs_strerror(ret));
            _exit(1);
        }
    }
    chain_init(ch, 1);
    chain_put(c, ch);
    kvs_client_destroy(c);
    write_all(fd, &ok, 1);
    free(ch);
    free(buf);
}

typedef struct match_res {
    double p50, p99; /* us */
    uint64_t n;
} match_res_t;

/* MATCHes of the chain, one at a time, for o->seconds. */
static void match_child(const load_opts_t *o, unsigned idx, int fd)
{
    kvs_client_t *c = connect_or_die(o, (uint32_t)o->busy_us);
    chain_t *ch = malloc(sizeof(*ch));
    float *lat = malloc(LAT_CAP * sizeof(*lat));
    kvs_client_match_result_t r;
    match_res_t res = {0};
    double end;

    (void)idx;
    if (!ch || !lat)
        _exit(1);
    chain_init(ch, 1);
    for (unsigned i = 0; i < 200; i++)
        kvs_client_match(c, ch->keys, CHAIN, 0, 0, NULL, &r);
    end = bench_now() + o->seconds;
    while (res.n < LAT_CAP && bench_now() < end) {
        double t0 = bench_now();
        int ret = kvs_client_match(c, ch->keys, CHAIN, 0, 0, NULL, &r);

        lat[res.n++] = (float)((bench_now() - t0) * 1e6);
        if (ret || r.matched != CHAIN) {
            fprintf(stderr, "bench: match: %s, %zu matched\n",
                    kvs_strerror(ret), r.matched);
            _exit(1);
        }
    }
    kvs_client_destroy(c);
    res.p99 = pct(lat, res.n, 99);
    res.p50 = lat[res.n / 2];
    write_all(fd, &res, sizeof(res));
    free(lat);
    free(ch);
}

typedef struct cold_res {
    double mbps;
    uint64_t gets, from_disk;
    int errors;
} cold_res_t;

/* The cold GETs: o->window in flight, each of a random cold block, until
 * the deadline (the MATCH client's run, with a margin either side). */
typedef struct cold_getter {
    kvs_client_t *c;
    kvs_client_get_t *gets;
    unsigned *slot;
    char (*keys)[32];
    unsigned nkeys;
    uint64_t rng;
    uint64_t bytes; /* received */
    bool stop;
    cold_res_t res;
} cold_getter_t;

static cold_getter_t *cur_getter;

static void cold_done(void *arg, int status);

static void cold_issue(cold_getter_t *g, unsigned i)
{
    unsigned k;

    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    k = (unsigned)(g->rng % g->nkeys);
    key_of(g->keys[i], sizeof(g->keys[i]), "cold", k);
    g->gets[i].key = (kvs_client_key_t){.data = g->keys[i],
                                        .len = (uint32_t)strlen(g->keys[i])};
    if (kvs_client_get_batch_async(g->c, &g->gets[i], 1, 0, cold_done,
                                   &g->slot[i]) != 0)
        g->res.errors++;
}

static void cold_done(void *arg, int status)
{
    cold_getter_t *g = cur_getter;
    unsigned i = *(unsigned *)arg;

    if (status) {
        g->res.errors++;
    } else {
        g->res.gets++;
        g->res.from_disk += g->gets[i].tier == KVS_TIER_NVME;
        g->bytes += g->gets[i].len;
    }
    if (!g->stop)
        cold_issue(g, i);
}

static void cold_child(const load_opts_t *o, unsigned idx, int fd)
{
    size_t size = (size_t)o->block_kib << 10;
    cold_getter_t g = {.nkeys = cold_blocks(o), .rng = 88172645463325252ull};
    uint8_t *buf = malloc((size_t)o->window * size);
    double t0, t1;

    (void)idx;
    g.c = connect_or_die(o, (uint32_t)o->busy_us);
    g.gets = calloc(o->window, sizeof(*g.gets));
    g.slot = calloc(o->window, sizeof(*g.slot));
    g.keys = calloc(o->window, sizeof(*g.keys));
    if (!buf || !g.gets || !g.slot || !g.keys)
        _exit(1);
    memset(buf, 0, (size_t)o->window * size);
    cur_getter = &g;
    t0 = bench_now();
    for (unsigned i = 0; i < o->window; i++) {
        g.slot[i] = i;
        g.gets[i] =
            (kvs_client_get_t){.buf = buf + (size_t)i * size, .cap = size};
        cold_issue(&g, i);
    }
    /* Half a second before the MATCH client starts, half a second after
     * it ends. */
    while ((t1 = bench_now()) < t0 + o->seconds + 1.0)
        o->busy_us > 0 ? kvs_client_progress(g.c)
                       : kvs_client_progress_wait(g.c, 10);
    g.stop = true;
    kvs_client_wait(g.c);
    kvs_client_destroy(g.c);
    g.res.mbps = (double)g.bytes / (t1 - t0) / 1e6;
    write_all(fd, &g.res, sizeof(g.res));
    free(buf);
    free(g.gets);
    free(g.slot);
    free(g.keys);
}

typedef struct verify_res {
    uint64_t runs, checked, bad;
    int errors;
} verify_res_t;

/* VERIFY after VERIFY until the deadline; the one running then is waited
 * for, so that none is left running into the next phase. */
static void verify_child(const load_opts_t *o, unsigned idx, int fd)
{
    kvs_client_t *c = connect_or_die(o, 0);
    double end = bench_now() + o->seconds + 1.0;
    verify_res_t res = {0};

    (void)idx;
    while (bench_now() < end) {
        uint64_t checked = 0, bad = 0;

        if (kvs_client_verify(c, &checked, &bad) != 0) {
            res.errors++;
            usleep(100000);
            continue;
        }
        res.runs++;
        res.checked += checked;
        res.bad += bad;
    }
    kvs_client_destroy(c);
    write_all(fd, &res, sizeof(res));
}

/* One MATCH run, alone or beside the cold GETs and VERIFY; its p99 in us,
 * -1 if a process failed. */
static double match_phase(const load_opts_t *o, bool loaded, cold_res_t *cold,
                          verify_res_t *ver)
{
    pid_t pc = 0, pv = 0, pm;
    int fc = -1, fv = -1, fm;
    match_res_t m;
    bool ok = true;

    if (loaded) {
        pc = spawn(o, cold_child, 0, &fc);
        pv = spawn(o, verify_child, 0, &fv);
        usleep(500000);
    }
    pm = spawn(o, match_child, 0, &fm);
    ok &= read_all(fm, &m, sizeof(m));
    ok &= reap(pm, "MATCH");
    close(fm);
    if (loaded) {
        ok &= read_all(fc, cold, sizeof(*cold)) && cold->errors == 0;
        ok &= reap(pc, "cold GET");
        ok &= read_all(fv, ver, sizeof(*ver)) && ver->errors == 0;
        ok &= reap(pv, "VERIFY");
        close(fc);
        close(fv);
        fprintf(stderr,
                "bench: loaded round: MATCH p50 %.1f p99 %.1f us (%llu); "
                "cold GETs %.0f MB/s, %llu of %llu from NVMe; %llu VERIFY "
                "runs\n",
                m.p50, m.p99, (unsigned long long)m.n, cold->mbps,
                (unsigned long long)cold->from_disk,
                (unsigned long long)cold->gets, (unsigned long long)ver->runs);
    } else {
        fprintf(stderr, "bench: alone round: MATCH p50 %.1f p99 %.1f us\n",
                m.p50, m.p99);
    }
    return ok ? m.p99 : -1;
}

/* Starts the daemon in sub with args and fills it with the blocks that fn
 * (a child process) puts; its pid, or -1 (the reason on stderr). */
static pid_t start_loaded(load_opts_t *o, const char *sub,
                          const char *const *args, child_fn fn)
{
    uint8_t ok = 0;
    pid_t d, pp;
    int fp;

    d = bench_daemon_start(o->daemon, sub, args, &o->port);
    if (d < 0)
        return -1;
    pp = spawn(o, fn, 0, &fp);
    if (!read_all(fp, &ok, 1) || !reap(pp, "preload")) {
        close(fp);
        bench_daemon_stop(d);
        return -1;
    }
    close(fp);
    return d;
}

static int fig_match_load(load_opts_t *o)
{
    char sub[PATH_MAX], dram[32], nvme[32], busy[48], what[400], thr[48];
    char spin[48];
    const char *args[] = {dram,
                          nvme,
                          busy,
                          thr,
                          "--log-level=warn",
                          "--set=store.compress_level=0",
                          o->disk_spin_us >= 0 ? spin : NULL,
                          NULL};
    double alone[BENCH_ROUNDS_MAX], loaded[BENCH_ROUNDS_MAX];
    double cold_mbps[BENCH_ROUNDS_MAX], disk_share = 0;
    uint64_t vruns = 0;
    pid_t d;

    snprintf(sub, sizeof(sub), "%s/match-load", o->dir);
    snprintf(dram, sizeof(dram), "--dram-mib=%u", o->dram_mib);
    /* Room for the cold blocks and the regions a reclaim needs. */
    snprintf(nvme, sizeof(nvme), "--nvme-mib=%u", o->cold_mib * 2 + 256);
    snprintf(busy, sizeof(busy), "--set=daemon.busy_poll_us=%d", o->busy_us);
    snprintf(thr, sizeof(thr), "--set=daemon.threads=%u", o->threads);
    snprintf(spin, sizeof(spin), "--set=daemon.busy_poll_disk_us=%d",
             o->disk_spin_us);
    d = start_loaded(o, sub, args, preload_child);
    if (d < 0)
        return 1;
    for (unsigned r = 0; r < o->rounds; r++) {
        cold_res_t cold = {0};
        verify_res_t ver = {0};

        for (int step = 0; step < 2; step++) {
            if ((step == 0) == (r % 2 == 0))
                alone[r] = match_phase(o, false, NULL, NULL);
            else
                loaded[r] = match_phase(o, true, &cold, &ver);
        }
        if (alone[r] < 0 || loaded[r] < 0) {
            bench_daemon_stop(d);
            return 1;
        }
        cold_mbps[r] = cold.mbps;
        disk_share += cold.gets ? (double)cold.from_disk / cold.gets : 0;
        vruns += ver.runs;
    }
    report_locks(o);
    bench_daemon_stop(d);
    snprintf(what, sizeof(what),
             "p99 us of one client's 128-key MATCH while another GETs "
             "random %u KiB blocks of %u MiB (%.0f%% from NVMe), %u in "
             "flight, and VERIFY runs (%llu runs); limit = the same MATCH "
             "p99 alone; %u MiB DRAM; target ratio <= 1.5",
             o->block_kib, o->cold_mib, 100 * disk_share / o->rounds, o->window,
             (unsigned long long)vruns, o->dram_mib);
    bench_report_rounds_unit("net-match128-p99-under-disk-load", "us",
                             o->rounds, loaded, alone, what);
    bench_report_rounds("net-get-cold-under-match", o->rounds, cold_mbps,
                        (double[BENCH_ROUNDS_MAX]){0},
                        "the cold GETs of net-match128-p99-under-disk-load, "
                        "MB/s (no limit)");
    return 0;
}

/* ---- net-mixed ----------------------------------------------------------- */

enum { OP_GET, OP_PUT, OP_MATCH, OP_N };
static const char *const op_names[OP_N] = {"get", "put", "match"};

typedef struct mixed_hdr {
    double secs;
    uint64_t bytes;
    uint64_t n[OP_N];
    int errors;
} mixed_hdr_t;

/* One client of net-mixed: waits for the go byte on stdin's stand-in
 * (the pipe passed as idx's fd, see fig_mixed), then loops. */
static int mixed_go_fd = -1;

static void mixed_child(const load_opts_t *o, unsigned idx, int fd)
{
    kvs_client_t *c = connect_or_die(o, 0);
    uint8_t *buf = malloc(MIXED_BLOCK);
    float *lat[OP_N];
    chain_t *ch = malloc(sizeof(*ch));
    mixed_hdr_t h = {0};
    uint64_t rng = 0x2545f4914f6cdd1dull * (idx + 1);
    kvs_client_match_result_t mr;
    char key[32], go;
    double t0, t1, end;
    size_t cap = LAT_CAP / 8;

    for (int i = 0; i < OP_N; i++)
        lat[i] = malloc(cap * sizeof(float));
    if (!buf || !ch || !lat[0] || !lat[1] || !lat[2])
        _exit(1);
    fill_random(buf, MIXED_BLOCK, idx + 7);
    chain_init(ch, 2);
    if (!read_all(mixed_go_fd, &go, 1))
        _exit(1);
    t0 = bench_now();
    end = t0 + o->seconds;
    while ((t1 = bench_now()) < end) {
        unsigned dice, op;
        size_t len = 0;
        int ret;

        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        dice = (unsigned)(rng % 4);
        op = dice < 2 ? OP_GET : dice == 2 ? OP_PUT : OP_MATCH;
        if (op == OP_GET) {
            key_of(key, sizeof(key), "mx", (unsigned)(rng >> 8) % MIXED_SHARED);
            ret = kvs_client_get(c, key, (uint32_t)strlen(key), buf,
                                 MIXED_BLOCK, &len);
        } else if (op == OP_PUT) {
            snprintf(key, sizeof(key), "mx-%u-%u", idx,
                     (unsigned)(rng >> 8) % MIXED_OWN);
            len = MIXED_BLOCK;
            ret = kvs_client_put(c, key, (uint32_t)strlen(key), buf, len, 0);
        } else {
            ret = kvs_client_match(c, ch->keys, CHAIN, 0, 0, NULL, &mr);
            if (!ret && mr.matched != CHAIN)
                ret = KVS_ENOTFOUND;
        }
        if (ret) {
            h.errors++;
            continue;
        }
        h.bytes += len;
        if (h.n[op] < cap)
            lat[op][h.n[op]] = (float)((bench_now() - t1) * 1e6);
        h.n[op]++;
    }
    kvs_client_destroy(c);
    h.secs = t1 - t0;
    for (int i = 0; i < OP_N; i++)
        h.n[i] = KVS_MIN(h.n[i], (uint64_t)cap);
    write_all(fd, &h, sizeof(h));
    for (int i = 0; i < OP_N; i++)
        write_all(fd, lat[i], h.n[i] * sizeof(float));
    for (int i = 0; i < OP_N; i++)
        free(lat[i]);
    free(ch);
    free(buf);
}

/* The blocks every client GETs, and the chain every client MATCHes. */
static void mixed_load_child(const load_opts_t *o, unsigned idx, int fd)
{
    kvs_client_t *c = connect_or_die(o, 0);
    uint8_t *buf = malloc(MIXED_BLOCK);
    chain_t *ch = malloc(sizeof(*ch));
    char key[32];
    uint8_t ok = 1;

    (void)idx;
    if (!buf || !ch)
        _exit(1);
    for (unsigned i = 0; i < MIXED_SHARED; i++) {
        fill_random(buf, MIXED_BLOCK, i + 1);
        key_of(key, sizeof(key), "mx", i);
        if (kvs_client_put(c, key, (uint32_t)strlen(key), buf, MIXED_BLOCK,
                           0)) {
            fprintf(stderr, "bench: put %s failed\n", key);
            _exit(1);
        }
    }
    chain_init(ch, 2);
    chain_put(c, ch);
    kvs_client_destroy(c);
    write_all(fd, &ok, 1);
    free(ch);
    free(buf);
}

/* One round: the aggregate MB/s, and the p99 of each opcode in p99[]. */
static double mixed_round(const load_opts_t *o, double p99[OP_N],
                          uint64_t *errors)
{
    unsigned n = o->clients;
    pid_t *pids = calloc(n, sizeof(*pids));
    int *fds = calloc(n, sizeof(*fds)), go[2];
    float *lat[OP_N];
    size_t nlat[OP_N] = {0}, cap = (size_t)n * (LAT_CAP / 8);
    double mbps = 0;

    for (int i = 0; i < OP_N; i++)
        lat[i] = malloc(cap * sizeof(float));
    if (!pids || !fds || !lat[0] || !lat[1] || !lat[2] || pipe(go) != 0)
        exit(1);
    mixed_go_fd = go[0];
    for (unsigned i = 0; i < n; i++)
        pids[i] = spawn(o, mixed_child, i, &fds[i]);
    close(go[0]);
    /* Let them all connect first. */
    usleep(500000 + n * 20000);
    for (unsigned i = 0; i < n; i++)
        if (write(go[1], "g", 1) != 1)
            exit(1);
    close(go[1]);
    for (unsigned i = 0; i < n; i++) {
        mixed_hdr_t h;

        if (!read_all(fds[i], &h, sizeof(h))) {
            (*errors)++;
        } else {
            mbps += (double)h.bytes / h.secs / 1e6;
            *errors += (uint64_t)h.errors;
            for (int k = 0; k < OP_N; k++) {
                if (!read_all(fds[i], lat[k] + nlat[k], h.n[k] * sizeof(float)))
                    (*errors)++;
                else
                    nlat[k] += h.n[k];
            }
        }
        close(fds[i]);
        if (!reap(pids[i], "net-mixed client"))
            (*errors)++;
    }
    for (int k = 0; k < OP_N; k++) {
        p99[k] = pct(lat[k], nlat[k], 99);
        free(lat[k]);
    }
    free(pids);
    free(fds);
    return mbps;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
    double s[BENCH_ROUNDS_MAX];

    memcpy(s, v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_double);
    return s[n / 2];
}

static int fig_mixed(load_opts_t *o)
{
    char sub[PATH_MAX], busy[48], fig[64], what[320], thr[48];
    const char *args[] = {"--dram-mib=1024", "--nvme-mib=0", busy, thr,
                          "--log-level=warn", NULL};
    double mbps[BENCH_ROUNDS_MAX], p99[OP_N][BENCH_ROUNDS_MAX];
    uint64_t errors = 0;
    pid_t d;

    snprintf(sub, sizeof(sub), "%s/mixed", o->dir);
    snprintf(busy, sizeof(busy), "--set=daemon.busy_poll_us=%d", o->busy_us);
    snprintf(thr, sizeof(thr), "--set=daemon.threads=%u", o->threads);
    d = start_loaded(o, sub, args, mixed_load_child);
    if (d < 0)
        return 1;
    for (unsigned r = 0; r < o->rounds; r++) {
        double p[OP_N];

        mbps[r] = mixed_round(o, p, &errors);
        for (int k = 0; k < OP_N; k++)
            p99[k][r] = p[k];
        fprintf(stderr,
                "bench: mixed round %u: %.0f MB/s, p99 us get %.0f put %.0f "
                "match %.0f\n",
                r, mbps[r], p[OP_GET], p[OP_PUT], p[OP_MATCH]);
    }
    report_locks(o);
    bench_daemon_stop(d);
    if (errors)
        fprintf(stderr, "bench: net-mixed: %llu requests failed\n",
                (unsigned long long)errors);
    snprintf(what, sizeof(what),
             "%u client processes, one request at a time each: GET (1/2) "
             "of %u shared 64 KiB blocks, PUT (1/4) of 64 KiB, MATCH (1/4) "
             "of a 128-key chain; DRAM tier; daemon.threads %u; %llu failed "
             "(no target)",
             o->clients, (unsigned)MIXED_SHARED, o->threads,
             (unsigned long long)errors);
    snprintf(fig, sizeof(fig), "net-mixed-%uclients", o->clients);
    bench_report_rounds(fig, o->rounds, mbps, (double[BENCH_ROUNDS_MAX]){0},
                        what);
    for (int k = 0; k < OP_N; k++) {
        snprintf(fig, sizeof(fig), "net-mixed-%uclients-%s-p99", o->clients,
                 op_names[k]);
        snprintf(what, sizeof(what),
                 "p99 over every client's %s latencies, median of %u "
                 "rounds (no target)",
                 op_names[k], o->rounds);
        bench_figure(fig, median(p99[k], o->rounds), "us", -1, what);
    }
    return errors ? 1 : 0;
}

/* ---- options ----------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: kvstash-bench net-load|net-match-load|net-mixed "
            "[options]\n"
            "  --daemon PATH   kvstashd to start (default: next to this "
            "binary)\n"
            "  --dir DIR       scratch directory (./var/bench-load)\n"
            "  --seconds S     per phase (3)\n"
            "  --rounds N      rounds (5, at most 9)\n"
            "  --clients N     net-mixed processes (64)\n"
            "  --threads N     the daemon's serving threads (1)\n"
            "  --window N      cold GETs in flight (16)\n"
            "  --cold-mib N    cold blocks put to disk (256)\n"
            "  --block-kib N   size of a cold block (256)\n"
            "  --dram-mib N    DRAM of net-match-load's daemon (64)\n"
            "  --busy-us N     daemon and clients spin before sleeping\n"
            "                  (auto: 200 with more than 4 cores, else 0)\n"
            "  --disk-spin-us N  net-match-load's daemon.busy_poll_disk_us\n"
            "                  (default: the daemon's)\n"
            "  --json          one JSON object per figure\n");
}

int bench_load_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"daemon", required_argument, NULL, 'D'},
        {"dir", required_argument, NULL, 'd'},
        {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'},
        {"clients", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"window", required_argument, NULL, 'w'},
        {"cold-mib", required_argument, NULL, 'C'},
        {"block-kib", required_argument, NULL, 'k'},
        {"dram-mib", required_argument, NULL, 'M'},
        {"busy-us", required_argument, NULL, 'B'},
        {"disk-spin-us", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char daemon_path[PATH_MAX];
    load_opts_t o = {.dir = "./var/bench-load",
                     .seconds = 3,
                     .rounds = 5,
                     .clients = 64,
                     .threads = 1,
                     .window = 16,
                     .cold_mib = 256,
                     .block_kib = 256,
                     .dram_mib = 64,
                     .busy_us = -1,
                     .disk_spin_us = -1};
    const char *mode = argv[0];
    bool want_match = strcmp(mode, "net-mixed") != 0;
    bool want_mixed = strcmp(mode, "net-match-load") != 0;
    int c, ret = 0;

    bench_daemon_default_path(daemon_path, sizeof(daemon_path));
    o.daemon = daemon_path;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'D':
            o.daemon = optarg;
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 's':
            o.seconds = (unsigned)atoi(optarg);
            break;
        case 'r':
            o.rounds = (unsigned)atoi(optarg);
            break;
        case 'c':
            o.clients = (unsigned)atoi(optarg);
            break;
        case 't':
            o.threads = (unsigned)atoi(optarg);
            break;
        case 'w':
            o.window = (unsigned)atoi(optarg);
            break;
        case 'C':
            o.cold_mib = (unsigned)atoi(optarg);
            break;
        case 'k':
            o.block_kib = (unsigned)atoi(optarg);
            break;
        case 'M':
            o.dram_mib = (unsigned)atoi(optarg);
            break;
        case 'B':
            o.busy_us = atoi(optarg);
            break;
        case 'S':
            o.disk_spin_us = atoi(optarg);
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
    if (!o.seconds || !o.rounds || o.rounds > BENCH_ROUNDS_MAX || !o.clients ||
        o.clients > 512 || !o.window || o.window > 256 || !o.cold_mib ||
        o.cold_mib > 8192 || o.block_kib < 4 || o.block_kib > 8192 ||
        o.dram_mib < 16) {
        usage();
        return 2;
    }
    if (o.busy_us < 0)
        o.busy_us = sysconf(_SC_NPROCESSORS_ONLN) > 4 ? 200 : 0;
    ret = kvs_fs_mkdir_p(o.dir);
    if (ret) {
        fprintf(stderr, "bench: cannot create %s: %s\n", o.dir, strerror(-ret));
        return 1;
    }
    /* A client that dies must not leave us killed by SIGPIPE with a
     * daemon running (the daemons die with us: PR_SET_PDEATHSIG). */
    signal(SIGPIPE, SIG_IGN);
    if (want_match)
        ret |= fig_match_load(&o);
    if (want_mixed)
        ret |= fig_mixed(&o);
    return ret;
}
