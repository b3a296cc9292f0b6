/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Staging: a PUT whose payload comes by rendezvous waits for one of the
 * staging slots allocated at start (back-pressure instead of an unbounded
 * queue), then the payload is received into it and the put runs from
 * there. Runs on the server's thread.
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
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA,
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
