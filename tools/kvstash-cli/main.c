/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash: the command-line client of kvstashd, built on libkvstash only.
 *
 *   kvstash [connection options] COMMAND [arguments]
 *
 * Options may come anywhere on the line ("kvstash put K FILE --durable");
 * an unknown one is refused by name, as is a command's option given to
 * another command. Connection options fall back to the environment
 * (KVSTASH_ADDR, KVSTASH_PORT, KVSTASH_TOKEN, KVSTASH_NS), then to the daemon's
 * defaults; host names are resolved here, since libkvstash takes numeric
 * addresses. Keys are given as text, or as hex with --hex. Exit status: 0
 * success, 1 the operation failed (not found, mismatch, ...), 2 usage or
 * connection.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvstash/kvstash.h"
#include "common/cliarg.h"
#include "common/hex.h"
#include "tools/kvstash-cli/locate.h"

/* The command line, parsed whole before anything is sent: options may come
 * before or after the command and its arguments, in any order. */
typedef struct cli {
    bool hex_keys;             /* -x: keys are hex strings */
    bool json;                 /* stat --json */
    bool lease;                /* match --lease */
    const char *parent;        /* put --parent */
    kvs_client_put_t put;      /* put --durable, --class, --ttl-ms */
    const char *etcd, *prefix; /* locate --etcd, --prefix */
    uint32_t repeat;           /* locate --repeat */
} cli_t;

static cli_t cli;
static const char *ns_name = "default"; /* -n, $KVSTASH_NS */

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: kvstash [options] COMMAND [args] [options]\n"
        "options (anywhere on the line; -- ends them):\n"
        "  -a, --addr HOST      daemon address or host name ($KVSTASH_ADDR,\n"
        "                       127.0.0.1)\n"
        "  -p, --port N         daemon port ($KVSTASH_PORT, %u)\n"
        "  -t, --token T        auth token ($KVSTASH_TOKEN)\n"
        "  -n, --ns NAME        namespace ($KVSTASH_NS, \"default\")\n"
        "  -x, --hex            keys are hex strings\n"
        "      --timeout MS     per-call timeout (30000)\n"
        "  -V, --version        print the version\n"
        "  -h, --help           print this\n"
        "commands:\n"
        "  stat [--json]                    daemon counters and gauges\n"
        "  put KEY FILE|- [--parent KEY] [--durable] [--class C] [--ttl-ms N]\n"
        "                                   store FILE's bytes as one block\n"
        "                                   (C: scratch|user|pinned)\n"
        "  get KEY FILE|-                   fetch a block into FILE\n"
        "  match KEY... [--lease]           leading keys present, and tiers\n"
        "  exists KEY...                    1/0 per key\n"
        "  pin KEY... / unpin KEY...        make blocks (not) pinned class\n"
        "  delete KEY...                    remove blocks\n"
        "  prefetch KEY...                  bring blocks from NVMe to DRAM\n"
        "  verify                           check every block on disk\n"
        "  locate KEY... --etcd URL [--prefix P] [--repeat N]\n"
        "                                   which node holds the longest\n"
        "                                   prefix, from the nodes' events\n"
        "Exit status: 0 success, 1 the operation failed (not found, ...),\n"
        "2 usage or connection.\n",
        KVS_DEFAULT_PORT);
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "kvstash: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (kvstash --help for usage)\n");
    return 2;
}

/* Turns argv strings into keys; with --hex decodes them in place. */
static int make_keys(char **args, int n, kvs_client_key_t *keys)
{
    for (int i = 0; i < n; i++) {
        size_t len = strlen(args[i]);

        if (cli.hex_keys) {
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

static void print_size(FILE *out, uint64_t n)
{
    if (n >= (1u << 20))
        fprintf(out, "%" PRIu64 " bytes (%.1f MiB)", n, (double)n / (1 << 20));
    else
        fprintf(out, "%" PRIu64 " bytes", n);
}

/* A block larger than the daemon takes: names both sizes and the setting.
 * len is the size, or 0 for input read only as far as the limit. */
static int too_big(const char *key, const char *file, uint64_t len,
                   uint32_t max)
{
    fprintf(stderr, "kvstash: put %s: %s is ", key, file);
    if (len) {
        print_size(stderr, len);
        fprintf(stderr, ", ");
    }
    fprintf(stderr, "longer than the daemon's largest block, ");
    print_size(stderr, max);
    fprintf(stderr, " (its setting store.max_block_mib; raise it there, or "
                    "split the data into several blocks)\n");
    return 1;
}

/* A value of the STAT table by name; 0 when the daemon did not send it. */
static uint64_t stat_value(const kvs_client_stat_t *st, size_t n,
                           const char *name, bool *found)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(st[i].name, name) == 0) {
            if (found)
                *found = true;
            return st[i].value;
        }
    }
    if (found)
        *found = false;
    return 0;
}

/* Bytes in binary units: "512 B", "1.5 KiB", ..., "3.2 TiB". */
static void human_bytes(char *out, size_t cap, uint64_t v)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    unsigned u = 0;

    while (d >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%" PRIu64 " B", v);
    else
        snprintf(out, cap, "%.1f %s", d, unit[u]);
}

/* A count with k/M/G suffixes above 10,000. */
static void human_count(char *out, size_t cap, uint64_t v)
{
    if (v < 10000)
        snprintf(out, cap, "%" PRIu64, v);
    else if (v < 10000000)
        snprintf(out, cap, "%.1fk", (double)v / 1e3);
    else if (v < 10000000000ull)
        snprintf(out, cap, "%.1fM", (double)v / 1e6);
    else
        snprintf(out, cap, "%.1fG", (double)v / 1e9);
}

static void print_ratio(const char *what, uint64_t part, uint64_t whole)
{
    if (whole)
        printf("%-24s %.1f%% (%" PRIu64 " of %" PRIu64 ")\n", what,
               100.0 * (double)part / (double)whole, part, whole);
    else
        printf("%-24s - (none yet)\n", what);
}

/* The summary above the table: version, uptime, hit ratios. */
static void stat_summary(const kvs_client_stat_t *st, size_t n)
{
    bool have_v, have_up;
    uint64_t v = stat_value(st, n, "version", &have_v);
    uint64_t up = stat_value(st, n, "uptime_ms", &have_up) / 1000;

    if (have_v)
        printf("%-24s %u.%u.%u\n", "daemon version", (unsigned)(v / 10000),
               (unsigned)(v / 100 % 100), (unsigned)(v % 100));
    if (have_up)
        printf("%-24s %" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m %02" PRIu64
               "s\n",
               "uptime", up / 86400, up / 3600 % 24, up / 60 % 60, up % 60);
    print_ratio("get hit ratio", stat_value(st, n, "hits", NULL),
                stat_value(st, n, "gets", NULL));
    print_ratio("match key hit ratio", stat_value(st, n, "match_hits", NULL),
                stat_value(st, n, "match_keys", NULL));
}

static int cmd_stat(kvs_client_t *c, int argc, char **argv)
{
    kvs_client_stat_t st[128];
    bool json = cli.json;
    size_t n = 0;
    int ret;

    if (argc != 1)
        return die_usage("stat takes no arguments, '%s' given", argv[1]);
    ret = kvs_client_stat(c, st, 128, &n);
    if (ret)
        return report("stat", ret);
    if (json) {
        printf("{");
        for (size_t i = 0; i < n; i++)
            printf("%s\"%s\": %" PRIu64, i ? ", " : "", st[i].name,
                   st[i].value);
        printf("}\n");
        return 0;
    }
    stat_summary(st, n);
    for (size_t i = 0; i < n; i++) {
        const char *nm = st[i].name;
        size_t l = strlen(nm);
        char h[32];

        if (strcmp(nm, "version") == 0 || strcmp(nm, "uptime_ms") == 0)
            continue; /* in the summary */
        if ((l > 6 && strcmp(nm + l - 6, "_bytes") == 0) ||
            strncmp(nm, "bytes_", 6) == 0) {
            human_bytes(h, sizeof(h), st[i].value);
            printf("%-24s %s\n", nm, h);
        } else {
            human_count(h, sizeof(h), st[i].value);
            printf("%-24s %s\n", nm, h);
        }
    }
    return 0;
}

/* Reads path ("-": stdin) whole, but never more than max + 1 bytes: a
 * longer input is refused by the caller without being read to its end. */
static int read_file(const char *path, size_t max, void **buf_out,
                     size_t *len_out)
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
        if (len > max)
            break;
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
    kvs_client_put_t it = cli.put;
    kvs_client_key_t key, parent = {0};
    char *parent_arg = (char *)cli.parent;
    const char *file;
    kvs_client_limits_t lim;
    struct stat sb;
    kvs_iov_t part;
    void *buf = NULL;
    size_t len = 0;
    int ret;

    if (argc != 3)
        return die_usage("%s", "put wants KEY FILE");
    file = argv[2];
    if (make_keys(&argv[1], 1, &key) ||
        (parent_arg && make_keys(&parent_arg, 1, &parent)))
        return die_usage("%s", "bad key");
    kvs_client_limits(c, &lim);
    /* A file's size is known before reading it: a block over the limit is
     * refused at once, not after reading it whole. */
    if (strcmp(file, "-") && stat(file, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size > lim.max_payload)
        return too_big(argv[1], file, (uint64_t)sb.st_size, lim.max_payload);
    ret = read_file(file, lim.max_payload, &buf, &len);
    if (ret)
        return report(file, ret);
    if (len > lim.max_payload) { /* a pipe, or a file that grew */
        free(buf);
        return too_big(argv[1], file, 0, lim.max_payload);
    }
    part.base = buf;
    part.len = len;
    it.key = key;
    it.parent = parent;
    it.parts = &part;
    it.nparts = 1;
    ret = kvs_client_put_batch(c, &it, 1);
    free(buf);
    if (ret == KVS_ETOOBIG)
        return too_big(argv[1], file, len, lim.max_payload);
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
        return die_usage("%s", "get wants KEY FILE|-");
    if (make_keys(&argv[1], 1, &key))
        return die_usage("%s", "bad key");
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
    if (ret == KVS_ENOTFOUND) {
        free(buf);
        fprintf(stderr,
                "kvstash: get %s: not found (no such block in "
                "namespace '%s')\n",
                argv[1], ns_name);
        return 1;
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
    bool lease = cli.lease, reported = false;

    argv++;
    argc--;
    n = argc;
    if (n < 1)
        return die_usage("%s wants at least one key", cmd);
    keys = calloc((size_t)n, sizeof(*keys));
    if (!keys)
        return report(cmd, -ENOMEM);
    if (make_keys(argv, n, keys)) {
        free(keys);
        return die_usage("%s", "bad key");
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

        ret =
            present ? kvs_client_exists(c, keys, (size_t)n, present) : -ENOMEM;
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
            ret =
                kvs_client_unpin(c, keys, (size_t)n, KVS_CLIENT_PIN_RETAIN, st);
        /* Each key's result once; the call's own status is the first
         * key's failure, already printed. */
        for (int i = 0; st && i < n && (ret == 0 || ret < KVS_EBASE); i++) {
            printf("%s %s\n", argv[i], kvs_strerror(st[i]));
            reported |= st[i] != 0 && st[i] == ret;
        }
        free(st);
    }
    free(keys);
    if (ret && reported)
        return 1;
    if (ret)
        return report(cmd, ret);
    return bad;
}

static int cmd_verify(kvs_client_t *c, int argc, char **argv)
{
    uint64_t checked = 0, bad = 0;
    int ret;

    if (argc != 1)
        return die_usage("verify takes no arguments, '%s' given", argv[1]);
    ret = kvs_client_verify(c, &checked, &bad);
    if (ret)
        return report("verify", ret);
    printf("checked %" PRIu64 " blocks on disk, %" PRIu64 " bad\n", checked,
           bad);
    return bad ? 1 : 0;
}

/* locate: no daemon connection; the nodes come from etcd. */
static int locate(int n, char **args)
{
    kvs_client_key_t *keys;
    int ret;

    if (!cli.etcd)
        return die_usage("%s", "locate needs --etcd URL (etcd's client URL, "
                               "e.g. http://127.0.0.1:2379)");
    if (n < 1)
        return die_usage("%s", "locate needs at least one KEY");
    keys = calloc((size_t)n, sizeof(*keys));
    if (!keys)
        return 2;
    if (make_keys(args, n, keys)) {
        free(keys);
        return die_usage("%s", "a key is empty, longer than 64 bytes, or not "
                               "hex (with --hex)");
    }
    ret = kvs_cli_locate(cli.etcd, cli.prefix ? cli.prefix : "/kvstash/nodes/",
                         cli.repeat, keys, n);
    free(keys);
    return ret;
}

/* The commands, and which of the command options each takes. */
static const struct command {
    const char *name;
    const char *opts; /* letters of the command options */
} commands[] = {
    {"stat", "j"},    {"put", "PDCT"}, {"get", ""},       {"match", "L"},
    {"exists", ""},   {"pin", ""},     {"unpin", ""},     {"delete", ""},
    {"prefetch", ""}, {"verify", ""},  {"locate", "EXR"},
};

static const struct option opts[] = {
    {"addr", required_argument, NULL, 'a'},
    {"port", required_argument, NULL, 'p'},
    {"token", required_argument, NULL, 't'},
    {"ns", required_argument, NULL, 'n'},
    {"hex", no_argument, NULL, 'x'},
    {"timeout", required_argument, NULL, 'O'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"json", no_argument, NULL, 'j'},
    {"parent", required_argument, NULL, 'P'},
    {"durable", no_argument, NULL, 'D'},
    {"class", required_argument, NULL, 'C'},
    {"ttl-ms", required_argument, NULL, 'T'},
    {"lease", no_argument, NULL, 'L'},
    {"etcd", required_argument, NULL, 'E'},
    {"prefix", required_argument, NULL, 'X'},
    {"repeat", required_argument, NULL, 'R'},
    {NULL, 0, NULL, 0},
};

static const char *long_name(int val)
{
    for (const struct option *o = opts; o->name; o++)
        if (o->val == val)
            return o->name;
    return "?";
}

int main(int argc, char **argv)
{
    char addr[KVS_RESOLVE_ADDR_MAX], cmd_letters[16] = "";
    const char *addr_arg = NULL, *port_arg = NULL;
    const struct command *cmd = NULL;
    kvs_client_params_t p = {0};
    kvs_client_t *c;
    uint64_t x;
    int o, ret;

    p.token = getenv("KVSTASH_TOKEN");
    if (getenv("KVSTASH_NS") && *getenv("KVSTASH_NS"))
        ns_name = getenv("KVSTASH_NS");
    p.timeout_ms = 30000;
    opterr = 0; /* the messages below name the option */
    while ((o = getopt_long(argc, argv, ":a:p:t:n:xhV", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            addr_arg = optarg;
            break;
        case 'p':
            port_arg = optarg;
            break;
        case 't':
            p.token = optarg;
            break;
        case 'n':
            ns_name = optarg;
            break;
        case 'x':
            cli.hex_keys = true;
            break;
        case 'O':
            if (kvs_cliarg_u32("kvstash", "--timeout", optarg, 1, 86400000,
                               &p.timeout_ms))
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            kvs_cliarg_version("kvstash", stdout);
            return 0;
        case 'j':
            cli.json = true;
            break;
        case 'L':
            cli.lease = true;
            break;
        case 'P':
            cli.parent = optarg;
            break;
        case 'D':
            cli.put.flags |= KVS_CLIENT_PUT_DURABLE;
            break;
        case 'C':
            if (!strcmp(optarg, "scratch"))
                cli.put.cls = KVS_CLASS_SCRATCH;
            else if (!strcmp(optarg, "user"))
                cli.put.cls = KVS_CLASS_USER;
            else if (!strcmp(optarg, "pinned"))
                cli.put.cls = KVS_CLASS_PINNED;
            else
                return die_usage("--class %s: want scratch, user or pinned",
                                 optarg);
            break;
        case 'T':
            if (kvs_cliarg_u64("kvstash", "--ttl-ms", optarg, 0, UINT64_MAX,
                               &x))
                return 2;
            cli.put.ttl_ms = x;
            break;
        case 'E':
            cli.etcd = optarg;
            break;
        case 'X':
            cli.prefix = optarg;
            break;
        case 'R':
            if (kvs_cliarg_u32("kvstash", "--repeat", optarg, 1, 10000000,
                               &cli.repeat))
                return 2;
            break;
        case ':':
            return die_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return die_usage("unknown option '%s'", argv[optind - 1]);
        }
        if (strchr("jLPDCTEXR", o)) { /* a command's own: checked below */
            size_t l = strlen(cmd_letters);

            if (!strchr(cmd_letters, o) && l + 1 < sizeof(cmd_letters)) {
                cmd_letters[l] = (char)o;
                cmd_letters[l + 1] = '\0';
            }
        }
    }
    if (optind >= argc)
        return die_usage("%s", "no command given");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[optind], commands[i].name))
            cmd = &commands[i];
    if (!cmd)
        return die_usage("unknown command '%s' (commands: stat, put, get, "
                         "match, exists, pin, unpin, delete, prefetch, "
                         "verify, locate)",
                         argv[optind]);
    for (const char *l = cmd_letters; *l; l++) {
        if (!strchr(cmd->opts, *l)) {
            fprintf(stderr,
                    "kvstash: --%s is not an option of %s (kvstash "
                    "--help for usage)\n",
                    long_name(*l), cmd->name);
            return 2;
        }
    }
    if (!strcmp(cmd->name, "locate"))
        return locate(argc - optind - 1, argv + optind + 1);
    if (kvs_cliarg_daemon("kvstash", addr_arg, port_arg, addr, sizeof(addr),
                          &p.port))
        return 2;
    p.addr = addr;
    p.ns = ns_name;
    p.field_mask = KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT |
                   KVS_CLIENT_PARAM_NS | KVS_CLIENT_PARAM_TIMEOUT_MS;
    if (p.token)
        p.field_mask |= KVS_CLIENT_PARAM_TOKEN;
    ret = kvs_client_create(&p, &c);
    if (ret) {
        kvs_cliarg_connect_failed("kvstash", addr, p.port, ret);
        return 2;
    }
    argc -= optind;
    argv += optind;
    if (!strcmp(cmd->name, "stat"))
        ret = cmd_stat(c, argc, argv);
    else if (!strcmp(cmd->name, "put"))
        ret = cmd_put(c, argc, argv);
    else if (!strcmp(cmd->name, "get"))
        ret = cmd_get(c, argc, argv);
    else if (!strcmp(cmd->name, "verify"))
        ret = cmd_verify(c, argc, argv);
    else
        ret = cmd_keys(c, cmd->name, argc, argv);
    kvs_client_destroy(c);
    return ret;
}
