/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kvstash client API. Include kvstash/kvstash.h, which includes this.
 *
 * A kvs_client_t is one connection to one kvstashd, in one namespace, acting
 * for the tenant whose token it presented. It is not thread-safe: use one
 * client per thread (as with a UCX worker), or serialise calls.
 *
 * Every call returns 0 or a negative status (kvstash/status.h). Nothing in
 * the library aborts or exits its host process; out of memory is -ENOMEM.
 * When the daemon goes away, calls in flight complete with KVS_EPEER and
 * every later call fails with KVS_EPEER: destroy the client and create a
 * new one.
 *
 * Calls come in two forms:
 *  - synchronous (kvs_client_get_batch ...): return when the reply is in;
 *  - asynchronous (..._async): return once the request is sent; the
 *    callback runs later, from inside kvs_client_progress() or
 *    kvs_client_wait(), on the calling thread. Until then every buffer and
 *    array passed to the call belongs to the library and must stay valid.
 * Batch calls take arrays; a synchronous batch is split into as many frames
 * as the daemon's limits need, an asynchronous batch must fit in one frame
 * (KVS_ETOOBIG otherwise; kvs_client_limits() tells the limits).
 *
 * Block bytes of a GET are received directly into the caller's buffer (one
 * copy, done by UCX). Registering that buffer once with kvs_client_mem_reg()
 * and passing the registration spares UCX a registration per call. A
 * client of a daemon on this host copies the bytes of its PUTs of 64 KiB
 * or more itself, into the daemon's memory (the put endpoint,
 * docs/protocol.md section 5): inside the call, or for an asynchronous
 * PUT inside the next kvs_client_progress() or wait. The daemon grants
 * that to a few clients at once (daemon.put_endpoints); for the others,
 * and with KVSTASH_PUT_EP=0 in the environment, the daemon reads them.
 */
#ifndef KVSTASH_CLIENT_H
#define KVSTASH_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"
#include "kvstash/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef KVS_API_VERSION
#error "include kvstash/kvstash.h, not kvstash/client.h"
#endif

#define KVS_DEFAULT_PORT 7370u /* kvstashd's default port, on 127.0.0.1 */

typedef struct kvs_client kvs_client_t;
typedef struct kvs_mr kvs_mr_t;

/* Which fields of kvs_client_params_t are set. Unset fields take their
 * defaults, so new fields can be added without breaking old callers. */
enum kvs_client_param_field {
    KVS_CLIENT_PARAM_ADDR = 1u << 0,
    KVS_CLIENT_PARAM_PORT = 1u << 1,
    KVS_CLIENT_PARAM_TOKEN = 1u << 2,
    KVS_CLIENT_PARAM_NS = 1u << 3,
    KVS_CLIENT_PARAM_ELEM_SIZE = 1u << 4,
    KVS_CLIENT_PARAM_TIMEOUT_MS = 1u << 5,
    KVS_CLIENT_PARAM_BUSY_POLL_US = 1u << 6,
    KVS_CLIENT_PARAM_SHM_SOCKET = 1u << 7,
};

typedef struct kvs_client_params {
    uint64_t field_mask;   /* KVS_CLIENT_PARAM_* */
    const char *addr;      /* numeric IP; default "127.0.0.1" */
    uint16_t port;         /* default KVS_DEFAULT_PORT */
    const char *token;     /* auth token; default none */
    const char *ns;        /* namespace; required */
    uint32_t elem_size;    /* bytes per tensor element; default 0 */
    uint32_t timeout_ms;   /* connect, and each synchronous call;
                              0: wait forever (the default for calls;
                              connecting waits 10 s) */
    uint32_t busy_poll_us; /* spin this long before sleeping while
                              waiting; default 20 */
    const char *shm_socket; /* the daemon's daemon.shm_socket: map its
                               arena (kvstash/shm.h); default
                               $KVSTASH_SHM_SOCKET, else none */
} kvs_client_params_t;

/*
 * Connects and authenticates. Strings in params are copied. On success
 * *client_out is the caller's until kvs_client_destroy(). KVS_EAUTH: the
 * token was refused; KVS_EPEER: nobody answered; KVS_EPROTO_VERSION: the
 * daemon speaks another protocol version.
 */
KVS_API int kvs_client_create_v(unsigned api_version,
                                const kvs_client_params_t *params,
                                kvs_client_t **client_out);

static inline int kvs_client_create(const kvs_client_params_t *params,
                                    kvs_client_t **client_out)
{
    return kvs_client_create_v(KVS_API_VERSION, params, client_out);
}

/* Waits for calls in flight, closes the connection (the daemon drops this
 * client's leases and pins) and frees the client. NULL is a no-op. */
KVS_API void kvs_client_destroy(kvs_client_t *client);

/* The daemon's limits, from the handshake. */
typedef struct kvs_client_limits {
    uint32_t max_keys;     /* entries in one frame */
    uint32_t max_payload;  /* bytes of blocks in one PUT frame */
    uint32_t max_inflight; /* requests in flight */
    uint32_t lease_max_ms;
    uint32_t features; /* KVS_WIRE_FEAT_* agreed */
    uint64_t session;  /* the daemon's connection id */
} kvs_client_limits_t;

KVS_API void kvs_client_limits(const kvs_client_t *client,
                               kvs_client_limits_t *limits_out);

/* A key (1..KVS_KEY_MAX bytes), owned by the caller. */
typedef struct kvs_client_key {
    const void *data;
    uint32_t len;
} kvs_client_key_t;

/* Completion callback of an asynchronous call: status is what the
 * synchronous form would have returned. */
typedef void (*kvs_client_cb_t)(void *arg, int status);

/* ---- memory registration ------------------------------------------ */

/* Registers [buf, buf+len) with UCX for receiving blocks. The memory stays
 * the caller's; *mr_out is valid until kvs_client_mem_dereg(). */
KVS_API int kvs_client_mem_reg(kvs_client_t *client, void *buf, size_t len,
                               kvs_mr_t **mr_out);
/* Deregisters; no call in flight may still use the memory. NULL: no-op. */
KVS_API void kvs_client_mem_dereg(kvs_client_t *client, kvs_mr_t *mr);

/* ---- PUT ----------------------------------------------------------- */

#define KVS_CLIENT_PUT_DURABLE (1u << 0) /* acknowledged once on disk */
#define KVS_CLIENT_PUT_NO_DRAM (1u << 1) /* straight to disk (bulk loads) */

/* One block to store. parts are read until the call completes. */
typedef struct kvs_client_put {
    kvs_client_key_t key;
    kvs_client_key_t parent; /* len 0: no parent */
    const kvs_iov_t *parts;  /* the block, part by part (e.g. layers) */
    uint32_t nparts;         /* 1..KVS_PARTS_MAX */
    uint32_t flags;          /* KVS_CLIENT_PUT_* */
    uint8_t cls;             /* enum kvs_class */
    uint8_t elem_size;       /* 0: the namespace's */
    uint64_t ttl_ms;         /* user class; 0: none */
    uint64_t group;          /* conversation or user id; 0: none */
    int status;              /* out: this block's result */
} kvs_client_put_t;

/* Stores n blocks. Returns 0 when all were stored, else the first failing
 * block's status (each item's status is set). */
KVS_API int kvs_client_put_batch(kvs_client_t *client, kvs_client_put_t *items,
                                 size_t n);
KVS_API int kvs_client_put_batch_async(kvs_client_t *client,
                                       kvs_client_put_t *items, size_t n,
                                       kvs_client_cb_t cb, void *arg);
/* One block of one part. */
KVS_API int kvs_client_put(kvs_client_t *client, const void *key,
                           uint32_t key_len, const void *buf, size_t len,
                           uint32_t flags);

/* ---- GET ----------------------------------------------------------- */

/* One block to fetch into buf. */
typedef struct kvs_client_get {
    kvs_client_key_t key;
    void *buf;           /* receives the block's bytes */
    size_t cap;          /* bytes at buf */
    kvs_mr_t *mr;        /* optional: a registration covering buf */
    uint32_t *part_lens; /* optional: receives part lengths */
    uint32_t part_cap;   /* entries at part_lens */
    int status;          /* out: 0, KVS_ENOTFOUND, -ENOBUFS ... */
    uint64_t len;        /* out: block bytes (also on -ENOBUFS) */
    uint32_t nparts;     /* out */
    uint8_t tier;        /* out: enum kvs_tier served from */
    uint8_t cls;         /* out: enum kvs_class */
} kvs_client_get_t;

/* Fetches n blocks; lease_id (0: none) is a lease from kvs_client_match(),
 * which this call ends. Returns 0 when all were fetched, else the first
 * failing block's status. */
KVS_API int kvs_client_get_batch(kvs_client_t *client, kvs_client_get_t *items,
                                 size_t n, uint64_t lease_id);
KVS_API int kvs_client_get_batch_async(kvs_client_t *client,
                                       kvs_client_get_t *items, size_t n,
                                       uint64_t lease_id, kvs_client_cb_t cb,
                                       void *arg);
/* One block; *len_out gets its size (also on -ENOBUFS). */
KVS_API int kvs_client_get(kvs_client_t *client, const void *key,
                           uint32_t key_len, void *buf, size_t cap,
                           size_t *len_out);

/* ---- MATCH and friends --------------------------------------------- */

#define KVS_CLIENT_MATCH_LEASE (1u << 0) /* hold the matched blocks */

typedef struct kvs_client_match_result {
    size_t matched;    /* leading keys present */
    uint64_t lease_id; /* 0 unless a lease was taken */
} kvs_client_match_result_t;

/*
 * How many leading keys of keys[0..n) are present: one round trip for the
 * whole prompt. tiers_out (optional, n entries) gets where each matched
 * block lives (enum kvs_tier). With KVS_CLIENT_MATCH_LEASE the matched
 * blocks are held until a GET names the lease, kvs_client_release(),
 * lease_ms (0: the daemon's default) or this client's end.
 */
KVS_API int kvs_client_match(kvs_client_t *client, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, uint32_t lease_ms,
                             uint8_t *tiers_out,
                             kvs_client_match_result_t *result_out);
KVS_API int kvs_client_match_async(kvs_client_t *client,
                                   const kvs_client_key_t *keys, size_t n,
                                   uint32_t flags, uint32_t lease_ms,
                                   uint8_t *tiers_out,
                                   kvs_client_match_result_t *result_out,
                                   kvs_client_cb_t cb, void *arg);
/* Ends a lease early. KVS_ENOTFOUND if it already ended. */
KVS_API int kvs_client_release(kvs_client_t *client, uint64_t lease_id);

/* present_out[i] = 1 if keys[i] is present, else 0. */
KVS_API int kvs_client_exists(kvs_client_t *client,
                              const kvs_client_key_t *keys, size_t n,
                              uint8_t *present_out);
KVS_API int kvs_client_exists_async(kvs_client_t *client,
                                    const kvs_client_key_t *keys, size_t n,
                                    uint8_t *present_out, kvs_client_cb_t cb,
                                    void *arg);
/* status_out[i] gets each key's result; returns the first failure. */
KVS_API int kvs_client_delete(kvs_client_t *client,
                              const kvs_client_key_t *keys, size_t n,
                              int *status_out);

/* PIN without flags holds a reference for this client's lifetime (the
 * block stays in DRAM); KVS_CLIENT_PIN_RETAIN makes the blocks' class
 * "pinned" in the store, which outlives the client. */
#define KVS_CLIENT_PIN_RETAIN (1u << 0)
KVS_API int kvs_client_pin(kvs_client_t *client, const kvs_client_key_t *keys,
                           size_t n, uint32_t flags, int *status_out);
KVS_API int kvs_client_unpin(kvs_client_t *client, const kvs_client_key_t *keys,
                             size_t n, uint32_t flags, int *status_out);
/* Brings blocks from NVMe into DRAM ahead of need. */
KVS_API int kvs_client_prefetch(kvs_client_t *client,
                                const kvs_client_key_t *keys, size_t n,
                                uint64_t *promoted_out);

/* ---- administration ----------------------------------------------- */

typedef struct kvs_client_stat {
    char name[64]; /* NUL-terminated */
    uint64_t value;
} kvs_client_stat_t;

/* The daemon's counters and gauges (refs, connections, leases, ...). Up to
 * cap entries are written; *n_out is how many. */
KVS_API int kvs_client_stat(kvs_client_t *client, kvs_client_stat_t *out,
                            size_t cap, size_t *n_out);
/* Checks every block on the daemon's disk; can take long. */
KVS_API int kvs_client_verify(kvs_client_t *client, uint64_t *checked_out,
                              uint64_t *bad_out);

/* One block reported by kvs_client_scan(). */
typedef struct kvs_client_scan_ent {
    uint8_t key[KVS_KEY_MAX];
    uint32_t key_len;
    uint8_t parent[KVS_KEY_MAX];
    uint32_t parent_len; /* 0: no parent */
    uint8_t tier;        /* enum kvs_tier */
    uint8_t cls;         /* enum kvs_class */
    uint32_t nparts;
    uint64_t len; /* bytes, all parts */
    uint64_t group;
    uint64_t expiry_ms; /* wall clock ms; 0: none */
} kvs_client_scan_ent_t;

/*
 * Lists one page of this client's namespace: every block, or those of group
 * when group is not 0 (needs the SCAN feature; -ENOTSUP without it). Start
 * with cursor 0 and pass *next_out back until it is 0. Up to cap entries
 * (at most kvs_client_limits().max_keys) are written to out; *n_out is how
 * many, possibly fewer than cap before the end. Pages are positions in the
 * daemon's table: a namespace that changes during a scan may have blocks
 * missed or repeated. Meant for offline tools (export, promotion).
 */
KVS_API int kvs_client_scan(kvs_client_t *client, uint64_t group,
                            uint32_t cursor, kvs_client_scan_ent_t *out,
                            size_t cap, size_t *n_out, uint32_t *next_out);

/* ---- progress ------------------------------------------------------ */

/* Makes progress and runs the callbacks of completed asynchronous calls.
 * Returns how many completed, or KVS_EPEER once the connection is lost. */
KVS_API int kvs_client_progress(kvs_client_t *client);
/* Like kvs_client_progress(), but when nothing has completed and calls are
 * in flight, sleeps until UCX has an event or timeout_ms passes (-1: no
 * limit) instead of returning at once: for hosts that should not spin. */
KVS_API int kvs_client_progress_wait(kvs_client_t *client, int timeout_ms);
/* Progresses until no call is in flight. */
KVS_API int kvs_client_wait(kvs_client_t *client);

#ifdef __cplusplus
}
#endif
#endif
