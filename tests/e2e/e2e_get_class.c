/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET reports the class and tier of the block it serves (issue 15,
 * finding 6). Three blocks are put with class scratch, user and pinned;
 * a GET of the three must say the same class in each reply entry and in
 * each DATA body as SCAN does, and tier DRAM for blocks served from DRAM.
 * (The NVMe tier is covered by tests/python/test_client.py,
 * test_get_reports_the_tier_and_class_served_from, over a restart.)
 */
#include <string.h>

#include "kvstash/wire.h"
#include "tests/e2e/e2e.h"
#include "tests/e2e/raw.h"

int main(void)
{
    static const char *const keys[3] = {"scratch", "user", "pinned"};
    kvs_e2e_daemon_t d;
    raw_t *r = calloc(1, sizeof(*r));
    uint8_t buf[4096], payload[30];
    kvs_wire_put_ent_t pe[3];
    kvs_wire_get_ent_t ge[3];
    uint32_t plen[3] = {10, 10, 10};
    kvs_wire_msg_t m, rep;
    kvs_wire_hdr_t h;
    raw_frame_t *f;
    unsigned ndata = 0;
    size_t len;

    CHECK(r);
    kvs_e2e_daemon_init(&d, "e2e_get_class");
    kvs_e2e_daemon_start(&d, NULL);
    raw_connect(r, d.port);
    CHECK_EQ(raw_send(r, buf,
                      raw_hello(buf, 1, "", "ns",
                                KVS_WIRE_FEAT_ALL & ~KVS_WIRE_FEAT_BULK),
                      NULL, 0, false),
             0);

    memset(pe, 0, sizeof(pe));
    memset(payload, 'p', sizeof(payload));
    for (int i = 0; i < 3; i++) {
        pe[i].key.data = (const uint8_t *)keys[i];
        pe[i].key.len = (uint32_t)strlen(keys[i]);
        pe[i].cls = (uint8_t)i; /* KVS_CLASS_SCRATCH, USER, PINNED */
        pe[i].ttl_ms = i == 1 ? 600000 : 0;
        pe[i].nparts = 1;
        pe[i].part_lens = &plen[i];
    }
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_PUT;
    m.hdr.flags = KVS_WIRE_F_PAYLOAD;
    m.hdr.req_id = 2;
    m.hdr.count = 3;
    m.u.put.ents = pe;
    len = raw_enc(buf, sizeof(buf), &m);
    CHECK_EQ(raw_send(r, buf, len, payload, sizeof(payload), false), 0);
    raw_decode(raw_last(r), &rep);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rep.u.status_rep.status[i], 0);

    /* What SCAN says of them. */
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_SCAN;
    m.hdr.req_id = 3;
    m.hdr.count = 16;
    len = raw_enc(buf, sizeof(buf), &m);
    CHECK_EQ(raw_send(r, buf, len, NULL, 0, false), 0);
    raw_decode(raw_last(r), &rep);
    CHECK_EQ(rep.hdr.count, 3);
    for (unsigned i = 0; i < 3; i++) {
        const kvs_wire_scan_ent_t *se = &rep.u.scan_rep.ents[i];

        for (unsigned k = 0; k < 3; k++)
            if (se->key.len == strlen(keys[k]) &&
                memcmp(se->key.data, keys[k], se->key.len) == 0)
                CHECK_EQ(se->cls, k);
    }

    /* GET: every DATA body and reply entry says the same class. */
    for (int i = 0; i < 3; i++) {
        ge[i].key = pe[i].key;
        ge[i].cap = 64;
    }
    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_GET;
    m.hdr.req_id = 4;
    m.hdr.count = 3;
    m.u.get.ents = ge;
    len = raw_enc(buf, sizeof(buf), &m);
    raw_post(r, buf, len, NULL, 0, false);
    for (;;) {
        CHECK(raw_wait(r));
        CHECK(raw_pop(r, &h, &f));
        if (h.opcode == KVS_OP_DATA) {
            CHECK(!f->rndv);
            CHECK(f->len >= KVS_WIRE_HDR_SIZE + KVS_WIRE_DATA_FIXED);
            CHECK_EQ(f->bytes[KVS_WIRE_HDR_SIZE + 12], KVS_TIER_DRAM);
            CHECK_EQ(f->bytes[KVS_WIRE_HDR_SIZE + 13], h.count);
            ndata++;
            continue;
        }
        CHECK_EQ(h.opcode, KVS_OP_GET);
        raw_decode(f, &rep);
        break;
    }
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(rep.u.get_rep.blocks[i].status, 0);
        CHECK_EQ(rep.u.get_rep.blocks[i].cls, i);
        CHECK_EQ(rep.u.get_rep.blocks[i].tier, KVS_TIER_DRAM);
    }
    while (ndata < 3) {
        CHECK(raw_wait(r));
        CHECK(raw_pop(r, &h, &f));
        CHECK_EQ(h.opcode, KVS_OP_DATA);
        CHECK_EQ(f->bytes[KVS_WIRE_HDR_SIZE + 13], h.count);
        ndata++;
    }
    raw_close(r);
    free(r);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_get_class: ok\n");
    return 0;
}
