/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup export (see export.h, docs/warmup.md).
 *
 * The blocks are listed with SCAN, put in chain order (parents first) and
 * split into lines by (group, class), each line at most 1024 blocks or
 * 256 MiB. For each line the blocks are fetched with GET (part lengths
 * included) and written to DIR/export-N.safetensors as tensors block.I of
 * dtype U8 and shape [parts, part bytes]; the manifest line names the keys
 * and parents in hex. A block whose parts differ in length cannot be
 * written as one such tensor; it is reported and left out.
 */
#include "tools/kvstash-warmup/export.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>

#include "tools/kvstash-warmup/progress.h"
#include "tools/kvstash-warmup/safetensors.h"
#include "tools/kvstash-warmup/scan.h"

#define LINE_BLOCKS 1024u
#define LINE_BYTES (256ull << 20)

static const char *const class_names[] = {"scratch", "user", "pinned"};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Fetches ents[0..n) and writes one file and one manifest line. */
static int export_line(kvs_client_t *c, const char *ns, const char *dir,
                       unsigned fileno, const kvs_client_scan_ent_t *ents,
                       size_t n, FILE *mf, kvs_progress_t *prog)
{
    kvs_client_get_t *gets = calloc(n, sizeof(*gets));
    kvs_safetensors_out_t *outs = calloc(n, sizeof(*outs));
    uint32_t *lens = calloc(n * KVS_PARTS_MAX, sizeof(*lens));
    char(*names)[32] = calloc(n, sizeof(*names));
    struct json_object *line = NULL, *keys, *parents;
    char path[4096], file[64], hex[2 * KVS_KEY_MAX + 1];
    uint64_t ttl = 0, now = now_ms(), bytes = 0;
    size_t nout = 0, failed = 0;
    int ret = -ENOMEM;

    if (!gets || !outs || !lens || !names)
        goto out;
    for (size_t i = 0; i < n; i++) {
        gets[i].key.data = ents[i].key;
        gets[i].key.len = ents[i].key_len;
        gets[i].buf = malloc(ents[i].len ? ents[i].len : 1);
        gets[i].cap = ents[i].len;
        gets[i].part_lens = lens + i * KVS_PARTS_MAX;
        gets[i].part_cap = KVS_PARTS_MAX;
        if (!gets[i].buf)
            goto out;
    }
    /* Per-block statuses say which failed; the call's result is the
     * first failure only. */
    kvs_client_get_batch(c, gets, n, 0);
    line = json_object_new_object();
    keys = json_object_new_array();
    parents = json_object_new_array();
    if (!line || !keys || !parents) {
        json_object_put(keys);
        json_object_put(parents);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        kvs_client_get_t *g = &gets[i];
        uint32_t np = g->nparts;

        if (g->status) {
            kvs_warmup_hex(ents[i].key, ents[i].key_len, hex);
            fprintf(stderr, "kvstash-warmup: export: block %s: %s\n", hex,
                    kvs_strerror(g->status));
            failed++;
            continue;
        }
        for (uint32_t p = 1; p < np; p++) {
            if (g->part_lens[p] != g->part_lens[0]) {
                kvs_warmup_hex(ents[i].key, ents[i].key_len, hex);
                fprintf(stderr,
                        "kvstash-warmup: export: block %s: parts of "
                        "different lengths; left out\n",
                        hex);
                np = 0;
                break;
            }
        }
        if (np == 0) {
            failed++;
            continue;
        }
        snprintf(names[nout], sizeof(names[nout]), "block.%zu", nout);
        outs[nout].name = names[nout];
        outs[nout].dtype = "U8";
        outs[nout].ndim = 2;
        outs[nout].shape[0] = np;
        outs[nout].shape[1] = g->part_lens[0];
        outs[nout].data = g->buf;
        outs[nout].len = g->len;
        nout++;
        bytes += g->len;
        kvs_warmup_hex(ents[i].key, ents[i].key_len, hex);
        json_object_array_add(keys, json_object_new_string(hex));
        kvs_warmup_hex(ents[i].parent, ents[i].parent_len, hex);
        json_object_array_add(parents, json_object_new_string(hex));
        if (ents[i].expiry_ms > now && ents[i].expiry_ms - now > ttl)
            ttl = ents[i].expiry_ms - now;
    }
    json_object_object_add(line, "keys", keys);
    json_object_object_add(line, "parents", parents);
    if (nout) {
        snprintf(file, sizeof(file), "export-%u.safetensors", fileno);
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        ret = kvs_safetensors_write(path, outs, nout);
        if (ret) {
            fprintf(stderr, "kvstash-warmup: %s: %s\n", path, strerror(-ret));
            goto out;
        }
        json_object_object_add(line, "namespace", json_object_new_string(ns));
        json_object_object_add(line, "kv_file", json_object_new_string(file));
        json_object_object_add(line, "layout",
                               json_object_new_string("blocks"));
        json_object_object_add(
            line, "class",
            json_object_new_string(class_names[ents[0].cls % 3]));
        json_object_object_add(line, "group",
                               json_object_new_int64((int64_t)ents[0].group));
        if (ttl)
            json_object_object_add(line, "ttl_ms",
                                   json_object_new_int64((int64_t)ttl));
        fprintf(mf, "%s\n",
                json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN));
    }
    kvs_progress_add(prog, nout, 0, failed, bytes);
    ret = failed ? 1 : 0;
out:
    json_object_put(line);
    for (size_t i = 0; gets && i < n; i++)
        free(gets[i].buf);
    free(names);
    free(lens);
    free(outs);
    free(gets);
    return ret;
}

int kvs_export_main(const kvs_warmup_opts_t *o, const char *ns, int argc,
                    char **argv)
{
    static const struct option opts[] = {
        {"group", required_argument, NULL, 'g'},
        {"all", no_argument, NULL, 'A'},
        {"out", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    uint64_t group = 0;
    bool all = false;
    const char *dir = NULL;
    kvs_scan_list_t l = {0};
    kvs_progress_t prog;
    kvs_client_t *c;
    char path[4096];
    unsigned fileno = 0;
    FILE *mf;
    int opt, ret, rc = KVS_WARMUP_EXIT_OK;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "g:Ao:", opts, NULL)) != -1) {
        switch (opt) {
        case 'g':
            group = strtoull(optarg, NULL, 0);
            break;
        case 'A':
            all = true;
            break;
        case 'o':
            dir = optarg;
            break;
        default:
            return KVS_WARMUP_EXIT_USAGE;
        }
    }
    if (!ns || !dir || (!group) == (!all) || optind != argc) {
        fprintf(stderr, "usage: kvstash-warmup -n NS export (--group G | "
                        "--all) --out DIR\n");
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "kvstash-warmup: %s: %s\n", dir, strerror(errno));
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (kvs_warmup_connect(o, ns, 0, &c))
        return KVS_WARMUP_EXIT_USAGE;
    ret = kvs_scan_collect(c, group, &l);
    if (!ret)
        ret = kvs_scan_sort_chains(l.ents, l.n);
    if (ret) {
        fprintf(stderr, "kvstash-warmup: SCAN: %s\n", kvs_strerror(ret));
        rc = KVS_WARMUP_EXIT_USAGE;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/manifest.jsonl", dir);
    mf = fopen(path, "w");
    if (!mf) {
        fprintf(stderr, "kvstash-warmup: %s: %s\n", path, strerror(errno));
        rc = KVS_WARMUP_EXIT_USAGE;
        goto out;
    }
    kvs_progress_init(&prog, "export", l.n, o->tty, o->quiet, o->interval_ms);
    /* Lines of one (group, class), in chain order; a stable pass per pair
     * keeps parents ahead of children within each line. */
    {
        bool *taken = calloc(l.n ? l.n : 1, 1);
        kvs_client_scan_ent_t *buf = malloc((l.n ? l.n : 1) * sizeof(*buf));

        if (!taken || !buf) {
            free(taken);
            free(buf);
            fclose(mf);
            rc = KVS_WARMUP_EXIT_USAGE;
            goto out;
        }
        for (size_t i = 0; i < l.n; i++) {
            size_t nb = 0;
            uint64_t bytes = 0;

            if (taken[i])
                continue;
            for (size_t j = i; j < l.n; j++) {
                if (taken[j] || l.ents[j].group != l.ents[i].group ||
                    l.ents[j].cls != l.ents[i].cls)
                    continue;
                if (nb &&
                    (nb == LINE_BLOCKS || bytes + l.ents[j].len > LINE_BYTES))
                    break;
                taken[j] = true;
                buf[nb++] = l.ents[j];
                bytes += l.ents[j].len;
            }
            ret = export_line(c, ns, dir, fileno++, buf, nb, mf, &prog);
            if (ret < 0) {
                rc = KVS_WARMUP_EXIT_USAGE;
                break;
            }
            if (ret > 0)
                rc = KVS_WARMUP_EXIT_FAILED;
        }
        free(taken);
        free(buf);
    }
    if (fclose(mf) != 0)
        rc = KVS_WARMUP_EXIT_USAGE;
    kvs_progress_finish(&prog, "exported");
out:
    kvs_scan_list_fini(&l);
    kvs_client_destroy(c);
    return rc;
}
