/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench stream: prefill -> decode streaming between two kvstashd
 * on loopback (P, the prefill side, and D, the decode side).
 *
 *   prefill process --put parts--> P ==peer link==> D --parts--> decode process
 *
 * The prefill process puts N blocks of L parts (part by part, optionally
 * at a steady rate); the decode process asks D to fetch the chain from P
 * as soon as it starts, waits for every part in order, and checks every
 * byte. Two phases:
 *   live:   the fetch runs while the blocks are being put;
 *   sealed: the same blocks fetched again under new names from P after
 *           they were all sealed there (pure transfer, nothing to wait for).
 * Printed: throughput of each phase against ucx_perftest ucp_am_bw between
 * two processes measured in the same run (limits.sh ucx), and the time to
 * the first part of a block against the time to the whole block, both
 * counted from the moment the prefill client finished putting part 0.
 *
 * By default each client maps its own sidecar's arena (daemon.shm_socket)
 * and streams in place (kvstash/stream.h): the prefill client writes each
 * part into P's arena and commits it, the decode client reads each part
 * where it landed in D's arena; P -> D is the one copy. --copy streams
 * through the clients' own buffers instead (the UCX path: figures named
 * stream-*-copy). The link between the daemons runs on UCX's default
 * transports (shared memory / CMA on one host: stream-live,
 * stream-sealed) and, with the daemons alone given UCX_TLS=tcp,self, on
 * TCP, the stand-in for two hosts (stream-live-tcp, stream-sealed-tcp);
 * the clients keep their defaults. Each round measures the limit of each
 * link (ucx_perftest with the same UCX_TLS) right before its stream run;
 * the figures are medians over the rounds.
 *
 * --demo is the same with a paced prefill (--rate parts per second) and
 * text meant to be read: `make demo`.
 *
 * Processes are forked before anything opens UCX. Timestamps cross the
 * processes through a shared mapping (CLOCK_MONOTONIC is system-wide).
 */
#include "tools/bench/bench.h"
#include "tools/bench/bench_daemon.h"
#include "tools/bench/bench_stream.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvstash/kvstash.h"

#define MAX_BLOCKS 1024
#define CHUNK 32 /* keys per fetch */
#define PATTERNS                                                               \
    32 /* distinct block contents: block b holds                               \
          pattern b % PATTERNS */

typedef struct sopts {
    const char *daemon;
    const char *dir;
    uint32_t blocks, parts;
    uint64_t part_bytes;
    double rate;       /* parts/s; 0: as fast as possible */
    unsigned dram_mib; /* each daemon's DRAM tier */
    bool demo, limits, verify;
    bool inplace;     /* clients map their sidecars' arenas */
    unsigned links;   /* LINK_* bits to measure */
    unsigned rounds;  /* interleaved rounds per link */
    bool tcp;         /* this run: daemons on UCX_TLS=tcp,self */
} sopts_t;

#define LINK_DEFAULT 1u
#define LINK_TCP 2u
#define ROUNDS_MAX 9

/* Shared between the processes. */
typedef struct shared {
    uint64_t t_part0_put[MAX_BLOCKS];   /* prefill: part 0 posted */
    uint64_t t_first_in[2][MAX_BLOCKS]; /* decode: first part landed */
    uint64_t t_block_in[2][MAX_BLOCKS]; /* decode: whole block stored */
    uint64_t t_start[2], t_end[2];
    uint64_t t_verify[2]; /* decode: byte checks, not counted */
    uint64_t t_put_start; /* prefill: first put begins */
    uint64_t t_go;        /* both clients set up: the live clock starts */
    int ready;            /* clients that finished setting up */
    double cpu0[2];       /* prefill, decode: CPU seconds used before
                             streaming began (attach, pattern fill) */
    int sealed_ok;        /* prefill: all sealed */
    int bad_bytes;
    int errors;
} shared_t;

/* Spinning pays only with idle cores: two daemons and two clients on a
 * 2-core machine have none (as in bench_net.c). */
static unsigned busy_us;

static double self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The live phase's start line: each client calls this once it is set up
 * (connected, its arena mapped and populated, its patterns made) and
 * returns when both are. The last one in starts the clock. Without it the
 * live clock ran from the decode's first fetch, so it counted the time
 * the prefill spent mapping P's arena (its page tables filled for 2 GiB
 * of 4 KiB pages: about a second on the CI VM) as streaming time. */
static uint64_t start_line(shared_t *sh)
{
    uint64_t go;

    if (__atomic_add_fetch(&sh->ready, 1, __ATOMIC_ACQ_REL) == 2)
        __atomic_store_n(&sh->t_go, now_ns(), __ATOMIC_RELEASE);
    while (!(go = __atomic_load_n(&sh->t_go, __ATOMIC_ACQUIRE)))
        usleep(50);
    return go;
}

/* A client that failed to set up lets the other one past the line. */
static void start_line_fail(shared_t *sh)
{
    uint64_t zero = 0;

    __atomic_compare_exchange_n(&sh->t_go, &zero, now_ns(), false,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void fill(uint8_t *p, uint64_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    for (uint64_t i = 0; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

static void self_dir(char *out, size_t cap, const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash;

    if (n <= 0) {
        snprintf(out, cap, "%s", name);
        return;
    }
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    if ((size_t)snprintf(out, cap, "%s/%s", self, name) >= cap)
        snprintf(out, cap, "%s", name); /* too long: rely on PATH */
}

/* Where daemon name's shm socket is (o->dir/name.sock). */
static void shm_path(const sopts_t *o, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.sock", o->dir, name);
}

static pid_t start_daemon(const sopts_t *o, const char *name, uint16_t *port)
{
    char dir[PATH_MAX], blk[64], busy[64], dram[32], shm[PATH_MAX + 32];
    char sock[PATH_MAX];
    const char *args[] = {dram,
                          "--nvme-mib=0",
                          blk,
                          "--set=peer.secret=bench",
                          busy,
                          getenv("KVS_BENCH_DEBUG") ? "--log-level=debug"
                                                    : "--log-level=warn",
                          o->inplace ? shm : NULL,
                          NULL};
    pid_t pid;

    snprintf(busy, sizeof(busy), "--set=daemon.busy_poll_us=%u", busy_us);
    snprintf(dram, sizeof(dram), "--dram-mib=%u", o->dram_mib);
    snprintf(blk, sizeof(blk), "--set=store.max_block_mib=%llu",
             (unsigned long long)((o->parts * o->part_bytes >> 20) + 1));
    if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", o->dir, name) >=
        sizeof(dir))
        return -1;
    mkdir(o->dir, 0755);
    shm_path(o, name, sock, sizeof(sock));
    snprintf(shm, sizeof(shm), "--set=daemon.shm_socket=%s", sock);
    /* The daemons alone on TCP: the clients, forked later, keep the
     * environment they had. */
    if (o->tcp)
        setenv("UCX_TLS", "tcp,self", 1);
    /* bench_daemon's child dies with the bench: each holds a 2 GiB arena. */
    pid = bench_daemon_start(o->daemon, dir, args, port);
    if (o->tcp)
        unsetenv("UCX_TLS");
    return pid;
}

static kvs_client_t *connect_to(const sopts_t *o, const char *name,
                                uint16_t port)
{
    char sock[PATH_MAX];
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS |
                      KVS_CLIENT_PARAM_BUSY_POLL_US,
        .port = port,
        .ns = "bench-stream",
        .busy_poll_us = busy_us,
    };
    kvs_client_t *c = NULL;
    int ret;

    if (o->inplace) {
        shm_path(o, name, sock, sizeof(sock));
        p.field_mask |= KVS_CLIENT_PARAM_SHM_SOCKET;
        p.shm_socket = sock;
    }
    ret = kvs_client_create(&p, &c);
    if (ret) {
        fprintf(stderr, "bench: connect to port %u: %s\n", port,
                kvs_strerror(ret));
        return NULL;
    }
    if (o->inplace && kvs_shm_status(c) != 0) {
        fprintf(stderr, "bench: %s's arena not mapped: %s\n", name,
                kvs_strerror(kvs_shm_status(c)));
        kvs_client_destroy(c);
        return NULL;
    }
    return c;
}

static void key_of(char *buf, size_t cap, const char *pfx, uint32_t b)
{
    snprintf(buf, cap, "%s-%u", pfx, b);
}

static int put_inplace(kvs_stream_put_t *put, uint32_t p, const uint8_t *blk,
                       uint64_t part_bytes)
{
    void *dst;
    size_t len;
    int ret = kvs_stream_put_buf(put, p, &dst, &len);

    if (ret)
        return ret;
    memcpy(dst, blk + p * part_bytes, len);
    return kvs_stream_put_commit(put, p);
}

static int put_begin_one(const sopts_t *o, kvs_client_t *c, int phase,
                         uint32_t b, const uint32_t *lens,
                         kvs_stream_put_t **out)
{
    char key[32];
    kvs_client_key_t k;

    key_of(key, sizeof(key), phase ? "sealed" : "live", b);
    k.data = key;
    k.len = (uint32_t)strlen(key);
    return o->inplace ? kvs_stream_put_begin_inplace(c, &k, lens, o->parts, 0,
                                                     0, NULL, out)
                      : kvs_stream_put_begin(c, &k, lens, o->parts, 0, 0,
                                             NULL, out);
}

/* The prefill client: puts every block part by part, then (for the
 * sealed phase) the same bytes under "sealed-" names. */
static int prefill(const sopts_t *o, uint16_t port, shared_t *sh)
{
    kvs_client_t *c = connect_to(o, "prefill", port);
    uint64_t blen = o->parts * o->part_bytes;
    uint32_t npat = o->blocks < PATTERNS ? o->blocks : PATTERNS;
    uint32_t *lens = calloc(o->parts, sizeof(*lens));
    uint8_t *pat = bench_alloc_huge(npat * blen);
    uint64_t t0, n = 0;
    int ret = 0;

    if (!c || !lens || !pat) {
        start_line_fail(sh);
        return 1;
    }
    for (uint32_t i = 0; i < o->parts; i++)
        lens[i] = (uint32_t)o->part_bytes;
    /* The blocks' bytes are made before the clock starts: the bench
     * measures streaming, not this process's random-number generator. */
    for (uint32_t i = 0; i < npat; i++)
        fill(pat + i * blen, blen, i + 1);
    sh->cpu0[0] = self_cpu_s();
    start_line(sh);
    t0 = now_ns();
    __atomic_store_n(&sh->t_put_start, t0, __ATOMIC_RELEASE);
    for (int phase = 0; phase < 2 && !ret; phase++) {
        /* Two blocks open at a time: block b-1 is sealed once block b is
         * written, as an engine saving layer after layer of one request
         * while the last one's seal (its transfer, its checksum) ends. */
        kvs_stream_put_t *prev = NULL, *next = NULL;

        /* Each block is begun before the one ahead of it is written, so
         * that the sidecar's answer to an in-place begin is there when
         * the block's first part is. */
        ret = put_begin_one(o, c, phase, 0, lens, &next);
        for (uint32_t b = 0; b < o->blocks && !ret; b++) {
            kvs_stream_put_t *put = next;
            uint8_t *buf = pat + (b % PATTERNS) * blen;

            next = NULL;
            if (b + 1 < o->blocks)
                ret = put_begin_one(o, c, phase, b + 1, lens, &next);
            for (uint32_t p = 0; p < o->parts && !ret; p++) {
                if (phase == 0 && o->rate > 0) {
                    uint64_t due = t0 + (uint64_t)((double)n * 1e9 / o->rate);

                    while (now_ns() < due)
                        usleep(200);
                }
                /* Posted, not waited for: the parts' bytes stay put
                 * until the seal, as a prefill engine's layers do. In
                 * place, the layer is written into the arena (as a GPU
                 * would copy it there) and committed. */
                ret = o->inplace ? put_inplace(put, p, buf, o->part_bytes)
                                 : kvs_stream_put_part_nb(
                                       put, p, buf + p * o->part_bytes,
                                       o->part_bytes);
                if (p == 0 && phase == 0)
                    sh->t_part0_put[b] = now_ns();
                n++;
            }
            if (ret) {
                kvs_stream_put_abort(put);
                kvs_stream_put_abort(next);
                break;
            }
            if (prev)
                ret = kvs_stream_put_seal(prev);
            prev = put;
        }
        if (prev && !ret)
            ret = kvs_stream_put_seal(prev);
        else if (prev)
            kvs_stream_put_abort(prev);
        if (phase == 0)
            __atomic_store_n(&sh->sealed_ok, 1, __ATOMIC_RELEASE);
    }
    if (ret)
        fprintf(stderr, "bench: prefill: %s\n", kvs_strerror(ret));
    else
        __atomic_store_n(&sh->sealed_ok, 2, __ATOMIC_RELEASE);
    kvs_client_destroy(c);
    free(lens);
    bench_free_huge(pat, npat * blen);
    return ret ? 1 : 0;
}

/* The decode client: one phase of fetches through D from P. */
static int decode_phase(const sopts_t *o, kvs_client_t *c, const char *peer,
                        int phase, shared_t *sh, uint8_t *bufs, uint8_t *want)
{
    uint64_t blen = o->parts * o->part_bytes;
    char keys[CHUNK][32];
    kvs_stream_block_t bl[CHUNK];

    sh->t_start[phase] = now_ns();
    for (uint32_t first = 0; first < o->blocks; first += CHUNK) {
        uint32_t n = o->blocks - first < CHUNK ? o->blocks - first : CHUNK;
        kvs_stream_fetch_t *f;
        int ret;

        for (uint32_t i = 0; i < n; i++) {
            key_of(keys[i], sizeof(keys[i]), phase ? "sealed" : "live",
                   first + i);
            bl[i].key.data = keys[i];
            bl[i].key.len = (uint32_t)strlen(keys[i]);
            bl[i].buf = o->inplace ? NULL : bufs + i * blen;
            bl[i].cap = o->inplace ? 0 : blen;
        }
        ret = kvs_stream_fetch(c, peer, bl, n, 60000, &f);
        if (ret) {
            fprintf(stderr, "bench: fetch: %s\n", kvs_strerror(ret));
            return ret;
        }
        /* Block i's parts, then block i - 1's END: the prefill seals a
         * block after putting the next one's parts (as it keeps the seal's
         * round trip off its path), so waiting for END before the next
         * block's first part would count that part late by a block. */
        int bad[CHUNK] = {0};

        for (uint32_t i = 0; i <= n; i++) {
            for (uint32_t p = 0; i < n && p < o->parts; p++) {
                ret = kvs_stream_wait(f, i, p, -1);
                if (ret) {
                    bad[i] = ret;
                    break;
                }
                if (p == 0)
                    sh->t_first_in[phase][first + i] = now_ns();
            }
            if (i == 0)
                continue;
            uint32_t b = first + i - 1;

            ret = bad[i - 1] ? bad[i - 1]
                             : kvs_stream_wait(f, i - 1, KVS_STREAM_BLOCK, -1);
            if (ret) {
                fprintf(stderr, "bench: block %u: %s\n", b, kvs_strerror(ret));
                sh->errors++;
                continue;
            }
            sh->t_block_in[phase][b] = now_ns();
        }
        /* Every byte is checked once the chunk is in, off the clock: the
         * client moves no data while it checks (it pulls parts itself),
         * so the check would only be counted as transfer time. In place
         * the bytes are read where they are, before the fetch lets go. */
        if (o->verify) {
            uint64_t t = now_ns();

            for (uint32_t i = 0; i < n; i++) {
                const void *d = NULL;
                size_t dlen = 0;

                fill(want, blen, (first + i) % PATTERNS + 1);
                if (!sh->t_block_in[phase][first + i] ||
                    kvs_stream_data(f, i, KVS_STREAM_BLOCK, &d, &dlen) ||
                    dlen != blen || memcmp(want, d, blen))
                    sh->bad_bytes++;
            }
            sh->t_verify[phase] += now_ns() - t;
        }
        kvs_stream_fetch_destroy(f);
    }
    sh->t_end[phase] = now_ns();
    return 0;
}

static int decode(const sopts_t *o, uint16_t dport, uint16_t pport,
                  shared_t *sh)
{
    uint64_t blen = o->parts * o->part_bytes;
    uint32_t chunk = o->blocks < CHUNK ? o->blocks : CHUNK;
    kvs_client_t *c = connect_to(o, "decode", dport);
    /* In place, the decode client has no buffers of its own. */
    uint8_t *bufs = o->inplace ? NULL : bench_alloc_huge(chunk * blen);
    uint8_t *want = malloc(blen);
    char peer[64];

    if (!c || (!bufs && !o->inplace) || !want) {
        start_line_fail(sh);
        return 1;
    }
    /* bufs are written once already (bench_alloc_huge): a first touch
     * costs more than the copy on a VM, and a real decode worker reuses
     * its buffers. */
    memset(want, 0, blen);
    snprintf(peer, sizeof(peer), "127.0.0.1:%u", pport);
    sh->cpu0[1] = self_cpu_s();
    start_line(sh);
    if (decode_phase(o, c, peer, 0, sh, bufs, want))
        return 1;
    while (__atomic_load_n(&sh->sealed_ok, __ATOMIC_ACQUIRE) < 2)
        usleep(1000);
    if (decode_phase(o, c, peer, 1, sh, bufs, want))
        return 1;
    if (bufs)
        bench_free_huge(bufs, chunk * blen);
    free(want);
    kvs_client_destroy(c);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double median_ms(uint64_t *v, uint32_t n)
{
    if (!n)
        return -1;
    qsort(v, n, sizeof(*v), cmp_u64);
    return (double)v[n / 2] / 1e6;
}

/* One limit sample of the link under test: ucx_perftest ucp_am_bw between
 * two processes, with the daemons' UCX_TLS. */
static void limit_sample(const sopts_t *o, double *lim, int *n)
{
    char ldir[PATH_MAX];

    mkdir(o->dir, 0755);
    snprintf(ldir, sizeof(ldir), "%s/limits", o->dir);
    if (o->tcp)
        setenv("UCX_TLS", "tcp,self", 1);
    if (bench_limits_run(ldir, o->part_bytes, 1, 3, "ucx") == 0 &&
        bench_limit("ucx-am") > 0)
        lim[(*n)++] = bench_limit("ucx-am");
    if (o->tcp)
        unsetenv("UCX_TLS");
}

/* What a copy of the stream's bytes costs here, beside each round's limit.
 * A phase moves blocks x parts x part bytes of memory that no cache holds
 * (512 MiB by default, against an L3 of tens of MiB), while ucx_perftest
 * copies one buffer of a message's size over and over, which stays in the
 * caches. So each round also times memcpy in 1 MiB steps over a phase's
 * worth of memory, by one thread and by two (each half), reported against
 * the same limit (docs/operations.md, "Streaming throughput"). */
typedef struct cpy {
    uint8_t *src, *dst;
    size_t len;
    double s;
} cpy_t;

static void *cpy_run(void *arg)
{
    cpy_t *c = arg;
    double t0 = bench_now();

    for (size_t off = 0; off < c->len; off += 1u << 20)
        memcpy(c->dst + off, c->src + off,
               c->len - off < (1u << 20) ? c->len - off : (1u << 20));
    c->s = bench_now() - t0;
    return NULL;
}

/* MB/s of one thread (one[0]) and of two together (two[0]); -1 if the
 * memory is not there. */
static void copy_sample(const sopts_t *o, double *one, double *two)
{
    size_t len = (size_t)o->blocks * o->parts * o->part_bytes;
    uint8_t *src = malloc(len), *dst = malloc(len);
    cpy_t c[2];
    pthread_t th;

    *one = *two = -1;
    if (!src || !dst)
        goto out;
    memset(src, 0x5a, len);
    memset(dst, 0, len);
    c[0] = (cpy_t){src, dst, len, 0};
    cpy_run(&c[0]); /* first touches and faults off the clock */
    cpy_run(&c[0]);
    *one = (double)len / c[0].s / 1e6;
    c[0] = (cpy_t){src, dst, len / 2, 0};
    c[1] = (cpy_t){src + len / 2, dst + len / 2, len - len / 2, 0};
    if (pthread_create(&th, NULL, cpy_run, &c[1]) == 0) {
        cpy_run(&c[0]);
        pthread_join(th, NULL);
        *two = (double)len / (c[0].s > c[1].s ? c[0].s : c[1].s) / 1e6;
    }
out:
    free(src);
    free(dst);
}

static double median_d(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];

            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n ? v[n / 2] : -1;
}

/* What one run measured. */
typedef struct result {
    double mbs[2];   /* live, sealed */
    double ttfp_ms;  /* live: prefill's part 0 -> decode client has it */
    double ttb_ms;   /* live: same start -> whole block stored on D */
    double tb2_ms;   /* sealed: first part -> whole block */
    double cpu_s[4]; /* prefill client, P, D, decode client: both phases */
    double load;     /* 1-minute load average after the run */
} result_t;

enum { CPU_PREFILL, CPU_P, CPU_D, CPU_DECODE };

/* CPU seconds (user + system) a live process has used so far. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, stt = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* after the command's name */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                            "%llu",
                     &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static double rusage_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
           (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

static void measure(const sopts_t *o, const shared_t *sh, result_t *r)
{
    uint64_t bytes = (uint64_t)o->blocks * o->parts * o->part_bytes;
    uint64_t ttfp[MAX_BLOCKS], ttb[MAX_BLOCKS], tb2[MAX_BLOCKS];
    uint32_t n = 0, n2 = 0;

    for (int ph = 0; ph < 2; ph++) {
        /* Live: from the start line (both clients set up) to the last
         * block in; sealed: from the first fetch. */
        uint64_t start = ph == 0 && sh->t_go ? sh->t_go : sh->t_start[ph];
        double s = (double)(sh->t_end[ph] - start - sh->t_verify[ph]) / 1e9;

        r->mbs[ph] = (double)bytes / s / 1e6;
    }
    for (uint32_t b = 0; b < o->blocks; b++) {
        if (sh->t_first_in[0][b] && sh->t_part0_put[b]) {
            ttfp[n] = sh->t_first_in[0][b] > sh->t_part0_put[b]
                          ? sh->t_first_in[0][b] - sh->t_part0_put[b]
                          : 0;
            ttb[n] = sh->t_block_in[0][b] - sh->t_part0_put[b];
            n++;
        }
        if (sh->t_first_in[1][b])
            tb2[n2++] = sh->t_block_in[1][b] - sh->t_first_in[1][b];
    }
    r->ttfp_ms = median_ms(ttfp, n);
    r->ttb_ms = median_ms(ttb, n);
    r->tb2_ms = median_ms(tb2, n2);
}

/* Two daemons, a prefill and a decode client: one run. 0, or 1 when it
 * failed (errors and wrong bytes included). */
static int run_once(const sopts_t *o, result_t *r)
{
    uint16_t pport = 0, dport = 0;
    pid_t P, D, cp, cd;
    struct rusage ru;
    double p0, d0;
    shared_t *sh;
    int st, rc = 0;

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    memset(sh, 0, sizeof(*sh));
    P = start_daemon(o, "prefill", &pport);
    D = P > 0 ? start_daemon(o, "decode", &dport) : -1;
    if (P <= 0 || D <= 0) {
        bench_daemon_stop(P);
        munmap(sh, sizeof(*sh));
        return 1;
    }
    p0 = proc_cpu_s(P); /* their start (the arena's population) */
    d0 = proc_cpu_s(D);
    if (o->demo)
        printf("demo: prefill sidecar on 127.0.0.1:%u, decode sidecar on "
               "127.0.0.1:%u\n      %u blocks x %u parts x %llu KiB, prefill "
               "at %.0f parts/s; every byte checked\n",
               pport, dport, o->blocks, o->parts,
               (unsigned long long)(o->part_bytes >> 10), o->rate);
    fflush(NULL);
    cd = fork();
    if (cd == 0)
        _exit(decode(o, dport, pport, sh));
    cp = fork();
    if (cp == 0)
        _exit(prefill(o, pport, sh));
    wait4(cp, &st, 0, &ru);
    r->cpu_s[CPU_PREFILL] = rusage_s(&ru) - sh->cpu0[0];
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        rc = 1;
    wait4(cd, &st, 0, &ru);
    r->cpu_s[CPU_DECODE] = rusage_s(&ru) - sh->cpu0[1];
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        rc = 1;
    r->cpu_s[CPU_P] = proc_cpu_s(P) - p0;
    r->cpu_s[CPU_D] = proc_cpu_s(D) - d0;
    if (getloadavg(&r->load, 1) != 1)
        r->load = -1;
    bench_daemon_stop(D);
    bench_daemon_stop(P);
    if (sh->errors || sh->bad_bytes) {
        fprintf(stderr, "bench: errors: %d, blocks with wrong bytes: %d\n",
                sh->errors, sh->bad_bytes);
        rc = 1;
    }
    if (!rc)
        measure(o, sh, r);
    munmap(sh, sizeof(*sh));
    return rc;
}

static double median_of(const result_t *r, int n, size_t off)
{
    double v[ROUNDS_MAX];

    for (int i = 0; i < n; i++)
        memcpy(&v[i], (const char *)&r[i] + off, sizeof(double));
    return median_d(v, n);
}

static void report(const sopts_t *o, const result_t *r, int n, double *lim,
                   int nlim)
{
    const char *sfx = o->tcp ? "-tcp" : "";
    const char *mode = o->inplace ? "" : "-copy";
    double limit = median_d(lim, nlim);
    char name[64], note[400], lims[160] = "";

    for (int i = 0; i < nlim; i++)
        snprintf(lims + strlen(lims), sizeof(lims) - strlen(lims), "%s%.0f",
                 i ? " " : "", lim[i]);
    for (int ph = 0; ph < 2; ph++) {
        snprintf(name, sizeof(name), "stream-%s%s%s", ph ? "sealed" : "live",
                 mode, sfx);
        snprintf(note, sizeof(note),
                 "%u blocks x %u parts x %llu KiB, %s; clients %s; daemons' "
                 "link on %s; median of %d rounds; limit: ucx_perftest "
                 "ucp_am_bw%s, median of %s MB/s",
                 o->blocks, o->parts, (unsigned long long)(o->part_bytes >> 10),
                 ph ? "fetched after sealing" : "fetched while being put",
                 o->inplace ? "in place in their sidecars' arenas"
                            : "through their own buffers",
                 o->tcp ? "UCX_TLS=tcp,self" : "UCX defaults", n,
                 o->tcp ? " over tcp" : "", nlim ? lims : "none");
        bench_figure(name, median_of(r, n, offsetof(result_t, mbs) +
                                               (size_t)ph * sizeof(double)),
                     "MB/s", limit, note);
    }
    {
        double gb = 2.0 * o->blocks * o->parts * (double)o->part_bytes / 1e9;
        double c[4], tot;

        for (int i = 0; i < 4; i++)
            c[i] = median_of(r, n, offsetof(result_t, cpu_s) +
                                       (size_t)i * sizeof(double));
        tot = c[0] + c[1] + c[2] + c[3];
        snprintf(name, sizeof(name), "stream-cpu%s%s", mode, sfx);
        snprintf(note, sizeof(note),
                 "CPU seconds (user+sys) per GB streamed, both phases: "
                 "prefill client %.2f, P %.2f, D %.2f, decode client %.2f "
                 "(from the clock's start: attach and set-up left out; the "
                 "byte checks, when on, counted in the decode client's); "
                 "%ld cores, load average %.1f after the run",
                 c[0] / gb, c[1] / gb, c[2] / gb, c[3] / gb,
                 sysconf(_SC_NPROCESSORS_ONLN),
                 median_of(r, n, offsetof(result_t, load)));
        bench_figure(name, tot / gb, "s/GB", -1, note);
    }
    snprintf(name, sizeof(name), "stream-first-part%s%s", mode, sfx);
    bench_figure(name, median_of(r, n, offsetof(result_t, ttfp_ms)), "ms", -1,
                 "live: prefill committed part 0 -> decode client has it");
    snprintf(name, sizeof(name), "stream-whole-block%s%s", mode, sfx);
    snprintf(note, sizeof(note),
             "live: same start -> decode client has all %u parts, stored "
             "on its sidecar",
             o->parts);
    bench_figure(name, median_of(r, n, offsetof(result_t, ttb_ms)), "ms", -1,
                 note);
    snprintf(name, sizeof(name), "stream-sealed-block%s%s", mode, sfx);
    bench_figure(name, median_of(r, n, offsetof(result_t, tb2_ms)), "ms", -1,
                 "sealed: first part -> whole block");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kvstash-bench stream [options]\n"
            "  --blocks N      blocks per phase (32)\n"
            "  --parts L       parts (layers) per block (16)\n"
            "  --part-kib K    bytes of a part in KiB (1024)\n"
            "  --rate R        prefill parts per second (0: flat out)\n"
            "  --copy          stream through the clients' own buffers, not\n"
            "                  in place in the sidecars' arenas\n"
            "  --link L        default, tcp or both (both): the daemons' link\n"
            "  --rounds N      interleaved rounds per link, medians (3)\n"
            "  --busy-us N     spin N us before sleeping, daemons and clients\n"
            "                  (default: 200 with more than 4 cores, else 0)\n"
            "  --demo          paced prefill, readable output, no limits run\n"
            "  --no-limits     skip ucx_perftest\n"
            "  --no-verify     skip the byte check\n"
            "  --dir DIR       scratch directory (./var/bench-stream)\n"
            "  --daemon PATH   kvstashd (default: next to this binary)\n"
            "  --dram-mib N    each daemon's DRAM tier in MiB (2048)\n");
}

int bench_stream_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"blocks", required_argument, NULL, 'b'},
        {"parts", required_argument, NULL, 'l'},
        {"part-kib", required_argument, NULL, 'k'},
        {"rate", required_argument, NULL, 'r'},
        {"copy", no_argument, NULL, 'C'},
        {"link", required_argument, NULL, 'L'},
        {"rounds", required_argument, NULL, 'R'},
        {"busy-us", required_argument, NULL, 'B'},
        {"demo", no_argument, NULL, 'D'},
        {"no-limits", no_argument, NULL, 'N'},
        {"no-verify", no_argument, NULL, 'V'},
        {"dir", required_argument, NULL, 'd'},
        {"daemon", required_argument, NULL, 'x'},
        {"dram-mib", required_argument, NULL, 'M'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    char dpath[PATH_MAX];
    sopts_t o = {.dir = "./var/bench-stream",
                 .blocks = 32,
                 .parts = 16,
                 .part_bytes = 1u << 20,
                 .dram_mib = 2048,
                 .limits = true,
                 .verify = true,
                 .inplace = true,
                 .links = LINK_DEFAULT | LINK_TCP,
                 .rounds = 3};
    result_t res[2][ROUNDS_MAX];
    double lim[2][ROUNDS_MAX], cpy1[ROUNDS_MAX], cpy2[ROUNDS_MAX];
    int nres[2] = {0, 0}, nlim[2] = {0, 0}, ncpy = 0, busy_set = -1;
    int c, rc = 0;

    self_dir(dpath, sizeof(dpath), "kvstashd");
    o.daemon = dpath;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.blocks = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'l':
            o.parts = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'k':
            o.part_bytes = strtoull(optarg, NULL, 0) << 10;
            break;
        case 'r':
            o.rate = strtod(optarg, NULL);
            break;
        case 'C':
            o.inplace = false;
            break;
        case 'L':
            o.links = !strcmp(optarg, "default") ? LINK_DEFAULT
                      : !strcmp(optarg, "tcp")   ? LINK_TCP
                      : !strcmp(optarg, "both")  ? LINK_DEFAULT | LINK_TCP
                                                 : 0;
            break;
        case 'R':
            o.rounds = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'B':
            busy_set = (int)strtol(optarg, NULL, 0);
            break;
        case 'D':
            o.demo = true;
            o.limits = false;
            o.links = LINK_DEFAULT;
            o.rounds = 1;
            break;
        case 'N':
            o.limits = false;
            break;
        case 'V':
            o.verify = false;
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'x':
            o.daemon = optarg;
            break;
        case 'M':
            o.dram_mib = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'j':
            bench_json = true;
            break;
        default:
            usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (o.blocks < 1 || o.blocks > MAX_BLOCKS || o.parts < 1 ||
        o.parts > KVS_PARTS_MAX || o.part_bytes < 1024 ||
        o.part_bytes > (64u << 20) ||
        o.blocks * o.parts * o.part_bytes > (1536ull << 20)) {
        fprintf(stderr, "bench: sizes out of range (at most 1.5 GiB a "
                        "phase)\n");
        return 2;
    }
    /* P keeps both phases' blocks (the sealed phase puts them again under
     * new names), and they are scratch class: past the arena, the first
     * are evicted before their fetch, which then finds nothing. Leave an
     * eighth for the arena's own fragmentation. */
    if (2 * (uint64_t)o.blocks * o.parts * o.part_bytes >
        ((uint64_t)o.dram_mib << 20) / 8 * 7) {
        fprintf(stderr,
                "bench: two phases of %u blocks x %u parts x %llu KiB "
                "(%llu MiB) do not fit in 7/8 of each daemon's %u MiB "
                "arena; fewer --blocks or a larger --dram-mib\n",
                o.blocks, o.parts, (unsigned long long)(o.part_bytes >> 10),
                (unsigned long long)((2 * (uint64_t)o.blocks * o.parts *
                                      o.part_bytes) >> 20),
                o.dram_mib);
        return 2;
    }
    if (!o.links || o.rounds < 1 || o.rounds > ROUNDS_MAX) {
        fprintf(stderr, "bench: --link default|tcp|both, --rounds 1..%d\n",
                ROUNDS_MAX);
        return 2;
    }
    busy_us = busy_set >= 0                          ? (unsigned)busy_set
              : sysconf(_SC_NPROCESSORS_ONLN) > 4 ? 200
                                                   : 0;
    /* ucx_perftest on these VMs is bimodal (4 or 14-21 GB/s within
     * minutes): each round samples each link's limit right before its
     * stream run, and the figures are medians over the rounds. */
    for (unsigned r = 0; r < o.rounds && !rc; r++)
        for (int l = 0; l < 2 && !rc; l++) {
            if (!(o.links & (1u << l)))
                continue;
            o.tcp = l == 1;
            if (o.limits)
                limit_sample(&o, lim[l], &nlim[l]);
            if (o.limits && !o.demo && ncpy <= (int)r) {
                copy_sample(&o, &cpy1[ncpy], &cpy2[ncpy]);
                ncpy++;
            }
            rc = run_once(&o, &res[l][nres[l]]);
            if (!rc)
                nres[l]++;
        }
    for (int l = 0; l < 2; l++) {
        o.tcp = l == 1;
        if (nres[l])
            report(&o, res[l], nres[l], lim[l], nlim[l]);
    }
    if (ncpy) {
        /* Beside the limit of the shm link, measured in the same rounds. */
        double ulim = nlim[0] ? median_d(lim[0], nlim[0]) : -1;
        char note[240];

        snprintf(note, sizeof(note),
                 "memcpy in 1 MiB steps over %llu MiB (a phase's bytes, out "
                 "of the caches), one thread; median of %d rounds; limit: "
                 "ucx_perftest on the default link, same rounds",
                 (unsigned long long)(((uint64_t)o.blocks * o.parts *
                                       o.part_bytes) >>
                                      20),
                 ncpy);
        bench_figure("stream-memcpy", median_d(cpy1, ncpy), "MB/s", ulim, note);
        snprintf(note, sizeof(note),
                 "the same by two threads at once, each half (a live stream "
                 "moves each byte twice: at most half of this); median of %d "
                 "rounds",
                 ncpy);
        bench_figure("stream-memcpy-2t", median_d(cpy2, ncpy), "MB/s", ulim,
                     note);
    }
    printf("%s\n", rc ? "FAILED" : "ok");
    return rc;
}
