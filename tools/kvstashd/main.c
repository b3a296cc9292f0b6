/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd: the sidecar daemon. Reads the configuration (defaults, then an
 * INI file, then flags), prints it, opens the store, serves the binary
 * protocol over UCX until SIGTERM or SIGINT, then shuts down in order:
 * connections closed (their leases and pins dropped), everything durable
 * flushed (kvs_store_flush), the store closed (kvs_store_close).
 *
 * Start-up failures are fatal with a message; nothing after start-up exits
 * the process except a signal. Before anything large is allocated (the DRAM
 * arena is populated at open) the daemon takes an exclusive lock on
 * DIR/kvstashd.lock, so that a second daemon on the same data directory is
 * told so plainly, and checks that the port is free.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cliarg.h"
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
    fprintf(
        out,
        "usage: kvstashd [options]\n"
        "  -c, --config FILE      INI configuration file\n"
        "  -l, --listen HOST      address or host name to listen on "
        "(127.0.0.1)\n"
        "  -p, --port N           port (7370; 0: any free port)\n"
        "  -d, --dir DIR          data directory (./var/kvstash)\n"
        "      --dram-mib N       DRAM arena size\n"
        "      --nvme-mib N       NVMe data file size (0: DRAM only)\n"
        "      --port-file FILE   write the port to FILE once listening\n"
        "      --log-level L      error|warn|info|debug|trace\n"
        "  -s, --set S.K=V        any setting, e.g. --set store.region_mib=4\n"
        "      --print-config     check and print the effective configuration, "
        "exit\n"
        "  -V, --version          print the version, exit\n"
        "  -h, --help\n"
        "Settings are applied in order: defaults, the file, then flags.\n"
        "Exit status: 0 after a clean stop, 1 a failure while running or at\n"
        "start, 2 a configuration refused. See docs/operations.md.\n");
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

/*
 * Takes DIR/kvstashd.lock (flock, exclusive, not waiting) and writes our
 * pid into it. The lock lives as long as the returned descriptor, which is
 * never closed before exit: the kernel drops it however the process ends,
 * so a crashed daemon leaves nothing to clean up. Returns the descriptor
 * or a negative errno; -EWOULDBLOCK when another process holds it.
 */
static int lock_data_dir(const char *dir, char *holder, size_t cap)
{
    char path[4096], buf[32];
    ssize_t n;
    int fd;

    if (snprintf(path, sizeof(path), "%s/kvstashd.lock", dir) >=
        (int)sizeof(path))
        return -ENAMETOOLONG;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = -errno;

        n = pread(fd, holder, cap - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return err;
    }
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        kvs_warn("cannot write our pid into %s: %m", path);
    return fd;
}

/*
 * Binds a TCP socket to the listen address and port and lets it go: a
 * port that another process listens on is found now, before the arena is
 * allocated, instead of after. UCX binds the same way (SO_REUSEADDR), so a
 * port this check passes is one UCX can take, barring a race.
 */
static int check_port_free(const char *addr, uint16_t port)
{
    struct addrinfo hints, *ai;
    char service[8];
    int fd, one = 1, ret = 0;

    if (port == 0)
        return 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", port);
    if (getaddrinfo(addr, service, &hints, &ai) != 0)
        return 0; /* the transport will say */
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            ret = -errno;
        close(fd);
    }
    freeaddrinfo(ai);
    return ret;
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
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c, ret = 0;

    for (int pass = 0; pass < 2; pass++) {
        optind = 1;
        while ((c = getopt_long(argc, argv, "c:l:p:d:s:hV", opts, NULL)) !=
               -1) {
            if (pass == 0) {
                if (c == 'c' && (ret = kvs_config_load(cfg, optarg)))
                    return ret;
                if (c == 'h') {
                    usage(stdout);
                    exit(0);
                }
                if (c == 'V') {
                    kvs_cliarg_version("kvstashd", stdout);
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
                    fprintf(stderr,
                            "kvstashd: --set wants section.key=value\n");
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
    kvs_events_t *events = NULL;
    kvs_cluster_t *cluster = NULL;
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

    ret = check_port_free(cfg.listen_num, cfg.server.port);
    if (ret) {
        kvs_error("cannot listen on %s port %u: %s%s", cfg.listen,
                  cfg.server.port, kvs_strerror(ret),
                  ret == -EADDRINUSE
                      ? " (another kvstashd? give this one "
                        "another port with -p N, or -p 0 for any free port)"
                      : "");
        goto out;
    }
    ret = kvs_fs_mkdir_p(cfg.dir);
    if (ret) {
        kvs_error("cannot create data directory %s: %s", cfg.dir,
                  kvs_strerror(ret));
        goto out;
    }
    {
        char holder[32] = "";
        int fd = lock_data_dir(cfg.dir, holder, sizeof(holder));

        if (fd == -EWOULDBLOCK) {
            kvs_error("another kvstashd%s%s is using %s (lock held on "
                      "%s/kvstashd.lock): stop it first, or give this one "
                      "its own data directory with -d DIR",
                      *holder ? ", pid " : "", holder, cfg.dir, cfg.dir);
            ret = -EWOULDBLOCK;
            goto out;
        }
        if (fd < 0) {
            kvs_error("cannot lock %s/kvstashd.lock: %s", cfg.dir,
                      kvs_strerror(fd));
            ret = fd;
            goto out;
        }
        /* fd stays open until exit: it holds the lock. */
    }
    /* Events first: the store reports what it finds on disk while it
     * opens, and consumers learn it after the AllBlocksCleared. */
    if (cfg.events.endpoint && *cfg.events.endpoint) {
        ret = kvs_events_create(&cfg.events, &events);
        if (ret) {
            kvs_error("cannot publish events on %s: %s (events.endpoint)",
                      cfg.events.endpoint, kvs_strerror(ret));
            goto out;
        }
        cfg.store.event_cb = kvs_events_store_cb;
        cfg.store.event_arg = events;
    }
    ret = kvs_store_open(&cfg.store, &store);
    if (ret) {
        kvs_error("cannot open the store in %s: %s", cfg.dir,
                  kvs_strerror(ret));
        goto out;
    }
    if (cfg.cluster.etcd) {
        ret = kvs_cluster_create(&cfg.cluster, &cluster);
        if (ret) {
            kvs_error("cannot start membership: %s", kvs_strerror(ret));
            goto err_close_store;
        }
        cfg.server.peer_resolve = kvs_cluster_resolve;
        cfg.server.peer_resolve_arg = cluster;
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
    ret = kvs_cluster_announce(cluster, cfg.listen_num, kvs_server_port(srv));
    if (ret) {
        kvs_error("cannot start membership: %s", kvs_strerror(ret));
        goto err_destroy_server;
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
    kvs_cluster_destroy(cluster);
    kvs_store_close(store);
out:
    kvs_events_destroy(events);
    if (ret == 0)
        kvs_info("stopped cleanly");
    kvs_config_fini(&cfg);
    return ret ? 1 : 0;
}
