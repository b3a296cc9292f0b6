/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The opcode table: one { .name, .feature, .handle } entry per request the
 * daemon serves, checked at start-up (kvs_handler_check), each handler
 * calling kvstore/store.h and answering with one reply.
 *
 * Tenancy is enforced here and only here. A connection's tenant comes from
 * the token it presented in HELLO; its namespace is usable only if the
 * tenant is allowed it (conn->ns_ok). On a namespace the tenant may not use,
 * every operation answers exactly what it would answer if the namespace were
 * empty: reads miss (KVS_ENOTFOUND, nothing present, a match of 0), DELETE,
 * PIN and UNPIN find nothing (KVS_ENOTFOUND), and a PUT, which would store
 * something, is refused with -EACCES, whatever the namespace holds. The
 * store is not consulted, so nothing about another tenant's blocks can be
 * learnt, not even through timing of a lookup.
 */
#include "transport/server/server_int.h"
#include "transport/server/shm.h"
#include "transport/server/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/debug.h"
#include "common/log.h"
#include "kvstash/kvstash.h"

typedef void (*handle_fn)(kvs_server_t *srv, kvs_conn_t *conn,
                          kvs_wire_msg_t *m, const uint8_t *payload);

/* A stream opcode's handler: also gets the AM data (part bytes), and
 * returns UCS_INPROGRESS when it keeps the data descriptor. */
typedef ucs_status_t (*stream_fn)(kvs_server_t *srv, kvs_conn_t *conn,
                                  const kvs_wire_msg_t *m, void *data,
                                  size_t len, bool rndv);

/* One entry per opcode: a request handler, or (stream opcodes, which have
 * no reply of their own) a stream handler. */
typedef struct opdef {
    const char *name;
    uint32_t feature; /* KVS_WIRE_FEAT_* it needs; 0: none */
    handle_fn handle;
    stream_fn stream;
} opdef_t;

static kvs_wire_msg_t reply_to(const kvs_wire_msg_t *req, uint32_t count)
{
    return kvs_reply_to(&req->hdr, count);
}

static void fill_keys(kvs_server_t *srv, const kvs_wire_msg_t *m)
{
    for (uint32_t i = 0; i < m->hdr.count; i++) {
        srv->keys[i].data = m->u.keys.keys[i].data;
        srv->keys[i].len = m->u.keys.keys[i].len;
    }
}

/* Tokens are compared in time that does not depend on where they differ. */
static bool token_eq(const char *want, const kvs_wire_bytes_t *got)
{
    size_t wl = strlen(want);
    unsigned diff = (unsigned)(wl ^ got->len);

    for (size_t i = 0; i < got->len; i++)
        diff |= (unsigned)(got->data[i] ^ (uint8_t)want[i < wl ? i : 0]);
    return diff == 0 && wl > 0;
}

/* Laptop mode: one tenant, which is also the operator. */
static const kvs_tenant_t open_tenant = {
    .name = "default", .all_ns = true, .is_operator = true};

const kvs_tenant_t *kvs_handler_tenant_find(const kvs_server_config_t *cfg,
                                            const kvs_wire_bytes_t *token)
{
    const kvs_tenant_t *tenant = NULL;

    if (cfg->ntenants == 0)
        return &open_tenant;
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (token_eq(cfg->tenants[i].token, token))
            tenant = &cfg->tenants[i];
    return tenant;
}

bool kvs_handler_ns_allowed(const kvs_tenant_t *t, const kvs_wire_bytes_t *ns)
{
    if (t->all_ns)
        return true;
    for (size_t i = 0; i < t->nnamespaces; i++)
        if (strlen(t->namespaces[i]) == ns->len &&
            memcmp(t->namespaces[i], ns->data, ns->len) == 0)
            return true;
    return false;
}

/* The HELLO reply's limits, the same for clients and peers. */
static kvs_wire_msg_t hello_reply(kvs_server_t *srv, kvs_conn_t *conn,
                                  const kvs_wire_msg_t *m)
{
    kvs_wire_msg_t r = reply_to(m, 0);

    r.u.hello_rep.max_body = srv->cfg.max_body;
    r.u.hello_rep.max_payload = srv->cfg.max_payload;
    r.u.hello_rep.max_inflight = srv->cfg.max_inflight;
    r.u.hello_rep.max_keys = srv->cfg.max_keys;
    r.u.hello_rep.lease_max_ms = srv->cfg.lease_max_ms;
    r.u.hello_rep.session = conn->session;
    r.u.hello_rep.features = conn->features;
    if (conn->features & KVS_WIRE_FEAT_BULK) {
        r.u.hello_rep.bind_secret = conn->bind_secret;
        r.u.hello_rep.bulk_port = srv->bulk_port;
    }
    return r;
}

/* Thread 0, for a client that can move (MOVE): the port of the serving
 * thread its connection should be on, round robin over all of them; 0
 * when that is this one, or one whose loop has failed. */
static uint32_t move_port(kvs_server_t *srv)
{
    uint32_t k;

    if (srv->primary || !srv->nworkers)
        return 0;
    k = srv->next_worker++ % (srv->nworkers + 1);
    if (!k || atomic_load(&srv->workers[k - 1]->dead))
        return 0;
    srv->conns_moved++;
    return srv->workers[k - 1]->port;
}

/* The peer form of HELLO: a daemon opening a link (docs/protocol.md 9.3).
 * The token is the shared peer secret; the link has no tenant and no
 * namespace of its own (each FETCH or PUSH names one). A peer on this
 * host may bind a bulk endpoint, as a client does. */
static void hello_peer(kvs_server_t *srv, kvs_conn_t *conn,
                       const kvs_wire_msg_t *m)
{
    kvs_wire_msg_t r;
    int ret;

    /* So that even the refusal below reaches the peer. */
    kvs_conn_set_peer_form(conn);
    if (!srv->stream) {
        /* Links are thread 0's; a peer never learns another port. */
        kvs_warn("conn %llu: peer link on serving thread %u refused: links "
                 "connect to the daemon's port; closing",
                 (unsigned long long)conn->id, srv->index);
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, true);
        return;
    }
    if (!srv->cfg.peer_secret ||
        !token_eq(srv->cfg.peer_secret, &m->u.hello.token)) {
        srv->auth_failures++;
        kvs_warn("conn %llu: peer link refused: bad secret; closing",
                 (unsigned long long)conn->id);
        kvs_send_status(srv, conn, &m->hdr, KVS_EAUTH, true);
        return;
    }
    ret = kvs_srvstream_peer_accept(srv->stream, conn, m->u.hello.features);
    if (ret) {
        kvs_send_status(srv, conn, &m->hdr, ret, true);
        return;
    }
    kvs_conn_set_ready(srv, conn, NULL, false, 0,
                       m->u.hello.features &
                           (KVS_WIRE_FEAT_PEER | KVS_WIRE_FEAT_STREAM |
                            KVS_WIRE_FEAT_BULK | KVS_WIRE_FEAT_PART_RUN));
    r = hello_reply(srv, conn, m);
    kvs_info("conn %llu: peer link accepted", (unsigned long long)conn->id);
    kvs_send_reply(srv, conn, &r);
}

static void op_hello(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                     const uint8_t *payload)
{
    const kvs_tenant_t *tenant = NULL;
    kvs_wire_msg_t r;
    char ns[KVS_NS_NAME_MAX + 1];
    uint32_t nsid = 0, features, worker_port = 0;
    bool ns_ok;
    int ret;

    (void)payload;
    if (conn->ready) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
        return;
    }
    if (m->u.hello.features & KVS_WIRE_FEAT_PEER) {
        hello_peer(srv, conn, m);
        return;
    }
    tenant = kvs_handler_tenant_find(&srv->cfg, &m->u.hello.token);
    if (!tenant) {
        srv->auth_failures++;
        kvs_info("conn %llu: bad token; closing", (unsigned long long)conn->id);
        kvs_send_status(srv, conn, &m->hdr, KVS_EAUTH, true);
        return;
    }
    memcpy(ns, m->u.hello.ns.data, m->u.hello.ns.len);
    ns[m->u.hello.ns.len] = '\0';
    if (memchr(ns, '\0', m->u.hello.ns.len)) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, true);
        return;
    }
    ns_ok = kvs_handler_ns_allowed(tenant, &m->u.hello.ns);
    if (ns_ok) {
        ret = kvs_store_ns_open(srv->store, ns, m->u.hello.elem_size, &nsid);
        if (ret) {
            kvs_warn("conn %llu: namespace '%s': %s",
                     (unsigned long long)conn->id, ns, kvs_strerror(ret));
            kvs_send_status(srv, conn, &m->hdr, ret, true);
            return;
        }
    }
    features = m->u.hello.features & KVS_WIRE_FEAT_ALL;
    /* SHM is offered only where this tenant could attach (shm.c). */
    if (!kvs_server_root(srv)->shm ||
        !kvs_shm_tenant_allowed(&srv->cfg, tenant))
        features &= ~KVS_WIRE_FEAT_SHM;
    /* Streaming is thread 0's (stream.c), and only it moves clients. */
    if (srv->primary)
        features &= ~KVS_WIRE_FEAT_STREAM;
    if (features & KVS_WIRE_FEAT_MOVE)
        worker_port = move_port(srv);
    if (!worker_port)
        features &= ~KVS_WIRE_FEAT_MOVE;
    kvs_conn_set_ready(srv, conn, tenant, ns_ok, nsid, features);
    /* A connection's life is debug news; a namespace refused is not. */
    kvs_log(ns_ok ? KVS_LOG_DEBUG : KVS_LOG_INFO,
            "conn %llu: tenant %s, namespace '%s'%s",
            (unsigned long long)conn->id, tenant->name, ns,
            ns_ok ? "" : " (not allowed: answered as empty)");
    r = hello_reply(srv, conn, m);
    r.u.hello_rep.worker_port = worker_port;
    kvs_send_reply(srv, conn, &r);
}

void kvs_handler_put_args(const kvs_conn_t *conn, const kvs_wire_put_ent_t *pe,
                          const uint8_t *payload, kvs_put_args_t *a,
                          kvs_iov_t *iovs)
{
    uint64_t off = pe->data_off;

    memset(a, 0, sizeof(*a));
    a->ns = conn->ns;
    a->key = pe->key.data;
    a->key_len = pe->key.len;
    a->parent = pe->parent.data;
    a->parent_len = pe->parent.len;
    a->flags = pe->flags;
    a->cls = pe->cls;
    a->elem_size = pe->elem_size;
    a->ttl_ms = pe->ttl_ms;
    a->group = pe->group;
    a->nparts = pe->nparts;
    a->parts = iovs;
    for (uint32_t j = 0; j < pe->nparts; j++) {
        iovs[j].base = payload ? payload + off : NULL;
        iovs[j].len = pe->part_lens[j];
        off += pe->part_lens[j];
    }
}

/* Bytes in of PUT entries 0..n-1 of m that were stored. */
static void note_put_bytes(kvs_server_t *srv, const kvs_wire_msg_t *m,
                           uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const kvs_wire_put_ent_t *pe = &m->u.put.ents[i];
        uint64_t len = 0;

        for (uint32_t j = 0; srv->status[i] == 0 && j < pe->nparts; j++)
            len += pe->part_lens[j];
        kvs_metrics_note_bytes(
            srv->metrics, KVS_METRICS_IN,
            (pe->flags & KVS_PUT_NO_DRAM) ? KVS_TIER_NVME : KVS_TIER_DRAM, len);
    }
}

static void op_put(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                   const uint8_t *payload)
{
    uint32_t n = m->hdr.count, first = n; /* entries stored here */
    size_t iov = 0;
    kvs_wire_msg_t r = reply_to(m, n);

    r.u.status_rep.status = srv->status;
    /* Refused whatever the namespace holds (docs/protocol.md 8). */
    if (!conn->ns_ok) {
        for (uint32_t i = 0; i < n; i++)
            srv->status[i] = -EACCES;
        kvs_send_reply(srv, conn, &r);
        return;
    }
    /* The decoder checked that the parts add up to the payload, and a body
     * bounds the number of parts below the iov scratch. A durable entry is
     * written to disk before it is answered, and a PUT behind one that
     * waits must wait too (PUTs keep their order): those go to an I/O
     * thread whole. */
    for (uint32_t i = 0; i < n; i++) {
        kvs_handler_put_args(conn, &m->u.put.ents[i], payload, &srv->puts[i],
                             &srv->iovs[iov]);
        srv->puts[i].flags |= KVS_PUT_NO_WAIT;
        if (srv->puts[i].flags & (KVS_PUT_DURABLE | KVS_PUT_NO_DRAM))
            first = 0;
        iov += m->u.put.ents[i].nparts;
    }
    if (conn->dput_head)
        first = 0;
    /* One batch: durable entries share one disk write and one index
     * commit; each entry still gets its own status. Entries that would
     * wait for room in DRAM fail -EWOULDBLOCK, and so does every one after
     * the first of them: those go to an I/O thread, in order. */
    if (first == n) {
        kvs_store_put_batch(srv->store, srv->puts, n, srv->status);
        for (first = 0; first < n && srv->status[first] != -EWOULDBLOCK;)
            first++;
    }
    note_put_bytes(srv, m, first);
    if (first < n) {
        int ret = kvs_diskop_put(srv, conn, m, payload, srv->status, first);

        if (ret == 0)
            return; /* diskop.c replies */
        srv->puts_refused_busy += ret == -EAGAIN;
        for (uint32_t i = first; i < n; i++)
            srv->status[i] = ret;
    }
    kvs_send_reply(srv, conn, &r);
}

/* Serves each block with its own DATA message straight from the arena.
 * Blocks on disk only are read on an I/O thread (diskop.c), which sends
 * them and the reply; those in DRAM go out now. */
static void op_get(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                   const uint8_t *payload)
{
    uint32_t n = m->hdr.count, ndisk = 0;
    kvs_wire_msg_t r = reply_to(m, n);

    (void)payload;
    for (uint32_t i = 0; i < n; i++) {
        const kvs_wire_get_ent_t *ge = &m->u.get.ents[i];
        kvs_wire_block_t *b = &srv->blocks[i];
        uint8_t tier = KVS_TIER_DRAM;
        kvs_tx_t *tx;
        int ret;

        memset(b, 0, sizeof(*b));
        if (!conn->ns_ok) {
            b->status = KVS_ENOTFOUND;
            continue;
        }
        /* DATA the client has not taken yet is bounded per connection
         * (a client that never pulls would pin blocks without end). */
        if (conn->ndata >= srv->cfg.max_inflight_blocks) {
            b->status = -EAGAIN;
            srv->get_throttled++;
            continue;
        }
        tx = kvs_send_tx_get(srv, conn);
        if (!tx) {
            b->status = -ENOMEM;
            continue;
        }
        ret = kvs_store_pin_flags(srv->store, conn->ns, ge->key.data,
                                  ge->key.len, KVS_PIN_GET | KVS_PIN_NO_READ,
                                  &tx->view, &tier);
        if (ret) {
            if (ret == -EWOULDBLOCK)
                srv->idx[ndisk++] = i;
            b->status = ret;
            kvs_send_tx_put(srv, tx);
            continue;
        }
        kvs_send_block(srv, tx, m->hdr.req_id, i, ge->cap, tier, b);
    }
    /* A GET that names a lease ends it: the blocks are now pinned by their
     * own sends, or were not wanted. */
    if (m->u.get.lease_id) {
        for (kvs_lease_t **pp = &conn->leases; *pp; pp = &(*pp)->next) {
            if ((*pp)->id == m->u.get.lease_id) {
                kvs_lease_t *l = *pp;
                *pp = l->next;
                conn->nleases--;
                kvs_conn_lease_free(srv, l);
                break;
            }
        }
    }
    if (ndisk) {
        if (kvs_diskop_get(srv, conn, m, srv->blocks, srv->idx, ndisk) == 0)
            return; /* diskop.c replies */
        for (uint32_t k = 0; k < ndisk; k++)
            srv->blocks[srv->idx[k]].status = -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        srv->get_misses += srv->blocks[i].status != 0;
    r.u.get_rep.blocks = srv->blocks;
    kvs_send_reply(srv, conn, &r);
}

static void op_match(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                     const uint8_t *payload)
{
    uint32_t n = m->hdr.count;
    bool lease = m->u.keys.flags & KVS_WIRE_MATCH_LEASE;
    kvs_wire_msg_t r;
    size_t matched = 0;
    int ret = 0;

    (void)payload;
    if (lease && !(conn->features & KVS_WIRE_FEAT_LEASE)) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
        return;
    }
    if (lease && conn->nleases >= srv->cfg.max_leases) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EBUSY, false);
        return;
    }
    if (conn->ns_ok) {
        fill_keys(srv, m);
        /* From memory only: a lease on a block that is on disk only needs
         * a read first, made on an I/O thread (diskop.c). */
        ret = kvs_store_match(srv->store, conn->ns, srv->keys, n,
                              lease ? KVS_MATCH_PIN | KVS_MATCH_NO_READ : 0,
                              srv->bytes, &matched);
        if (ret == -EWOULDBLOCK) {
            ret = kvs_diskop_match(srv, conn, m);
            if (ret == 0)
                return; /* diskop.c replies */
        }
        if (ret) {
            kvs_send_status(srv, conn, &m->hdr, ret, false);
            return;
        }
    }
    r = reply_to(m, (uint32_t)matched);
    r.u.match_rep.tiers = srv->bytes;
    if (lease && matched > 0) {
        uint64_t id;

        ret = kvs_conn_lease_add(conn, srv->keys, matched,
                                 m->u.keys.lease_ms ? m->u.keys.lease_ms
                                                    : srv->cfg.lease_default_ms,
                                 &id);
        if (ret) {
            for (size_t i = 0; i < matched; i++)
                kvs_store_unpin(srv->store, conn->ns, srv->keys[i].data,
                                srv->keys[i].len);
            kvs_send_status(srv, conn, &m->hdr, ret, false);
            return;
        }
        r.u.match_rep.lease_id = id;
    }
    kvs_send_reply(srv, conn, &r);
}

static void op_exists(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                      const uint8_t *payload)
{
    uint32_t n = m->hdr.count;
    kvs_wire_msg_t r = reply_to(m, n);
    int ret;

    (void)payload;
    memset(srv->bytes, 0, n);
    if (conn->ns_ok) {
        fill_keys(srv, m);
        ret = kvs_store_exists(srv->store, conn->ns, srv->keys, n, srv->bytes);
        if (ret) {
            kvs_send_status(srv, conn, &m->hdr, ret, false);
            return;
        }
    }
    r.u.exists_rep.present = srv->bytes;
    kvs_send_reply(srv, conn, &r);
}

static void op_delete(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                      const uint8_t *payload)
{
    uint32_t n = m->hdr.count;
    kvs_wire_msg_t r = reply_to(m, n);

    (void)payload;
    for (uint32_t i = 0; i < n; i++)
        srv->status[i] = conn->ns_ok ? kvs_store_delete(srv->store, conn->ns,
                                                        m->u.keys.keys[i].data,
                                                        m->u.keys.keys[i].len)
                                     : KVS_ENOTFOUND;
    r.u.status_rep.status = srv->status;
    kvs_send_reply(srv, conn, &r);
}

/* PIN takes a reference held by this connection (released by UNPIN or when
 * the connection ends); PIN with RETAIN makes the block class "pinned" in
 * the store, which outlives the connection (UNPIN RETAIN makes it scratch
 * again). */
static int pin_one(kvs_server_t *srv, kvs_conn_t *conn, uint32_t flags,
                   const kvs_wire_bytes_t *key)
{
    int ret;

    if (flags & KVS_WIRE_PIN_RETAIN)
        return kvs_store_set_retention(srv->store, conn->ns, key->data,
                                       key->len, KVS_CLASS_PINNED, 0);
    if (conn->npins >= srv->cfg.max_pins)
        return KVS_EBUSY;
    if (!conn->pins) {
        conn->pins = calloc(srv->cfg.max_pins, sizeof(*conn->pins));
        if (!conn->pins)
            return -ENOMEM;
    }
    ret = kvs_store_pin(srv->store, conn->ns, key->data, key->len, NULL);
    if (ret)
        return ret;
    conn->pins[conn->npins].len = (uint8_t)key->len;
    memcpy(conn->pins[conn->npins].key, key->data, key->len);
    conn->npins++;
    srv->conn_pins++;
    return 0;
}

static int unpin_one(kvs_server_t *srv, kvs_conn_t *conn, uint32_t flags,
                     const kvs_wire_bytes_t *key)
{
    if (flags & KVS_WIRE_PIN_RETAIN)
        return kvs_store_set_retention(srv->store, conn->ns, key->data,
                                       key->len, KVS_CLASS_SCRATCH, 0);
    /* Only a reference this connection holds can be dropped. */
    for (uint32_t i = 0; i < conn->npins; i++) {
        if (conn->pins[i].len == key->len &&
            memcmp(conn->pins[i].key, key->data, key->len) == 0) {
            kvs_store_unpin(srv->store, conn->ns, key->data, key->len);
            conn->pins[i] = conn->pins[--conn->npins];
            srv->conn_pins--;
            return 0;
        }
    }
    return KVS_ENOTFOUND;
}

static void op_pin(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                   const uint8_t *payload)
{
    uint32_t n = m->hdr.count;
    bool pin = m->hdr.opcode == KVS_OP_PIN;
    kvs_wire_msg_t r = reply_to(m, n);

    (void)payload;
    if ((m->u.keys.flags & KVS_WIRE_PIN_RETAIN) &&
        !(conn->features & KVS_WIRE_FEAT_PIN_RETAIN)) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        const kvs_wire_bytes_t *k = &m->u.keys.keys[i];

        if (!conn->ns_ok)
            srv->status[i] = KVS_ENOTFOUND;
        else if (pin)
            srv->status[i] = pin_one(srv, conn, m->u.keys.flags, k);
        else
            srv->status[i] = unpin_one(srv, conn, m->u.keys.flags, k);
    }
    r.u.status_rep.status = srv->status;
    kvs_send_reply(srv, conn, &r);
}

static void op_prefetch(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                        const uint8_t *payload)
{
    kvs_wire_msg_t r = reply_to(m, 0);
    int ret;

    (void)payload;
    if (conn->ns_ok) {
        /* Reads the disk: on an I/O thread, which replies (diskop.c). */
        ret = kvs_diskop_prefetch(srv, conn, m);
        if (ret)
            kvs_send_status(srv, conn, &m->hdr, ret, false);
        return;
    }
    r.u.prefetch_rep.promoted = 0;
    kvs_send_reply(srv, conn, &r);
}

static void op_release(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                       const uint8_t *payload)
{
    (void)payload;
    for (kvs_lease_t **pp = &conn->leases; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == m->u.release.lease_id) {
            kvs_lease_t *l = *pp;

            *pp = l->next;
            conn->nleases--;
            kvs_conn_lease_free(srv, l);
            kvs_send_status(srv, conn, &m->hdr, 0, false);
            return;
        }
    }
    kvs_send_status(srv, conn, &m->hdr, KVS_ENOTFOUND, false);
}

static void op_verify(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                      const uint8_t *payload)
{
    int ret;

    (void)payload;
    /* In the background, paced, on an I/O thread of its own; the reply
     * comes when it is done (diskop.c). */
    ret = kvs_diskop_verify(srv, conn, m);
    if (ret)
        kvs_send_status(srv, conn, &m->hdr, ret, false);
}

/* SCAN: one page of the namespace's blocks (or one group's), in the store's
 * table order. The cursor counts the blocks already reported, so a page is
 * found by skipping that many: the whole table is visited for every page,
 * which is acceptable for the offline tools SCAN exists for (export, and
 * promotion by group). A namespace that changes between pages may have
 * blocks missed or repeated; the tools scan a quiet namespace. */
typedef struct scan_page {
    uint32_t skip; /* blocks still to skip */
    uint32_t want; /* most entries in this page */
    uint32_t n;    /* entries collected */
    size_t room;   /* body bytes left for entries */
    bool more;     /* a block was left for the next page */
    kvs_wire_scan_ent_t *ents;
    uint8_t *bytes; /* copies of keys and parents */
    size_t used;    /* bytes used at bytes */
} scan_page_t;

static int scan_collect(void *arg, const void *key, uint32_t key_len,
                        const void *parent, uint32_t parent_len,
                        const kvs_block_info_t *info)
{
    scan_page_t *pg = arg;
    kvs_wire_scan_ent_t *se;
    size_t need = KVS_WIRE_SCAN_ENT_FIXED + key_len + parent_len;

    if (pg->skip) {
        pg->skip--;
        return 0;
    }
    if (pg->n == pg->want || need > pg->room) {
        pg->more = true;
        return 1;
    }
    se = &pg->ents[pg->n++];
    memcpy(pg->bytes + pg->used, key, key_len);
    se->key.data = pg->bytes + pg->used;
    se->key.len = key_len;
    pg->used += key_len;
    memcpy(pg->bytes + pg->used, parent, parent_len);
    se->parent.data = pg->bytes + pg->used;
    se->parent.len = parent_len;
    pg->used += parent_len;
    se->tier = info->tier;
    se->cls = info->cls;
    se->nparts = info->nparts;
    se->len = info->data_len;
    se->group = info->group;
    se->expiry_ms = info->expiry_ms;
    pg->room -= need;
    return 0;
}

static void op_scan(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                    const uint8_t *payload)
{
    scan_page_t pg = {
        .skip = m->u.scan.cursor,
        .want = m->hdr.count,
        .room = srv->tx_cap - KVS_WIRE_HDR_SIZE - KVS_WIRE_SCAN_REP_FIXED,
    };
    kvs_wire_msg_t r;
    int ret = 0;

    (void)payload;
    /* An administrative call, not the data path: its page is allocated. */
    pg.ents = malloc(pg.want * sizeof(*pg.ents));
    pg.bytes = malloc(pg.room);
    if (!pg.ents || !pg.bytes) {
        kvs_send_status(srv, conn, &m->hdr, -ENOMEM, false);
        goto out;
    }
    if (conn->ns_ok)
        ret = kvs_store_scan(srv->store, conn->ns, m->u.scan.group,
                             scan_collect, &pg, NULL);
    if (ret) {
        kvs_send_status(srv, conn, &m->hdr, ret, false);
        goto out;
    }
    r = reply_to(m, pg.n);
    r.u.scan_rep.next = pg.more ? m->u.scan.cursor + pg.n : 0;
    r.u.scan_rep.ents = pg.ents;
    kvs_send_reply(srv, conn, &r);
out:
    free(pg.bytes);
    free(pg.ents);
}

static void op_bind_misplaced(kvs_server_t *srv, kvs_conn_t *conn,
                              kvs_wire_msg_t *m, const uint8_t *payload)
{
    (void)payload;
    kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
}

/* Every stream opcode: the stream module's (stream.c). */
static ucs_status_t op_stream(kvs_server_t *srv, kvs_conn_t *conn,
                              const kvs_wire_msg_t *m, void *data, size_t len,
                              bool rndv)
{
    return kvs_srvstream_rx(srv->stream, conn, m, data, len, rndv);
}

static const opdef_t opdefs[KVS_OP_COUNT] = {
    [KVS_OP_HELLO] = {.name = "HELLO", .handle = op_hello},
    [KVS_OP_PUT] = {.name = "PUT", .handle = op_put},
    [KVS_OP_GET] = {.name = "GET", .handle = op_get},
    [KVS_OP_MATCH] = {.name = "MATCH", .handle = op_match},
    [KVS_OP_EXISTS] = {.name = "EXISTS", .handle = op_exists},
    [KVS_OP_DELETE] = {.name = "DELETE", .handle = op_delete},
    [KVS_OP_PIN] = {.name = "PIN", .handle = op_pin},
    [KVS_OP_UNPIN] = {.name = "UNPIN", .handle = op_pin},
    [KVS_OP_PREFETCH] = {.name = "PREFETCH",
                         .feature = KVS_WIRE_FEAT_PREFETCH,
                         .handle = op_prefetch},
    [KVS_OP_RELEASE] = {.name = "RELEASE",
                        .feature = KVS_WIRE_FEAT_LEASE,
                        .handle = op_release},
    [KVS_OP_STAT] = {.name = "STAT", .handle = kvs_stat_op},
    [KVS_OP_VERIFY] = {.name = "VERIFY",
                       .feature = KVS_WIRE_FEAT_VERIFY,
                       .handle = op_verify},
    /* BIND is valid on a bulk endpoint only (server.c), never here. */
    [KVS_OP_BIND] = {.name = "BIND",
                     .feature = KVS_WIRE_FEAT_BULK,
                     .handle = op_bind_misplaced},
    [KVS_OP_SCAN] = {.name = "SCAN",
                     .feature = KVS_WIRE_FEAT_SCAN,
                     .handle = op_scan},
/* Stream opcodes (stream.c). A client's need STREAM; those only a
 * peer daemon sends need PEER (a peer's HELLO grants both). SPUT_DONE
 * goes to clients only: nobody may send it here. */
#define STREAM_OP(op, nm, feat)                                                \
    [op] = {.name = nm, .feature = feat, .stream = op_stream}
    STREAM_OP(KVS_OP_SPUT_BEGIN, "SPUT_BEGIN", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_SPUT_PART, "SPUT_PART", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_SPUT_SEAL, "SPUT_SEAL", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_SPUT_ABORT, "SPUT_ABORT", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_FETCH, "FETCH", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_CANCEL, "CANCEL", KVS_WIRE_FEAT_STREAM),
    STREAM_OP(KVS_OP_BLOCK, "BLOCK", KVS_WIRE_FEAT_PEER),
    STREAM_OP(KVS_OP_PART, "PART", KVS_WIRE_FEAT_PEER),
    STREAM_OP(KVS_OP_END, "END", KVS_WIRE_FEAT_PEER),
    STREAM_OP(KVS_OP_PING, "PING", KVS_WIRE_FEAT_PEER),
    STREAM_OP(KVS_OP_PUSH, "PUSH", KVS_WIRE_FEAT_PEER),
#undef STREAM_OP
};

int kvs_handler_check(void)
{
    for (unsigned op = 1; op < KVS_OP_COUNT; op++) {
        if (op == KVS_OP_DATA || op == KVS_OP_SPUT_DONE)
            continue; /* sent by the daemon only */
        if (!(opdefs[op].handle || opdefs[op].stream) || !opdefs[op].name ||
            strcmp(opdefs[op].name, kvs_wire_op_name(op)) != 0) {
            kvs_error("opcode %u has no handler", op);
            return KVS_ECONFIG;
        }
    }
    return 0;
}

bool kvs_handler_known(unsigned opcode)
{
    return opcode < KVS_OP_COUNT && opcode != 0;
}

void kvs_handler_dispatch(kvs_server_t *srv, kvs_conn_t *conn,
                          kvs_wire_msg_t *m, const uint8_t *payload)
{
    const opdef_t *op = &opdefs[m->hdr.opcode];

    if (!op->handle) { /* DATA, or a stream opcode */
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
        return;
    }
    if (op->feature && !(conn->features & op->feature)) {
        kvs_send_status(srv, conn, &m->hdr, KVS_EPROTO, false);
        return;
    }
    kvs_trace("conn %llu: %s id %llu count %u", (unsigned long long)conn->id,
              op->name, (unsigned long long)m->hdr.req_id, m->hdr.count);
    uint64_t t0 = kvs_clock_mono_ns();
    unsigned opcode = m->hdr.opcode;

    conn->inflight++;
    srv->deferred = false;
    op->handle(srv, conn, m, payload);
    conn->inflight--;
    /* A deferred request is counted when diskop.c replies. */
    if (!srv->deferred)
        kvs_metrics_note_request(srv->metrics, opcode,
                                 kvs_clock_mono_ns() - t0);
}

ucs_status_t kvs_handler_dispatch_stream(kvs_server_t *srv, kvs_conn_t *conn,
                                         kvs_wire_msg_t *m, void *data,
                                         size_t len, bool rndv)
{
    const opdef_t *op = &opdefs[m->hdr.opcode];

    /* No reply: a stream opcode has none. Dropped, and counted. */
    if (!op->stream || !(conn->features & op->feature)) {
        srv->bad_frames++;
        kvs_info("conn %llu: %s not allowed on this connection; dropped",
                 (unsigned long long)conn->id, kvs_wire_op_name(m->hdr.opcode));
        return UCS_OK;
    }
    uint64_t t0 = kvs_clock_mono_ns();
    unsigned opcode = m->hdr.opcode;
    ucs_status_t st = op->stream(srv, conn, m, data, len, rndv);

    kvs_metrics_note_request(srv->metrics, opcode, kvs_clock_mono_ns() - t0);
    return st;
}
