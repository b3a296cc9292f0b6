/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network benchmarks (see bench_net.h). The order inside one run is fixed so
 * that no limit is measured while kvstashd or our clients are busy:
 *
 *   1. start kvstashd (DRAM only, loopback, ephemeral port) unless --port;
 *   2. the throughput figures, each through libkvstash in processes other
 *      than the daemon's, alternating with their limits (limits.sh ucx
 *      1 MiB, limits.sh redis 256 KiB) in rounds while the daemon sleeps;
 *      the median round is reported (bench_report_rounds);
 *   3. MATCH: with our daemon stopped, its limits (ucx_perftest ucp_am_lat
 *      ping-pongs: the median round trip of 8 bytes, the p99 of a MATCH
 *      request's size; a spinning thread counting the machine's CPU
 *      stalls), then the figure on a daemon started to spin;
 *   4. stop kvstashd (SIGTERM, orderly shutdown).
 *
 * Client processes are forked before this process opens UCX (UCX state does
 * not survive fork()).
 */
#include "tools/bench/bench.h"
#include "tools/bench/bench_daemon.h"
#include "tools/bench/bench_net.h"
#include "common/compiler.h"

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

typedef struct net_opts {
    uint16_t port;      /* 0: start our own daemon */
    const char *daemon; /* kvstashd path */
    const char *dir;    /* data and limits scratch */
    const char *ns;
    unsigned seconds;
    unsigned clients; /* net-multi processes */
    unsigned window;  /* async GETs in flight per client */
    unsigned multi_window;
    unsigned blocks;   /* distinct 1 MiB blocks net-get cycles */
    unsigned rounds;   /* net-get, net-multi: (limit, ours) */
    int busy_us;       /* daemon and client spinning; -1: auto */
    int match_busy_us; /* the same, for the MATCH figure */
    bool limits;       /* measure limits */
    bool want_get, want_multi, want_match;
} net_opts_t;

#define NET_ROUNDS_MAX BENCH_ROUNDS_MAX

static int cmp_double(const void *a, const void *b);

static pid_t daemon_pid;
static pid_t daemon_owner; /* the process that started it */
static void stop_daemon(void);
static void on_fatal_signal(int sig);

static void usage(void)
{
    fprintf(
        stderr,
        "usage: kvstash-bench net|net-get|net-multi|net-match [options]\n"
        "  --port N        use a running kvstashd on 127.0.0.1:N\n"
        "  --daemon PATH   kvstashd to start (default: next to this binary)\n"
        "  --dir DIR       scratch directory (./var/bench-net)\n"
        "  --seconds S     per figure (5)\n"
        "  --clients N     processes for net-multi (8)\n"
        "  --window N      GETs in flight per client in net-get (8)\n"
        "  --blocks N      distinct 1 MiB blocks net-get cycles over (64)\n"
        "  --rounds N      net-get, net-multi: rounds of (limit, ours), the\n"
        "                  median ratio is reported (5, at most 9)\n"
        "  --busy-us N     daemon/client spin before sleeping (auto: 200\n"
        "                  with more than 4 cores, else 0; MATCH always\n"
        "                  spins, as its ucx_perftest limit does)\n"
        "  --multi-window N  GETs in flight per client in net-multi (1,\n"
        "                  like redis-benchmark without pipelining)\n"
        "  --no-limits     skip the limit measurements\n"
        "  --json          one JSON object per figure\n");
}

/* ---- the daemon --------------------------------------------------- */

static int start_daemon(net_opts_t *o, int busy_us)
{
    char busy[64];
    const char *args[] = {"--dram-mib=1024", "--nvme-mib=0", busy,
                          "--log-level=warn", NULL};

    snprintf(busy, sizeof(busy), "--set=daemon.busy_poll_us=%d", busy_us);
    /* Every exit(), including connect_or_die()'s, and the usual fatal
     * signals stop the daemon; a forked client's do not (stop_daemon and
     * on_fatal_signal check the owner). */
    if (!daemon_owner) {
        atexit(stop_daemon);
        signal(SIGINT, on_fatal_signal);
        signal(SIGTERM, on_fatal_signal);
        signal(SIGHUP, on_fatal_signal);
        signal(SIGPIPE, on_fatal_signal);
    }
    daemon_owner = getpid();
    daemon_pid = bench_daemon_start(o->daemon, o->dir, args, &o->port);
    if (daemon_pid < 0) {
        daemon_pid = 0;
        return -ECHILD;
    }
    return 0;
}

/* Ctrl-C, or a reader of our output that went away (SIGPIPE): stop the
 * daemon too, then die of the signal as before. */
static void on_fatal_signal(int sig)
{
    if (daemon_pid && getpid() == daemon_owner)
        kill(daemon_pid, SIGTERM);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void stop_daemon(void)
{
    int st;

    if (!daemon_pid || getpid() != daemon_owner)
        return;
    kill(daemon_pid, SIGTERM);
    waitpid(daemon_pid, &st, 0);
    daemon_pid = 0;
}

static kvs_client_t *connect_or_die(const net_opts_t *o, uint32_t busy_us)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS |
                      KVS_CLIENT_PARAM_BUSY_POLL_US,
        .port = o->port,
        .ns = o->ns,
        .busy_poll_us = busy_us,
    };
    kvs_client_t *c;
    int ret = kvs_client_create(&p, &c);

    if (ret) {
        fprintf(stderr, "bench: cannot connect to port %u: %s\n", o->port,
                kvs_strerror(ret));
        exit(1);
    }
    return c;
}

static void load_blocks(kvs_client_t *c, const char *prefix, unsigned n,
                        size_t size)
{
    uint8_t *buf = malloc(size);
    char key[64];

    if (!buf)
        exit(1);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (unsigned i = 0; i < n; i++) {
        int ret;

        snprintf(key, sizeof(key), "%s-%u", prefix, i);
        ret = kvs_client_put(c, key, (uint32_t)strlen(key), buf, size, 0);
        if (ret) {
            fprintf(stderr, "bench: put %s: %s\n", key, kvs_strerror(ret));
            exit(1);
        }
    }
    free(buf);
}

/* ---- GET throughput ----------------------------------------------- */

/* window GETs (or PUTs) in flight, each slot reissued when it completes. */
typedef struct mover {
    kvs_client_t *c;
    bool put;
    kvs_client_get_t *gets; /* window entries, when !put */
    kvs_client_put_t *puts; /* window entries, when put */
    kvs_iov_t *iovs;        /* the PUTs' sources */
    unsigned *slot;         /* slot[i] == i: the callbacks' argument */
    char (*keys)[64];
    size_t size;
    unsigned nkeys;
    unsigned next;
    uint64_t bytes;
    int errors;
    bool stop;
    const char *prefix;
} mover_t;

static mover_t *cur_mover;

static void move_done(void *arg, int status);

static void move_issue(mover_t *g, unsigned i)
{
    kvs_client_key_t key = {.data = g->keys[i]};
    int ret;

    snprintf(g->keys[i], 64, "%s-%u", g->prefix, g->next++ % g->nkeys);
    key.len = (uint32_t)strlen(g->keys[i]);
    if (g->put) {
        g->puts[i] = (kvs_client_put_t){.key = key,
                                        .parts = &g->iovs[i],
                                        .nparts = 1,
                                        .cls = KVS_CLASS_SCRATCH};
        ret = kvs_client_put_batch_async(g->c, &g->puts[i], 1, move_done,
                                         &g->slot[i]);
    } else {
        g->gets[i].key = key;
        ret = kvs_client_get_batch_async(g->c, &g->gets[i], 1, 0, move_done,
                                         &g->slot[i]);
    }
    if (ret != 0)
        g->errors++;
}

static void move_done(void *arg, int status)
{
    unsigned i = *(unsigned *)arg;
    mover_t *g = cur_mover;

    if (status)
        g->errors++;
    else
        g->bytes += g->put ? g->size : g->gets[i].len;
    if (!g->stop)
        move_issue(g, i);
}

/* Keeps window GETs (or PUTs, replacing nkeys blocks) in flight for
 * seconds; returns bytes per second. Each one in flight has a buffer of its
 * own, or with one_buf they all use the same one, as ucx_perftest does. */
static double run_moves(kvs_client_t *c, bool put, const char *prefix,
                        unsigned nkeys, size_t size, unsigned window,
                        bool one_buf, bool huge, unsigned seconds, bool spin,
                        int *errors_out)
{
    mover_t g = {
        .c = c, .put = put, .size = size, .nkeys = nkeys, .prefix = prefix};
    unsigned nbufs = one_buf ? 1 : window;
    size_t len = (size_t)nbufs * size;
    uint8_t *buf = huge ? bench_alloc_huge(len) : aligned_alloc(4096, len);
    kvs_mr_t *mr = NULL;
    double t0, t1, warm_end;
    uint64_t warm_bytes = 0;

    g.gets = calloc(window, sizeof(*g.gets));
    g.puts = calloc(window, sizeof(*g.puts));
    g.iovs = calloc(window, sizeof(*g.iovs));
    g.slot = calloc(window, sizeof(*g.slot));
    g.keys = calloc(window, 64);
    if (!buf || !g.gets || !g.puts || !g.iovs || !g.slot || !g.keys)
        exit(1);
    memset(buf, put ? 0x5a : 0, (size_t)nbufs * size);
    if (!put && kvs_client_mem_reg(c, buf, (size_t)nbufs * size, &mr) != 0)
        mr = NULL;
    cur_mover = &g;
    for (unsigned i = 0; i < window; i++) {
        uint8_t *b = buf + (size_t)(i % nbufs) * size;

        g.slot[i] = i;
        g.gets[i] = (kvs_client_get_t){.buf = b, .cap = size, .mr = mr};
        g.iovs[i] = (kvs_iov_t){.base = b, .len = size};
        move_issue(&g, i);
    }
    /* One second of warm-up, not counted. */
    warm_end = bench_now() + 1.0;
    while (bench_now() < warm_end)
        spin ? kvs_client_progress(c) : kvs_client_progress_wait(c, 10);
    warm_bytes = g.bytes;
    t0 = bench_now();
    while ((t1 = bench_now()) < t0 + seconds)
        spin ? kvs_client_progress(c) : kvs_client_progress_wait(c, 10);
    g.stop = true;
    kvs_client_wait(c);
    *errors_out = g.errors;
    kvs_client_mem_dereg(c, mr);
    if (huge)
        bench_free_huge(buf, len);
    else
        free(buf);
    free(g.gets);
    free(g.puts);
    free(g.iovs);
    free(g.slot);
    free(g.keys);
    return (double)(g.bytes - warm_bytes) / (t1 - t0);
}

static double run_gets(kvs_client_t *c, const char *prefix, unsigned nkeys,
                       size_t size, unsigned window, bool one_buf,
                       unsigned seconds, bool spin, int *errors_out)
{
    return run_moves(c, false, prefix, nkeys, size, window, one_buf, false,
                     seconds, spin, errors_out);
}

/* The ucx_perftest figure this machine gives swings by 2x within minutes
 * (other tenants, frequency), so one limit measured before one figure of
 * ours makes a ratio of two unrelated moments. Instead: rounds of (limit,
 * ours) back to back, the order alternating so that a drift favours
 * neither, and the round with the median ratio is reported (its own value
 * and limit, so value / limit is that ratio). The daemon and our client
 * sit idle, asleep, while ucx_perftest runs. */
static void fig_get(const net_opts_t *o, const char *limits_dir)
{
    kvs_client_t *c = connect_or_die(o, (uint32_t)o->busy_us * 5);
    double ours[NET_ROUNDS_MAX], lim[NET_ROUNDS_MAX], same[NET_ROUNDS_MAX];
    double puts[NET_ROUNDS_MAX], puts_thp[NET_ROUNDS_MAX], mcpy = -1;
    double puts_ep[NET_ROUNDS_MAX];
    kvs_client_t *cpe;
    int errors = 0;
    char what[256];

    /* A second client without a put endpoint (KVSTASH_PUT_EP=0): the
     * daemon reads its PUTs, as it does for clients past
     * daemon.put_endpoints (transport/client/conn.c). */
    setenv("KVSTASH_PUT_EP", "0", 1);
    cpe = connect_or_die(o, (uint32_t)o->busy_us * 5);
    unsetenv("KVSTASH_PUT_EP");
    load_blocks(c, "g1m", o->blocks, 1u << 20);
    if (o->limits &&
        bench_limits_run(limits_dir, 1u << 20, 1, o->seconds, "memcpy") == 0)
        mcpy = bench_limit("memcpy");
    for (unsigned r = 0; r < o->rounds; r++) {
        lim[r] = -1;
        for (int step = 0; step < 2; step++) {
            if ((step == 0) == (r % 2 == 0)) {
                if (o->limits && bench_limits_run(limits_dir, 1u << 20, 1,
                                                  o->seconds, "ucx") == 0)
                    lim[r] = bench_limit("ucx-am");
            } else {
                int e = 0;

                ours[r] = run_gets(c, "g1m", o->blocks, 1u << 20, o->window,
                                   false, o->seconds, o->busy_us > 0, &e) /
                          1e6;
                errors += e;
                /* As ucx_perftest does: one source, one destination,
                 * several in flight. */
                same[r] = run_gets(c, "g1m", 1, 1u << 20, o->window, true,
                                   o->seconds, o->busy_us > 0, &e) /
                          1e6;
                errors += e;
                /* At most 64 MiB of them, so that they never push the
                 * GETs' blocks out of the 1 GiB arena. */
                puts[r] = run_moves(c, true, "p1m", KVS_MIN(o->blocks, 64u),
                                    1u << 20, o->window, false, false,
                                    o->seconds, o->busy_us > 0, &e) /
                          1e6;
                errors += e;
                /* The same from staging buffers on huge pages: the daemon
                 * reads a PUT's bytes with process_vm_readv, which pins the
                 * client's pages 16 at a time; on 4 KiB pages that walk
                 * costs about a third of the serving thread. */
                puts_thp[r] = run_moves(c, true, "p1m", KVS_MIN(o->blocks, 64u),
                                        1u << 20, o->window, false, true,
                                        o->seconds, o->busy_us > 0, &e) /
                              1e6;
                errors += e;
                puts_ep[r] = run_moves(cpe, true, "p1m",
                                       KVS_MIN(o->blocks, 64u), 1u << 20,
                                       o->window, false, false, o->seconds,
                                       o->busy_us > 0, &e) /
                             1e6;
                errors += e;
            }
        }
    }
    kvs_client_destroy(cpe);
    kvs_client_destroy(c);
    if (errors)
        fprintf(stderr, "bench: %d GETs or PUTs failed\n", errors);
    /* ucx_perftest moves one buffer again and again (cache-resident); the
     * store serves distinct blocks, so say how many. */
    snprintf(what, sizeof(what),
             "%u distinct blocks, %u in flight, vs ucx_perftest ucp_am_bw "
             "1 MiB; target ratio >= 0.85",
             o->blocks, o->window);
    bench_report_rounds("net-get-1MiB-dram", o->rounds, ours, lim, what);
    bench_report_rounds(
        "net-get-1MiB-dram-same-block", o->rounds, same, lim,
        "one block GET again and again into one buffer, as "
        "ucx_perftest ucp_am_bw 1 MiB sends one buffer, with as "
        "many in flight; the same limits as net-get-1MiB-dram");
    snprintf(what, sizeof(what),
             "%u distinct blocks replaced, %u in flight, from another "
             "process into the DRAM tier, from 4 KiB pages, by a "
             "default client (its put endpoint); the same limits as "
             "net-get-1MiB-dram; target ratio >= 0.8",
             KVS_MIN(o->blocks, 64u), o->window);
    bench_report_rounds("net-put-1MiB-dram", o->rounds, puts, lim, what);
    bench_report_rounds(
        "net-put-1MiB-dram-thp", o->rounds, puts_thp, lim,
        "net-put-1MiB-dram from client buffers on transparent huge pages "
        "(MADV_HUGEPAGE), as a long-lived staging pool can be; the same "
        "limits, whose ucx_perftest buffers are on 4 KiB pages (no target: "
        "the target is net-put-1MiB-dram's)");
    bench_report_rounds(
        "net-put-1MiB-dram-daemon-reads", o->rounds, puts_ep, lim,
        "net-put-1MiB-dram from a client without a put endpoint "
        "(KVSTASH_PUT_EP=0, or past daemon.put_endpoints): the daemon reads "
        "its PUTs; the same limits (no target: the target is "
        "net-put-1MiB-dram's)");
    /* One cold memcpy: a one-copy GET can at best match it. Against the
     * median of our rounds. */
    if (mcpy > 0) {
        double s[NET_ROUNDS_MAX];

        memcpy(s, ours, o->rounds * sizeof(*s));
        qsort(s, o->rounds, sizeof(*s), cmp_double);
        bench_figure("net-get-1MiB-dram-vs-memcpy", s[o->rounds / 2], "MB/s",
                     mcpy,
                     "median of our rounds vs one thread's memcpy of "
                     "1 MiB, cold (limits.sh memcpy)");
    }
}

/* ---- 8 clients ------------------------------------------------------ */

/* One round: n forked clients GET for o->seconds; returns their MB/s. The
 * blocks are loaded in the first round only. */
static double run_multi(const net_opts_t *o, bool load)
{
    unsigned n = o->clients;
    pid_t *pids = calloc(n, sizeof(*pids));
    int(*pipes)[2] = calloc(n, sizeof(*pipes));
    int go[2];
    double total = 0;
    kvs_client_t *c;

    if (!pids || !pipes || pipe(go) != 0)
        exit(1);
    fflush(NULL);
    for (unsigned i = 0; i < n; i++) {
        if (pipe(pipes[i]) != 0)
            exit(1);
        pids[i] = fork();
        if (pids[i] == 0) {
            char ch;
            int errors = 0;
            double bps;

            close(go[1]);
            if (read(go[0], &ch, 1) != 1)
                _exit(1);
            c = connect_or_die(o, 0);
            /* Eight spinning clients would only fight over the cores:
             * these sleep on UCX's event fd when idle. */
            bps = run_gets(c, "g256k", 128, 256u << 10, o->multi_window, false,
                           o->seconds, false, &errors);
            kvs_client_destroy(c);
            if (write(pipes[i][1], &bps, sizeof(bps)) != sizeof(bps))
                _exit(1);
            _exit(errors ? 1 : 0);
        }
        close(pipes[i][1]);
    }
    close(go[0]);
    /* Children are waiting; load with a client of our own, then go. */
    if (load) {
        c = connect_or_die(o, 0);
        load_blocks(c, "g256k", 128, 256u << 10);
        kvs_client_destroy(c);
    }
    for (unsigned i = 0; i < n; i++)
        if (write(go[1], "g", 1) != 1)
            exit(1);
    close(go[1]);
    for (unsigned i = 0; i < n; i++) {
        double bps = 0;
        int st;

        if (read(pipes[i][0], &bps, sizeof(bps)) == sizeof(bps))
            total += bps;
        close(pipes[i][0]);
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st))
            fprintf(stderr, "bench: client %u had errors\n", i);
    }
    free(pids);
    free(pipes);
    return total / 1e6;
}

/* Rounds of (redis-benchmark, ours) like fig_get: redis-benchmark's 4000
 * GETs take a fraction of a second and vary as much as ucx_perftest. */
static void fig_multi(const net_opts_t *o, const char *limits_dir)
{
    double ours[NET_ROUNDS_MAX], lim[NET_ROUNDS_MAX];
    char what[160];

    for (unsigned r = 0; r < o->rounds; r++) {
        lim[r] = -1;
        for (int step = 0; step < 2; step++) {
            if ((step == 0) == (r % 2 == 0)) {
                if (o->limits && bench_limits_run(limits_dir, 256u << 10, 8,
                                                  o->seconds, "redis") == 0)
                    lim[r] = bench_limit("redis-get");
            } else {
                ours[r] = run_multi(o, r == 0);
            }
        }
    }
    snprintf(what, sizeof(what),
             "%u clients, %u in flight each, vs redis GET 256 KiB 8 clients; "
             "target ratio >= 3",
             o->clients, o->multi_window);
    bench_report_rounds("net-get-256KiB-8clients", o->rounds, ours, lim, what);
}

/* ---- MATCH latency -------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The request of a 128-key MATCH of 32-byte keys: frame header, count,
 * then a length byte and the key for each. */
#define MATCH_CHAIN 128
#define MATCH_REQ_BYTES (64 + MATCH_CHAIN * 33)

typedef struct match_limits {
    double rtt_us; /* ucx_perftest round trip, 8 B, median */
} match_limits_t;

/* MATCHes of whole 128-key chains for o->seconds, cycling over nchains
 * chains. The chains are put interleaved (block k of every chain, then
 * block k + 1), so with many of them a chain's entries lie far apart in
 * the daemon's block table and a MATCH finds them out of cache; with one,
 * its 128 entries stay cached. Either way, after its first MATCH a chain
 * lies whole in the LRU list, so what is timed is the lookups and the
 * one-piece move, not a touch of each block. */
static void match_run(const net_opts_t *o, unsigned nchains, const char *figure,
                      const match_limits_t *lim)
{
    kvs_client_t *c = connect_or_die(o, o->match_busy_us ? 1000000 : 0);
    size_t nkeys = (size_t)nchains * MATCH_CHAIN, n = 0, cap = 4000000;
    char(*names)[33] = malloc(nkeys * sizeof(*names));
    kvs_client_key_t *keys = malloc(nkeys * sizeof(*keys));
    double *lat = malloc(cap * sizeof(*lat));
    double limit = lim->rtt_us > 0 ? lim->rtt_us + 10 : -1, end;
    kvs_client_match_result_t r;
    uint8_t block[4096];
    char fig[96], what[320];

    if (!names || !keys || !lat)
        exit(1);
    memset(block, 1, sizeof(block));
    for (unsigned k = 0; k < MATCH_CHAIN; k++) {
        for (unsigned ch = 0; ch < nchains; ch++) {
            size_t i = (size_t)ch * MATCH_CHAIN + k;

            /* 32-byte keys, like a sha256 prefix hash. */
            snprintf(names[i], sizeof(names[i]), "%08x%024x", ch,
                     k * 2654435761u);
            keys[i] = (kvs_client_key_t){.data = names[i], .len = 32};
            if (kvs_client_put(c, names[i], 32, block, sizeof(block), 0) != 0)
                exit(1);
        }
    }
    for (unsigned i = 0; i < 1000; i++)
        kvs_client_match(c, &keys[(size_t)(i % nchains) * MATCH_CHAIN],
                         MATCH_CHAIN, 0, 0, NULL, &r);
    end = bench_now() + o->seconds;
    while (n < cap && bench_now() < end) {
        const kvs_client_key_t *chain =
            &keys[(size_t)(n % nchains) * MATCH_CHAIN];
        double t0 = bench_now();
        int ret = kvs_client_match(c, chain, MATCH_CHAIN, 0, 0, NULL, &r);

        lat[n++] = (bench_now() - t0) * 1e6;
        if (ret || r.matched != MATCH_CHAIN) {
            fprintf(stderr, "bench: match: %s, %zu matched\n",
                    kvs_strerror(ret), r.matched);
            exit(1);
        }
    }
    kvs_client_destroy(c);
    qsort(lat, n, sizeof(*lat), cmp_double);
    fprintf(stderr,
            "bench: %s, %zu samples, us: p50 %.1f p90 %.1f p95 %.1f "
            "p98 %.1f p99 %.1f p99.9 %.1f max %.1f\n",
            figure, n, lat[n / 2], lat[n * 90 / 100], lat[n * 95 / 100],
            lat[n * 98 / 100], lat[n * 99 / 100], lat[n * 999 / 1000],
            lat[n - 1]);
    snprintf(what, sizeof(what),
             "%u chain%s of 4 KiB blocks%s; limit = UCX AM round trip + "
             "10 us; target ratio <= 1; daemon and client %s",
             nchains, nchains > 1 ? "s" : "",
             nchains > 1 ? ", put interleaved, matched in turn" : "",
             o->match_busy_us ? "spin, as ucx_perftest does" : "sleep");
    snprintf(fig, sizeof(fig), "%s-p50", figure);
    bench_figure(fig, lat[n / 2], "us", limit, what);
    snprintf(fig, sizeof(fig), "%s-p99", figure);
    bench_figure(fig, lat[n * 99 / 100], "us", limit, what);
    free(lat);
    free(keys);
    free(names);
}

static void fig_match(const net_opts_t *o, const match_limits_t *lim)
{
    match_run(o, 1, "net-match128", lim);
    match_run(o, 256, "net-match128-256chains", lim);
}

/* A UCX active-message round trip of size bytes on this machine, at a
 * percentile: ucx_perftest ucp_am_lat reports half of it (one-way). */
static double measure_ucx_rtt_us(size_t size, double pct)
{
    char cmd[768];
    FILE *p;
    double one_way = -1;

    snprintf(cmd, sizeof(cmd),
             "p=$(shuf -i 20000-60000 -n 1); "
             "ucx_perftest -p $p >/dev/null 2>&1 & srv=$!; sleep 0.5; "
             "timeout 60 ucx_perftest 127.0.0.1 -p $p -t ucp_am_lat -s %zu "
             "-R %g -n 300000 -w 10000 -f 2>/dev/null | "
             "awk '$1 ~ /^[0-9]+$/ && NF == 8 {l = $2} END {print l}'; "
             "kill $srv 2>/dev/null; wait $srv 2>/dev/null",
             size, pct);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (fscanf(p, "%lf", &one_way) != 1)
        one_way = -1;
    pclose(p);
    return one_way > 0 ? 2 * one_way : -1;
}

static void match_limits(match_limits_t *lim)
{
    double rtt99, stalls, lost;
    char what[160];

    lim->rtt_us = measure_ucx_rtt_us(8, 50);
    rtt99 = measure_ucx_rtt_us(MATCH_REQ_BYTES, 99);
    bench_cpu_stalls(2, &stalls, &lost);
    if (lim->rtt_us > 0)
        bench_figure("ucx-am-round-trip", lim->rtt_us, "us", -1,
                     "ucx_perftest ucp_am_lat -s 8, 2 x one-way median");
    if (rtt99 > 0) {
        snprintf(what, sizeof(what),
                 "ucx_perftest ucp_am_lat -s %d -R 99 (a MATCH request's "
                 "size), 2 x one-way p99",
                 MATCH_REQ_BYTES);
        bench_figure("ucx-am-round-trip-p99", rtt99, "us", -1, what);
    }
    snprintf(what, sizeof(what),
             "a spinning thread on an idle machine lost its CPU for > 5 us "
             "this often; %.1f%% of its time",
             lost);
    bench_figure("cpu-stalls", stalls, "per s", -1, what);
}

int bench_net_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"daemon", required_argument, NULL, 'D'},
        {"dir", required_argument, NULL, 'd'},
        {"seconds", required_argument, NULL, 's'},
        {"clients", required_argument, NULL, 'c'},
        {"window", required_argument, NULL, 'w'},
        {"multi-window", required_argument, NULL, 'W'},
        {"blocks", required_argument, NULL, 'b'},
        {"rounds", required_argument, NULL, 'r'},
        {"busy-us", required_argument, NULL, 'B'},
        {"no-limits", no_argument, NULL, 'L'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char daemon_path[PATH_MAX], limits_dir[PATH_MAX];
    net_opts_t o = {.dir = "./var/bench-net",
                    .ns = "bench",
                    .seconds = 5,
                    .clients = 8,
                    .window = 8,
                    .multi_window = 1,
                    .blocks = 64,
                    .rounds = 5,
                    .busy_us = -1,
                    .limits = true};
    match_limits_t mlim = {-1};
    bool busy_auto, own_daemon;
    const char *mode = argv[0];
    int c;

    bench_daemon_default_path(daemon_path, sizeof(daemon_path));
    o.daemon = daemon_path;
    o.want_get = !strcmp(mode, "net") || !strcmp(mode, "net-get");
    o.want_multi = !strcmp(mode, "net") || !strcmp(mode, "net-multi");
    o.want_match = !strcmp(mode, "net") || !strcmp(mode, "net-match");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o.port = (uint16_t)atoi(optarg);
            break;
        case 'D':
            o.daemon = optarg;
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 's':
            o.seconds = (unsigned)atoi(optarg);
            break;
        case 'c':
            o.clients = (unsigned)atoi(optarg);
            break;
        case 'w':
            o.window = (unsigned)atoi(optarg);
            break;
        case 'W':
            o.multi_window = (unsigned)atoi(optarg);
            break;
        case 'b':
            o.blocks = (unsigned)atoi(optarg);
            break;
        case 'r':
            o.rounds = (unsigned)atoi(optarg);
            break;
        case 'B':
            o.busy_us = atoi(optarg);
            break;
        case 'L':
            o.limits = false;
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
    if (!o.seconds || !o.clients || !o.window || !o.multi_window || !o.blocks ||
        o.blocks > 512 || !o.rounds || o.rounds > NET_ROUNDS_MAX) {
        usage();
        return 2;
    }
    /* mkdir -p */
    {
        char tmp[PATH_MAX];

        snprintf(tmp, sizeof(tmp), "%s", o.dir);
        for (char *p = tmp + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                mkdir(tmp, 0755);
                *p = '/';
            }
        }
    }
    if (mkdir(o.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: cannot create %s: %s\n", o.dir,
                strerror(errno));
        return 1;
    }
    snprintf(limits_dir, sizeof(limits_dir), "%s/limits", o.dir);
    /* Spinning pays only with idle cores: a 2-core machine running the
     * daemon and its clients has none. */
    busy_auto = o.busy_us < 0;
    if (busy_auto)
        o.busy_us = sysconf(_SC_NPROCESSORS_ONLN) > 4 ? 200 : 0;
    /* MATCH's limit is a ping-pong in which both sides spin; so do ours
     * for that figure, on any number of cores, unless told otherwise. */
    o.match_busy_us = busy_auto ? 1000000 : o.busy_us;
    own_daemon = !o.port;
    if (own_daemon && (o.want_get || o.want_multi) &&
        start_daemon(&o, o.busy_us) != 0)
        return 1;
    if (o.want_get)
        fig_get(&o, limits_dir);
    if (o.want_multi)
        fig_multi(&o, limits_dir);
    if (o.want_match) {
        /* The machine's latency limits just before the figure, with no
         * daemon of ours running: its stalls change by the minute. */
        if (own_daemon)
            stop_daemon();
        if (o.limits)
            match_limits(&mlim);
        if (own_daemon && start_daemon(&o, o.match_busy_us) != 0)
            return 1;
        fig_match(&o, &mlim);
    }
    stop_daemon();
    return 0;
}
