/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench replay: drives the real engine with a request trace (the
 * Mooncake format: one JSON object per line with "hash_ids", chained
 * 512-token block ids) and reports the block hit ratio at each capacity.
 *
 * Each request matches its chain (the number of leading blocks present),
 * then puts the blocks from the first miss on, each naming the block
 * before it as parent, with a small payload. The store's capacity is its
 * block table (max_blocks), DRAM only, so the figure is the eviction
 * policy's alone. The same trace is also replayed through an exact LRU
 * simulation in this run, the reference the ratio is taken against, and
 * through Belady's MIN (belady_replay), the bound no policy can beat.
 */
#include "tools/bench/bench.h"
#include "kvstore/store.h"
#include "common/compiler.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct trace {
    uint64_t *ids;       /* every request's ids, back to back */
    uint32_t *start;     /* request r: ids[start[r] .. start[r + 1]) */
    uint8_t *partial;    /* request r's last block is not full */
    uint32_t nreq;
};

#define TRACE_BLOCK_TOKENS 512

/* How many of request r's blocks the client puts: all, or with
 * full_blocks only the full ones, as inference engines do. */
static uint32_t put_limit(const struct trace *t, uint32_t r, bool full_blocks)
{
    uint32_t n = t->start[r + 1] - t->start[r];

    return full_blocks && t->partial[r] && n ? n - 1 : n;
}

static int trace_load(const char *path, struct trace *t)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, nids = 0, idcap = 1 << 16, reqcap = 1 << 12;
    ssize_t len;
    unsigned lineno = 0;

    if (!f) {
        perror(path);
        return -1;
    }
    t->ids = malloc(idcap * sizeof(*t->ids));
    t->start = malloc((reqcap + 1) * sizeof(*t->start));
    t->partial = malloc(reqcap + 1);
    t->nreq = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_object *o, *ids;
        lineno++;
        o = json_tokener_parse(line);
        if (!o || !json_object_object_get_ex(o, "hash_ids", &ids) ||
            !json_object_is_type(ids, json_type_array)) {
            fprintf(stderr, "%s:%u: no hash_ids array; line skipped\n", path,
                    lineno);
            json_object_put(o);
            continue;
        }
        size_t n = json_object_array_length(ids);
        if (nids + n > idcap) {
            while (nids + n > idcap)
                idcap *= 2;
            t->ids = realloc(t->ids, idcap * sizeof(*t->ids));
        }
        if (t->nreq + 1 >= reqcap) {
            reqcap *= 2;
            t->start = realloc(t->start, (reqcap + 1) * sizeof(*t->start));
            t->partial = realloc(t->partial, reqcap + 1);
        }
        json_object *il;
        int64_t tokens = json_object_object_get_ex(o, "input_length", &il)
                             ? json_object_get_int64(il) : 0;
        t->partial[t->nreq] = tokens % TRACE_BLOCK_TOKENS != 0;
        t->start[t->nreq++] = (uint32_t)nids;
        for (size_t i = 0; i < n; i++)
            t->ids[nids++] =
                (uint64_t)json_object_get_int64(json_object_array_get_idx(ids, i));
        json_object_put(o);
    }
    t->start[t->nreq] = (uint32_t)nids;
    free(line);
    fclose(f);
    return t->nreq ? 0 : -1;
}

/* Exact LRU over block ids with the same match-then-insert model: a
 * doubly-linked list plus an open-addressing map from id to slot. */
struct lru {
    uint64_t *key;
    uint32_t *prev, *next, *map;
    uint32_t mask, cap, n, head, tail, free;
};
#define LNIL UINT32_MAX

static uint32_t lru_find(struct lru *l, uint64_t id, uint32_t **slot_out)
{
    uint32_t h = (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & l->mask;

    for (;; h = (h + 1) & l->mask) {
        if (l->map[h] == LNIL || l->key[l->map[h]] == id) {
            *slot_out = &l->map[h];
            return l->map[h];
        }
    }
}

static void lru_unlink(struct lru *l, uint32_t i)
{
    if (l->prev[i] != LNIL) l->next[l->prev[i]] = l->next[i]; else l->head = l->next[i];
    if (l->next[i] != LNIL) l->prev[l->next[i]] = l->prev[i]; else l->tail = l->prev[i];
}

static void lru_front(struct lru *l, uint32_t i)
{
    l->prev[i] = LNIL;
    l->next[i] = l->head;
    if (l->head != LNIL) l->prev[l->head] = i; else l->tail = i;
    l->head = i;
}

/* Removes id's map slot with backward-shift deletion. */
static void lru_map_del(struct lru *l, uint32_t *slot)
{
    uint32_t h = (uint32_t)(slot - l->map), j = h;

    for (;;) {
        j = (j + 1) & l->mask;
        if (l->map[j] == LNIL)
            break;
        uint64_t id = l->key[l->map[j]];
        uint32_t home = (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & l->mask;
        if (((j - home) & l->mask) >= ((j - h) & l->mask)) {
            l->map[h] = l->map[j];
            h = j;
        }
    }
    l->map[h] = LNIL;
}

static double lru_replay(const struct trace *t, uint32_t cap, bool full)
{
    struct lru l = {0};
    uint64_t hits = 0, total = 0;
    uint32_t msize = 1;

    while (msize < 4 * cap)
        msize <<= 1;
    l.mask = msize - 1;
    l.cap = cap;
    l.key = calloc(cap, sizeof(*l.key));
    l.prev = calloc(cap, 4);
    l.next = calloc(cap, 4);
    l.map = malloc(msize * 4);
    memset(l.map, 0xff, msize * 4);
    l.head = l.tail = LNIL;
    for (uint32_t r = 0; r < t->nreq; r++) {
        const uint64_t *ids = t->ids + t->start[r];
        uint32_t n = t->start[r + 1] - t->start[r], m = 0, *slot;
        while (m < n && lru_find(&l, ids[m], &slot) != LNIL)
            m++;
        hits += m;
        total += n;
        uint32_t np = put_limit(t, r, full);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t e = lru_find(&l, ids[i], &slot);
            if (e == LNIL && i >= np)
                break;
            if (e != LNIL) {
                lru_unlink(&l, e);
                lru_front(&l, e);
                continue;
            }
            if (l.n == cap) {
                uint32_t v = l.tail, *vs;
                lru_find(&l, l.key[v], &vs);
                lru_map_del(&l, vs);
                lru_unlink(&l, v);
                e = v;
                lru_find(&l, ids[i], &slot); /* the map moved */
            } else {
                e = l.n++;
            }
            l.key[e] = ids[i];
            *slot = e;
            lru_front(&l, e);
        }
    }
    free(l.key);
    free(l.prev);
    free(l.next);
    free(l.map);
    return total ? (double)hits / (double)total : 0;
}

/* ---- Belady's bound ------------------------------------------------ */

/* An access of the stream: its block id and position, sorted by id to find
 * each access's previous and next use. */
struct use {
    uint64_t id;
    uint32_t pos;
};

static int cmp_use(const void *a, const void *b)
{
    const struct use *x = a, *y = b;

    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Max-heap of (next use << 32 | position). */
static void heap_push(uint64_t *h, uint32_t *n, uint64_t v)
{
    uint32_t i = (*n)++;

    while (i > 0 && h[(i - 1) / 2] < v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static void heap_pop(uint64_t *h, uint32_t *n)
{
    uint64_t v = h[--(*n)];
    uint32_t i = 0;

    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] > h[c])
            c++;
        if (h[c] <= v)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = v;
}

/*
 * Belady's MIN with bypass over every block access of the trace, in order:
 * on a miss with the cache full, the block used again farthest in the
 * future goes (or the new one is not kept, if it is that block). It
 * counts every block found, not only a request's leading ones, so it is an
 * upper bound on the hit ratio of any eviction policy with this capacity,
 * the engine's and LRU's included. Same denominator as lru_replay().
 * -1 if out of memory.
 */
static double belady_replay(const struct trace *t, uint32_t cap)
{
    uint32_t n = t->start[t->nreq], nh = 0, size = 0;
    struct use *u = malloc((size_t)n * sizeof(*u));
    uint32_t *prev = malloc((size_t)n * 4), *next = malloc((size_t)n * 4);
    uint8_t *cached = calloc(n ? n : 1, 1);
    uint64_t *heap = malloc((size_t)n * 8), hits = 0;
    double ratio = -1;

    if (!u || !prev || !next || !cached || !heap)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        u[i] = (struct use){t->ids[i], i};
    qsort(u, n, sizeof(*u), cmp_use);
    for (uint32_t i = 0; i < n; i++) {
        bool same_prev = i > 0 && u[i - 1].id == u[i].id;
        bool same_next = i + 1 < n && u[i + 1].id == u[i].id;
        prev[u[i].pos] = same_prev ? u[i - 1].pos : UINT32_MAX;
        next[u[i].pos] = same_next ? u[i + 1].pos : UINT32_MAX;
    }
    /* A block in the cache is known by the position of its latest access:
     * cached[p], and a heap entry for p that is stale once cached[p] is 0. */
    for (uint32_t p = 0; p < n; p++) {
        uint32_t q = prev[p];
        if (q != UINT32_MAX && cached[q]) {
            hits++;
            cached[q] = 0;
        } else if (size < cap) {
            size++;
        } else {
            while (nh && !cached[(uint32_t)heap[0]])
                heap_pop(heap, &nh);
            if (!nh || (heap[0] >> 32) <= next[p])
                continue; /* bypass: this block is the farthest */
            cached[(uint32_t)heap[0]] = 0;
            heap_pop(heap, &nh);
        }
        cached[p] = 1;
        heap_push(heap, &nh, (uint64_t)next[p] << 32 | p);
    }
    ratio = n ? (double)hits / (double)n : 0;
out:
    free(u);
    free(prev);
    free(next);
    free(cached);
    free(heap);
    return ratio;
}

static int engine_replay(const struct trace *t, uint32_t cap, uint32_t payload,
                         uint32_t ghost, bool full, const char *dir,
                         double *ratio_out, kvs_store_stats_t *st_out)
{
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint64_t hits = 0, total = 0;
    uint8_t *buf = calloc(1, payload);
    kvs_key_t *keys = NULL;
    uint64_t *kb = NULL;
    uint32_t kcap = 0;
    int ret;

    kvs_store_config_default(&c);
    c.dir = dir;
    c.nvme_bytes = 0;
    c.max_blocks = cap;
    /* Room for every block in DRAM: the block table is the limit. */
    c.dram_bytes = KVS_MAX((uint64_t)cap * (payload + 3 * 4096) * 5 / 4,
                           (uint64_t)16 << 20);
    c.max_block_bytes = payload;
    c.admit_ghost_factor = ghost;
    ret = kvs_store_open(&c, &s);
    if (ret) {
        fprintf(stderr, "store open: %s\n", kvs_strerror(ret));
        free(buf);
        return ret;
    }
    kvs_store_ns_open(s, "trace", 2, &ns);
    for (uint32_t r = 0; r < t->nreq; r++) {
        const uint64_t *ids = t->ids + t->start[r];
        uint32_t n = t->start[r + 1] - t->start[r];
        size_t m;
        if (n > kcap) {
            kvs_key_t *nk = realloc(keys, n * 2 * sizeof(*keys));
            uint64_t *nb = nk ? realloc(kb, n * 2 * sizeof(*kb)) : NULL;
            if (nk)
                keys = nk;
            if (!nk || !nb) {
                fprintf(stderr, "replay: out of memory\n");
                ret = -ENOMEM;
                break;
            }
            kb = nb;
            kcap = n * 2;
        }
        for (uint32_t i = 0; i < n; i++) {
            kb[i] = ids[i];
            keys[i] = (kvs_key_t){&kb[i], 8};
        }
        kvs_store_match(s, ns, keys, n, 0, NULL, &m);
        hits += m;
        total += n;
        for (uint32_t i = (uint32_t)m; i < put_limit(t, r, full); i++) {
            kvs_iov_t iov = {buf, payload};
            kvs_put_args_t a = {
                .ns = ns, .key = &kb[i], .key_len = 8, .parts = &iov,
                .nparts = 1, .cls = KVS_CLASS_SCRATCH,
                .parent = i ? &kb[i - 1] : NULL, .parent_len = i ? 8 : 0,
            };
            ret = kvs_store_put(s, &a);
            if (ret && ret != KVS_EFULL) {
                fprintf(stderr, "put: %s\n", kvs_strerror(ret));
                break;
            }
        }
    }
    kvs_store_stats(s, st_out);
    kvs_store_close(s);
    free(buf);
    free(keys);
    free(kb);
    *ratio_out = total ? (double)hits / (double)total : 0;
    return ret == -ENOMEM ? ret : 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kvstash-bench replay [options]\n"
            "  --trace PATH     JSONL trace (default: the shared conversation "
            "trace)\n"
            "  --capacity N     blocks; repeat for several (default 1000 and "
            "10000)\n"
            "  --payload BYTES  bytes put per block (default 1024)\n"
            "  --ghost N        also run with store admission, ghost list of\n"
            "                   N x capacity keys (default 4; 0: skip)\n"
            "  --full-blocks    put only full 512-token blocks, as engines\n"
            "                   do (the reference LRU does the same)\n"
            "  --dir DIR        store directory (default ./var/replay)\n"
            "  --json           one JSON object per figure\n");
}

int bench_replay_main(int argc, char **argv)
{
    static const char *const traces[] = {
        "../shared/traces/conversation_trace.jsonl",
        "/work/shared/traces/conversation_trace.jsonl"};
    const char *trace = NULL, *dir = "./var/replay";
    uint32_t caps[8], ncap = 0, payload = 1024, ghost = 4;
    bool full = false;
    static const struct option lo[] = {
        {"trace", 1, 0, 't'}, {"capacity", 1, 0, 'c'}, {"payload", 1, 0, 'p'},
        {"dir", 1, 0, 'd'},   {"json", 0, 0, 'j'},     {"help", 0, 0, 'h'},
        {"ghost", 1, 0, 'g'}, {"full-blocks", 0, 0, 'f'},
        {0, 0, 0, 0}};
    int ch;

    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't': trace = optarg; break;
        case 'c':
            if (ncap < 8)
                caps[ncap++] = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'p': payload = (uint32_t)bench_parse_size(optarg); break;
        case 'd': dir = optarg; break;
        case 'g': ghost = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'f': full = true; break;
        case 'j': bench_json = true; break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }
    for (size_t i = 0; !trace && i < 2; i++)
        if (access(traces[i], R_OK) == 0)
            trace = traces[i];
    if (!trace || !payload) {
        usage();
        return 2;
    }
    if (!ncap) {
        caps[ncap++] = 1000;
        caps[ncap++] = 10000;
    }
    struct trace t;
    if (trace_load(trace, &t)) {
        fprintf(stderr, "replay: cannot load %s\n", trace);
        return 1;
    }
    for (uint32_t i = 0; i < ncap; i++) {
        if (caps[i] == 0)
            continue;
        double lru = lru_replay(&t, caps[i], full);
        /* The engine's own order (recency, chains leaf first), then the
         * same with store admission. */
        for (int pass = 0; pass < (ghost ? 2 : 1); pass++) {
            char name[80], note[200], sub[4096];
            kvs_store_stats_t st;
            double ours;
            uint32_t g = pass ? ghost : 0;

            snprintf(sub, sizeof(sub), "%s/cap%u", dir, caps[i]);
            bench_rmtree(sub);
            if (engine_replay(&t, caps[i], payload, g, full, sub, &ours, &st))
                return 1;
            bench_rmtree(sub);
            snprintf(name, sizeof(name), "replay-hit-ratio-%u%s", caps[i],
                     pass ? "-admission" : "");
            snprintf(note, sizeof(note),
                     "limit: exact LRU, this run; %u requests%s; evicted "
                     "%llu, declined %llu%s",
                     t.nreq, full ? ", full blocks only" : "",
                     (unsigned long long)st.evicted,
                     (unsigned long long)st.admission_rejected,
                     pass ? "; ghost list x capacity" : "");
            bench_figure(name, ours, "ratio", lru, note);
        }
        char name[80];
        double opt = belady_replay(&t, caps[i]);
        snprintf(name, sizeof(name), "replay-hit-ratio-%u-belady", caps[i]);
        if (opt >= 0)
            bench_figure(name, opt, "ratio", -1,
                         "Belady's MIN with bypass, every block counted: an "
                         "upper bound on any eviction policy's hit ratio");
    }
    free(t.ids);
    free(t.start);
    free(t.partial);
    return 0;
}
