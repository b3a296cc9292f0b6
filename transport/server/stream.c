/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming between sidecars (docs/protocol.md, "Streaming"; docs/
 * architecture.md, section 5).
 *
 * Three kinds of objects live here, all owned by the server's thread:
 *
 *  - sput: a client's streaming put. PUT_BEGIN reserves the block in the
 *    store (kvs_store_put_begin); each PUT_PART lands straight in the
 *    block's arena bytes (rendezvous data is received there by UCX); SEAL
 *    publishes it. A block is invisible to match/get until sealed.
 *  - src: one block being sent to a peer link, either for the peer's
 *    FETCH or for a PUSH. It follows a live sput (parts are forwarded as
 *    each one is done, in order) or a sealed block (pinned view).
 *  - fetch: blocks being received from a peer link, for a client's FETCH
 *    (each part is forwarded to the client from the arena as it lands) or
 *    for a peer's PUSH. Received blocks are sealed into the local store.
 *
 *   decode client      decode kvstashd  ==link==  prefill kvstashd   prefill client
 *      FETCH(peer,keys) ->  FETCH(ns,keys) ------>  src per key  <- PUT_BEGIN
 *                           put_begin      <- BLOCK                <- PUT_PART i
 *      <- PART i (arena)    part i lands   <- PART i  (as done)
 *      <- END k             put_seal       <- END k   (sealed)    <- PUT_SEAL
 *
 * An arena buffer that UCX is still reading or writing is never sealed or
 * aborted under it: every object counts its sends and receives in flight
 * (inflight) and seals or aborts only at zero.
 *
 * Failure: links carry PINGs every timeout/4; a link that has been silent
 * for peer_timeout_ms, or that UCX reports failed, fails every block not
 * yet complete on it (END with KVS_EPEER to the client, put_abort locally),
 * and nothing else: blocks already complete are sealed as usual.
 */
#include "transport/server/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/stream_op.h"
#include "transport/proto/ucx.h"

#define PEERS_MAX 32

enum { B_WAIT, B_OPEN, B_DONE };

typedef struct link {
    struct link *next;
    char name[64];                /* configured name, or "ip:port" */
    bool outbound;                /* we connected (else conn is the peer) */
    bool dead;
    bool closed;                  /* ep closed / conn closing */
    int fail_status;
    ucp_ep_h ep;                  /* outbound */
    ucp_ep_h bulk_ep;             /* outbound, same host: see link_bulk() */
    struct sockaddr_storage ss;   /* outbound: the peer's address */
    bool local;                   /* outbound: the peer is on this host */
    uint8_t bind_frame[KVS_WIRE_HDR_SIZE + 32]; /* UCX reads it until sent */
    void *bind_req;               /* the BIND send, until it completes */
    bool bulk_bad;                /* BIND failed: stay on the control ep */
    kvs_conn_t *conn;             /* inbound */
    bool ready;                   /* inbound, or outbound and HELLO answered:
                                     nothing but HELLO goes out before */
    struct pend *pend_head, *pend_tail; /* messages held until ready */
    uint64_t last_rx_ns, last_tx_ns;
} link_t;

typedef struct sput sput_t;

/* A data-less message held on a link until its HELLO is answered. */
typedef struct pend {
    struct pend *next;
    kvs_smsg_t m;
    size_t blen;
    uint8_t body[];
} pend_t;

typedef struct src {
    struct src *next;
    link_t *link;
    uint64_t id;                  /* fetch id on the receiver, or push id */
    uint32_t block;
    uint32_t ns;
    uint8_t key[KVS_KEY_MAX];
    uint8_t key_len;
    bool push;                    /* first message is PUSH, not BLOCK */
    sput_t *put;                  /* following a live put */
    kvs_view_t view;              /* or a sealed block */
    bool has_view;
    bool began, ended;
    uint32_t next_part;
    uint64_t deadline_ns;         /* waiting for the block to begin */
    uint32_t inflight;
} src_t;

struct sput {
    sput_t *next;
    kvs_conn_t *conn;             /* NULL once the client is gone */
    uint64_t cid;                 /* the client's id */
    uint32_t ns;
    uint8_t key[KVS_KEY_MAX];
    uint8_t key_len;
    kvs_put_stream_t ps;
    uint32_t nparts;
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *done;
    uint32_t ndone;
    uint32_t inflight;            /* receives + forwards in flight */
    bool seal_req, abort_req, finished;
    int status;                   /* first error; seal's result */
    src_t *push_src;
    uint64_t push_id;
    char ns_name[KVS_NS_NAME_MAX + 1]; /* push: the namespace's name */
    uint8_t cls;
    uint32_t flags;
    bool push_wait;
    int push_status;
    bool replied;
};

typedef struct dblk {
    uint8_t key[KVS_KEY_MAX];
    uint8_t key_len;
    int state;
    bool put_open;
    kvs_put_stream_t ps;
    uint32_t nparts;
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *got;
    uint32_t ngot;
    uint32_t inflight;
    bool remote_end;
    int status;
    bool told;
} dblk_t;

typedef struct fetch {
    struct fetch *next;
    kvs_conn_t *conn;             /* the client; NULL: push or gone */
    uint64_t cid;                 /* the client's id / the pusher's id */
    uint64_t id;                  /* ours, unique in this daemon */
    link_t *link;
    bool push;
    uint32_t ns;
    uint32_t nblocks;
    dblk_t blk[];
} fetch_t;

typedef struct stx {
    struct stx *next;             /* free list */
    struct stx *lnext, *lprev;    /* st->stx_live while UCX holds it */
    ucp_ep_h ep;
    bool orphan;                  /* done already ran; UCX still holds it */
    kvs_srvstream_t *st;
    void (*done)(kvs_srvstream_t *st, void *obj, void *obj2, int status);
    void *obj, *obj2;
    uint8_t hdr[KVS_SMSG_MAX];
} stx_t;

typedef struct peer_cfg {
    char name[64];
    char addr[64];
    uint16_t port;
} peer_cfg_t;

struct kvs_srvstream {
    kvs_server_t *srv;
    link_t *links;
    sput_t *sputs;
    src_t *srcs;
    fetch_t *fetches;
    stx_t *stx_free;
    stx_t *stx_failed;            /* failed sends, completed by the tick */
    stx_t *stx_live;              /* sends UCX has not completed */
    stx_t *stx_orphans;           /* finished by us, still held by UCX */
    uint64_t next_id;
    uint64_t timeout_ns;
    peer_cfg_t peers[PEERS_MAX];
    size_t npeers;
    /* counters */
    uint64_t parts_in, parts_out, blocks_sealed, blocks_failed;
};

static kvs_srvstream_t *S(kvs_server_t *srv)
{
    return srv->stream;
}

static uint8_t *part_buf(kvs_server_t *srv, kvs_put_stream_t *ps, uint32_t i)
{
    size_t len;

    return kvs_store_put_part_buf(srv->store, ps, i, &len);
}

/* ------------------------------------------------------------------ */
/* Sends. */

static stx_t *stx_get(kvs_srvstream_t *st)
{
    stx_t *t = st->stx_free;

    if (t)
        st->stx_free = t->next;
    else if (!(t = malloc(sizeof(*t))))
        return NULL;
    t->st = st;
    t->done = NULL;
    t->obj = t->obj2 = NULL;
    t->ep = NULL;
    t->orphan = false;
    t->lnext = t->lprev = NULL;
    return t;
}

static void stx_unlink(stx_t **head, stx_t *t)
{
    if (t->lprev)
        t->lprev->lnext = t->lnext;
    else if (*head == t)
        *head = t->lnext;
    if (t->lnext)
        t->lnext->lprev = t->lprev;
    t->lnext = t->lprev = NULL;
}

static void stx_link(stx_t **head, stx_t *t)
{
    t->lprev = NULL;
    t->lnext = *head;
    if (t->lnext)
        t->lnext->lprev = t;
    *head = t;
}

/* A bulk endpoint has no peer error handling, and UCX 1.13 may never
 * complete a rendezvous send on it once the peer is gone. When the link or
 * connection that owns ep fails, the sends still on it are finished here
 * (their done callbacks run with KVS_EPEER); UCX only ever reads a send's
 * bytes, so the blocks they came from may be sealed or dropped at once.
 * The stx itself is recycled if UCX completes it later. */
static void stx_orphan_ep(kvs_srvstream_t *st, ucp_ep_h ep)
{
    for (stx_t *t = st->stx_live, *next; t; t = next) {
        next = t->lnext;
        if (!ep || t->ep != ep)
            continue;
        stx_unlink(&st->stx_live, t);
        stx_link(&st->stx_orphans, t); /* freed at destroy, if not before */
        t->orphan = true;
        if (t->done)
            t->done(st, t->obj, t->obj2, KVS_EPEER);
        t->done = NULL;
    }
}

static void stx_put(kvs_srvstream_t *st, stx_t *t, int status)
{
    if (t->done)
        t->done(st, t->obj, t->obj2, status);
    t->next = st->stx_free;
    st->stx_free = t;
}

static void stx_cb(void *request, ucs_status_t status, void *user_data)
{
    stx_t *t = user_data;

    stx_unlink(t->orphan ? &t->st->stx_orphans : &t->st->stx_live, t);
    stx_put(t->st, t, status == UCS_OK ? 0 : KVS_EPEER);
    ucp_request_free(request);
}

/* Sends m (with data bytes from the arena, if any) on ep; m NULL: body is
 * an already encoded frame (body_len bytes), sent without data. done runs once
 * UCX is finished with the data, also on failure, but never inside this
 * call: completions come from ucp_worker_progress() (NO_IMM_CMPL), failed
 * sends from the next kvs_srvstream_tick(). So a caller may hold pointers to
 * objects that done might free. */
static int smsg_send(kvs_srvstream_t *st, ucp_ep_h ep, const kvs_smsg_t *m,
                     const void *body, size_t body_len, const void *data,
                     size_t data_len,
                     void (*done)(kvs_srvstream_t *, void *, void *, int),
                     void *obj, void *obj2)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS |
                        UCP_OP_ATTR_FLAG_NO_IMM_CMPL,
        .cb.send = stx_cb,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_ptr_t sp;
    stx_t *t = stx_get(st);
    size_t flen = 0;

    if (!t)
        kvs_panic("stream: out of memory for a send");
    t->done = done;
    t->obj = obj;
    t->obj2 = obj2;
    if (!ep || (m ? kvs_smsg_encode(m, body, body_len, t->hdr, &flen)
                  : (body_len > sizeof(t->hdr) ? -EINVAL : 0)) != 0) {
        t->next = st->stx_failed;
        st->stx_failed = t;
        return KVS_EPEER;
    }
    if (!m) { /* an encoded frame of the main protocol: the link's HELLO */
        memcpy(t->hdr, body, body_len);
        flen = body_len;
    }
    prm.user_data = t;
    if (data_len && st->srv->arena_memh) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        prm.memh = st->srv->arena_memh;
    }
    /* Part bytes always go by rendezvous: the receiver pulls them straight
     * into their destination, and UCX 1.13's shared-memory short path
     * rejects a large header plus data ("Invalid am_short_iov length"). */
    if (data_len)
        prm.flags |= UCP_AM_SEND_FLAG_RNDV;
    /* Listed before the call: UCX may run stx_cb before it returns. */
    t->ep = ep;
    stx_link(&st->stx_live, t);
    sp = ucp_am_send_nbx(ep, KVS_AM_ID, t->hdr, flen, data, data_len, &prm);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        /* NULL cannot happen with NO_IMM_CMPL; treat it as failed too. */
        stx_unlink(&st->stx_live, t);
        t->next = st->stx_failed;
        st->stx_failed = t;
        return KVS_EPEER;
    }
    return 0;
}

/* Every stream message of a connection or link travels on one endpoint,
 * so that UCX keeps them in order: the bulk endpoint once there is one
 * (shared memory and CMA, see transport/server/server_int.h), else the control
 * endpoint. Before a link's bulk endpoint is up only HELLO goes out. */
static ucp_ep_h conn_ep(kvs_conn_t *c)
{
    return c && !c->closing ? kvs_conn_data_ep(c) : NULL;
}

static ucp_ep_h link_ep(link_t *l)
{
    if (l->dead || l->closed)
        return NULL;
    if (l->outbound)
        return l->bulk_ep && !l->bulk_bad ? l->bulk_ep : l->ep;
    return conn_ep(l->conn);
}

static int link_send(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                     const void *body, size_t blen)
{
    if (!l->ready) {
        /* UCX may deliver a message sent while the endpoint is wired up
         * before the HELLO it followed; the peer would drop it. */
        pend_t *p = malloc(sizeof(*p) + blen);

        if (!p)
            return -ENOMEM;
        p->next = NULL;
        p->m = *m;
        p->blen = blen;
        if (blen)
            memcpy(p->body, body, blen);
        if (l->pend_tail)
            l->pend_tail->next = p;
        else
            l->pend_head = p;
        l->pend_tail = p;
        return 0;
    }
    l->last_tx_ns = kvs_clock_mono_ns();
    return smsg_send(st, link_ep(l), m, body, blen, NULL, 0, NULL, NULL, NULL);
}

static void send_end(kvs_srvstream_t *st, ucp_ep_h ep, uint64_t id,
                     uint32_t block, int status)
{
    kvs_smsg_t m = {.op = KVS_OP_END, .id = id, .block = block,
                    .status = status};

    smsg_send(st, ep, &m, NULL, 0, NULL, 0, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* Links. */

static int parse_hostport(const char *s, char *addr, size_t cap,
                          uint16_t *port_out)
{
    const char *colon = strrchr(s, ':');
    unsigned long p;
    char *end;

    if (!colon || (size_t)(colon - s) >= cap || colon == s)
        return KVS_ECONFIG;
    p = strtoul(colon + 1, &end, 10);
    if (*end || p == 0 || p > 65535)
        return KVS_ECONFIG;
    memcpy(addr, s, (size_t)(colon - s));
    addr[colon - s] = '\0';
    *port_out = (uint16_t)p;
    return 0;
}

/* True if ss is a loopback address or one of this host's own: a peer
 * there shares memory with us, so its link may take a bulk endpoint. A
 * peer on another host keeps every message on the control endpoint, whose
 * peer error handling notices a dead host; UCX 1.13 has no error handling
 * for the bulk endpoint's network transports. */
static bool addr_is_local(const struct sockaddr_storage *ss)
{
    struct ifaddrs *ifs;
    bool local = false;

    if (kvs_sockaddr_is_loopback(ss))
        return true;
    if (getifaddrs(&ifs) != 0)
        return false;
    for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != ss->ss_family)
            continue;
        if (ss->ss_family == AF_INET)
            local = ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr ==
                    ((const struct sockaddr_in *)ss)->sin_addr.s_addr;
        else
            local = !memcmp(&((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                            &((const struct sockaddr_in6 *)ss)->sin6_addr,
                            sizeof(struct in6_addr));
    }
    freeifaddrs(ifs);
    return local;
}

static void link_ready(kvs_srvstream_t *st, link_t *l);

/* The BIND went out, so the bulk endpoint is wired up: the link is ready.
 * (UCX 1.13 asserts in its rendezvous code when a large send is queued on
 * an endpoint that is still being wired up, so nothing else goes before.) */
static void bulk_send_cb(void *request, ucs_status_t status, void *user_data)
{
    kvs_server_t *srv = user_data;
    kvs_srvstream_t *st = srv->stream;

    ucp_request_free(request);
    if (!st)
        return;
    for (link_t *l = st->links; l; l = l->next) {
        if (l->bind_req != request)
            continue;
        l->bind_req = NULL;
        if (status != UCS_OK) {
            kvs_info("peer %s: bulk endpoint: %s", l->name,
                     ucs_status_string(status));
            l->bulk_bad = true;
        }
        if (!l->dead && !l->closed)
            link_ready(st, l);
        break;
    }
}

/* The peer answered HELLO with its bulk port and a BIND secret for the
 * connection it sees us as (m->part, m->off, m->id). Connects a second
 * endpoint without peer error handling, so that part bytes move by CMA,
 * and binds it exactly as a client does (KVS_OP_BIND). Best effort: on
 * any failure the link keeps using its control endpoint. */
static void link_bulk(kvs_srvstream_t *st, link_t *l, uint64_t session,
                      uint64_t secret, uint32_t port)
{
    kvs_server_t *srv = st->srv;
    struct sockaddr_storage ss = l->ss;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS |
                        UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = bulk_send_cb,
        .user_data = srv,
        .flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER,
    };
    ucs_status_ptr_t sp;
    kvs_wire_msg_t b;
    size_t len;

    if (!l->local || !port || port > 65535 || !secret ||
        getenv("KVSTASH_NO_BULK"))
        return;
    kvs_sockaddr_set_port(&ss, (uint16_t)port);
    memset(&b, 0, sizeof(b));
    b.hdr.opcode = KVS_OP_BIND;
    b.hdr.req_id = 1;
    b.u.bind.session = session;
    b.u.bind.secret = secret;
    if (kvs_wire_encode(&b, l->bind_frame, sizeof(l->bind_frame), &len) != 0)
        return;
    if (kvs_ucx_connect(srv->worker, &ss, false, NULL, NULL,
                        &l->bulk_ep) != 0)
        return;
    sp = ucp_am_send_nbx(l->bulk_ep, KVS_AM_ID, NULL, 0, l->bind_frame, len,
                         &prm);
    if (UCS_PTR_IS_ERR(sp)) {
        ucp_request_param_t cp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                  .flags = UCP_EP_CLOSE_FLAG_FORCE};

        sp = ucp_ep_close_nbx(l->bulk_ep, &cp);
        if (UCS_PTR_IS_PTR(sp))
            ucp_request_free(sp);
        l->bulk_ep = NULL;
        return;
    }
    if (sp != NULL)
        l->bind_req = sp; /* ready once it is sent: bulk_send_cb */
    kvs_info("peer %s: bulk endpoint to port %u", l->name, (unsigned)port);
}

static void link_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    link_t *l = arg;

    (void)ep;
    kvs_info("peer %s: link error: %s", l->name, ucs_status_string(status));
    if (!l->dead) {
        l->dead = true;
        l->fail_status = KVS_EPEER;
    }
}

/* The live outbound link to peer (a configured name or "ip:port"),
 * connecting if there is none. */
static int link_get(kvs_srvstream_t *st, const char *peer, link_t **out)
{
    kvs_server_t *srv = st->srv;
    const char *secret = srv->cfg.peer_secret ? srv->cfg.peer_secret : "";
    char addr[64];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    link_t *l;
    kvs_wire_msg_t h;
    uint8_t frame[KVS_WIRE_HDR_SIZE + KVS_WIRE_HELLO_FIXED +
                  KVS_WIRE_TOKEN_MAX];
    size_t flen;
    int ret;

    for (l = st->links; l; l = l->next)
        if (l->outbound && !l->dead && !l->closed && !strcmp(l->name, peer)) {
            *out = l;
            return 0;
        }
    addr[0] = '\0';
    for (size_t i = 0; i < st->npeers; i++)
        if (!strcmp(st->peers[i].name, peer)) {
            snprintf(addr, sizeof(addr), "%s", st->peers[i].addr);
            port = st->peers[i].port;
        }
    if (!addr[0] && parse_hostport(peer, addr, sizeof(addr), &port))
        return KVS_ENOTFOUND;
    if (kvs_sockaddr_parse(addr, port, &ss) != 0)
        return KVS_ENOTFOUND;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    snprintf(l->name, sizeof(l->name), "%s", peer);
    l->outbound = true;
    l->ss = ss;
    l->local = addr_is_local(&ss);
    if (kvs_ucx_connect(srv->worker, &ss, true, link_err_cb, l, &l->ep) != 0) {
        free(l);
        return KVS_EPEER;
    }
    l->last_rx_ns = l->last_tx_ns = kvs_clock_mono_ns();
    l->next = st->links;
    st->links = l;
    /* The peer form of HELLO: the shared secret as the token, no
     * namespace (each FETCH or PUSH names its own). */
    memset(&h, 0, sizeof(h));
    h.hdr.opcode = KVS_OP_HELLO;
    h.hdr.req_id = 1;
    h.u.hello.features = KVS_WIRE_FEAT_PEER | KVS_WIRE_FEAT_STREAM |
                         KVS_WIRE_FEAT_BULK;
    h.u.hello.token.data = (const uint8_t *)secret;
    h.u.hello.token.len = (uint32_t)strlen(secret);
    ret = kvs_wire_encode(&h, frame, sizeof(frame), &flen);
    if (ret == 0)
        ret = smsg_send(st, l->ep, NULL, frame, flen, NULL, 0, NULL, NULL,
                        NULL);
    kvs_info("peer %s: connecting to %s port %u", peer, addr, port);
    if (ret)
        return ret;
    *out = l;
    return 0;
}

static link_t *link_by_conn(kvs_srvstream_t *st, kvs_conn_t *conn)
{
    for (link_t *l = st->links; l; l = l->next)
        if (!l->outbound && l->conn == conn && !l->closed)
            return l;
    return NULL;
}

static link_t *link_by_ep(kvs_srvstream_t *st, ucp_ep_h ep)
{
    for (link_t *l = st->links; l; l = l->next)
        if (l->outbound && !l->closed && (l->ep == ep || l->bulk_ep == ep))
            return l;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Sources: blocks sent to a link. */

static void src_pump(kvs_srvstream_t *st, src_t *s);
static void sput_maybe_finish(kvs_srvstream_t *st, sput_t *p);

static void src_free_if_idle(kvs_srvstream_t *st, src_t *s)
{
    if (!s->ended || s->inflight)
        return;
    for (src_t **pp = &st->srcs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (s->has_view)
        kvs_store_unpin_view(st->srv->store, &s->view);
    if (s->put && s->put->push_src == s)
        s->put->push_src = NULL;
    free(s);
}

static void src_end(kvs_srvstream_t *st, src_t *s, int status)
{
    if (s->ended)
        return;
    s->ended = true;
    if (s->began || status)
        send_end(st, link_ep(s->link), s->id, s->block, status);
    if (status)
        st->blocks_failed++;
    src_free_if_idle(st, s);
}

static void src_part_sent(kvs_srvstream_t *st, void *obj, void *obj2, int status)
{
    src_t *s = obj;
    sput_t *p = obj2;

    (void)status;
    /* s stays counted until the put has had its say: finishing the put
     * ends s, and must not free it under us. */
    if (p) {
        p->inflight--;
        sput_maybe_finish(st, p);
    }
    s->inflight--;
    src_free_if_idle(st, s);
}

static void src_pump(kvs_srvstream_t *st, src_t *s)
{
    kvs_server_t *srv = st->srv;
    const uint32_t *lens;
    const uint8_t *base;
    uint32_t nparts;
    kvs_smsg_t m;

    if (s->ended)
        return;
    if (!link_ep(s->link)) {
        src_end(st, s, KVS_EPEER);
        return;
    }
    if (!s->link->ready)
        return; /* pumped again when the link's HELLO is answered */
    if (!s->put && !s->has_view) {
        for (sput_t *p = st->sputs; p; p = p->next)
            if (!p->finished && !p->abort_req && p->ns == s->ns &&
                p->key_len == s->key_len &&
                !memcmp(p->key, s->key, s->key_len))
                s->put = p;
        if (!s->put) {
            if (kvs_store_pin(srv->store, s->ns, s->key, s->key_len,
                              &s->view) != 0) {
                if (kvs_clock_mono_ns() >= s->deadline_ns)
                    src_end(st, s, KVS_ENOTFOUND); /* may free s */
                return;
            }
            s->has_view = true;
        }
    }
    if (s->put) {
        nparts = s->put->nparts;
        lens = s->put->lens;
        base = part_buf(srv, &s->put->ps, 0);
    } else {
        nparts = s->view.nparts;
        lens = s->view.part_lens;
        base = s->view.data;
    }
    if (!s->began) {
        uint8_t body[KVS_SMSG_BODY_MAX];
        size_t blen = 0;
        uint64_t total = 0;

        memset(&m, 0, sizeof(m));
        m.id = s->id;
        m.block = s->block;
        m.nparts = nparts;
        if (s->push) {
            /* Namespace, then the key, then the lengths. */
            m.op = KVS_OP_PUSH;
            m.block = s->put->cls;
            m.part = s->put->flags;
            m.str_len = (uint16_t)strlen(s->put->ns_name);
            memcpy(body, s->put->ns_name, m.str_len);
            blen = m.str_len;
            body[blen] = s->key_len;
            memcpy(body + blen + 1, s->key, s->key_len);
            blen += 1u + s->key_len;
        } else {
            m.op = KVS_OP_BLOCK;
        }
        if (blen + 4ull * nparts > sizeof(body)) {
            src_end(st, s, KVS_ETOOBIG);
            return;
        }
        for (uint32_t i = 0; i < nparts; i++) {
            kvs_le32_store(body + blen, lens[i]);
            blen += 4;
            total += lens[i];
        }
        m.len = total;
        s->began = true;
        if (link_send(st, s->link, &m, body, blen)) {
            src_end(st, s, KVS_EPEER);
            return;
        }
    }
    while (s->next_part < nparts) {
        uint32_t i = s->next_part;
        const uint8_t *data;
        uint64_t off = 0;

        if (s->put) {
            if (!s->put->done[i])
                break;
            off = s->put->offs[i];
            data = part_buf(srv, &s->put->ps, i);
        } else {
            for (uint32_t j = 0; j < i; j++)
                off += lens[j];
            data = base + off;
        }
        memset(&m, 0, sizeof(m));
        m.op = KVS_OP_PART;
        m.id = s->id;
        m.block = s->block;
        m.part = i;
        m.off = off;
        m.len = lens[i];
        s->next_part++;
        s->inflight++;
        if (s->put)
            s->put->inflight++;
        st->parts_out++;
        s->link->last_tx_ns = kvs_clock_mono_ns();
        smsg_send(st, link_ep(s->link), &m, NULL, 0, data, lens[i],
                  src_part_sent, s, s->put);
        if (s->ended)
            return;
    }
    if (s->next_part == nparts && s->has_view)
        src_end(st, s, 0);
}

static src_t *src_new(kvs_srvstream_t *st, link_t *l, uint64_t id,
                      uint32_t block, uint32_t ns, const uint8_t *key,
                      uint32_t key_len, uint64_t wait_ms)
{
    src_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->link = l;
    s->id = id;
    s->block = block;
    s->ns = ns;
    memcpy(s->key, key, key_len);
    s->key_len = (uint8_t)key_len;
    s->deadline_ns = kvs_clock_mono_ns() + wait_ms * 1000000ull;
    s->next = st->srcs;
    st->srcs = s;
    return s;
}

/* ------------------------------------------------------------------ */
/* Streaming puts. */

/* Reserves a block of nparts parts of lens[i] bytes in the store (a
 * client's streaming put, or a block arriving from a peer) and fills in
 * each part's offset in it. */
static int store_begin(kvs_srvstream_t *st, uint32_t ns, const uint8_t *key,
                       uint8_t key_len, const uint32_t *lens, uint64_t *offs,
                       uint32_t nparts, uint8_t cls, uint32_t flags,
                       kvs_put_stream_t *ps)
{
    kvs_iov_t *iov = st->srv->iovs;
    kvs_put_args_t a;

    for (uint32_t i = 0; i < nparts; i++) {
        offs[i] = i ? offs[i - 1] + lens[i - 1] : 0;
        iov[i].base = NULL;
        iov[i].len = lens[i];
    }
    memset(&a, 0, sizeof(a));
    a.ns = ns;
    a.key = key;
    a.key_len = key_len;
    a.parts = iov;
    a.nparts = nparts;
    a.cls = cls;
    a.flags = flags & KVS_WIRE_PUT_KNOWN;
    return kvs_store_put_begin(st->srv->store, &a, ps);
}

static void sput_reply(kvs_srvstream_t *st, sput_t *p)
{
    kvs_smsg_t m = {.op = KVS_OP_SPUT_DONE,
                    .id = p->cid};

    if (p->replied || !p->finished || p->push_wait)
        return;
    p->replied = true;
    m.status = p->status ? p->status : p->push_status;
    smsg_send(st, conn_ep(p->conn), &m, NULL, 0, NULL, 0, NULL, NULL, NULL);
}

static void sput_free_if_idle(kvs_srvstream_t *st, sput_t *p)
{
    if (!p->finished || p->inflight || p->push_wait ||
        (p->conn && !p->replied))
        return;
    for (src_t *s = st->srcs; s; s = s->next)
        if (s->put == p)
            return; /* detached in sput_maybe_finish before this */
    for (sput_t **pp = &st->sputs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p->lens);
    free(p->offs);
    free(p->done);
    free(p);
}

/* True while a source following p has parts still to send: the block is
 * sealed only after every follower has sent every part (a push whose link
 * is still being set up, or a slow peer, holds the seal back). */
static bool sput_followers_behind(kvs_srvstream_t *st, const sput_t *p)
{
    for (const src_t *s = st->srcs; s; s = s->next)
        if (s->put == p && !s->ended && s->next_part < p->nparts)
            return true;
    return false;
}

/* Seals (or aborts) once nothing reads or writes the block's bytes. */
static void sput_maybe_finish(kvs_srvstream_t *st, sput_t *p)
{
    if (!p->finished && !p->inflight &&
        (p->abort_req || !sput_followers_behind(st, p)) &&
        (p->abort_req || (p->seal_req && p->ndone == p->nparts))) {
        int ret;

        p->finished = true;
        if (p->abort_req) {
            kvs_store_put_abort(st->srv->store, &p->ps);
            ret = p->status ? p->status : KVS_EPEER;
        } else {
            ret = kvs_store_put_seal(st->srv->store, &p->ps);
            if (ret)
                kvs_warn("stream put: seal: %s", kvs_strerror(ret));
            else
                st->blocks_sealed++;
        }
        p->status = ret;
        for (src_t *s = st->srcs, *next; s; s = next) {
            next = s->next;
            if (s->put != p)
                continue;
            s->put = NULL;
            src_end(st, s, ret);
        }
        sput_reply(st, p);
    } else if (p->seal_req && !p->abort_req && p->ndone < p->nparts &&
               !p->finished && !p->inflight) {
        /* SEAL before every part: the store says KVS_EINCOMPLETE. */
        p->status = KVS_EINCOMPLETE;
        p->abort_req = true;
        sput_maybe_finish(st, p);
        return;
    }
    sput_reply(st, p);
    sput_free_if_idle(st, p);
}

static sput_t *sput_find(kvs_srvstream_t *st, kvs_conn_t *conn, uint64_t cid)
{
    for (sput_t *p = st->sputs; p; p = p->next)
        if (p->conn == conn && p->cid == cid && !p->finished)
            return p;
    return NULL;
}

static void sput_part_landed(kvs_srvstream_t *st, sput_t *p, uint32_t part)
{
    if (kvs_store_put_part_done(st->srv->store, &p->ps, part) == 0 &&
        !p->done[part]) {
        p->done[part] = 1;
        p->ndone++;
        st->parts_in++;
    }
    for (src_t *s = st->srcs; s; s = s->next)
        if (s->put == p)
            src_pump(st, s);
}

static void sput_begin(kvs_srvstream_t *st, kvs_conn_t *conn,
                       const kvs_smsg_t *m)
{
    kvs_server_t *srv = st->srv;
    kvs_smsg_rd_t rd;
    uint64_t total = 0;
    sput_t *p;
    int ret = 0;

    p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->conn = conn;
    p->cid = m->id;
    p->ns = conn->ns;
    p->next = st->sputs;
    st->sputs = p;
    p->finished = true; /* until begun */
    if (!conn->ns_ok) {
        p->status = KVS_ENOTFOUND;
        goto out;
    }
    if (m->str_len < 1 || m->str_len > KVS_KEY_MAX) {
        p->status = KVS_EPROTO;
        goto out;
    }
    memcpy(p->key, m->body, m->str_len);
    p->key_len = (uint8_t)m->str_len;
    p->nparts = m->nparts;
    p->lens = calloc(m->nparts ? m->nparts : 1, sizeof(*p->lens));
    p->offs = calloc(m->nparts ? m->nparts : 1, sizeof(*p->offs));
    p->done = calloc(m->nparts ? m->nparts : 1, 1);
    if (!p->lens || !p->offs || !p->done) {
        p->status = -ENOMEM;
        goto out;
    }
    kvs_smsg_rd_init(&rd, m);
    ret = kvs_smsg_rd_lens(&rd, m->nparts, p->lens, &total);
    if (ret) {
        p->status = ret;
        goto out;
    }
    p->cls = (uint8_t)m->block;
    p->flags = m->part & KVS_WIRE_PUT_KNOWN;
    ret = store_begin(st, p->ns, p->key, p->key_len, p->lens, p->offs,
                      p->nparts, p->cls, p->flags, &p->ps);
    if (ret) {
        p->status = ret;
        goto out;
    }
    p->finished = false;
    if (m->flags & KVS_SMSG_F_PUSH) {
        char peer[256];
        uint32_t plen, nsid = 0;
        link_t *l;

        /* After the lengths: (u8 len, namespace name), then the peer. */
        if (rd.left >= 1 && rd.p[0] >= 1 && rd.p[0] + 1u <= rd.left) {
            uint32_t nl = rd.p[0];

            memcpy(p->ns_name, rd.p + 1, nl);
            p->ns_name[nl] = '\0';
            rd.left -= nl + 1;
            rd.p += nl + 1;
        }
        plen = rd.left;
        if (!p->ns_name[0] ||
            kvs_store_ns_open(srv->store, p->ns_name, 0, &nsid) ||
            nsid != p->ns) {
            p->status = KVS_ENOTFOUND;
            p->abort_req = true;
            goto out;
        }
        if (plen == 0 || plen >= sizeof(peer)) {
            p->status = KVS_EPROTO;
            p->abort_req = true;
            goto out;
        }
        memcpy(peer, rd.p, plen);
        peer[plen] = '\0';
        ret = link_get(st, peer, &l);
        if (ret) {
            p->status = ret;
            p->abort_req = true;
            goto out;
        }
        p->push_id = ++st->next_id;
        p->push_src = src_new(st, l, p->push_id, 0, p->ns, p->key,
                              p->key_len, 0);
        if (!p->push_src) {
            p->status = -ENOMEM;
            p->abort_req = true;
            goto out;
        }
        p->push_src->push = true;
        p->push_src->put = p;
        p->push_wait = true;
        p->push_status = KVS_EPEER;
    }
    /* Fetches from peers that were waiting for this block. */
    for (src_t *s = st->srcs; s; s = s->next)
        if (!s->began && !s->ended && s->ns == p->ns &&
            s->key_len == p->key_len && !memcmp(s->key, p->key, p->key_len))
            s->put = p;
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->put == p)
            src_pump(st, s);
    }
out:
    sput_maybe_finish(st, p);
}

typedef struct rx {
    kvs_srvstream_t *st;
    sput_t *put;                  /* a client's part, or */
    fetch_t *f;                   /* a peer's part */
    uint32_t block, part;
} rx_t;

static void fetch_part_landed(kvs_srvstream_t *st, fetch_t *f, uint32_t b,
                              uint32_t part, int status);

/* A part's bytes are in (ret 0) or never will be: tells its client put,
 * whose inflight count the caller raised, or its fetch. */
static void rx_done(kvs_srvstream_t *st, sput_t *put, fetch_t *f,
                    uint32_t block, uint32_t part, int ret)
{
    if (put) {
        if (ret) {
            put->status = ret;
            put->abort_req = true;
        } else {
            sput_part_landed(st, put, part);
        }
        put->inflight--;
        sput_maybe_finish(st, put);
    } else {
        fetch_part_landed(st, f, block, part, ret);
    }
}

static void rx_cb(void *request, ucs_status_t status, size_t length,
                  void *user_data)
{
    rx_t *r = user_data;

    (void)length;
    rx_done(r->st, r->put, r->f, r->block, r->part,
            status == UCS_OK ? 0 : KVS_EPEER);
    free(r);
    ucp_request_free(request);
}

/* Receives a part's data (eager: copied; rendezvous: UCX writes it into
 * dst). Returns what the AM callback returns. inflight is counted by the
 * caller and finished through the landed functions. */
static ucs_status_t rx_start(kvs_srvstream_t *st, sput_t *put, fetch_t *f,
                             uint32_t block, uint32_t part, void *dst,
                             void *data, size_t len, bool rndv)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = rx_cb,
    };
    ucs_status_ptr_t sp;
    rx_t *r;

    if (!rndv) {
        memcpy(dst, data, len);
        rx_done(st, put, f, block, part, 0);
        return UCS_OK;
    }
    r = malloc(sizeof(*r));
    if (r) {
        r->st = st;
        r->put = put;
        r->f = f;
        r->block = block;
        r->part = part;
        prm.user_data = r;
        if (st->srv->arena_memh) {
            prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
            prm.memh = st->srv->arena_memh;
        }
        sp = ucp_am_recv_data_nbx(st->srv->worker, data, dst, len, &prm);
        if (sp == NULL) {
            free(r);
            rx_done(st, put, f, block, part, 0);
            return UCS_INPROGRESS;
        }
        if (!UCS_PTR_IS_ERR(sp))
            return UCS_INPROGRESS;
        free(r);
    }
    rx_done(st, put, f, block, part, KVS_EPEER);
    return UCS_OK;
}

static ucs_status_t sput_part(kvs_srvstream_t *st, kvs_conn_t *conn,
                              const kvs_smsg_t *m, void *data, size_t len,
                              bool rndv)
{
    sput_t *p = sput_find(st, conn, m->id);
    void *dst;
    size_t plen = 0;

    if (!p)
        return UCS_OK; /* failed earlier: SEAL reports it */
    dst = kvs_store_put_part_buf(st->srv->store, &p->ps, m->part, &plen);
    if (p->abort_req || m->part >= p->nparts || !dst || plen != len ||
        p->done[m->part]) {
        if (!p->abort_req)
            p->status = KVS_EPROTO;
        p->abort_req = true;
        sput_maybe_finish(st, p);
        return UCS_OK;
    }
    p->inflight++;
    return rx_start(st, p, NULL, 0, m->part, dst, data, len, rndv);
}

/* ------------------------------------------------------------------ */
/* Fetches: blocks received from a link. */

static void fetch_free_if_done(kvs_srvstream_t *st, fetch_t *f)
{
    for (uint32_t i = 0; i < f->nblocks; i++)
        if (f->blk[i].state != B_DONE || f->blk[i].inflight)
            return;
    for (fetch_t **pp = &st->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    for (uint32_t i = 0; i < f->nblocks; i++) {
        free(f->blk[i].lens);
        free(f->blk[i].offs);
        free(f->blk[i].got);
    }
    free(f);
}

static void dblk_try_finish(kvs_srvstream_t *st, fetch_t *f, uint32_t i)
{
    dblk_t *b = &f->blk[i];
    int ret;

    if (b->state == B_DONE)
        return;
    if (b->status == 0 &&
        !(b->remote_end && b->state == B_OPEN && b->ngot == b->nparts))
        return;
    if (b->status && !b->told) {
        /* The client hears of a failure at once; the arena bytes are
         * dropped once nothing is reading them. */
        b->told = true;
        send_end(st, conn_ep(f->conn), f->cid, i, b->status);
    }
    if (b->inflight)
        return;
    if (b->status) {
        if (b->put_open)
            kvs_store_put_abort(st->srv->store, &b->ps);
        st->blocks_failed++;
        ret = b->status;
    } else {
        ret = kvs_store_put_seal(st->srv->store, &b->ps);
        if (ret == 0)
            st->blocks_sealed++;
    }
    b->put_open = false;
    b->state = B_DONE;
    if (!b->told) {
        b->told = true;
        send_end(st, conn_ep(f->conn), f->cid, i, ret);
    }
    if (f->push)
        send_end(st, link_ep(f->link), f->cid, 0, ret);
}

static void dblk_fail(kvs_srvstream_t *st, fetch_t *f, uint32_t i, int status)
{
    dblk_t *b = &f->blk[i];

    if (b->state == B_DONE || b->status)
        return;
    b->status = status;
    dblk_try_finish(st, f, i);
}

static void fwd_sent(kvs_srvstream_t *st, void *obj, void *obj2, int status)
{
    fetch_t *f = obj;
    uint32_t i = (uint32_t)(uintptr_t)obj2;

    kvs_debug("fetch %llu block %u: a part reached the client (%d)",
              (unsigned long long)f->id, i, status);
    f->blk[i].inflight--;
    dblk_try_finish(st, f, i);
    fetch_free_if_done(st, f);
}

static void fetch_part_landed(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                              uint32_t part, int status)
{
    dblk_t *b = &f->blk[i];

    b->inflight--;
    kvs_debug("fetch %llu block %u part %u landed (%d)",
              (unsigned long long)f->id, i, part, status);
    if (status) {
        dblk_fail(st, f, i, status);
    } else if (b->state == B_OPEN && !b->got[part]) {
        kvs_store_put_part_done(st->srv->store, &b->ps, part);
        b->got[part] = 1;
        b->ngot++;
        st->parts_in++;
        if (f->conn && !b->status) {
            kvs_smsg_t m = {.op = KVS_OP_PART, .id = f->cid, .block = i,
                            .part = part, .off = b->offs[part],
                            .len = b->lens[part]};

            b->inflight++;
            st->parts_out++;
            smsg_send(st, conn_ep(f->conn), &m, NULL, 0,
                      part_buf(st->srv, &b->ps, part),
                      b->lens[part], fwd_sent, f, (void *)(uintptr_t)i);
        }
    }
    dblk_try_finish(st, f, i);
    fetch_free_if_done(st, f);
}

static fetch_t *fetch_new(kvs_srvstream_t *st, uint32_t n)
{
    fetch_t *f = calloc(1, sizeof(*f) + n * sizeof(dblk_t));

    if (!f)
        return NULL;
    f->nblocks = n;
    f->id = ++st->next_id;
    f->next = st->fetches;
    st->fetches = f;
    return f;
}

/* BLOCK (or PUSH): the block's parts are known; reserve it in the store. */
static int dblk_open(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                     const kvs_smsg_t *m, kvs_smsg_rd_t *rd, uint8_t cls,
                     uint32_t flags)
{
    dblk_t *b = &f->blk[i];
    uint64_t total;
    int ret;

    if (b->state != B_WAIT || m->nparts < 1 || m->nparts > KVS_PARTS_MAX)
        return KVS_EPROTO;
    b->lens = calloc(m->nparts, sizeof(*b->lens));
    b->offs = calloc(m->nparts, sizeof(*b->offs));
    b->got = calloc(m->nparts, 1);
    if (!b->lens || !b->offs || !b->got)
        return -ENOMEM;
    ret = kvs_smsg_rd_lens(rd, m->nparts, b->lens, &total);
    if (ret)
        return ret;
    b->nparts = m->nparts;
    ret = store_begin(st, f->ns, b->key, b->key_len, b->lens, b->offs,
                      b->nparts, cls, flags, &b->ps);
    if (ret)
        return ret;
    b->put_open = true;
    b->state = B_OPEN;
    if (f->conn) {
        kvs_smsg_t c = *m;
        uint8_t body[4 * KVS_PARTS_MAX];

        c.op = KVS_OP_BLOCK;
        c.id = f->cid;
        c.block = i;
        c.str_len = 0;
        c.len = total;
        for (uint32_t j = 0; j < b->nparts; j++)
            kvs_le32_store(body + 4 * j, b->lens[j]);
        smsg_send(st, conn_ep(f->conn), &c, body, 4ull * b->nparts, NULL, 0,
                  NULL, NULL, NULL);
    }
    return 0;
}

static void fetch_start(kvs_srvstream_t *st, kvs_conn_t *conn,
                        const kvs_smsg_t *m)
{
    kvs_server_t *srv = st->srv;
    uint8_t body[KVS_SMSG_BODY_MAX];
    char peer[256];
    char ns[KVS_NS_NAME_MAX + 1];
    kvs_smsg_rd_t rd;
    kvs_smsg_t out;
    size_t blen;
    uint32_t nsid = 0, n = m->nparts;
    fetch_t *f;
    link_t *l;
    int ret = 0;

    /* The body: peer name, namespace name (u8 len, bytes), keys. */
    kvs_smsg_rd_init(&rd, m);
    if (m->str_len == 0 || m->str_len >= sizeof(peer) || n < 1 ||
        n > KVS_WIRE_KEYS_MAX || rd.left < 1 || rd.p[0] + 1u > rd.left) {
        send_end(st, conn_ep(conn), m->id, UINT32_MAX, KVS_EPROTO);
        return;
    }
    memcpy(peer, m->body, m->str_len);
    peer[m->str_len] = '\0';
    memcpy(ns, rd.p + 1, rd.p[0]);
    ns[rd.p[0]] = '\0';
    blen = rd.p[0] + 1u;
    rd.p += blen;
    rd.left -= (uint32_t)blen;
    /* The namespace named must be the connection's own. */
    if (!conn->ns_ok || !ns[0] ||
        kvs_store_ns_open(srv->store, ns, 0, &nsid) || nsid != conn->ns) {
        send_end(st, conn_ep(conn), m->id, UINT32_MAX, KVS_ENOTFOUND);
        return;
    }
    f = fetch_new(st, n);
    if (!f) {
        send_end(st, conn_ep(conn), m->id, UINT32_MAX, -ENOMEM);
        return;
    }
    f->conn = conn;
    f->cid = m->id;
    f->ns = conn->ns;
    /* The peer gets: namespace, then the keys as they came. */
    body[0] = (uint8_t)strlen(ns);
    memcpy(body + 1, ns, body[0]);
    blen = 1u + body[0];
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *k;
        uint32_t kl;

        ret = kvs_smsg_rd_key(&rd, &k, &kl);
        if (ret)
            break;
        memcpy(f->blk[i].key, k, kl);
        f->blk[i].key_len = (uint8_t)kl;
        body[blen] = (uint8_t)kl;
        memcpy(body + blen + 1, k, kl);
        blen += 1 + kl;
    }
    if (!ret)
        ret = link_get(st, peer, &l);
    if (ret) {
        for (uint32_t i = 0; i < n; i++)
            dblk_fail(st, f, i, ret);
        fetch_free_if_done(st, f);
        return;
    }
    f->link = l;
    out = *m;
    out.id = f->id;
    out.str_len = 0;
    if (link_send(st, l, &out, body, blen))
        l->dead = true; /* failed by the next tick */
}

/* ------------------------------------------------------------------ */
/* Messages from a peer link. */

static void link_fetch(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m)
{
    char ns[KVS_NS_NAME_MAX + 1];
    kvs_smsg_rd_t rd;
    uint32_t nsid;

    kvs_smsg_rd_init(&rd, m);
    if (rd.left < 1 || rd.p[0] < 1 || rd.p[0] + 1u > rd.left ||
        m->nparts < 1 || m->nparts > KVS_WIRE_KEYS_MAX) {
        send_end(st, link_ep(l), m->id, UINT32_MAX, KVS_EPROTO);
        return;
    }
    memcpy(ns, rd.p + 1, rd.p[0]);
    ns[rd.p[0]] = '\0';
    rd.left -= rd.p[0] + 1u;
    rd.p += rd.p[0] + 1u;
    if (kvs_store_ns_open(st->srv->store, ns, 0, &nsid)) {
        send_end(st, link_ep(l), m->id, UINT32_MAX, KVS_ENOTFOUND);
        return;
    }
    for (uint32_t i = 0; i < m->nparts; i++) {
        const uint8_t *k;
        uint32_t kl;
        src_t *s;

        if (kvs_smsg_rd_key(&rd, &k, &kl)) {
            send_end(st, link_ep(l), m->id, i, KVS_EPROTO);
            continue;
        }
        s = src_new(st, l, m->id, i, nsid, k, kl, m->len);
        if (!s)
            send_end(st, link_ep(l), m->id, i, -ENOMEM);
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->link == l && s->id == m->id && !s->began)
            src_pump(st, s);
    }
}

static void link_push(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m)
{
    char ns[KVS_NS_NAME_MAX + 1];
    kvs_smsg_rd_t rd;
    const uint8_t *k;
    uint32_t kl, nsid;
    fetch_t *f;
    int ret;

    /* str_len bytes of namespace, then (u8 len, key), then lens. */
    if (m->str_len < 1 || m->str_len > KVS_NS_NAME_MAX) {
        send_end(st, link_ep(l), m->id, 0, KVS_EPROTO);
        return;
    }
    memcpy(ns, m->body, m->str_len);
    ns[m->str_len] = '\0';
    kvs_smsg_rd_init(&rd, m);
    if (kvs_smsg_rd_key(&rd, &k, &kl) ||
        kvs_store_ns_open(st->srv->store, ns, 0, &nsid)) {
        send_end(st, link_ep(l), m->id, 0, KVS_EPROTO);
        return;
    }
    f = fetch_new(st, 1);
    if (!f) {
        send_end(st, link_ep(l), m->id, 0, -ENOMEM);
        return;
    }
    f->push = true;
    f->cid = m->id;
    f->link = l;
    f->ns = nsid;
    memcpy(f->blk[0].key, k, kl);
    f->blk[0].key_len = (uint8_t)kl;
    ret = dblk_open(st, f, 0, m, &rd, (uint8_t)m->block, m->part);
    if (ret)
        dblk_fail(st, f, 0, ret);
    fetch_free_if_done(st, f);
}

/* Our fetches are known by our id; a peer's pushes by the peer's. */
static fetch_t *fetch_on_link(kvs_srvstream_t *st, link_t *l, uint64_t id)
{
    for (fetch_t *f = st->fetches; f; f = f->next)
        if (f->link == l && (f->push ? f->cid : f->id) == id)
            return f;
    return NULL;
}

static ucs_status_t link_msg(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                             void *data, size_t len, bool rndv)
{
    kvs_smsg_rd_t rd;
    fetch_t *f;

    l->last_rx_ns = kvs_clock_mono_ns();
    if (m->op != KVS_OP_PING)
        kvs_debug("peer %s: op %u id %llu block %u part %u status %d",
                  l->name, m->op, (unsigned long long)m->id, m->block,
                  m->part, m->status);
    switch (m->op) {
    case KVS_OP_PING:
        return UCS_OK;
    case KVS_OP_FETCH:
        link_fetch(st, l, m);
        return UCS_OK;
    case KVS_OP_PUSH:
        link_push(st, l, m);
        return UCS_OK;
    case KVS_OP_CANCEL:
        for (src_t *s = st->srcs, *next; s; s = next) {
            next = s->next;
            if (s->link == l && s->id == m->id) {
                s->put = NULL;
                src_end(st, s, KVS_EPEER);
            }
        }
        return UCS_OK;
    case KVS_OP_BLOCK:
        f = fetch_on_link(st, l, m->id);
        if (f && m->block < f->nblocks && !f->push) {
            int ret;

            kvs_smsg_rd_init(&rd, m);
            ret = dblk_open(st, f, m->block, m, &rd, 0, 0);
            if (ret)
                dblk_fail(st, f, m->block, ret);
            fetch_free_if_done(st, f);
        }
        return UCS_OK;
    case KVS_OP_PART: {
        dblk_t *b;
        void *dst;

        f = fetch_on_link(st, l, m->id);
        if (!f || m->block >= f->nblocks)
            return UCS_OK;
        b = &f->blk[m->block];
        if (b->state != B_OPEN || b->status || m->part >= b->nparts ||
            b->got[m->part] || m->len != len || len != b->lens[m->part]) {
            dblk_fail(st, f, m->block, KVS_EPROTO);
            fetch_free_if_done(st, f);
            return UCS_OK;
        }
        dst = part_buf(st->srv, &b->ps, m->part);
        b->inflight++;
        return rx_start(st, NULL, f, m->block, m->part, dst, data, len, rndv);
    }
    case KVS_OP_END:
        f = fetch_on_link(st, l, m->id);
        if (f && !f->push) {
            if (m->block == UINT32_MAX) {
                for (uint32_t i = 0; i < f->nblocks; i++)
                    dblk_fail(st, f, i, m->status ? m->status : KVS_EPROTO);
            } else if (m->block < f->nblocks) {
                if (m->status)
                    dblk_fail(st, f, m->block, m->status);
                else
                    f->blk[m->block].remote_end = true;
                dblk_try_finish(st, f, m->block);
            }
            fetch_free_if_done(st, f);
            return UCS_OK;
        }
        if (f && f->push) {
            if (m->status)
                dblk_fail(st, f, 0, m->status);
            else
                f->blk[0].remote_end = true;
            dblk_try_finish(st, f, 0);
            fetch_free_if_done(st, f);
            return UCS_OK;
        }
        /* The result of one of our pushes. */
        for (sput_t *p = st->sputs; p; p = p->next)
            if (p->push_wait && p->push_id == m->id) {
                p->push_wait = false;
                p->push_status = m->status;
                sput_reply(st, p);
                sput_free_if_idle(st, p);
                break;
            }
        return UCS_OK;
    default:
        return UCS_OK;
    }
}

/* HELLO answered (and the bulk endpoint, if any, bound): what was held
 * back goes out. */
static void link_ready(kvs_srvstream_t *st, link_t *l)
{
    l->ready = true;
    while (l->pend_head) {
        pend_t *p = l->pend_head;

        l->pend_head = p->next;
        link_send(st, l, &p->m, p->body, p->blen);
        free(p);
    }
    l->pend_tail = NULL;
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->link == l)
            src_pump(st, s);
    }
}

/* ------------------------------------------------------------------ */
/* The AM handler. */

/* A peer's HELLO (KVS_WIRE_FEAT_PEER) was accepted on conn (handler.c
 * checked the secret): from now on conn carries an inbound link. */
int kvs_srvstream_peer_accept(kvs_server_t *srv, kvs_conn_t *conn)
{
    kvs_srvstream_t *st = S(srv);
    link_t *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    snprintf(l->name, sizeof(l->name), "conn-%llu",
             (unsigned long long)conn->id);
    l->conn = conn;
    l->ready = true;
    l->last_rx_ns = l->last_tx_ns = kvs_clock_mono_ns();
    l->next = st->links;
    st->links = l;
    return 0;
}

/* The answer to an outbound link's HELLO. */
static void link_hello_rep(kvs_srvstream_t *st, link_t *l,
                           const kvs_wire_msg_t *w)
{
    if (w->hdr.status) {
        kvs_warn("peer %s refused the link: %s", l->name,
                 kvs_strerror(w->hdr.status));
        l->dead = true;
        l->fail_status = w->hdr.status;
        return;
    }
    if (l->ready || l->bind_req)
        return;
    if (w->u.hello_rep.features & KVS_WIRE_FEAT_BULK)
        link_bulk(st, l, w->u.hello_rep.session, w->u.hello_rep.bind_secret,
                  w->u.hello_rep.bulk_port);
    if (!l->bind_req)
        link_ready(st, l);
}

ucs_status_t kvs_srvstream_link_rx(kvs_server_t *srv, ucp_ep_h ep,
                                   const kvs_wire_msg_t *w, void *data,
                                   size_t len, bool rndv)
{
    kvs_srvstream_t *st = S(srv);
    link_t *l = st ? link_by_ep(st, ep) : NULL;
    kvs_smsg_t m;

    if (!l)
        return UCS_OK;
    if (w->hdr.opcode == KVS_OP_HELLO && (w->hdr.flags & KVS_WIRE_F_REPLY)) {
        l->last_rx_ns = kvs_clock_mono_ns();
        link_hello_rep(st, l, w);
        return UCS_OK;
    }
    if (!kvs_wire_op_is_stream(w->hdr.opcode))
        return UCS_OK;
    kvs_smsg_from_wire(w, &m);
    return link_msg(st, l, &m, data, len, rndv);
}

ucs_status_t kvs_srvstream_rx(kvs_server_t *srv, kvs_conn_t *conn,
                              const kvs_wire_msg_t *w, void *data,
                              size_t len, bool rndv)
{
    kvs_srvstream_t *st = S(srv);
    kvs_smsg_t m;
    link_t *l;

    kvs_smsg_from_wire(w, &m);
    l = link_by_conn(st, conn);
    if (l)
        return link_msg(st, l, &m, data, len, rndv);
    if (conn->features & KVS_WIRE_FEAT_PEER)
        return UCS_OK; /* its link failed already */
    switch (m.op) {
    case KVS_OP_SPUT_BEGIN:
        sput_begin(st, conn, &m);
        return UCS_OK;
    case KVS_OP_SPUT_PART:
        return sput_part(st, conn, &m, data, len, rndv);
    case KVS_OP_SPUT_SEAL:
    case KVS_OP_SPUT_ABORT: {
        sput_t *p = sput_find(st, conn, m.id);

        if (!p) {
            /* Failed at begin and already answered, or unknown. */
            for (p = st->sputs; p; p = p->next)
                if (p->conn == conn && p->cid == m.id)
                    break;
            if (!p) {
                kvs_smsg_t r = {.op = KVS_OP_SPUT_DONE, .id = m.id,
                                .status = KVS_ENOTFOUND};
                smsg_send(st, conn->ep, &r, NULL, 0, NULL, 0, NULL, NULL,
                          NULL);
            }
            return UCS_OK;
        }
        if (m.op == KVS_OP_SPUT_SEAL) {
            p->seal_req = true;
        } else {
            p->abort_req = true;
            if (!p->status)
                p->status = KVS_EINCOMPLETE;
        }
        sput_maybe_finish(st, p);
        return UCS_OK;
    }
    case KVS_OP_FETCH:
        fetch_start(st, conn, &m);
        return UCS_OK;
    case KVS_OP_CANCEL:
        for (fetch_t *f = st->fetches, *next; f; f = next) {
            next = f->next;
            if (f->conn != conn || f->cid != m.id)
                continue;
            f->conn = NULL;
            if (f->link) {
                kvs_smsg_t c = {.op = KVS_OP_CANCEL, .id = f->id};
                link_send(st, f->link, &c, NULL, 0);
            }
            for (uint32_t i = 0; i < f->nblocks; i++)
                dblk_fail(st, f, i, KVS_EPEER);
            fetch_free_if_done(st, f);
        }
        return UCS_OK;
    default:
        return UCS_OK;
    }
}

/* ------------------------------------------------------------------ */
/* Failure and timers. */

static void link_close_ep(kvs_srvstream_t *st, link_t *l)
{
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_EP_CLOSE_FLAG_FORCE,
    };
    ucs_status_ptr_t sp;

    if (l->closed)
        return;
    l->closed = true;
    if (l->outbound && l->bulk_ep) {
        stx_orphan_ep(st, l->bulk_ep);
        sp = ucp_ep_close_nbx(l->bulk_ep, &prm);
        if (UCS_PTR_IS_PTR(sp))
            ucp_request_free(sp);
        l->bulk_ep = NULL;
    }
    if (l->outbound && l->ep) {
        sp = ucp_ep_close_nbx(l->ep, &prm);
        if (UCS_PTR_IS_PTR(sp))
            ucp_request_free(sp);
    } else if (l->conn) {
        l->conn->peer_failed = true;
        kvs_server_conn_close(l->conn);
    }
}

/* Fails every block not yet complete on l. */
static void link_fail(kvs_srvstream_t *st, link_t *l, int status)
{
    l->dead = true;
    kvs_warn("peer %s: link failed (%s): failing its incomplete blocks",
             l->name, kvs_strerror(status));
    for (fetch_t *f = st->fetches, *next; f; f = next) {
        next = f->next;
        if (f->link != l)
            continue;
        for (uint32_t i = 0; i < f->nblocks; i++)
            if (!f->blk[i].remote_end)
                dblk_fail(st, f, i, status);
        fetch_free_if_done(st, f);
    }
    /* Sources on l: ended first, then the puts they held back may finish,
     * then the idle ones are freed (finishing a put ends its other
     * followers, so nothing is freed while the list is being walked). */
    for (src_t *s = st->srcs; s; s = s->next) {
        if (s->link != l)
            continue;
        if (s->put && s->put->push_src == s) {
            s->put->push_wait = false;
            s->put->push_status = status;
        }
        s->ended = true;
    }
    for (sput_t *p = st->sputs, *next; p; p = next) {
        next = p->next;
        sput_maybe_finish(st, p);
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        src_free_if_idle(st, s);
    }
    link_close_ep(st, l);
}

void kvs_srvstream_tick(kvs_server_t *srv, uint64_t now)
{
    kvs_srvstream_t *st = S(srv);
    uint64_t ping_ns = st->timeout_ns / 4;

    while (st->stx_failed) {
        stx_t *t = st->stx_failed;

        st->stx_failed = t->next;
        stx_put(st, t, KVS_EPEER);
    }
    for (link_t *l = st->links; l; l = l->next) {
        if (l->closed)
            continue;
        if (!l->dead && now - l->last_rx_ns > st->timeout_ns) {
            l->dead = true;
            l->fail_status = KVS_EPEER;
            kvs_warn("peer %s: silent for %llu ms", l->name,
                     (unsigned long long)((now - l->last_rx_ns) / 1000000));
        }
        if (l->dead) {
            link_fail(st, l, l->fail_status ? l->fail_status : KVS_EPEER);
            continue;
        }
        if (l->ready && now - l->last_tx_ns > ping_ns) {
            kvs_smsg_t m = {.op = KVS_OP_PING};

            link_send(st, l, &m, NULL, 0);
        }
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (!s->began && !s->ended)
            src_pump(st, s);
    }
}

void kvs_srvstream_conn_closed(kvs_server_t *srv, kvs_conn_t *conn)
{
    kvs_srvstream_t *st = S(srv);
    link_t *l;

    if (!st)
        return;
    if (conn->bulk)
        stx_orphan_ep(st, conn->bulk->ep);
    for (sput_t *p = st->sputs, *next; p; p = next) {
        next = p->next;
        if (p->conn != conn)
            continue;
        p->conn = NULL;
        if (!p->finished && !p->seal_req) {
            p->abort_req = true;
            p->status = KVS_EPEER;
        }
        sput_maybe_finish(st, p);
    }
    for (fetch_t *f = st->fetches, *next; f; f = next) {
        next = f->next;
        if (f->conn != conn)
            continue;
        f->conn = NULL;
        if (f->link) {
            kvs_smsg_t c = {.op = KVS_OP_CANCEL, .id = f->id};
            link_send(st, f->link, &c, NULL, 0);
        }
        for (uint32_t i = 0; i < f->nblocks; i++) {
            f->blk[i].told = true;
            dblk_fail(st, f, i, KVS_EPEER);
        }
        fetch_free_if_done(st, f);
    }
    l = link_by_conn(st, conn);
    if (l) {
        l->closed = true; /* the conn is going already */
        link_fail(st, l, KVS_EPEER);
        l->conn = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* Lifecycle. */

static int parse_peers(kvs_srvstream_t *st, const char *list)
{
    char buf[4096], *save = NULL;

    if (!list || !*list)
        return 0;
    if (strlen(list) >= sizeof(buf))
        return KVS_ECONFIG;
    strcpy(buf, list);
    for (char *tok = strtok_r(buf, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(tok, '=');
        peer_cfg_t *p;

        if (!eq || eq == tok || st->npeers == PEERS_MAX ||
            (size_t)(eq - tok) >= sizeof(p->name)) {
            kvs_error("peers: '%s' is not name=ip:port", tok);
            return KVS_ECONFIG;
        }
        p = &st->peers[st->npeers];
        *eq = '\0';
        snprintf(p->name, sizeof(p->name), "%s", tok);
        if (parse_hostport(eq + 1, p->addr, sizeof(p->addr), &p->port)) {
            kvs_error("peers: '%s' is not ip:port", eq + 1);
            return KVS_ECONFIG;
        }
        st->npeers++;
    }
    return 0;
}

int kvs_srvstream_create(kvs_server_t *srv)
{
    kvs_srvstream_t *st = calloc(1, sizeof(*st));
    int ret;

    if (!st)
        return -ENOMEM;
    st->srv = srv;
    st->timeout_ns = (uint64_t)(srv->cfg.peer_timeout_ms ?
                                srv->cfg.peer_timeout_ms : 5000) * 1000000ull;
    srv->stream = st;
    ret = parse_peers(st, srv->cfg.peers);
    if (ret)
        return ret;
    if (st->npeers)
        kvs_info("%zu peers configured; peer timeout %llu ms", st->npeers,
                 (unsigned long long)(st->timeout_ns / 1000000));
    return 0;
}

void kvs_srvstream_stop(kvs_server_t *srv)
{
    kvs_srvstream_t *st = S(srv);

    if (!st)
        return;
    for (link_t *l = st->links; l; l = l->next)
        if (l->outbound && !l->closed)
            link_fail(st, l, KVS_EPEER);
}

void kvs_srvstream_destroy(kvs_server_t *srv)
{
    kvs_srvstream_t *st = S(srv);

    if (!st)
        return;
    while (st->srcs) {
        src_t *s = st->srcs;

        st->srcs = s->next;
        if (s->has_view)
            kvs_store_unpin_view(srv->store, &s->view);
        free(s);
    }
    while (st->sputs) {
        sput_t *p = st->sputs;

        st->sputs = p->next;
        if (!p->finished)
            kvs_store_put_abort(srv->store, &p->ps);
        free(p->lens);
        free(p->offs);
        free(p->done);
        free(p);
    }
    while (st->fetches) {
        fetch_t *f = st->fetches;

        st->fetches = f->next;
        for (uint32_t i = 0; i < f->nblocks; i++) {
            if (f->blk[i].put_open)
                kvs_store_put_abort(srv->store, &f->blk[i].ps);
            free(f->blk[i].lens);
            free(f->blk[i].offs);
            free(f->blk[i].got);
        }
        free(f);
    }
    while (st->links) {
        link_t *l = st->links;

        st->links = l->next;
        while (l->pend_head) {
            pend_t *p = l->pend_head;

            l->pend_head = p->next;
            free(p);
        }
        free(l);
    }
    while (st->stx_free) {
        stx_t *t = st->stx_free;

        st->stx_free = t->next;
        free(t);
    }
    /* The worker is gone (kvs_server_destroy), so UCX calls back no more. */
    while (st->stx_orphans) {
        stx_t *t = st->stx_orphans;

        st->stx_orphans = t->lnext;
        free(t);
    }
    free(st);
    srv->stream = NULL;
}
