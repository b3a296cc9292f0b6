/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One line of an import manifest (JSONL, one JSON object per line; the
 * fields are documented in docs/warmup.md), parsed with json-c into a
 * checked, owned entry. Relative file names are taken relative to the
 * manifest's directory.
 */
#ifndef KVS_MANIFEST_H
#define KVS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/types.h"

/* How the tensors of a KV file are laid out (docs/warmup.md, "Layouts"). */
enum kvs_manifest_layout {
    KVS_LAYOUT_LAYERS = 0, /* layers.L.k, layers.L.v: [T, H, D] */
    KVS_LAYOUT_PACKED = 1, /* kv: [L, 2, T, H, D] */
    KVS_LAYOUT_BLOCKS = 2, /* block.I: [parts, n] (export's format) */
};

typedef struct kvs_manifest_key {
    uint8_t len; /* 1..KVS_KEY_MAX; 0: none */
    uint8_t b[KVS_KEY_MAX];
} kvs_manifest_key_t;

/* Everything one manifest line says. Owned: free with _fini(). */
typedef struct kvs_manifest_ent {
    unsigned line;             /* 1-based line number */
    char *ns;                  /* namespace name */
    char *kv_file;             /* path, resolved against the manifest */
    int layout;                /* enum kvs_manifest_layout */
    uint32_t tokens_per_block; /* from the line or the namespace */
    char dtype[16];            /* safetensors name ("BF16"); "": any */
    uint32_t *tokens;          /* token ids; NULL with given keys only */
    size_t ntokens;
    kvs_manifest_key_t *keys; /* given keys, or NULL: computed */
    size_t nkeys;
    kvs_manifest_key_t *parents; /* given parents (blocks layout), or NULL */
    uint8_t *extra;              /* extra keys, each u32 LE len + bytes */
    size_t extra_len;
    uint8_t cls; /* enum kvs_class */
    uint64_t ttl_ms;
    uint64_t group;
} kvs_manifest_ent_t;

/*
 * Parses one line (len bytes, no newline needed) of the manifest at
 * manifest_path. On error returns a negative status and writes a one-line
 * reason into err; ent is then left empty (nothing to free).
 */
int kvs_manifest_parse(const char *manifest_path, unsigned line,
                       const char *text, size_t len, kvs_manifest_ent_t *ent,
                       char *err, size_t errlen);

/* Frees what an entry owns. */
void kvs_manifest_ent_fini(kvs_manifest_ent_t *ent);

/* Namespace dtype names ("bf16", "fp16", "fp8_e4m3", ...) to safetensors
 * dtype names; NULL if unknown. */
const char *kvs_manifest_dtype(const char *name);

/* Hex text (2..128 digits) to a key; -EINVAL if malformed. */
int kvs_manifest_hex_key(const char *hex, kvs_manifest_key_t *key_out);

#endif
