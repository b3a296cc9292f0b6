// SPDX-License-Identifier: Apache-2.0
/*
 * `kvstash locate`: opens a locator (kvstash/locate.h) on etcd, waits until
 * it has replayed every node's events, and answers for one chain. With
 * --repeat N it calls kvs_locate() N times on the full index and prints
 * the mean and 99th percentile latency, the figure docs/cluster.md quotes.
 */
#include "tools/kvstash-cli/locate.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int kvs_cli_locate(const char *etcd, const char *prefix, uint32_t repeat,
                   const kvs_client_key_t *keys, int n)
{
    kvs_locator_t *loc;
    kvs_locate_result_t r;
    uint64_t *ns = NULL;
    int ret;

    ret = kvs_locator_open(etcd, prefix, &loc);
    if (ret) {
        fprintf(stderr, "kvstash: locate: %s\n", kvs_strerror(ret));
        return 2;
    }
    ret = kvs_locator_sync(loc, 10000);
    if (ret < 0) {
        fprintf(stderr,
                "kvstash: locate: cannot read the nodes from etcd at "
                "%s: %s (is etcd up? --etcd URL, --prefix P)\n",
                etcd, kvs_strerror(ret));
        kvs_locator_close(loc);
        return 2;
    }
    if (repeat > 1)
        ns = malloc(repeat * sizeof(*ns));
    for (uint32_t i = 0; i < (ns ? repeat : 1); i++) {
        uint64_t t0 = kvs_clock_mono_ns();

        kvs_locate(loc, keys, (size_t)n, &r);
        if (ns)
            ns[i] = kvs_clock_mono_ns() - t0;
    }
    if (r.matched)
        printf("%s %s %zu/%d\n", r.node,
               r.tier == KVS_TIER_DRAM ? "dram" : "nvme", r.matched, n);
    else
        printf("none - 0/%d\n", n);
    if (ns) {
        uint64_t sum = 0;

        qsort(ns, repeat, sizeof(*ns), cmp_u64);
        for (uint32_t i = 0; i < repeat; i++)
            sum += ns[i];
        printf("locate: %u calls over %zu indexed blocks from %d nodes: "
               "mean %.2f us, p50 %.2f us, p99 %.2f us\n",
               repeat, kvs_locator_blocks(loc), ret, sum / 1e3 / repeat,
               ns[repeat / 2] / 1e3, ns[repeat * 99 / 100] / 1e3);
        free(ns);
    }
    kvs_locator_close(loc);
    return r.matched ? 0 : 1;
}
