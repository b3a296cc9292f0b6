/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory service (shm.h): the socket, its thread, and the
 * sessions of the clients attached to the arena.
 *
 * A session is one accepted connection on the Unix socket. Its peer's
 * credentials are read once (SO_PEERCRED, recorded by the kernel at
 * connect); ATTACH checks them and the tenant's token before the memfd is
 * passed (SCM_RIGHTS). After that the session owns:
 *
 *   resv[]:  blocks reserved in the arena, not yet committed or aborted;
 *            each keeps the daemon's own copy of its part lengths;
 *   views[]: blocks referenced (pinned) under a lease, until released,
 *            expired, or the session's end.
 *
 * Ids are (sequence << 16 | slot), so a COMMIT or RELEASE finds its slot
 * in O(1) and a stale or forged id is refused. When the client goes away
 * (EOF or an error on the socket: the kernel closes it when the process
 * dies, however it dies) every reservation is aborted and every view
 * unpinned: nothing a dead client held stays reserved.
 *
 * What the client can and cannot do with the mapping (docs/operations.md):
 * it can write any byte of the arena, so only trusted tenants get it. No
 * daemon metadata is trusted from the mapping: offsets, lengths and part
 * lengths of a reservation are the daemon's (kept here and rewritten into
 * the block's part table at commit), the checksum is computed by the
 * daemon at commit over what the arena then holds, and the block becomes
 * visible only after that. A view's part lengths, which lie in the arena
 * behind the block, are checked against the block's length (kept by the
 * store outside the arena) before they are reported.
 *
 * A VIEW of a block on NVMe only is not read on the service's thread: the
 * read (which pins the block in the arena) runs on an I/O thread of the
 * service's own disk queue, and the session is parked meanwhile: nothing
 * more is read from its socket, so its replies stay in order, while every
 * other session goes on being served. The read's end answers the VIEW and
 * unparks the session.
 *
 * The ring (docs/protocol.md 11.6). A session that asked for it at ATTACH
 * may pass a memfd of two rings of frame slots (RING): its requests and
 * replies then cross shared memory, not the socket, which carries only
 * one-byte doorbells from then on. The thread reads each ring while it
 * spins (daemon.busy_poll_us after the last request) and, before it
 * sleeps, says so in the ring's control words, so that a client rings the
 * doorbell only for a sleeping thread; a client sleeping on its socket is
 * rung the same way after a reply. Nothing in the ring is trusted: the
 * counters the client writes are checked against the daemon's own (kept
 * here), and each frame is copied out of its slot, its length checked,
 * before it is decoded, so a client rewriting it meanwhile changes
 * nothing. A session whose ring does not add up is closed.
 *
 * Threading: everything below belongs to the service's thread, except the
 * counters (atomics, read by STAT on the server's thread) and a cold
 * view's run() (the store is thread-safe; run() touches only its job).
 */
#include "transport/server/shm_int.h"

#define SWEEP_NS 10000000ull /* lease expiry is checked this often */
/* The thread's spin grows up to SPIN_GROW times daemon.busy_poll_us
 * (shm_thread). */
#define SPIN_GROW 16u

/* ---- the ring ----------------------------------------------------- */

/* A one-byte packet on the socket: the peer sleeps and has work. A full
 * socket buffer means doorbells it has not read yet: as good as this one. */
static void ring_doorbell(sess_t *s)
{
    (void)send(s->fd, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Puts the encoded reply (len bytes at m->tx) in the session's ring. */
static void ring_reply(kvs_shm_t *m, sess_t *s, size_t len)
{
    uint32_t head = atomic_load_explicit(
        kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_CQ_HEAD),
        memory_order_acquire);

    /* Full (or a head past our tail, which only a broken client writes):
     * the reply is lost, as on a full socket; the client's problem. */
    if (s->cq_tail - head >= KVS_WIRE_SHM_RING_SLOTS) {
        kvs_debug("shm: pid %d: reply ring full; reply lost", (int)s->cred.pid);
        return;
    }
    if (kvs_wire_shm_ring_push(s->ring, true, s->cq_tail++, m->tx,
                               (uint32_t)len, KVS_WIRE_SHM_RING_CQ_TAIL,
                               KVS_WIRE_SHM_RING_CLI_WAIT))
        ring_doorbell(s);
}

bool kvs_shm_tenant_allowed(const kvs_server_config_t *cfg,
                            const kvs_tenant_t *t)
{
    return cfg->ntenants == 0 || (t && t->shm);
}

bool kvs_shm_stream_key_ok(kvs_shm_t *m, uint64_t key)
{
    if (!m || key == 0)
        return false;
    for (uint32_t i = 0; i < SESSIONS_MAX; i++)
        if (atomic_load(&m->keys[i]) == key)
            return true;
    return false;
}

void kvs_shm_stats(kvs_shm_t *m, kvs_shm_stats_t *o)
{
    memset(o, 0, sizeof(*o));
    if (!m)
        return;
    o->sessions = atomic_load_explicit(&m->st_sessions, memory_order_relaxed);
    o->reservations = atomic_load_explicit(&m->st_resv, memory_order_relaxed);
    o->views = atomic_load_explicit(&m->st_views, memory_order_relaxed);
    o->attached = atomic_load_explicit(&m->st_attached, memory_order_relaxed);
    o->refused = atomic_load_explicit(&m->st_refused, memory_order_relaxed);
    o->commits = atomic_load_explicit(&m->st_commits, memory_order_relaxed);
    o->reclaimed = atomic_load_explicit(&m->st_reclaimed, memory_order_relaxed);
    o->expired = atomic_load_explicit(&m->st_expired, memory_order_relaxed);
    o->rings = atomic_load_explicit(&m->st_rings, memory_order_relaxed);
    o->arena_cut = atomic_load_explicit(&m->st_arena_cut, memory_order_relaxed);
}

/* ---- replies ------------------------------------------------------ */

void kvs_shm_send_msg(kvs_shm_t *m, sess_t *s, const kvs_wire_shm_msg_t *r,
                      int pass_fd)
{
    char cbuf[KVS_FDPASS_SPACE];
    struct iovec iov;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t len;

    if (kvs_wire_shm_encode(r, m->tx, sizeof(m->tx), &len) != 0) {
        kvs_warn("shm: cannot encode a %u reply", r->hdr.opcode);
        return;
    }
    if (s->ring) {
        ring_reply(m, s, len);
        return;
    }
    iov.iov_base = m->tx;
    iov.iov_len = len;
    if (pass_fd >= 0)
        kvs_fdpass_attach(&mh, cbuf, pass_fd);
    /* A client that does not read its replies fills its socket buffer:
     * the send fails (MSG_DONTWAIT) and the reply is lost, which is the
     * client's problem only; the service never blocks on one client. */
    if (sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        kvs_debug("shm: pid %d: reply lost: %s", (int)s->cred.pid,
                  strerror(errno));
}

kvs_wire_shm_msg_t kvs_shm_reply_to(const kvs_wire_hdr_t *req, int status)
{
    kvs_wire_shm_msg_t r;

    memset(&r, 0, sizeof(r));
    r.hdr.opcode = req->opcode;
    r.hdr.flags = KVS_WIRE_F_REPLY;
    r.hdr.req_id = req->req_id;
    r.hdr.status = status;
    return r;
}

void kvs_shm_send_status(kvs_shm_t *m, sess_t *s, const kvs_wire_hdr_t *req,
                         int status)
{
    kvs_wire_shm_msg_t r = kvs_shm_reply_to(req, status);

    kvs_shm_send_msg(m, s, &r, -1);
}

/* ---- sessions ----------------------------------------------------- */

void kvs_shm_drop_view(kvs_shm_t *m, sess_t *s, view_t *v)
{
    if (!v->expired) {
        kvs_store_unpin_view(m->store, &v->v);
        s->nviews_live--;
        BUMP(m->st_views, (uint64_t)-1);
    }
    v->id = 0;
}

void kvs_shm_drop_resv(kvs_shm_t *m, resv_t *r)
{
    kvs_store_put_abort(m->store, &r->ps);
    free(r->lens);
    r->lens = NULL;
    r->id = 0;
    BUMP(m->st_resv, (uint64_t)-1);
}

void kvs_shm_sess_close(kvs_shm_t *m, sess_t *s)
{
    uint64_t n = 0;

    if (s->cold)
        s->cold->s = NULL; /* its done() unpins what it read */
    for (uint32_t i = 0; s->resv && i < RESV_MAX; i++)
        if (s->resv[i].id) {
            kvs_shm_drop_resv(m, &s->resv[i]);
            n++;
        }
    for (uint32_t i = 0; s->views && i < VIEWS_MAX; i++)
        if (s->views[i].id) {
            n += !s->views[i].expired;
            kvs_shm_drop_view(m, s, &s->views[i]);
        }
    if (n) {
        BUMP(m->st_reclaimed, n);
        kvs_info("shm: pid %d went away; %llu reservations and views "
                 "reclaimed",
                 (int)s->cred.pid, (unsigned long long)n);
    }
    if (s->attached) {
        atomic_store(&m->keys[s->key_slot], 0);
        BUMP(m->st_sessions, (uint64_t)-1);
    }
    if (s->ring) {
        munmap(s->ring, KVS_WIRE_SHM_RING_BYTES);
        BUMP(m->st_rings, (uint64_t)-1);
    }
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        m->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    m->nsessions--;
    free(s->resv);
    free(s->views);
    free(s);
}

uint64_t kvs_shm_next_id(sess_t *s, uint32_t slot)
{
    return (++s->seq << 16) | slot;
}

/* Answers what the session's ring holds, unless parked, up to a ring's
 * worth per call, so that a client refilling its ring as fast as it is
 * read cannot keep the thread from the other sessions. True when the
 * session was closed (s is gone); *work is set when a request was read. */
static bool ring_poll(kvs_shm_t *m, sess_t *s, bool *work)
{
    for (uint32_t k = 0; k < KVS_WIRE_SHM_RING_SLOTS && !s->cold; k++) {
        /* Copied out first: the client can write the slot at any time. */
        int len = kvs_wire_shm_ring_pop(s->ring, false, s->sq_head, m->rx,
                                        KVS_WIRE_SHM_RING_SQ_TAIL,
                                        KVS_WIRE_SHM_RING_SQ_HEAD);

        if (len == 0)
            return false;
        if (len < 0) {
            kvs_warn("shm: pid %d: its request ring does not add up (a "
                     "counter more than %u requests ahead, or a frame length "
                     "out of range); closing",
                     (int)s->cred.pid, (unsigned)KVS_WIRE_SHM_RING_SLOTS);
            kvs_shm_sess_close(m, s);
            return true;
        }
        s->sq_head++;
        *work = true;
        if (kvs_shm_handle(m, s, (size_t)len, -1))
            return true;
    }
    return false;
}

/* Before the thread sleeps: tells each ring's client to ring the doorbell
 * for its next request. False when a request came in meanwhile (then the
 * thread does not sleep). */
static bool ring_arm(kvs_shm_t *m, bool on)
{
    bool idle = true;

    for (sess_t *s = m->sessions; s; s = s->next)
        if (s->ring)
            atomic_store(
                kvs_wire_shm_ring_word(s->ring, KVS_WIRE_SHM_RING_SRV_WAIT),
                on ? 1u : 0u);
    if (!on)
        return true;
    atomic_thread_fence(memory_order_seq_cst);
    for (sess_t *s = m->sessions; s; s = s->next)
        if (s->ring && !s->cold &&
            atomic_load(kvs_wire_shm_ring_word(
                s->ring, KVS_WIRE_SHM_RING_SQ_TAIL)) != s->sq_head)
            idle = false;
    return idle;
}

/* ---- the thread --------------------------------------------------- */

static void accept_one(kvs_shm_t *m)
{
    socklen_t cl = sizeof(struct ucred);
    struct epoll_event ev = {.events = EPOLLIN};
    sess_t *s;
    int fd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return;
    if (m->nsessions >= SESSIONS_MAX) {
        kvs_warn("shm: %u sessions already; refusing one", SESSIONS_MAX);
        close(fd);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return;
    }
    s->fd = fd;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &s->cred, &cl) != 0) {
        free(s);
        close(fd);
        return;
    }
    ev.data.ptr = s;
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(s);
        close(fd);
        return;
    }
    s->next = m->sessions;
    if (s->next)
        s->next->prev = s;
    m->sessions = s;
    m->nsessions++;
}

static void readable(kvs_shm_t *m, sess_t *s, uint32_t events)
{
    if (s->cold) {
        /* Parked: only a hang-up or an error wakes us; the client is
         * gone, and its VIEW's read is let go at its end. */
        if (events & (EPOLLHUP | EPOLLERR))
            kvs_shm_sess_close(m, s);
        return;
    }
    for (;;) {
        char cbuf[KVS_FDPASS_SPACE];
        struct iovec iov = {.iov_base = m->rx, .iov_len = sizeof(m->rx)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        int rfd = n >= 0 ? kvs_fdpass_take(&mh) : -1;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0 && s->ring && n == 1 && rfd < 0)
            continue; /* a doorbell: the ring is read after the events */
        if (n <= 0 || s->ring || (size_t)n > KVS_WIRE_SHM_FRAME_MAX ||
            (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            if (n > 0)
                kvs_warn("shm: pid %d: %s; closing", (int)s->cred.pid,
                         s->ring ? "a frame on the socket after RING"
                                 : "a frame over the size limit");
            if (rfd >= 0)
                close(rfd);
            kvs_shm_sess_close(m, s);
            return;
        }
        if (kvs_shm_handle(m, s, (size_t)n, rfd))
            return; /* closed: s is gone */
        if (s->cold)
            return; /* parked: the rest waits for its VIEW's read */
    }
}

static void sweep(kvs_shm_t *m, uint64_t now)
{
    /* A client that truncated the arena's file (possible only where it is
     * a file on the private tmpfs: a memfd is sealed) took the pages past
     * the cut out of the sharing; the daemon has private memory there now
     * (common/hugemem.h). Nothing mapped agrees with it any more, so every
     * session ends, and ATTACH is refused until a restart. */
    if (!m->cut && kvs_store_arena_cut(m->store)) {
        m->cut = true;
        BUMP(m->st_arena_cut, 1);
        kvs_error("shm: a client cut the shared arena's file (ftruncate); "
                  "shared memory is off until kvstashd restarts: %u "
                  "sessions closed, clients go on over UCX",
                  m->nsessions);
        while (m->sessions)
            kvs_shm_sess_close(m, m->sessions);
    }
    for (sess_t *s = m->sessions; s; s = s->next) {
        if (!s->nviews_live)
            continue;
        for (uint32_t i = 0; i < VIEWS_MAX; i++) {
            view_t *v = &s->views[i];

            if (v->id && !v->expired && now >= v->expiry_ns) {
                kvs_store_unpin_view(m->store, &v->v);
                v->expired = true;
                s->nviews_live--;
                BUMP(m->st_views, (uint64_t)-1);
                BUMP(m->st_expired, 1);
            }
        }
    }
}

static void *shm_thread(void *arg)
{
    kvs_shm_t *m = arg;
    struct epoll_event evs[32];

    /* The spin after the last request: daemon.busy_poll_us, grown up to
     * SPIN_GROW times that while requests keep coming soon after the
     * thread fell asleep (a client copying a MiB between two requests
     * leaves a gap of about 100 us, and a wake-up costs tens of them on a
     * VM), back to it once the thread slept a whole longest spin without
     * a request. KVM's halt polling adapts the same way. 0: no spin. */
    const uint64_t base_ns = (uint64_t)m->cfg->busy_poll_us * 1000;
    uint64_t spin_ns = base_ns, last = 0, asleep_since = 0;

    for (;;) {
        /* A ring is read on each turn; before the thread sleeps, each
         * ring's client is told to ring the doorbell (ring_arm). */
        uint64_t now = kvs_clock_mono_ns();
        bool sleep = now - last >= spin_ns && ring_arm(m, true);
        int n = epoll_wait(m->epfd, evs, 32, sleep ? 5 : 0);
        bool work = n > 0;

        if (sleep) {
            (void)ring_arm(m, false);
            if (!asleep_since)
                asleep_since = now;
        }
        now = kvs_clock_mono_ns();

        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &m->efd)
                return NULL;
            if (evs[i].data.ptr == &m->lfd)
                accept_one(m);
            else if (evs[i].data.ptr == &m->dq)
                kvs_diskq_poll(m->dq); /* cold views read: answered */
            else
                readable(m, evs[i].data.ptr, evs[i].events);
        }
        for (sess_t *s = m->sessions, *next; s; s = next) {
            next = s->next; /* s may be closed */
            if (s->ring)
                (void)ring_poll(m, s, &work);
        }
        if (work) {
            if (asleep_since)
                spin_ns = now - asleep_since < SPIN_GROW * base_ns
                              ? KVS_MIN(2 * spin_ns, SPIN_GROW * base_ns)
                              : base_ns;
            asleep_since = 0;
            last = now;
        }
        if (now - m->last_sweep_ns >= SWEEP_NS) {
            sweep(m, now);
            m->last_sweep_ns = now;
        }
    }
}

/* ---- start and stop ----------------------------------------------- */

static int listen_unix(kvs_shm_t *m, const char *path, int gid)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        kvs_error("daemon.shm_socket: '%s' is longer than %zu bytes", path,
                  sizeof(sa.sun_path) - 1);
        return KVS_ECONFIG;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            kvs_error("daemon.shm_socket: '%s' exists and is not a socket; "
                      "remove it or choose another path",
                      path);
            return KVS_ECONFIG;
        }
        unlink(path); /* a stale socket of an earlier daemon */
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    m->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (m->lfd < 0)
        return -errno;
    /* The socket is created with the mode the umask leaves: no window in
     * which another user could connect before the chmod below. */
    old = umask(0177);
    ret = bind(m->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (ret != 0) {
        ret = -errno;
        kvs_error("daemon.shm_socket: cannot bind '%s': %s", path,
                  strerror(-ret));
        return ret;
    }
    snprintf(m->path, sizeof(m->path), "%s", path);
    if (gid >= 0 &&
        (chown(path, (uid_t)-1, (gid_t)gid) != 0 || chmod(path, 0660) != 0)) {
        ret = -errno;
        kvs_error("daemon.shm_group: cannot give '%s' to group %d: %s", path,
                  gid, strerror(-ret));
        return ret;
    }
    if (listen(m->lfd, 64) != 0)
        return -errno;
    return 0;
}

static int add_fd(kvs_shm_t *m, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};

    return epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int kvs_shm_start(const kvs_server_config_t *cfg, kvs_store_t *store,
                  kvs_shm_t **out)
{
    kvs_shm_t *m;
    int ret;

    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->cfg = cfg;
    m->store = store;
    m->lfd = m->efd = m->epfd = -1;
    m->arena_fd = kvs_store_arena_fd(store);
    m->abase = kvs_store_arena(store, &m->alen);
    if (m->arena_fd < 0) {
        kvs_error("daemon.shm_socket: the DRAM arena is not on a memfd "
                  "(store.dram_shared)");
        ret = KVS_ECONFIG;
        goto err_free;
    }
    ret = listen_unix(m, cfg->shm_socket, cfg->shm_gid);
    if (ret)
        goto err_free;
    m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->efd < 0 || m->epfd < 0) {
        ret = -errno;
        goto err_free;
    }
    ret = kvs_diskq_create(cfg->io_threads ? cfg->io_threads : 1, &m->dq);
    if (ret)
        goto err_free;
    ret = add_fd(m, m->lfd, &m->lfd);
    if (!ret)
        ret = add_fd(m, m->efd, &m->efd);
    if (!ret)
        ret = add_fd(m, kvs_diskq_fd(m->dq), &m->dq);
    if (ret)
        goto err_free;
    ret = -pthread_create(&m->thread, NULL, shm_thread, m);
    if (ret)
        goto err_free;
    m->started = true;
    kvs_info("shared memory: %s (mode %s), %zu MiB arena", cfg->shm_socket,
             cfg->shm_gid >= 0 ? "0660" : "0600", m->alen >> 20);
    *out = m;
    return 0;

err_free:
    kvs_shm_stop(m);
    return ret;
}

void kvs_shm_stop(kvs_shm_t *m)
{
    if (!m)
        return;
    if (m->started) {
        uint64_t one = 1;

        if (write(m->efd, &one, sizeof(one)) != sizeof(one))
            kvs_warn("shm: cannot wake the thread: %s", strerror(errno));
        pthread_join(m->thread, NULL);
    }
    /* Cold views' reads end here (done() on this thread, no replies). */
    m->stopping = true;
    kvs_diskq_destroy(m->dq);
    while (m->sessions)
        kvs_shm_sess_close(m, m->sessions);
    if (m->lfd >= 0)
        close(m->lfd);
    if (m->path[0])
        unlink(m->path);
    if (m->efd >= 0)
        close(m->efd);
    if (m->epfd >= 0)
        close(m->epfd);
    free(m);
}
