/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading and writing safetensors files, the tensor file format of the
 * model ecosystem:
 *
 *   +-----------+------------------------+-----------------------------+
 *   | u64 LE N  | N bytes of JSON header | raw tensor data             |
 *   +-----------+------------------------+-----------------------------+
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the start of the data) plus an
 * optional "__metadata__" object of strings. It is parsed with json-c.
 * Every offset, size and shape is checked against the file before use, so
 * a truncated or lying file is an error with a message, never a crash.
 */
#ifndef KVS_SAFETENSORS_H
#define KVS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVS_SAFETENSORS_DIMS_MAX 8u

/* One tensor of an open file. */
typedef struct kvs_safetensors_tensor {
    char *name;         /* NUL-terminated; owned by the file */
    char dtype[16];     /* "BF16", "F16", "F32", "U8", ... */
    uint32_t elem_size; /* bytes per element */
    uint32_t ndim;
    uint64_t shape[KVS_SAFETENSORS_DIMS_MAX];
    const uint8_t *data; /* in the file's mapping */
    uint64_t len;        /* bytes */
} kvs_safetensors_tensor_t;

/* An open, checked file. Read-only; freed by _close(). */
typedef struct kvs_safetensors {
    const uint8_t *map; /* the file's bytes */
    uint64_t size;      /* bytes of the file */
    bool mapped;        /* map is our mapping (_open), else the caller's */
    kvs_safetensors_tensor_t *tensors;
    size_t ntensors;
} kvs_safetensors_t;

/* Bytes per element of a safetensors dtype name; 0 if unknown. */
uint32_t kvs_safetensors_dtype_size(const char *dtype);

/*
 * Maps path and checks its header. On failure returns a negative errno or
 * KVS_ECORRUPT and writes a one-line reason into err (errlen bytes). On
 * success *st_out is the caller's until kvs_safetensors_close().
 */
int kvs_safetensors_open(const char *path, kvs_safetensors_t **st_out,
                         char *err, size_t errlen);

/*
 * The same checks on a file already in memory (buf, size bytes; the
 * fuzz target's entry point). Tensors point into buf, which must outlive
 * *st_out; _close() then frees only what the parse allocated.
 */
int kvs_safetensors_parse(const uint8_t *buf, uint64_t size,
                          kvs_safetensors_t **st_out, char *err, size_t errlen);

/* The tensor called name, or NULL. Valid until the file is closed. */
const kvs_safetensors_tensor_t *
kvs_safetensors_find(const kvs_safetensors_t *st, const char *name);

/* Unmaps and frees. NULL is a no-op. */
void kvs_safetensors_close(kvs_safetensors_t *st);

/* A tensor to write: data is the caller's, read during the call. */
typedef struct kvs_safetensors_out {
    const char *name;
    const char *dtype;
    uint32_t ndim;
    uint64_t shape[KVS_SAFETENSORS_DIMS_MAX];
    const void *data;
    uint64_t len; /* must equal the shape's bytes */
} kvs_safetensors_out_t;

/* Writes a safetensors file of n tensors, in order, via a temporary file
 * renamed into place. Returns 0 or a negative errno. */
int kvs_safetensors_write(const char *path, const kvs_safetensors_out_t *t,
                          size_t n);

#endif
