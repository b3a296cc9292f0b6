/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the frame decoder. Input: a little-endian u32 payload
 * length, then the frame bytes. The decoder must never crash or read out of
 * bounds, and whatever it accepts must re-encode to a frame that decodes to
 * the same meaning (re-encoding checks the decoder's output obeys the
 * encoder's rules). A stream opcode that decodes is also read the way the
 * daemon's and the client's stream handlers read it (transport/proto/
 * stream_op.h: keys, part lengths), and re-encoded through its flat form.
 * The same entry point is replayed over the committed corpus by replay.c in
 * ordinary CTest runs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/wire.h"
#include "transport/proto/stream_op.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kvs_wire_scratch_t *s1, *s2;
static uint8_t out[KVS_WIRE_HDR_SIZE + KVS_WIRE_BODY_MAX];
static uint32_t lens[KVS_PARTS_MAX];

/* The op-specific bytes after the string, as the stream handlers take
 * them; errors are fine, reading out of bounds is not. */
static void read_stream(const kvs_wire_msg_t *w)
{
    const uint8_t *key;
    uint32_t klen;
    uint64_t total;
    kvs_smsg_rd_t rd;
    kvs_smsg_t m;
    size_t len;

    kvs_smsg_from_wire(w, &m);
    kvs_smsg_rd_init(&rd, &m);
    switch (m.op) {
    case KVS_OP_SPUT_BEGIN: /* lens, then with PUSH: namespace, peer */
    case KVS_OP_BLOCK:
        if (kvs_smsg_rd_lens(&rd, m.nparts, lens, &total) == 0 &&
            (m.flags & KVS_SMSG_F_PUSH))
            (void)kvs_smsg_rd_key(&rd, &key, &klen);
        break;
    case KVS_OP_FETCH: /* namespace, then nparts keys */
    case KVS_OP_PUSH:  /* key, then lens */
        if (kvs_smsg_rd_key(&rd, &key, &klen) != 0)
            break;
        if (m.op == KVS_OP_PUSH) {
            (void)kvs_smsg_rd_lens(&rd, m.nparts, lens, &total);
            break;
        }
        for (uint32_t i = 0; i < m.nparts && i < KVS_WIRE_KEYS_MAX; i++)
            if (kvs_smsg_rd_key(&rd, &key, &klen) != 0)
                break;
        break;
    default:
        break;
    }
    /* The flat form must encode back to the same bytes' meaning. */
    if (kvs_smsg_encode(&m, m.body, m.body_len, out, &len) != 0)
        abort();
}

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
        if (kvs_wire_op_is_stream(m.hdr.opcode))
            read_stream(&m);
    }
    free(copy);
    return 0;
}
