/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd: the sidecar daemon. Reads the configuration (defaults, then an
 * INI file, then flags), prints it, opens the store, serves the binary
 * protocol over UCX until SIGTERM or SIGINT, then shuts down in order:
 * connections closed (their leases and pins dropped), everything durable
 * flushed (kvs_store_flush), the store closed (kvs_store_close).
 *
 * Start-up failures are fatal with a message; nothing after start-up exits
 * the process except a signal.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "kvstore/store.h"
#include "tools/kvstashd/config.h"
#include "transport/server/server.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: kvstashd [options]\n"
        "  -c, --config FILE      INI configuration file\n"
        "  -l, --listen ADDR      numeric IP to listen on (127.0.0.1)\n"
        "  -p, --port N           port (7370; 0: any free port)\n"
        "  -d, --dir DIR          data directory (./var/kvstash)\n"
        "      --dram-mib N       DRAM arena size\n"
        "      --nvme-mib N       NVMe data file size (0: DRAM only)\n"
        "      --port-file FILE   write the port to FILE once listening\n"
        "      --log-level L      error|warn|info|debug|trace\n"
        "  -s, --set S.K=V        any setting, e.g. --set store.region_mib=4\n"
        "      --print-config     print the effective configuration, exit\n"
        "  -h, --help\n"
        "Settings are applied in order: defaults, the file, then flags.\n");
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    FILE *f;

    /* Written whole under another name, then renamed, so a reader never
     * sees a partial number. */
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -errno;
    return 0;
}

/* Flags: "--set section.key=value" and named shortcuts. Two passes: the
 * config file first (wherever -c appears), then the rest in order. */
static int parse_args(kvs_config_t *cfg, int argc, char **argv, bool *print_out)
{
    enum { O_DRAM = 256, O_NVME, O_PORT_FILE, O_LOG, O_PRINT };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"dir", required_argument, NULL, 'd'},
        {"set", required_argument, NULL, 's'},
        {"dram-mib", required_argument, NULL, O_DRAM},
        {"nvme-mib", required_argument, NULL, O_NVME},
        {"port-file", required_argument, NULL, O_PORT_FILE},
        {"log-level", required_argument, NULL, O_LOG},
        {"print-config", no_argument, NULL, O_PRINT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, ret = 0;

    for (int pass = 0; pass < 2; pass++) {
        optind = 1;
        while ((c = getopt_long(argc, argv, "c:l:p:d:s:h", opts, NULL)) != -1) {
            if (pass == 0) {
                if (c == 'c' && (ret = kvs_config_load(cfg, optarg)))
                    return ret;
                if (c == 'h') {
                    usage(stdout);
                    exit(0);
                }
                if (c == '?') {
                    usage(stderr);
                    return KVS_ECONFIG;
                }
                continue;
            }
            switch (c) {
            case 'l':
                ret = kvs_config_set(cfg, "daemon", "listen", optarg);
                break;
            case 'p':
                ret = kvs_config_set(cfg, "daemon", "port", optarg);
                break;
            case 'd':
                ret = kvs_config_set(cfg, "store", "dir", optarg);
                break;
            case O_DRAM:
                ret = kvs_config_set(cfg, "store", "dram_mib", optarg);
                break;
            case O_NVME:
                ret = kvs_config_set(cfg, "store", "nvme_mib", optarg);
                break;
            case O_PORT_FILE:
                ret = kvs_config_set(cfg, "daemon", "port_file", optarg);
                break;
            case O_LOG:
                ret = kvs_config_set(cfg, "daemon", "log_level", optarg);
                break;
            case O_PRINT:
                *print_out = true;
                break;
            case 's': {
                char buf[512], *dot, *eq;

                if (strlen(optarg) >= sizeof(buf)) {
                    ret = KVS_ECONFIG;
                    break;
                }
                strcpy(buf, optarg);
                eq = strchr(buf, '=');
                dot = eq ? memrchr(buf, '.', (size_t)(eq - buf)) : NULL;
                if (!eq || !dot) {
                    fprintf(stderr, "kvstashd: --set wants section.key=value\n");
                    ret = KVS_ECONFIG;
                    break;
                }
                *dot = *eq = '\0';
                ret = kvs_config_set(cfg, buf, dot + 1, eq + 1);
                break;
            }
            default:
                break;
            }
            if (ret)
                return ret;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kvstashd: unexpected argument '%s'\n", argv[optind]);
        return KVS_ECONFIG;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    kvs_config_t cfg;
    kvs_store_t *store = NULL;
    kvs_server_t *srv = NULL;
    bool print_only = false;
    int ret;

    kvs_config_init(&cfg);
    ret = parse_args(&cfg, argc, argv, &print_only);
    if (ret == 0)
        ret = kvs_config_finish(&cfg);
    if (ret) {
        kvs_config_fini(&cfg);
        return 2;
    }
    kvs_log_set_level(kvs_log_parse_level(cfg.log_level));
    kvs_config_print(&cfg, stdout);
    if (print_only) {
        kvs_config_fini(&cfg);
        return 0;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the event loop wakes */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    ret = kvs_fs_mkdir_p(cfg.dir);
    if (ret) {
        kvs_error("cannot create data directory %s: %s", cfg.dir,
                  kvs_strerror(ret));
        goto out;
    }
    ret = kvs_store_open(&cfg.store, &store);
    if (ret) {
        kvs_error("cannot open the store in %s: %s", cfg.dir,
                  kvs_strerror(ret));
        goto out;
    }
    ret = kvs_server_create(&cfg.server, store, &srv);
    if (ret) {
        kvs_error("cannot start the transport: %s", kvs_strerror(ret));
        goto err_close_store;
    }
    if (cfg.port_file && *cfg.port_file) {
        ret = write_port_file(cfg.port_file, kvs_server_port(srv));
        if (ret) {
            kvs_error("cannot write %s: %s", cfg.port_file, kvs_strerror(ret));
            goto err_destroy_server;
        }
    }
    printf("kvstashd: serving on %s port %u, data in %s\n", cfg.listen,
           kvs_server_port(srv), cfg.dir);
    fflush(stdout);

    ret = kvs_server_run(srv, &stop_flag);
    kvs_info("shutting down%s", ret ? " after an error" : "");

err_destroy_server:
    kvs_server_destroy(srv);
    {
        int fret = kvs_store_flush(store);

        if (fret == KVS_EFULL) {
            /* A cache whose DRAM holds more than its disk tier: what did
             * not fit was never promised to survive (not durable). */
            kvs_warn("flush at shutdown: not every block in DRAM fits on "
                     "the disk tier; those are not kept");
        } else if (fret) {
            kvs_error("flush at shutdown failed: %s", kvs_strerror(fret));
            if (!ret)
                ret = fret;
        }
    }
err_close_store:
    kvs_store_close(store);
out:
    if (ret == 0)
        kvs_info("stopped cleanly");
    kvs_config_fini(&cfg);
    return ret ? 1 : 0;
}
