/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the safetensors reader of kvstash-warmup
 * (kvs_safetensors_parse, which kvs_safetensors_open runs on the file's
 * mapping). Input: a whole file.
 *
 * The reader must never crash or read out of bounds, and every tensor it
 * accepts must keep the promises the importer relies on: a known dtype of
 * elem_size bytes, at most KVS_SAFETENSORS_DIMS_MAX dimensions whose
 * product times elem_size is exactly len, and len bytes at data inside the
 * file's data section (each byte is read, so ASan sees any overrun of the
 * exact-size heap copy). Every tensor can be found by its name.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/kvstash-warmup/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tensor(const kvs_safetensors_t *st,
                         const kvs_safetensors_tensor_t *t)
{
    volatile uint8_t x = 0;
    unsigned __int128 bytes;

    if (!t->name || !t->elem_size ||
        kvs_safetensors_dtype_size(t->dtype) != t->elem_size ||
        t->ndim > KVS_SAFETENSORS_DIMS_MAX)
        abort();
    bytes = t->elem_size;
    for (uint32_t i = 0; i < t->ndim; i++)
        bytes *= t->shape[i];
    if (bytes != t->len)
        abort(); /* the shape does not describe the bytes */
    if (t->len && (t->data < st->map + 8 || t->data > st->map + st->size ||
                   t->len > (uint64_t)(st->map + st->size - t->data)))
        abort();
    for (uint64_t i = 0; i < t->len; i++)
        x ^= t->data[i];
    (void)x;
    if (kvs_safetensors_find(st, t->name) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_safetensors_t *st = NULL;
    char err[256];
    uint8_t *copy;

    /* An exact-size heap copy so ASan sees any read past the file. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    err[0] = '\0';
    if (kvs_safetensors_parse(copy, size, &st, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < st->ntensors; i++)
            check_tensor(st, &st->tensors[i]);
        kvs_safetensors_close(st);
    } else if (!err[0]) {
        abort(); /* refused without saying why */
    }
    free(copy);
    return 0;
}
