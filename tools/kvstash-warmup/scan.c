/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SCAN pages into a list, and chain order (see scan.h). Depths are found
 * with a sorted index of the keys: depth(b) = 1 + depth(parent(b)) when the
 * parent is listed, 0 otherwise, memoised, walking up iteratively.
 */
#include "tools/kvstash-warmup/scan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int kvs_scan_collect(kvs_client_t *c, uint64_t group, kvs_scan_list_t *l)
{
    uint32_t cursor = 0;

    do {
        size_t got = 0;
        int ret;

        if (l->cap - l->n < 1024) {
            kvs_client_scan_ent_t *e =
                realloc(l->ents, (l->cap * 2 + 1024) * sizeof(*e));
            if (!e)
                return -ENOMEM;
            l->ents = e;
            l->cap = l->cap * 2 + 1024;
        }
        ret = kvs_client_scan(c, group, cursor, l->ents + l->n, 1024, &got,
                              &cursor);
        if (ret)
            return ret;
        l->n += got;
    } while (cursor);
    return 0;
}

void kvs_scan_list_fini(kvs_scan_list_t *l)
{
    free(l->ents);
    memset(l, 0, sizeof(*l));
}

typedef struct ref {
    const uint8_t *key;
    uint32_t len;
    size_t idx;
} ref_t;

static int ref_cmp(const void *a, const void *b)
{
    const ref_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);

    return c ? c : (x->len > y->len) - (x->len < y->len);
}

typedef struct ord {
    uint32_t depth;
    size_t idx;
} ord_t;

static int ord_cmp(const void *a, const void *b)
{
    const ord_t *x = a, *y = b;

    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static long find(const ref_t *refs, size_t n, const uint8_t *key, uint32_t len)
{
    ref_t k = {.key = key, .len = len};
    const ref_t *r = bsearch(&k, refs, n, sizeof(*refs), ref_cmp);

    return r ? (long)r->idx : -1;
}

int kvs_scan_sort_chains(kvs_client_scan_ent_t *ents, size_t n)
{
    ref_t *refs = malloc((n ? n : 1) * sizeof(*refs));
    ord_t *ord = malloc((n ? n : 1) * sizeof(*ord));
    int64_t *depth = malloc((n ? n : 1) * sizeof(*depth));
    kvs_client_scan_ent_t *out = malloc((n ? n : 1) * sizeof(*out));
    size_t *path = malloc((n ? n : 1) * sizeof(*path));
    int ret = 0;

    if (!refs || !ord || !depth || !out || !path) {
        ret = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        refs[i] = (ref_t){.key = ents[i].key, .len = ents[i].key_len, .idx = i};
        depth[i] = -1;
    }
    qsort(refs, n, sizeof(*refs), ref_cmp);
    for (size_t i = 0; i < n; i++) {
        /* Walk up to a block of known depth or a root, remembering the
         * path (at most n steps, so a cycle cannot loop forever), then
         * number the path on the way down. */
        size_t np = 0, x = i;
        int64_t base = -1;

        for (;;) {
            long p;

            if (depth[x] >= 0) {
                base = depth[x];
                break;
            }
            if (np == n)
                break;
            path[np++] = x;
            p = ents[x].parent_len
                    ? find(refs, n, ents[x].parent, ents[x].parent_len)
                    : -1;
            if (p < 0)
                break;
            x = (size_t)p;
        }
        while (np--)
            if (depth[path[np]] < 0)
                depth[path[np]] = ++base;
    }
    for (size_t i = 0; i < n; i++)
        ord[i] = (ord_t){.depth = (uint32_t)depth[i], .idx = i};
    qsort(ord, n, sizeof(*ord), ord_cmp);
    for (size_t i = 0; i < n; i++)
        out[i] = ents[ord[i].idx];
    memcpy(ents, out, n * sizeof(*out));
out:
    free(path);
    free(out);
    free(depth);
    free(ord);
    free(refs);
    return ret;
}
