/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash's connection: creating a client (UCX context and worker, the
 * control endpoint, HELLO, the bulk endpoint and its BIND), progress and
 * waiting, destroying it, and memory registration.
 */
#include "transport/client/client_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/compiler.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/ucx.h"

KVS_API unsigned kvs_version(void)
{
    return KVS_VERSION_NUMBER;
}

KVS_API const char *kvs_version_string(void)
{
#define STR2(x) #x
#define STR(x) STR2(x)
    return STR(KVS_VERSION_MAJOR) "." STR(KVS_VERSION_MINOR) "." STR(
        KVS_VERSION_PATCH);
}

/* ------------------------------------------------------------------ */
/* Creation. */

static int client_hello(kvs_client_t *c, const kvs_client_params_t *p)
{
    kvs_wire_msg_t m;
    op_t *op = kvs_req_alloc(c, KVS_OP_HELLO);

    if (!op)
        return c->failed ? c->failed : -ENOMEM;
    memset(&m, 0, sizeof(m));
    m.u.hello.features = KVS_WIRE_FEAT_ALL;
    /* A connection that moves to another serving thread has no STREAM
     * there: a process that streams may stay (docs/operations.md). */
    if (getenv("KVSTASH_NO_MOVE"))
        m.u.hello.features &= ~KVS_WIRE_FEAT_MOVE;
    m.u.hello.elem_size = (uint8_t)p->elem_size;
    if (p->token) {
        m.u.hello.token.data = (const uint8_t *)p->token;
        m.u.hello.token.len = (uint32_t)strlen(p->token);
    }
    m.u.hello.ns.data = (const uint8_t *)p->ns;
    m.u.hello.ns.len = (uint32_t)strlen(p->ns);
    if (m.u.hello.token.len > KVS_WIRE_TOKEN_MAX ||
        m.u.hello.ns.len > KVS_NS_NAME_MAX || m.u.hello.ns.len == 0) {
        kvs_req_abort(c, op);
        return KVS_ETOOBIG;
    }
    return kvs_req_submit(c, op, &m, NULL, 0, 0, NULL, NULL, true);
}

static void ep_close(ucp_worker_h worker, ucp_ep_h *ep, bool force);

static void bulk_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)arg;
    (void)ep;
    (void)status; /* the control endpoint reports a dead daemon */
}

/* A second endpoint, without peer error handling, so that UCX may pull
 * blocks by CMA; bound to this connection by BIND. Best effort: on any
 * failure blocks simply come over the control endpoint. */
static void bulk_connect(kvs_client_t *c, struct sockaddr_storage *ss)
{
    kvs_wire_msg_t m;
    op_t *op;

    kvs_sockaddr_set_port(ss, c->bulk_port);
    if (kvs_ucx_connect(c->worker, ss, false, bulk_err_cb, c, &c->bulk_ep) != 0)
        return;
    op = kvs_req_alloc(c, KVS_OP_BIND);
    if (!op) {
        ep_close(c->worker, &c->bulk_ep, true);
        return;
    }
    memset(&m, 0, sizeof(m));
    m.u.bind.session = c->limits.session;
    m.u.bind.secret = c->bind_secret;
    c->bind_ep = c->bulk_ep;
    if (kvs_req_submit(c, op, &m, NULL, 0, 0, NULL, NULL, true) != 0)
        ep_close(c->worker, &c->bulk_ep, true);
    c->daemon_ss = *ss;
}

/* Unless KVSTASH_PUT_EP=0 in the environment (docs/operations.md, PUTs). */
static bool put_ep_wanted(void)
{
    const char *v = getenv("KVSTASH_PUT_EP");

    return !v || strcmp(v, "0") != 0;
}

static void put_teardown(kvs_client_t *c, bool force)
{
    if (c->put_ep)
        ep_close(c->put_worker, &c->put_ep, force);
    if (c->put_worker)
        ucp_worker_destroy(c->put_worker);
    if (c->put_ctx)
        ucp_cleanup(c->put_ctx);
    c->put_worker = NULL;
    c->put_ctx = NULL;
    c->put_efd = -1;
    c->put_bound = false;
}

/*
 * The put endpoint. A rendezvous send's bytes move one of two ways in UCX:
 * the receiver reads them (get_zcopy, the default: the daemon's serving
 * thread calls process_vm_readv, which pins the client's pages, 16 at a
 * time, 4 KiB pages for most buffers), or the sender writes them
 * (put_zcopy: the client calls process_vm_writev into the arena, whose
 * pages are huge, on its own core, while the daemon's thread serves
 * others). The second is faster for PUTs, but the scheme is a context's
 * setting, and with it a send only moves while its sender progresses:
 * stream parts, sent before a prefill engine computes its next layer,
 * would wait. So PUTs get a context, worker and endpoint of their own,
 * bound as the connection's put endpoint (PUT_EP, docs/protocol.md
 * section 5), and everything else stays where it was. Best effort: on
 * any failure PUTs go on the bulk endpoint.
 *
 * One client's 1 MiB PUTs run at about the limit with it (against
 * 0.55-0.70 without), but 64 client processes on two cores, each with
 * one, moved 1.7 GB/s of 1 MiB blocks instead of 7.0: the clients burn
 * the cores in their progress loops while the daemon waits for them, and
 * each PUT needs its client scheduled again to write. So the daemon binds
 * at most daemon.put_endpoints of them (default: half its online CPUs) and
 * refuses more with -EAGAIN; such a client, or one with KVSTASH_PUT_EP=0,
 * PUTs on its bulk endpoint (docs/operations.md, PUTs).
 */
void kvs_client_put_connect(kvs_client_t *c)
{
    kvs_ucx_opts_t opts = {
        .name = "libkvstash-put", .loopback = true, .rndv_put = true};
    uint32_t timeout_ms = c->timeout_ms;
    kvs_wire_msg_t m;
    op_t *op;
    int ret;

    if (c->put_tried)
        return;
    c->put_tried = true;
    if (!c->bulk_bound || c->failed ||
        !(c->limits.features & KVS_WIRE_FEAT_PUT_EP))
        return;
    if (kvs_ucx_open(&opts, &c->put_ctx, &c->put_worker) != 0 ||
        ucp_worker_get_efd(c->put_worker, &c->put_efd) != UCS_OK ||
        kvs_ucx_am_handler(c->put_worker, KVS_AM_ID, kvs_req_am_cb, c) != 0 ||
        kvs_ucx_connect(c->put_worker, &c->daemon_ss, false, bulk_err_cb, c,
                        &c->put_ep) != 0 ||
        !(op = kvs_req_alloc(c, KVS_OP_BIND))) {
        put_teardown(c, true);
        return;
    }
    memset(&m, 0, sizeof(m));
    m.u.bind.session = c->limits.session;
    m.u.bind.secret = c->bind_secret;
    c->bind_ep = c->put_ep;
    c->timeout_ms = timeout_ms ? timeout_ms : 10000;
    ret = kvs_req_submit(c, op, &m, NULL, 0, 0, NULL, NULL, true);
    c->timeout_ms = timeout_ms;
    c->bind_ep = NULL;
    if (ret == 0 && !c->failed)
        c->put_bound = true;
    else
        put_teardown(c, true);
}

bool kvs_client_arm(kvs_client_t *c)
{
    return ucp_worker_arm(c->worker) == UCS_OK &&
           (!c->put_worker || ucp_worker_arm(c->put_worker) == UCS_OK);
}

void kvs_client_yield(void)
{
    struct timespec ts = {0, 20000};

    nanosleep(&ts, NULL);
}

void kvs_client_sleep(kvs_client_t *c, int timeout_ms)
{
    struct pollfd pfd[2] = {{.fd = c->efd, .events = POLLIN},
                            {.fd = c->put_efd, .events = POLLIN}};

    poll(pfd, c->put_worker ? 2 : 1, timeout_ms);
}

/* The daemon asked this connection to move to another of its serving
 * threads (MOVE, worker_port in the HELLO reply): a clean close of the
 * first connection, and the same HELLO on the port it named, where the
 * daemon does not move it again. */
static int client_move(kvs_client_t *c, const kvs_client_params_t *p,
                       struct sockaddr_storage *ss)
{
    uint16_t port = c->worker_port;

    c->worker_port = 0;
    ep_close(c->worker, &c->ep, false);
    kvs_sockaddr_set_port(ss, port);
    if (kvs_ucx_connect(c->worker, ss, true, kvs_req_ep_err_cb, c, &c->ep))
        return -ECONNREFUSED;
    return client_hello(c, p);
}

KVS_API int kvs_client_create_v(unsigned api_version,
                                const kvs_client_params_t *params,
                                kvs_client_t **client_out)
{
    kvs_client_params_t p = {0};
    kvs_ucx_opts_t opts = {0};
    struct sockaddr_storage ss;
    kvs_client_t *c;
    ucs_status_t st;
    int ret;

    if ((api_version >> 16) != KVS_VERSION_MAJOR || !params || !client_out)
        return -EINVAL;
    p.addr = "127.0.0.1";
    p.port = KVS_DEFAULT_PORT;
    p.timeout_ms = 10000;
    p.busy_poll_us = 20;
    if (params->field_mask & KVS_CLIENT_PARAM_ADDR)
        p.addr = params->addr;
    if (params->field_mask & KVS_CLIENT_PARAM_PORT)
        p.port = params->port;
    if (params->field_mask & KVS_CLIENT_PARAM_TOKEN)
        p.token = params->token;
    if (params->field_mask & KVS_CLIENT_PARAM_NS)
        p.ns = params->ns;
    if (params->field_mask & KVS_CLIENT_PARAM_ELEM_SIZE)
        p.elem_size = params->elem_size;
    if (params->field_mask & KVS_CLIENT_PARAM_TIMEOUT_MS)
        p.timeout_ms = params->timeout_ms;
    if (params->field_mask & KVS_CLIENT_PARAM_BUSY_POLL_US)
        p.busy_poll_us = params->busy_poll_us;
    if (!p.ns || !p.addr || p.elem_size > 255)
        return -EINVAL;
    if (kvs_sockaddr_parse(p.addr, p.port, &ss))
        return -EINVAL;

    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->nslots = 1; /* until HELLO says more */
    snprintf(c->ns, sizeof(c->ns), "%s", p.ns);
    c->max_body = 4096;
    c->busy_ns = (uint64_t)p.busy_poll_us * 1000;
    c->lim.max_body = KVS_WIRE_BODY_MAX;
    c->lim.max_keys = KVS_WIRE_KEYS_MAX;
    c->lim.max_payload = KVS_WIRE_PAYLOAD_MAX;
    c->efd = -1;
    c->put_efd = -1;
    c->scratch = kvs_wire_scratch_create();
    if (!c->scratch) {
        ret = -ENOMEM;
        goto err_free;
    }
    opts.name = "libkvstash";
    opts.loopback = kvs_sockaddr_is_loopback(&ss);
    ret = kvs_ucx_open(&opts, &c->ctx, &c->worker);
    if (ret)
        goto err_free;
    st = ucp_worker_get_efd(c->worker, &c->efd);
    if (st != UCS_OK) {
        ret = kvs_ucx_status(st, "ucp_worker_get_efd");
        goto err_free;
    }
    ret = kvs_ucx_am_handler(c->worker, KVS_AM_ID, kvs_req_am_cb, c);
    if (ret)
        goto err_free;
    ret = kvs_ucx_connect(c->worker, &ss, true, kvs_req_ep_err_cb, c, &c->ep);
    if (ret)
        goto err_free;
    c->timeout_ms = p.timeout_ms ? p.timeout_ms : 10000;
    ret = client_hello(c, &p);
    if (ret)
        goto err_free;
    if (c->worker_port && (c->limits.features & KVS_WIRE_FEAT_MOVE)) {
        ret = client_move(c, &p, &ss);
        if (ret)
            goto err_free;
    }
    if ((c->limits.features & KVS_WIRE_FEAT_BULK) && c->bulk_port &&
        !getenv("KVSTASH_NO_BULK"))
        bulk_connect(c, &ss);
    /* PUTs get their own endpoint only where the sender can write into the
     * daemon's memory: on this host (kvs_client_put_connect). */
    c->put_tried = !opts.loopback || !put_ep_wanted();
    c->shm_status = -EOPNOTSUPP;
    if (!(params->field_mask & KVS_CLIENT_PARAM_SHM_SOCKET))
        p.shm_socket = getenv("KVSTASH_SHM_SOCKET");
    else
        p.shm_socket = params->shm_socket;
    if (p.shm_socket && *p.shm_socket &&
        (c->limits.features & KVS_WIRE_FEAT_SHM))
        kvs_client_shm_attach(c, p.shm_socket, p.token, p.elem_size);
    c->timeout_ms =
        (params->field_mask & KVS_CLIENT_PARAM_TIMEOUT_MS) ? p.timeout_ms : 0;
    c->nslots = KVS_MAX(1u, KVS_MIN(c->limits.max_inflight, SLOTS_MAX));
    c->ready = true;
    if (getenv("KVSTASH_PRINT_EP")) { /* which UCX lanes carry what */
        ucp_ep_print_info(c->ep, stderr);
        if (c->bulk_ep)
            ucp_ep_print_info(c->bulk_ep, stderr);
    }
    *client_out = c;
    return 0;

err_free:
    kvs_client_destroy(c);
    return ret;
}

static void ep_close(ucp_worker_h worker, ucp_ep_h *epp, bool force)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    ucs_status_ptr_t sp;
    uint64_t deadline = kvs_clock_mono_ns() + 2000000000ull;

    if (!*epp)
        return;
    sp = ucp_ep_close_nbx(*epp, &prm);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS &&
               kvs_clock_mono_ns() < deadline)
            ucp_worker_progress(worker);
        if (ucp_request_check_status(sp) == UCS_INPROGRESS)
            ucp_request_cancel(worker, sp);
        ucp_request_free(sp);
    }
    *epp = NULL;
}

KVS_API void kvs_client_destroy(kvs_client_t *c)
{
    if (!c)
        return;
    if (c->worker) {
        if (c->ep && !c->failed)
            kvs_client_wait(c);
        /* The bulk endpoint has no error handling: force it when the
         * daemon is gone, or a flush could wait for ever. */
        if (c->put_ep)
            ep_close(c->put_worker, &c->put_ep, c->failed || c->peer_gone);
        ep_close(c->worker, &c->bulk_ep, c->failed != 0 || c->peer_gone);
        ep_close(c->worker, &c->ep, c->failed != 0 || c->peer_gone);
        /* Let failed requests call back, so no UCX request still points
         * into this client when it is freed. */
        for (int i = 0; i < 1000 && c->inflight; i++) {
            kvs_req_worker_progress(c);
            kvs_req_run_completions(c);
        }
        put_teardown(c, true);
        ucp_worker_destroy(c->worker);
    }
    if (c->ctx)
        ucp_cleanup(c->ctx);
    for (uint32_t i = 0; i < SLOTS_MAX; i++) {
        free(c->ops[i].frame);
        free(c->ops[i].iov);
    }
    kvs_client_shm_detach(c);
    kvs_wire_scratch_destroy(c->scratch);
    kvs_client_stream_free(c->stream);
    free(c);
}

/* For stream.c: the UCX objects and namespace of a client. */
void kvs_client_internals(kvs_client_t *c, kvs_client_internals_t *out)
{
    out->worker = c->worker;
    out->ep = c->failed || c->peer_gone ? NULL : c->ep;
    out->data_ep = c->failed || c->peer_gone ? NULL
                   : c->bulk_ep              ? c->bulk_ep
                                             : c->ep;
    out->ns = c->ns;
    out->stream = &c->stream;
    out->failed = c->failed ? c->failed : c->peer_gone ? KVS_EPEER : 0;
}

KVS_API void kvs_client_limits(const kvs_client_t *c,
                               kvs_client_limits_t *limits_out)
{
    *limits_out = c->limits;
}

KVS_API int kvs_client_progress(kvs_client_t *c)
{
    int n;

    kvs_req_worker_progress(c);
    n = kvs_req_run_completions(c);
    if (n == 0 && c->failed)
        return KVS_EPEER;
    return n;
}

KVS_API int kvs_client_progress_wait(kvs_client_t *c, int timeout_ms)
{
    int n;

    kvs_req_worker_progress(c);
    n = kvs_req_run_completions(c);
    if (n == 0 && !c->failed && c->inflight) {
        /* A BUSY arm (events pending that progress did not find, which
         * UCX 1.13 answers call after call: kvs_req_progress_once) gets a
         * short yield rather than a return at once, which a caller's loop
         * would turn into the spin it asked to avoid. */
        if (kvs_client_arm(c))
            kvs_client_sleep(c, timeout_ms);
        else if (timeout_ms != 0)
            kvs_client_yield();
        kvs_req_worker_progress(c);
        n = kvs_req_run_completions(c);
    }
    if (n == 0 && c->failed)
        return KVS_EPEER;
    return n;
}

/* For stream.c, whose waits have no request in flight (so
 * kvs_client_progress_wait() would never sleep): one kvs_req_progress_once(),
 * then the completions it made due. Returns 1 if something happened, 0 if not,
 * or KVS_EPEER once the connection has failed. */
int kvs_client_progress_idle(kvs_client_t *c, uint64_t *idle_since)
{
    int n = kvs_req_progress_once(c, idle_since);

    n += kvs_req_run_completions(c);
    if (n)
        return 1;
    return c->failed ? KVS_EPEER : 0;
}

KVS_API int kvs_client_wait(kvs_client_t *c)
{
    uint64_t idle = 0;

    while (c->inflight) {
        kvs_req_progress_once(c, &idle);
        kvs_req_run_completions(c);
    }
    return c->failed ? KVS_EPEER : 0;
}

/* ------------------------------------------------------------------ */
/* Memory registration. */

KVS_API int kvs_client_mem_reg(kvs_client_t *c, void *buf, size_t len,
                               kvs_mr_t **mr_out)
{
    kvs_mr_t *mr;
    int ret;

    if (!buf || !len || !mr_out)
        return -EINVAL;
    mr = calloc(1, sizeof(*mr));
    if (!mr)
        return -ENOMEM;
    ret = kvs_ucx_mem_map(c->ctx, buf, len, &mr->memh);
    if (ret) {
        free(mr);
        return ret;
    }
    mr->base = buf;
    mr->len = len;
    *mr_out = mr;
    return 0;
}

KVS_API void kvs_client_mem_dereg(kvs_client_t *c, kvs_mr_t *mr)
{
    if (!mr)
        return;
    ucp_mem_unmap(c->ctx, mr->memh);
    free(mr);
}
