/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory service's inside, shared by shm.c (the sessions, the
 * socket, the ring and the thread) and shm_ops.c (what each request
 * does). Everything here belongs to the service's thread (shm.c's header
 * says what does not).
 */
#ifndef KVS_SHM_INT_H
#define KVS_SHM_INT_H

#include "transport/server/shm.h"
#include "common/clock.h"
#include "common/compiler.h"
#include "common/debug.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "kvstash/wire_shm.h"
#include "transport/server/server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RESV_MAX 256u     /* reservations per session */
#define VIEWS_MAX 4096u   /* views per session */
#define SESSIONS_MAX 256u /* sessions at once */
typedef struct resv {
    uint64_t id; /* 0: slot free */
    kvs_put_stream_t ps;
    uint32_t nparts;
    uint32_t *lens; /* nparts, the daemon's copy */
} resv_t;

typedef struct view {
    uint64_t id; /* 0: slot free */
    uint64_t expiry_ns;
    bool expired; /* unpinned at expiry; the slot waits for RELEASE */
    kvs_view_t v;
} view_t;

struct cold;

typedef struct sess {
    struct sess *next, *prev;
    int fd;
    struct ucred cred;
    bool attached;
    uint32_t key_slot; /* its stream key in keys[], while attached */
    const kvs_tenant_t *tenant;
    uint32_t ns;
    uint64_t seq;
    resv_t *resv;         /* RESV_MAX, allocated at ATTACH */
    view_t *views;        /* VIEWS_MAX */
    uint32_t nviews_live; /* views pinned (not expired) */
    struct cold *cold;    /* a VIEW waiting for its disk read: parked */
    /* The ring, once RING was granted (else NULL), and the daemon's own
     * counters of it: requests read, replies written. */
    uint8_t *ring;
    uint32_t sq_head, cq_tail;
} sess_t;

/* A VIEW of a block on NVMe only, read on an I/O thread (the job is
 * first, so that the queue's pointer is the cold view's). */
typedef struct cold {
    kvs_djob_t job;
    struct kvs_shm *m;
    sess_t *s; /* NULL once the session is gone */
    kvs_wire_hdr_t req;
    uint32_t lease_ms;
    uint32_t ns;
    uint32_t key_len;
    uint8_t key[KVS_KEY_MAX];
    int ret; /* of the pin, by run() */
    uint8_t tier;
    kvs_view_t v; /* pinned when ret is 0 */
} cold_t;

struct kvs_shm {
    const kvs_server_config_t *cfg;
    kvs_store_t *store;
    int arena_fd;
    uint8_t *abase;
    size_t alen;
    int lfd, efd, epfd;
    kvs_diskq_t *dq; /* cold views' disk reads */
    bool stopping;
    bool cut; /* a client cut the arena's file: sharing is over */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    bool started;
    sess_t *sessions;
    uint32_t nsessions;
    uint64_t last_sweep_ns;
    /* The stream keys of attached sessions (0: free slot). Written here,
     * read by the UCX thread (kvs_shm_stream_key_ok). */
    _Atomic uint64_t keys[SESSIONS_MAX];
    uint8_t rx[KVS_WIRE_SHM_FRAME_MAX + 1];
    uint8_t tx[KVS_WIRE_SHM_FRAME_MAX];
    uint32_t lens[KVS_PARTS_MAX];
    uint32_t lens2[KVS_PARTS_MAX];
    kvs_iov_t iov[KVS_PARTS_MAX];
    atomic_uint_fast64_t st_sessions, st_resv, st_views, st_attached,
        st_refused, st_commits, st_reclaimed, st_expired, st_rings,
        st_arena_cut;
};

#define BUMP(ctr, d)                                                           \
    atomic_fetch_add_explicit(&(ctr), (d), memory_order_relaxed)

/* shm.c: replies (over the socket, or the ring once it is granted) and
 * sessions. */
void kvs_shm_send_msg(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *r,
                      int pass_fd);
kvs_wire_shm_msg_t kvs_shm_reply_to(const kvs_wire_hdr_t *req, int status);
void kvs_shm_send_status(kvs_shm_t *m, sess_t *s, const kvs_wire_hdr_t *req,
                         int status);
void kvs_shm_drop_view(kvs_shm_t *m, sess_t *s, view_t *v);
void kvs_shm_drop_resv(kvs_shm_t *m, resv_t *r);
void kvs_shm_sess_close(kvs_shm_t *m, sess_t *s);
uint64_t kvs_shm_next_id(sess_t *s, uint32_t slot);

/* shm_ops.c: answers one request of len bytes at m->rx (rfd: an fd that
 * came with it, or -1; closed unless RING keeps it). True when it closed
 * the session (s is gone). */
bool kvs_shm_handle(kvs_shm_t *m, sess_t *s, size_t len, int rfd);

#endif
