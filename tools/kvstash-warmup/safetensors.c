/* SPDX-License-Identifier: Apache-2.0 */
/*
 * safetensors reader and writer (see safetensors.h for the layout).
 *
 * The reader maps the whole file read-only and points tensors into the
 * mapping, so importing a block copies its bytes once, from the page cache
 * into the put buffer. The header's JSON is parsed by json-c; this file only
 * checks what the JSON says against the file: the header length against the
 * file size, each dtype against the known ones, each shape's byte count
 * against its data_offsets, and each data range against the data section.
 */
#include "tools/kvstash-warmup/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kvstash/status.h"

#define HEADER_MAX (100u << 20) /* the format's own limit on the header */

static const struct {
    const char *name;
    uint32_t size;
} dtypes[] = {
    {"BF16", 2}, {"F16", 2}, {"F32", 4},  {"F64", 8},     {"U8", 1},
    {"I8", 1},   {"I16", 2}, {"U16", 2},  {"I32", 4},     {"U32", 4},
    {"I64", 8},  {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

uint32_t kvs_safetensors_dtype_size(const char *dtype)
{
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
        if (!strcmp(dtype, dtypes[i].name))
            return dtypes[i].size;
    return 0;
}

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return ret;
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer. */
static int json_u64(struct json_object *o, uint64_t *out)
{
    int64_t v;

    if (!o || !json_object_is_type(o, json_type_int))
        return -1;
    v = json_object_get_int64(o);
    if (v < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_tensor(kvs_safetensors_tensor_t *t, const char *name,
                        struct json_object *o, const uint8_t *data,
                        uint64_t data_len, char *err, size_t errlen)
{
    struct json_object *dt, *shape, *offs;
    uint64_t begin, end, bytes;
    const char *dts;

    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "dtype", &dt) ||
        !json_object_object_get_ex(o, "shape", &shape) ||
        !json_object_object_get_ex(o, "data_offsets", &offs) ||
        !json_object_is_type(dt, json_type_string) ||
        !json_object_is_type(shape, json_type_array) ||
        !json_object_is_type(offs, json_type_array) ||
        json_object_array_length(offs) != 2)
        return fail(err, errlen, KVS_ECORRUPT,
                    "tensor '%s': needs dtype, shape and data_offsets", name);
    dts = json_object_get_string(dt);
    t->elem_size = kvs_safetensors_dtype_size(dts);
    if (!t->elem_size || strlen(dts) >= sizeof(t->dtype))
        return fail(err, errlen, KVS_ECORRUPT,
                    "tensor '%s': unknown dtype '%s'", name, dts);
    strcpy(t->dtype, dts);
    t->ndim = (uint32_t)json_object_array_length(shape);
    if (t->ndim > KVS_SAFETENSORS_DIMS_MAX)
        return fail(err, errlen, KVS_ECORRUPT,
                    "tensor '%s': %u dimensions, at most %u", name, t->ndim,
                    KVS_SAFETENSORS_DIMS_MAX);
    bytes = t->elem_size;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if (json_u64(json_object_array_get_idx(shape, i), &t->shape[i]) ||
            t->shape[i] > (1ull << 40))
            return fail(err, errlen, KVS_ECORRUPT, "tensor '%s': bad shape",
                        name);
        /* Checked before multiplying: two large dimensions would wrap to
         * a small (or zero) byte count that data_offsets could match. */
        if (t->shape[i] && bytes > (1ull << 50) / t->shape[i])
            return fail(err, errlen, KVS_ECORRUPT, "tensor '%s': too large",
                        name);
        bytes *= t->shape[i];
    }
    if (json_u64(json_object_array_get_idx(offs, 0), &begin) ||
        json_u64(json_object_array_get_idx(offs, 1), &end) || begin > end)
        return fail(err, errlen, KVS_ECORRUPT, "tensor '%s': bad data_offsets",
                    name);
    if (end - begin != bytes)
        return fail(err, errlen, KVS_ECORRUPT,
                    "tensor '%s': shape needs %llu bytes, data_offsets "
                    "give %llu",
                    name, (unsigned long long)bytes,
                    (unsigned long long)(end - begin));
    if (end > data_len)
        return fail(err, errlen, KVS_ECORRUPT,
                    "tensor '%s': data ends at byte %llu of the data "
                    "section, which has %llu (file truncated?)",
                    name, (unsigned long long)end,
                    (unsigned long long)data_len);
    t->name = strdup(name);
    if (!t->name)
        return fail(err, errlen, -ENOMEM, "out of memory");
    t->data = data + begin;
    t->len = bytes;
    return 0;
}

int kvs_safetensors_parse(const uint8_t *buf, uint64_t size,
                          kvs_safetensors_t **st_out, char *err, size_t errlen)
{
    kvs_safetensors_t *st;
    struct json_tokener *tok = NULL;
    struct json_object *hdr = NULL;
    uint64_t hlen;
    int ret;

    if (size < 8)
        return fail(err, errlen, KVS_ECORRUPT,
                    "%llu bytes: shorter than the 8-byte header length "
                    "(truncated?)",
                    (unsigned long long)size);
    st = calloc(1, sizeof(*st));
    if (!st)
        return fail(err, errlen, -ENOMEM, "out of memory");
    st->map = buf;
    st->size = size;
    hlen = ld64(st->map);
    if (hlen > HEADER_MAX || hlen > st->size - 8) {
        ret = fail(err, errlen, KVS_ECORRUPT,
                   "header length %llu does not fit the file's %llu bytes "
                   "(truncated or not safetensors)",
                   (unsigned long long)hlen, (unsigned long long)st->size);
        goto err_close;
    }
    tok = json_tokener_new();
    if (!tok) {
        ret = fail(err, errlen, -ENOMEM, "out of memory");
        goto err_close;
    }
    hdr = json_tokener_parse_ex(tok, (const char *)st->map + 8, (int)hlen);
    if (!hdr || json_tokener_get_error(tok) != json_tokener_success ||
        !json_object_is_type(hdr, json_type_object)) {
        ret = fail(err, errlen, KVS_ECORRUPT, "header is not a JSON object: %s",
                   json_tokener_error_desc(json_tokener_get_error(tok)));
        goto err_free_json;
    }
    st->tensors = calloc((size_t)json_object_object_length(hdr) + 1,
                         sizeof(*st->tensors));
    if (!st->tensors) {
        ret = fail(err, errlen, -ENOMEM, "out of memory");
        goto err_free_json;
    }
    json_object_object_foreach(hdr, name, val)
    {
        if (!strcmp(name, "__metadata__"))
            continue;
        ret =
            parse_tensor(&st->tensors[st->ntensors], name, val,
                         st->map + 8 + hlen, st->size - 8 - hlen, err, errlen);
        if (ret)
            goto err_free_json;
        st->ntensors++;
    }
    json_object_put(hdr);
    json_tokener_free(tok);
    *st_out = st;
    return 0;

err_free_json:
    json_object_put(hdr);
    json_tokener_free(tok);
err_close:
    kvs_safetensors_close(st);
    return ret;
}

int kvs_safetensors_open(const char *path, kvs_safetensors_t **st_out,
                         char *err, size_t errlen)
{
    struct stat sb;
    void *map;
    int fd, ret;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, -errno, "cannot open: %s", strerror(errno));
    if (fstat(fd, &sb) < 0) {
        ret = fail(err, errlen, -errno, "cannot stat: %s", strerror(errno));
        close(fd);
        return ret;
    }
    if (sb.st_size < 8) {
        close(fd);
        return kvs_safetensors_parse(NULL, (uint64_t)sb.st_size, st_out, err,
                                     errlen);
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    ret = map == MAP_FAILED ? -errno : 0;
    close(fd);
    if (ret)
        return fail(err, errlen, ret, "cannot map: %s", strerror(-ret));
    ret = kvs_safetensors_parse(map, (uint64_t)sb.st_size, st_out, err, errlen);
    if (ret) {
        munmap(map, (size_t)sb.st_size);
        return ret;
    }
    (*st_out)->mapped = true;
    return 0;
}

const kvs_safetensors_tensor_t *
kvs_safetensors_find(const kvs_safetensors_t *st, const char *name)
{
    for (size_t i = 0; i < st->ntensors; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

void kvs_safetensors_close(kvs_safetensors_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->ntensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    if (st->mapped)
        munmap((void *)st->map, st->size);
    free(st);
}

static int write_all(int fd, const void *buf, uint64_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (uint64_t)n;
    }
    return 0;
}

int kvs_safetensors_write(const char *path, const kvs_safetensors_out_t *t,
                          size_t n)
{
    struct json_object *hdr = json_object_new_object();
    char tmp[4096];
    const char *js;
    uint8_t lenle[8];
    uint64_t off = 0, hlen;
    int fd, ret = 0;

    if (!hdr)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_new_object();
        struct json_object *shape = json_object_new_array();
        struct json_object *offs = json_object_new_array();

        if (!o || !shape || !offs) {
            json_object_put(o);
            json_object_put(shape);
            json_object_put(offs);
            json_object_put(hdr);
            return -ENOMEM;
        }
        for (uint32_t d = 0; d < t[i].ndim; d++)
            json_object_array_add(
                shape, json_object_new_int64((int64_t)t[i].shape[d]));
        json_object_array_add(offs, json_object_new_int64((int64_t)off));
        json_object_array_add(offs,
                              json_object_new_int64((int64_t)(off + t[i].len)));
        json_object_object_add(o, "dtype", json_object_new_string(t[i].dtype));
        json_object_object_add(o, "shape", shape);
        json_object_object_add(o, "data_offsets", offs);
        json_object_object_add(hdr, t[i].name, o);
        off += t[i].len;
    }
    js = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN);
    hlen = strlen(js);
    for (int i = 0; i < 8; i++)
        lenle[i] = (uint8_t)(hlen >> (8 * i));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    ret = write_all(fd, lenle, 8);
    if (!ret)
        ret = write_all(fd, js, hlen);
    for (size_t i = 0; i < n && !ret; i++)
        ret = write_all(fd, t[i].data, t[i].len);
    if (close(fd) < 0 && !ret)
        ret = -errno;
    if (!ret && rename(tmp, path) < 0)
        ret = -errno;
    if (ret)
        unlink(tmp);
out:
    json_object_put(hdr);
    return ret;
}
