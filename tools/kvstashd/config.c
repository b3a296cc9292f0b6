/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd configuration: one table of settings, each with its section,
 * key, type and location in kvs_config_t, so that the INI file, --set
 * flags and the printed configuration can never disagree. Tenants are the
 * only sections with a variable name ("[tenant.NAME]").
 *
 * Sizes are given in MiB in the file (dram_mib = 512) and kept in bytes.
 */
#include "tools/kvstashd/config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/compiler.h"
#include "common/log.h"

enum ctype { T_STR, T_U16, T_U32, T_U64_MIB, T_U32_MIB, T_I32, T_BOOL };

typedef struct setting {
    const char *section;
    const char *key;
    enum ctype type;
    size_t off;
    const char *help;
} setting_t;

#define S(sec, k, t, field, h) {sec, k, t, offsetof(kvs_config_t, field), h}

static const setting_t settings[] = {
    S("daemon", "listen", T_STR, listen, "numeric IP to listen on"),
    S("daemon", "port", T_U16, server.port, "0: any free port"),
    S("daemon", "log_level", T_STR, log_level, "error|warn|info|debug|trace"),
    S("daemon", "port_file", T_STR, port_file, "write the port here"),
    S("daemon", "max_conns", T_U32, server.max_conns, ""),
    S("daemon", "max_inflight", T_U32, server.max_inflight, "per connection"),
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
    S("daemon", "bulk_ep", T_BOOL, server.bulk_ep,
      "second endpoint for GET data"),
    S("peer", "secret", T_STR, peer_secret,
      "shared secret of peer links; unset: no peer may connect"),
    S("peer", "list", T_STR, peers, "name=ip:port,... peers to stream from"),
    S("peer", "timeout_ms", T_U32, server.peer_timeout_ms,
      "a silent peer link fails after this"),
    S("store", "dir", T_STR, dir, "data directory"),
    S("store", "dram_mib", T_U64_MIB, store.dram_bytes, "DRAM arena"),
    S("store", "nvme_mib", T_U64_MIB, store.nvme_bytes, "0: no NVMe tier"),
    S("store", "region_mib", T_U32_MIB, store.region_bytes, ""),
    S("store", "max_block_mib", T_U32_MIB, store.max_block_bytes, ""),
    S("store", "max_blocks", T_U32, store.max_blocks, ""),
    S("store", "io_depth", T_U32, store.io_depth, ""),
    S("store", "dram_high_pct", T_U32, store.dram_high_pct, ""),
    S("store", "dram_low_pct", T_U32, store.dram_low_pct, ""),
    S("store", "pinned_max_pct", T_U32, store.pinned_max_pct, ""),
    S("store", "compress_level", T_I32, store.compress_level, "0: off"),
    S("store", "compress_min_saving_pct", T_U32,
      store.compress_min_saving_pct, ""),
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
    /* A laptop: half a GiB of DRAM, 2 GiB of disk. */
    cfg->store.dram_bytes = 512ull << 20;
    cfg->store.nvme_bytes = 2048ull << 20;
    cfg->server.max_body = 128u << 10;
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
                      const char *value)
{
    kvs_config_tenant_t *t = tenant_get(cfg, name);

    if (!t) {
        fprintf(stderr, "kvstashd: too many tenants, or an empty name\n");
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
                fprintf(stderr, "kvstashd: tenant %s: too many namespaces or "
                        "one too long\n", name);
                free(list);
                return KVS_ECONFIG;
            }
            t->ns[t->nns++] = dup_or_die(tok);
        }
        free(list);
        return 0;
    }
    fprintf(stderr, "kvstashd: unknown tenant setting '%s'\n", key);
    return KVS_ECONFIG;
}

int kvs_config_set(kvs_config_t *cfg, const char *section, const char *key,
                   const char *value)
{
    if (strncmp(section, "tenant.", 7) == 0)
        return set_tenant(cfg, section + 7, key, value);
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
        fprintf(stderr, "kvstashd: %s.%s: bad value '%s'\n", section, key,
                value);
        return KVS_ECONFIG;
    }
    fprintf(stderr, "kvstashd: unknown setting '%s.%s'\n", section, key);
    return KVS_ECONFIG;
}

static int ini_cb(void *arg, const char *section, const char *key,
                  const char *value)
{
    return kvs_config_set(arg, section, key, value) == 0;
}

int kvs_config_load(kvs_config_t *cfg, const char *path)
{
    int line = ini_parse(path, ini_cb, cfg);

    if (line < 0) {
        fprintf(stderr, "kvstashd: cannot read config file %s\n", path);
        return KVS_ECONFIG;
    }
    if (line > 0) {
        fprintf(stderr, "kvstashd: %s:%d: invalid setting\n", path, line);
        return KVS_ECONFIG;
    }
    free(cfg->config_path);
    cfg->config_path = dup_or_die(path);
    return 0;
}

int kvs_config_finish(kvs_config_t *cfg)
{
    if (kvs_log_parse_level(cfg->log_level) < 0) {
        fprintf(stderr, "kvstashd: unknown log level '%s'\n", cfg->log_level);
        return KVS_ECONFIG;
    }
    cfg->server.listen_addr = cfg->listen;
    cfg->server.peer_secret = cfg->peer_secret;
    cfg->server.peers = cfg->peers;
    cfg->store.dir = cfg->dir;
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
    }
    cfg->server.tenants = cfg->ntenants ? cfg->server_tenants : NULL;
    cfg->server.ntenants = cfg->ntenants;
    return 0;
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
        fprintf(out, "[tenant.%s]\ntoken = ********\nnamespaces = %s\n",
                cfg->tenants[i].name,
                cfg->tenants[i].ns_list ? cfg->tenants[i].ns_list : "");
    fflush(out);
}
