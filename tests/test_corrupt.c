/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bit rot: bytes of the data file and of index records change behind the
 * engine's back, and it must never hand out wrong bytes.
 *
 *   - data.kvs: blocks are written and flushed, the store is closed, and
 *     bytes are flipped in block headers (fixed fields and part tables),
 *     payloads and padding. After a reopen, kvs_store_verify() reports
 *     exactly the damaged blocks; every get returns the right bytes or
 *     KVS_ENOTFOUND, and stats.corrupt_reads counts the damaged ones.
 *     Padding is not covered by a checksum and must not matter.
 *   - index records: kvs_index_rec_decode() on truncated, extended,
 *     bit-flipped and out-of-range records returns KVS_ECORRUPT.
 *   - block headers: kvs_segment_block_decode() on flipped, re-sealed
 *     (checksum fixed up, semantics wrong) and random headers returns
 *     KVS_ECORRUPT.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/xxh.h"

#include "common/endian.h"
#include "kvstore/index.h"
#include "kvstore/segment.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

#define NBLK 60u
#define BLK_MAX (100u << 10)
#define KEYLEN 12u

/* What is done to block i on disk. */
enum damage {
    DMG_NONE = 0,
    DMG_HDR_FIXED, /* one byte of bytes [0, 136) */
    DMG_HDR_PARTS, /* one byte of the part-length table */
    DMG_PAYLOAD,   /* one byte of the stored payload */
    DMG_PADDING,   /* one byte after the payload: harmless */
    DMG_TORN,      /* 512 zero bytes inside the payload */
    DMG_COUNT
};

static const char *const dmg_name[DMG_COUNT] = {
    "none", "header", "part table", "payload", "padding", "torn sector",
};

static bool dmg_is_fatal(enum damage d)
{
    return d != DMG_NONE && d != DMG_PADDING;
}

static void make_key(char *key, uint32_t i)
{
    snprintf(key, KEYLEN + 1, "rot-%08u", i);
}

static uint32_t blk_len(uint32_t i)
{
    uint64_t st = i * 7919ull;

    return 512u + (uint32_t)(kvs_test_rand(&st) % (BLK_MAX - 512u));
}

static uint32_t blk_parts(uint32_t i)
{
    return 1 + i % 3;
}

/* Odd blocks are random (stored raw), even ones compress. */
static void blk_fill(uint8_t *p, uint32_t i)
{
    uint32_t len = blk_len(i);

    if (i & 1) {
        kvs_test_fill(p, len, i);
        return;
    }
    for (uint32_t k = 0; k < len; k++)
        p[k] = (uint8_t)((k >> 1) * (i + 1)) & 0x3f;
}

static void config(kvs_store_config_t *c, const char *dir)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = 32u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 256u << 10;
    c->max_blocks = 1024;
    c->io_depth = 8;
}

/* Where the scan of data.kvs found block i. */
struct found {
    bool seen;
    uint64_t off;
    uint32_t hdr_len, stored_len, disk_len;
    uint32_t pay_off; /* the payload starts on its own 4 KiB boundary */
};

/* Finds every block header in the file by its magic at 4 KiB boundaries. */
static void scan_file(const char *path, struct found *f)
{
    int fd = open(path, O_RDONLY);
    uint8_t hdr[KVS_SEG_HDR_FIXED];
    off_t size;

    assert_true(fd >= 0);
    size = lseek(fd, 0, SEEK_END);
    for (off_t off = 0; off + (off_t)sizeof(hdr) <= size;
         off += KVS_SEG_ALIGN) {
        assert_int_equal(pread(fd, hdr, sizeof(hdr), off), sizeof(hdr));
        if (kvs_le32_load(hdr) != KVS_SEG_MAGIC)
            continue;
        unsigned i;
        char key[KEYLEN + 1];
        memcpy(key, hdr + 72, KEYLEN);
        key[KEYLEN] = '\0';
        if (kvs_le16_load(hdr + 28) != KEYLEN ||
            sscanf(key, "rot-%08u", &i) != 1 || i >= NBLK)
            continue;
        assert_false(f[i].seen); /* each block is written once */
        f[i].seen = true;
        f[i].off = (uint64_t)off;
        f[i].hdr_len = kvs_le16_load(hdr + 30);
        f[i].pay_off = kvs_segment_hdr_bytes(kvs_le32_load(hdr + 32));
        f[i].stored_len = (uint32_t)kvs_le64_load(hdr + 48);
        f[i].disk_len = kvs_segment_disk_len(KEYLEN, kvs_le32_load(hdr + 32),
                                             f[i].stored_len);
        off += f[i].disk_len - KVS_SEG_ALIGN;
    }
    close(fd);
}

static void flip(int fd, uint64_t off, uint8_t mask)
{
    uint8_t b;

    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
}

struct bad_seen {
    uint32_t n;
    bool hit[NBLK];
};

static void on_bad(void *arg, uint32_t ns, const void *key, uint32_t key_len,
                   int status)
{
    struct bad_seen *b = arg;
    char k[KEYLEN + 1];
    unsigned i;

    (void)ns;
    assert_int_equal(key_len, KEYLEN);
    assert_int_equal(status, KVS_ECORRUPT);
    memcpy(k, key, KEYLEN);
    k[KEYLEN] = '\0';
    assert_int_equal(sscanf(k, "rot-%08u", &i), 1);
    assert_true(i < NBLK);
    assert_false(b->hit[i]);
    b->hit[i] = true;
    b->n++;
}

/* Gets every block: right bytes, or KVS_ENOTFOUND where damaged. Returns
 * how many were missing. */
static uint32_t get_all(kvs_store_t *s, uint32_t ns, const enum damage *dmg,
                        uint8_t *buf, uint8_t *want)
{
    uint32_t missing = 0;

    for (uint32_t i = 0; i < NBLK; i++) {
        char key[KEYLEN + 1];
        uint32_t lens[4];
        kvs_block_info_t info;
        make_key(key, i);
        kvs_get_args_t g = {.ns = ns,
                            .key = key,
                            .key_len = KEYLEN,
                            .buf = buf,
                            .cap = BLK_MAX,
                            .part_lens = lens,
                            .part_cap = 4};
        memset(buf, 0xee, BLK_MAX);
        int ret = kvs_store_get(s, &g, &info);
        if (dmg_is_fatal(dmg[i])) {
            if (ret != KVS_ENOTFOUND)
                fail_msg("block %u with damage '%s': get returned %s", i,
                         dmg_name[dmg[i]], kvs_strerror(ret));
            missing++;
            continue;
        }
        if (ret != 0)
            fail_msg("block %u with damage '%s': get returned %s", i,
                     dmg_name[dmg[i]], kvs_strerror(ret));
        blk_fill(want, i);
        assert_int_equal(info.data_len, blk_len(i));
        assert_int_equal(info.nparts, blk_parts(i));
        assert_memory_equal(buf, want, blk_len(i));
    }
    return missing;
}

static void test_data_file_bitrot(void **state)
{
    const char *dir = kvs_test_dir("corrupt");
    char path[4200];
    kvs_store_config_t c;
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns;
    uint8_t *buf = malloc(BLK_MAX), *want = malloc(BLK_MAX);
    static struct found f[NBLK];
    enum damage dmg[NBLK];
    uint32_t nfatal = 0, count[DMG_COUNT] = {0};
    uint64_t rng = 0xb17b07, checked, bad;

    (void)state;
    config(&c, dir);
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "rot", 2, &ns), 0);
    for (uint32_t i = 0; i < NBLK; i++) {
        char key[KEYLEN + 1];
        kvs_iov_t parts[3];
        uint32_t len = blk_len(i), np = blk_parts(i), off = 0;
        make_key(key, i);
        blk_fill(buf, i);
        for (uint32_t p = 0; p < np; p++) {
            uint32_t n = p + 1 == np ? len - off : len / np;
            parts[p] = (kvs_iov_t){buf + off, n};
            off += n;
        }
        kvs_put_args_t a = {.ns = ns,
                            .key = key,
                            .key_len = KEYLEN,
                            .parts = parts,
                            .nparts = np};
        assert_int_equal(kvs_store_put(s, &a), 0);
    }
    assert_int_equal(kvs_store_flush(s), 0);
    kvs_store_close(s);

    snprintf(path, sizeof(path), "%s/data.kvs", dir);
    scan_file(path, f);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    for (uint32_t i = 0; i < NBLK; i++) {
        assert_true(f[i].seen);
        uint32_t pay_end = f[i].pay_off + f[i].stored_len;
        uint8_t mask = (uint8_t)(1u << (kvs_test_rand(&rng) % 8));
        dmg[i] = (enum damage)(i % DMG_COUNT);
        switch (dmg[i]) {
        case DMG_NONE:
            break;
        case DMG_HDR_FIXED:
            flip(fd, f[i].off + kvs_test_rand(&rng) % KVS_SEG_HDR_FIXED, mask);
            break;
        case DMG_HDR_PARTS:
            flip(fd,
                 f[i].off + KVS_SEG_HDR_FIXED +
                     kvs_test_rand(&rng) % (f[i].hdr_len - KVS_SEG_HDR_FIXED),
                 mask);
            break;
        case DMG_PAYLOAD:
            flip(fd,
                 f[i].off + f[i].pay_off +
                     kvs_test_rand(&rng) % f[i].stored_len,
                 mask);
            break;
        case DMG_PADDING:
            if (pay_end == f[i].disk_len) {
                dmg[i] = DMG_NONE; /* no padding to damage */
                break;
            }
            flip(fd,
                 f[i].off + pay_end +
                     kvs_test_rand(&rng) % (f[i].disk_len - pay_end),
                 mask);
            break;
        case DMG_TORN: {
            static const uint8_t zero[512];
            uint32_t at = f[i].pay_off;
            if (f[i].stored_len > sizeof(zero))
                at += (uint32_t)(kvs_test_rand(&rng) %
                                 (f[i].stored_len - sizeof(zero)));
            /* Zeros where there were zeros already change nothing: damage
             * bytes that differ. */
            uint8_t old[512];
            assert_int_equal(
                pread(fd, old, sizeof(old), (off_t)(f[i].off + at)),
                sizeof(old));
            if (memcmp(old, zero, sizeof(old)) == 0)
                memset(old, 0xa5, sizeof(old));
            else
                memset(old, 0, sizeof(old));
            assert_int_equal(
                pwrite(fd, old, sizeof(old), (off_t)(f[i].off + at)),
                sizeof(old));
            break;
        }
        default:
            break;
        }
        count[dmg[i]]++;
        nfatal += dmg_is_fatal(dmg[i]);
    }
    assert_int_equal(fsync(fd), 0);
    close(fd);
    print_message("damaged %u of %u blocks: header %u, part table %u, "
                  "payload %u, torn %u; padding %u (harmless), none %u\n",
                  nfatal, NBLK, count[DMG_HDR_FIXED], count[DMG_HDR_PARTS],
                  count[DMG_PAYLOAD], count[DMG_TORN], count[DMG_PADDING],
                  count[DMG_NONE]);

    /* Reopen 1: gets first. Each damaged block is a miss, counted once. */
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_ns_open(s, "rot", 2, &ns), 0);
    assert_int_equal(get_all(s, ns, dmg, buf, want), nfatal);
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, nfatal);
    /* The failed blocks were dropped: a second pass is plain misses. */
    assert_int_equal(get_all(s, ns, dmg, buf, want), nfatal);
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, nfatal);
    kvs_store_close(s);

    /* Reopen 2: verify first finds exactly the damaged blocks. */
    struct bad_seen seen = {0};
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_verify(s, on_bad, &seen, &checked, &bad), 0);
    assert_int_equal(checked, NBLK);
    assert_int_equal(bad, nfatal);
    assert_int_equal(seen.n, nfatal);
    for (uint32_t i = 0; i < NBLK; i++)
        assert_int_equal(seen.hit[i], dmg_is_fatal(dmg[i]));
    assert_int_equal(get_all(s, ns, dmg, buf, want), nfatal);
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, nfatal);
    kvs_store_close(s);

    /* Reopen 3: verify dropped the bad blocks from the index, so they are
     * gone for good and nothing is left to find. */
    assert_int_equal(kvs_store_open(&c, &s), 0);
    assert_int_equal(kvs_store_verify(s, NULL, NULL, &checked, &bad), 0);
    assert_int_equal(bad, 0);
    assert_int_equal(checked, NBLK - nfatal);
    assert_int_equal(get_all(s, ns, dmg, buf, want), nfatal);
    kvs_store_stats(s, &st);
    assert_int_equal(st.corrupt_reads, 0);
    kvs_store_close(s);

    free(buf);
    free(want);
    kvs_test_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Index records */

static void sample_rec(kvs_index_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    r->ns = 7;
    r->key_len = 20;
    memcpy(r->key, "0123456789abcdefghij", 20);
    r->parent_len = 10;
    memcpy(r->parent, "parent-key", 10);
    r->codec = 2;
    r->elem_size = 2;
    r->cls = KVS_CLASS_USER;
    r->nparts = 3;
    r->region = 5;
    r->disk_len = 3 * KVS_SEG_ALIGN;
    r->disk_off = 5ull * (4u << 20) + 8192;
    r->gen = 42;
    r->raw_len = 20000;
    r->stored_len = 9000;
    r->data_xxh = 0x1122334455667788ull;
    r->expiry_ms = 1700000000000ull;
    r->group = 99;
    r->uid = 123456;
}

/* Fixes the trailing check of an encoded record after a deliberate edit. */
static void rec_reseal(uint8_t *v, size_t n_without_check)
{
    kvs_le32_store(v + n_without_check,
                   (uint32_t)XXH3_64bits(v, n_without_check));
}

static void test_index_record_decode(void **state)
{
    kvs_index_rec_t r, out;
    uint8_t k[KVS_INDEX_KEY_MAX + 8], v[KVS_INDEX_REC_MAX + 8],
        w[KVS_INDEX_REC_MAX + 8];
    size_t kl, vl;
    uint64_t rng = 77;

    (void)state;
    sample_rec(&r);
    kl = kvs_index_key_encode(r.uid, k);
    vl = kvs_index_rec_encode(&r, v);
    assert_int_equal(kvs_index_rec_decode(k, kl, v, vl, &out), 0);
    assert_memory_equal(&out, &r, sizeof(r));

    /* Truncated or extended. */
    for (size_t n = 0; n < vl; n++)
        assert_int_equal(kvs_index_rec_decode(k, kl, v, n, &out), KVS_ECORRUPT);
    memcpy(w, v, vl);
    w[vl] = 0;
    assert_int_equal(kvs_index_rec_decode(k, kl, w, vl + 1, &out),
                     KVS_ECORRUPT);
    /* Every single-bit flip of the value. */
    for (size_t bit = 0; bit < vl * 8; bit++) {
        memcpy(w, v, vl);
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(kvs_index_rec_decode(k, kl, w, vl, &out),
                         KVS_ECORRUPT);
    }
    /* Keys: wrong prefix, too short, too long. */
    uint8_t kk[KVS_INDEX_KEY_MAX + 8];
    memcpy(kk, k, kl);
    kk[0] = 'C';
    assert_int_equal(kvs_index_rec_decode(kk, kl, v, vl, &out), KVS_ECORRUPT);
    assert_int_equal(kvs_index_rec_decode(k, 5, v, vl, &out), KVS_ECORRUPT);
    assert_int_equal(kvs_index_rec_decode(k, 0, v, vl, &out), KVS_ECORRUPT);
    memcpy(kk, k, kl);
    assert_int_equal(
        kvs_index_rec_decode(kk, KVS_INDEX_KEY_MAX + 1, v, vl, &out),
        KVS_ECORRUPT);
    kk[0] = 'B'; /* a format 1 name is not a record of this format */
    assert_int_equal(kvs_index_rec_decode(kk, kl, v, vl, &out), KVS_ECORRUPT);
    /* The name is the uid; the longest key round-trips. */
    kvs_index_rec_t longest = r;
    longest.key_len = KVS_KEY_MAX;
    memset(longest.key, 'x', KVS_KEY_MAX);
    longest.uid = 0x0102030405060708ull;
    kvs_index_key_encode(longest.uid, kk);
    size_t ll = kvs_index_rec_encode(&longest, w);
    assert_int_equal(kvs_index_rec_decode(kk, kl, w, ll, &out), 0);
    assert_int_equal(out.key_len, KVS_KEY_MAX);
    assert_int_equal(out.uid, longest.uid);

    /* Checks behind the checksum: re-sealed records with bad fields. */
    const size_t n = vl - 4;
    struct {
        const char *what;
        size_t off;
        uint8_t byte;
    } edits[] = {
        {"version 1", 0, 1},
        {"version 3", 0, 3},
        {"version 0", 0, 0},
        {"key_len 0", 76, 0},
        {"class out of range", 3, KVS_CLASS_COUNT},
        {"nparts 0", 4, 0},
    };
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        memcpy(w, v, vl);
        if (edits[e].off == 4)
            kvs_le32_store(w + 4, 0);
        else
            w[edits[e].off] = edits[e].byte;
        rec_reseal(w, n);
        if (kvs_index_rec_decode(k, kl, w, vl, &out) != KVS_ECORRUPT)
            fail_msg("re-sealed record with %s was accepted", edits[e].what);
    }
    memcpy(w, v, vl);
    kvs_le32_store(w + 4, KVS_PARTS_MAX + 1);
    rec_reseal(w, n);
    assert_int_equal(kvs_index_rec_decode(k, kl, w, vl, &out), KVS_ECORRUPT);
    memcpy(w, v, vl);
    kvs_le32_store(w + 12, 0); /* disk_len 0 */
    rec_reseal(w, n);
    assert_int_equal(kvs_index_rec_decode(k, kl, w, vl, &out), KVS_ECORRUPT);
    memcpy(w, v, vl);
    kvs_le64_store(w + 40, r.disk_len + 1ull); /* stored_len > disk_len */
    rec_reseal(w, n);
    assert_int_equal(kvs_index_rec_decode(k, kl, w, vl, &out), KVS_ECORRUPT);
    /* parent_len over the maximum, with a length and check to match. */
    kvs_index_rec_t big = r;
    big.parent_len = KVS_KEY_MAX;
    size_t bl = kvs_index_rec_encode(&big, w);
    assert_int_equal(kvs_index_rec_decode(k, kl, w, bl, &out), 0);
    uint8_t w2[KVS_INDEX_REC_MAX + 8];
    size_t at = 78 + r.key_len;
    memcpy(w2, w, at);
    w2[77] = KVS_KEY_MAX + 1;
    memset(w2 + at, 'p', KVS_KEY_MAX + 1);
    rec_reseal(w2, at + KVS_KEY_MAX + 1);
    assert_int_equal(
        kvs_index_rec_decode(k, kl, w2, at + KVS_KEY_MAX + 5, &out),
        KVS_ECORRUPT);
    /* key_len over the maximum, the same way. */
    memcpy(w2, w, 78);
    w2[76] = KVS_KEY_MAX + 1;
    w2[77] = 0;
    memset(w2 + 78, 'k', KVS_KEY_MAX + 1);
    rec_reseal(w2, 78 + KVS_KEY_MAX + 1);
    assert_int_equal(
        kvs_index_rec_decode(k, kl, w2, 78 + KVS_KEY_MAX + 5, &out),
        KVS_ECORRUPT);

    /* Random values of every plausible length. */
    for (int t = 0; t < 20000; t++) {
        size_t len = kvs_test_rand(&rng) % (KVS_INDEX_REC_MAX + 8);
        kvs_test_fill(w, len, kvs_test_rand(&rng));
        if (len && t % 2)
            w[0] = 2; /* get past the version check */
        if (len > 84 && t % 4 == 1) {
            w[76] = 1; /* and the length check */
            w[77] = (uint8_t)(len - 83 > KVS_KEY_MAX ? KVS_KEY_MAX : len - 83);
        }
        assert_int_equal(kvs_index_rec_decode(k, kl, w, len, &out),
                         KVS_ECORRUPT);
    }
}

/* ---------------------------------------------------------------------- */
/* Block headers */

#define HBUF (4 * KVS_SEG_ALIGN)

/* Recomputes the header checksum after a deliberate edit, trusting the
 * header length field when it is sane. */
static void hdr_reseal(uint8_t *b)
{
    uint32_t hl = kvs_le16_load(b + 30);

    if (hl < 72 || hl > KVS_SEG_HDR_MAX)
        hl = KVS_SEG_HDR_FIXED;
    kvs_le64_store(b + 64,
                   XXH3_64bits_withSeed(b + 72, hl - 72, XXH3_64bits(b, 64)));
}

static void test_segment_header_decode(void **state)
{
    static uint8_t good[HBUF] __attribute__((aligned(4096)));
    static uint8_t b[HBUF] __attribute__((aligned(4096)));
    uint32_t part_lens[3] = {1000, 0, 2000};
    const uint8_t key[] = "header-test-key";
    kvs_seg_block_t blk = {
        .ns = 3,
        .key_len = sizeof(key) - 1,
        .key = key,
        .key_hash = 0xabcd,
        .codec = 1,
        .elem_size = 2,
        .nparts = 3,
        .part_lens = part_lens,
        .raw_len = 3000,
        .stored_len = 2500,
        .data_xxh = 0x5555,
    };
    kvs_seg_block_t out;
    const uint8_t *payload;
    uint32_t hl = kvs_segment_block_encode(&blk, 9, good);
    kvs_seg_loc_t loc = {
        .off = 0,
        .gen = 9,
        .region = 0,
        .disk_len = kvs_segment_disk_len(blk.key_len, 3, blk.stored_len)};
    uint64_t rng = 5;

    (void)state;
    assert_int_equal(hl, KVS_SEG_HDR_FIXED + 12);
    assert_int_equal(kvs_segment_block_decode(good, &loc, &out, &payload), 0);
    assert_int_equal(out.ns, 3);
    assert_int_equal(out.key_len, blk.key_len);
    assert_memory_equal(out.key, key, blk.key_len);
    assert_int_equal(out.raw_len, 3000);
    assert_int_equal(out.stored_len, 2500);
    assert_int_equal(out.nparts, 3);
    assert_int_equal(out.part_lens[2], 2000);
    assert_ptr_equal(payload, good + kvs_segment_hdr_bytes(3));

    /* Every single-bit flip of the header. */
    for (uint32_t bit = 0; bit < hl * 8; bit++) {
        memcpy(b, good, HBUF);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kvs_segment_block_decode(b, &loc, &out, &payload) != KVS_ECORRUPT)
            fail_msg("flip of bit %u (byte %u) was accepted", bit, bit / 8);
    }
    /* Another generation: the region was reused. */
    kvs_seg_loc_t l2 = loc;
    l2.gen = 10;
    assert_int_equal(kvs_segment_block_decode(good, &l2, &out, &payload),
                     KVS_ECORRUPT);
    /* Too short for the header, or for header + payload. */
    l2 = loc;
    l2.disk_len = KVS_SEG_HDR_FIXED + 3;
    assert_int_equal(kvs_segment_block_decode(good, &l2, &out, &payload),
                     KVS_ECORRUPT);
    l2.disk_len = kvs_segment_hdr_bytes(3) + 2499;
    assert_int_equal(kvs_segment_block_decode(good, &l2, &out, &payload),
                     KVS_ECORRUPT);
    l2.disk_len = 0;
    assert_int_equal(kvs_segment_block_decode(good, &l2, &out, &payload),
                     KVS_ECORRUPT);

    /* Re-sealed headers whose fields are wrong. */
    struct {
        const char *what;
        uint32_t off, size;
        uint64_t val;
    } edits[] = {
        {"version 2", 4, 2, 2},
        {"key_len 0", 28, 2, 0},
        {"key_len 65", 28, 2, KVS_KEY_MAX + 1},
        {"hdr_len off by 4", 30, 2, KVS_SEG_HDR_FIXED + 16},
        {"hdr_len short", 30, 2, KVS_SEG_HDR_FIXED},
        {"nparts 0", 32, 4, 0},
        {"nparts 1025", 32, 4, KVS_PARTS_MAX + 1},
        {"nparts 2 (table says 3)", 32, 4, 2},
        {"raw_len not the sum of parts", 40, 8, 3001},
        {"stored_len past disk_len", 48, 8, 8192},
        {"stored_len huge", 48, 8, UINT64_MAX},
        {"generation", 8, 8, 8},
    };
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        memcpy(b, good, HBUF);
        if (edits[e].size == 2)
            kvs_le16_store(b + edits[e].off, (uint16_t)edits[e].val);
        else if (edits[e].size == 4)
            kvs_le32_store(b + edits[e].off, (uint32_t)edits[e].val);
        else
            kvs_le64_store(b + edits[e].off, edits[e].val);
        hdr_reseal(b);
        if (kvs_segment_block_decode(b, &loc, &out, &payload) != KVS_ECORRUPT)
            fail_msg("re-sealed header with %s was accepted", edits[e].what);
    }
    /* A part length that overflows 32 bits in the sum is still caught. */
    memcpy(b, good, HBUF);
    kvs_le32_store(b + KVS_SEG_HDR_FIXED, UINT32_MAX);
    hdr_reseal(b);
    assert_int_equal(kvs_segment_block_decode(b, &loc, &out, &payload),
                     KVS_ECORRUPT);

    /* Random headers, some with a valid magic and version. */
    for (int t = 0; t < 20000; t++) {
        kvs_test_fill(b, 512, kvs_test_rand(&rng));
        if (t % 2) {
            kvs_le32_store(b, KVS_SEG_MAGIC);
            kvs_le16_store(b + 4, KVS_SEG_VERSION);
            kvs_le64_store(b + 8, loc.gen);
        }
        if (t % 4 == 1) {
            uint32_t np = 1 + (uint32_t)(kvs_test_rand(&rng) % 8);
            kvs_le32_store(b + 32, np);
            kvs_le16_store(b + 30, (uint16_t)(KVS_SEG_HDR_FIXED + 4 * np));
            kvs_le16_store(b + 28, 1 + (uint16_t)(kvs_test_rand(&rng) % 64));
        }
        assert_int_equal(kvs_segment_block_decode(b, &loc, &out, &payload),
                         KVS_ECORRUPT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_record_decode),
        cmocka_unit_test(test_segment_header_decode),
        cmocka_unit_test(test_data_file_bitrot),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
