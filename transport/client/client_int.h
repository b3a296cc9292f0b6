/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash's internals: the client side of the protocol
 * (include/kvstash/client.h), shared by its files: conn.c (the
 * connection), request.c (requests: sending, receiving, completing),
 * ops.c (the operations) and stream.c (streaming, include/kvstash/
 * stream.h). Not a public header and not exported from libkvstash.
 *
 * One client owns a UCX context and worker with its endpoints to the
 * daemon (control and bulk), and on this host a second context, worker
 * and endpoint for its PUTs (conn.c, kvs_client_put_connect), all driven
 * by the calling thread. Each request occupies one slot
 * of a fixed table (the in-flight window agreed in HELLO); its request id
 * is (sequence << 8 | slot), so a reply finds its slot in O(1) and a stale
 * or forged id is recognised and dropped.
 *
 *   slot: id | opcode | frame buffer | iov buffer | outputs | cb
 *
 * A request is complete when its frame has been sent (UCX released the
 * buffers), its reply has arrived, and, for a GET, every block announced
 * in the reply has landed in the caller's buffer. DATA messages and the
 * reply may arrive in either order. Completions are collected inside UCX
 * callbacks and their user callbacks run after ucp_worker_progress()
 * returns, so a user callback may call the library again.
 *
 * The library never aborts: every failure is a status, and a lost
 * connection fails what is in flight with KVS_EPEER.
 */
#ifndef KVS_CLIENT_INT_H
#define KVS_CLIENT_INT_H

#include <ucp/api/ucp.h>

#include <stdbool.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include "kvstash/kvstash.h"
#include "kvstash/wire.h"

#define SLOTS_MAX 256u /* request ids carry the slot in 8 bits */
#define BODY_CAP (128u << 10)
#define PUT_EP_MIN (64u << 10) /* a PUT payload worth the put endpoint */

typedef struct op op_t;
struct op {
    uint64_t id; /* 0: slot free */
    uint8_t opcode;
    bool sent; /* UCX is done with our buffers */
    bool replied;
    bool done_queued;
    uint32_t data_expected; /* GET: blocks the reply announced */
    uint32_t data_done;     /* GET: blocks fully received */
    uint32_t data_rndv;     /* GET: rendezvous receives still
                               writing into the caller's buffers */
    int status;
    uint32_t n; /* entries in the request */
    kvs_client_cb_t cb;
    void *arg;
    int *sync_status; /* synchronous waiters */
    bool *sync_done;
    op_t *done_next;
    union {
        kvs_client_put_t *put;
        kvs_client_get_t *get;
        struct {
            uint8_t *tiers;
            kvs_client_match_result_t *res;
        } match;
        uint8_t *present;
        int *status;
        uint64_t *promoted;
        struct {
            kvs_client_stat_t *out;
            size_t cap;
            size_t *n_out;
        } stat;
        struct {
            uint64_t *checked, *bad;
        } verify;
        struct {
            kvs_client_scan_ent_t *out;
            size_t cap;
            size_t *n_out;
            uint32_t *next_out;
        } scan;
    } out;
    uint8_t *frame;    /* KVS_WIRE_HDR_SIZE + BODY_CAP bytes */
    ucp_dt_iov_t *iov; /* PUT payload pieces */
    size_t iov_cap;
};

struct kvs_mr {
    ucp_mem_h memh;
    void *base;
    size_t len;
};

struct kvs_client {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep;      /* control: peer error handling on */
    ucp_ep_h bulk_ep; /* DATA: see transport/server/server_int.h */
    bool bulk_bound;  /* the daemon answered its BIND: PUTs
                       * go there too with BULK_PUT */
    /* The put endpoint (PUT_EP, on loopback): PUTs with a payload of
     * PUT_EP_MIN bytes or more, on a UCX context of their own whose
     * rendezvous sender writes (conn.c, put_connect). Made at the first
     * such PUT; its worker is progressed and waited on with worker. */
    ucp_context_h put_ctx;
    ucp_worker_h put_worker;
    ucp_ep_h put_ep;
    int put_efd;
    bool put_tried;  /* put_connect ran (once per client) */
    bool put_bound;  /* its BIND was answered: PUTs go there */
    ucp_ep_h bind_ep; /* where the BIND being sent goes */
    struct sockaddr_storage daemon_ss; /* the daemon's bulk address */
    int efd;
    int failed;     /* 0, or why every call now fails */
    bool peer_gone; /* UCX said so; failed once drained */
    bool ready;
    uint64_t seq;
    uint32_t nslots; /* window: min(max_inflight, SLOTS_MAX) */
    uint32_t inflight;
    op_t ops[SLOTS_MAX];
    op_t *done_head;
    kvs_client_limits_t limits;
    uint32_t max_body;
    uint32_t timeout_ms;
    uint64_t busy_ns;
    uint16_t bulk_port; /* from HELLO; 0: no bulk endpoint */
    uint16_t worker_port; /* from HELLO (MOVE): reconnect there; 0: stay */
    uint64_t bind_secret;
    kvs_wire_limits_t lim;
    kvs_wire_scratch_t *scratch;
    /* Streaming (stream.c): the namespace's name and its state. */
    char ns[KVS_NS_NAME_MAX + 1];
    void *stream;
    /* Shared memory with a same-host daemon (shm.c). */
    struct kvs_client_shm *shm; /* NULL: not attached */
    int shm_status;             /* why not, for kvs_shm_status() */
};

/* conn.c: opens the put endpoint once, if the daemon and the address
 * allow it; on any failure PUTs go on as before. */
void kvs_client_put_connect(kvs_client_t *c);
/* Arms both workers; false if either has events waiting. */
bool kvs_client_arm(kvs_client_t *c);
/* Sleeps up to timeout_ms on both workers' event fds, once armed. */
void kvs_client_sleep(kvs_client_t *c, int timeout_ms);
/* Gives the core away for about 20 us (more with the timer's slack): for
 * when arming says events are pending but progress finds none. */
void kvs_client_yield(void);

/* request.c */
int kvs_req_run_completions(kvs_client_t *c);
void kvs_req_ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status);
unsigned kvs_req_worker_progress(kvs_client_t *c);
ucs_status_t kvs_req_am_cb(void *arg, const void *header, size_t hlen,
                           void *data, size_t len,
                           const ucp_am_recv_param_t *param);
int kvs_req_progress_once(kvs_client_t *c, uint64_t *idle_since);
op_t *kvs_req_alloc(kvs_client_t *c, uint8_t opcode);
void kvs_req_abort(kvs_client_t *c, op_t *op);
int kvs_req_wait(kvs_client_t *c, bool *done, const int *status);
int kvs_req_submit(kvs_client_t *c, op_t *op, kvs_wire_msg_t *m,
                   const void *payload, size_t plen, size_t niov,
                   kvs_client_cb_t cb, void *arg, bool sync);

/* What stream.c uses of a client. */
typedef struct kvs_client_internals {
    ucp_worker_h worker;
    ucp_ep_h ep;      /* NULL once the connection failed */
    ucp_ep_h data_ep; /* where stream messages go: the bound
                         bulk endpoint, else ep */
    const char *ns;   /* the namespace named in HELLO */
    void **stream;    /* stream.c's state; freed with
                         the client */
    int failed;       /* 0, or why every call now fails */
} kvs_client_internals_t;

void kvs_client_internals(kvs_client_t *client, kvs_client_internals_t *out);
int kvs_client_progress_idle(kvs_client_t *client, uint64_t *idle_since);
/* request.c hands every stream opcode it receives to stream.c: data
 * and len are the AM data (part bytes); UCS_INPROGRESS keeps them. */
ucs_status_t kvs_client_stream_rx(kvs_client_t *client, const kvs_wire_msg_t *m,
                                  void *data, size_t len, bool rndv);
/* stream.c: frees the streaming state (its pools) with the client. */
void kvs_client_stream_free(void *stream);

/* shm.c: attaches to the daemon's arena over the Unix socket at path
 * (sets c->shm, or c->shm_status), and the teardown. */
void kvs_client_shm_attach(kvs_client_t *c, const char *path,
                           const char *token, uint32_t elem_size);
void kvs_client_shm_detach(kvs_client_t *c);
/* The arena as this client maps it, and the session's stream key (for
 * stream.c's puts and fetches in place); false when not attached. */
bool kvs_client_shm_map(const kvs_client_t *c, uint8_t **base_out,
                        size_t *len_out, uint64_t *key_out);

#endif
