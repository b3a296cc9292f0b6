/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Zero copy with the daemon on the same host. Include kvstash/kvstash.h,
 * which includes this.
 *
 * A client created with KVS_CLIENT_PARAM_SHM_SOCKET (or with the
 * environment variable KVSTASH_SHM_SOCKET set) whose daemon offers shared
 * memory to its tenant (HELLO feature KVS_WIRE_FEAT_SHM) maps the daemon's
 * DRAM arena at create. Then:
 *
 *  - put without a copy: kvs_shm_reserve() returns where the block's bytes
 *    go in the mapping; the caller writes them there (a GPU copies straight
 *    into it); kvs_shm_commit() makes the block visible. The daemon, not
 *    the caller, computes the block's checksum at commit, over the bytes
 *    the arena holds then, and rewrites the part table from its own copy
 *    of the lengths: the client is not trusted with the block's integrity
 *    record. Bytes written after commit are not covered (a disk read of
 *    the block would then fail its checksum and count as a miss).
 *    kvs_shm_abort() drops a reservation; the daemon drops every
 *    reservation of a client that goes away.
 *  - get without a copy: kvs_shm_view() takes a lease on a block (read
 *    into the arena first if it is on NVMe only) and returns where its
 *    bytes are in the mapping. While the lease holds, the daemon never
 *    frees, moves or reuses those bytes. kvs_shm_release() ends the lease
 *    and says whether it held until then: 0, or KVS_EEXPIRED when it ran
 *    out first (lease_ms, capped by daemon.lease_max_ms); the bytes may
 *    then have been reused for another block while they were read, so
 *    whatever was read under an expired lease must be discarded.
 *  - kvs_shm_get() and kvs_shm_put() are the one-copy forms (into or from
 *    the caller's buffer), and fall back to kvs_client_get() and
 *    kvs_client_put() when the client is not attached: code written
 *    against them runs everywhere.
 *
 * Who may attach: the socket is mode 0600 (the daemon's user) or 0660 with
 * daemon.shm_group; the daemon also checks the peer's uid or gid
 * (SO_PEERCRED) and that the token's tenant is marked tenant.NAME.shm =
 * true (every client may when no tenants are configured). A mapped client
 * can read and write every block of the arena, of every namespace:
 * docs/operations.md says when to allow it.
 *
 * Not thread-safe, like the client. Pointers into the mapping are valid
 * until kvs_client_destroy().
 */
#ifndef KVSTASH_SHM_H
#define KVSTASH_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"
#include "kvstash/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef KVS_API_VERSION
#error "include kvstash/kvstash.h, not kvstash/shm.h"
#endif

/* A reserved or viewed block, in this process's mapping of the arena. */
typedef struct kvs_shm_block {
    uint64_t id;  /* names it to commit, abort or release */
    void *data;   /* the block's first byte; its parts back to back */
    uint64_t len; /* bytes, all parts */
    uint32_t nparts;
    uint8_t tier; /* view: enum kvs_tier the block was found in */
    uint8_t cls;  /* view: enum kvs_class */
    uint64_t lease_end_ns; /* view: the lease ends at this CLOCK_MONOTONIC
                              time; bytes read before it are the block's */
} kvs_shm_block_t;

/* 0 when the arena is mapped; else why not: -EOPNOTSUPP (no socket
 * configured, or the daemon does not offer it to this tenant), KVS_EAUTH
 * (refused: uid, tenant), or the -errno of the socket or the mapping. */
KVS_API int kvs_shm_status(const kvs_client_t *client);

/* Reserves a block of put->nparts parts of put->parts[i].len bytes each
 * (parts[i].base is not read; put->status is not set). -EOPNOTSUPP when
 * not attached; KVS_EFULL, KVS_ETOOBIG, KVS_EBUSY as kvs_client_put.
 * -EAGAIN when DRAM is full of blocks not yet written to disk: the
 * daemon's shared-memory thread, which serves every mapped client, never
 * waits for room. Try again later, or kvs_client_put(), which waits for
 * room (up to store.full_wait_ms) on the daemon's I/O threads;
 * kvs_shm_put() and kvs_shm_put_batch() fall back to it themselves. */
KVS_API int kvs_shm_reserve(kvs_client_t *client, const kvs_client_put_t *put,
                            kvs_shm_block_t *block_out);
/* Makes a reserved block visible (and durable with KVS_CLIENT_PUT_DURABLE
 * in the reservation's flags). The reservation is spent either way. */
KVS_API int kvs_shm_commit(kvs_client_t *client, uint64_t id);
KVS_API int kvs_shm_abort(kvs_client_t *client, uint64_t id);
/* Commit without waiting: *status is 1 until the reply has been read (by
 * any later kvs_shm_* call of this client, or kvs_shm_flush), then what
 * kvs_shm_commit would have returned; it must stay valid until then. The
 * block is visible once *status is 0. Lets the daemon checksum one block
 * while the caller writes the next (reserve the next block first: requests
 * are answered in order). At most 32 are outstanding; a 33rd waits for
 * the oldest. Returns 0 once posted. */
KVS_API int kvs_shm_commit_nb(kvs_client_t *client, uint64_t id, int *status);
/* Waits until every request posted without waiting is answered. 0, or the
 * connection's failure (each outstanding *status gets it too). */
KVS_API int kvs_shm_flush(kvs_client_t *client);

/* A leased view of a block; lease_ms 0: the daemon's default. part_lens
 * (optional, part_cap entries) receives each part's length; -ENOBUFS (and
 * no lease) when part_cap is too small. KVS_ENOTFOUND when absent. */
KVS_API int kvs_shm_view(kvs_client_t *client, const void *key,
                         uint32_t key_len, uint32_t lease_ms,
                         uint32_t *part_lens, uint32_t part_cap,
                         kvs_shm_block_t *block_out);
/* Ends a view's lease: 0, or KVS_EEXPIRED (see above); KVS_ENOTFOUND for
 * an id that is not a view of this client. */
KVS_API int kvs_shm_release(kvs_client_t *client, uint64_t id);

/* One copy into buf (cap bytes); *len_out gets the block's length, also
 * with -ENOBUFS. One round trip: the copy is known good when it ended
 * before the lease's end (the host's one monotonic clock), so the release
 * is sent without waiting for its answer; a copy that ended after it is
 * done again. */
KVS_API int kvs_shm_get(kvs_client_t *client, const void *key,
                        uint32_t key_len, void *buf, size_t cap,
                        size_t *len_out);
/* One copy from buf (len bytes, one part): reserve, copy, commit. */
KVS_API int kvs_shm_put(kvs_client_t *client, const void *key,
                        uint32_t key_len, const void *buf, size_t len,
                        uint32_t flags);

/* Batches (libkvstash 0.7): n blocks, each copied once, with up to 8
 * requests posted ahead so that the daemon answers block i+1 while this
 * thread copies block i (one request at a time, each copy waits a round
 * trip, and on a VM the wake-up of the daemon's thread). Each item's
 * status is set; the return is 0 when all succeeded, else the first
 * failing item's status, or the connection's failure. Without a mapping
 * they are kvs_client_get_batch(client, items, n, 0) and
 * kvs_client_put_batch().
 *
 * get: items[i].buf receives the block (cap bytes; -ENOBUFS, with len
 * set, when it does not fit), part_lens (optional) its part lengths;
 * items[i].mr is not used. A copy that ended after its lease is made
 * again, up to 3 times in all (then KVS_EEXPIRED). kvs_shm_get and
 * kvs_shm_put are these with n = 1.
 *
 * put: each item's parts are copied back to back into its reservation,
 * which is committed without waiting; the call returns once every commit
 * is answered (each block visible when its status is 0). */
KVS_API int kvs_shm_get_batch(kvs_client_t *client, kvs_client_get_t *items,
                              size_t n);
KVS_API int kvs_shm_put_batch(kvs_client_t *client, kvs_client_put_t *items,
                              size_t n);

#ifdef __cplusplus
}
#endif
#endif
