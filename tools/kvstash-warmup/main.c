/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup entry point: options shared by every command, then the
 * command (import, promote, export). See docs/warmup.md. The import rate
 * against raw puts is measured by kvstash-bench warmup.
 *
 * Exit status: 0 everything was done; 1 some manifest lines or blocks
 * failed (each one was reported with its file and line); 2 bad usage or no
 * daemon.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cliarg.h"
#include "tools/kvstash-warmup/blockkey.h"
#include "tools/kvstash-warmup/export.h"
#include "tools/kvstash-warmup/import.h"
#include "tools/kvstash-warmup/manifest.h"
#include "tools/kvstash-warmup/promote.h"
#include "tools/kvstash-warmup/warmup.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: kvstash-warmup [options] COMMAND [args]\n"
        "commands:\n"
        "  import MANIFEST       load the blocks a JSONL manifest describes;\n"
        "                        blocks already present are skipped\n"
        "  promote [--group G]... [--keys FILE] [--budget-mib N]\n"
        "                        bring blocks from NVMe into DRAM (-n NS)\n"
        "  export (--group G | --all) --out DIR\n"
        "                        write blocks to DIR/manifest.jsonl + files\n"
        "options:\n"
        "  -a, --addr HOST       daemon address or host name ($KVSTASH_ADDR,\n"
        "                        127.0.0.1)\n"
        "  -p, --port N          daemon port ($KVSTASH_PORT, %u)\n"
        "  -t, --token T         auth token ($KVSTASH_TOKEN)\n"
        "  -n, --ns NAME         namespace of promote/export ($KVSTASH_NS)\n"
        "  -j, --jobs N          put batches in flight (8)\n"
        "      --batch-kib N     payload of one put batch, at most (4096)\n"
        "      --hash NAME       digest of computed block keys (sha256)\n"
        "      --root HEX        parent bytes of the first block (none)\n"
        "      --durable         puts acknowledged once on disk\n"
        "      --no-dram         puts go straight to NVMe\n"
        "      --progress MODE   auto|bar|lines|none (auto)\n"
        "      --interval-ms N   between progress lines (2000)\n"
        "      --timeout MS      per synchronous call (60000)\n"
        "  -V, --version         print the version\n"
        "Options may come before or after the command.\n",
        KVS_DEFAULT_PORT);
}

static int cmd_import(kvs_warmup_opts_t *o, int argc, char **argv)
{
    kvs_import_result_t r;

    if (argc != 1) {
        usage(stderr);
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (kvs_import_run(o, argv[0], &r))
        return KVS_WARMUP_EXIT_USAGE;
    return (r.failed || r.bad_lines) ? KVS_WARMUP_EXIT_FAILED
                                     : KVS_WARMUP_EXIT_OK;
}

enum {
    OPT_HASH = 256,
    OPT_ROOT,
    OPT_DURABLE,
    OPT_NO_DRAM,
    OPT_PROGRESS,
    OPT_INTERVAL,
    OPT_TIMEOUT,
    OPT_KILL_AFTER,
    OPT_BATCH,
};

#define GLOBAL_SHORT "+a:p:t:n:j:hV"

/* 1 if arg is one of the options shared by every command, 2 if its value
 * is the next argument, 0 if it is not one of them. */
static int global_opt(const struct option *opts, const char *arg)
{
    if (arg[0] != '-' || !arg[1] || !strcmp(arg, "--"))
        return 0;
    if (arg[1] == '-') {
        size_t n = strcspn(arg + 2, "=");

        for (const struct option *o = opts; o->name; o++)
            if (strlen(o->name) == n && !strncmp(o->name, arg + 2, n))
                return o->has_arg == required_argument && !arg[2 + n] ? 2 : 1;
        return 0;
    }
    {
        /* Skip the leading '+' (stop at the first non-option). */
        const char *l = strchr(&GLOBAL_SHORT[1], arg[1]);

        if (!l || *l == ':')
            return 0;
        return l[1] == ':' && !arg[2] ? 2 : 1;
    }
}

/*
 * Moves the shared options that follow the command in front of it, so that
 * "kvstash-warmup import m.jsonl -p 7400" means what it says: each command
 * parses only its own options. The short and long names of the shared
 * options and of every command's options are distinct.
 */
static void hoist_global_opts(const struct option *opts, int argc, char **argv)
{
    int cmd = 1, out;

    while (cmd < argc && global_opt(opts, argv[cmd]))
        cmd += global_opt(opts, argv[cmd]);
    if (cmd >= argc || !strcmp(argv[cmd], "--"))
        return;
    out = cmd;
    for (int i = cmd + 1; i < argc && strcmp(argv[i], "--"); i++) {
        int n = global_opt(opts, argv[i]);

        if (n == 0 || i + n > argc)
            continue;
        /* Rotate argv[out..i+n-1] so the n option words come first. */
        for (int k = 0; k < n; k++) {
            char *w = argv[i + k];

            memmove(&argv[out + 1], &argv[out],
                    (size_t)(i + k - out) * sizeof(*argv));
            argv[out++] = w;
        }
        i += n - 1;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},
        {"ns", required_argument, NULL, 'n'},
        {"jobs", required_argument, NULL, 'j'},
        {"batch-kib", required_argument, NULL, OPT_BATCH},
        {"hash", required_argument, NULL, OPT_HASH},
        {"root", required_argument, NULL, OPT_ROOT},
        {"durable", no_argument, NULL, OPT_DURABLE},
        {"no-dram", no_argument, NULL, OPT_NO_DRAM},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"interval-ms", required_argument, NULL, OPT_INTERVAL},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        /* Test hook: SIGKILL itself after N blocks were acknowledged. */
        {"kill-after", required_argument, NULL, OPT_KILL_AFTER},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static char addr[KVS_RESOLVE_ADDR_MAX];
    const char *addr_arg = NULL, *port_arg = NULL;
    const char *T = "kvstash-warmup";
    uint32_t kib;
    kvs_warmup_opts_t o;
    const char *ns = getenv("KVSTASH_NS");
    kvs_blockkey_params_t bp = {0};
    kvs_manifest_key_t root;
    int c;

    kvs_warmup_opts_default(&o);
    hoist_global_opts(opts, argc, argv);
    while ((c = getopt_long(argc, argv, GLOBAL_SHORT, opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            addr_arg = optarg;
            break;
        case 'p':
            port_arg = optarg;
            break;
        case 't':
            o.token = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'j':
            if (kvs_cliarg_u32(T, "-j", optarg, 1, 256, &o.jobs))
                return KVS_WARMUP_EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (kvs_cliarg_u32(T, "--batch-kib", optarg, 1, 1u << 20, &kib))
                return KVS_WARMUP_EXIT_USAGE;
            o.batch_bytes = kib << 10;
            break;
        case OPT_HASH:
            o.hash = optarg;
            break;
        case OPT_ROOT:
            if (kvs_manifest_hex_key(optarg, &root)) {
                fprintf(stderr, "kvstash-warmup: --root: 1..%u bytes of hex\n",
                        KVS_KEY_MAX);
                return KVS_WARMUP_EXIT_USAGE;
            }
            memcpy(o.root, root.b, root.len);
            o.root_len = root.len;
            break;
        case OPT_DURABLE:
            o.put_flags |= KVS_CLIENT_PUT_DURABLE;
            break;
        case OPT_NO_DRAM:
            o.put_flags |= KVS_CLIENT_PUT_NO_DRAM;
            break;
        case OPT_PROGRESS:
            if (!strcmp(optarg, "auto"))
                o.tty = -1;
            else if (!strcmp(optarg, "bar"))
                o.tty = 1;
            else if (!strcmp(optarg, "lines"))
                o.tty = 0;
            else if (!strcmp(optarg, "none"))
                o.quiet = true;
            else {
                usage(stderr);
                return KVS_WARMUP_EXIT_USAGE;
            }
            break;
        case OPT_INTERVAL:
            if (kvs_cliarg_u32(T, "--interval-ms", optarg, 1, 86400000,
                               &o.interval_ms))
                return KVS_WARMUP_EXIT_USAGE;
            break;
        case OPT_TIMEOUT:
            if (kvs_cliarg_u32(T, "--timeout", optarg, 1, 86400000,
                               &o.timeout_ms))
                return KVS_WARMUP_EXIT_USAGE;
            break;
        case OPT_KILL_AFTER:
            o.kill_after = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            kvs_cliarg_version(T, stdout);
            return 0;
        default:
            usage(stderr);
            return KVS_WARMUP_EXIT_USAGE;
        }
    }
    if (kvs_cliarg_daemon(T, addr_arg, port_arg, addr, sizeof(addr), &o.port))
        return KVS_WARMUP_EXIT_USAGE;
    o.addr = addr;
    bp.hash = o.hash;
    if (kvs_blockkey_size(&bp) < 0) {
        fprintf(stderr,
                "kvstash-warmup: --hash %s: not a digest of 1..%u "
                "bytes that OpenSSL knows\n",
                o.hash, KVS_KEY_MAX);
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (o.jobs == 0 || o.jobs > 256 || o.batch_bytes == 0) {
        fprintf(stderr, "kvstash-warmup: --jobs is 1..256, --batch-kib > 0\n");
        return KVS_WARMUP_EXIT_USAGE;
    }
    if (optind >= argc) {
        usage(stderr);
        return KVS_WARMUP_EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    if (!strcmp(argv[0], "import"))
        return cmd_import(&o, argc - 1, argv + 1);
    if (!strcmp(argv[0], "promote"))
        return kvs_promote_main(&o, ns, argc, argv);
    if (!strcmp(argv[0], "export"))
        return kvs_export_main(&o, ns, argc, argv);
    fprintf(stderr, "kvstash-warmup: unknown command '%s'\n", argv[0]);
    usage(stderr);
    return KVS_WARMUP_EXIT_USAGE;
}
