/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Peer links: outbound links opened on first use (the peer form of HELLO,
 * then a bulk endpoint when the peer is on this host), inbound links
 * accepted by handler.c, the stream opcodes that arrive on a link, and a
 * link's failure. docs/protocol.md section 9.3.
 */
#include "transport/server/stream_int.h"

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
            local =
                ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr ==
                ((const struct sockaddr_in *)ss)->sin_addr.s_addr;
        else
            local =
                !memcmp(&((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                        &((const struct sockaddr_in6 *)ss)->sin6_addr,
                        sizeof(struct in6_addr));
    }
    freeifaddrs(ifs);
    return local;
}

/* The BIND went out, so the bulk endpoint is wired up: the link is ready.
 * (UCX 1.13 asserts in its rendezvous code when a large send is queued on
 * an endpoint that is still being wired up, so nothing else goes before.) */
static void bulk_send_cb(void *request, ucs_status_t status, void *user_data)
{
    kvs_srvstream_t *st = user_data;

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
            kvs_peer_ready(st, l);
        break;
    }
}

/* The peer answered HELLO with its bulk port and a BIND secret for the
 * connection it sees us as (m->part, m->off, m->id). Connects a second
 * endpoint without peer error handling, so that part bytes move by CMA,
 * and binds it exactly as a client does (KVS_OP_BIND). Best effort: on
 * any failure the link keeps using its control endpoint. */
void kvs_peer_bulk(kvs_srvstream_t *st, link_t *l, uint64_t session,
                   uint64_t secret, uint32_t port)
{
    struct sockaddr_storage ss = l->ss;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS |
                        UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = bulk_send_cb,
        .user_data = st,
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
    if (kvs_ucx_connect(st->worker, &ss, false, NULL, NULL, &l->bulk_ep) != 0)
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
int kvs_peer_get(kvs_srvstream_t *st, const char *peer, link_t **out)
{
    const char *secret = st->secret;
    char addr[64];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    link_t *l;
    kvs_wire_msg_t h;
    uint8_t
        frame[KVS_WIRE_HDR_SIZE + KVS_WIRE_HELLO_FIXED + KVS_WIRE_TOKEN_MAX];
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
    if (!addr[0] && st->resolve &&
        st->resolve(st->resolve_arg, peer, addr, sizeof(addr), &port) != 0)
        addr[0] = '\0';
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
    if (kvs_ucx_connect(st->worker, &ss, true, link_err_cb, l, &l->ep) != 0) {
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
                         KVS_WIRE_FEAT_BULK | KVS_WIRE_FEAT_PART_RUN;
    h.u.hello.token.data = (const uint8_t *)secret;
    h.u.hello.token.len = (uint32_t)strlen(secret);
    ret = kvs_wire_encode(&h, frame, sizeof(frame), &flen);
    if (ret == 0)
        ret = kvs_srvstream_send(st, l->ep, NULL, frame, flen, NULL, 0, NULL,
                                 NULL, NULL);
    kvs_info("peer %s: connecting to %s port %u", peer, addr, port);
    if (ret)
        return ret;
    *out = l;
    return 0;
}

link_t *kvs_peer_by_conn(kvs_srvstream_t *st, kvs_conn_t *conn)
{
    for (link_t *l = st->links; l; l = l->next)
        if (!l->outbound && l->conn == conn && !l->closed)
            return l;
    return NULL;
}

link_t *kvs_peer_by_ep(kvs_srvstream_t *st, ucp_ep_h ep)
{
    for (link_t *l = st->links; l; l = l->next)
        if (l->outbound && !l->closed && (l->ep == ep || l->bulk_ep == ep))
            return l;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Messages from a peer link. */

static void link_fetch(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m)
{
    char ns[KVS_NS_NAME_MAX + 1];
    kvs_smsg_rd_t rd;
    uint32_t nsid;

    kvs_smsg_rd_init(&rd, m);
    if (rd.left < 1 || rd.p[0] < 1 || rd.p[0] + 1u > rd.left || m->nparts < 1 ||
        m->nparts > KVS_WIRE_KEYS_MAX) {
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, UINT32_MAX,
                               KVS_EPROTO);
        return;
    }
    memcpy(ns, rd.p + 1, rd.p[0]);
    ns[rd.p[0]] = '\0';
    rd.left -= rd.p[0] + 1u;
    rd.p += rd.p[0] + 1u;
    if (kvs_store_ns_open(st->store, ns, 0, &nsid)) {
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, UINT32_MAX,
                               KVS_ENOTFOUND);
        return;
    }
    for (uint32_t i = 0; i < m->nparts; i++) {
        const uint8_t *k;
        uint32_t kl;
        src_t *s;

        if (kvs_smsg_rd_key(&rd, &k, &kl)) {
            kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, i,
                                   KVS_EPROTO);
            continue;
        }
        s = kvs_source_new(st, l, m->id, i, nsid, k, kl, m->len);
        if (!s)
            kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, i,
                                   -ENOMEM);
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->link == l && s->id == m->id && !s->began)
            kvs_source_pump(st, s);
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
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, 0,
                               KVS_EPROTO);
        return;
    }
    memcpy(ns, m->body, m->str_len);
    ns[m->str_len] = '\0';
    kvs_smsg_rd_init(&rd, m);
    if (kvs_smsg_rd_key(&rd, &k, &kl) ||
        kvs_store_ns_open(st->store, ns, 0, &nsid)) {
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, 0,
                               KVS_EPROTO);
        return;
    }
    f = kvs_fetch_new(st, 1);
    if (!f) {
        kvs_srvstream_send_end(st, kvs_srvstream_link_ep(l), m->id, 0, -ENOMEM);
        return;
    }
    f->push = true;
    f->cid = m->id;
    f->link = l;
    f->ns = nsid;
    memcpy(f->blk[0].key, k, kl);
    f->blk[0].key_len = (uint8_t)kl;
    ret = kvs_fetch_blk_open(st, f, 0, m, &rd, (uint8_t)m->block, m->part);
    if (ret)
        kvs_fetch_blk_fail(st, f, 0, ret);
    kvs_fetch_free_if_done(st, f);
}

/* Our fetches are known by our id; a peer's pushes by the peer's. */
static fetch_t *fetch_on_link(kvs_srvstream_t *st, link_t *l, uint64_t id)
{
    for (fetch_t *f = st->fetches; f; f = f->next)
        if (f->link == l && (f->push ? f->cid : f->id) == id)
            return f;
    return NULL;
}

ucs_status_t kvs_peer_msg(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                          void *data, size_t len, bool rndv)
{
    kvs_smsg_rd_t rd;
    fetch_t *f;

    l->last_rx_ns = kvs_clock_mono_ns();
    if (m->op != KVS_OP_PING)
        kvs_debug("peer %s: op %u id %llu block %u part %u status %d", l->name,
                  m->op, (unsigned long long)m->id, m->block, m->part,
                  m->status);
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
                kvs_source_end(st, s, KVS_EPEER);
            }
        }
        return UCS_OK;
    case KVS_OP_BLOCK:
        f = fetch_on_link(st, l, m->id);
        if (f && m->block < f->nblocks && !f->push) {
            int ret;

            kvs_smsg_rd_init(&rd, m);
            ret = kvs_fetch_blk_open(st, f, m->block, m, &rd, 0, 0);
            if (ret)
                kvs_fetch_blk_fail(st, f, m->block, ret);
            kvs_fetch_free_if_done(st, f);
        }
        return UCS_OK;
    case KVS_OP_PART: {
        uint32_t n;
        dblk_t *b;
        void *dst;

        f = fetch_on_link(st, l, m->id);
        if (!f || m->block >= f->nblocks)
            return UCS_OK;
        b = &f->blk[m->block];
        /* One part, or a run of n back to back (FEAT_PART_RUN). */
        n = b->state == B_OPEN && !b->status
                ? kvs_smsg_part_run(m, b->nparts, b->lens, b->got, len)
                : 0;
        if (!n) {
            kvs_fetch_blk_fail(st, f, m->block, KVS_EPROTO);
            kvs_fetch_free_if_done(st, f);
            return UCS_OK;
        }
        dst = part_buf(st, &b->ps, b->offs, m->part);
        b->inflight += n;
        return kvs_srvstream_rx_start(st, NULL, f, m->block, m->part, n, dst,
                                      data, len, rndv);
    }
    case KVS_OP_END:
        f = fetch_on_link(st, l, m->id);
        if (f && !f->push) {
            if (m->block == UINT32_MAX) {
                for (uint32_t i = 0; i < f->nblocks; i++)
                    kvs_fetch_blk_fail(st, f, i,
                                       m->status ? m->status : KVS_EPROTO);
            } else if (m->block < f->nblocks) {
                if (m->status)
                    kvs_fetch_blk_fail(st, f, m->block, m->status);
                else
                    kvs_fetch_blk_remote_end(&f->blk[m->block], m);
                kvs_fetch_blk_try_finish(st, f, m->block);
            }
            kvs_fetch_free_if_done(st, f);
            return UCS_OK;
        }
        if (f && f->push) {
            if (m->status)
                kvs_fetch_blk_fail(st, f, 0, m->status);
            else
                kvs_fetch_blk_remote_end(&f->blk[0], m);
            kvs_fetch_blk_try_finish(st, f, 0);
            kvs_fetch_free_if_done(st, f);
            return UCS_OK;
        }
        /* The result of one of our pushes. */
        for (sput_t *p = st->sputs; p; p = p->next)
            if (p->push_wait && p->push_id == m->id) {
                p->push_wait = false;
                p->push_status = m->status;
                kvs_sput_reply(st, p);
                kvs_sput_free_if_idle(st, p);
                break;
            }
        return UCS_OK;
    default:
        return UCS_OK;
    }
}

/* HELLO answered (and the bulk endpoint, if any, bound): what was held
 * back goes out. */
void kvs_peer_ready(kvs_srvstream_t *st, link_t *l)
{
    l->ready = true;
    while (l->pend_head) {
        pend_t *p = l->pend_head;

        l->pend_head = p->next;
        kvs_srvstream_link_send(st, l, &p->m, p->body, p->blen);
        free(p);
    }
    l->pend_tail = NULL;
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        if (s->link == l)
            kvs_source_pump(st, s);
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
        kvs_srvstream_stx_orphan_ep(st, l->bulk_ep);
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
        kvs_conn_close(l->conn);
    }
}

/* Fails every block not yet complete on l. */
void kvs_peer_fail(kvs_srvstream_t *st, link_t *l, int status)
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
                kvs_fetch_blk_fail(st, f, i, status);
        kvs_fetch_free_if_done(st, f);
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
        kvs_sput_maybe_finish(st, p);
    }
    for (src_t *s = st->srcs, *next; s; s = next) {
        next = s->next;
        kvs_source_free_if_idle(st, s);
    }
    link_close_ep(st, l);
}
/* ------------------------------------------------------------------ */
/* The configured peers. */

int kvs_peer_parse(kvs_srvstream_t *st, const char *list)
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
