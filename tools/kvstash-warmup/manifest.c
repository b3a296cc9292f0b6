/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifest lines (see manifest.h and docs/warmup.md). The JSON is parsed by
 * json-c; this file checks types and ranges, reads a token file when the
 * line names one, and takes what the namespace name says
 * ("...;dtype=bf16;tokens_per_block=16;...") as the truth the line must
 * agree with.
 */
#include "common/hex.h"
#include "tools/kvstash-warmup/manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "kvstash/status.h"

static const struct {
    const char *ns;
    const char *st;
} dtype_names[] = {
    {"bf16", "BF16"},        {"bfloat16", "BF16"},    {"fp16", "F16"},
    {"f16", "F16"},          {"float16", "F16"},      {"fp32", "F32"},
    {"f32", "F32"},          {"float32", "F32"},      {"fp8", "F8_E4M3"},
    {"fp8_e4m3", "F8_E4M3"}, {"fp8_e5m2", "F8_E5M2"}, {"u8", "U8"},
};

const char *kvs_manifest_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof(dtype_names) / sizeof(dtype_names[0]); i++)
        if (!strcasecmp(name, dtype_names[i].ns) ||
            !strcmp(name, dtype_names[i].st))
            return dtype_names[i].st;
    return NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int kvs_manifest_hex_key(const char *hex, kvs_manifest_key_t *key_out)
{
    size_t n = strlen(hex);
    kvs_manifest_key_t k = {0};

    long len = n ? kvs_hex_decode(hex, k.b, KVS_KEY_MAX) : -1;

    if (len <= 0)
        return -EINVAL;
    k.len = (uint8_t)len;
    *key_out = k;
    return 0;
}

/* Value of "name=" in a namespace of ';'-separated fields, into buf. */
static bool ns_field(const char *ns, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);

    for (const char *p = ns; p && *p;
         p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL) {
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            const char *v = p + nl + 1, *e = strchr(v, ';');
            size_t vl = e ? (size_t)(e - v) : strlen(v);

            if (vl >= len)
                return false;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return true;
        }
    }
    return false;
}

/* A path relative to the manifest's directory (absolute paths as given). */
static char *resolve(const char *manifest_path, const char *path)
{
    const char *slash = strrchr(manifest_path, '/');
    size_t dl = slash ? (size_t)(slash - manifest_path) + 1 : 0;
    char *out;

    if (path[0] == '/' || dl == 0)
        return strdup(path);
    out = malloc(dl + strlen(path) + 1);
    if (!out)
        return NULL;
    memcpy(out, manifest_path, dl);
    strcpy(out + dl, path);
    return out;
}

static int get_u64(struct json_object *o, uint64_t *out)
{
    int64_t v;

    if (!json_object_is_type(o, json_type_int))
        return -1;
    v = json_object_get_int64(o);
    if (v < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int tokens_from_json(struct json_object *arr, kvs_manifest_ent_t *e,
                            char *err, size_t errlen, const char *where)
{
    size_t n = json_object_array_length(arr);

    e->tokens = malloc((n ? n : 1) * sizeof(*e->tokens));
    if (!e->tokens)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t v;

        if (get_u64(json_object_array_get_idx(arr, i), &v) || v > UINT32_MAX)
            return fail(err, errlen,
                        "%s: token %zu is not an id in "
                        "0..2^32-1",
                        where, i);
        e->tokens[i] = (uint32_t)v;
    }
    e->ntokens = n;
    return 0;
}

/* A token file: a JSON array, or ids separated by spaces, commas or
 * newlines. */
static int tokens_from_file(const char *path, kvs_manifest_ent_t *e, char *err,
                            size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t len = 0, cap = 0, i = 0, n = 0, tcap = 0;
    int ret = 0;

    if (!f)
        return fail(err, errlen, "%s: cannot open token file: %s", path,
                    strerror(errno));
    for (;;) {
        if (cap - len < 4097) {
            char *t = realloc(text, cap = cap * 2 + 8192);
            if (!t) {
                ret = -ENOMEM;
                goto out;
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    text[len] = '\0';
    while (i < len && strchr(" \t\r\n", text[i]))
        i++;
    if (i < len && text[i] == '[') {
        struct json_object *arr = json_tokener_parse(text);

        if (!arr || !json_object_is_type(arr, json_type_array)) {
            json_object_put(arr);
            ret = fail(err, errlen, "%s: not a JSON array of token ids", path);
            goto out;
        }
        ret = tokens_from_json(arr, e, err, errlen, path);
        json_object_put(arr);
        goto out;
    }
    while (i < len) {
        char *end;
        unsigned long long v;

        if (strchr(" \t\r\n,", text[i])) {
            i++;
            continue;
        }
        errno = 0;
        v = strtoull(text + i, &end, 10);
        if (end == text + i || errno || v > UINT32_MAX || text[i] == '-') {
            ret = fail(err, errlen, "%s: byte %zu: not a token id", path, i);
            goto out;
        }
        if (n == tcap) {
            uint32_t *t =
                realloc(e->tokens, (tcap = tcap * 2 + 1024) * sizeof(*t));
            if (!t) {
                ret = -ENOMEM;
                goto out;
            }
            e->tokens = t;
        }
        e->tokens[n++] = (uint32_t)v;
        i = (size_t)(end - text);
    }
    e->ntokens = n;
out:
    free(text);
    fclose(f);
    return ret;
}

static int keys_from_json(struct json_object *arr, bool allow_empty,
                          kvs_manifest_key_t **out, size_t *n_out,
                          const char *field, char *err, size_t errlen)
{
    size_t n = json_object_array_length(arr);
    kvs_manifest_key_t *k = calloc(n ? n : 1, sizeof(*k));

    if (!k)
        return -ENOMEM;
    *out = k;
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);
        const char *s = json_object_get_string(o);

        if (!json_object_is_type(o, json_type_string))
            return fail(err, errlen, "\"%s\"[%zu]: not a hex string", field, i);
        if (allow_empty && !*s)
            continue;
        if (kvs_manifest_hex_key(s, &k[i]))
            return fail(err, errlen, "\"%s\"[%zu]: not 1..%u bytes of hex",
                        field, i, KVS_KEY_MAX);
    }
    *n_out = n;
    return 0;
}

static const char *const known_fields[] = {
    "namespace",  "tokens",           "tokens_file", "kv_file", "layout",
    "class",      "ttl_ms",           "group",       "keys",    "parents",
    "extra_keys", "tokens_per_block", "dtype",
};

static int parse_obj(const char *manifest_path, struct json_object *o,
                     kvs_manifest_ent_t *e, char *err, size_t errlen)
{
    struct json_object *v;
    char buf[64];
    const char *s;
    int ret;

    json_object_object_foreach(o, name, val)
    {
        bool known = false;

        (void)val;
        for (size_t i = 0; i < sizeof(known_fields) / sizeof(known_fields[0]);
             i++)
            known |= !strcmp(name, known_fields[i]);
        if (!known)
            return fail(err, errlen, "unknown field \"%s\"", name);
    }
    if (!json_object_object_get_ex(o, "namespace", &v) ||
        !json_object_is_type(v, json_type_string) ||
        !*(s = json_object_get_string(v)) || strlen(s) > KVS_NS_NAME_MAX)
        return fail(err, errlen,
                    "\"namespace\" must be a string of 1..%u "
                    "bytes",
                    KVS_NS_NAME_MAX);
    if (!(e->ns = strdup(s)))
        return -ENOMEM;
    if (!json_object_object_get_ex(o, "kv_file", &v) ||
        !json_object_is_type(v, json_type_string) ||
        !*json_object_get_string(v))
        return fail(err, errlen,
                    "\"kv_file\" (a safetensors file) is "
                    "required");
    if (!(e->kv_file = resolve(manifest_path, json_object_get_string(v))))
        return -ENOMEM;

    e->layout = KVS_LAYOUT_LAYERS;
    if (json_object_object_get_ex(o, "layout", &v)) {
        s = json_object_get_string(v);
        if (!json_object_is_type(v, json_type_string))
            return fail(err, errlen, "\"layout\" must be a string");
        if (!strcmp(s, "layers"))
            e->layout = KVS_LAYOUT_LAYERS;
        else if (!strcmp(s, "packed"))
            e->layout = KVS_LAYOUT_PACKED;
        else if (!strcmp(s, "blocks"))
            e->layout = KVS_LAYOUT_BLOCKS;
        else
            return fail(err, errlen,
                        "\"layout\": '%s' is not layers, packed "
                        "or blocks",
                        s);
    }

    e->cls = KVS_CLASS_SCRATCH;
    if (json_object_object_get_ex(o, "class", &v)) {
        s = json_object_get_string(v);
        if (!json_object_is_type(v, json_type_string))
            return fail(err, errlen, "\"class\" must be a string");
        if (!strcmp(s, "scratch"))
            e->cls = KVS_CLASS_SCRATCH;
        else if (!strcmp(s, "user"))
            e->cls = KVS_CLASS_USER;
        else if (!strcmp(s, "pinned"))
            e->cls = KVS_CLASS_PINNED;
        else
            return fail(err, errlen,
                        "\"class\": '%s' is not scratch, user or "
                        "pinned",
                        s);
    }
    if (json_object_object_get_ex(o, "ttl_ms", &v) && get_u64(v, &e->ttl_ms))
        return fail(err, errlen, "\"ttl_ms\" must be a non-negative integer");
    if (json_object_object_get_ex(o, "group", &v) && get_u64(v, &e->group))
        return fail(err, errlen, "\"group\" must be a non-negative integer");

    /* The namespace's dtype and block size are the truth; the line may
     * repeat them but not contradict them. */
    e->dtype[0] = '\0';
    if (ns_field(e->ns, "dtype", buf, sizeof(buf))) {
        const char *st = kvs_manifest_dtype(buf);

        if (!st)
            return fail(err, errlen, "namespace dtype '%s' is unknown", buf);
        snprintf(e->dtype, sizeof(e->dtype), "%s", st);
    }
    if (json_object_object_get_ex(o, "dtype", &v)) {
        const char *st = kvs_manifest_dtype(json_object_get_string(v));

        if (!st)
            return fail(err, errlen, "\"dtype\": '%s' is unknown",
                        json_object_get_string(v));
        if (e->dtype[0] && strcmp(e->dtype, st))
            return fail(err, errlen,
                        "\"dtype\" %s contradicts the "
                        "namespace's %s",
                        st, e->dtype);
        snprintf(e->dtype, sizeof(e->dtype), "%s", st);
    }
    if (ns_field(e->ns, "tokens_per_block", buf, sizeof(buf)))
        e->tokens_per_block = (uint32_t)strtoul(buf, NULL, 10);
    if (json_object_object_get_ex(o, "tokens_per_block", &v)) {
        uint64_t t;

        if (get_u64(v, &t) || t == 0 || t > (1u << 20))
            return fail(err, errlen, "\"tokens_per_block\" must be 1..2^20");
        if (e->tokens_per_block && e->tokens_per_block != t)
            return fail(err, errlen,
                        "\"tokens_per_block\" %llu contradicts "
                        "the namespace's %u",
                        (unsigned long long)t, e->tokens_per_block);
        e->tokens_per_block = (uint32_t)t;
    }

    if (json_object_object_get_ex(o, "tokens", &v)) {
        if (!json_object_is_type(v, json_type_array))
            return fail(err, errlen, "\"tokens\" must be an array of ids");
        if ((ret = tokens_from_json(v, e, err, errlen, "\"tokens\"")))
            return ret;
    } else if (json_object_object_get_ex(o, "tokens_file", &v)) {
        char *path;

        if (!json_object_is_type(v, json_type_string))
            return fail(err, errlen, "\"tokens_file\" must be a path");
        if (!(path = resolve(manifest_path, json_object_get_string(v))))
            return -ENOMEM;
        ret = tokens_from_file(path, e, err, errlen);
        free(path);
        if (ret)
            return ret;
    }
    if (json_object_object_get_ex(o, "keys", &v)) {
        if (!json_object_is_type(v, json_type_array))
            return fail(err, errlen, "\"keys\" must be an array of hex keys");
        if ((ret = keys_from_json(v, false, &e->keys, &e->nkeys, "keys", err,
                                  errlen)))
            return ret;
    }
    if (json_object_object_get_ex(o, "parents", &v)) {
        size_t np = 0;

        if (!json_object_is_type(v, json_type_array) || !e->keys)
            return fail(err, errlen,
                        "\"parents\" must be an array of hex "
                        "keys (\"\" for none), with \"keys\"");
        if ((ret = keys_from_json(v, true, &e->parents, &np, "parents", err,
                                  errlen)))
            return ret;
        if (np != e->nkeys)
            return fail(err, errlen, "%zu parents for %zu keys", np, e->nkeys);
    }
    if (json_object_object_get_ex(o, "extra_keys", &v)) {
        size_t n, len = 0;

        if (!json_object_is_type(v, json_type_array))
            return fail(err, errlen,
                        "\"extra_keys\" must be an array of "
                        "strings");
        n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            struct json_object *x = json_object_array_get_idx(v, i);

            if (!json_object_is_type(x, json_type_string))
                return fail(err, errlen, "\"extra_keys\"[%zu]: not a string",
                            i);
            len += 4 + (size_t)json_object_get_string_len(x);
        }
        if (!(e->extra = malloc(len ? len : 1)))
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            struct json_object *x = json_object_array_get_idx(v, i);
            uint32_t xl = (uint32_t)json_object_get_string_len(x);

            for (int k = 0; k < 4; k++)
                e->extra[e->extra_len++] = (uint8_t)(xl >> (8 * k));
            memcpy(e->extra + e->extra_len, json_object_get_string(x), xl);
            e->extra_len += xl;
        }
    }

    if (e->layout == KVS_LAYOUT_BLOCKS) {
        if (!e->keys)
            return fail(err, errlen, "layout \"blocks\" needs \"keys\"");
    } else {
        if (!e->tokens && !e->keys)
            return fail(err, errlen,
                        "\"tokens\", \"tokens_file\" or \"keys\" "
                        "is required");
        if (!e->tokens_per_block)
            return fail(err, errlen,
                        "tokens per block unknown: put "
                        "tokens_per_block=N in the namespace or the line");
    }
    return 0;
}

int kvs_manifest_parse(const char *manifest_path, unsigned line,
                       const char *text, size_t len, kvs_manifest_ent_t *ent,
                       char *err, size_t errlen)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o;
    kvs_manifest_ent_t e;
    int ret;

    memset(&e, 0, sizeof(e));
    memset(ent, 0, sizeof(*ent));
    e.line = line;
    if (!tok)
        return -ENOMEM;
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        enum json_tokener_error je = json_tokener_get_error(tok);

        ret = fail(err, errlen, "not valid JSON: %s",
                   o ? "trailing data"
                   : je == json_tokener_continue
                       ? "the object does not end on this line"
                       : json_tokener_error_desc(je));
        json_object_put(o);
        json_tokener_free(tok);
        return ret;
    }
    if ((size_t)json_tokener_get_parse_end(tok) < len) {
        /* Only white space may follow the object. */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
            if (!strchr(" \t\r\n", text[i])) {
                json_object_put(o);
                json_tokener_free(tok);
                return fail(err, errlen, "not valid JSON: trailing data");
            }
    }
    json_tokener_free(tok);
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return fail(err, errlen, "not a JSON object");
    }
    ret = parse_obj(manifest_path, o, &e, err, errlen);
    json_object_put(o);
    if (ret) {
        if (ret == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        kvs_manifest_ent_fini(&e);
        return ret;
    }
    *ent = e;
    return 0;
}

void kvs_manifest_ent_fini(kvs_manifest_ent_t *e)
{
    free(e->ns);
    free(e->kv_file);
    free(e->tokens);
    free(e->keys);
    free(e->parents);
    free(e->extra);
    memset(e, 0, sizeof(*e));
}
