/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup: what its commands share. The tool is a client of kvstashd
 * (libkvstash only): import loads KV blocks from safetensors files named by
 * a manifest, promote brings groups' blocks from NVMe to DRAM, export writes
 * a group or namespace back to safetensors + manifest. kvstash-bench warmup
 * compares the import rate with raw client puts. See docs/warmup.md.
 */
#ifndef KVS_WARMUP_H
#define KVS_WARMUP_H

#include <stdbool.h>
#include <stdint.h>

#include "kvstash/kvstash.h"

/* Exit codes of every command. */
#define KVS_WARMUP_EXIT_OK 0     /* everything done */
#define KVS_WARMUP_EXIT_FAILED 1 /* some lines or blocks failed */
#define KVS_WARMUP_EXIT_USAGE 2  /* bad usage, or no daemon */

typedef struct kvs_warmup_opts {
    const char *addr; /* daemon address */
    uint16_t port;
    const char *token;         /* NULL: none */
    uint32_t timeout_ms;       /* per synchronous call */
    uint32_t jobs;             /* put batches in flight */
    uint32_t batch_bytes;      /* payload of one put batch, at most */
    const char *hash;          /* digest of block keys */
    uint8_t root[KVS_KEY_MAX]; /* parent bytes of the first block */
    uint32_t root_len;
    uint32_t put_flags; /* KVS_CLIENT_PUT_* */
    int tty;            /* -1 auto, 0 lines, 1 bar */
    bool quiet;
    uint32_t interval_ms; /* between plain progress lines */
    uint64_t kill_after;  /* test hook: SIGKILL self after N puts */
} kvs_warmup_opts_t;

/* The defaults every command starts from: address and token from
 * KVSTASH_ADDR and KVSTASH_TOKEN (127.0.0.1, none), the default port, 8
 * batches in flight of 4 MiB, sha256 keys, automatic progress output. */
void kvs_warmup_opts_default(kvs_warmup_opts_t *o);

/* Connects to the daemon in namespace ns. Returns 0 or a status, printing
 * the reason. */
int kvs_warmup_connect(const kvs_warmup_opts_t *o, const char *ns,
                       uint32_t elem_size, kvs_client_t **client_out);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void kvs_warmup_hex(const uint8_t *b, size_t n, char *out);

#endif
