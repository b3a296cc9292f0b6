/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup end to end, against a real kvstashd on an ephemeral port:
 *  - import of generated bf16 safetensors files (layers and packed layouts,
 *    inline tokens and a token file): every block is read back and compared
 *    byte for byte with what the test computes, keys are the documented
 *    sha256 chain (computed here independently), parents are the chain;
 *  - a second run skips everything;
 *  - an import killed halfway (SIGKILL) and run again completes with no
 *    block put twice;
 *  - bad input (malformed line, missing file, truncated file, shape not
 *    matching the tokens, dtype not matching the namespace) is reported
 *    with file and line, the good line still loads, the exit code is 1;
 *  - promote of a group written to NVMe makes MATCH report DRAM, and a
 *    small budget stops promotion part way;
 *  - export of a group, delete, import of the export gives the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define LAYERS 4
#define HEADS 2
#define DIM 16
#define TPB 4
#define ROW (HEADS * DIM * 2) /* bytes per token, K or V */
#define PART (2 * TPB * ROW)  /* bytes per layer of a block */
#define BLOCK (LAYERS * PART)

static kvs_e2e_daemon_t d;
static char dir[512];

/* The element of layer l, K (kv 0) or V, token t, index j of a "prompt"
 * seeded by seed: deterministic bf16 bits. */
static uint16_t elem(unsigned seed, unsigned l, unsigned kv, unsigned t,
                     unsigned j)
{
    uint32_t x = seed * 2654435761u ^ (l * 97u + kv * 13u) ^ (t << 8) ^ j;

    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (uint16_t)x;
}

static void tok_ids(unsigned seed, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)((seed * 1000003u + i * 7919u) % 128000u);
}

/* Writes a bf16 safetensors file of the prompt seed with T tokens, as
 * layout "layers" or "packed". dtype overrides the declared dtype. */
static void write_st(const char *path, unsigned seed, unsigned T, bool packed,
                     const char *dtype)
{
    struct json_object *hdr = json_object_new_object();
    size_t per = (size_t)T * HEADS * DIM; /* elements per K (or V) */
    uint16_t *data = malloc(per * 2 * LAYERS * 2);
    uint64_t hlen;
    const char *js;
    FILE *f;

    CHECK(hdr && data);
    for (unsigned l = 0; l < LAYERS; l++)
        for (unsigned kv = 0; kv < 2; kv++)
            for (unsigned t = 0; t < T; t++)
                for (unsigned j = 0; j < HEADS * DIM; j++)
                    data[(2 * l + kv) * per + (size_t)t * HEADS * DIM + j] =
                        elem(seed, l, kv, t, j);
    for (unsigned l = 0; l < (packed ? 1u : 2u * LAYERS); l++) {
        struct json_object *o = json_object_new_object();
        struct json_object *shape = json_object_new_array();
        struct json_object *offs = json_object_new_array();
        uint64_t bytes = packed ? per * 2 * LAYERS * 2 : per * 2;
        char name[32];

        if (packed) {
            json_object_array_add(shape, json_object_new_int(LAYERS));
            json_object_array_add(shape, json_object_new_int(2));
        }
        json_object_array_add(shape, json_object_new_int((int)T));
        json_object_array_add(shape, json_object_new_int(HEADS));
        json_object_array_add(shape, json_object_new_int(DIM));
        json_object_array_add(offs,
                              json_object_new_int64((int64_t)(l * bytes)));
        json_object_array_add(
            offs, json_object_new_int64((int64_t)((l + 1) * bytes)));
        json_object_object_add(o, "dtype", json_object_new_string(dtype));
        json_object_object_add(o, "shape", shape);
        json_object_object_add(o, "data_offsets", offs);
        if (packed)
            snprintf(name, sizeof(name), "kv");
        else
            snprintf(name, sizeof(name), "layers.%u.%c", l / 2,
                     l % 2 ? 'v' : 'k');
        json_object_object_add(hdr, name, o);
    }
    js = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN);
    hlen = strlen(js);
    f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(&hlen, 8, 1, f) == 1); /* little-endian host */
    CHECK(fwrite(js, 1, hlen, f) == hlen);
    CHECK(fwrite(data, 2, per * 2 * LAYERS, f) == per * 2 * LAYERS);
    CHECK(fclose(f) == 0);
    json_object_put(hdr);
    free(data);
}

/* The block keys of the documented scheme: sha256 chain, empty root. */
static void chain(const uint32_t *tok, size_t nblocks, uint8_t (*keys)[32])
{
    for (size_t b = 0; b < nblocks; b++) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t le[4 * TPB];
        unsigned len = 0;

        CHECK(ctx);
        CHECK(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
        if (b)
            EVP_DigestUpdate(ctx, keys[b - 1], 32);
        for (int i = 0; i < TPB; i++)
            for (int k = 0; k < 4; k++)
                le[4 * i + k] = (uint8_t)(tok[b * TPB + i] >> (8 * k));
        EVP_DigestUpdate(ctx, le, sizeof(le));
        CHECK(EVP_DigestFinal_ex(ctx, keys[b], &len) == 1 && len == 32);
        EVP_MD_CTX_free(ctx);
    }
}

/* What block b of prompt seed must hold. */
static void expect_block(unsigned seed, size_t b, uint8_t *out)
{
    for (unsigned l = 0; l < LAYERS; l++)
        for (unsigned kv = 0; kv < 2; kv++)
            for (unsigned t = 0; t < TPB; t++)
                for (unsigned j = 0; j < HEADS * DIM; j++) {
                    uint16_t v = elem(seed, l, kv, (unsigned)(b * TPB + t), j);
                    size_t off =
                        (size_t)l * PART + kv * (TPB * ROW) + t * ROW + j * 2;

                    memcpy(out + off, &v, 2);
                }
}

/* Reads back every block of prompt seed in ns and compares. want_tier, if
 * not 0, is checked on each block through MATCH. */
static void verify_prompt(const char *ns, unsigned seed, unsigned T)
{
    size_t nb = T / TPB;
    uint32_t *tok = malloc(T * sizeof(*tok));
    uint8_t(*keys)[32] = malloc(nb * 32);
    uint8_t *buf = malloc(BLOCK), *want = malloc(BLOCK);
    kvs_client_t *c = kvs_e2e_connect(&d, ns, NULL);
    kvs_client_scan_ent_t *ents = calloc(1024, sizeof(*ents));
    size_t nscan = 0;
    uint32_t next = 0;

    CHECK(tok && keys && buf && want && ents);
    tok_ids(seed, T, tok);
    chain(tok, nb, keys);
    CHECK_EQ(kvs_client_scan(c, 0, 0, ents, 1024, &nscan, &next), 0);
    CHECK_EQ(next, 0);
    for (size_t b = 0; b < nb; b++) {
        uint32_t lens[LAYERS + 1];
        kvs_client_get_t g = {
            .key = {keys[b], 32},
            .buf = buf,
            .cap = BLOCK,
            .part_lens = lens,
            .part_cap = LAYERS + 1,
        };
        bool found = false;

        CHECK_EQ(kvs_client_get_batch(c, &g, 1, 0), 0);
        CHECK_EQ(g.len, BLOCK);
        CHECK_EQ(g.nparts, LAYERS);
        for (int l = 0; l < LAYERS; l++)
            CHECK_EQ(lens[l], PART);
        expect_block(seed, b, want);
        CHECK(memcmp(buf, want, BLOCK) == 0);
        /* The parent is the previous block of the chain. */
        for (size_t i = 0; i < nscan; i++) {
            if (memcmp(ents[i].key, keys[b], 32))
                continue;
            found = true;
            CHECK_EQ(ents[i].parent_len, b ? 32 : 0);
            if (b)
                CHECK(memcmp(ents[i].parent, keys[b - 1], 32) == 0);
        }
        CHECK(found);
    }
    kvs_client_destroy(c);
    free(ents);
    free(want);
    free(buf);
    free(keys);
    free(tok);
}

/* Tiers of prompt seed's blocks via MATCH: counts DRAM and NVMe. */
static void tiers(const char *ns, unsigned seed, unsigned T, size_t *dram,
                  size_t *nvme)
{
    size_t nb = T / TPB;
    uint32_t *tok = malloc(T * sizeof(*tok));
    uint8_t(*keys)[32] = malloc(nb * 32), *tier = malloc(nb);
    kvs_client_key_t *k = malloc(nb * sizeof(*k));
    kvs_client_t *c = kvs_e2e_connect(&d, ns, NULL);
    kvs_client_match_result_t r;

    tok_ids(seed, T, tok);
    chain(tok, nb, keys);
    for (size_t i = 0; i < nb; i++)
        k[i] = (kvs_client_key_t){keys[i], 32};
    CHECK_EQ(kvs_client_match(c, k, nb, 0, 0, tier, &r), 0);
    CHECK_EQ(r.matched, nb);
    *dram = *nvme = 0;
    for (size_t i = 0; i < nb; i++) {
        *dram += tier[i] == KVS_TIER_DRAM;
        *nvme += tier[i] == KVS_TIER_NVME;
    }
    kvs_client_destroy(c);
    free(k);
    free(tier);
    free(keys);
    free(tok);
}

/* Runs kvstash-warmup with args; stderr+stdout go to dir/out.txt. Returns
 * the exit code, or 128 + signal. */
static int run(const char *const *args)
{
    char port[16], out[600];
    const char *argv[40];
    int argc = 0, status;
    pid_t pid;

    snprintf(port, sizeof(port), "%u", d.port);
    snprintf(out, sizeof(out), "%s/out.txt", dir);
    argv[argc++] = KVS_WARMUP_BIN;
    argv[argc++] = "-p";
    argv[argc++] = port;
    argv[argc++] = "--progress";
    argv[argc++] = "lines";
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(KVS_WARMUP_BIN, (char *const *)argv);
        _exit(127);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    {
        /* Show the tool's output in the test log. */
        FILE *f = fopen(out, "r");
        char line[1024];

        while (f && fgets(line, sizeof(line), f))
            fprintf(stderr, "  | %s", line);
        if (f)
            fclose(f);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool output_has(const char *needle)
{
    char path[600], buf[65536];
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/out.txt", dir);
    f = fopen(path, "r");
    CHECK(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

static void tokens_json(FILE *f, unsigned seed, unsigned T)
{
    uint32_t *tok = malloc(T * sizeof(*tok));

    tok_ids(seed, T, tok);
    fprintf(f, "[");
    for (unsigned i = 0; i < T; i++)
        fprintf(f, "%s%u", i ? "," : "", tok[i]);
    fprintf(f, "]");
    free(tok);
}

static const char *path_in(const char *name)
{
    static char bufs[8][600];
    static int i;

    i = (i + 1) % 8;
    snprintf(bufs[i], sizeof(bufs[i]), "%s/%s", dir, name);
    return bufs[i];
}

#define NS_A "model=t;dtype=bf16;tokens_per_block=4"
#define NS_K "model=t;dtype=bf16;tokens_per_block=4;run=kill"
#define NS_B "model=t;dtype=bf16;tokens_per_block=4;run=bad"
#define NS_H "model=t;dtype=fp16;tokens_per_block=4"
#define NS_P "model=t;dtype=bf16;tokens_per_block=4;run=promote"

static void test_import(void)
{
    FILE *m = fopen(path_in("m1.jsonl"), "w");
    FILE *tf = fopen(path_in("p3.tokens"), "w");
    kvs_client_t *c;
    uint64_t puts;

    write_st(path_in("p1.safetensors"), 1, 64, false, "BF16");
    write_st(path_in("p2.safetensors"), 2, 32, true, "BF16");
    write_st(path_in("p3.safetensors"), 3, 16, false, "BF16");
    CHECK(m && tf);
    tokens_json(tf, 3, 16);
    CHECK(fclose(tf) == 0);
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_A);
    tokens_json(m, 1, 64);
    fprintf(m, ", \"kv_file\": \"p1.safetensors\", \"class\": \"user\", "
               "\"ttl_ms\": 3600000, \"group\": 11}\n\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_A);
    tokens_json(m, 2, 32);
    fprintf(m, ", \"kv_file\": \"p2.safetensors\", \"layout\": \"packed\", "
               "\"class\": \"pinned\"}\n");
    fprintf(m,
            "{\"namespace\": \"%s\", \"tokens_file\": \"p3.tokens\", "
            "\"kv_file\": \"%s\"}\n",
            NS_A, path_in("p3.safetensors"));
    CHECK(fclose(m) == 0);

    CHECK_EQ(run((const char *[]){"import", path_in("m1.jsonl"), NULL}), 0);
    CHECK(output_has("import: 28 imported, 0 skipped, 0 failed"));
    verify_prompt(NS_A, 1, 64);
    verify_prompt(NS_A, 2, 32);
    verify_prompt(NS_A, 3, 16);

    /* Again: everything is there already. */
    c = kvs_e2e_connect(&d, NS_A, NULL);
    puts = kvs_e2e_stat(c, "puts");
    CHECK_EQ(run((const char *[]){"import", path_in("m1.jsonl"), NULL}), 0);
    CHECK(output_has("import: 0 imported, 28 skipped, 0 failed"));
    CHECK_EQ(kvs_e2e_stat(c, "puts"), puts);
    kvs_client_destroy(c);
}

static void test_kill_and_resume(void)
{
    FILE *m = fopen(path_in("m2.jsonl"), "w");
    kvs_client_t *c;
    uint64_t puts;
    size_t present = 0, nb = 256 / TPB;
    uint32_t tok[256];
    uint8_t keys[256 / TPB][32], pres[256 / TPB];
    kvs_client_key_t k[256 / TPB];

    write_st(path_in("p4.safetensors"), 4, 256, false, "BF16");
    CHECK(m);
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_K);
    tokens_json(m, 4, 256);
    fprintf(m, ", \"kv_file\": \"p4.safetensors\"}\n");
    CHECK(fclose(m) == 0);
    /* Small batches, two in flight, killed after 20 blocks were acked. */
    CHECK_EQ(
        run((const char *[]){"-j", "2", "--batch-kib", "16", "--kill-after",
                             "20", "import", path_in("m2.jsonl"), NULL}),
        128 + SIGKILL);
    tok_ids(4, 256, tok);
    chain(tok, nb, keys);
    for (size_t i = 0; i < nb; i++)
        k[i] = (kvs_client_key_t){keys[i], 32};
    c = kvs_e2e_connect(&d, NS_K, NULL);
    CHECK_EQ(kvs_client_exists(c, k, nb, pres), 0);
    for (size_t i = 0; i < nb; i++)
        present += pres[i];
    fprintf(stderr, "killed import left %zu of %zu blocks\n", present, nb);
    CHECK(present >= 20 && present < nb);
    puts = kvs_e2e_stat(c, "puts");
    CHECK_EQ(run((const char *[]){"import", path_in("m2.jsonl"), NULL}), 0);
    /* No block put twice: the second run put exactly the missing ones. */
    CHECK_EQ(kvs_e2e_stat(c, "puts") - puts, nb - present);
    kvs_client_destroy(c);
    verify_prompt(NS_K, 4, 256);
}

static void test_bad_input(void)
{
    FILE *m = fopen(path_in("m3.jsonl"), "w");
    char cmd[1200];

    write_st(path_in("good.safetensors"), 5, 16, false, "BF16");
    write_st(path_in("trunc.safetensors"), 6, 16, false, "BF16");
    write_st(path_in("short.safetensors"), 7, 12, false, "BF16");
    write_st(path_in("half.safetensors"), 8, 16, false, "BF16");
    snprintf(cmd, sizeof(cmd), "truncate -s -100 %s",
             path_in("trunc.safetensors"));
    CHECK(system(cmd) == 0);
    CHECK(m);
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": [1, 2,\n", NS_B);
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_B);
    tokens_json(m, 5, 16);
    fprintf(m, ", \"kv_file\": \"missing.safetensors\"}\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_B);
    tokens_json(m, 6, 16);
    fprintf(m, ", \"kv_file\": \"trunc.safetensors\"}\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_B);
    tokens_json(m, 7, 16);
    fprintf(m, ", \"kv_file\": \"short.safetensors\"}\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_H);
    tokens_json(m, 8, 16);
    fprintf(m, ", \"kv_file\": \"half.safetensors\"}\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_B);
    tokens_json(m, 5, 16);
    fprintf(m, ", \"kv_file\": \"good.safetensors\"}\n");
    CHECK(fclose(m) == 0);
    CHECK_EQ(run((const char *[]){"import", path_in("m3.jsonl"), NULL}), 1);
    CHECK(output_has("m3.jsonl:1: not valid JSON: the object does not end"));
    CHECK(output_has("m3.jsonl:2: ") && output_has("missing.safetensors: "
                                                   "cannot open"));
    CHECK(output_has("m3.jsonl:3: ") && output_has("trunc.safetensors: "
                                                   "tensor"));
    CHECK(output_has("truncated"));
    CHECK(output_has("m3.jsonl:4: ") &&
          output_has("tensors hold 12 tokens but the line has 16"));
    CHECK(output_has("m3.jsonl:5: ") && output_has("is BF16 but namespace"));
    CHECK(output_has("import: 4 imported, 0 skipped, 0 failed"));
    CHECK(output_has("5 manifest lines not loaded"));
    verify_prompt(NS_B, 5, 16);
}

static void test_promote_export(void)
{
    FILE *m = fopen(path_in("m4.jsonl"), "w");
    size_t dram, nvme, nb = 64 / TPB;
    char budget[32];
    uint32_t tok[64];
    uint8_t keys[64 / TPB][32];
    kvs_client_key_t k[64 / TPB];
    int del[64 / TPB];
    kvs_client_t *c;

    write_st(path_in("p9.safetensors"), 9, 64, false, "BF16");
    write_st(path_in("p10.safetensors"), 10, 64, false, "BF16");
    CHECK(m);
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_P);
    tokens_json(m, 9, 64);
    fprintf(m, ", \"kv_file\": \"p9.safetensors\", \"class\": \"user\", "
               "\"group\": 77}\n");
    fprintf(m, "{\"namespace\": \"%s\", \"tokens\": ", NS_P);
    tokens_json(m, 10, 64);
    fprintf(m, ", \"kv_file\": \"p10.safetensors\", \"class\": \"user\", "
               "\"group\": 78}\n");
    CHECK(fclose(m) == 0);
    CHECK_EQ(
        run((const char *[]){"--no-dram", "import", path_in("m4.jsonl"), NULL}),
        0);
    tiers(NS_P, 9, 64, &dram, &nvme);
    CHECK_EQ(nvme, nb);
    CHECK_EQ(
        run((const char *[]){"-n", NS_P, "promote", "--group", "77", NULL}), 0);
    CHECK(output_has("promote: 16 promoted, 0 skipped, 0 failed"));
    tiers(NS_P, 9, 64, &dram, &nvme);
    CHECK_EQ(dram, nb);
    /* Group 78 with a budget of 5 blocks: the first 5 of the chain. */
    snprintf(budget, sizeof(budget), "%u", 5u * BLOCK / 1024);
    CHECK_EQ(run((const char *[]){"-n", NS_P, "promote", "--group", "78",
                                  "--budget-kib", budget, NULL}),
             0);
    CHECK(output_has("stopped at the DRAM budget"));
    tiers(NS_P, 10, 64, &dram, &nvme);
    CHECK_EQ(dram, 5);
    CHECK_EQ(nvme, nb - 5);

    /* Export group 77, delete it, import the export: the same blocks. */
    CHECK_EQ(run((const char *[]){"-n", NS_P, "export", "--group", "77",
                                  "--out", path_in("exp"), NULL}),
             0);
    CHECK(output_has("export: 16 exported"));
    tok_ids(9, 64, tok);
    chain(tok, nb, keys);
    for (size_t i = 0; i < nb; i++)
        k[i] = (kvs_client_key_t){keys[i], 32};
    c = kvs_e2e_connect(&d, NS_P, NULL);
    CHECK_EQ(kvs_client_delete(c, k, nb, del), 0);
    kvs_client_destroy(c);
    CHECK_EQ(
        run((const char *[]){"import", path_in("exp/manifest.jsonl"), NULL}),
        0);
    CHECK(output_has("import: 16 imported"));
    verify_prompt(NS_P, 9, 64);
}

int main(void)
{
    kvs_e2e_daemon_init(&d, "warmup");
    if (d.external) {
        fprintf(stderr,
                "needs its own daemon and files; KVS_TEST_DAEMON set\n");
        return KVS_TEST_SKIP;
    }
    /* Absolute: the tool resolves files against the manifest's folder. */
    CHECK(realpath(d.dir, dir) != NULL);
    kvs_e2e_daemon_start(&d, NULL);
    test_import();
    test_kill_and_resume();
    test_bad_input();
    test_promote_export();
    kvs_e2e_daemon_stop(&d);
    return 0;
}
