/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup: what its commands share (warmup.h): the connection to
 * the daemon and hex output. main() is in main.c, each command in a file
 * of its own; this file includes none of them.
 */
#include "tools/kvstash-warmup/warmup.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/cliarg.h"

void kvs_warmup_opts_default(kvs_warmup_opts_t *o)
{
    const char *addr = getenv("KVSTASH_ADDR");

    *o = (kvs_warmup_opts_t){
        .addr = addr ? addr : "127.0.0.1",
        .port = KVS_DEFAULT_PORT,
        .token = getenv("KVSTASH_TOKEN"),
        .timeout_ms = 60000,
        .jobs = 8,
        .batch_bytes = 4u << 20,
        .hash = "sha256",
        .tty = -1,
        .interval_ms = 2000,
    };
}

void kvs_warmup_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int kvs_warmup_connect(const kvs_warmup_opts_t *o, const char *ns,
                       uint32_t elem_size, kvs_client_t **client_out)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT |
                      KVS_CLIENT_PARAM_NS | KVS_CLIENT_PARAM_TIMEOUT_MS |
                      KVS_CLIENT_PARAM_ELEM_SIZE,
        .addr = o->addr,
        .port = o->port,
        .ns = ns,
        .timeout_ms = o->timeout_ms,
        .elem_size = elem_size,
    };
    int ret;

    if (o->token) {
        p.field_mask |= KVS_CLIENT_PARAM_TOKEN;
        p.token = o->token;
    }
    ret = kvs_client_create(&p, client_out);
    if (ret)
        kvs_cliarg_connect_failed("kvstash-warmup", o->addr, o->port, ret);
    return ret;
}
