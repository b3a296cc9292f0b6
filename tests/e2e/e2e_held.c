/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A client that never pulls its rendezvous DATA is throttled (issue 15,
 * finding 3). A raw client GETs the same 64 KiB block 1,100 times and
 * never receives a byte of it: each DATA stays in flight, holding a pin
 * and a send buffer in the daemon. With the default limits
 * (daemon.max_inflight_blocks 1024, daemon.max_inflight_bytes 256 MiB per
 * connection) the entries past the limit are answered -EAGAIN without a
 * DATA; when the client goes away every reference is dropped, and
 * another client is served throughout.
 */
#include <errno.h>
#include <string.h>

#include "kvstash/wire.h"
#include "tests/e2e/e2e.h"
#include "tests/e2e/raw.h"

#define BLOCK (64u << 10)
#define GETS 1100

int main(void)
{
    static uint8_t val[BLOCK], back[BLOCK];
    kvs_e2e_daemon_t d;
    kvs_client_t *good;
    raw_t *r = calloc(1, sizeof(*r));
    uint8_t buf[4096];
    unsigned ok = 0, again = 0;
    uint64_t refs0;
    size_t len;

    CHECK(r);
    kvs_e2e_daemon_init(&d, "e2e_held");
    kvs_e2e_daemon_start(&d, NULL);
    good = kvs_e2e_connect(&d, "ns", NULL);
    memset(val, 0x5a, sizeof(val));
    CHECK_EQ(kvs_client_put(good, "big", 3, val, sizeof(val), 0), 0);
    refs0 = kvs_e2e_stat(good, "refs");

    raw_connect(r, d.port);
    /* No BULK: the DATA comes on this endpoint, by rendezvous. */
    CHECK_EQ(raw_send(r, buf, raw_hello(buf, 1, "", "ns", 0), NULL, 0, false),
             0);
    for (unsigned i = 0; i < GETS; i++) {
        kvs_wire_get_ent_t ge = {.key = {(const uint8_t *)"big", 3},
                                 .cap = BLOCK};
        kvs_wire_msg_t m, rep;

        memset(&m, 0, sizeof(m));
        m.hdr.opcode = KVS_OP_GET;
        m.hdr.req_id = 100 + i;
        m.hdr.count = 1;
        m.u.get.ents = &ge;
        len = raw_enc(buf, sizeof(buf), &m);
        CHECK_EQ(raw_send(r, buf, len, NULL, 0, false), 0);
        raw_decode(raw_last(r), &rep);
        if (rep.u.get_rep.blocks[0].status == 0)
            ok++;
        else if (rep.u.get_rep.blocks[0].status == -EAGAIN)
            again++;
        else
            CHECK_EQ(rep.u.get_rep.blocks[0].status, 0);
    }
    /* Let the DATA of the last ones arrive, then count what is held. */
    while (r->rndv_held < ok && !r->closed)
        raw_progress(r);
    fprintf(stderr, "%u served (%u held unpulled), %u -EAGAIN\n", ok,
            r->rndv_held, again);
    CHECK_EQ(r->rndv_held, ok); /* each one really is in flight */
    CHECK(again > 0);
    CHECK(ok <= 1024);

    /* Another client is served meanwhile. */
    CHECK_EQ(kvs_client_get(good, "big", 3, back, sizeof(back), &len), 0);
    CHECK(len == BLOCK && memcmp(back, val, BLOCK) == 0);

    raw_close(r);
    free(r);
    while (kvs_e2e_stat(good, "refs") != refs0)
        ;
    kvs_client_destroy(good);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_held: ok\n");
    return 0;
}
