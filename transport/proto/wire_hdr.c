/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The 32-byte frame header's bytes (include/kvstash/wire.h), loaded and
 * stored without any check: shared by the UCX codec (wire.c, which checks
 * a header in kvs_wire_decode_hdr) and the shm socket's (wire_shm.c).
 */
#include "kvstash/wire.h"
#include "common/endian.h"

void kvs_wire_hdr_load(const void *buf, kvs_wire_hdr_t *h)
{
    const uint8_t *p = buf;

    h->magic = kvs_le32_load(p);
    h->version = p[4];
    h->opcode = p[5];
    h->flags = kvs_le16_load(p + 6);
    h->req_id = kvs_le64_load(p + 8);
    h->body_len = kvs_le32_load(p + 16);
    h->status = (int32_t)kvs_le32_load(p + 20);
    h->count = kvs_le32_load(p + 24);
    h->reserved = kvs_le32_load(p + 28);
}

void kvs_wire_hdr_store(void *buf, const kvs_wire_hdr_t *h, uint32_t body_len)
{
    uint8_t *p = buf;

    kvs_le32_store(p, KVS_WIRE_MAGIC);
    p[4] = KVS_WIRE_VERSION;
    p[5] = h->opcode;
    kvs_le16_store(p + 6, h->flags);
    kvs_le64_store(p + 8, h->req_id);
    kvs_le32_store(p + 16, body_len);
    kvs_le32_store(p + 20, (uint32_t)h->status);
    kvs_le32_store(p + 24, h->count);
    kvs_le32_store(p + 28, 0);
}
