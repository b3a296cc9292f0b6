/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd configuration: one table of settings, each with its section,
 * key, type and location in kvs_config_t, so that the INI file, --set
 * flags and the printed configuration can never disagree. Tenants are the
 * only sections with a variable name ("[tenant.NAME]").
 *
 * Sizes are given in MiB in the file (dram_mib = 512) and kept in bytes.
 *
 * The file is read whole and cleaned line by line before inih sees it:
 * comments after a value ("port = 7370  # any text", '#' or ';' after
 * white space) are cut, as is leading white space (which inih would take
 * as a continuation of the previous value), and a section header without
 * its ']' or a line without '=' is refused with its line number. Line
 * numbers stay those of the file. inih then stops at the first setting
 * refused, so one mistake gives one message.
 *
 * kvs_config_finish() is the one validation: --print-config and a start
 * both go through it, so what it accepts is what starts. It resolves host
 * names (listen, peer list) to numeric addresses, checks the DRAM arena
 * against the machine's memory, and runs the engine's and the transport's
 * own configuration checks.
 */
#include "tools/kvstashd/config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <grp.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/resolve.h"

enum ctype { T_STR, T_U16, T_U32, T_U64_MIB, T_U32_MIB, T_I32, T_BOOL };

typedef struct setting {
    const char *section;
    const char *key;
    enum ctype type;
    size_t off;
    const char *help;
} setting_t;

#define S(sec, k, t, field, h)                                                 \
    {                                                                          \
        sec, k, t, offsetof(kvs_config_t, field), h                            \
    }

static const setting_t settings[] = {
    S("daemon", "listen", T_STR, listen, "IP or host name to listen on"),
    S("daemon", "port", T_U16, server.port, "0: any free port"),
    S("daemon", "log_level", T_STR, log_level, "error|warn|info|debug|trace"),
    S("daemon", "port_file", T_STR, port_file, "write the port here"),
    S("daemon", "max_conns", T_U32, server.max_conns, ""),
    S("daemon", "max_prehello", T_U32, server.max_prehello,
      "of max_conns, before HELLO; 0: max_conns / 4"),
    S("daemon", "hello_timeout_ms", T_U32, server.hello_timeout_ms,
      "close a connection without HELLO after this"),
    S("daemon", "max_inflight", T_U32, server.max_inflight, "per connection"),
    S("daemon", "max_inflight_blocks", T_U32, server.max_inflight_blocks,
      "GET blocks not yet taken by the client, per connection"),
    S("daemon", "max_inflight_mib", T_U64_MIB, server.max_inflight_bytes,
      "their bytes, per connection"),
    S("daemon", "max_keys", T_U32, server.max_keys, "entries per frame"),
    S("daemon", "max_body", T_U32, server.max_body, "bytes per frame body"),
    S("daemon", "staging_slots", T_U32, server.staging_slots,
      "PUT payloads received at once"),
    S("daemon", "lease_default_ms", T_U32, server.lease_default_ms, ""),
    S("daemon", "lease_max_ms", T_U32, server.lease_max_ms, ""),
    S("daemon", "max_leases", T_U32, server.max_leases, "per connection"),
    S("daemon", "max_pins", T_U32, server.max_pins, "per connection"),
    S("daemon", "busy_poll_us", T_U32, server.busy_poll_us,
      "spin before sleeping"),
    S("daemon", "busy_poll_disk_us", T_U32, server.busy_poll_disk_us,
      "spin this long before sleeping while a client waits for a disk "
      "job"),
    S("daemon", "bulk_ep", T_BOOL, server.bulk_ep,
      "second endpoint for GET data"),
    S("daemon", "put_endpoints", T_U32, server.put_endpoints,
      "clients on this host that may write their own PUTs at once; "
      "default: half the online CPUs (at least 1), 0: none"),
    S("daemon", "shm_socket", T_STR, server.shm_socket,
      "Unix socket where clients on this host map the DRAM arena; unset: off"),
    S("daemon", "shm_group", T_STR, shm_group,
      "group allowed on shm_socket (mode 0660); unset: the daemon's user only "
      "(0600)"),
    S("daemon", "io_threads", T_U32, server.io_threads,
      "threads that read the disk for GET, MATCH, PREFETCH (1..16), per "
      "serving thread"),
    S("daemon", "threads", T_U32, server.threads,
      "serving threads, each a UCX worker (1..16); clients without streaming "
      "are spread over them"),
    S("daemon", "verify_mib_s", T_U32, server.verify_mib_s,
      "VERIFY reads at most this; 0: disk speed"),
    S("peer", "secret", T_STR, peer_secret,
      "shared secret of peer links; unset: no peer may connect"),
    S("peer", "list", T_STR, peers, "name=host:port,... peers to stream from"),
    S("peer", "timeout_ms", T_U32, server.peer_timeout_ms,
      "a silent peer link fails after this"),
    S("events", "endpoint", T_STR, ev_endpoint,
      "ZMQ PUB address for vLLM-format KV events (tcp://ip:port); unset: off"),
    S("events", "replay_endpoint", T_STR, ev_replay,
      "ZMQ ROUTER address that replays past batches; unset: none"),
    S("events", "topic", T_STR, ev_topic, "first frame of every message"),
    S("events", "queue_events", T_U32, events.queue_events,
      "tier changes queued for the publisher; more are dropped"),
    S("events", "buffer_steps", T_U32, events.buffer_steps,
      "batches kept for replay"),
    S("events", "block_size", T_U32, events.block_size,
      "tokens per block, as BlockStored reports it; 0: unknown"),
    S("cluster", "etcd", T_STR, cl_etcd,
      "etcd v3 JSON gateway URL (http://ip:2379); unset: no membership"),
    S("cluster", "prefix", T_STR, cl_prefix, "key prefix of the records"),
    S("cluster", "node", T_STR, cl_node, "this node's name (unique)"),
    S("cluster", "ttl_s", T_U32, cluster.ttl_s, "lease TTL, seconds"),
    S("metrics", "port", T_U16, server.metrics_port,
      "Prometheus /metrics over HTTP; 0: off"),
    S("metrics", "listen", T_STR, metrics_listen,
      "numeric IPv4 address of /metrics"),
    S("store", "dir", T_STR, dir, "data directory"),
    S("store", "dram_mib", T_U64_MIB, store.dram_bytes, "DRAM arena"),
    S("store", "nvme_mib", T_U64_MIB, store.nvme_bytes, "0: no NVMe tier"),
    S("store", "region_mib", T_U32_MIB, store.region_bytes, ""),
    S("store", "max_block_mib", T_U32_MIB, store.max_block_bytes, ""),
    S("store", "min_block_bytes", T_U32, store.min_block_bytes,
      "smaller puts are refused (KVS_ETOOSMALL); 0: none"),
    S("store", "max_blocks", T_U32, store.max_blocks, ""),
    S("store", "io_depth", T_U32, store.io_depth, ""),
    S("store", "dram_high_pct", T_U32, store.dram_high_pct, ""),
    S("store", "dram_low_pct", T_U32, store.dram_low_pct, ""),
    S("store", "pinned_max_pct", T_U32, store.pinned_max_pct, ""),
    S("store", "compress_level", T_I32, store.compress_level, "0: off"),
    S("store", "compress_min_saving_pct", T_U32, store.compress_min_saving_pct,
      ""),
    S("store", "full_wait_ms", T_U32, store.full_wait_ms, ""),
    S("store", "sync_index", T_BOOL, store.sync_index, ""),
};

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);

    if (!d) {
        /* Start-up only: a daemon that cannot copy its config cannot run. */
        fprintf(stderr, "kvstashd: out of memory\n");
        exit(1);
    }
    return d;
}

void kvs_config_init(kvs_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    kvs_server_config_default(&cfg->server);
    kvs_store_config_default(&cfg->store);
    cfg->listen = dup_or_die("127.0.0.1");
    cfg->dir = dup_or_die("./var/kvstash");
    cfg->log_level = dup_or_die("info");
    cfg->metrics_listen = dup_or_die("127.0.0.1");
    /* A laptop: half a GiB of DRAM, 2 GiB of disk. */
    cfg->store.dram_bytes = 512ull << 20;
    cfg->store.nvme_bytes = 2048ull << 20;
    cfg->server.max_body = 128u << 10;
    kvs_events_config_default(&cfg->events);
    kvs_cluster_config_default(&cfg->cluster);
    cfg->ev_topic = dup_or_die("");
    cfg->cl_prefix = dup_or_die("/kvstash/nodes/");
}

void kvs_config_fini(kvs_config_t *cfg)
{
    for (size_t i = 0; i < KVS_ARRAY_SIZE(settings); i++)
        if (settings[i].type == T_STR)
            free(*(char **)((char *)cfg + settings[i].off));
    for (size_t i = 0; i < cfg->ntenants; i++) {
        free(cfg->tenants[i].name);
        free(cfg->tenants[i].token);
        free(cfg->tenants[i].ns_list);
        for (size_t j = 0; j < cfg->tenants[i].nns; j++)
            free(cfg->tenants[i].ns[j]);
    }
    free(cfg->config_path);
    free(cfg->peers_num);
    memset(cfg, 0, sizeof(*cfg));
}

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long x;

    errno = 0;
    if (!*v || *v == '-')
        return -1;
    x = strtoull(v, &end, 0);
    if (errno || *end || x > max)
        return -1;
    *out = x;
    return 0;
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

static kvs_config_tenant_t *tenant_get(kvs_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    if (cfg->ntenants == KVS_CONFIG_TENANTS_MAX || !*name)
        return NULL;
    cfg->tenants[cfg->ntenants].name = dup_or_die(name);
    return &cfg->tenants[cfg->ntenants++];
}

static int set_tenant(kvs_config_t *cfg, const char *name, const char *key,
                      const char *value, char *err, size_t errcap)
{
    kvs_config_tenant_t *t = tenant_get(cfg, name);

    if (!t) {
        snprintf(err, errcap,
                 "[tenant.%s]: more than %d tenants, or an "
                 "empty name",
                 name, KVS_CONFIG_TENANTS_MAX);
        return KVS_ECONFIG;
    }
    if (strcmp(key, "token") == 0) {
        free(t->token);
        t->token = dup_or_die(value);
        return 0;
    }
    if (strcmp(key, "namespaces") == 0) {
        char *list = dup_or_die(value), *save = NULL;

        for (size_t j = 0; j < t->nns; j++)
            free(t->ns[j]);
        t->nns = 0;
        t->all_ns = false;
        free(t->ns_list);
        t->ns_list = dup_or_die(value);
        for (char *tok = strtok_r(list, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            tok = trim(tok);
            if (!*tok)
                continue;
            if (strcmp(tok, "*") == 0) {
                t->all_ns = true;
                continue;
            }
            if (t->nns == KVS_CONFIG_NS_MAX || strlen(tok) > KVS_NS_NAME_MAX) {
                snprintf(err, errcap,
                         "tenant.%s.namespaces: more than %d, "
                         "or one longer than %u bytes",
                         name, KVS_CONFIG_NS_MAX, KVS_NS_NAME_MAX);
                free(list);
                return KVS_ECONFIG;
            }
            t->ns[t->nns++] = dup_or_die(tok);
        }
        free(list);
        return 0;
    }
    if (strcmp(key, "operator") == 0 || strcmp(key, "shm") == 0) {
        bool *flag = key[0] == 'o' ? &t->is_operator : &t->shm;

        if (!strcasecmp(value, "true") || !strcmp(value, "1"))
            *flag = true;
        else if (!strcasecmp(value, "false") || !strcmp(value, "0"))
            *flag = false;
        else {
            snprintf(err, errcap,
                     "tenant.%s.%s: bad value '%s' (want "
                     "true or false)",
                     name, key, value);
            return KVS_ECONFIG;
        }
        return 0;
    }
    snprintf(err, errcap,
             "unknown setting 'tenant.%s.%s' (a tenant has "
             "token, namespaces, operator and shm)",
             name, key);
    return KVS_ECONFIG;
}

/* daemon.shm_socket and shm_group: the group resolved to its id, and the
 * arena put on a memfd, which only a shared arena needs (on anonymous
 * memory it gets transparent huge pages where shmem may not). */
static int shm_finish(kvs_config_t *cfg)
{
    char *end;

    cfg->server.shm_gid = -1;
    cfg->store.dram_shared = cfg->server.shm_socket != NULL;
    if (!cfg->shm_group || !*cfg->shm_group)
        return 0;
    if (!cfg->server.shm_socket) {
        fprintf(stderr, "kvstashd: daemon.shm_group is set but "
                        "daemon.shm_socket is not\n");
        return KVS_ECONFIG;
    }
    long v = strtol(cfg->shm_group, &end, 10);
    if (*end == '\0' && v >= 0 && v < INT32_MAX) {
        cfg->server.shm_gid = (int)v;
        return 0;
    }
    struct group *g = getgrnam(cfg->shm_group);
    if (!g) {
        fprintf(stderr,
                "kvstashd: daemon.shm_group: no group '%s' (give a group "
                "name or number)\n",
                cfg->shm_group);
        return KVS_ECONFIG;
    }
    cfg->server.shm_gid = (int)g->gr_gid;
    return 0;
}

/* What a bad value of type t should have looked like. */
static const char *type_want(enum ctype t)
{
    switch (t) {
    case T_BOOL:
        return "true or false";
    case T_I32:
        return "a whole number";
    case T_U16:
        return "a whole number 0..65535";
    case T_U32:
        return "a whole number 0..4294967295";
    case T_U32_MIB:
        return "a whole number of MiB, 0..4095";
    case T_U64_MIB:
        return "a whole number of MiB";
    case T_STR:
        break;
    }
    return "text";
}

/* An unknown section.key: says where the key lives if it exists
 * elsewhere, so "[store" (unclosed) or a key under the wrong section
 * points at the fix. */
static void unknown_setting(const char *section, const char *key, char *err,
                            size_t errcap)
{
    for (size_t i = 0; i < KVS_ARRAY_SIZE(settings); i++) {
        if (strcmp(settings[i].key, key) == 0) {
            snprintf(err, errcap,
                     "unknown setting '%s%s%s': %s belongs "
                     "in section [%s]",
                     section, *section ? "." : "", key, key,
                     settings[i].section);
            return;
        }
    }
    snprintf(err, errcap,
             "unknown setting '%s%s%s' (kvstashd "
             "--print-config lists every setting)",
             section, *section ? "." : "", key);
}

static int config_set(kvs_config_t *cfg, const char *section, const char *key,
                      const char *value, char *err, size_t errcap)
{
    if (strncmp(section, "tenant.", 7) == 0)
        return set_tenant(cfg, section + 7, key, value, err, errcap);
    for (size_t i = 0; i < KVS_ARRAY_SIZE(settings); i++) {
        const setting_t *s = &settings[i];
        void *p = (char *)cfg + s->off;
        uint64_t x;

        if (strcmp(s->section, section) || strcmp(s->key, key))
            continue;
        switch (s->type) {
        case T_STR:
            free(*(char **)p);
            *(char **)p = dup_or_die(value);
            return 0;
        case T_BOOL:
            if (!strcasecmp(value, "true") || !strcmp(value, "1") ||
                !strcasecmp(value, "yes") || !strcasecmp(value, "on"))
                *(bool *)p = true;
            else if (!strcasecmp(value, "false") || !strcmp(value, "0") ||
                     !strcasecmp(value, "no") || !strcasecmp(value, "off"))
                *(bool *)p = false;
            else
                break;
            return 0;
        case T_I32:
            if (*value == '-') {
                if (parse_u64(value + 1, (uint64_t)INT32_MAX + 1, &x))
                    break;
                *(int32_t *)p = (int32_t)(-(int64_t)x);
            } else {
                if (parse_u64(value, INT32_MAX, &x))
                    break;
                *(int32_t *)p = (int32_t)x;
            }
            return 0;
        case T_U16:
            if (parse_u64(value, UINT16_MAX, &x))
                break;
            *(uint16_t *)p = (uint16_t)x;
            return 0;
        case T_U32:
            if (parse_u64(value, UINT32_MAX, &x))
                break;
            *(uint32_t *)p = (uint32_t)x;
            return 0;
        case T_U32_MIB:
            if (parse_u64(value, 4095, &x))
                break;
            *(uint32_t *)p = (uint32_t)(x << 20);
            return 0;
        case T_U64_MIB:
            if (parse_u64(value, 1ull << 40, &x))
                break;
            *(uint64_t *)p = x << 20;
            return 0;
        }
        snprintf(err, errcap, "%s.%s: bad value '%s' (want %s)", section, key,
                 value, type_want(s->type));
        return KVS_ECONFIG;
    }
    unknown_setting(section, key, err, errcap);
    return KVS_ECONFIG;
}

int kvs_config_set(kvs_config_t *cfg, const char *section, const char *key,
                   const char *value)
{
    char err[512];
    int ret = config_set(cfg, section, key, value, err, sizeof(err));

    if (ret)
        fprintf(stderr, "kvstashd: %s\n", err);
    return ret;
}

/* State of one file's parse: the first refused setting's message. */
typedef struct load_ctx {
    kvs_config_t *cfg;
    bool failed;
    char err[512];
} load_ctx_t;

static int ini_cb(void *arg, const char *section, const char *key,
                  const char *value)
{
    load_ctx_t *lc = arg;

    if (lc->failed)
        return 1; /* one message per file; inih still reports the first */
    if (config_set(lc->cfg, section, key, value, lc->err, sizeof(lc->err))) {
        lc->failed = true;
        return 0;
    }
    return 1;
}

/* The longest line inih (Debian's build: INI_MAX_LINE 200, on the stack)
 * reads whole; a longer one would be split into two. */
#define LINE_MAX_LEN 199

/*
 * Cleans one line of the file in place (see the top of this file). Returns
 * 0, or KVS_ECONFIG with the problem in err.
 */
static int clean_line(char *line, char *err, size_t errcap)
{
    char *s = line, *e;
    size_t n;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '#' || *s == ';')
        *s = '\0';
    for (char *p = s; *p; p++) {
        if ((*p == '#' || *p == ';') && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    n = (size_t)(e - s);
    memmove(line, s, n + 1);
    if (n == 0)
        return 0;
    if (n > LINE_MAX_LEN) {
        snprintf(err, errcap, "line longer than %d characters", LINE_MAX_LEN);
        return KVS_ECONFIG;
    }
    if (line[0] == '[') {
        if (!strchr(line, ']')) {
            snprintf(err, errcap, "section header '%s' has no closing ']'",
                     line);
            return KVS_ECONFIG;
        }
        return 0;
    }
    if (!strchr(line, '=')) {
        snprintf(err, errcap, "'%s' is not a setting (want key = value)", line);
        return KVS_ECONFIG;
    }
    return 0;
}

/* Reads path whole (a configuration file is small). NUL-terminated; the
 * caller frees. */
static int read_whole(const char *path, char **text_out)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, len = 0, n;
    char *buf;

    if (!f)
        return -errno;
    buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *nb = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;

            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf || ferror(f)) {
        int ret = buf ? -EIO : -EFBIG;

        free(buf);
        fclose(f);
        return ret;
    }
    fclose(f);
    buf[len] = '\0';
    *text_out = buf;
    return 0;
}

int kvs_config_load(kvs_config_t *cfg, const char *path)
{
    load_ctx_t lc = {.cfg = cfg};
    char *text = NULL, *clean, *line, *next;
    size_t len = 0;
    int ret, lineno = 0;

    ret = read_whole(path, &text);
    if (ret) {
        fprintf(stderr, "kvstashd: cannot read config file %s: %s\n", path,
                ret == -EFBIG ? "larger than 16 MiB" : strerror(-ret));
        return KVS_ECONFIG;
    }
    /* The cleaned lines, one '\n' each: never longer than the file. */
    clean = malloc(strlen(text) + 2);
    if (!clean) {
        free(text);
        return -ENOMEM;
    }
    for (line = text; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        if (clean_line(line, lc.err, sizeof(lc.err))) {
            fprintf(stderr, "kvstashd: %s:%d: %s\n", path, lineno, lc.err);
            free(clean);
            free(text);
            return KVS_ECONFIG;
        }
        memcpy(clean + len, line, strlen(line));
        len += strlen(line);
        clean[len++] = '\n';
    }
    clean[len] = '\0';
    free(text);
    ret = ini_parse_string(clean, ini_cb, &lc);
    free(clean);
    if (ret != 0 || lc.failed) {
        fprintf(stderr, "kvstashd: %s:%d: %s\n", path, ret,
                lc.failed ? lc.err : "not understood");
        return KVS_ECONFIG;
    }
    free(cfg->config_path);
    cfg->config_path = dup_or_die(path);
    return 0;
}

/* Resolves every host of the peer list ("name=host:port,...") into
 * cfg->peers_num, the same list with numeric addresses. */
static int resolve_peers(kvs_config_t *cfg)
{
    size_t cap = cfg->peers ? strlen(cfg->peers) * 2 + 64 : 0;
    char *list, *save = NULL, *out;
    size_t len = 0;

    free(cfg->peers_num);
    cfg->peers_num = NULL;
    if (!cfg->peers || !*cfg->peers)
        return 0;
    list = dup_or_die(cfg->peers);
    out = calloc(1, cap + KVS_RESOLVE_ADDR_MAX * 64);
    if (!out) {
        free(list);
        return -ENOMEM;
    }
    cap += KVS_RESOLVE_ADDR_MAX * 64;
    for (char *tok = strtok_r(list, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        char num[KVS_RESOLVE_ADDR_MAX], why[256], *eq = strchr(tok, '=');
        uint16_t port;
        int n;

        if (!eq || eq == tok) {
            fprintf(stderr,
                    "kvstashd: peer.list: '%s' is not "
                    "name=host:port\n",
                    tok);
            goto err_free;
        }
        *eq = '\0';
        if (kvs_resolve_hostport(eq + 1, num, sizeof(num), &port, why,
                                 sizeof(why))) {
            fprintf(stderr, "kvstashd: peer.list: peer %s at '%s': %s\n", tok,
                    eq + 1, why);
            goto err_free;
        }
        n = snprintf(out + len, cap - len, "%s%s=%s:%u", len ? "," : "", tok,
                     num, port);
        if (n < 0 || (size_t)n >= cap - len) {
            fprintf(stderr, "kvstashd: peer.list: too many peers\n");
            goto err_free;
        }
        len += (size_t)n;
    }
    free(list);
    cfg->peers_num = out;
    return 0;

err_free:
    free(list);
    free(out);
    return KVS_ECONFIG;
}

/* The DRAM arena and the staging slots are allocated and populated at
 * start: more than the machine has cannot work. */
static int check_memory(const kvs_config_t *cfg)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t phys, need;

    if (pages <= 0 || psz <= 0)
        return 0; /* unknown: the allocation will tell */
    phys = (uint64_t)pages * (uint64_t)psz;
    need = cfg->store.dram_bytes +
           (uint64_t)cfg->server.staging_slots * cfg->store.max_block_bytes;
    if (need <= phys)
        return 0;
    fprintf(stderr,
            "kvstashd: store.dram_mib = %" PRIu64 " (plus %" PRIu32
            " staging slots of max_block_mib = %" PRIu32 ") needs %" PRIu64
            " MiB, more than this machine's %" PRIu64 " MiB of memory: "
            "lower store.dram_mib\n",
            cfg->store.dram_bytes >> 20, cfg->server.staging_slots,
            cfg->store.max_block_bytes >> 20, need >> 20, phys >> 20);
    return KVS_ECONFIG;
}

int kvs_config_finish(kvs_config_t *cfg)
{
    char why[256];
    int ret;

    if (kvs_log_parse_level(cfg->log_level) < 0) {
        fprintf(stderr,
                "kvstashd: daemon.log_level: unknown level '%s' "
                "(want error|warn|info|debug|trace)\n",
                cfg->log_level);
        return KVS_ECONFIG;
    }
    if (kvs_resolve_host(cfg->listen, cfg->listen_num, sizeof(cfg->listen_num),
                         why, sizeof(why))) {
        fprintf(stderr,
                "kvstashd: daemon.listen = %s: cannot resolve the "
                "host name: %s (give a numeric address, e.g. 127.0.0.1)\n",
                cfg->listen, why);
        return KVS_ECONFIG;
    }
    ret = resolve_peers(cfg);
    if (ret)
        return ret;
    cfg->server.listen_addr = cfg->listen_num;
    cfg->server.peer_secret = cfg->peer_secret;
    cfg->server.metrics_addr = cfg->metrics_listen;
    ret = shm_finish(cfg);
    if (ret)
        return ret;
    cfg->server.peers = cfg->peers_num;
    cfg->store.dir = cfg->dir;
    ret = kvs_config_cluster_finish(cfg);
    if (ret)
        return ret;
    /* A PUT frame carries at most one block's worth of payload, so the
     * largest block must fit one staging slot. */
    cfg->server.max_payload = cfg->store.max_block_bytes;
    for (size_t i = 0; i < cfg->ntenants; i++) {
        kvs_config_tenant_t *t = &cfg->tenants[i];
        kvs_tenant_t *st = &cfg->server_tenants[i];

        if (!t->token || !*t->token) {
            fprintf(stderr, "kvstashd: tenant %s has no token\n", t->name);
            return KVS_ECONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->tenants[j].token, t->token) == 0) {
                fprintf(stderr, "kvstashd: tenants %s and %s share a token\n",
                        cfg->tenants[j].name, t->name);
                return KVS_ECONFIG;
            }
        }
        st->name = t->name;
        st->token = t->token;
        st->namespaces = (const char *const *)t->ns;
        st->nnamespaces = t->nns;
        st->all_ns = t->all_ns;
        st->is_operator = t->is_operator;
        st->shm = t->shm;
    }
    cfg->server.tenants = cfg->ntenants ? cfg->server_tenants : NULL;
    cfg->server.ntenants = cfg->ntenants;
    /* The engine's and the transport's own checks, which they repeat at
     * open: a configuration they would refuse is refused here already. */
    if (kvs_store_config_check(&cfg->store) ||
        kvs_server_config_check(&cfg->server))
        return KVS_ECONFIG;
    return check_memory(cfg);
}

void kvs_config_print(const kvs_config_t *cfg, FILE *out)
{
    const char *section = "";

    fprintf(out, "# kvstashd effective configuration (file: %s)\n",
            cfg->config_path ? cfg->config_path : "none");
    for (size_t i = 0; i < KVS_ARRAY_SIZE(settings); i++) {
        const setting_t *s = &settings[i];
        const void *p = (const char *)cfg + s->off;

        if (strcmp(section, s->section)) {
            section = s->section;
            fprintf(out, "[%s]\n", section);
        }
        fprintf(out, "%s = ", s->key);
        switch (s->type) {
        case T_STR:
            if (p == (const void *)&cfg->peer_secret && cfg->peer_secret)
                fprintf(out, "********"); /* never print the secret */
            else
                fprintf(out, "%s", *(char *const *)p ? *(char *const *)p : "");
            if (p == (const void *)&cfg->listen && cfg->listen_num[0] &&
                strcmp(cfg->listen, cfg->listen_num))
                fprintf(out, "  # %s", cfg->listen_num);
            if (p == (const void *)&cfg->peers && cfg->peers_num &&
                strcmp(cfg->peers, cfg->peers_num))
                fprintf(out, "  # %s", cfg->peers_num);
            break;
        case T_BOOL:
            fprintf(out, "%s", *(const bool *)p ? "true" : "false");
            break;
        case T_I32:
            fprintf(out, "%" PRId32, *(const int32_t *)p);
            break;
        case T_U16:
            fprintf(out, "%u", *(const uint16_t *)p);
            break;
        case T_U32:
            fprintf(out, "%" PRIu32, *(const uint32_t *)p);
            break;
        case T_U32_MIB:
            fprintf(out, "%" PRIu32, *(const uint32_t *)p >> 20);
            break;
        case T_U64_MIB:
            fprintf(out, "%" PRIu64, *(const uint64_t *)p >> 20);
            break;
        }
        fprintf(out, "\n");
    }
    if (cfg->ntenants == 0)
        fprintf(out, "# no [tenant.*] sections: every token is accepted and "
                     "every namespace is open\n");
    for (size_t i = 0; i < cfg->ntenants; i++)
        fprintf(out, "[tenant.%s]\ntoken = ********\nnamespaces = %s\n%s",
                cfg->tenants[i].name,
                cfg->tenants[i].ns_list ? cfg->tenants[i].ns_list : "",
                cfg->tenants[i].is_operator ? "operator = true\n" : "");
    fflush(out);
}
