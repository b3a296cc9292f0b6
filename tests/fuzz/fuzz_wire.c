/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the frame decoder. Input: a little-endian u32 payload
 * length, then the frame bytes. The decoder must never crash or read out of
 * bounds, and whatever it accepts must re-encode to a frame that decodes to
 * the same meaning (re-encoding checks the decoder's output obeys the
 * encoder's rules). The same entry point is replayed over the committed
 * corpus by replay.c in ordinary CTest runs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kvs_wire_scratch_t *s1, *s2;
static uint8_t out[KVS_WIRE_HDR_SIZE + KVS_WIRE_BODY_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_wire_limits_t lim;
    kvs_wire_msg_t m, m2;
    uint32_t payload;
    size_t len;
    uint8_t *copy;

    if (!s1) {
        s1 = kvs_wire_scratch_create();
        s2 = kvs_wire_scratch_create();
        if (!s1 || !s2)
            abort();
    }
    if (size < 4)
        return 0;
    payload = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
              (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    /* An exact-size heap copy so ASan sees any read past the frame. */
    copy = malloc(size - 4 ? size - 4 : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 4, size - 4);
    kvs_wire_limits_default(&lim);
    if (kvs_wire_decode(copy, size - 4, payload, &lim, s1, &m) == 0) {
        if (kvs_wire_encode(&m, out, sizeof(out), &len) != 0)
            abort();
        if (kvs_wire_decode(out, len, payload, &lim, s2, &m2) != 0)
            abort();
        if (len != size - 4 || m2.hdr.opcode != m.hdr.opcode ||
            m2.hdr.count != m.hdr.count || m2.hdr.req_id != m.hdr.req_id)
            abort();
    }
    free(copy);
    return 0;
}
