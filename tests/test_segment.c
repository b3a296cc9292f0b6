/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The segment's write paths together: blocks appended through the write
 * buffers (copied) and straight from an image (not copied) interleave in
 * one region; every block must read back exactly from where append said it
 * went. A buffer in flight submitted a second time used to write the next
 * fill's bytes over the first one's place (found by kvstash-bench with
 * compression on, where compressed blocks go through the buffers and raw
 * ones do not).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvstash/status.h"
#include "kvstore/segment.h"
#include "tests/testutil.h"

#define NBLK 3000
#define IMG_BYTES (8u << 10) /* payload of image blocks */

static void test_buffered_and_image_writes_interleave(void **state)
{
    const char *dir = kvs_test_dir("segment_mix");
    char path[4200];
    kvs_segment_t *seg;
    static kvs_seg_loc_t loc[NBLK];
    static uint32_t lens[NBLK];
    uint8_t *payload = malloc(64u << 10), *img;
    uint64_t rng = 3;

    (void)state;
    snprintf(path, sizeof(path), "%s/data.kvs", dir);
    kvs_segment_config_t c = {.path = path,
                              .file_bytes = 256u << 20,
                              .region_bytes = 128u << 20,
                              .max_block_bytes = 64u << 10,
                              .io_depth = 4,
                              .read_slots = 1,
                              .write_buf_bytes = 64u << 10};
    int ret = kvs_segment_open(&c, &seg);
    if (ret == KVS_EURING) {
        printf("io_uring refused: skip\n");
        exit(KVS_TEST_SKIP);
    }
    assert_int_equal(ret, 0);
    assert_int_equal(kvs_segment_region_open(seg, 0, 1), 0);
    /* Each image block has its own memory, valid until the flush. */
    img = aligned_alloc(4096, (size_t)NBLK * IMG_BYTES);
    assert_non_null(img);
    for (uint32_t i = 0; i < NBLK; i++) {
        uint8_t key[8];
        memcpy(key, &i, 4);
        memset(key + 4, 0, 4);
        bool image = kvs_test_rand(&rng) % 2;
        lens[i] = image ? IMG_BYTES
                        : 1 + (uint32_t)(kvs_test_rand(&rng) % (48u << 10));
        uint32_t part = lens[i];
        kvs_seg_block_t blk = {.ns = 1,
                               .key_len = 8,
                               .key = key,
                               .key_hash = i,
                               .nparts = 1,
                               .part_lens = &part,
                               .raw_len = lens[i],
                               .stored_len = lens[i],
                               .data_xxh = i};
        if (image) {
            uint8_t *p = img + (size_t)i * IMG_BYTES;
            kvs_test_fill(p, IMG_BYTES, i);
            ret = kvs_segment_append_image(seg, &blk, p, 4 + i, &loc[i]);
        } else {
            kvs_test_fill(payload, lens[i], i);
            kvs_iov_t iov = {payload, lens[i]};
            ret = kvs_segment_append(seg, &blk, &iov, 1, &loc[i]);
        }
        assert_int_equal(ret, 0);
        if (i % 97 == 0)
            kvs_segment_submit(seg);
        if (i % 13 == 0)
            kvs_segment_poll(seg, false);
    }
    assert_int_equal(kvs_segment_flush(seg), 0);

    uint8_t *want = malloc(64u << 10);
    for (uint32_t i = 0; i < NBLK; i++) {
        kvs_seg_block_t out;
        const uint8_t *pl;
        assert_int_equal(kvs_segment_read_submit(seg, &loc[i], 0, i), 0);
        assert_int_equal(kvs_segment_read_reap(seg, 1, NULL, NULL), 1);
        const uint8_t *buf = kvs_segment_slot(seg, 0);
        assert_int_equal(kvs_segment_block_decode(buf, &loc[i], &out, &pl), 0);
        assert_int_equal(out.key_hash, i);
        assert_int_equal(out.raw_len, lens[i]);
        kvs_test_fill(want, lens[i], i);
        assert_memory_equal(pl, want, lens[i]);
    }
    kvs_segment_close(seg);
    free(want);
    free(img);
    free(payload);
    kvs_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffered_and_image_writes_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
