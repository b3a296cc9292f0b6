/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup promote (see promote.h, docs/warmup.md).
 *
 * The candidates are listed with SCAN (per group, or the namespace for a
 * key list) and put in chain order, so that a prefix is promoted before
 * its continuations: the budget then keeps whole prefixes, which is what a
 * MATCH can use. Blocks already in DRAM are skipped. The rest go to the
 * daemon in PREFETCH batches while their bytes fit the budget; the first
 * block that does not fit ends the run. The default budget is the DRAM
 * that is free below 90% of the arena (STAT), so promotion does not push
 * the daemon into degrading other blocks; the daemon itself never evicts
 * pinned or referenced blocks to promote.
 */
#include "tools/kvstash-warmup/promote.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvstash-warmup/manifest.h"
#include "tools/kvstash-warmup/progress.h"
#include "tools/kvstash-warmup/scan.h"

static uint64_t stat_value(kvs_client_t *c, const char *name)
{
    kvs_client_stat_t st[128];
    size_t n = 0;

    if (kvs_client_stat(c, st, 128, &n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(st[i].name, name))
            return st[i].value;
    return 0;
}

/* Keeps the entries of l whose key is in the hex key file; counts the
 * requested keys not present in *missing_out. */
static int filter_keys(const char *path, kvs_scan_list_t *l,
                       uint64_t *missing_out)
{
    FILE *f = fopen(path, "r");
    kvs_scan_list_t out = {0};
    char *line = NULL;
    size_t len = 0;
    ssize_t got;
    unsigned lineno = 0;
    int ret = 0;

    if (!f) {
        fprintf(stderr, "kvstash-warmup: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    out.ents = malloc((l->n ? l->n : 1) * sizeof(*out.ents));
    if (!out.ents) {
        fclose(f);
        return -ENOMEM;
    }
    while ((got = getline(&line, &len, f)) >= 0) {
        kvs_manifest_key_t k;
        bool found = false;

        lineno++;
        while (got > 0 && strchr(" \t\r\n", line[got - 1]))
            line[--got] = '\0';
        if (got == 0)
            continue;
        if (kvs_manifest_hex_key(line, &k)) {
            fprintf(stderr, "kvstash-warmup: %s:%u: not a hex key\n", path,
                    lineno);
            ret = -EINVAL;
            continue;
        }
        for (size_t i = 0; i < l->n && !found; i++) {
            if (l->ents[i].key_len == k.len &&
                !memcmp(l->ents[i].key, k.b, k.len)) {
                out.ents[out.n++] = l->ents[i];
                l->ents[i].key_len = 0; /* taken once */
                found = true;
            }
        }
        if (!found)
            ++*missing_out;
    }
    free(line);
    fclose(f);
    kvs_scan_list_fini(l);
    *l = out;
    return ret;
}

int kvs_promote_main(const kvs_warmup_opts_t *o, const char *ns, int argc,
                     char **argv)
{
    static const struct option opts[] = {
        {"group", required_argument, NULL, 'g'},
        {"keys", required_argument, NULL, 'k'},
        {"budget-mib", required_argument, NULL, 'b'},
        {"budget-kib", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    uint64_t groups[256], budget = 0, missing = 0, used = 0, left_bytes = 0;
    size_t ngroups = 0, left = 0;
    const char *keys_file = NULL;
    bool budget_set = false;
    kvs_scan_list_t l = {0};
    kvs_client_limits_t lim;
    kvs_progress_t prog;
    kvs_client_t *c;
    int opt, ret, rc = KVS_WARMUP_EXIT_OK;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "g:k:b:K:", opts, NULL)) != -1) {
        switch (opt) {
        case 'g':
            if (ngroups == 256 ||
                !(groups[ngroups++] = strtoull(optarg, NULL, 0))) {
                fprintf(stderr, "kvstash-warmup: --group: 1..2^64-1, at most "
                                "256 of them\n");
                return KVS_WARMUP_EXIT_USAGE;
            }
            break;
        case 'k':
            keys_file = optarg;
            break;
        case 'b':
            budget = strtoull(optarg, NULL, 10) << 20;
            budget_set = true;
            break;
        case 'K':
            budget = strtoull(optarg, NULL, 10) << 10;
            budget_set = true;
            break;
        default:
            return KVS_WARMUP_EXIT_USAGE;
        }
    }
    if (!ns || (!ngroups && !keys_file) || optind != argc) {
        fprintf(stderr, "usage: kvstash-warmup -n NS promote [--group G]... "
                        "[--keys FILE] [--budget-mib N | --budget-kib N]\n");
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (kvs_warmup_connect(o, ns, 0, &c))
        return KVS_WARMUP_EXIT_USAGE;
    kvs_client_limits(c, &lim);
    for (size_t g = 0; g < ngroups; g++) {
        if ((ret = kvs_scan_collect(c, groups[g], &l))) {
            fprintf(stderr, "kvstash-warmup: SCAN of group %llu: %s\n",
                    (unsigned long long)groups[g], kvs_strerror(ret));
            rc = KVS_WARMUP_EXIT_USAGE;
            goto out;
        }
    }
    if (keys_file) {
        kvs_scan_list_t all = {0};

        if ((ret = kvs_scan_collect(c, 0, &all))) {
            fprintf(stderr, "kvstash-warmup: SCAN: %s\n", kvs_strerror(ret));
            kvs_scan_list_fini(&all);
            rc = KVS_WARMUP_EXIT_USAGE;
            goto out;
        }
        if (filter_keys(keys_file, &all, &missing))
            rc = KVS_WARMUP_EXIT_FAILED;
        for (size_t i = 0; i < all.n; i++) {
            if (l.n == l.cap) {
                kvs_client_scan_ent_t *e =
                    realloc(l.ents, (l.cap = l.cap * 2 + 64) * sizeof(*e));
                if (!e) {
                    rc = KVS_WARMUP_EXIT_USAGE;
                    kvs_scan_list_fini(&all);
                    goto out;
                }
                l.ents = e;
            }
            l.ents[l.n++] = all.ents[i];
        }
        kvs_scan_list_fini(&all);
    }
    if (kvs_scan_sort_chains(l.ents, l.n)) {
        rc = KVS_WARMUP_EXIT_USAGE;
        goto out;
    }
    if (!budget_set) {
        uint64_t cap = stat_value(c, "dram_capacity_bytes");
        uint64_t in_use = stat_value(c, "dram_used_bytes");

        budget = cap / 10 * 9 > in_use ? cap / 10 * 9 - in_use : 0;
    }
    kvs_progress_init(&prog, "promote", l.n + missing, o->tty, o->quiet,
                      o->interval_ms);
    if (missing) {
        fprintf(stderr,
                "kvstash-warmup: %llu of the keys in %s are not in "
                "namespace '%s'\n",
                (unsigned long long)missing, keys_file, ns);
        kvs_progress_add(&prog, 0, 0, missing, 0);
        rc = KVS_WARMUP_EXIT_FAILED;
    }
    for (size_t i = 0; i < l.n;) {
        kvs_client_key_t keys[1024];
        uint64_t batch_bytes = 0, promoted = 0, skipped = 0;
        bool over_budget = false;
        size_t n = 0;

        while (i < l.n && n < lim.max_keys && n < 1024) {
            const kvs_client_scan_ent_t *e = &l.ents[i];

            if (e->tier == KVS_TIER_DRAM) {
                skipped++;
                i++;
                continue;
            }
            if (used + batch_bytes + e->len > budget) {
                over_budget = true;
                break;
            }
            keys[n].data = e->key;
            keys[n].len = e->key_len;
            batch_bytes += e->len;
            n++;
            i++;
        }
        if (skipped)
            kvs_progress_add(&prog, 0, skipped, 0, 0);
        if (n) {
            ret = kvs_client_prefetch(c, keys, n, &promoted);
            if (ret) {
                fprintf(stderr, "kvstash-warmup: PREFETCH: %s\n",
                        kvs_strerror(ret));
                kvs_progress_add(&prog, 0, 0, n, 0);
                rc = KVS_WARMUP_EXIT_FAILED;
                break;
            }
            if (promoted > n)
                promoted = n;
            used += batch_bytes;
            /* The daemon stops short when DRAM is short; it says how many
             * it brought in, not which, so bytes are an estimate. */
            kvs_progress_add(&prog, promoted, 0, n - promoted,
                             n ? batch_bytes / n * promoted : 0);
            if (promoted < n) {
                fprintf(stderr,
                        "kvstash-warmup: the daemon promoted %llu of "
                        "%zu blocks (DRAM short of unpinned room)\n",
                        (unsigned long long)promoted, n);
                rc = KVS_WARMUP_EXIT_FAILED;
            }
        }
        if (over_budget) {
            /* The next block does not fit the budget: stop here. */
            for (size_t j = i; j < l.n; j++) {
                if (l.ents[j].tier == KVS_TIER_DRAM) {
                    kvs_progress_add(&prog, 0, 1, 0, 0);
                    continue;
                }
                left++;
                left_bytes += l.ents[j].len;
            }
            break;
        }
    }
    kvs_progress_finish(&prog, "promoted");
    if (left)
        printf("promote: stopped at the DRAM budget of %.1f KiB: %zu blocks "
               "(%.1f KiB) left on NVMe\n",
               (double)budget / 1024, left, (double)left_bytes / 1024);
out:
    kvs_scan_list_fini(&l);
    kvs_client_destroy(c);
    return rc;
}
