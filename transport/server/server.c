/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's transport: a UCX listener, the connections it accepts, the
 * event loop, and the sends that carry replies and blocks.
 *
 * One thread owns one UCX worker and everything below. With daemon.threads
 * above 1 there are several such kvs_server_t, one per serving thread:
 * thread 0 (the one kvs_server_create returns, run by the caller of
 * kvs_server_run) creates the others with it (worker_create: a worker on
 * its context, a listener on an ephemeral port), starts their threads in
 * kvs_server_run and joins them before it returns; kvs_server_destroy
 * closes their connections from the caller's thread (their workers are
 * serialized) before its own. Only thread 0 has the stream module, shm
 * and the metrics endpoint; the others share its metrics (atomics).
 *
 * A request arrives as
 * one active message; small frames are handled inside the receive callback.
 * A PUT whose payload comes by rendezvous waits for one of the staging
 * slots allocated at start (back-pressure instead of an unbounded queue),
 * then the payload is received into it and the put runs from there.
 *
 * A GET sends each block straight from the store's DRAM arena: the block is
 * pinned (kvs_store_pin), its bytes go out as the AM data of a DATA message
 * with the arena's memory handle, and the pin is dropped when UCX reports
 * the send complete. The client receives into its own (registered) buffer,
 * so the bytes are copied once, by the transport.
 *
 *   client                          kvstashd
 *     | -- GET (keys, caps) ---------> | pin each block
 *     | <-- DATA i (hdr | arena bytes)  | (rendezvous: client pulls)
 *     | <-- GET reply (n statuses) ---- | unpin when each DATA completes
 *
 * Peer failure: endpoints use UCP_ERR_HANDLING_MODE_PEER. When a client goes
 * away (clean close or crash), the error callback queues the connection for
 * closing; closing drops its leases and pins at once and force-closes the
 * endpoint, which completes its in-flight sends with an error, and those
 * completions drop the block pins they held. A connection's memory is freed
 * only when its last in-flight operation has completed (conn->refs).
 */
#include "transport/server/server_int.h"
#include "transport/server/shm.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/ucx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/server/stream.h"

void kvs_server_config_default(kvs_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_addr = "127.0.0.1";
    cfg->port = 7370;
    cfg->max_conns = 256;
    cfg->max_prehello = 0; /* max_conns / 4 */
    cfg->hello_timeout_ms = 5000;
    cfg->max_inflight = 64;
    cfg->max_inflight_blocks = KVS_WIRE_KEYS_MAX;
    cfg->max_inflight_bytes = 256ull << 20;
    cfg->max_body = 64u << 10;
    cfg->max_keys = KVS_WIRE_KEYS_MAX;
    cfg->max_payload = 16u << 20;
    cfg->staging_slots = 4;
    cfg->lease_default_ms = 10000;
    cfg->lease_max_ms = 60000;
    cfg->max_leases = 256;
    cfg->max_pins = 4096;
    cfg->busy_poll_us = 50;
    cfg->busy_poll_disk_us = 300;
    cfg->bulk_ep = true;
    /* A client that writes its own PUTs needs a core to do it, beside the
     * daemon's: on two cores, 64 such clients of net-mixed moved a seventh
     * of what the daemon reading their PUTs did, two of them among 64
     * cost 18%, one nothing measurable (docs/operations.md, PUTs). So half
     * the online CPUs, at least one. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->put_endpoints = ncpu >= 4 ? (uint32_t)(ncpu / 2) : 1;
    cfg->peer_timeout_ms = 5000;
    cfg->io_threads = 2;
    cfg->threads = 1; /* see docs/operations.md, "Serving threads" */
    cfg->verify_mib_s = 256;
    cfg->shm_gid = -1;
}

uint16_t kvs_server_port(const kvs_server_t *srv)
{
    return srv->port;
}

/* ------------------------------------------------------------------ */
/* Receiving. */

/* One frame from conn (on its control endpoint, or on its bound bulk
 * endpoint bulk), with plen bytes of AM data. */
static ucs_status_t handle_frame(kvs_server_t *srv, kvs_conn_t *conn,
                                 kvs_bulk_t *bulk, const uint8_t *frame,
                                 size_t flen, void *payload, size_t plen,
                                 bool rndv)
{
    kvs_wire_msg_t m;
    int ret;

    srv->requests++;
    ret = kvs_wire_decode(frame, flen, plen, &srv->lim, srv->scratch, &m);
    if (ret == 0 &&
        ((m.hdr.flags & KVS_WIRE_F_REPLY) || m.hdr.opcode == KVS_OP_DATA))
        ret = KVS_EPROTO; /* clients send requests only */
    if (ret) {
        /* Bad magic, a wrong version, or garbage before the handshake end
         * the connection after the error reply; anything else is answered
         * and the connection goes on. */
        bool fatal = flen < KVS_WIRE_HDR_SIZE ||
                     m.hdr.magic != KVS_WIRE_MAGIC ||
                     ret == KVS_EPROTO_VERSION || !conn->ready;

        srv->bad_frames++;
        kvs_info("conn %llu: bad %s frame (%zu bytes): %s%s",
                 (unsigned long long)conn->id, kvs_wire_op_name(m.hdr.opcode),
                 flen, kvs_strerror(ret), fatal ? "; closing" : "");
        /* A stream opcode has no reply to carry the error: dropped. */
        if (fatal || !kvs_wire_op_is_stream(m.hdr.opcode))
            kvs_send_status(srv, conn, &m.hdr, ret, fatal);
        return UCS_OK;
    }
    if (!conn->ready && m.hdr.opcode != KVS_OP_HELLO) {
        srv->auth_failures++;
        kvs_send_status(srv, conn, &m.hdr, KVS_EAUTH, true);
        return UCS_OK;
    }
    /* A put endpoint carries PUTs only. */
    if (bulk && bulk->put_only && m.hdr.opcode != KVS_OP_PUT) {
        bulk->failed = true;
        return UCS_OK;
    }
    if (bulk && bulk->put_only)
        srv->put_ep_puts++;
    if (kvs_wire_op_is_stream(m.hdr.opcode))
        return kvs_handler_dispatch_stream(srv, conn, &m, payload, plen, rndv);
    /* A bulk endpoint carries BIND, stream opcodes and, with BULK_PUT,
     * PUT (whose reply goes on the control endpoint) only. */
    if (bulk && !(m.hdr.opcode == KVS_OP_PUT &&
                  (conn->features & KVS_WIRE_FEAT_BULK_PUT))) {
        bulk->failed = true;
        return UCS_OK;
    }
    if (conn->inflight >= srv->cfg.max_inflight) {
        kvs_send_status(srv, conn, &m.hdr, -EAGAIN, false);
        return UCS_OK;
    }
    if (rndv) {
        kvs_stage_t *st;

        /* Only a PUT has a payload (checked by the decoder). */
        if (flen > sizeof(st->frame) || !(st = kvs_stage_get(srv))) {
            kvs_send_status(srv, conn, &m.hdr, -ENOMEM, false);
            return UCS_OK;
        }
        memcpy(st->frame, frame, flen);
        st->frame_len = flen;
        st->conn = conn;
        st->desc = payload;
        st->len = plen;
        conn->refs++;
        conn->inflight++;
        srv->staged_puts++;
        if (kvs_stage_direct(srv, st, &m))
            return UCS_INPROGRESS;
        if (srv->nslot_free > 0 && !srv->wait_head) {
            kvs_stage_start(srv, st);
        } else {
            if (srv->wait_tail)
                srv->wait_tail->next = st;
            else
                srv->wait_head = st;
            srv->wait_tail = st;
        }
        return UCS_INPROGRESS; /* the descriptor stays valid */
    }
    kvs_handler_dispatch(srv, conn, &m, payload);
    return UCS_OK;
}

/* A frame that travels in the AM header (one with a payload, or a stream
 * opcode) is at most KVS_WIRE_INLINE_MAX bytes: KVS_ETOOBIG, fatal only
 * before HELLO like every bad frame; a stream opcode is dropped. */
static ucs_status_t frame_too_big(kvs_server_t *srv, kvs_conn_t *conn,
                                  const void *frame, size_t len)
{
    kvs_wire_hdr_t h;

    srv->requests++;
    srv->bad_frames++;
    (void)kvs_wire_decode_hdr(frame, len, &srv->lim, &h);
    kvs_info("conn %llu: %zu-byte frame with payload (over %u)%s",
             (unsigned long long)conn->id, len, KVS_WIRE_INLINE_MAX,
             conn->ready ? "" : "; closing");
    if (!conn->ready || !kvs_wire_op_is_stream(h.opcode))
        kvs_send_status(srv, conn, &h, KVS_ETOOBIG, !conn->ready);
    return UCS_OK;
}

/* A frame on an endpoint that is neither a connection nor a bulk endpoint:
 * one of the stream module's outbound peer links, or nothing. */
static ucs_status_t link_frame(kvs_server_t *srv, ucp_ep_h ep,
                               const void *header, size_t hlen, void *data,
                               size_t len, bool rndv)
{
    kvs_wire_msg_t m;

    if ((hlen == 0 && rndv) || !srv->stream)
        return UCS_OK; /* no links on threads other than 0 */
    if ((hlen ? kvs_wire_decode(header, hlen, len, &srv->lim, srv->scratch, &m)
              : kvs_wire_decode(data, len, 0, &srv->lim, srv->scratch, &m)))
        return UCS_OK; /* links are dropped by their timeout, not by us */
    return kvs_srvstream_link_rx(srv->stream, ep, &m, hlen ? data : NULL,
                                 hlen ? len : 0, rndv);
}

static ucs_status_t am_cb(void *arg, const void *header, size_t hlen,
                          void *data, size_t len,
                          const ucp_am_recv_param_t *param)
{
    kvs_server_t *srv = arg;
    bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
    kvs_bulk_t *b = NULL;
    kvs_conn_t *conn;

    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP))
        return UCS_OK; /* nobody to answer: drop */
    conn = kvs_conn_find(srv, param->reply_ep);
    if (!conn) {
        b = kvs_conn_bulk_find(srv, param->reply_ep);
        if (!b)
            return link_frame(srv, param->reply_ep, header, hlen, data, len,
                              rndv);
        if (!b->conn && hlen == 0 && !rndv) {
            kvs_conn_bulk_bind(srv, b, data, len);
            return UCS_OK;
        }
        if (!b->conn || b->failed || hlen == 0) {
            b->failed = true;
            return UCS_OK;
        }
        conn = b->conn;
    }
    if (conn->closing || conn->evicted)
        return UCS_OK;
    if (hlen == 0) {
        /* A frame without payload must come eagerly, as the AM data. */
        if (rndv || len < KVS_WIRE_HDR_SIZE) {
            kvs_wire_hdr_t h = {0};

            srv->bad_frames++;
            kvs_send_status(srv, conn, &h, KVS_EPROTO, true);
            return UCS_OK;
        }
        return handle_frame(srv, conn, b, data, len, NULL, 0, false);
    }
    if (hlen > KVS_WIRE_INLINE_MAX)
        return frame_too_big(srv, conn, header, hlen);
    return handle_frame(srv, conn, b, header, hlen, data, len, rndv);
}

/* ------------------------------------------------------------------ */
/* Lifecycle. */

static int listen_on(kvs_server_t *srv)
{
    struct sockaddr_storage ss;
    int ret;

    if (kvs_sockaddr_parse(srv->cfg.listen_addr, srv->cfg.port, &ss) != 0) {
        kvs_error("listen address '%s' is not a numeric IP address",
                  srv->cfg.listen_addr);
        return KVS_ECONFIG;
    }
    ret = kvs_ucx_listen(srv->worker, &ss, kvs_conn_request_cb, srv,
                         &srv->listener, &srv->port);
    if (ret) {
        kvs_error("cannot listen on %s port %u: %s", srv->cfg.listen_addr,
                  srv->cfg.port, kvs_strerror(ret));
        return ret;
    }
    if (!srv->cfg.bulk_ep)
        return 0;
    /* The bulk listener: same address, any free port (told in HELLO). */
    kvs_sockaddr_set_port(&ss, 0);
    if (kvs_ucx_listen(srv->worker, &ss, kvs_conn_bulk_request_cb, srv,
                       &srv->bulk_listener, &srv->bulk_port) != 0) {
        kvs_warn("no bulk endpoints: blocks go over the control endpoint");
        srv->bulk_port = 0;
    }
    return 0;
}

static int map_arena(kvs_server_t *srv)
{
    size_t len = 0;
    void *arena = kvs_store_arena(srv->store, &len);
    int ret;

    if (!arena || !len) {
        kvs_warn("the store has no DRAM arena to register");
        return 0;
    }
    ret = kvs_ucx_mem_map(srv->ctx, arena, len, &srv->arena_memh);
    if (ret) {
        kvs_error("cannot register the DRAM arena (%zu bytes) with UCX", len);
        return ret;
    }
    kvs_info("DRAM arena registered with UCX: %zu MiB", len >> 20);
    return 0;
}

static int alloc_scratch(kvs_server_t *srv)
{
    const kvs_server_config_t *c = &srv->cfg;
    size_t n = c->max_keys;

    srv->scratch = kvs_wire_scratch_create();
    srv->keys = calloc(n, sizeof(*srv->keys));
    srv->bytes = calloc(n, 1);
    srv->status = calloc(n, sizeof(*srv->status));
    srv->blocks = calloc(n, sizeof(*srv->blocks));
    srv->puts = calloc(n, sizeof(*srv->puts));
    srv->idx = calloc(n, sizeof(*srv->idx));
    srv->iovs = calloc(KVS_WIRE_BODY_MAX / 4, sizeof(*srv->iovs));
    srv->hash_mask = 1;
    while (srv->hash_mask < 2 * c->max_conns)
        srv->hash_mask <<= 1;
    srv->hash = calloc(srv->hash_mask, sizeof(*srv->hash));
    srv->bulk_hash = calloc(srv->hash_mask, sizeof(*srv->bulk_hash));
    srv->hash_mask--;
    srv->slots = calloc(c->staging_slots, sizeof(*srv->slots));
    srv->slot_free = calloc(c->staging_slots, sizeof(*srv->slot_free));
    if (!srv->scratch || !srv->keys || !srv->bytes || !srv->status ||
        !srv->blocks || !srv->puts || !srv->idx || !srv->iovs || !srv->hash ||
        !srv->bulk_hash || !srv->slots || !srv->slot_free)
        return -ENOMEM;
    for (uint32_t i = 0; i < c->staging_slots; i++) {
        srv->slots[i] = malloc(c->max_payload);
        if (!srv->slots[i])
            return -ENOMEM;
        srv->slot_free[srv->nslot_free++] = (int)i;
    }
    /* The largest reply: a GET of max_keys blocks, or STAT. */
    srv->tx_cap =
        KVS_WIRE_HDR_SIZE + KVS_MAX((size_t)n * KVS_WIRE_BLOCK_SIZE + 16, 8192);
    srv->tx_cap = KVS_MAX(srv->tx_cap, (size_t)KVS_WIRE_INLINE_MAX);
    return 0;
}

int kvs_server_config_check(const kvs_server_config_t *c)
{
    if (c->max_keys < 1 || c->max_keys > KVS_WIRE_KEYS_MAX ||
        c->max_body < 1024 || c->max_body > KVS_WIRE_BODY_MAX ||
        c->max_payload < 4096 || c->max_inflight < 1 || c->max_conns < 1 ||
        c->max_inflight_blocks < 1 || c->max_inflight_bytes < 1 ||
        c->staging_slots < 1 || c->lease_max_ms < 1 ||
        c->max_prehello > c->max_conns || c->hello_timeout_ms < 1 ||
        c->lease_default_ms > c->lease_max_ms || !c->listen_addr ||
        c->io_threads < 1 || c->io_threads > 16 || c->threads < 1 ||
        c->threads > 16) {
        kvs_error("invalid transport configuration");
        return KVS_ECONFIG;
    }
    for (size_t i = 0; i < c->ntenants; i++) {
        if (!c->tenants[i].name || !c->tenants[i].token ||
            !c->tenants[i].token[0] ||
            strlen(c->tenants[i].token) > KVS_WIRE_TOKEN_MAX) {
            kvs_error("tenant %zu: a name and a token of 1..%u bytes are "
                      "required",
                      i, KVS_WIRE_TOKEN_MAX);
            return KVS_ECONFIG;
        }
    }
    return 0;
}

static bool is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

static int add_epoll(int epfd, int fd)
{
    struct epoll_event ev;

    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* The part of a serving thread's state that every thread has: limits,
 * scratch, the AM handler on its worker, I/O threads, its epoll set, its
 * listeners. */
static int server_init(kvs_server_t *srv, const kvs_server_config_t *cfg,
                       kvs_store_t *store)
{
    ucs_status_t st;
    int ret, efd;

    srv->cfg = *cfg;
    if (!srv->cfg.max_prehello)
        srv->cfg.max_prehello = KVS_MAX(cfg->max_conns / 4, 1u);
    srv->store = store;
    srv->epfd = -1;
    srv->started_ns = kvs_clock_mono_ns();
    srv->lim.max_body = cfg->max_body;
    srv->lim.max_keys = cfg->max_keys;
    srv->lim.max_payload = cfg->max_payload;
    ret = alloc_scratch(srv);
    if (ret)
        return ret;
    ret = kvs_ucx_am_handler(srv->worker, KVS_AM_ID, am_cb, srv);
    if (ret)
        return ret;
    ret = kvs_diskq_create(cfg->io_threads, &srv->diskq);
    if (ret)
        return ret;
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0)
        return -errno;
    ret = add_epoll(srv->epfd, kvs_diskq_fd(srv->diskq));
    if (ret)
        return ret;
    st = ucp_worker_get_efd(srv->worker, &efd);
    if (st != UCS_OK)
        return kvs_ucx_status(st, "ucp_worker_get_efd");
    ret = add_epoll(srv->epfd, efd);
    if (ret)
        return ret;
    /* Nothing is accepted before kvs_server_run progresses the worker. */
    return listen_on(srv);
}

/* Serving thread index (1 .. threads - 1) of primary: its own worker on
 * primary's context, its own listener (and bulk listener) on an ephemeral
 * port, the store, arena registration and metrics of primary; no peer
 * links, streaming or shm (those stay on thread 0). */
static int worker_create(kvs_server_t *primary, uint32_t index,
                         kvs_server_t **out)
{
    kvs_server_config_t cfg = primary->cfg;
    kvs_server_t *srv;
    int ret;

    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->primary = primary;
    srv->index = index;
    srv->next_conn_id = (uint64_t)index << 40; /* distinct in the logs */
    srv->ctx = primary->ctx;
    srv->epfd = -1;
    cfg.port = 0;
    cfg.shm_socket = NULL;
    cfg.metrics_port = 0;
    cfg.peers = NULL;
    ret = kvs_ucx_worker_create(srv->ctx, &srv->worker);
    if (ret)
        goto err_destroy;
    ret = server_init(srv, &cfg, primary->store);
    if (ret)
        goto err_destroy;
    srv->arena_memh = primary->arena_memh;
    srv->metrics = primary->metrics;
    *out = srv;
    return 0;

err_destroy:
    kvs_server_destroy(srv);
    return ret;
}

int kvs_server_create(const kvs_server_config_t *cfg, kvs_store_t *store,
                      kvs_server_t **server_out)
{
    kvs_ucx_opts_t opts = {0};
    kvs_srvstream_params_t sp = {0};
    ucp_worker_attr_t wa;
    kvs_server_t *srv;
    ucs_status_t st;
    int ret;

    ret = kvs_handler_check();
    if (ret)
        return ret;
    ret = kvs_server_config_check(cfg);
    if (ret)
        return ret;
    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->epfd = -1;
    opts.name = "kvstashd";
    opts.loopback = opts.lo_only = is_loopback(cfg->listen_addr);
    opts.mt_workers = cfg->threads > 1;
    ret = kvs_ucx_open(&opts, &srv->ctx, &srv->worker);
    if (ret)
        goto err_destroy;
    wa.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
    st = ucp_worker_query(srv->worker, &wa);
    if (st != UCS_OK || wa.max_am_header < KVS_WIRE_INLINE_MAX) {
        kvs_error("UCX allows AM headers of %zu bytes; kvstash needs %u",
                  st == UCS_OK ? wa.max_am_header : 0, KVS_WIRE_INLINE_MAX);
        ret = KVS_ECONFIG;
        goto err_destroy;
    }
    ret = server_init(srv, cfg, store);
    if (ret)
        goto err_destroy;
    ret = map_arena(srv);
    if (ret)
        goto err_destroy;
    sp.diskq = srv->diskq;
    sp.store = store;
    sp.worker = srv->worker;
    sp.memh = srv->arena_memh;
    sp.secret = cfg->peer_secret;
    sp.peers = cfg->peers;
    sp.resolve = cfg->peer_resolve;
    sp.resolve_arg = cfg->peer_resolve_arg;
    sp.timeout_ms = cfg->peer_timeout_ms;
    sp.lease_ms = cfg->lease_max_ms;
    ret = kvs_srvstream_create(&sp, &srv->stream);
    if (ret)
        goto err_destroy;
    if (cfg->shm_socket) {
        ret = kvs_shm_start(&srv->cfg, store, &srv->shm);
        if (ret)
            goto err_destroy;
        kvs_srvstream_set_shm(srv->stream, srv->shm);
    }
    ret = kvs_metrics_start(cfg->metrics_addr, cfg->metrics_port, store,
                            &srv->metrics);
    if (ret)
        goto err_destroy;
    if (cfg->threads > 1) {
        srv->workers = calloc(cfg->threads - 1, sizeof(*srv->workers));
        if (!srv->workers) {
            ret = -ENOMEM;
            goto err_destroy;
        }
        for (uint32_t i = 1; i < cfg->threads; i++) {
            ret = worker_create(srv, i, &srv->workers[srv->nworkers]);
            if (ret)
                goto err_destroy;
            kvs_info("serving thread %u: port %u, bulk port %u", i,
                     srv->workers[srv->nworkers]->port,
                     srv->workers[srv->nworkers]->bulk_port);
            srv->nworkers++;
        }
    }
    kvs_info("listening on %s port %u, bulk port %u, %u serving thread%s "
             "(UCX %s)",
             cfg->listen_addr, srv->port, srv->bulk_port, cfg->threads,
             cfg->threads > 1 ? "s" : "", ucp_get_version_string());
    *server_out = srv;
    return 0;

err_destroy:
    kvs_server_destroy(srv);
    return ret;
}

static void expire_leases(kvs_server_t *srv, uint64_t now)
{
    for (kvs_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        for (kvs_lease_t **pp = &c->leases; *pp;) {
            kvs_lease_t *l = *pp;

            if (l->expiry_ns > now) {
                pp = &l->next;
                continue;
            }
            *pp = l->next;
            c->nleases--;
            srv->leases_expired++;
            kvs_conn_lease_free(srv, l);
        }
    }
}

static void bulk_sweep(kvs_server_t *srv, uint64_t now)
{
    for (kvs_bulk_t *b = srv->bulks, *next; b; b = next) {
        next = b->next;
        /* An unbound bulk endpoint gets 10 s to BIND; a refused one is
         * closed once its refusal is sent (failed), or after 1 s. */
        if (b->failed || (!b->conn && now - b->created_ns > 10000000000ull) ||
            (b->refused_ns && now - b->refused_ns > 1000000000ull))
            kvs_conn_bulk_close(srv, b);
    }
}

/* Thread 0's: the connection counters of every serving thread, summed. */
static void publish_metrics(kvs_server_t *srv)
{
    kvs_metrics_srv_t v = {0};

    for (uint32_t i = 0; i <= srv->nworkers; i++) {
        kvs_server_t *w = i ? srv->workers[i - 1] : srv;

        v.connections += w->nconns;
        v.connections_accepted += w->conns_accepted;
        v.connections_rejected += w->conns_rejected;
        v.leases += w->leases_active;
        v.conn_pins += w->conn_pins;
        v.bad_frames += w->bad_frames;
        v.auth_failures += w->auth_failures;
        v.disk_jobs += kvs_diskq_pending(w->diskq);
    }
    kvs_metrics_publish(srv->metrics, &v);
}

static void run_deferred(kvs_server_t *srv)
{
    while (srv->close_list) {
        kvs_conn_t *c = srv->close_list;

        srv->close_list = c->close_next;
        c->close_queued = false;
        kvs_conn_close_now(c);
    }
    kvs_stage_pump(srv);
}

static bool stopping(kvs_server_t *srv, volatile sig_atomic_t *stop)
{
    return stop ? *stop != 0
                : atomic_load_explicit(&srv->quit, memory_order_acquire);
}

/* One serving thread's loop, until *stop (thread 0) or srv->quit (the
 * others). */
static int serve(kvs_server_t *srv, volatile sig_atomic_t *stop)
{
    uint64_t busy_ns = (uint64_t)srv->cfg.busy_poll_us * 1000;
    uint64_t disk_ns = (uint64_t)srv->cfg.busy_poll_disk_us * 1000;
    uint64_t last_active = kvs_clock_mono_ns(), last_timer = last_active;

    while (!stopping(srv, stop)) {
        unsigned n = ucp_worker_progress(srv->worker);
        uint64_t now;

        n += kvs_diskq_poll(srv->diskq); /* disk reads done: replies */
        run_deferred(srv);
        now = kvs_clock_mono_ns();
        if (now - last_timer > 50000000ull) {
            expire_leases(srv, now);
            kvs_conn_sweep_prehello(srv, now);
            bulk_sweep(srv, now);
            if (srv->stream)
                kvs_srvstream_tick(srv->stream, now);
            if (!srv->primary)
                publish_metrics(srv);
            last_timer = now;
        }
        if (n) {
            last_active = now;
            continue;
        }
        if (now - last_active < busy_ns)
            continue;
        /* A client waits for a disk job (a read, or a PUT waiting for its
         * write or for room): the loop will have its reply to send soon, and meanwhile requests come in
         * (MATCH above all) that a sleeping thread would answer a wake-up
         * later, on a busy machine long after (see docs/operations.md,
         * "busy_poll_disk_us"). */
        if (now - last_active < disk_ns && kvs_diskq_client_waits(srv->diskq))
            continue;
        if (ucp_worker_arm(srv->worker) == UCS_ERR_BUSY ||
            kvs_diskq_ready(srv->diskq))
            continue;
        struct epoll_event ev;
        if (epoll_wait(srv->epfd, &ev, 1, 50) < 0 && errno != EINTR) {
            kvs_error("epoll_wait: %m");
            return -errno;
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    kvs_server_t *srv = arg;

    srv->run_status = serve(srv, NULL);
    if (srv->run_status) {
        atomic_store(&srv->dead, true);
        kvs_error("serving thread %u stopped: %s; its connections wait for "
                  "shutdown, new clients stay on thread 0",
                  srv->index, kvs_strerror(srv->run_status));
    }
    return NULL;
}

/* Ends the other serving threads' loops and waits for them; their
 * connections are closed by kvs_server_destroy(), from this thread. */
static int workers_join(kvs_server_t *srv)
{
    int ret = 0;

    for (uint32_t i = 0; i < srv->nworkers; i++)
        atomic_store_explicit(&srv->workers[i]->quit, true,
                              memory_order_release);
    for (uint32_t i = 0; i < srv->nworkers; i++) {
        kvs_server_t *w = srv->workers[i];

        if (!w->thread_started)
            continue;
        pthread_join(w->thread, NULL);
        w->thread_started = false;
        if (!ret)
            ret = w->run_status;
    }
    return ret;
}

int kvs_server_run(kvs_server_t *srv, volatile sig_atomic_t *stop)
{
    int ret, wret;

    for (uint32_t i = 0; i < srv->nworkers; i++) {
        kvs_server_t *w = srv->workers[i];

        atomic_store(&w->quit, false);
        ret = pthread_create(&w->thread, NULL, worker_main, w);
        if (ret) {
            kvs_error("cannot start serving thread %u: %s", w->index,
                      strerror(ret));
            workers_join(srv);
            return -ret;
        }
        w->thread_started = true;
    }
    ret = serve(srv, stop);
    wret = workers_join(srv);
    return ret ? ret : wret;
}

void kvs_server_destroy(kvs_server_t *srv)
{
    if (!srv)
        return;
    /* The other serving threads first: they use this one's context,
     * arena registration and metrics. */
    if (srv->workers) {
        workers_join(srv);
        for (uint32_t i = 0; i < srv->nworkers; i++)
            kvs_server_destroy(srv->workers[i]);
        free(srv->workers);
        srv->workers = NULL;
        srv->nworkers = 0;
    }
    if (srv->primary)
        srv->metrics = NULL; /* borrowed */
    kvs_srvstream_set_shm(srv->stream, NULL);
    kvs_shm_stop(srv->shm); /* drops what same-host clients held */
    srv->shm = NULL;
    kvs_metrics_stop(srv->metrics); /* no more scrapes of the store */
    srv->metrics = NULL;
    /* Disk jobs finish (or are cancelled) and answer, or drop what they
     * pinned, while the connections are still there. */
    kvs_srvstream_drop_diskq(srv->stream);
    kvs_diskq_destroy(srv->diskq);
    srv->diskq = NULL;
    if (srv->worker) {
        uint64_t deadline = kvs_clock_mono_ns() + 2000000000ull;

        if (srv->listener)
            ucp_listener_destroy(srv->listener);
        if (srv->bulk_listener)
            ucp_listener_destroy(srv->bulk_listener);
        kvs_srvstream_stop(srv->stream);
        for (kvs_conn_t *c = srv->conns; c; c = c->next)
            kvs_conn_close(c);
        run_deferred(srv);
        /* Let the forced closes and failed sends call back, so that every
         * block pin is dropped before the store closes. */
        while (srv->conns && kvs_clock_mono_ns() < deadline) {
            ucp_worker_progress(srv->worker);
            run_deferred(srv);
        }
        if (srv->conns)
            kvs_warn("connections still closing at shutdown");
        while (srv->bulks)
            kvs_conn_bulk_close(srv, srv->bulks);
        if (srv->arena_memh && !srv->primary)
            ucp_mem_unmap(srv->ctx, srv->arena_memh);
        ucp_worker_destroy(srv->worker);
        kvs_srvstream_destroy(srv->stream);
        /* Connections whose sends UCX never completed: nothing refers to
         * them any more once the worker is gone. */
        while (srv->conns) {
            kvs_conn_t *c = srv->conns;

            srv->conns = c->next;
            while (c->data_txs) {
                kvs_tx_t *tx = c->data_txs;

                c->data_txs = tx->dnext;
                free(tx);
            }
            free(c->pins);
            free(c);
        }
    }
    if (srv->ctx && !srv->primary)
        ucp_cleanup(srv->ctx);
    if (srv->epfd >= 0)
        close(srv->epfd);
    while (srv->tx_free) {
        kvs_tx_t *tx = srv->tx_free;
        srv->tx_free = tx->next;
        free(tx);
    }
    while (srv->stage_free) {
        kvs_stage_t *st = srv->stage_free;
        srv->stage_free = st->next;
        free(st);
    }
    for (uint32_t i = 0; srv->slots && i < srv->cfg.staging_slots; i++)
        free(srv->slots[i]);
    free(srv->slots);
    free(srv->slot_free);
    free(srv->hash);
    free(srv->bulk_hash);
    free(srv->keys);
    free(srv->bytes);
    free(srv->status);
    free(srv->blocks);
    free(srv->puts);
    free(srv->idx);
    free(srv->iovs);
    kvs_wire_scratch_destroy(srv->scratch);
    free(srv);
}
