/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for kvs_manifest_parse(), which reads one line of a
 * kvstash-warmup import manifest (JSONL). Input: the line's bytes.
 *
 * The parser must never crash or read out of bounds (the line is an
 * exact-size heap copy, not NUL-terminated, as the importer hands it
 * over). A refused line gets a message and leaves the entry empty; an
 * accepted one keeps the promises the importer relies on: a namespace and
 * a kv_file, a known layout and class, every key and parent 1..KVS_KEY_MAX
 * bytes, the extra keys a well-formed run of (u32 length, bytes), tokens
 * per block known unless the layout is "blocks".
 *
 * The manifest lives in a scratch directory holding two token files
 * (tok.txt, tok.json), so "tokens_file" is fuzzed too; a line naming any
 * other file (an absolute path or one with "..") is skipped, so that the
 * fuzzer cannot make the parser read /dev/stdin or some large file.
 */
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvstash-warmup/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char manifest[256];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[200];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/fuzz_manifest.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(manifest, sizeof(manifest), "%s/manifest.jsonl", dir);
    snprintf(manifest + strlen(dir), sizeof(manifest) - strlen(dir),
             "/tok.txt");
    if (!(f = fopen(manifest, "w")) || fputs("1 2, 3\n40000\n", f) < 0 ||
        fclose(f))
        abort();
    snprintf(manifest + strlen(dir), sizeof(manifest) - strlen(dir),
             "/tok.json");
    if (!(f = fopen(manifest, "w")) || fputs("[5, 6, 7, 8]", f) < 0 ||
        fclose(f))
        abort();
    snprintf(manifest + strlen(dir), sizeof(manifest) - strlen(dir),
             "/manifest.jsonl");
}

/* True when the line names a token file outside the scratch directory. */
static int names_other_file(const char *text, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o, *v;
    int other = 0;

    if (!tok)
        abort();
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (o && json_object_is_type(o, json_type_object) &&
        json_object_object_get_ex(o, "tokens_file", &v) &&
        json_object_is_type(v, json_type_string)) {
        const char *p = json_object_get_string(v);

        other = p[0] == '/' || strstr(p, "..") != NULL;
    }
    json_object_put(o);
    json_tokener_free(tok);
    return other;
}

static void check_key(const kvs_manifest_key_t *k, int may_be_empty)
{
    if (k->len > KVS_KEY_MAX || (!may_be_empty && k->len == 0))
        abort();
}

static void check_entry(const kvs_manifest_ent_t *e)
{
    size_t off = 0;

    if (!e->ns || !e->kv_file || e->line != 7)
        abort();
    if (e->layout != KVS_LAYOUT_LAYERS && e->layout != KVS_LAYOUT_PACKED &&
        e->layout != KVS_LAYOUT_BLOCKS)
        abort();
    if (e->layout == KVS_LAYOUT_BLOCKS
            ? !e->keys
            : (!e->tokens_per_block || (!e->tokens && !e->keys)))
        abort();
    if (e->ntokens && !e->tokens)
        abort();
    for (size_t i = 0; i < e->nkeys; i++) {
        check_key(&e->keys[i], 0);
        if (e->parents)
            check_key(&e->parents[i], 1);
    }
    if (memchr(e->dtype, '\0', sizeof(e->dtype)) == NULL)
        abort();
    while (off < e->extra_len) {
        uint32_t xl;

        if (e->extra_len - off < 4)
            abort();
        xl = (uint32_t)e->extra[off] | (uint32_t)e->extra[off + 1] << 8 |
             (uint32_t)e->extra[off + 2] << 16 |
             (uint32_t)e->extra[off + 3] << 24;
        off += 4;
        if (xl > e->extra_len - off)
            abort();
        off += xl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_manifest_ent_t ent;
    char err[256];
    char *copy;

    if (!manifest[0])
        make_dir();
    if (size > (1u << 20))
        return 0; /* json-c takes an int length; lines are short */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (names_other_file(copy, size)) {
        free(copy);
        return 0;
    }
    err[0] = '\0';
    if (kvs_manifest_parse(manifest, 7, copy, size, &ent, err, sizeof(err)) ==
        0) {
        check_entry(&ent);
        kvs_manifest_ent_fini(&ent);
    } else {
        static const kvs_manifest_ent_t zero;

        if (!err[0] || memcmp(&ent, &zero, sizeof(ent)) != 0)
            abort(); /* refused without a reason, or left half filled */
    }
    free(copy);
    return 0;
}
