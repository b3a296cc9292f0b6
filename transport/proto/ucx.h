/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one place kvstash talks to UCX's setup calls: context and worker,
 * endpoints (connecting and accepting), listeners, the active-message
 * handler and memory registration, and the one mapping from a UCX status to
 * a kvstash status. Shared by the daemon (server/) and libkvstash
 * (client/). Not a public header.
 *
 * Every kvs_ucx_* call that fails logs what it was doing and UCX's own text
 * for the status (at warning level; the caller decides whether that is
 * fatal) and returns a kvstash status from kvs_ucx_status(). Sends,
 * receives and closes stay with their callers: their callbacks differ.
 *
 * Threading: none of these keep state; the handles they return belong to
 * the caller's thread like the worker they were made on.
 */
#ifndef KVS_UCX_H
#define KVS_UCX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ucp/api/ucp.h>

/* The UCX active-message id of every kvstash message, both ways, for the
 * daemon, its peers and libkvstash (docs/protocol.md section 2). */
#define KVS_AM_ID 7u

/* What kvs_ucx_open() should set in UCX's configuration (each only when the
 * operator has not set it in the environment; see ucx.c). */
typedef struct kvs_ucx_opts {
    const char *name; /* the context's name, for UCX's logs */
    bool loopback;    /* talking over 127.0.0.1 or ::1: TCP put
                         off (UCX_TCP_PUT_ENABLE=n) */
    bool lo_only;     /* daemon on loopback: UCX_NET_DEVICES=lo */
    bool rndv_put;    /* a large message's sender writes it into the
                         receiver (UCX_RNDV_SCHEME=put_zcopy) */
    bool mt_workers;  /* workers of this context run on several
                         threads (UCP_PARAM_FIELD_MT_WORKERS_SHARED) */
} kvs_ucx_opts_t;

/*
 * A kvstash status for a UCX status: 0 for UCS_OK; -ENOMEM, -EADDRINUSE,
 * -EINVAL, -ENODEV, -ETIMEDOUT, KVS_EPEER (the other side is unreachable or
 * gone) for the statuses that mean those; -EIO for the rest. If what is not
 * NULL and st is an error, logs "what: <UCX's text>" as a warning.
 */
int kvs_ucx_status(ucs_status_t st, const char *what);

/* A context with active messages and wakeup, and one single-threaded worker
 * on it. On failure nothing is left to release. */
int kvs_ucx_open(const kvs_ucx_opts_t *opts, ucp_context_h *ctx_out,
                 ucp_worker_h *worker_out);

/* Another worker on ctx (opened with mt_workers), serialized: it may be
 * created on one thread, served on another and destroyed on a third, one
 * at a time. */
int kvs_ucx_worker_create(ucp_context_h ctx, ucp_worker_h *worker_out);

/* Sets cb as the worker's handler for active-message id am_id. */
int kvs_ucx_am_handler(ucp_worker_h worker, unsigned am_id,
                       ucp_am_recv_callback_t cb, void *arg);

/*
 * An endpoint to a listener at ss. peer: with peer error handling (UCX
 * notices a dead peer); without, UCX 1.13 may use CMA for rendezvous (the
 * bulk endpoints). err_cb, if not NULL, is told of errors either way.
 */
int kvs_ucx_connect(ucp_worker_h worker, const struct sockaddr_storage *ss,
                    bool peer, ucp_err_handler_cb_t err_cb, void *err_arg,
                    ucp_ep_h *ep_out);

/* Accepts a connection request on a listener; peer and err_cb as for
 * kvs_ucx_connect(). */
int kvs_ucx_accept(ucp_worker_h worker, ucp_conn_request_h req, bool peer,
                   ucp_err_handler_cb_t err_cb, void *err_arg,
                   ucp_ep_h *ep_out);

/* A listener at ss (port 0: any free port); its port into *port_out. */
int kvs_ucx_listen(ucp_worker_h worker, const struct sockaddr_storage *ss,
                   ucp_listener_conn_callback_t cb, void *arg,
                   ucp_listener_h *listener_out, uint16_t *port_out);

/* Registers [addr, addr + len) with the context for zero-copy sends and
 * receives. */
int kvs_ucx_mem_map(ucp_context_h ctx, void *addr, size_t len,
                    ucp_mem_h *memh_out);

#endif
