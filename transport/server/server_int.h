/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the daemon's transport, shared by server.c (listeners,
 * receiving, the event loop), conn.c (connections), send.c (sends),
 * stage.c (staging of rendezvous PUT payloads) and handler.c (the opcode
 * table). Not a public header.
 *
 * Threading: a kvs_server_t is one serving thread's (daemon.threads): its
 * UCX worker, connections, staging and scratch are owned by the thread
 * that progresses that worker, and UCX callbacks run inside
 * ucp_worker_progress() on it, so nothing in this file takes a lock. Thread
 * 0 is the kvs_server_t that kvs_server_create() returns; it runs on the
 * caller of kvs_server_run() and owns the others (workers[]), which share
 * its store, UCX context and arena registration, and run on threads of
 * their own (server.c). The counters that STAT and /metrics sum over the
 * threads are atomics, written by their owner only (uncontended atomic
 * increments) and read by any thread.
 */
#ifndef KVS_SERVER_INT_H
#define KVS_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <ucp/api/ucp.h>

#include "kvstash/wire.h"
#include "transport/proto/ucx.h"
#include "transport/server/diskq.h"
#include "transport/server/metrics.h"
#include "transport/server/server.h"

typedef struct kvs_conn kvs_conn_t;
typedef struct kvs_dput kvs_dput_t;

/* A bulk endpoint: a second connection from a client, made without peer
 * error handling so that UCX 1.13 may use CMA for rendezvous (it requires
 * RMA invalidation on every rendezvous lane of a peer-error endpoint, which
 * CMA lacks). It carries nothing but the client's BIND and the daemon's
 * DATA messages; its owner is found by (session, secret) from HELLO, and it
 * is force-closed with its connection, whose own endpoint (peer error
 * handling on) is what notices a dead client. */
typedef struct kvs_bulk {
    struct kvs_bulk *next;
    struct kvs_bulk *hnext; /* endpoint hash chain */
    ucp_ep_h ep;
    kvs_conn_t *conn;    /* NULL until bound */
    uint64_t created_ns; /* unbound ones expire */
    uint64_t refused_ns; /* BIND refused: closed once the refusal
                            is sent, or 1 s after it at most */
    bool failed;         /* UCX reported an error, or to close */
    bool put_only;       /* bound as its connection's put endpoint
                            (PUT_EP): PUTs only; counted in the root's
                            nputeps */
} kvs_bulk_t;

/* A lease: references taken by one MATCH, dropped by a GET naming it, a
 * RELEASE, its timeout, or the connection's end. */
typedef struct kvs_lease {
    struct kvs_lease *next;
    uint64_t id;
    uint64_t expiry_ns; /* monotonic */
    uint32_t ns;        /* store namespace of the keys */
    uint32_t nkeys;
    uint8_t keys[]; /* nkeys x (u8 len, bytes) */
} kvs_lease_t;

/* A reference a client took with PIN (not RETAIN); dropped by UNPIN or the
 * connection's end. */
typedef struct kvs_conn_pin {
    uint8_t len;
    uint8_t key[KVS_KEY_MAX];
} kvs_conn_pin_t;

/* One client connection. Lives until it is closed and the last send or
 * receive that refers to it has completed (refs). */
struct kvs_conn {
    kvs_conn_t *next, *prev; /* server's list of connections */
    kvs_conn_t *hnext;       /* endpoint hash chain */
    kvs_conn_t *close_next;  /* deferred-close list */
    kvs_server_t *srv;
    ucp_ep_h ep;
    uint64_t id;
    uint64_t accepted_ns; /* monotonic; for the HELLO deadline */
    int refs;             /* 1 while open + in-flight operations */
    bool ready;           /* HELLO accepted */
    bool prehello;        /* counted in srv->nprehello */
    bool evicted;         /* closed to make room; counted in
                             srv->nevicting until closed */
    bool closing;         /* no new work; being torn down */
    bool close_queued;
    bool close_graceful; /* flush before disconnecting */
    bool peer_failed;    /* UCX reported the peer gone */
    const kvs_tenant_t *tenant;
    bool ns_ok;        /* the tenant may use the namespace */
    uint32_t ns;       /* store namespace id, when ns_ok */
    uint32_t features; /* agreed in HELLO */
    uint32_t inflight; /* requests accepted, reply not yet sent */
    kvs_lease_t *leases;
    uint32_t nleases;
    kvs_conn_pin_t *pins; /* max_pins entries, allocated at first PIN */
    uint32_t npins;
    uint64_t session;        /* random, for BIND; told in HELLO */
    uint64_t bind_secret;    /* for BIND, from HELLO */
    kvs_bulk_t *bulk;        /* bound bulk endpoint, if any */
    kvs_bulk_t *put_bulk;    /* bound put endpoint (PUT_EP), if any */
    struct kvs_tx *data_txs; /* DATA sends UCX has not completed */
    uint32_t ndata;          /* of them (max_inflight_blocks) */
    uint64_t data_bytes;     /* their bytes (max_inflight_bytes) */
    kvs_dput_t *dput_head;   /* PUTs on the I/O threads, in order: the */
    kvs_dput_t *dput_tail;   /* head runs, the rest wait (diskop.c) */
};

/* A send in flight: a frame and, for DATA, the pinned block it carries. */
typedef struct kvs_tx {
    struct kvs_tx *next;          /* free list */
    struct kvs_tx *dnext, *dprev; /* conn->data_txs while a DATA is posted */
    bool in_data_list;
    uint64_t data_len; /* counted in conn->data_bytes */
    kvs_conn_t *conn;  /* referenced while in flight */
    bool has_view;
    bool close_after; /* close the connection once sent */
    kvs_view_t view;  /* pinned source of a DATA payload */
    uint8_t buf[];    /* tx_cap bytes */
} kvs_tx_t;

/* A PUT whose payload comes by rendezvous: waits for a staging slot, then
 * for the payload to land in it. */
typedef struct kvs_stage {
    struct kvs_stage *next;
    kvs_conn_t *conn;
    void *desc;   /* UCX rendezvous descriptor */
    uint64_t len; /* payload bytes */
    int slot;     /* -1 until assigned */
    size_t frame_len;
    bool direct;         /* received straight into the arena */
    kvs_put_stream_t ps; /* direct: the block reserved there */
    kvs_wire_hdr_t hdr;  /* direct: the request's */
    uint64_t t0;         /* direct: arrival */
    uint8_t frame[KVS_WIRE_INLINE_MAX];
} kvs_stage_t;

struct kvs_server {
    kvs_server_config_t cfg;
    kvs_store_t *store; /* borrowed */
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_listener_h listener;
    ucp_listener_h bulk_listener; /* NULL: no bulk endpoints */
    uint16_t bulk_port;
    kvs_bulk_t *bulks;      /* every bulk endpoint */
    kvs_bulk_t **bulk_hash; /* the same, by endpoint (hash_mask) */
    uint32_t nbulks;
    ucp_mem_h arena_memh; /* the store's DRAM arena, mapped once */
    int epfd;
    uint16_t port;

    kvs_conn_t *conns; /* every connection not yet freed */
    kvs_conn_t **hash; /* open connections by endpoint */
    uint32_t hash_mask;
    kvs_conn_t *close_list;     /* connections to close from the loop */
    _Atomic uint32_t nconns;    /* open connections */
    _Atomic uint32_t nprehello; /* of them, not past HELLO yet */
    uint32_t nevicting;         /* of them, queued for closing to make
                                   room for a new one */
    uint64_t next_conn_id;
    uint64_t next_lease_id;

    kvs_wire_limits_t lim;
    kvs_wire_scratch_t *scratch;
    size_t tx_cap; /* bytes of a kvs_tx_t buffer */
    kvs_tx_t *tx_free;
    kvs_stage_t *stage_free;
    kvs_stage_t *wait_head, *wait_tail; /* stages waiting for a slot */
    uint8_t **slots;                    /* staging_slots x max_payload bytes */
    int *slot_free;
    uint32_t nslot_free;

    /* Per-request scratch for store calls (max_keys entries each). */
    kvs_key_t *keys;
    uint8_t *bytes;
    int32_t *status;
    kvs_wire_block_t *blocks;
    kvs_put_args_t *puts;
    uint32_t *idx;   /* GET entries to read from disk */
    kvs_iov_t *iovs; /* KVS_WIRE_BODY_MAX / 4 entries */

    uint64_t started_ns; /* monotonic, at create */

    /* Counters, reported by STAT. */
    _Atomic uint64_t conns_accepted;
    _Atomic uint64_t conns_rejected;
    _Atomic uint64_t conns_moved;     /* thread 0: told to move in HELLO */
    _Atomic uint64_t hello_timeouts;  /* closed for want of a HELLO */
    _Atomic uint64_t hello_evictions; /* closed without HELLO to make room */
    _Atomic uint64_t bad_frames;
    _Atomic uint64_t auth_failures;
    _Atomic uint64_t requests;
    _Atomic uint64_t leases_active;
    _Atomic uint64_t leases_expired;
    _Atomic uint64_t conn_pins;
    _Atomic uint64_t staged_puts;
    _Atomic uint64_t direct_puts; /* of those, received into the arena */
    _Atomic uint64_t bulk_bound;  /* bulk and put endpoints bound */
    _Atomic uint64_t put_ep_puts; /* PUTs that came on a put endpoint */
    _Atomic uint32_t nputeps;     /* root's: put endpoints bound, over
                                   * every serving thread */
    _Atomic uint64_t blocks_sent;   /* DATA messages posted */
    _Atomic uint64_t bytes_sent;    /* their payload bytes */
    _Atomic uint64_t get_misses;    /* GET entries answered without data */
    _Atomic uint64_t get_throttled; /* GET entries answered -EAGAIN: too
                               much DATA not taken yet */
    _Atomic uint64_t puts_waited;   /* PUTs handed to an I/O thread: durable,
                                     * or DRAM full (diskop.c) */
    _Atomic uint64_t puts_refused_busy; /* PUTs answered -EAGAIN: too many
                                         * bytes of PUTs waiting already */

    /* Streaming between sidecars (transport/server/stream.c). */
    struct kvs_srvstream *stream;
    struct kvs_metrics *metrics; /* NULL: metrics off (metrics.c) */
    struct kvs_diskq *diskq;     /* I/O threads (diskq.c) */
    struct kvs_shm *shm;         /* same-host clients (shm.c); NULL: off */
    uint64_t dput_bytes;         /* held by deferred PUTs (diskop.c) */
    bool deferred;               /* set by a handler that handed its
                                  * request to diskop.c (which replies
                                  * and counts it) */

    /* Serving threads (daemon.threads). On thread 0 (primary NULL):
     * the others, created with it and destroyed with it. On another:
     * its thread 0 (whose stream, shm and metrics it borrows or, for
     * stream and shm, leaves alone: its stream is NULL). */
    struct kvs_server *primary;
    struct kvs_server **workers; /* threads - 1 of them */
    uint32_t nworkers;
    uint32_t next_worker; /* round robin of HELLO moves, thread 0's */
    uint32_t index;       /* 0 .. threads - 1 */
    pthread_t thread;     /* while thread_started */
    bool thread_started;
    atomic_bool quit; /* set by thread 0 to end this one's loop */
    int run_status;   /* this thread's kvs_server_run() result */
    atomic_bool dead; /* its loop failed: thread 0 moves no one there */
};

/* server.c: thread 0 of srv's threads. */
static inline kvs_server_t *kvs_server_root(kvs_server_t *srv)
{
    return srv->primary ? srv->primary : srv;
}

/* send.c */
kvs_tx_t *kvs_send_tx_get(kvs_server_t *srv, kvs_conn_t *conn);
void kvs_send_tx_put(kvs_server_t *srv, kvs_tx_t *tx);
int kvs_send_frame(kvs_server_t *srv, kvs_tx_t *tx, size_t len);
int kvs_send_data(kvs_server_t *srv, kvs_tx_t *tx, size_t hlen);
void kvs_send_status(kvs_server_t *srv, kvs_conn_t *conn,
                     const kvs_wire_hdr_t *req, int status, bool close_after);
void kvs_send_reply(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *rep);
/* A header-only reply on a bulk endpoint that is not bound (a refused
 * BIND): it goes back where the request came from, never to a connection
 * the request named. The endpoint is marked failed (and so closed) once
 * the reply has been sent. */
void kvs_send_bulk_status(kvs_server_t *srv, kvs_bulk_t *b,
                          const kvs_wire_hdr_t *req, int status);

int kvs_send_block(kvs_server_t *srv, kvs_tx_t *tx, uint64_t req_id,
                   uint32_t idx, uint64_t cap, uint8_t tier,
                   kvs_wire_block_t *b);

/* A reply's header to request req, with count entries. */
static inline kvs_wire_msg_t kvs_reply_to(const kvs_wire_hdr_t *req,
                                          uint32_t count)
{
    kvs_wire_msg_t r;

    memset(&r, 0, sizeof(r));
    r.hdr.opcode = req->opcode;
    r.hdr.flags = KVS_WIRE_F_REPLY;
    r.hdr.req_id = req->req_id;
    r.hdr.count = count;
    return r;
}

/* conn.c */
/* The open connection whose control endpoint is ep, or NULL. */
kvs_conn_t *kvs_conn_find(kvs_server_t *srv, ucp_ep_h ep);
/* The bulk endpoint ep, bound or not, or NULL. */
kvs_bulk_t *kvs_conn_bulk_find(kvs_server_t *srv, ucp_ep_h ep);
void kvs_conn_unref(kvs_conn_t *conn);
void kvs_conn_close(kvs_conn_t *conn);
void kvs_conn_close_now(kvs_conn_t *conn);
void kvs_conn_lease_free(kvs_server_t *srv, kvs_lease_t *lease);
/* A lease on keys[0..n-1], already referenced in the connection's
 * namespace, for ms (capped at lease_max_ms); its id in *id_out. */
int kvs_conn_lease_add(kvs_conn_t *conn, const kvs_key_t *keys, size_t n,
                       uint64_t ms, uint64_t *id_out);
/* The listeners' callbacks: a client's (or peer's) control endpoint, and
 * a bulk endpoint. */
void kvs_conn_request_cb(ucp_conn_request_h req, void *arg);
void kvs_conn_bulk_request_cb(ucp_conn_request_h req, void *arg);
/* The only frame a bulk endpoint may send before it is bound. */
void kvs_conn_bulk_bind(kvs_server_t *srv, kvs_bulk_t *b, const void *frame,
                        size_t len);
void kvs_conn_bulk_close(kvs_server_t *srv, kvs_bulk_t *b);
/* Closes the connections whose HELLO deadline has passed. */
void kvs_conn_sweep_prehello(kvs_server_t *srv, uint64_t now);
/* The one place a connection's tenancy and features are set, once handler.c
 * has checked its HELLO: tenant (NULL: a peer daemon's link), whether it
 * may use its namespace ns, the features agreed (BULK only when this
 * daemon has a bulk port; then a new BIND secret). */
void kvs_conn_set_ready(kvs_server_t *srv, kvs_conn_t *conn,
                        const kvs_tenant_t *tenant, bool ns_ok, uint32_t ns,
                        uint32_t features);
/* A peer's HELLO is being answered: replies to it carry the UCX reply
 * endpoint (how a daemon tells its links apart), even a refusal. */
void kvs_conn_set_peer_form(kvs_conn_t *conn);
/* Where a connection's block bytes go: its bound bulk endpoint (CMA, see
 * BIND in docs/protocol.md), else its control endpoint. */
static inline ucp_ep_h kvs_conn_data_ep(const kvs_conn_t *c)
{
    return c->bulk && !c->bulk->failed ? c->bulk->ep : c->ep;
}

/* stage.c */
kvs_stage_t *kvs_stage_get(kvs_server_t *srv);
void kvs_stage_release(kvs_server_t *srv, kvs_stage_t *st);
void kvs_stage_start(kvs_server_t *srv, kvs_stage_t *st);
void kvs_stage_pump(kvs_server_t *srv);
/* A one-block PUT (m, decoded from st's frame) received straight into
 * the block's place in the DRAM arena: true when started (st is then
 * consumed), false when the staging path must take it. */
bool kvs_stage_direct(kvs_server_t *srv, kvs_stage_t *st,
                      const kvs_wire_msg_t *m);

/* diskop.c: the part of a request that reads the disk, on an I/O thread;
 * each replies when its reads are done. The handler has checked the
 * request; these copy what they need of m. On failure to hand over
 * (-ENOMEM) nothing was taken and the handler answers. */
/* GET entries idx[0..nidx-1] of m that are on disk only; blocks holds the
 * results of the others (m->hdr.count entries). */
int kvs_diskop_get(kvs_server_t *srv, kvs_conn_t *conn, const kvs_wire_msg_t *m,
                   const kvs_wire_block_t *blocks, const uint32_t *idx,
                   uint32_t nidx);
/* MATCH with a lease whose chain reaches a block on disk only. */
int kvs_diskop_match(kvs_server_t *srv, kvs_conn_t *conn,
                     const kvs_wire_msg_t *m);
int kvs_diskop_prefetch(kvs_server_t *srv, kvs_conn_t *conn,
                        const kvs_wire_msg_t *m);
int kvs_diskop_verify(kvs_server_t *srv, kvs_conn_t *conn,
                      const kvs_wire_msg_t *m);
/* PUT entries first..n-1 of m, whose payload is at payload, on an I/O
 * thread where they may wait for room in DRAM or for the disk; status
 * holds the results of entries 0..first-1 (stored already). 0: the reply
 * will follow; -EAGAIN (too many PUT bytes waiting already: try again) or
 * -ENOMEM: nothing was taken, the handler answers. */
int kvs_diskop_put(kvs_server_t *srv, kvs_conn_t *conn, const kvs_wire_msg_t *m,
                   const uint8_t *payload, const int32_t *status,
                   uint32_t first);

/* stat.c: the STAT handler (operator or tenant view). */
void kvs_stat_op(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                 const uint8_t *payload);

/* handler.c */
int kvs_handler_check(void);
/* The store's put arguments for PUT entry pe (parts at iovs, pe->nparts
 * entries; their bases in payload, or NULL without one). */
void kvs_handler_put_args(const kvs_conn_t *conn, const kvs_wire_put_ent_t *pe,
                          const uint8_t *payload, kvs_put_args_t *a,
                          kvs_iov_t *iovs);
/* Handles one decoded request; payload is the PUT payload when it is
 * already in memory (eager or staged). */
void kvs_handler_dispatch(kvs_server_t *srv, kvs_conn_t *conn,
                          kvs_wire_msg_t *msg, const uint8_t *payload);
bool kvs_handler_known(unsigned opcode);
/* A stream opcode: to its handler if the connection's features allow it,
 * else dropped (stream opcodes have no error reply). */
ucs_status_t kvs_handler_dispatch_stream(kvs_server_t *srv, kvs_conn_t *conn,
                                         kvs_wire_msg_t *m, void *data,
                                         size_t len, bool rndv);

/* handler.c: the tenant whose token this is (the open tenant when none
 * are configured), or NULL; and whether it may use namespace ns. Read
 * only the configuration, so any thread may call them. */
const kvs_tenant_t *kvs_handler_tenant_find(const kvs_server_config_t *cfg,
                                            const kvs_wire_bytes_t *token);
bool kvs_handler_ns_allowed(const kvs_tenant_t *t, const kvs_wire_bytes_t *ns);

#endif
