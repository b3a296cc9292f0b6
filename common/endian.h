/* SPDX-License-Identifier: Apache-2.0 */
/* Little-endian loads and stores for wire and disk formats. They compile to
 * plain moves on little-endian machines and need no alignment. */
#ifndef KVS_ENDIAN_H
#define KVS_ENDIAN_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t kvs_le16_load(const void *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static inline void kvs_le16_store(void *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint32_t kvs_le32_load(const void *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline void kvs_le32_store(void *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint64_t kvs_le64_load(const void *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void kvs_le64_store(void *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

/* Big-endian, for keys that must sort by number. */
static inline uint32_t kvs_be32_load(const void *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return be32toh(v);
}

static inline void kvs_be32_store(void *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, sizeof(v));
}

#endif
