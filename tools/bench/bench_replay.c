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
 * through a clairvoyant (Belady) simulation, the bound. The default,
 * adaptive policy is compared with the fixed settings it adapts between
 * (docs/policy.md).
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
    uint64_t *ids;    /* every request's ids, back to back */
    uint32_t *start;  /* request r: ids[start[r] .. start[r + 1]) */
    uint8_t *partial; /* request r's last block is not full */
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
                             ? json_object_get_int64(il)
                             : 0;
        t->partial[t->nreq] = tokens % TRACE_BLOCK_TOKENS != 0;
        t->start[t->nreq++] = (uint32_t)nids;
        for (size_t i = 0; i < n; i++)
            t->ids[nids++] = (uint64_t)json_object_get_int64(
                json_object_array_get_idx(ids, i));
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
    if (l->prev[i] != LNIL)
        l->next[l->prev[i]] = l->next[i];
    else
        l->head = l->next[i];
    if (l->next[i] != LNIL)
        l->prev[l->next[i]] = l->prev[i];
    else
        l->tail = l->prev[i];
}

static void lru_front(struct lru *l, uint32_t i)
{
    l->prev[i] = LNIL;
    l->next[i] = l->head;
    if (l->head != LNIL)
        l->prev[l->head] = i;
    else
        l->tail = i;
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
        uint32_t home =
            (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & l->mask;
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

/* Id -> dense index, open addressing over a power of two. */
struct idmap {
    uint64_t *key;
    uint32_t *val, mask, n;
};

static uint32_t idmap_get(struct idmap *m, uint64_t id)
{
    uint32_t h = (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;

    for (;; h = (h + 1) & m->mask) {
        if (m->val[h] == LNIL) {
            m->key[h] = id;
            m->val[h] = m->n++;
            return m->val[h];
        }
        if (m->key[h] == id)
            return m->val[h];
    }
}

/* Max-heap of (next use << 32 | id), with stale entries skipped on pop. */
static void heap_push(uint64_t *h, uint32_t *n, uint64_t v)
{
    uint32_t i = (*n)++;

    while (i && h[(i - 1) / 2] < v) {
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
 * Belady's clairvoyant policy with the same match-then-insert model: on a
 * miss the block is kept only if its next use comes before that of the
 * block used furthest in the future, which is then evicted; a block never
 * used again is not kept. A parent is always used again no later than its
 * children, so this never leaves a gap. The bound the figures are put
 * against.
 */
static double belady_replay(const struct trace *t, uint32_t cap, bool full)
{
    uint32_t nref = t->start[t->nreq], msize = 2, *dense, *nextpos, *cur;
    uint64_t hits = 0, total = 0, *heap;
    uint8_t *in;
    uint32_t nheap = 0, size = 0;
    struct idmap m = {0};
    double ratio = 0;

    while (msize < 2 * nref)
        msize <<= 1;
    m.mask = msize - 1;
    m.key = malloc((size_t)msize * sizeof(*m.key));
    m.val = malloc((size_t)msize * sizeof(*m.val));
    dense = malloc((size_t)nref * sizeof(*dense));
    nextpos = malloc((size_t)nref * sizeof(*nextpos));
    heap = malloc(((size_t)nref + 1) * sizeof(*heap));
    if (!m.key || !m.val || !dense || !nextpos || !heap)
        goto out_free;
    memset(m.val, 0xff, (size_t)msize * sizeof(*m.val));
    for (uint32_t i = 0; i < nref; i++)
        dense[i] = idmap_get(&m, t->ids[i]);
    cur = calloc(m.n, sizeof(*cur)); /* the next use of each id */
    in = calloc(m.n, 1);
    if (!cur || !in)
        goto out_cur;
    for (uint32_t i = 0; i < m.n; i++)
        cur[i] = LNIL;
    for (uint32_t i = nref; i-- > 0;) {
        nextpos[i] = cur[dense[i]];
        cur[dense[i]] = i;
    }
    for (uint32_t r = 0; r < t->nreq; r++) {
        uint32_t b = t->start[r], n = t->start[r + 1] - b, k = 0;
        while (k < n && in[dense[b + k]])
            k++;
        hits += k;
        total += n;
        uint32_t np = put_limit(t, r, full);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = dense[b + i], nx = nextpos[b + i];
            cur[id] = nx;
            if (in[id]) {
                if (nx == LNIL) {
                    in[id] = 0;
                    size--;
                } else {
                    heap_push(heap, &nheap, (uint64_t)nx << 32 | id);
                }
                continue;
            }
            if (i >= np || nx == LNIL)
                continue;
            while (size == cap && nheap) {
                uint64_t top = heap[0];
                uint32_t vid = (uint32_t)top, vnx = (uint32_t)(top >> 32);
                if (!in[vid] || cur[vid] != vnx) {
                    heap_pop(heap, &nheap); /* stale */
                    continue;
                }
                if (vnx < nx)
                    break;
                heap_pop(heap, &nheap);
                in[vid] = 0;
                size--;
            }
            if (size < cap) {
                in[id] = 1;
                size++;
                heap_push(heap, &nheap, (uint64_t)nx << 32 | id);
            }
        }
    }
    ratio = total ? (double)hits / (double)total : 0;
out_cur:
    free(cur);
    free(in);
out_free:
    free(m.key);
    free(m.val);
    free(dense);
    free(nextpos);
    free(heap);
    return ratio;
}

static int engine_replay(const struct trace *t, uint32_t cap, uint32_t payload,
                         uint32_t ghost, uint32_t window, bool full,
                         const char *dir, double *ratio_out,
                         kvs_store_stats_t *st_out)
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
    c.policy_window_pct = window;
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
                .ns = ns,
                .key = &kb[i],
                .key_len = 8,
                .parts = &iov,
                .nparts = 1,
                .cls = KVS_CLASS_SCRATCH,
                .parent = i ? &kb[i - 1] : NULL,
                .parent_len = i ? 8 : 0,
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
    fprintf(
        stderr,
        "usage: kvstash-bench replay [options]\n"
        "  --trace PATH     JSONL trace; repeat for several (default: the\n"
        "                   shared conversation and synthetic traces)\n"
        "  --capacity N     blocks; repeat for several (default 1000, 3000,\n"
        "                   10000 and 30000)\n"
        "  --payload BYTES  bytes put per block (default 1024)\n"
        "  --ghost N        the fixed settings include store admission,\n"
        "                   ghost list of N x capacity keys (default 4;\n"
        "                   0: skip)\n"
        "  --full-blocks    put only full 512-token blocks, as engines\n"
        "                   do (the reference LRU does the same)\n"
        "  --dir DIR        store directory (default ./var/replay)\n"
        "  --json           one JSON object per figure\n"
        "Per trace and capacity: replay-hit-ratio-<cap> (the default,\n"
        "adaptive policy; limit: exact LRU), replay-best-fixed-<cap> (the\n"
        "best fixed setting: window 0, 10, 30, 60 or 100%%, or ghost\n"
        "admission) and replay-belady-<cap> (the clairvoyant bound); both\n"
        "with the default's ratio as limit. Figures of a trace other than\n"
        "the first carry its file name: replay-hit-ratio-<cap>-<name>.\n");
}

/* The fixed settings the default is compared with: window shares, then
 * store admission (ghost list, whole DRAM as window). */
static const uint32_t fixed_windows[] = {0, 10, 30, 60, 100};
#define NFIXED (sizeof(fixed_windows) / sizeof(fixed_windows[0]))

/* "conversation" for ../x/conversation_trace.jsonl. */
static void trace_name(const char *path, char *out, size_t len)
{
    const char *b = strrchr(path, '/');
    size_t n;

    b = b ? b + 1 : path;
    n = strcspn(b, "._");
    snprintf(out, len, "%.*s", (int)n, b);
}

static int replay_one(const struct trace *t, uint32_t cap, uint32_t payload,
                      uint32_t ghost, bool full, const char *dir,
                      const char *suffix, const char *tname)
{
    char name[96], note[256], sub[4096], best_what[32] = "";
    kvs_store_stats_t st;
    double lru = lru_replay(t, cap, full), bound = belady_replay(t, cap, full);
    double ours, best = -1;

    snprintf(sub, sizeof(sub), "%s/cap%u", dir, cap);
    for (uint32_t k = 0; k <= NFIXED; k++) {
        bool adm = k == NFIXED;
        double r;
        if (adm && !ghost)
            break;
        bench_rmtree(sub);
        if (engine_replay(t, cap, payload, adm ? ghost : 0,
                          adm ? 100 : fixed_windows[k], full, sub, &r, &st))
            return 1;
        if (r > best) {
            best = r;
            if (adm)
                snprintf(best_what, sizeof(best_what), "ghost %u x", ghost);
            else
                snprintf(best_what, sizeof(best_what), "window %u%%",
                         fixed_windows[k]);
        }
    }
    bench_rmtree(sub);
    if (engine_replay(t, cap, payload, 0, KVS_STORE_WINDOW_ADAPTIVE, full, sub,
                      &ours, &st))
        return 1;
    bench_rmtree(sub);
    snprintf(name, sizeof(name), "replay-hit-ratio-%u%s", cap, suffix);
    snprintf(note, sizeof(note),
             "limit: exact LRU, this run; %s, %u requests%s; evicted %llu; "
             "%.4f against LRU %.4f",
             tname, t->nreq, full ? ", full blocks only" : "",
             (unsigned long long)st.evicted, ours, lru);
    bench_figure(name, ours, "ratio", lru, note);
    snprintf(name, sizeof(name), "replay-best-fixed-%u%s", cap, suffix);
    snprintf(note, sizeof(note),
             "limit: the default; %s, best: %s, %.4f against %.4f", tname,
             best_what, best, ours);
    bench_figure(name, best, "ratio", ours, note);
    snprintf(name, sizeof(name), "replay-belady-%u%s", cap, suffix);
    snprintf(note, sizeof(note), "limit: the default; %s, clairvoyant bound",
             tname);
    bench_figure(name, bound, "ratio", ours, note);
    return 0;
}

int bench_replay_main(int argc, char **argv)
{
    static const char *const dirs[] = {"../shared/traces",
                                       "/work/shared/traces"};
    static const char *const names[] = {"conversation_trace.jsonl",
                                        "synthetic_trace.jsonl"};
    const char *traces[8], *dir = "./var/replay";
    char found[2][512];
    uint32_t ntrace = 0, caps[8], ncap = 0, payload = 1024, ghost = 4;
    bool full = false;
    static const struct option lo[] = {{"trace", 1, 0, 't'},
                                       {"capacity", 1, 0, 'c'},
                                       {"payload", 1, 0, 'p'},
                                       {"dir", 1, 0, 'd'},
                                       {"json", 0, 0, 'j'},
                                       {"help", 0, 0, 'h'},
                                       {"ghost", 1, 0, 'g'},
                                       {"full-blocks", 0, 0, 'f'},
                                       {0, 0, 0, 0}};
    int ch;

    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't':
            if (ntrace < 8)
                traces[ntrace++] = optarg;
            break;
        case 'c':
            if (ncap < 8)
                caps[ncap++] = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            payload = (uint32_t)bench_parse_size(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'g':
            ghost = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'f':
            full = true;
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
    /* By default both shared traces, each from the first folder that has
     * it. */
    bool dflt = ntrace == 0;
    for (size_t k = 0; dflt && k < 2; k++) {
        for (size_t i = 0; i < 2; i++) {
            snprintf(found[k], sizeof(found[k]), "%s/%s", dirs[i], names[k]);
            if (access(found[k], R_OK) == 0) {
                traces[ntrace++] = found[k];
                break;
            }
        }
    }
    if (!ntrace || !payload) {
        usage();
        return 2;
    }
    if (!ncap) {
        static const uint32_t def_caps[] = {1000, 3000, 10000, 30000};
        for (size_t i = 0; i < 4; i++)
            caps[ncap++] = def_caps[i];
    }
    for (uint32_t k = 0; k < ntrace; k++) {
        struct trace t;
        char tname[64], suffix[72] = "";
        int ret = 0;
        if (trace_load(traces[k], &t)) {
            fprintf(stderr, "replay: cannot load %s\n", traces[k]);
            return 1;
        }
        trace_name(traces[k], tname, sizeof(tname));
        if (k)
            snprintf(suffix, sizeof(suffix), "-%s", tname);
        for (uint32_t i = 0; i < ncap && !ret; i++)
            if (caps[i])
                ret = replay_one(&t, caps[i], payload, ghost, full, dir, suffix,
                                 tname);
        free(t.ids);
        free(t.start);
        free(t.partial);
        if (ret)
            return 1;
    }
    return 0;
}
