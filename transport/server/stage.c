/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Staging: a PUT whose payload comes by rendezvous waits for one of the
 * staging slots allocated at start (back-pressure instead of an unbounded
 * queue), then the payload is received into it and the put runs from
 * there. Runs on the server's thread.
 *
 * A PUT of one block into DRAM skips the slot: the block is reserved in
 * the arena (kvs_store_put_begin), UCX receives the payload straight into
 * it with the arena's memory handle, and the block is sealed when the
 * receive completes. No allocation and one copy (the transport's), where
 * the slot path costs a second copy of every byte from slot to arena.
 * What the arena cannot take at once (admission declined it, a batch, a
 * NO_DRAM put) takes the slot path, whose put gives the usual answer.
 */
#include "transport/server/server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/proto/ucx.h"
#include "transport/server/stream.h"

/* PUT payloads that come by rendezvous. */

kvs_stage_t *kvs_stage_get(kvs_server_t *srv)
{
    kvs_stage_t *st = srv->stage_free;

    if (st)
        srv->stage_free = st->next;
    else if (!(st = malloc(sizeof(*st))))
        return NULL;
    st->next = NULL;
    st->slot = -1;
    st->direct = false;
    return st;
}

void kvs_stage_release(kvs_server_t *srv, kvs_stage_t *st)
{
    if (st->slot >= 0)
        srv->slot_free[srv->nslot_free++] = st->slot;
    st->slot = -1;
    st->conn->inflight--;
    kvs_conn_unref(st->conn);
    st->next = srv->stage_free;
    srv->stage_free = st;
}

static void stage_run(kvs_server_t *srv, kvs_stage_t *st)
{
    kvs_wire_msg_t m;
    int ret;

    ret = kvs_wire_decode(st->frame, st->frame_len, st->len, &srv->lim,
                          srv->scratch, &m);
    /* The frame was checked when it arrived; it cannot have changed. */
    kvs_assert(ret == 0);
    if (ret == 0 && !st->conn->closing) {
        /* dispatch counts the request in flight again */
        st->conn->inflight--;
        kvs_handler_dispatch(srv, st->conn, &m, srv->slots[st->slot]);
        st->conn->inflight++;
    }
    kvs_stage_release(srv, st);
}

static void stage_recv_cb(void *request, ucs_status_t status, size_t length,
                          void *user_data)
{
    kvs_stage_t *st = user_data;
    kvs_server_t *srv = st->conn->srv;

    (void)length;
    if (status == UCS_OK) {
        stage_run(srv, st);
    } else {
        kvs_debug("conn %llu: PUT payload lost: %s",
                  (unsigned long long)st->conn->id, ucs_status_string(status));
        kvs_stage_release(srv, st);
    }
    ucp_request_free(request);
}

void kvs_stage_start(kvs_server_t *srv, kvs_stage_t *st)
{
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = stage_recv_cb,
        .user_data = st,
    };
    ucs_status_ptr_t sp;

    kvs_assert(srv->nslot_free > 0);
    st->slot = srv->slot_free[--srv->nslot_free];
    sp = ucp_am_recv_data_nbx(srv->worker, st->desc, srv->slots[st->slot],
                              st->len, &prm);
    if (sp == NULL) {
        stage_run(srv, st);
    } else if (UCS_PTR_IS_ERR(sp)) {
        kvs_debug("conn %llu: PUT payload receive: %s",
                  (unsigned long long)st->conn->id,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        kvs_stage_release(srv, st);
    }
}

void kvs_stage_pump(kvs_server_t *srv)
{
    while (srv->wait_head && srv->nslot_free > 0) {
        kvs_stage_t *st = srv->wait_head;

        srv->wait_head = st->next;
        if (!srv->wait_head)
            srv->wait_tail = NULL;
        st->next = NULL;
        kvs_stage_start(srv, st);
    }
}

static void direct_done(kvs_server_t *srv, kvs_stage_t *st, bool ok)
{
    int32_t status;
    kvs_wire_msg_t r;

    if (!ok) {
        kvs_store_put_abort(srv->store, &st->ps);
        kvs_stage_release(srv, st);
        return;
    }
    for (uint32_t p = 0; p < st->ps.nparts; p++)
        kvs_store_put_part_done(srv->store, &st->ps, p);
    status = kvs_store_put_seal(srv->store, &st->ps);
    if (status == 0)
        kvs_metrics_note_bytes(srv->metrics, KVS_METRICS_IN, KVS_TIER_DRAM,
                               st->len);
    r = kvs_reply_to(&st->hdr, 1);
    r.u.status_rep.status = &status;
    kvs_send_reply(srv, st->conn, &r); /* nothing if it closed */
    kvs_metrics_note_request(srv->metrics, KVS_OP_PUT,
                             kvs_clock_mono_ns() - st->t0);
    kvs_stage_release(srv, st);
}

static void direct_recv_cb(void *request, ucs_status_t status, size_t length,
                           void *user_data)
{
    kvs_stage_t *st = user_data;

    if (status != UCS_OK)
        kvs_debug("conn %llu: PUT payload lost: %s",
                  (unsigned long long)st->conn->id, ucs_status_string(status));
    direct_done(st->conn->srv, st, status == UCS_OK && length == st->len);
    ucp_request_free(request);
}

bool kvs_stage_direct(kvs_server_t *srv, kvs_stage_t *st,
                      const kvs_wire_msg_t *m)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .cb.recv_am = direct_recv_cb,
        .user_data = st,
        .memh = srv->arena_memh,
    };
    const kvs_wire_put_ent_t *pe = &m->u.put.ents[0];
    kvs_iov_t iovs[KVS_PARTS_MAX];
    kvs_put_args_t a;
    ucs_status_ptr_t sp;
    size_t len0;
    void *dst;

    if (m->hdr.opcode != KVS_OP_PUT || m->hdr.count != 1 || !st->conn->ns_ok ||
        !srv->arena_memh || pe->nparts > KVS_PARTS_MAX ||
        (pe->flags & (KVS_PUT_NO_DRAM | KVS_PUT_DURABLE)) ||
        pe->data_off != 0 || srv->wait_head || st->conn->dput_head ||
        srv->nslot_free != srv->cfg.staging_slots)
        return false; /* after staged or waiting PUTs, never ahead */
    kvs_handler_put_args(st->conn, pe, NULL, &a, iovs);
    /* A durable block is written when sealed, and a full DRAM would make
     * put_begin wait: both go the staging way, to an I/O thread. */
    a.flags |= KVS_PUT_NO_WAIT;
    if (kvs_store_put_begin(srv->store, &a, &st->ps) != 0)
        return false;
    /* Parts lie back to back from part 0's place: one receive. */
    dst = kvs_store_put_part_buf(srv->store, &st->ps, 0, &len0);
    if (!dst) {
        kvs_store_put_abort(srv->store, &st->ps);
        return false;
    }
    st->direct = true;
    srv->direct_puts++;
    st->hdr = m->hdr;
    st->t0 = kvs_clock_mono_ns();
    sp = ucp_am_recv_data_nbx(srv->worker, st->desc, dst, st->len, &prm);
    if (sp == NULL) {
        direct_done(srv, st, true);
    } else if (UCS_PTR_IS_ERR(sp)) {
        kvs_debug("conn %llu: PUT payload receive: %s",
                  (unsigned long long)st->conn->id,
                  ucs_status_string(UCS_PTR_STATUS(sp)));
        direct_done(srv, st, false);
    }
    return true;
}
