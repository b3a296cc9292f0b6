/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io_uring wrapper (see ring.h). Each queued operation records its expected
 * length in a small table indexed by a slot number carried in the SQE's
 * user_data, so a short transfer becomes -EIO at one place instead of at
 * every caller. Slots come from a free stack sized to the ring's depth: no
 * allocation after create.
 */
#include "kvstore/ring.h"
#include "common/debug.h"
#include "common/log.h"
#include "kvstash/status.h"

#include <errno.h>
#include <stdbool.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

struct op {
    uint64_t user_data;
    uint32_t len; /* bytes expected */
};

struct kvs_ring {
    struct io_uring ring;
    unsigned depth;
    unsigned inflight; /* queued or submitted, not reaped */
    unsigned nfree;
    uint32_t *free_slots; /* stack of free op slots */
    struct op *ops;       /* depth entries */
};

int kvs_ring_create(unsigned depth, int fd, const struct iovec *bufs,
                    unsigned nbufs, kvs_ring_t **ring_out)
{
    kvs_ring_t *r;
    int ret;

    if (depth == 0 || depth > 4096)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->ops = calloc(depth, sizeof(*r->ops));
    r->free_slots = calloc(depth, sizeof(*r->free_slots));
    if (!r->ops || !r->free_slots) {
        ret = -ENOMEM;
        goto err_free;
    }
    ret = io_uring_queue_init(depth, &r->ring, 0);
    if (ret < 0) {
        kvs_error("io_uring_queue_init(%u): %s%s", depth, strerror(-ret),
                  ret == -EPERM || ret == -ENOSYS
                      ? " (io_uring is blocked: a container seccomp profile "
                        "or sysctl kernel.io_uring_disabled)"
                      : "");
        ret = (ret == -EPERM || ret == -ENOSYS || ret == -EACCES) ? KVS_EURING
                                                                  : ret;
        goto err_free;
    }
    ret = io_uring_register_files(&r->ring, &fd, 1);
    if (ret < 0) {
        kvs_error("io_uring_register_files: %s", strerror(-ret));
        goto err_exit_ring;
    }
    if (nbufs) {
        ret = io_uring_register_buffers(&r->ring, bufs, nbufs);
        if (ret < 0) {
            kvs_error("io_uring_register_buffers(%u): %s (is RLIMIT_MEMLOCK "
                      "too small?)",
                      nbufs, strerror(-ret));
            goto err_exit_ring;
        }
    }
    r->depth = depth;
    for (unsigned i = 0; i < depth; i++)
        r->free_slots[i] = depth - 1 - i;
    r->nfree = depth;
    *ring_out = r;
    return 0;

err_exit_ring:
    io_uring_queue_exit(&r->ring);
err_free:
    free(r->ops);
    free(r->free_slots);
    free(r);
    return ret;
}

void kvs_ring_destroy(kvs_ring_t *r)
{
    if (!r)
        return;
    /* Every operation must have been reaped: buffers may be freed next. */
    while (r->inflight)
        if (kvs_ring_reap(r, 1, NULL, NULL) < 0)
            break;
    io_uring_queue_exit(&r->ring);
    free(r->ops);
    free(r->free_slots);
    free(r);
}

static struct io_uring_sqe *ring_get(kvs_ring_t *r, size_t len,
                                     uint64_t user_data, uint32_t *slot_out)
{
    struct io_uring_sqe *sqe;

    if (r->nfree == 0 || len > UINT32_MAX)
        return NULL;
    sqe = io_uring_get_sqe(&r->ring);
    if (!sqe)
        return NULL;
    *slot_out = r->free_slots[--r->nfree];
    r->ops[*slot_out] = (struct op){user_data, (uint32_t)len};
    r->inflight++;
    return sqe;
}

static int ring_prep(kvs_ring_t *r, bool write, int buf_index, void *buf,
                     size_t len, uint64_t off, uint64_t user_data)
{
    uint32_t slot;
    struct io_uring_sqe *sqe = ring_get(r, len, user_data, &slot);

    if (!sqe)
        return -EBUSY;
    if (write && buf_index >= 0)
        io_uring_prep_write_fixed(sqe, 0, buf, (unsigned)len, off, buf_index);
    else if (write)
        io_uring_prep_write(sqe, 0, buf, (unsigned)len, off);
    else if (buf_index >= 0)
        io_uring_prep_read_fixed(sqe, 0, buf, (unsigned)len, off, buf_index);
    else
        io_uring_prep_read(sqe, 0, buf, (unsigned)len, off);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, slot);
    return 0;
}

int kvs_ring_read(kvs_ring_t *r, int buf_index, void *buf, size_t len,
                  uint64_t off, uint64_t user_data)
{
    return ring_prep(r, false, buf_index, buf, len, off, user_data);
}

int kvs_ring_write(kvs_ring_t *r, int buf_index, const void *buf, size_t len,
                   uint64_t off, uint64_t user_data)
{
    /* The kernel only reads buf for a write. */
    return ring_prep(r, true, buf_index, (void *)buf, len, off, user_data);
}

int kvs_ring_writev(kvs_ring_t *r, const struct iovec *iov, unsigned niov,
                    uint64_t off, uint64_t user_data)
{
    size_t len = 0;
    uint32_t slot;
    struct io_uring_sqe *sqe;

    kvs_assert(niov >= 1 && niov <= 2);
    for (unsigned i = 0; i < niov; i++)
        len += iov[i].iov_len;
    sqe = ring_get(r, len, user_data, &slot);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_writev(sqe, 0, iov, niov, off);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, slot);
    return 0;
}

int kvs_ring_submit(kvs_ring_t *r)
{
    int ret;

    do {
        ret = io_uring_submit(&r->ring);
    } while (ret == -EINTR);
    return ret;
}

int kvs_ring_reap(kvs_ring_t *r, unsigned min, kvs_ring_cb cb, void *arg)
{
    unsigned n = 0;

    for (;;) {
        struct io_uring_cqe *cqe;
        int ret;

        if (n >= min || r->inflight == 0)
            ret = io_uring_peek_cqe(&r->ring, &cqe);
        else
            ret = io_uring_wait_cqe(&r->ring, &cqe);
        if (ret == -EAGAIN)
            break;
        if (ret == -EINTR)
            continue;
        if (ret < 0)
            return ret;
        uint32_t slot = (uint32_t)io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        if (slot >= r->depth) {
            kvs_error("io_uring: completion for unknown slot %u", slot);
            continue;
        }
        struct op op = r->ops[slot];
        r->free_slots[r->nfree++] = slot;
        r->inflight--;
        n++;
        if (res >= 0 && (uint32_t)res != op.len)
            res = -EIO;
        if (cb)
            cb(arg, op.user_data, res);
        if (n >= min && r->inflight == 0)
            break;
    }
    return (int)n;
}

unsigned kvs_ring_inflight(const kvs_ring_t *r)
{
    return r->inflight;
}

unsigned kvs_ring_depth(const kvs_ring_t *r)
{
    return r->depth;
}
