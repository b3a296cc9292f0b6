/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash: the command-line client of kvstashd, built on libkvstash only.
 *
 *   kvstash [connection options] COMMAND [arguments]
 *
 * Connection options fall back to the environment (KVSTASH_ADDR,
 * KVSTASH_PORT, KVSTASH_TOKEN, KVSTASH_NS), then to the daemon's defaults.
 * Keys are given as text, or as hex with --hex. Exit status: 0 success,
 * 1 the operation failed (not found, mismatch, ...), 2 usage or connection.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/kvstash.h"
#include "common/hex.h"

static bool hex_keys;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: kvstash [options] COMMAND [args]\n"
        "options:\n"
        "  -a, --addr IP        daemon address ($KVSTASH_ADDR, 127.0.0.1)\n"
        "  -p, --port N         daemon port ($KVSTASH_PORT, %u)\n"
        "  -t, --token T        auth token ($KVSTASH_TOKEN)\n"
        "  -n, --ns NAME        namespace ($KVSTASH_NS, \"default\")\n"
        "  -x, --hex            keys are hex strings\n"
        "      --timeout MS     per-call timeout (30000)\n"
        "commands:\n"
        "  stat [--json]                    daemon counters and gauges\n"
        "  put KEY FILE [--parent KEY] [--durable] [--class C] [--ttl-ms N]\n"
        "                                   store FILE's bytes as one block\n"
        "                                   (C: scratch|user|pinned)\n"
        "  get KEY FILE|-                   fetch a block into FILE\n"
        "  match [--lease] KEY...           leading keys present, and tiers\n"
        "  exists KEY...                    1/0 per key\n"
        "  pin KEY... / unpin KEY...        make blocks (not) pinned class\n"
        "  delete KEY...                    remove blocks\n"
        "  prefetch KEY...                  bring blocks from NVMe to DRAM\n"
        "  verify                           check every block on disk\n",
        KVS_DEFAULT_PORT);
}

static int die_usage(const char *msg)
{
    fprintf(stderr, "kvstash: %s\n", msg);
    usage(stderr);
    return 2;
}

/* Turns argv strings into keys; with --hex decodes them in place. */
static int make_keys(char **args, int n, kvs_client_key_t *keys)
{
    for (int i = 0; i < n; i++) {
        size_t len = strlen(args[i]);

        if (hex_keys) {
            long dec = kvs_hex_decode(args[i], (uint8_t *)args[i], len / 2);
            if (dec < 0)
                return -EINVAL;
            len = (size_t)dec;
        }
        if (len == 0)
            return -EINVAL;
        if (len > KVS_KEY_MAX)
            return KVS_ETOOBIG;
        keys[i].data = args[i];
        keys[i].len = (uint32_t)len;
    }
    return 0;
}

static const char *tier_name(uint8_t t)
{
    return t == KVS_TIER_DRAM ? "dram" : t == KVS_TIER_NVME ? "nvme" : "none";
}

static int report(const char *what, int ret)
{
    if (ret)
        fprintf(stderr, "kvstash: %s: %s\n", what, kvs_strerror(ret));
    return ret ? 1 : 0;
}

static int cmd_stat(kvs_client_t *c, int argc, char **argv)
{
    kvs_client_stat_t st[128];
    bool json = argc > 1 && strcmp(argv[1], "--json") == 0;
    size_t n = 0;
    int ret = kvs_client_stat(c, st, 128, &n);

    if (ret)
        return report("stat", ret);
    if (json) {
        printf("{");
        for (size_t i = 0; i < n; i++)
            printf("%s\"%s\": %" PRIu64, i ? ", " : "", st[i].name, st[i].value);
        printf("}\n");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *nm = st[i].name;
        size_t l = strlen(nm);

        if (l > 6 && strcmp(nm + l - 6, "_bytes") == 0 && st[i].value >= 1024)
            printf("%-24s %" PRIu64 " (%.1f MiB)\n", nm, st[i].value,
                   (double)st[i].value / (1 << 20));
        else
            printf("%-24s %" PRIu64 "\n", nm, st[i].value);
    }
    return 0;
}

static int read_file(const char *path, void **buf_out, size_t *len_out)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    size_t cap = 1 << 20, len = 0, n;
    char *buf = malloc(cap);

    if (!f || !buf) {
        free(buf);
        if (f && f != stdin)
            fclose(f);
        return f ? -ENOMEM : -errno;
    }
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                if (f != stdin)
                    fclose(f);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    *buf_out = buf;
    *len_out = len;
    return 0;
}

static int cmd_put(kvs_client_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"parent", required_argument, NULL, 'P'},
        {"durable", no_argument, NULL, 'D'},
        {"class", required_argument, NULL, 'C'},
        {"ttl-ms", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    kvs_client_put_t it = {0};
    kvs_client_key_t key, parent = {0};
    char *parent_arg = NULL;
    kvs_iov_t part;
    void *buf = NULL;
    size_t len = 0;
    int o, ret;

    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'P':
            parent_arg = optarg;
            break;
        case 'D':
            it.flags |= KVS_CLIENT_PUT_DURABLE;
            break;
        case 'C':
            if (!strcmp(optarg, "scratch"))
                it.cls = KVS_CLASS_SCRATCH;
            else if (!strcmp(optarg, "user"))
                it.cls = KVS_CLASS_USER;
            else if (!strcmp(optarg, "pinned"))
                it.cls = KVS_CLASS_PINNED;
            else
                return die_usage("unknown class");
            break;
        case 'T':
            it.ttl_ms = strtoull(optarg, NULL, 10);
            break;
        default:
            return die_usage("bad put option");
        }
    }
    if (argc - optind != 2)
        return die_usage("put KEY FILE");
    if (make_keys(&argv[optind], 1, &key) ||
        (parent_arg && make_keys(&parent_arg, 1, &parent)))
        return die_usage("bad key");
    ret = read_file(argv[optind + 1], &buf, &len);
    if (ret)
        return report(argv[optind + 1], ret);
    part.base = buf;
    part.len = len;
    it.key = key;
    it.parent = parent;
    it.parts = &part;
    it.nparts = 1;
    ret = kvs_client_put_batch(c, &it, 1);
    free(buf);
    if (!ret)
        printf("stored %zu bytes\n", len);
    return report("put", ret);
}

static int cmd_get(kvs_client_t *c, int argc, char **argv)
{
    kvs_client_key_t key;
    size_t cap = 1 << 20, len = 0;
    void *buf = NULL;
    FILE *f;
    int ret;

    if (argc != 3)
        return die_usage("get KEY FILE|-");
    if (make_keys(&argv[1], 1, &key))
        return die_usage("bad key");
    for (int tries = 0; tries < 3; tries++) {
        free(buf);
        buf = malloc(cap ? cap : 1);
        if (!buf)
            return report("get", -ENOMEM);
        ret = kvs_client_get(c, key.data, key.len, buf, cap, &len);
        if (ret != -ENOBUFS)
            break;
        cap = len; /* the block grew or we guessed small: retry its size */
    }
    if (ret) {
        free(buf);
        return report("get", ret);
    }
    f = strcmp(argv[2], "-") ? fopen(argv[2], "wb") : stdout;
    if (!f || fwrite(buf, 1, len, f) != len) {
        ret = -errno;
        if (f && f != stdout)
            fclose(f);
        free(buf);
        return report(argv[2], ret ? ret : -EIO);
    }
    if (f != stdout && fclose(f) != 0) {
        free(buf);
        return report(argv[2], -errno);
    }
    free(buf);
    if (f != stdout)
        fprintf(stderr, "fetched %zu bytes\n", len);
    return 0;
}

static int cmd_keys(kvs_client_t *c, const char *cmd, int argc, char **argv)
{
    kvs_client_key_t *keys;
    int n, ret, bad = 0;
    bool lease = false;

    argv++;
    argc--;
    if (argc > 0 && strcmp(cmd, "match") == 0 && !strcmp(argv[0], "--lease")) {
        lease = true;
        argv++;
        argc--;
    }
    n = argc;
    if (n < 1)
        return die_usage("at least one key is needed");
    keys = calloc((size_t)n, sizeof(*keys));
    if (!keys)
        return report(cmd, -ENOMEM);
    if (make_keys(argv, n, keys)) {
        free(keys);
        return die_usage("bad key");
    }
    if (!strcmp(cmd, "match")) {
        uint8_t *tiers = calloc((size_t)n, 1);
        kvs_client_match_result_t r;

        ret = tiers ? kvs_client_match(c, keys, (size_t)n,
                                       lease ? KVS_CLIENT_MATCH_LEASE : 0, 0,
                                       tiers, &r)
                    : -ENOMEM;
        if (!ret) {
            printf("matched %zu of %d", r.matched, n);
            if (r.lease_id)
                printf(" (lease %" PRIu64 ", ended when this client exits)",
                       r.lease_id);
            printf("\n");
            for (size_t i = 0; i < r.matched; i++)
                printf("  %s %s\n", argv[i], tier_name(tiers[i]));
        }
        free(tiers);
    } else if (!strcmp(cmd, "exists")) {
        uint8_t *present = calloc((size_t)n, 1);

        ret = present ? kvs_client_exists(c, keys, (size_t)n, present)
                      : -ENOMEM;
        for (int i = 0; !ret && i < n; i++) {
            printf("%s %d\n", argv[i], present[i]);
            bad |= !present[i];
        }
        free(present);
    } else if (!strcmp(cmd, "prefetch")) {
        uint64_t promoted = 0;

        ret = kvs_client_prefetch(c, keys, (size_t)n, &promoted);
        if (!ret)
            printf("promoted %" PRIu64 "\n", promoted);
    } else {
        int *st = calloc((size_t)n, sizeof(int));

        if (!st)
            ret = -ENOMEM;
        else if (!strcmp(cmd, "delete"))
            ret = kvs_client_delete(c, keys, (size_t)n, st);
        else if (!strcmp(cmd, "pin"))
            ret = kvs_client_pin(c, keys, (size_t)n, KVS_CLIENT_PIN_RETAIN, st);
        else
            ret = kvs_client_unpin(c, keys, (size_t)n, KVS_CLIENT_PIN_RETAIN,
                                   st);
        for (int i = 0; st && i < n && (ret == 0 || ret < KVS_EBASE); i++)
            printf("%s %s\n", argv[i], kvs_strerror(st[i]));
        free(st);
    }
    free(keys);
    if (ret)
        return report(cmd, ret);
    return bad;
}

static int cmd_verify(kvs_client_t *c)
{
    uint64_t checked = 0, bad = 0;
    int ret = kvs_client_verify(c, &checked, &bad);

    if (ret)
        return report("verify", ret);
    printf("checked %" PRIu64 " blocks on disk, %" PRIu64 " bad\n", checked,
           bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},
        {"ns", required_argument, NULL, 'n'},
        {"hex", no_argument, NULL, 'x'},
        {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kvs_client_params_t p = {0};
    kvs_client_t *c;
    const char *cmd;
    int o, ret;

    p.field_mask = KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT |
                   KVS_CLIENT_PARAM_NS | KVS_CLIENT_PARAM_TIMEOUT_MS;
    p.addr = getenv("KVSTASH_ADDR") ? getenv("KVSTASH_ADDR") : "127.0.0.1";
    p.port = getenv("KVSTASH_PORT") ? (uint16_t)atoi(getenv("KVSTASH_PORT"))
                                    : KVS_DEFAULT_PORT;
    p.token = getenv("KVSTASH_TOKEN");
    p.ns = getenv("KVSTASH_NS") ? getenv("KVSTASH_NS") : "default";
    p.timeout_ms = 30000;
    /* Options stop at the command, so command options are its own. */
    while ((o = getopt_long(argc, argv, "+a:p:t:n:xh", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            p.addr = optarg;
            break;
        case 'p':
            p.port = (uint16_t)atoi(optarg);
            break;
        case 't':
            p.token = optarg;
            break;
        case 'n':
            p.ns = optarg;
            break;
        case 'x':
            hex_keys = true;
            break;
        case 'T':
            p.timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc)
        return die_usage("no command");
    if (p.token)
        p.field_mask |= KVS_CLIENT_PARAM_TOKEN;
    cmd = argv[optind];
    if (strcmp(cmd, "stat") && strcmp(cmd, "put") && strcmp(cmd, "get") &&
        strcmp(cmd, "match") && strcmp(cmd, "exists") && strcmp(cmd, "pin") &&
        strcmp(cmd, "unpin") && strcmp(cmd, "delete") &&
        strcmp(cmd, "prefetch") && strcmp(cmd, "verify"))
        return die_usage("unknown command");
    ret = kvs_client_create(&p, &c);
    if (ret) {
        fprintf(stderr, "kvstash: cannot connect to %s port %u: %s\n", p.addr,
                p.port, kvs_strerror(ret));
        return 2;
    }
    argc -= optind;
    argv += optind;
    if (!strcmp(cmd, "stat"))
        ret = cmd_stat(c, argc, argv);
    else if (!strcmp(cmd, "put"))
        ret = cmd_put(c, argc, argv);
    else if (!strcmp(cmd, "get"))
        ret = cmd_get(c, argc, argv);
    else if (!strcmp(cmd, "verify"))
        ret = cmd_verify(c);
    else
        ret = cmd_keys(c, cmd, argc, argv);
    kvs_client_destroy(c);
    return ret;
}
