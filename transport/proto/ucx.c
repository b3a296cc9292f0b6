/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UCX setup for the daemon and the client library: the context and worker
 * with the configuration kvstash depends on, endpoints, listeners, the
 * active-message handler, memory registration, and the mapping of UCX
 * statuses to kvstash statuses (logged with UCX's text, so that a failure
 * names its cause instead of a bare KVS_ECONFIG).
 *
 * UCX settings applied by kvs_ucx_open(), unless the operator set them in
 * the environment (the environment always wins):
 *  - MM_ERROR_HANDLING=y: UCX 1.13 leaves shared-memory transports out of
 *    endpoints that use peer error handling unless this is on, and then a
 *    local client would be served over TCP loopback instead of shared
 *    memory and CMA.
 *  - NET_DEVICES=lo for a daemon listening on loopback (lo_only): UCX would
 *    otherwise open its TCP transport on every interface, reachable from
 *    the network even though the daemon only listens on 127.0.0.1.
 *  - PUT_ENABLE=n for the TCP transport on loopback (UCX_TCP_PUT_ENABLE;
 *    the config takes the name without the transport's prefix). With TCP
 *    put on, a local client's control endpoint (peer error handling, so no
 *    CMA) takes TCP loopback as its rendezvous lane: large PUT payloads
 *    cross TCP, and with the TCP transport in use every
 *    ucp_worker_progress() makes an epoll_wait() system call, paid on every
 *    poll of a spinning daemon or client. Without it the control endpoint
 *    of a local client has one shared-memory lane and rendezvous goes by
 *    active messages over it; bulk endpoints keep CMA, and remote peers
 *    still reach us over TCP. Measured on loopback: 1 MiB PUTs 2.2 -> 4.1
 *    GB/s, 128-key MATCH p50 7 -> 4.7 us. Either side turning it off is
 *    enough; mixed settings were checked. Only on loopback: between hosts
 *    TCP is the only transport, and that path was not measured.
 *  - RNDV_SCHEME=put_zcopy for libkvstash's put endpoint only (rndv_put,
 *    client/conn.c): its PUTs are written by the client into the daemon's
 *    arena. Every other context keeps UCX's default, in which the receiver
 *    of a rendezvous send reads it.
 */
#include "transport/proto/ucx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kvstash/status.h"
#include "transport/proto/sockaddr.h"

int kvs_ucx_status(ucs_status_t st, const char *what)
{
    int ret;

    switch (st) {
    case UCS_OK:
        return 0;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
        ret = -ENOMEM;
        break;
    case UCS_ERR_BUSY:
        ret = -EADDRINUSE; /* what ucp_listener_create says for it */
        break;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
        ret = -EINVAL;
        break;
    case UCS_ERR_NO_DEVICE:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_UNSUPPORTED:
        ret = -ENODEV;
        break;
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
        ret = -ETIMEDOUT;
        break;
    case UCS_ERR_UNREACHABLE: /* no transport reaches the address */
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CANCELED:
        ret = KVS_EPEER;
        break;
    default:
        ret = -EIO;
        break;
    }
    if (what)
        kvs_warn("%s: %s", what, ucs_status_string(st));
    return ret;
}

int kvs_ucx_open(const kvs_ucx_opts_t *o, ucp_context_h *ctx_out,
                 ucp_worker_h *worker_out)
{
    ucp_params_t up;
    ucp_worker_params_t wp;
    ucp_config_t *config;
    ucs_status_t st;

    st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK)
        return kvs_ucx_status(st, "reading the UCX configuration");
    if (!getenv("UCX_MM_ERROR_HANDLING") &&
        ucp_config_modify(config, "MM_ERROR_HANDLING", "y") != UCS_OK)
        kvs_warn("cannot enable UCX shared memory with error handling");
    if (o->lo_only && !getenv("UCX_NET_DEVICES") &&
        ucp_config_modify(config, "NET_DEVICES", "lo") != UCS_OK)
        kvs_warn("cannot restrict UCX to the loopback device");
    if (o->loopback && !getenv("UCX_TCP_PUT_ENABLE"))
        (void)ucp_config_modify(config, "PUT_ENABLE", "n");
    if (o->rndv_put && !getenv("UCX_RNDV_SCHEME") &&
        ucp_config_modify(config, "RNDV_SCHEME", "put_zcopy") != UCS_OK)
        kvs_warn("cannot make UCX rendezvous senders write (put_zcopy)");
    memset(&up, 0, sizeof(up));
    up.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
    up.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    up.name = o->name;
    if (o->mt_workers) {
        up.field_mask |= UCP_PARAM_FIELD_MT_WORKERS_SHARED;
        up.mt_workers_shared = 1;
    }
    st = ucp_init(&up, config, ctx_out);
    ucp_config_release(config);
    if (st != UCS_OK)
        return kvs_ucx_status(st, "ucp_init");
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    st = ucp_worker_create(*ctx_out, &wp, worker_out);
    if (st != UCS_OK) {
        ucp_cleanup(*ctx_out);
        *ctx_out = NULL;
        return kvs_ucx_status(st, "ucp_worker_create");
    }
    return 0;
}

int kvs_ucx_worker_create(ucp_context_h ctx, ucp_worker_h *worker_out)
{
    ucp_worker_params_t wp;

    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    return kvs_ucx_status(ucp_worker_create(ctx, &wp, worker_out),
                          "ucp_worker_create");
}

int kvs_ucx_am_handler(ucp_worker_h worker, unsigned am_id,
                       ucp_am_recv_callback_t cb, void *arg)
{
    ucp_am_handler_param_t ap;

    memset(&ap, 0, sizeof(ap));
    ap.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                    UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG;
    ap.id = am_id;
    ap.cb = cb;
    ap.arg = arg;
    return kvs_ucx_status(ucp_worker_set_am_recv_handler(worker, &ap),
                          "registering the active-message handler");
}

/* Peer error handling on or off, and who hears of errors. */
static void ep_errors(ucp_ep_params_t *ep, bool peer,
                      ucp_err_handler_cb_t err_cb, void *err_arg)
{
    ep->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep->err_mode =
        peer ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    if (err_cb) {
        ep->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        ep->err_handler.cb = err_cb;
        ep->err_handler.arg = err_arg;
    }
}

int kvs_ucx_connect(ucp_worker_h worker, const struct sockaddr_storage *ss,
                    bool peer, ucp_err_handler_cb_t err_cb, void *err_arg,
                    ucp_ep_h *ep_out)
{
    ucp_ep_params_t ep;
    ucs_status_t st;

    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = (const struct sockaddr *)ss;
    ep.sockaddr.addrlen = kvs_sockaddr_len(ss);
    ep_errors(&ep, peer, err_cb, err_arg);
    st = ucp_ep_create(worker, &ep, ep_out);
    if (st != UCS_OK)
        *ep_out = NULL;
    return kvs_ucx_status(st, "cannot connect an endpoint");
}

int kvs_ucx_accept(ucp_worker_h worker, ucp_conn_request_h req, bool peer,
                   ucp_err_handler_cb_t err_cb, void *err_arg, ucp_ep_h *ep_out)
{
    ucp_ep_params_t ep;
    ucs_status_t st;

    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
    ep.conn_request = req;
    ep_errors(&ep, peer, err_cb, err_arg);
    st = ucp_ep_create(worker, &ep, ep_out);
    if (st != UCS_OK)
        *ep_out = NULL;
    return kvs_ucx_status(st, "cannot accept a connection");
}

int kvs_ucx_listen(ucp_worker_h worker, const struct sockaddr_storage *ss,
                   ucp_listener_conn_callback_t cb, void *arg,
                   ucp_listener_h *listener_out, uint16_t *port_out)
{
    ucp_listener_params_t lp;
    ucp_listener_attr_t la;
    ucs_status_t st;

    memset(&lp, 0, sizeof(lp));
    lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
                    UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    lp.sockaddr.addr = (const struct sockaddr *)ss;
    lp.sockaddr.addrlen = kvs_sockaddr_len(ss);
    lp.conn_handler.cb = cb;
    lp.conn_handler.arg = arg;
    st = ucp_listener_create(worker, &lp, listener_out);
    if (st != UCS_OK) {
        *listener_out = NULL;
        return kvs_ucx_status(st, "ucp_listener_create");
    }
    la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    st = ucp_listener_query(*listener_out, &la);
    if (st != UCS_OK) {
        ucp_listener_destroy(*listener_out);
        *listener_out = NULL;
        return kvs_ucx_status(st, "ucp_listener_query");
    }
    *port_out = ntohs(la.sockaddr.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&la.sockaddr)->sin6_port
                          : ((struct sockaddr_in *)&la.sockaddr)->sin_port);
    return 0;
}

int kvs_ucx_mem_map(ucp_context_h ctx, void *addr, size_t len,
                    ucp_mem_h *memh_out)
{
    ucp_mem_map_params_t mp;

    memset(&mp, 0, sizeof(mp));
    mp.field_mask =
        UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = addr;
    mp.length = len;
    return kvs_ucx_status(ucp_mem_map(ctx, &mp, memh_out),
                          "cannot register memory with UCX");
}
