/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpus of the engine's fuzz targets into
 * <dir>/index_record and <dir>/segment_header: valid encodings
 * from the engine's own encoders plus a few damaged ones. Run it to
 * regenerate tests/fuzz/corpus after a format change:
 *   build/tests/make_corpus_engine tests/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kvstore/index.h"
#include "kvstore/segment.h"

static int put(const char *dir, const char *sub, const char *name,
               const void *data, size_t len)
{
    char path[4096];
    FILE *f;

    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        return 1;
    }
    return fclose(f) != 0;
}

/* Index fuzz input: key length byte, key, value. */
static size_t rec_input(const kvs_index_rec_t *r, uint8_t *out)
{
    size_t kl = kvs_index_key_encode(r->uid, out + 1);

    out[0] = (uint8_t)kl;
    return 1 + kl + kvs_index_rec_encode(r, out + 1 + kl);
}

int main(int argc, char **argv)
{
    static uint8_t b[2 * KVS_SEG_ALIGN] __attribute__((aligned(4096)));
    uint8_t in[1 + KVS_INDEX_KEY_MAX + KVS_INDEX_REC_MAX];
    const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    const char *ir = "index_record", *sh = "segment_header";
    kvs_index_rec_t r = {
        .ns = 1,
        .key_len = 8,
        .codec = 1,
        .elem_size = 2,
        .cls = 0,
        .nparts = 2,
        .region = 3,
        .disk_len = 8192,
        .disk_off = 3ull * (4u << 20),
        .gen = 7,
        .raw_len = 10000,
        .stored_len = 6000,
        .data_xxh = 0x0123456789abcdefull,
        .uid = 5,
    };
    size_t n;
    int err = 0;

    memcpy(r.key, "blockkey", 8);
    n = rec_input(&r, in);
    err |= put(dir, ir, "valid-no-parent", in, n);
    err |= put(dir, ir, "truncated", in, n - 3);
    in[20] ^= 0x10;
    err |= put(dir, ir, "flipped", in, n);
    r.parent_len = KVS_KEY_MAX;
    memset(r.parent, 'p', KVS_KEY_MAX);
    r.key_len = KVS_KEY_MAX;
    memset(r.key, 'k', KVS_KEY_MAX);
    r.cls = 2;
    r.expiry_ms = 1700000000000ull;
    n = rec_input(&r, in);
    err |= put(dir, ir, "valid-max-keys", in, n);
    err |= put(dir, ir, "empty", in, 0);

    uint32_t lens[3] = {100, 200, 300};
    kvs_seg_block_t blk = {
        .ns = 2,
        .key_len = 5,
        .key = (const uint8_t *)"hello",
        .key_hash = 42,
        .codec = 0,
        .elem_size = 2,
        .nparts = 3,
        .part_lens = lens,
        .raw_len = 600,
        .stored_len = 600,
        .data_xxh = 99,
    };
    uint32_t hl = kvs_segment_block_encode(&blk, 11, b);
    memset(b + hl, 0x5a, 600);
    err |= put(dir, sh, "valid-3-parts", b, hl + 600);
    err |= put(dir, sh, "header-only", b, hl);
    err |= put(dir, sh, "short", b, 100);
    b[40] ^= 1;
    err |= put(dir, sh, "flipped-raw-len", b, hl + 600);
    blk.nparts = 1;
    lens[0] = 600;
    blk.codec = 1;
    blk.stored_len = 5000;
    hl = kvs_segment_block_encode(&blk, 3, b);
    err |= put(dir, sh, "valid-two-pages", b, hl + 5000);
    return err;
}
