/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's /metrics endpoint in the Prometheus text exposition format
 * (version 0.0.4), served by libmicrohttpd on its own thread.
 *
 * The serving thread writes, the HTTP thread reads, and they share nothing
 * but atomics: per-opcode request counters and latency histograms and
 * client bytes by tier are relaxed atomic adds made as requests finish;
 * the serving thread's own gauges (connections, leases, pins) are stored
 * by kvs_metrics_publish at each timer tick. The engine's counters come
 * from kvs_store_stats(), one short hold of the store's lock per scrape.
 * A scrape therefore never delays a request by more than that copy, and
 * values may be up to one tick (50 ms) old.
 *
 * Listens on loopback unless configured otherwise (metrics.listen), only
 * answers GET /metrics, and allows a few connections at once: it is for a
 * local scraper, not the network at large.
 */
#include "transport/server/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kvstash/kvstash.h"
#include "kvstash/wire.h"

/* Latency bucket bounds, in microseconds (the last bucket is +Inf). */
static const uint32_t bucket_us[] = {10,    25,    50,     100,    250,
                                     500,   1000,  2500,   5000,   10000,
                                     25000, 50000, 100000, 250000, 1000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]) + 1)

typedef struct op_metrics {
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t buckets[NBUCKETS]; /* not cumulative */
} op_metrics_t;

struct kvs_metrics {
    struct MHD_Daemon *httpd;
    kvs_store_t *store; /* borrowed */
    op_metrics_t ops[KVS_OP_COUNT];
    _Atomic uint64_t bytes[2][3]; /* [direction][tier] */
    _Atomic uint64_t srv[sizeof(kvs_metrics_srv_t) / sizeof(uint64_t)];
};

void kvs_metrics_note_request(kvs_metrics_t *m, unsigned op, uint64_t ns)
{
    op_metrics_t *o;
    size_t b = 0;

    if (!m || op >= KVS_OP_COUNT)
        return;
    o = &m->ops[op];
    while (b < NBUCKETS - 1 && ns > (uint64_t)bucket_us[b] * 1000)
        b++;
    atomic_fetch_add_explicit(&o->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->buckets[b], 1, memory_order_relaxed);
}

void kvs_metrics_note_bytes(kvs_metrics_t *m, int dir, uint8_t tier,
                            uint64_t bytes)
{
    if (!m || dir < 0 || dir > 1)
        return;
    atomic_fetch_add_explicit(&m->bytes[dir][tier < 3 ? tier : 0], bytes,
                              memory_order_relaxed);
}

void kvs_metrics_publish(kvs_metrics_t *m, const kvs_metrics_srv_t *srv)
{
    uint64_t v[sizeof(m->srv) / sizeof(m->srv[0])];

    if (!m)
        return;
    memcpy(v, srv, sizeof(v));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        atomic_store_explicit(&m->srv[i], v[i], memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* One metric's HELP and TYPE lines. */
static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP kvstash_%s %s\n# TYPE kvstash_%s %s\n", name, help, name,
            type);
}

static void one(FILE *f, const char *name, const char *type, const char *help,
                uint64_t v)
{
    head(f, name, type, help);
    fprintf(f, "kvstash_%s %llu\n", name, (unsigned long long)v);
}

/* The same for a value that is not a count. */
static void one_real(FILE *f, const char *name, const char *type,
                     const char *help, double v)
{
    head(f, name, type, help);
    fprintf(f, "kvstash_%s %.6g\n", name, v);
}

static const char *const tier_label[3] = {"none", "dram", "nvme"};

/* A metric with one label and two values: name{label="a"} va, ...="b"}. */
static void two(FILE *f, const char *name, const char *type, const char *help,
                const char *label, const char *a, uint64_t va, const char *b,
                uint64_t vb)
{
    head(f, name, type, help);
    fprintf(f, "kvstash_%s{%s=\"%s\"} %llu\n", name, label, a,
            (unsigned long long)va);
    fprintf(f, "kvstash_%s{%s=\"%s\"} %llu\n", name, label, b,
            (unsigned long long)vb);
}

static void render_requests(FILE *f, kvs_metrics_t *m)
{
    head(f, "requests_total", "counter", "Requests handled, by opcode.");
    for (unsigned op = 1; op < KVS_OP_COUNT; op++)
        if (op != KVS_OP_DATA && op != KVS_OP_SPUT_DONE) /* sent, not served */
            fprintf(f, "kvstash_requests_total{op=\"%s\"} %llu\n",
                    kvs_wire_op_name(op),
                    (unsigned long long)ld(&m->ops[op].count));
    head(f, "request_duration_seconds", "histogram",
         "Time from a request's arrival to its reply, by opcode.");
    for (unsigned op = 1; op < KVS_OP_COUNT; op++) {
        op_metrics_t *o = &m->ops[op];
        const char *nm = kvs_wire_op_name(op);
        uint64_t cum = 0;

        if (op == KVS_OP_DATA || op == KVS_OP_SPUT_DONE)
            continue; /* the daemon sends these, never handles them */
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += ld(&o->buckets[b]);
            if (b < NBUCKETS - 1)
                fprintf(f,
                        "kvstash_request_duration_seconds_bucket{op=\"%s\","
                        "le=\"%g\"} %llu\n",
                        nm, bucket_us[b] / 1e6, (unsigned long long)cum);
            else
                fprintf(f,
                        "kvstash_request_duration_seconds_bucket{op=\"%s\","
                        "le=\"+Inf\"} %llu\n",
                        nm, (unsigned long long)cum);
        }
        fprintf(f, "kvstash_request_duration_seconds_sum{op=\"%s\"} %.9f\n", nm,
                (double)ld(&o->sum_ns) / 1e9);
        fprintf(f, "kvstash_request_duration_seconds_count{op=\"%s\"} %llu\n",
                nm, (unsigned long long)cum);
    }
}

static void render_store(FILE *f, const kvs_store_stats_t *s)
{
    two(f, "client_hits_total", "counter",
        "GET blocks found, by the tier they were in.", "tier", "dram",
        s->dram_hits, "nvme", s->nvme_hits);
    one(f, "client_misses_total", "counter", "GET blocks not found.",
        s->misses);
    head(f, "match_keys_total", "counter",
         "Keys named by MATCH, and those found, by tier.");
    fprintf(f, "kvstash_match_keys_total{result=\"hit\",tier=\"dram\"} %llu\n",
            (unsigned long long)s->match_dram_hits);
    fprintf(f, "kvstash_match_keys_total{result=\"hit\",tier=\"nvme\"} %llu\n",
            (unsigned long long)s->match_nvme_hits);
    fprintf(f, "kvstash_match_keys_total{result=\"miss\",tier=\"none\"} %llu\n",
            (unsigned long long)(s->match_keys - s->match_hits));
    two(f, "blocks", "gauge", "Blocks present, by tier holding a copy.", "tier",
        "dram", s->dram_blocks, "nvme", s->nvme_blocks);
    two(f, "used_bytes", "gauge", "Bytes in use, by tier.", "tier", "dram",
        s->dram_used_bytes, "nvme", s->nvme_used_bytes);
    two(f, "capacity_bytes", "gauge", "Capacity, by tier.", "tier", "dram",
        s->dram_capacity_bytes, "nvme", s->nvme_capacity_bytes);
    two(f, "disk_bytes_total", "counter",
        "Bytes moved to and from the data file.", "direction", "read",
        s->bytes_read, "written", s->bytes_written);
    one(f, "evictions_total", "counter", "Blocks dropped to make room.",
        s->evicted);
    one(f, "degraded_total", "counter", "Blocks written behind to disk.",
        s->degraded);
    one(f, "promoted_total", "counter", "Blocks read from disk into DRAM.",
        s->promoted);
    one(f, "expired_total", "counter", "Blocks dropped at their TTL.",
        s->expired);
    one(f, "degrade_backlog_bytes", "gauge",
        "DRAM bytes chosen to be written behind and not yet written.",
        s->degrade_backlog_bytes);
    one_real(f, "compression_ratio", "gauge",
             "Bytes degraded before compression over bytes stored (1 if "
             "none).",
             s->stored_bytes_degraded ? (double)s->logical_bytes_degraded /
                                            (double)s->stored_bytes_degraded
                                      : 1.0);
    one(f, "block_refs", "gauge",
        "Block references held (sends in flight, leases, pins).", s->refs);
    one(f, "pinned_class_bytes", "gauge", "Bytes of pinned-class blocks.",
        s->pinned_bytes);
    one(f, "checksum_failures_total", "counter",
        "Disk reads that failed a check (the block was dropped).",
        s->corrupt_reads);
    one(f, "io_errors_total", "counter", "Disk reads and writes that failed.",
        s->io_errors);
    one(f, "full_errors_total", "counter", "Puts answered KVS_EFULL.",
        s->full_errors);
    one(f, "store_lock_contended_total", "counter",
        "Requests' acquisitions of the store's lock that found it held.",
        s->lock_contended);
    one_real(f, "store_lock_wait_seconds_total", "counter",
             "Time those acquisitions waited.", (double)s->lock_wait_us / 1e6);
    one(f, "store_rlock_contended_total", "counter",
        "Disk reads' acquisitions of the store's reader lock that found it "
        "held.",
        s->rlock_contended);
}

static void render_srv(FILE *f, kvs_metrics_t *m)
{
    kvs_metrics_srv_t v;
    uint64_t raw[sizeof(m->srv) / sizeof(m->srv[0])] = {0};

    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
        raw[i] = ld(&m->srv[i]);
    memcpy(&v, raw, sizeof(v));
    head(f, "client_bytes_total", "counter",
         "Block bytes clients sent (in) and received (out), by tier.");
    for (int d = 0; d < 2; d++)
        for (int t = 1; t < 3; t++)
            fprintf(f,
                    "kvstash_client_bytes_total{direction=\"%s\","
                    "tier=\"%s\"} %llu\n",
                    d ? "out" : "in", tier_label[t],
                    (unsigned long long)ld(&m->bytes[d][t]));
    one(f, "connections", "gauge", "Open client and peer connections.",
        v.connections);
    one(f, "connections_accepted_total", "counter", "Connections accepted.",
        v.connections_accepted);
    one(f, "connections_rejected_total", "counter",
        "Connections refused (over max_conns).", v.connections_rejected);
    one(f, "leases", "gauge", "MATCH leases held.", v.leases);
    one(f, "connection_pins", "gauge", "Pins held by connections (PIN).",
        v.conn_pins);
    one(f, "bad_frames_total", "counter", "Malformed frames received.",
        v.bad_frames);
    one(f, "auth_failures_total", "counter", "Tokens or secrets refused.",
        v.auth_failures);
    one(f, "disk_jobs", "gauge",
        "Disk reads (GET, MATCH with lease, PREFETCH, VERIFY) queued or "
        "running off the serving thread.",
        v.disk_jobs);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_len, void **con_cls)
{
    kvs_metrics_t *m = cls;
    struct MHD_Response *rsp;
    kvs_store_stats_t st;
    char *buf = NULL;
    size_t len = 0;
    unsigned code = MHD_HTTP_OK;
    enum MHD_Result ret;
    FILE *f;

    (void)version;
    (void)upload;
    (void)upload_len;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET /metrics is served\n";
        rsp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
                                              MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        goto send;
    }
    if (strcmp(url, "/metrics") != 0) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        rsp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
                                              MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_NOT_FOUND;
        goto send;
    }
    f = open_memstream(&buf, &len);
    if (!f)
        return MHD_NO;
    kvs_store_stats(m->store, &st);
    render_requests(f, m);
    render_store(f, &st);
    render_srv(f, m);
    head(f, "build_info", "gauge", "The daemon's version (always 1).");
    fprintf(f, "kvstash_build_info{version=\"%d.%d.%d\"} 1\n",
            KVS_VERSION_MAJOR, KVS_VERSION_MINOR, KVS_VERSION_PATCH);
    if (fclose(f) != 0) {
        free(buf);
        return MHD_NO;
    }
    rsp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!rsp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
send:
    if (!rsp)
        return MHD_NO;
    ret = MHD_queue_response(c, code, rsp);
    MHD_destroy_response(rsp);
    return ret;
}

int kvs_metrics_start(const char *addr, uint16_t port, kvs_store_t *store,
                      kvs_metrics_t **out)
{
    struct sockaddr_in sa;
    kvs_metrics_t *m;

    *out = NULL;
    if (port == 0)
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr ? addr : "127.0.0.1", &sa.sin_addr) != 1) {
        kvs_error("metrics.listen '%s' is not a numeric IPv4 address", addr);
        return KVS_ECONFIG;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->store = store;
    errno = 0;
    m->httpd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, port, NULL, NULL,
        answer, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
        MHD_OPTION_END);
    if (!m->httpd) {
        int err = errno ? -errno : -EADDRINUSE;

        kvs_error("metrics: cannot listen on %s port %u: %s (set "
                  "metrics.port to a free port, or 0 to turn metrics off)",
                  addr ? addr : "127.0.0.1", port, strerror(-err));
        free(m);
        return err;
    }
    kvs_info("metrics at http://%s:%u/metrics", addr ? addr : "127.0.0.1",
             port);
    *out = m;
    return 0;
}

void kvs_metrics_stop(kvs_metrics_t *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->httpd);
    free(m);
}
