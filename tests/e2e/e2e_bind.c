/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BIND cannot reach another connection (issue 15, finding 1). Two tenants
 * on one daemon: an attacker opens a bulk endpoint and sends BIND naming
 * the victim's session with a wrong secret. The refusal must come back on
 * the attacker's own bulk endpoint, carrying its req_id, and nothing may
 * arrive on the victim's control endpoint (whose next reply must be the
 * answer to its own next request). Session ids must not be sequential,
 * so that a session cannot be guessed from one's own; a second BIND of a
 * connection binds its put endpoint (PUT_EP), which carries PUTs only,
 * and a third is refused on the endpoint it came on as well.
 */
#include <string.h>

#include "common/clock.h"
#include "kvstash/wire.h"
#include "tests/e2e/e2e.h"
#include "tests/e2e/raw.h"

static size_t bind_frame(uint8_t *buf, uint64_t req_id, uint64_t session,
                         uint64_t secret)
{
    kvs_wire_msg_t m;

    memset(&m, 0, sizeof(m));
    m.hdr.opcode = KVS_OP_BIND;
    m.hdr.req_id = req_id;
    m.u.bind.session = session;
    m.u.bind.secret = secret;
    return raw_enc(buf, 4096, &m);
}

static void hello_ok(raw_t *r, uint16_t port, const char *token, const char *ns,
                     kvs_wire_msg_t *rep)
{
    uint8_t buf[4096];

    raw_connect(r, port);
    CHECK_EQ(raw_send(r, buf, raw_hello(buf, 1, token, ns, KVS_WIRE_FEAT_ALL),
                      NULL, 0, false),
             0);
    raw_hello_reply(r, rep);
    CHECK(rep->u.hello_rep.features & KVS_WIRE_FEAT_BULK);
}

/* Sends a BIND on bulk endpoint b and waits for the first frame on either
 * b or the control endpoint ctl; returns which got it (b: true). */
static bool bind_answered_on_bulk(raw_t *b, raw_t *ctl, raw_t *victim,
                                  const uint8_t *frame, size_t len,
                                  kvs_wire_hdr_t *h)
{
    raw_post(b, frame, len, NULL, 0, false);
    for (;;) {
        raw_progress(b);
        raw_progress(ctl);
        raw_progress(victim);
        if (raw_pop(b, h, NULL))
            return true;
        if (raw_pop(ctl, h, NULL) || raw_pop(victim, h, NULL))
            return false;
    }
}

/* Opens bulk endpoint b to the attacker's (ar's) bulk port and sends a
 * BIND naming session with the attacker's secret: a refusal (status not
 * 0) must come back on b, a binding on the attacker's control endpoint
 * a, and nothing on the victim's v. */
static void bind_check(raw_t *b, raw_t *a, raw_t *v, const kvs_wire_msg_t *ar,
                       uint64_t req_id, uint64_t session, int status)
{
    uint8_t buf[4096];
    kvs_wire_hdr_t h;
    size_t len;

    raw_connect_mode(b, (uint16_t)ar->u.hello_rep.bulk_port,
                     UCP_ERR_HANDLING_MODE_NONE);
    len = bind_frame(buf, req_id, session, ar->u.hello_rep.bind_secret);
    CHECK(bind_answered_on_bulk(b, a, v, buf, len, &h) == (status != 0));
    CHECK_EQ(h.req_id, req_id);
    CHECK_EQ(h.status, status);
    CHECK(h.flags & KVS_WIRE_F_REPLY);
}

/* The victim's next reply is the answer to its own next request. */
static void victim_undisturbed(raw_t *v)
{
    uint8_t buf[4096];
    kvs_wire_hdr_t h;

    CHECK_EQ(
        raw_send(v, buf, raw_keys(buf, KVS_OP_EXISTS, 5, "k"), NULL, 0, false),
        0);
    raw_decode(raw_last(v), &(kvs_wire_msg_t){0});
    h.req_id = 0;
    memcpy(&h.req_id, raw_last(v)->bytes + 8, 8);
    CHECK_EQ(h.req_id, 5);
}

int main(void)
{
    kvs_e2e_daemon_t d;
    kvs_wire_msg_t vr, ar;
    kvs_wire_hdr_t h;
    uint8_t buf[4096];
    raw_t *v = calloc(1, sizeof(*v)), *a = calloc(1, sizeof(*a));
    raw_t *b = calloc(1, sizeof(*b)), *b2 = calloc(1, sizeof(*b2));
    raw_t *b3 = calloc(1, sizeof(*b3));
    uint64_t diff;

    CHECK(v && a && b && b2 && b3);
    kvs_e2e_daemon_init(&d, "e2e_bind");
    kvs_e2e_write_config(&d, "[tenant.victim]\ntoken = vtok\nnamespaces = vn\n"
                             "[tenant.evil]\ntoken = etok\nnamespaces = en\n");
    kvs_e2e_daemon_start(&d, NULL);
    hello_ok(v, d.port, "vtok", "vn", &vr);
    hello_ok(a, d.port, "etok", "en", &ar);

    /* A BIND naming the victim's session with a wrong secret: refused on
     * the attacker's bulk endpoint, never on the victim's endpoint. */
    bind_check(b, a, v, &ar, 77, vr.u.hello_rep.session, KVS_EAUTH);
    victim_undisturbed(v);
    raw_close(b);

    /* Sessions are random 64-bit numbers, not connection ids: the two
     * differ in their high bits (by chance with odds 2^-32 otherwise). */
    diff = vr.u.hello_rep.session ^ ar.u.hello_rep.session;
    CHECK(diff >> 32 != 0);

    /* The attacker's own session with the right secret binds (answered on
     * its control endpoint, as documented); a second BIND of the same
     * session is refused on the endpoint it came on. */
    bind_check(b, a, v, &ar, 78, ar.u.hello_rep.session, 0);
    /* With PUT_EP agreed, a second BIND binds the put endpoint (answered
     * on the control endpoint too); a third is refused where it came. */
    CHECK(ar.u.hello_rep.features & KVS_WIRE_FEAT_PUT_EP);
    bind_check(b2, a, v, &ar, 79, ar.u.hello_rep.session, 0);
    bind_check(b3, a, v, &ar, 80, ar.u.hello_rep.session, KVS_EAUTH);
    victim_undisturbed(v);

    /* The put endpoint carries PUTs only: an EXISTS there is not answered
     * (the daemon closes that endpoint), and the connection goes on. */
    raw_post(b2, buf, raw_keys(buf, KVS_OP_EXISTS, 81, "k"), NULL, 0, false);
    for (uint64_t end = kvs_clock_mono_ns() + 300000000ull;
         kvs_clock_mono_ns() < end;) {
        raw_progress(b2);
        raw_progress(a);
        CHECK(!raw_pop(a, &h, NULL) && !raw_pop(b2, &h, NULL));
    }
    victim_undisturbed(a);

    raw_close(b3);
    raw_close(b2);
    raw_close(b);
    raw_close(a);
    raw_close(v);
    free(b3);
    free(b2);
    free(b);
    free(a);
    kvs_e2e_daemon_stop(&d);

    /* A daemon that binds no put endpoint does not offer PUT_EP. */
    {
        const char *none[] = {"--set=daemon.put_endpoints=0", NULL};

        kvs_e2e_daemon_init(&d, "e2e_bind-noput");
        kvs_e2e_write_config(&d, "[tenant.victim]\ntoken = vtok\n"
                                 "namespaces = vn\n");
        kvs_e2e_daemon_start(&d, none);
        hello_ok(v, d.port, "vtok", "vn", &vr);
        CHECK(!(vr.u.hello_rep.features & KVS_WIRE_FEAT_PUT_EP));
        CHECK(vr.u.hello_rep.features & KVS_WIRE_FEAT_BULK_PUT);
        raw_close(v);
        kvs_e2e_daemon_stop(&d);
    }
    free(v);
    printf("e2e_bind: ok\n");
    return 0;
}
