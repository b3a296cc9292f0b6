/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of libkvstash's streaming (kvstash/stream.h), shared by its
 * files: stream.c (the state, receive dispatch, sends, streaming puts) and
 * stream_fetch.c (streaming fetches). Not a public header. Everything here
 * belongs to the client's thread, as the client does.
 */
#ifndef KVS_CLIENT_STREAM_INT_H
#define KVS_CLIENT_STREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ucp/api/ucp.h>

#include "common/partpool.h"
#include "kvstash/kvstash.h"
#include "transport/proto/stream_op.h"

/* The pools keep a stream that goes block after block from allocating
 * once they are warm (issue 12 item 5); freed with the client. */
typedef struct cstate {
    kvs_client_t *c;
    kvs_stream_fetch_t *fetches;
    kvs_stream_put_t *puts;
    uint64_t next_id;
    kvs_partpool_t parts;          /* lens, offs, flags of blocks */
    struct csend *send_free;       /* sends */
    struct crx *rx_free;           /* rendezvous receives */
    struct kvs_stream_put *put_free; /* puts */
} cstate_t;

typedef struct cblk {
    void *buf;
    size_t cap;
    int status;
    bool began, complete;
    uint32_t nparts;
    uint32_t parts_in;
    uint32_t inflight; /* rendezvous receives into buf */
    uint64_t len;
    kvs_partv_t *pv; /* offs, lens, got: from the state's pool */
    uint64_t *offs;
    uint32_t *lens;
    uint8_t *got;
    uint64_t first_ns, complete_ns;
    const uint8_t *view; /* in place: the block in the sidecar's arena */
    uint64_t lease_end_ns; /* in place, complete: held until (monotonic) */
    void *own;           /* buf NULL, not in place: the library's buffer */
} cblk_t;

struct kvs_stream_fetch {
    kvs_stream_fetch_t *next;
    cstate_t *cs;
    uint64_t id;
    uint32_t n;
    int status;   /* the whole fetch failed */
    bool inplace; /* the sidecar sends PART without bytes */
    cblk_t blk[];
};

struct kvs_stream_put {
    kvs_stream_put_t *next;
    cstate_t *cs;
    uint64_t id;
    uint32_t nparts;
    bool done;
    int status;
    struct csend *posted; /* kvs_stream_put_part_nb() sends */
    /* kvs_stream_put_begin_inplace(): where part i goes (data + offs[i],
     * lens[i] bytes), in the arena when inplace, else in the library's
     * own buffer (data is then malloc'd); which parts were committed. */
    bool buffered, inplace, began;
    int begin_status; /* the sidecar's BLOCK answer */
    uint8_t *data;
    uint64_t len;
    kvs_partv_t *pv; /* lens, offs, committed: from the state's pool */
    uint32_t *lens;
    uint64_t *offs;
    uint8_t *committed;
};

typedef struct crx {
    struct crx *next; /* the pool */
    kvs_stream_fetch_t *f;
    uint32_t block, part;
} crx_t;

typedef struct csend {
    struct csend *next; /* a put's sends not yet waited for; the pool */
    cstate_t *cs;       /* whose pool it goes back to */
    void *req;          /* the UCX request; NULL once done */
    bool done;
    bool abandoned; /* the caller gave up: the callback frees */
    ucs_status_t status;
    uint8_t hdr[]; /* UCX may read it until the send is done */
} csend_t;

/* stream.c: the client's stream state (made on first use). */
int kvs_stream_state_get(kvs_client_t *c, cstate_t **out);
/* Posts m (with data bytes, if any) and returns at once; *out is NULL if
 * the send completed in place, else kvs_stream_msg_wait() must be called. */
int kvs_stream_msg_post(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                        size_t blen, const void *data, size_t dlen,
                        csend_t **out);
/* Waits for s to complete and frees it. */
int kvs_stream_msg_wait(kvs_client_t *c, csend_t *s);
/* Post and wait. */
int kvs_stream_msg_send(kvs_client_t *c, const kvs_smsg_t *m, const void *body,
                        size_t blen, const void *data, size_t dlen);

/* stream_fetch.c: BLOCK, PART or END of fetch f. */
ucs_status_t kvs_stream_fetch_rx(kvs_stream_fetch_t *f, const kvs_smsg_t *m,
                                 void *data, size_t len, bool rndv,
                                 ucp_worker_h worker);

#endif
