/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the daemon's streaming module (docs/protocol.md section 9;
 * docs/architecture.md, section 5), shared by its files: stream.c (state,
 * sends, part receives, the entry points of stream.h, timers, lifecycle),
 * peer.c (links to and from peer daemons), source.c (blocks sent on a
 * link), sput.c (clients' streaming puts) and fetch.c (blocks received from
 * a link). Not a public header.
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
 *   decode client      decode kvstashd  ==link==  prefill kvstashd   prefill
 * client FETCH(peer,keys) ->  FETCH(ns,keys) ------>  src per key  <- PUT_BEGIN
 *                           put_begin      <- BLOCK                <- PUT_PART
 * i
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
#ifndef KVS_STREAM_INT_H
#define KVS_STREAM_INT_H

#include "transport/server/stream.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "common/partpool.h"
#include "common/debug.h"
#include "common/log.h"
#include "transport/proto/sockaddr.h"
#include "transport/proto/stream_op.h"
#include "transport/proto/ucx.h"

#define PEERS_MAX 32

enum { B_WAIT, B_OPEN, B_DONE };

/* The most bytes of consecutive parts that go to a peer as one PART
 * (KVS_WIRE_FEAT_PART_RUN; source.c). */
#define KVS_PART_RUN_BYTES (4ull << 20)

typedef struct link {
    struct link *next;
    char name[64]; /* configured name, or "ip:port" */
    bool outbound; /* we connected (else conn is the peer) */
    bool dead;
    bool closed; /* ep closed / conn closing */
    int fail_status;
    ucp_ep_h ep;                /* outbound */
    ucp_ep_h bulk_ep;           /* outbound, same host: see kvs_peer_bulk() */
    struct sockaddr_storage ss; /* outbound: the peer's address */
    bool local;                 /* outbound: the peer is on this host */
    uint8_t bind_frame[KVS_WIRE_HDR_SIZE + 32]; /* UCX reads it until sent */
    void *bind_req;   /* the BIND send, until it completes */
    bool bulk_bad;    /* BIND failed: stay on the control ep */
    kvs_conn_t *conn; /* inbound */
    bool ready;       /* inbound, or outbound and HELLO answered:
                         nothing but HELLO goes out before */
    bool part_runs;   /* the peer takes runs of parts (FEAT_PART_RUN) */
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
    uint64_t id; /* fetch id on the receiver, or push id */
    uint32_t block;
    uint32_t ns;
    uint8_t key[KVS_KEY_MAX];
    uint8_t key_len;
    bool push;       /* first message is PUSH, not BLOCK */
    sput_t *put;     /* following a live put */
    kvs_view_t view; /* or a sealed block */
    bool has_view;
    bool began, ended;
    uint32_t next_part;
    uint64_t deadline_ns; /* waiting for the block to begin */
    uint64_t read_ns;     /* when its disk read was last asked */
    uint32_t inflight;
    bool has_sum; /* the block's checksum, settled at its seal here: */
    uint64_t sum; /* END carries it (KVS_SMSG_F_SUM) */
} src_t;

struct sput {
    sput_t *next;
    kvs_conn_t *conn; /* NULL once the client is gone */
    uint64_t cid;     /* the client's id */
    uint32_t ns;
    uint8_t key[KVS_KEY_MAX];
    uint8_t key_len;
    kvs_put_stream_t ps;
    uint32_t nparts;
    kvs_partv_t *pv; /* lens, offs, done: from st->parts */
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *done;
    uint32_t ndone;
    uint32_t inflight; /* receives + forwards in flight */
    bool seal_req, abort_req, finished;
    int status; /* first error; seal's result */
    src_t *push_src;
    uint64_t push_id;
    char ns_name[KVS_NS_NAME_MAX + 1]; /* push: the namespace's name */
    uint8_t cls;
    uint32_t flags;
    kvs_smeta_t meta; /* parent, TTL, group (SPUT_BEGIN with META) */
    bool inplace; /* the client writes the parts in the shared arena */
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
    kvs_partv_t *pv; /* lens, offs, got: from st->parts */
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *got;
    uint32_t ngot;
    uint32_t inflight;
    bool remote_end;
    bool has_sum; /* the sender's END carried the block's checksum */
    uint64_t sum;
    int status;
    bool told;
    kvs_view_t view; /* in place: the sealed block, held for the client */
    bool has_view;
    uint64_t lease_end_ns; /* in place: the hold ends (monotonic) */
} dblk_t;

typedef struct fetch {
    struct fetch *next;
    kvs_conn_t *conn; /* the client; NULL: push or gone */
    uint64_t cid;     /* the client's id / the pusher's id */
    uint64_t id;      /* ours, unique in this daemon */
    link_t *link;
    bool push;
    bool inplace; /* the client reads the parts in the shared arena: PART
                     carries no bytes, and each sealed block stays pinned
                     until CANCEL or the connection's end */
    uint32_t ns;
    uint32_t base;    /* the client's index of blk[0]: a fetch of more
                         keys than one message holds is several */
    uint32_t nblocks;
    dblk_t blk[];
} fetch_t;

typedef struct stx {
    struct stx *next;          /* free list */
    struct stx *lnext, *lprev; /* st->stx_live while UCX holds it */
    ucp_ep_h ep;
    bool orphan; /* done already ran; UCX still holds it */
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

/* The module's state. What it needs of the daemon is copied in at create
 * (kvs_srvstream_params_t): it never reads the server's own structure. */
struct kvs_srvstream {
    kvs_store_t *store;
    ucp_worker_h worker;
    ucp_mem_h memh;          /* the arena's UCX registration, or NULL */
    struct kvs_shm *shm;     /* same-host clients' stream keys; NULL: off */
    uint8_t *abase;          /* the arena, for offsets sent in place */
    struct kvs_diskq *diskq; /* disk reads of sources; NULL: inline */
    char secret[KVS_WIRE_TOKEN_MAX + 1]; /* the peer secret; "" none */
    kvs_iov_t iovs[KVS_PARTS_MAX];       /* kvs_sput_store_begin's scratch */
    link_t *links;
    sput_t *sputs;
    src_t *srcs;
    fetch_t *fetches;
    /* Pools (issue 12 item 5): a block or a part allocates nothing once
     * they are warm. Freed at destroy. */
    kvs_partpool_t parts;
    sput_t *sput_free;
    src_t *src_free;
    struct rx *rx_free;
    stx_t *stx_free;
    stx_t *stx_failed;  /* failed sends, completed by the tick */
    stx_t *stx_live;    /* sends UCX has not completed */
    stx_t *stx_orphans; /* finished by us, still held by UCX */
    uint64_t next_id;
    uint64_t timeout_ns;
    uint64_t lease_ns; /* a block fetched in place is held this long */
    uint32_t nheld;    /* blocks held for in-place fetches */
    peer_cfg_t peers[PEERS_MAX];
    size_t npeers;
    int (*resolve)(void *, const char *, char *, size_t, uint16_t *);
    void *resolve_arg; /* peers by name beyond the list */
    /* counters */
    uint64_t parts_in, parts_out, blocks_sealed, blocks_failed;
    /* Read by STAT (kvs_srvstream_stats), maybe from another thread. */
    _Atomic uint64_t parts_inplace; /* committed or delivered in place */
    _Atomic uint64_t nsputs, nfetches; /* live objects */
    _Atomic uint64_t pool_allocs;      /* pooled objects ever allocated */
};

/* Where part i of a block being put lies in the arena: the block's first
 * byte (which the store keeps outside the arena) plus the daemon's own
 * offset of the part, never the part table behind the block's bytes,
 * which a client mapping the arena can write (transport/server/shm.c). */
static inline uint8_t *part_buf(kvs_srvstream_t *st, kvs_put_stream_t *ps,
                                const uint64_t *offs, uint32_t i)
{
    size_t len;
    uint8_t *b = kvs_store_put_part_buf(st->store, ps, 0, &len);

    return b ? b + offs[i] : NULL;
}

/* stream.c: the pools (objects come zeroed). */
sput_t *kvs_srvstream_sput_get(kvs_srvstream_t *st);
void kvs_srvstream_sput_put(kvs_srvstream_t *st, sput_t *p);
src_t *kvs_srvstream_src_get(kvs_srvstream_t *st);
kvs_partv_t *kvs_srvstream_parts_get(kvs_srvstream_t *st, uint32_t n);
void kvs_srvstream_src_put(kvs_srvstream_t *st, src_t *s);

/* stream.c: sends, part receives. */
int kvs_srvstream_send(kvs_srvstream_t *st, ucp_ep_h ep, const kvs_smsg_t *m,
                       const void *body, size_t body_len, const void *data,
                       size_t data_len,
                       void (*done)(kvs_srvstream_t *, void *, void *, int),
                       void *obj, void *obj2);
ucp_ep_h kvs_srvstream_conn_ep(kvs_conn_t *c);
ucp_ep_h kvs_srvstream_link_ep(link_t *l);
int kvs_srvstream_link_send(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                            const void *body, size_t blen);
void kvs_srvstream_send_end(kvs_srvstream_t *st, ucp_ep_h ep, uint64_t id,
                            uint32_t block, int status);
ucs_status_t kvs_srvstream_rx_start(kvs_srvstream_t *st, sput_t *put,
                                    fetch_t *f, uint32_t block, uint32_t part,
                                    uint32_t n, void *dst, void *data,
                                    size_t len, bool rndv);

/* peer.c: links. */
void kvs_peer_bulk(kvs_srvstream_t *st, link_t *l, uint64_t session,
                   uint64_t secret, uint32_t port);
int kvs_peer_get(kvs_srvstream_t *st, const char *peer, link_t **out);
link_t *kvs_peer_by_conn(kvs_srvstream_t *st, kvs_conn_t *conn);
link_t *kvs_peer_by_ep(kvs_srvstream_t *st, ucp_ep_h ep);
ucs_status_t kvs_peer_msg(kvs_srvstream_t *st, link_t *l, const kvs_smsg_t *m,
                          void *data, size_t len, bool rndv);
void kvs_peer_ready(kvs_srvstream_t *st, link_t *l);
void kvs_peer_fail(kvs_srvstream_t *st, link_t *l, int status);
int kvs_peer_parse(kvs_srvstream_t *st, const char *list);

/* source.c: blocks sent to a link. */
void kvs_source_free_if_idle(kvs_srvstream_t *st, src_t *s);
void kvs_source_end(kvs_srvstream_t *st, src_t *s, int status);
void kvs_source_pump(kvs_srvstream_t *st, src_t *s);
src_t *kvs_source_new(kvs_srvstream_t *st, link_t *l, uint64_t id,
                      uint32_t block, uint32_t ns, const uint8_t *key,
                      uint32_t key_len, uint64_t wait_ms);

/* sput.c: streaming puts. */
int kvs_sput_store_begin(kvs_srvstream_t *st, uint32_t ns, const uint8_t *key,
                         uint8_t key_len, const uint32_t *lens, uint64_t *offs,
                         uint32_t nparts, uint8_t cls, uint32_t flags,
                         const kvs_smeta_t *meta, kvs_put_stream_t *ps);
void kvs_sput_reply(kvs_srvstream_t *st, sput_t *p);
void kvs_sput_free_if_idle(kvs_srvstream_t *st, sput_t *p);
void kvs_sput_maybe_finish(kvs_srvstream_t *st, sput_t *p);
sput_t *kvs_sput_find(kvs_srvstream_t *st, kvs_conn_t *conn, uint64_t cid);
void kvs_sput_part_landed(kvs_srvstream_t *st, sput_t *p, uint32_t part);
void kvs_sput_begin(kvs_srvstream_t *st, kvs_conn_t *conn, const kvs_smsg_t *m);
ucs_status_t kvs_sput_part(kvs_srvstream_t *st, kvs_conn_t *conn,
                           const kvs_smsg_t *m, void *data, size_t len,
                           bool rndv);

/* fetch.c: blocks received from a link. */
void kvs_fetch_free_if_done(kvs_srvstream_t *st, fetch_t *f);
void kvs_fetch_blk_try_finish(kvs_srvstream_t *st, fetch_t *f, uint32_t i);
/* The sender's END 0 for block b: it is complete there; END's checksum
 * (KVS_SMSG_F_SUM), when it carries one, is kept for the seal. */
void kvs_fetch_blk_remote_end(dblk_t *b, const kvs_smsg_t *m);
void kvs_fetch_blk_fail(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                        int status);
void kvs_fetch_part_landed(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                           uint32_t part, int status);
fetch_t *kvs_fetch_new(kvs_srvstream_t *st, uint32_t n);
int kvs_fetch_blk_open(kvs_srvstream_t *st, fetch_t *f, uint32_t i,
                       const kvs_smsg_t *m, kvs_smsg_rd_t *rd, uint8_t cls,
                       uint32_t flags);
void kvs_fetch_start(kvs_srvstream_t *st, kvs_conn_t *conn,
                     const kvs_smsg_t *m);
void kvs_fetch_expire(kvs_srvstream_t *st, uint64_t now_ns);

#endif
