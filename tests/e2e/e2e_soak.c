/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Soak: many client processes against one real kvstashd for a while, each
 * doing a random mix of put (one to four parts), get, async get batch,
 * match with a lease then release, delete, streaming put (begin, parts,
 * seal), pin and unpin, and exists + get of a neighbour's block. Every
 * block carries a header (client, key, version, length) and bytes derived
 * from it, so every byte a get returns is checked: a client's own key must
 * come back as the version it last wrote (or a miss: the store is a cache
 * and evicts), a neighbour's block must be some version of that key, whole.
 *
 *   KVS_SOAK_CLIENTS  processes (default 16)   KVS_SOAK_SECONDS (default 10)
 *
 * Promises checked: 0 errors (a status other than success, a miss,
 * KVS_EBUSY for replacing a block a neighbour is reading, or KVS_EFULL for
 * a put that waited full_wait_ms for write-behind in vain, the store's
 * back-pressure; both counted and printed); 0 wrong bytes;
 * the daemon's resident memory after warm-up (the first third of the run)
 * grows by at most KVS_SOAK_RSS_GROWTH_PCT (default 10) percent of itself
 * plus 16 MiB; afterwards, with every client gone, the store holds no
 * references, no leases and no pins, VERIFY finds nothing bad, and the
 * daemon exits 0 on SIGTERM (under ASan, LeakSanitizer then finds no
 * leak). Under ASan the daemon's quarantine is capped at 32 MiB so that it
 * fills during warm-up instead of looking like growth.
 *
 * The ctest test e2e_soak runs the default; e2e_soak_64x60 (label "long",
 * left out of make test) 64 clients for 60 s; tests/long/soak.sh 10
 * minutes. See docs/testing.md.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NKEYS 32
#define PART_MAX (32u << 10)
#define PARTS_MAX 4
#define BLK_MAX (PARTS_MAX * PART_MAX)
#define HDR 32
#define MAGIC 0x4b4f4153u /* "SOAK" */
#define RSS_SAMPLES 4096

/* Counters of one client, in memory shared with the parent. */
struct counts {
    uint64_t ops, puts, gets, hits, misses, busy, matches, deletes, streams;
    uint64_t pins, neighbour, async_gets, full, errors, wrong;
    int done;
};

static struct counts *shared;
static int nclients, seconds;

static uint64_t now_ms(void)
{
    return kvs_clock_mono_ns() / 1000000;
}

static void key_of(char *k, int client, int i)
{
    snprintf(k, 24, "soak-%03d-%03d", client, i);
}

/* A block: header (magic, client, key, version, length), then bytes from
 * those. */
static uint32_t make_block(uint8_t *b, int client, int key, uint32_t ver,
                           uint64_t *rng)
{
    uint32_t len = HDR + (uint32_t)(kvs_test_rand(rng) % (BLK_MAX - HDR));
    uint32_t h[5] = {MAGIC, (uint32_t)client, (uint32_t)key, ver, len};

    memcpy(b, h, sizeof(h));
    memset(b + sizeof(h), 0, HDR - sizeof(h));
    kvs_test_fill(b + HDR, len - HDR,
                  ((uint64_t)client << 40) ^ ((uint64_t)key << 32) ^ ver);
    return len;
}

/* 0 when b[0..len) is a whole block of (client, key), its version in
 * *ver_out; -1 if any byte is wrong. */
static int check_block(const uint8_t *b, size_t len, int client, int key,
                       uint32_t *ver_out)
{
    static uint8_t want[BLK_MAX];
    uint32_t h[5];

    if (len < HDR || len > BLK_MAX)
        return -1;
    memcpy(h, b, sizeof(h));
    if (h[0] != MAGIC || h[1] != (uint32_t)client || h[2] != (uint32_t)key ||
        h[4] != len)
        return -1;
    kvs_test_fill(want, len - HDR,
                  ((uint64_t)client << 40) ^ ((uint64_t)key << 32) ^ h[3]);
    if (memcmp(b + HDR, want, len - HDR) != 0)
        return -1;
    *ver_out = h[3];
    return 0;
}

static void fail(struct counts *c, const char *what, int ret)
{
    c->errors++;
    if (c->errors <= 5)
        fprintf(stderr, "soak client %d: %s: %s\n", (int)(c - shared), what,
                kvs_strerror(ret));
}

/* Splits len bytes at b into 1..4 parts. */
static uint32_t split(uint8_t *b, uint32_t len, kvs_iov_t *iov, uint32_t *lens,
                      uint64_t *rng)
{
    uint32_t n = 1 + (uint32_t)(kvs_test_rand(rng) % PARTS_MAX), off = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t l = i + 1 == n ? len - off : (len - off) / (n - i);

        iov[i].base = b + off;
        iov[i].len = l;
        lens[i] = l;
        off += l;
    }
    return n;
}

static int ok_or_busy(struct counts *c, int ret, const char *what)
{
    if (ret == KVS_EBUSY) {
        c->busy++;
        return 1;
    }
    if (ret == KVS_EFULL) { /* write-behind slower than puts: back-pressure */
        c->full++;
        return 1;
    }
    if (ret) {
        fail(c, what, ret);
        return 1;
    }
    return 0;
}

static void get_own(kvs_client_t *cl, struct counts *c, int me, int k,
                    const char *key, uint32_t ver, uint8_t *buf)
{
    size_t len = 0;
    uint32_t got;
    int ret =
        kvs_client_get(cl, key, (uint32_t)strlen(key), buf, BLK_MAX, &len);

    c->gets++;
    if (ret == KVS_ENOTFOUND) {
        c->misses++;
        return;
    }
    if (ret) {
        fail(c, "get", ret);
        return;
    }
    c->hits++;
    if (ver == 0 || check_block(buf, len, me, k, &got) || got != ver) {
        c->wrong++;
        fail(c, "get returned bytes that are not the last version", 0);
    }
}

static void on_async(void *arg, int status)
{
    (void)arg;
    (void)status; /* each item's status is checked */
}

static void child(const kvs_e2e_daemon_t *d, int me)
{
    static uint8_t blk[BLK_MAX], back[BLK_MAX], async_buf[4][BLK_MAX];
    struct counts *c = &shared[me];
    uint32_t ver[NKEYS] = {0}, next_ver = 1;
    char keys[NKEYS][24];
    uint64_t rng = 0x50414b ^ ((uint64_t)me << 20), end;
    kvs_client_t *cl = kvs_e2e_connect(d, "soak", "soak-token");

    for (int i = 0; i < NKEYS; i++)
        key_of(keys[i], me, i);
    end = now_ms() + (uint64_t)seconds * 1000;
    while (now_ms() < end) {
        int k = (int)(kvs_test_rand(&rng) % NKEYS);
        unsigned op = (unsigned)(kvs_test_rand(&rng) % 100);
        kvs_client_key_t key = {keys[k], (uint32_t)strlen(keys[k])};
        kvs_iov_t iov[PARTS_MAX];
        uint32_t lens[PARTS_MAX], len, n, v;
        int ret;

        c->ops++;
        if (op < 30) { /* put */
            kvs_client_put_t p = {0};

            v = next_ver++;
            len = make_block(blk, me, k, v, &rng);
            n = split(blk, len, iov, lens, &rng);
            p.key = key;
            p.parts = iov;
            p.nparts = n;
            p.flags = op < 3 ? KVS_CLIENT_PUT_DURABLE : 0;
            c->puts++;
            ret = kvs_client_put_batch(cl, &p, 1);
            if (!ok_or_busy(c, ret, "put"))
                ver[k] = v;
        } else if (op < 55) { /* get */
            get_own(cl, c, me, k, keys[k], ver[k], back);
        } else if (op < 62) { /* async get of up to four own keys */
            kvs_client_get_t g[4];
            int ks[4];

            memset(g, 0, sizeof(g));
            for (int i = 0; i < 4; i++) {
                ks[i] = (k + i) % NKEYS;
                g[i].key.data = keys[ks[i]];
                g[i].key.len = (uint32_t)strlen(keys[ks[i]]);
                g[i].buf = async_buf[i];
                g[i].cap = BLK_MAX;
            }
            c->async_gets++;
            ret = kvs_client_get_batch_async(cl, g, 4, 0, on_async, NULL);
            if (ret == 0)
                ret = kvs_client_wait(cl);
            for (int i = 0; i < 4; i++) {
                uint32_t got;

                if (g[i].status == KVS_ENOTFOUND) {
                    c->misses++;
                    continue;
                }
                if (g[i].status) {
                    fail(c, "async get", g[i].status);
                    continue;
                }
                c->hits++;
                if (check_block(async_buf[i], g[i].len, me, ks[i], &got) ||
                    got != ver[ks[i]]) {
                    c->wrong++;
                    fail(c, "async get: not the last version", 0);
                }
            }
            if (ret && ret != KVS_ENOTFOUND)
                fail(c, "async get batch", ret);
        } else if (op < 72) { /* match a run of own keys, with a lease */
            kvs_client_key_t mk[8];
            kvs_client_match_result_t r;

            for (int i = 0; i < 8; i++) {
                int kk = (k + i) % NKEYS;

                mk[i].data = keys[kk];
                mk[i].len = (uint32_t)strlen(keys[kk]);
            }
            c->matches++;
            ret = kvs_client_match(cl, mk, 8, KVS_CLIENT_MATCH_LEASE, 0, NULL,
                                   &r);
            if (ret)
                fail(c, "match", ret);
            else if (r.lease_id &&
                     (ret = kvs_client_release(cl, r.lease_id)) != 0 &&
                     ret != KVS_ENOTFOUND)
                fail(c, "release", ret);
        } else if (op < 80) { /* delete */
            int st = 0;

            c->deletes++;
            ret = kvs_client_delete(cl, &key, 1, &st);
            if (ret == 0 || ret == KVS_ENOTFOUND)
                ver[k] = 0;
            else
                ok_or_busy(c, ret, "delete");
        } else if (op < 90) { /* streaming put */
            kvs_stream_put_t *sp = NULL;

            v = next_ver++;
            len = make_block(blk, me, k, v, &rng);
            n = split(blk, len, iov, lens, &rng);
            c->streams++;
            ret = kvs_stream_put_begin(cl, &key, lens, n, 0, 0, NULL, &sp);
            for (uint32_t i = 0; ret == 0 && i < n; i++)
                ret = kvs_stream_put_part(sp, i, iov[i].base, iov[i].len);
            if (ret) {
                kvs_stream_put_abort(sp);
                ok_or_busy(c, ret, "stream put");
                /* an aborted or failed stream leaves the old version */
                continue;
            }
            ret = kvs_stream_put_seal(sp);
            if (!ok_or_busy(c, ret, "stream seal"))
                ver[k] = v;
        } else if (op < 95) { /* pin, read, unpin */
            int st = 0;

            c->pins++;
            ret = kvs_client_pin(cl, &key, 1, 0, &st);
            if (ret == KVS_ENOTFOUND)
                continue;
            if (ret) {
                fail(c, "pin", ret);
                continue;
            }
            get_own(cl, c, me, k, keys[k], ver[k], back);
            ret = kvs_client_unpin(cl, &key, 1, 0, &st);
            if (ret)
                fail(c, "unpin", ret);
        } else { /* a neighbour's block: present, then whole if there */
            int other = (me + 1) % nclients;
            char ok[24];
            uint8_t present = 0;
            size_t glen = 0;
            uint32_t got;
            kvs_client_key_t okk = {ok, 0};

            key_of(ok, other, k);
            okk.len = (uint32_t)strlen(ok);
            c->neighbour++;
            ret = kvs_client_exists(cl, &okk, 1, &present);
            if (ret) {
                fail(c, "exists", ret);
                continue;
            }
            ret = kvs_client_get(cl, ok, okk.len, back, BLK_MAX, &glen);
            if (ret == KVS_ENOTFOUND)
                continue;
            if (ret)
                fail(c, "neighbour get", ret);
            else if (check_block(back, glen, other, k, &got)) {
                c->wrong++;
                fail(c, "neighbour get: damaged block", 0);
            }
        }
    }
    kvs_client_destroy(cl);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    exit(c->errors || c->wrong ? 1 : 0);
}

static uint64_t rss_kib(pid_t pid)
{
    char path[64], line[256];
    uint64_t v = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %" SCNu64, &v) == 1)
            break;
    fclose(f);
    return v;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);

    return v && *v ? atoi(v) : def;
}

int main(void)
{
    static uint64_t rss[RSS_SAMPLES];
    const char *args[] = {"--set=daemon.staging_slots=8",
                          "--set=daemon.max_conns=256", NULL};
    kvs_e2e_daemon_t d;
    struct counts tot = {0};
    pid_t *pids;
    kvs_client_t *op;
    size_t nrss = 0, warm;
    uint64_t rss_warm, rss_max = 0, rss_end, allowed, t0;
    uint64_t checked = 0, bad = 0;
    int failed = 0, growth_pct;
    char asan[512];

    setvbuf(stdout, NULL, _IOLBF, 0);
    nclients = env_int("KVS_SOAK_CLIENTS", 16);
    seconds = env_int("KVS_SOAK_SECONDS", 10);
    growth_pct = env_int("KVS_SOAK_RSS_GROWTH_PCT", 10);
    CHECK(nclients >= 2 && nclients <= 200 && seconds >= 1);
    shared = mmap(NULL, sizeof(*shared) * (size_t)nclients,
                  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    pids = calloc((size_t)nclients, sizeof(*pids));
    CHECK(pids != NULL);
    /* The daemon inherits this: ASan's quarantine fills during warm-up. */
    snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=32",
             getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "",
             getenv("ASAN_OPTIONS") ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    kvs_e2e_daemon_init(&d, "e2e_soak");
    kvs_e2e_write_config(&d, "[tenant.soak]\ntoken = soak-token\n"
                             "namespaces = soak\n"
                             "[tenant.op]\ntoken = op-token\n"
                             "namespaces = *\noperator = true\n");
    kvs_e2e_daemon_start(&d, args);
    fflush(NULL);
    t0 = now_ms();
    for (int i = 0; i < nclients; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0)
            child(&d, i);
    }
    /* Sample the daemon's RSS while the clients run. */
    for (;;) {
        int running = 0;

        for (int i = 0; i < nclients; i++)
            running += !__atomic_load_n(&shared[i].done, __ATOMIC_ACQUIRE);
        if (!running || now_ms() > t0 + (uint64_t)seconds * 1000 + 60000)
            break;
        if (nrss < RSS_SAMPLES)
            rss[nrss++] = rss_kib(d.pid);
        usleep(250000);
    }
    for (int i = 0; i < nclients; i++) {
        int status;

        CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "soak client %d failed (status 0x%x)\n", i, status);
            failed++;
        }
        tot.ops += shared[i].ops;
        tot.puts += shared[i].puts;
        tot.gets += shared[i].gets;
        tot.hits += shared[i].hits;
        tot.misses += shared[i].misses;
        tot.busy += shared[i].busy;
        tot.matches += shared[i].matches;
        tot.deletes += shared[i].deletes;
        tot.streams += shared[i].streams;
        tot.pins += shared[i].pins;
        tot.neighbour += shared[i].neighbour;
        tot.async_gets += shared[i].async_gets;
        tot.full += shared[i].full;
        tot.errors += shared[i].errors;
        tot.wrong += shared[i].wrong;
    }
    CHECK(nrss >= 4);
    warm = nrss / 3;
    rss_warm = rss[warm];
    for (size_t i = warm; i < nrss; i++)
        rss_max = rss[i] > rss_max ? rss[i] : rss_max;
    rss_end = rss[nrss - 1];
    allowed = rss_warm + rss_warm * (uint64_t)growth_pct / 100 + 16 * 1024;

    /* Every client gone: nothing held. */
    op = kvs_e2e_connect(&d, "soak", "op-token");
    while (kvs_e2e_stat(op, "connections") != 1)
        usleep(10000);
    uint64_t refs = kvs_e2e_stat(op, "refs"),
             leases = kvs_e2e_stat(op, "leases"),
             pins = kvs_e2e_stat(op, "conn_pins");
    CHECK_EQ(kvs_client_verify(op, &checked, &bad), 0);
    printf("soak: %d clients x %d s: %" PRIu64 " ops (%" PRIu64
           " puts, %" PRIu64 " gets: %" PRIu64 " hits, %" PRIu64
           " misses; %" PRIu64 " async batches, %" PRIu64 " matches, %" PRIu64
           " deletes, %" PRIu64 " stream puts, %" PRIu64 " pins, %" PRIu64
           " neighbour reads); busy %" PRIu64 ", full %" PRIu64
           "; errors %" PRIu64 ", wrong %" PRIu64 "\n",
           nclients, seconds, tot.ops, tot.puts, tot.gets, tot.hits, tot.misses,
           tot.async_gets, tot.matches, tot.deletes, tot.streams, tot.pins,
           tot.neighbour, tot.busy, tot.full, tot.errors, tot.wrong);
    printf("soak: daemon RSS %" PRIu64 " MiB at start, %" PRIu64
           " MiB after warm-up (%zu of %zu samples), max %" PRIu64
           " MiB after, %" PRIu64 " MiB at the end (bound %" PRIu64
           " MiB); after: refs %" PRIu64 ", leases %" PRIu64 ", pins %" PRIu64
           ", verify %" PRIu64 " checked %" PRIu64 " bad\n",
           rss[0] >> 10, rss_warm >> 10, warm, nrss, rss_max >> 10,
           rss_end >> 10, allowed >> 10, refs, leases, pins, checked, bad);
    CHECK_EQ(failed, 0);
    CHECK_EQ(tot.errors, 0);
    CHECK_EQ(tot.wrong, 0);
    CHECK(tot.hits > 0 && tot.streams > 0);
    CHECK(rss_max <= allowed);
    CHECK_EQ(refs, 0);
    CHECK_EQ(leases, 0);
    CHECK_EQ(pins, 0);
    CHECK_EQ(bad, 0);
    kvs_client_destroy(op);
    kvs_e2e_daemon_stop(&d);
    free(pids);
    printf("e2e_soak: ok\n");
    return 0;
}
