/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench shm: zero copy with a same-host daemon (kvstash/shm.h).
 *
 *   shm-put-1MiB   reserve, write 1 MiB in place from the client's buffer,
 *                  commit (the daemon checksums it), over N distinct keys;
 *   shm-get-1MiB   a leased view, one copy into the client's buffer,
 *                  release, over N distinct blocks;
 *   shm-view-1MiB  a leased view and its release, no copy: us per block.
 *   shm-put-1MiB-batch16, shm-get-1MiB-batch16
 *                  the same through kvs_shm_put_batch / kvs_shm_get_batch,
 *                  16 blocks a call (requests posted ahead of the copies);
 *   shm-copy-into-arena-1MiB, shm-copy-from-arena-1MiB
 *                  the ceiling of the two above on this machine: the bare
 *                  memcpy into reserved and out of viewed arena blocks,
 *                  with no request at all, against the same limits (the
 *                  arena's pages, 4 KiB shmem where the kernel gives no
 *                  huge pages to shmem, copy slower than the limit's).
 *
 * Blocks are 1 MiB unless --block-kib says otherwise; the figures are
 * named by the size (shm-get-64KiB).
 *
 * The limit of the first two is one thread's memcpy of 1 MiB, in this
 * process, between one buffer and N distinct 1 MiB buffers (as cold as
 * the blocks), measured in rounds interleaved with ours (the order
 * alternating); the median round's ratio is reported. Target >= 0.9.
 *
 * The daemon is started here (DRAM only, daemon.shm_socket in --dir) and
 * stopped at exit; the client is made after the fork.
 */
#include "tools/bench/bench.h"
#include "tools/bench/bench_daemon.h"
#include "common/compiler.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvstash/kvstash.h"

#define MIB (1u << 20)

/* The block size (--block-kib), and how figure names and notes say it. */
static size_t BLK = MIB;
static char sz[16] = "1MiB", szh[16] = "1 MiB";

/* A figure name: fmt with the size in it ("shm-put-%s"); 8 at a time. */
static const char *nm(const char *fmt)
{
    static char b[8][64];
    static unsigned i;
    char *p = b[i++ % 8];

    snprintf(p, 64, fmt, sz);
    return p;
}

typedef struct shm_opts {
    const char *dir;
    unsigned blocks;
    unsigned rounds;
    double seconds;
    int busy_us; /* daemon and client spin before sleeping; -1: their
                    defaults */
} shm_opts_t;

static void usage(void)
{
    fprintf(stderr,
            "usage: kvstash-bench shm [options]\n"
            "  --dir DIR      scratch directory (./var/bench-shm)\n"
            "  --blocks N     distinct blocks (64)\n"
            "  --block-kib N  block size in KiB, 4 to 65536 (1024); the "
            "figures are named by it (shm-put-64KiB)\n"
            "  --rounds N     interleaved rounds of (memcpy, ours) (5, at "
            "most 9)\n"
            "  --seconds S    per round and figure (1)\n"
            "  --busy-us N    daemon and client spin this long before "
            "sleeping (default: their own defaults, daemon.busy_poll_us 50 "
            "and the client's 20)\n"
            "  --json         one JSON object per figure\n");
}

static void die(const char *what, int ret)
{
    fprintf(stderr, "bench shm: %s: %s\n", what, kvs_strerror(ret));
    exit(1);
}

static void key_of(char *key, size_t cap, const char *prefix, unsigned i)
{
    snprintf(key, cap, "%s-%u", prefix, i);
}

/* One thread's memcpy of 1 MiB: src into n distinct buffers at bufs
 * (to_many) or n distinct buffers into dst; MB/s over about seconds. */
static double memcpy_rate(uint8_t *one, uint8_t *many, unsigned n, bool to_many,
                          double seconds)
{
    double t0 = bench_now(), t;
    uint64_t bytes = 0;
    unsigned i = 0;

    do {
        uint8_t *m = many + (size_t)(i++ % n) * BLK;

        if (to_many)
            memcpy(m, one, BLK);
        else
            memcpy(one, m, BLK);
        bytes += BLK;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)bytes / (t - t0) / 1e6;
}

static void reserve_or_die(kvs_client_t *c, unsigned i, unsigned n,
                           kvs_shm_block_t *b)
{
    kvs_iov_t part = {NULL, BLK};
    kvs_client_put_t put = {.parts = &part, .nparts = 1};
    char key[32];
    int ret;

    key_of(key, sizeof(key), "p", i % n);
    put.key.data = key;
    put.key.len = (uint32_t)strlen(key);
    ret = kvs_shm_reserve(c, &put, b);
    if (ret)
        die("reserve", ret);
}

/* Reserve, write, commit. pipelined: block i+1 is reserved before block i
 * is committed without waiting (kvs_shm_commit_nb), so that the daemon
 * checksums block i while this thread writes block i+1; else each
 * commit is waited for. */
static double put_rate(kvs_client_t *c, const uint8_t *src, unsigned n,
                       bool pipelined, double seconds)
{
    static int status[2];
    double t0 = bench_now(), t;
    uint64_t bytes = 0;
    unsigned i = 0;
    kvs_shm_block_t cur, next;
    int ret;

    reserve_or_die(c, i, n, &cur);
    do {
        memcpy(cur.data, src, BLK);
        if (pipelined) {
            reserve_or_die(c, i + 1, n, &next);
            if (status[i % 2] < 0) /* the commit before the last */
                die("commit", status[i % 2]);
            ret = kvs_shm_commit_nb(c, cur.id, &status[i % 2]);
        } else {
            ret = kvs_shm_commit(c, cur.id);
            if (!ret)
                reserve_or_die(c, i + 1, n, &next);
        }
        if (ret)
            die("commit", ret);
        cur = next;
        i++;
        bytes += BLK;
        t = bench_now();
    } while (t - t0 < seconds);
    ret = kvs_shm_flush(c);
    if (!ret)
        ret = kvs_shm_abort(c, cur.id);
    if (ret || status[0] < 0 || status[1] < 0)
        die("commit", ret ? ret : KVS_EPROTO);
    t = bench_now();
    return (double)bytes / (t - t0) / 1e6;
}

static double get_rate(kvs_client_t *c, uint8_t *dst, unsigned n,
                       double seconds)
{
    double t0 = bench_now(), t;
    uint64_t bytes = 0;
    unsigned i = 0;
    char key[32];

    do {
        size_t len;
        int ret;

        key_of(key, sizeof(key), "g", i++ % n);
        ret = kvs_shm_get(c, key, (uint32_t)strlen(key), dst, BLK, &len);
        if (ret)
            die("get", ret);
        bytes += len;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)bytes / (t - t0) / 1e6;
}

/* us per leased view and release of one block (no copy). */
static double view_us(kvs_client_t *c, unsigned n, double seconds)
{
    double t0 = bench_now(), t;
    uint64_t views = 0;
    char key[32];

    do {
        kvs_shm_block_t b;
        int ret;

        key_of(key, sizeof(key), "g", (unsigned)(views % n));
        ret = kvs_shm_view(c, key, (uint32_t)strlen(key), 0, NULL, 0, &b);
        if (ret)
            die("view", ret);
        ret = kvs_shm_release(c, b.id);
        if (ret)
            die("release", ret);
        views++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (t - t0) * 1e6 / (double)views;
}

#define BATCH 16u

/* kvs_shm_put_batch (put: each block from buf) or kvs_shm_get_batch (each
 * into buf) of BATCH blocks a call; MB/s over about seconds. */
static double batch_rate(kvs_client_t *c, uint8_t *buf, unsigned n, bool put,
                         double seconds)
{
    kvs_iov_t part = {buf, BLK};
    kvs_client_put_t puts[BATCH];
    kvs_client_get_t gets[BATCH];
    char keys[BATCH][32];
    double t0 = bench_now(), t;
    uint64_t bytes = 0;
    unsigned i = 0;
    int ret;

    do {
        memset(puts, 0, sizeof(puts));
        memset(gets, 0, sizeof(gets));
        for (unsigned k = 0; k < BATCH; k++, i++) {
            key_of(keys[k], sizeof(keys[k]), put ? "p" : "g", i % n);
            puts[k].key.data = gets[k].key.data = keys[k];
            puts[k].key.len = gets[k].key.len = (uint32_t)strlen(keys[k]);
            puts[k].parts = &part;
            puts[k].nparts = 1;
            gets[k].buf = buf;
            gets[k].cap = BLK;
        }
        ret = put ? kvs_shm_put_batch(c, puts, BATCH)
                  : kvs_shm_get_batch(c, gets, BATCH);
        if (ret)
            die(put ? "put batch" : "get batch", ret);
        for (unsigned k = 0; k < BATCH; k++)
            bytes += put ? BLK : gets[k].len;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)bytes / (t - t0) / 1e6;
}

/* The ceiling: memcpy of 1 MiB into n reserved (to_arena) or out of n
 * viewed arena blocks, the requests made before the clock starts. */
static double arena_copy_rate(kvs_client_t *c, uint8_t *one, unsigned n,
                              bool to_arena, double seconds)
{
    kvs_shm_block_t *b = calloc(n, sizeof(*b));
    double t0, t;
    uint64_t bytes = 0;
    unsigned i = 0;
    char key[32];
    int ret;

    if (!b)
        die("copy ceiling", -ENOMEM);
    for (unsigned k = 0; k < n; k++) {
        if (to_arena) {
            reserve_or_die(c, k, n, &b[k]);
            continue;
        }
        key_of(key, sizeof(key), "g", k);
        ret =
            kvs_shm_view(c, key, (uint32_t)strlen(key), 60000, NULL, 0, &b[k]);
        if (ret)
            die("view", ret);
    }
    t0 = bench_now();
    do {
        kvs_shm_block_t *x = &b[i++ % n];

        if (to_arena)
            memcpy(x->data, one, BLK);
        else
            memcpy(one, x->data, BLK);
        bytes += BLK;
        t = bench_now();
    } while (t - t0 < seconds);
    for (unsigned k = 0; k < n; k++) {
        ret =
            to_arena ? kvs_shm_abort(c, b[k].id) : kvs_shm_release(c, b[k].id);
        if (ret)
            die(to_arena ? "abort" : "release", ret);
    }
    free(b);
    return (double)bytes / (t - t0) / 1e6;
}

/* The daemon's STAT name, or 0. */
static uint64_t stat_of(kvs_client_t *c, const char *name)
{
    static kvs_client_stat_t st[256];
    size_t n = 0;

    if (kvs_client_stat(c, st, 256, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].name, name) == 0)
            return st[i].value;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void run(const shm_opts_t *o, uint16_t port, const char *sock)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS |
                      KVS_CLIENT_PARAM_SHM_SOCKET |
                      (o->busy_us < 0 ? 0 : KVS_CLIENT_PARAM_BUSY_POLL_US),
        .port = port,
        .busy_poll_us = o->busy_us < 0 ? 0 : (uint32_t)o->busy_us,
        .ns = "bench-shm",
        .shm_socket = sock,
    };
    double put[BENCH_ROUNDS_MAX], get[BENCH_ROUNDS_MAX];
    double sput[BENCH_ROUNDS_MAX];
    double lput[BENCH_ROUNDS_MAX], lget[BENCH_ROUNDS_MAX];
    double view[BENCH_ROUNDS_MAX];
    double bput[BENCH_ROUNDS_MAX], bget[BENCH_ROUNDS_MAX];
    double cput[BENCH_ROUNDS_MAX], cget[BENCH_ROUNDS_MAX];
    size_t many_len = (size_t)o->blocks * BLK;
    uint8_t *one = bench_alloc_huge(BLK), *many = bench_alloc_huge(many_len);
    kvs_client_t *c;
    char key[32], what[400], busy[64];
    uint64_t rings;
    int ret;

    if (!one || !many)
        die("buffers", -ENOMEM);
    ret = kvs_client_create(&p, &c);
    if (ret)
        die("connect", ret);
    if (kvs_shm_status(c) != 0)
        die("attach", kvs_shm_status(c));
    rings = stat_of(c, "shm_rings");
    if (o->busy_us < 0)
        snprintf(busy, sizeof(busy), "50 (default), client 20 (default)");
    else
        snprintf(busy, sizeof(busy), "%d, client the same", o->busy_us);
    bench_fill_floats(one, BLK, 2, 1);
    memset(many, 1, many_len);
    for (unsigned i = 0; i < o->blocks; i++) {
        key_of(key, sizeof(key), "g", i);
        ret = kvs_shm_put(c, key, (uint32_t)strlen(key), one, BLK, 0);
        if (ret)
            die("load", ret);
    }
    (void)put_rate(c, one, o->blocks, true, o->seconds / 4); /* every key */
    for (unsigned r = 0; r < o->rounds; r++) {
        for (int step = 0; step < 2; step++) {
            if ((step == 0) == (r % 2 == 0)) {
                lput[r] = memcpy_rate(one, many, o->blocks, true, o->seconds);
                lget[r] = memcpy_rate(one, many, o->blocks, false, o->seconds);
            } else {
                put[r] = put_rate(c, one, o->blocks, true, o->seconds);
                sput[r] = put_rate(c, one, o->blocks, false, o->seconds);
                get[r] = get_rate(c, one, o->blocks, o->seconds);
                view[r] = view_us(c, o->blocks, o->seconds);
                bput[r] = batch_rate(c, one, o->blocks, true, o->seconds);
                bget[r] = batch_rate(c, one, o->blocks, false, o->seconds);
                cput[r] = arena_copy_rate(c, one, o->blocks, true, o->seconds);
                cget[r] = arena_copy_rate(c, one, o->blocks, false, o->seconds);
            }
        }
    }
    snprintf(what, sizeof(what),
             "reserve, write %s in place, commit (daemon checksums; "
             "the next block reserved before, commit not waited for), %u "
             "keys, vs one thread's memcpy of %s into %u buffers; "
             "requests %s, daemon.busy_poll_us %s; target ratio >= 0.9",
             szh, o->blocks, szh, o->blocks,
             rings ? "on the request ring" : "over the socket", busy);
    bench_report_rounds(nm("shm-put-%s"), o->rounds, put, lput, what);
    bench_report_rounds(nm("shm-put-%s-sync"), o->rounds, sput, lput,
                        "the same, each commit waited for; the same limits");
    snprintf(what, sizeof(what),
             "leased view, one copy out, release, %u blocks, vs one thread's "
             "memcpy of %s from %u buffers; the same requests' path and "
             "spin; target ratio >= 0.9",
             o->blocks, szh, o->blocks);
    bench_report_rounds(nm("shm-get-%s"), o->rounds, get, lget, what);
    snprintf(what, sizeof(what),
             "kvs_shm_put_batch, %u blocks a call (reserves posted ahead, "
             "commits not waited for until the call's end), %u keys; the "
             "limits of %s; target ratio >= 0.9",
             BATCH, o->blocks, nm("shm-put-%s"));
    bench_report_rounds(nm("shm-put-%s-batch16"), o->rounds, bput, lput, what);
    snprintf(what, sizeof(what),
             "kvs_shm_get_batch, %u blocks a call (views posted ahead), %u "
             "blocks; the limits of %s; target ratio >= 0.9",
             BATCH, o->blocks, nm("shm-get-%s"));
    bench_report_rounds(nm("shm-get-%s-batch16"), o->rounds, bget, lget, what);
    snprintf(what, sizeof(what),
             "the ceiling of the puts: memcpy of %s into reserved arena "
             "blocks, no request timed; the limits of %s",
             szh, nm("shm-put-%s"));
    bench_report_rounds(nm("shm-copy-into-arena-%s"), o->rounds, cput, lput,
                        what);
    snprintf(what, sizeof(what),
             "the ceiling of the gets: memcpy of %s out of viewed arena "
             "blocks, no request timed; the limits of %s",
             szh, nm("shm-get-%s"));
    bench_report_rounds(nm("shm-copy-from-arena-%s"), o->rounds, cget, lget,
                        what);
    qsort(view, o->rounds, sizeof(*view), cmp_double);
    snprintf(what, sizeof(what),
             "median of rounds: one leased view and its release, no copy "
             "(two round trips, %s); daemon.busy_poll_us %s",
             rings ? "on the request ring" : "over the socket", busy);
    bench_figure(nm("shm-view-%s"), view[o->rounds / 2], "us", -1, what);
    kvs_client_destroy(c);
    bench_free_huge(one, BLK);
    bench_free_huge(many, many_len);
}

int bench_shm_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"blocks", required_argument, NULL, 'b'},
        {"block-kib", required_argument, NULL, 'k'},
        {"rounds", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"busy-us", required_argument, NULL, 'u'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    shm_opts_t o = {.dir = "./var/bench-shm",
                    .blocks = 64,
                    .rounds = 5,
                    .seconds = 1,
                    .busy_us = -1};
    unsigned long kib = 1024;
    char busy[64];
    char sock[PATH_MAX], sockopt[PATH_MAX + 32], bin[PATH_MAX + 16];
    uint16_t port;
    pid_t d;
    int ch;

    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            o.dir = optarg;
            break;
        case 'b':
            o.blocks = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            kib = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            o.seconds = strtod(optarg, NULL);
            break;
        case 'u':
            o.busy_us = (int)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            bench_json = true;
            break;
        default:
            usage();
            return ch == 'h' ? 0 : 2;
        }
    }
    if (kib < 4 || kib > 65536) {
        usage();
        return 2;
    }
    BLK = (size_t)kib << 10;
    if (kib % 1024 == 0) {
        snprintf(sz, sizeof(sz), "%luMiB", kib / 1024);
        snprintf(szh, sizeof(szh), "%lu MiB", kib / 1024);
    } else {
        snprintf(sz, sizeof(sz), "%luKiB", kib);
        snprintf(szh, sizeof(szh), "%lu KiB", kib);
    }
    /* The "g" and "p" blocks, and one more each, fit the 512 MiB arena. */
    if ((size_t)o.blocks * BLK > ((size_t)192 << 20)) {
        fprintf(stderr,
                "bench shm: %u blocks of %s do not fit the bench's "
                "512 MiB arena twice; use fewer --blocks\n",
                o.blocks, szh);
        return 2;
    }
    if (o.blocks == 0 || o.blocks > 256 || o.rounds == 0 ||
        o.rounds > BENCH_ROUNDS_MAX || !(o.seconds > 0)) {
        usage();
        return 2;
    }
    mkdir(o.dir, 0755);
    snprintf(sock, sizeof(sock), "%s/shm.sock", o.dir);
    snprintf(sockopt, sizeof(sockopt), "--set=daemon.shm_socket=%s", sock);
    snprintf(busy, sizeof(busy), "--set=daemon.busy_poll_us=%d", o.busy_us);
    const char *extra[] = {"--dram-mib=512", "--nvme-mib=0", sockopt,
                           o.busy_us < 0 ? NULL : busy, NULL};
    bench_daemon_default_path(bin, sizeof(bin));
    d = bench_daemon_start(bin, o.dir, extra, &port);
    if (d < 0)
        return 1;
    run(&o, port, sock);
    bench_daemon_stop(d);
    return 0;
}
