/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A thin io_uring wrapper for one data file: the file and the caller's
 * buffers are registered once at create, reads and writes are queued and
 * submitted in batches, and completions are handed to a callback.
 *
 * Not thread-safe: one owner at a time (the store gives each ring its own
 * lock). Buffers passed in stay owned by the caller and must outlive every
 * operation queued on them.
 */
#ifndef KVS_RING_H
#define KVS_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct kvs_ring kvs_ring_t;

/*
 * Sets up a ring of depth entries, registers fd as fixed file 0 and bufs as
 * fixed buffers 0..nbufs-1 (nbufs may be 0). Returns KVS_EURING when the
 * kernel refuses io_uring (the cause, e.g. seccomp or
 * kernel.io_uring_disabled, is logged), -errno for other failures.
 */
int kvs_ring_create(unsigned depth, int fd, const struct iovec *bufs,
                    unsigned nbufs, kvs_ring_t **ring_out);
void kvs_ring_destroy(kvs_ring_t *ring);

/* Queues one read or write of len bytes at file offset off. buf_index is
 * the registered buffer that contains buf, or -1. -EBUSY when the queue is
 * full (reap first). user_data comes back in the completion. */
int kvs_ring_read(kvs_ring_t *ring, int buf_index, void *buf, size_t len,
                  uint64_t off, uint64_t user_data);
int kvs_ring_write(kvs_ring_t *ring, int buf_index, const void *buf, size_t len,
                   uint64_t off, uint64_t user_data);
/* Queues one write of niov pieces (1..2) gathered from unregistered memory.
 * iov must stay valid until the operation completes. */
int kvs_ring_writev(kvs_ring_t *ring, const struct iovec *iov, unsigned niov,
                    uint64_t off, uint64_t user_data);

/* Submits what is queued. Returns the number submitted or -errno. */
int kvs_ring_submit(kvs_ring_t *ring);

/* Called per completion with the operation's result: the byte count, or
 * -errno. A short transfer is reported as -EIO. */
typedef void (*kvs_ring_cb)(void *arg, uint64_t user_data, int res);

/* Waits until at least min operations completed (0: only what is ready)
 * and calls cb for each. Returns the number reaped or -errno. */
int kvs_ring_reap(kvs_ring_t *ring, unsigned min, kvs_ring_cb cb, void *arg);

/* Operations submitted or queued and not yet reaped. */
unsigned kvs_ring_inflight(const kvs_ring_t *ring);
unsigned kvs_ring_depth(const kvs_ring_t *ring);

#endif
