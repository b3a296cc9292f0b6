// SPDX-License-Identifier: Apache-2.0
/*
 * kvstash-bench events: what the KV event publisher (transport/server/
 * events.c) costs the store's PUT path. One store in this process (DRAM
 * only, so the disk does not set the pace), 4 KiB scratch puts in chains
 * of 16 from T threads, in interleaved rounds with the event callback off
 * (the limit) and on, with a ZMQ subscriber in this process draining the
 * publisher as a router would. Figures: PUT rate with events vs without
 * (target ratio >= 0.95), and the events and batches published per second.
 */
#include "tools/bench/bench.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/cliarg.h"
#include "kvstore/store.h"
#include "transport/server/events.h"

struct worker {
    kvs_store_t *store;
    uint32_t ns, id;
    uint64_t n, done;
    uint8_t *buf;
};

static void *put_loop(void *arg)
{
    struct worker *w = arg;
    char key[32], parent[32];

    for (uint64_t i = 0; i < w->n; i++) {
        kvs_iov_t iov = {w->buf, 4096};
        kvs_put_args_t a = {0};

        snprintf(key, sizeof(key), "w%u-%llu", w->id, (unsigned long long)i);
        snprintf(parent, sizeof(parent), "w%u-%llu", w->id,
                 (unsigned long long)(i ? i - 1 : 0));
        a.ns = w->ns;
        a.key = key;
        a.key_len = (uint32_t)strlen(key);
        a.parts = &iov;
        a.nparts = 1;
        if (i % 16) {
            a.parent = parent;
            a.parent_len = (uint32_t)strlen(parent);
        }
        if (kvs_store_put(w->store, &a) == 0)
            w->done++;
    }
    return NULL;
}

struct drain {
    void *sub;
    atomic_bool stop;
    uint64_t msgs;
};

static void *drain_loop(void *arg)
{
    struct drain *d = arg;
    char buf[1 << 16];

    while (!atomic_load(&d->stop)) {
        zmq_pollitem_t it = {d->sub, 0, ZMQ_POLLIN, 0};

        if (zmq_poll(&it, 1, 10) <= 0)
            continue;
        while (zmq_recv(d->sub, buf, sizeof(buf), ZMQ_DONTWAIT) >= 0)
            d->msgs++;
    }
    return NULL;
}

/* One round: MB/s of 4 KiB puts into a fresh store, events to ev (NULL:
 * off). */
static double round_puts(const char *dir, unsigned threads, uint64_t per,
                         kvs_events_t *ev)
{
    kvs_store_config_t cfg;
    kvs_store_t *s;
    struct worker w[64];
    pthread_t th[64];
    uint32_t ns;
    uint64_t done = 0;
    double t0, t1;

    kvs_store_config_default(&cfg);
    cfg.dir = dir;
    cfg.nvme_bytes = 0;
    cfg.dram_bytes = 2ull << 30;
    cfg.max_block_bytes = 1u << 20;
    cfg.max_blocks = (uint32_t)(threads * per + 1024);
    cfg.event_cb = ev ? kvs_events_store_cb : NULL;
    cfg.event_arg = ev;
    bench_rmtree(dir);
    if (kvs_store_open(&cfg, &s) || kvs_store_ns_open(s, "bench", 2, &ns)) {
        fprintf(stderr, "kvstash-bench events: cannot open a store in %s\n",
                dir);
        exit(1);
    }
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (struct worker){s, ns, i, per, 0, calloc(1, 4096)};
    }
    t0 = bench_now();
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, put_loop, &w[i]);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        done += w[i].done;
        free(w[i].buf);
    }
    t1 = bench_now();
    kvs_store_close(s);
    bench_rmtree(dir);
    return done * 4096.0 / 1e6 / (t1 - t0); /* MB/s of 4 KiB puts */
}

/* The callback alone, as the store calls it (a 32-byte key and parent),
 * into the daemon's default queue with the publisher draining it:
 * nanoseconds per call, over 9 bursts of 50,000 after one that warms the
 * queue's pages (their first touch is a start-up cost). */
static double callback_ns(const char *ep, double *publish_rate)
{
    kvs_events_config_t ec;
    kvs_events_t *ev;
    uint8_t key[32] = {1}, parent[32];
    kvs_store_event_t e = {
        KVS_STORE_EV_STORED, KVS_TIER_DRAM, 0, 32, key, 32, parent};
    enum { N = 50000, BURSTS = 10 };
    double spent = 0, drain = 0;
    kvs_events_stats_t st;

    memset(parent, 0xff, sizeof(parent)); /* never one of the keys */
    kvs_events_config_default(&ec);
    ec.endpoint = ep;
    ec.buffer_steps = 100;
    if (kvs_events_create(&ec, &ev))
        return -1;
    for (uint32_t b = 0; b < BURSTS; b++) {
        struct timespec d = {0, 100000000L}; /* the publisher drains */
        double t0 = bench_now();

        for (uint32_t i = 0; i < N; i++) {
            memcpy(key, &i, sizeof(i));
            kvs_events_store_cb(ev, &e);
        }
        if (b)
            spent += bench_now() - t0;
        /* Until the publisher has sent all of them (one event each: the
         * parent is not the previous key, so nothing coalesces). */
        do {
            kvs_events_stats(ev, &st);
        } while (st.events < 1 + (uint64_t)N * (b + 1) &&
                 bench_now() - t0 < 10);
        if (b)
            drain += bench_now() - t0;
        nanosleep(&d, NULL);
    }
    *publish_rate = (double)N * (BURSTS - 1) / drain;
    kvs_events_destroy(ev);
    return spent * 1e9 / ((double)N * (BURSTS - 1));
}

int bench_events_main(int argc, char **argv)
{
    static const struct option lo[] = {{"threads", 1, 0, 't'},
                                       {"blocks", 1, 0, 'n'},
                                       {"rounds", 1, 0, 'r'},
                                       {"dir", 1, 0, 'd'},
                                       {"json", 0, 0, 'j'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    unsigned threads = 2, rounds = 5;
    uint32_t x;
    uint64_t blocks = 200000;
    const char *dir = "./var/bench-events";
    double on[BENCH_ROUNDS_MAX], off[BENCH_ROUNDS_MAX];
    double evs = 0, bts = 0, secs = 0;
    uint64_t drops = 0;
    int o;

    while ((o = getopt_long(argc, argv, "t:n:r:d:jh", lo, NULL)) != -1) {
        switch (o) {
        case 't':
            if (kvs_cliarg_u32("kvstash-bench", "--threads", optarg, 1, 64, &x))
                return 2;
            threads = x;
            break;
        case 'n':
            if (kvs_cliarg_u32("kvstash-bench", "--blocks", optarg, 1000,
                               50000000, &x))
                return 2;
            blocks = x;
            break;
        case 'r':
            if (kvs_cliarg_u32("kvstash-bench", "--rounds", optarg, 1,
                               BENCH_ROUNDS_MAX, &x))
                return 2;
            rounds = x;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'j':
            bench_json = true;
            break;
        case 'h':
            printf("usage: kvstash-bench events [-t THREADS] [-n BLOCKS] "
                   "[-r ROUNDS] [-d DIR] [--json]\n"
                   "  4 KiB puts into a DRAM-only store, event callback "
                   "off vs on (ZMQ\n  publisher and a subscriber in this "
                   "process); default 2 threads,\n  200000 blocks, 5 "
                   "rounds, ./var/bench-events\n");
            return 0;
        default:
            return 2;
        }
    }
    for (unsigned r = 0; r < rounds; r++) {
        kvs_events_config_t ec;
        kvs_events_t *ev;
        kvs_events_stats_t st;
        struct drain d = {0};
        pthread_t dt;
        void *zctx = zmq_ctx_new();
        char ep[64];
        double t0;

        /* Alternate which goes first: a fresh arena's first touch costs
         * differently after a store was just closed. */
        if (r % 2 == 0)
            off[r] = round_puts(dir, threads, blocks / threads, NULL);
        kvs_events_config_default(&ec);
        snprintf(ep, sizeof(ep), "ipc://%s.sock", dir);
        ec.endpoint = ep;
        ec.queue_events = 1u << 20;
        ec.buffer_steps = 1000;
        if (kvs_events_create(&ec, &ev)) {
            fprintf(stderr, "kvstash-bench events: cannot bind %s\n", ep);
            return 1;
        }
        d.sub = zmq_socket(zctx, ZMQ_SUB);
        zmq_setsockopt(d.sub, ZMQ_SUBSCRIBE, "", 0);
        zmq_connect(d.sub, ep);
        pthread_create(&dt, NULL, drain_loop, &d);
        t0 = bench_now();
        on[r] = round_puts(dir, threads, blocks / threads, ev);
        kvs_events_stats(ev, &st); /* every put is done: final counts */
        kvs_events_destroy(ev);    /* publishes what is queued */
        secs += bench_now() - t0;
        atomic_store(&d.stop, true);
        pthread_join(dt, NULL);
        zmq_close(d.sub);
        zmq_ctx_term(zctx);
        if (r % 2 == 1)
            off[r] = round_puts(dir, threads, blocks / threads, NULL);
        evs += (double)(st.queued - st.dropped);
        drops += st.dropped;
        bts += (double)d.msgs;
    }
    bench_report_rounds(
        "events-put-rate", rounds, on, off,
        "4 KiB puts (MB/s = puts/s x 4096 / 1e6) with the event "
        "publisher on vs off");
    bench_figure("events-published", evs / secs, "events/s", 0,
                 "tier changes published per second of the rounds with "
                 "events on, store open and close included");
    bench_figure("events-batches", bts / secs, "batches/s", 0,
                 "KVEventBatch messages the subscriber received");
    {
        char ep[64];

        snprintf(ep, sizeof(ep), "ipc://%s.sock", dir);
        double rate = 0, ns = callback_ns(ep, &rate);

        bench_figure("events-callback", ns, "ns/event", 0,
                     "the store's event callback alone (copy into the "
                     "queue under its mutex), publisher draining");
        bench_figure("events-publish-capacity", rate, "events/s", 0,
                     "one publisher thread: bursts of 50,000 queued events "
                     "encoded and sent, no subscriber");
    }
    bench_figure("events-dropped", (double)drops, "events", 0,
                 "tier changes lost to a full queue (should be 0)");
    return 0;
}
