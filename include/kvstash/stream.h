/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming between sidecars, client side. Include kvstash/kvstash.h, which
 * includes this.
 *
 * Prefill/decode disaggregation: the prefill worker puts a block part by
 * part (layer by layer) into its own sidecar with kvs_stream_put_*; the
 * decode worker asks its own sidecar to fetch a chain of blocks from the
 * prefill side's sidecar (a peer) with kvs_stream_fetch(), and waits for
 * part i of block k with kvs_stream_wait() (the shape of vLLM's
 * wait_for_layer_load). Parts are delivered in order, as soon as each is
 * done on the prefill side, also while later parts are still being put.
 * Each part's bytes are written once, by UCX, from the decode sidecar's
 * memory into the caller's buffer; or, in place (clients that map their
 * sidecars' arenas, kvstash/shm.h), not at all: the prefill worker writes
 * each part into its sidecar's arena (kvs_stream_put_begin_inplace), the
 * decode worker reads it where it landed in its own sidecar's arena
 * (blocks without a buffer, kvs_stream_data), and the one copy is the one
 * between the sidecars. Blocks fetched are stored in the decode sidecar
 * too, so the next turn hits locally.

 *
 * A block being put or fetched is invisible to match, get and exists on
 * either sidecar until it is complete and sealed. A peer that dies or is
 * cut off fails exactly the blocks not yet complete, with KVS_EPEER,
 * within the sidecars' peer timeout plus one second.
 *
 * The objects below belong to the client they were made with: same thread
 * rules, and every one must be destroyed (or sealed or aborted) before
 * kvs_client_destroy().
 */
#ifndef KVSTASH_STREAM_H
#define KVSTASH_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"
#include "kvstash/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef KVS_API_VERSION
#error "include kvstash/kvstash.h, not kvstash/stream.h"
#endif

typedef struct kvs_stream_fetch kvs_stream_fetch_t;
typedef struct kvs_stream_put kvs_stream_put_t;

/* kvs_stream_wait()'s part for "the whole block, stored on the sidecar". */
#define KVS_STREAM_BLOCK UINT32_MAX

/* ---- streaming put ------------------------------------------------- */

/*
 * Begins a block of nparts parts of part_lens[i] bytes (the array is read
 * during the call only). The block is reserved in the sidecar; parts follow
 * with kvs_stream_put_part() in any order; kvs_stream_put_seal() makes it
 * visible. With push_peer (a peer name from the sidecar's config, or
 * "ip:port"), the sidecar also streams the block into that peer's store as
 * its parts arrive (routing decided before prefill), and seal reports the
 * peer's result too. cls is an enum kvs_class, flags KVS_CLIENT_PUT_*.
 * *put_out is the caller's until seal or abort. Errors of the begin itself
 * are reported by seal.
 */
KVS_API int kvs_stream_put_begin(kvs_client_t *client,
                                 const kvs_client_key_t *key,
                                 const uint32_t *part_lens, uint32_t nparts,
                                 uint8_t cls, uint32_t flags,
                                 const char *push_peer,
                                 kvs_stream_put_t **put_out);
/* Everything a streaming put can carry, as an ordinary put does
 * (kvs_client_put_t): since libkvstash 0.6. */
typedef struct kvs_stream_put_args {
    kvs_client_key_t key;
    kvs_client_key_t parent;   /* len 0: no parent (a chain's previous) */
    const uint32_t *part_lens; /* nparts entries, read during the call */
    uint32_t nparts;           /* 1..KVS_PARTS_MAX */
    uint32_t flags;            /* KVS_CLIENT_PUT_* */
    uint8_t cls;               /* enum kvs_class */
    uint8_t inplace;           /* 1: as kvs_stream_put_begin_inplace() */
    uint64_t ttl_ms;           /* 0: none */
    uint64_t group;            /* conversation or user id; 0: none */
    const char *push_peer;     /* NULL, or as kvs_stream_put_begin() */
} kvs_stream_put_args_t;

/* kvs_stream_put_begin() (or _inplace) with parent, TTL and group: stored
 * with the block on the sidecar, and on the push peer with push_peer. */
KVS_API int kvs_stream_put_open(kvs_client_t *client,
                                const kvs_stream_put_args_t *args,
                                kvs_stream_put_t **put_out);
/* Sends one part; buf may be reused when this returns. */
KVS_API int kvs_stream_put_part(kvs_stream_put_t *put, uint32_t part,
                                const void *buf, size_t len);
/* Posts one part and returns at once, so that several parts are in flight
 * (a prefill engine saving layer after layer). buf must stay unchanged
 * until kvs_stream_put_seal() or kvs_stream_put_abort() returns; both wait
 * for every posted part. Since libkvstash 0.3. */
KVS_API int kvs_stream_put_part_nb(kvs_stream_put_t *put, uint32_t part,
                                   const void *buf, size_t len);
/*
 * In place (since libkvstash 0.6). As kvs_stream_put_begin(), but the
 * caller writes each part where kvs_stream_put_buf() says and then
 * commits it with kvs_stream_put_commit(); part i is streamed on (to a
 * fetching or pushed peer) as soon as it and every part before it are
 * committed. With a client that maps its sidecar's arena (kvstash/shm.h)
 * the buffers are the block's bytes in the arena: no copy into the
 * sidecar (the first kvs_stream_put_buf() waits for the sidecar's answer
 * to the begin, one round trip: begin the next block before writing this
 * one and it is hidden; a refused begin is its error).
 * Without one they are a buffer of the library's (one per block) and a
 * commit sends the part: the same code runs on any host. The sidecar
 * computes the block's checksum at seal, over what the arena holds then;
 * bytes of part i written after its commit may already have been streamed
 * to a peer as they were: do not write a part after committing it.
 * A client that goes away (killed) before seal leaves nothing visible:
 * the sidecar drops the block and reclaims its space.
 */
KVS_API int kvs_stream_put_begin_inplace(kvs_client_t *client,
                                         const kvs_client_key_t *key,
                                         const uint32_t *part_lens,
                                         uint32_t nparts, uint8_t cls,
                                         uint32_t flags, const char *push_peer,
                                         kvs_stream_put_t **put_out);
/* Where part's part_lens[part] bytes go; valid until seal or abort.
 * -ERANGE: no such part; -EOPNOTSUPP: put not begun in place. */
KVS_API int kvs_stream_put_buf(kvs_stream_put_t *put, uint32_t part,
                               void **buf_out, size_t *len_out);
/* Part's bytes are written: the sidecar may stream them. Returns once
 * posted. -ERANGE: no such part; -EALREADY: committed before; the put's
 * error once it failed. Seal with a part not committed: KVS_EINCOMPLETE. */
KVS_API int kvs_stream_put_commit(kvs_stream_put_t *put, uint32_t part);
/* Waits until the block is sealed (and pushed), returns the result, and
 * frees put. KVS_EINCOMPLETE if parts are missing. */
KVS_API int kvs_stream_put_seal(kvs_stream_put_t *put);
/* Drops the block and frees put. NULL is a no-op. */
KVS_API void kvs_stream_put_abort(kvs_stream_put_t *put);

/* ---- streaming fetch ----------------------------------------------- */

/* One block to fetch into buf (cap bytes, the caller's until the fetch is
 * destroyed). buf NULL (since 0.6): read it in place with kvs_stream_data()
 * -- in the sidecar's arena when the client maps it (kvstash/shm.h; no
 * copy at all), else in a buffer of the library's. */
typedef struct kvs_stream_block {
    kvs_client_key_t key;
    void *buf;
    size_t cap;
} kvs_stream_block_t;

/* What is known of one block of a fetch. */
typedef struct kvs_stream_info {
    int status;             /* 0, or why the block failed */
    int complete;           /* 1: every part in, stored on sidecar */
    uint32_t nparts;        /* 0 until the peer announced the block */
    uint32_t parts_in;      /* parts landed in buf */
    uint64_t len;           /* bytes of the block */
    uint64_t first_part_ns; /* monotonic: first part landed; 0: none */
    uint64_t complete_ns;   /* monotonic: complete; 0: not yet */
} kvs_stream_info_t;

/* The most blocks one fetch names (a whole prompt: thousands of keys). */
#define KVS_STREAM_FETCH_MAX (1u << 20)

/*
 * Asks the client's sidecar to fetch blocks[0..n) (a chain, in order) from
 * peer, a name from the sidecar's config or "ip:port". wait_ms is how long
 * the peer waits for a block that nobody has begun to put yet (0: it must
 * exist or be in progress). n is 1..KVS_STREAM_FETCH_MAX: the keys go in as
 * many messages as they need (since 0.6; before, one: about 60 keys of 64
 * bytes). *fetch_out is the caller's until kvs_stream_fetch_destroy().
 */
KVS_API int kvs_stream_fetch(kvs_client_t *client, const char *peer,
                             const kvs_stream_block_t *blocks, size_t n,
                             uint32_t wait_ms, kvs_stream_fetch_t **fetch_out);
/*
 * Waits until part `part` of block `block` has landed in its buffer (or,
 * with KVS_STREAM_BLOCK, until the whole block is in and stored on the
 * sidecar). Returns 0, the block's error if it failed first, -ETIMEDOUT
 * after timeout_ms (-1: no limit), or KVS_EPEER when the sidecar is gone.
 */
KVS_API int kvs_stream_wait(kvs_stream_fetch_t *fetch, uint32_t block,
                            uint32_t part, int timeout_ms);
/* What is known of block now (no progress is made). */
KVS_API int kvs_stream_info(const kvs_stream_fetch_t *fetch, uint32_t block,
                            kvs_stream_info_t *info_out);
/*
 * Where part `part` of block `block` (KVS_STREAM_BLOCK: the whole block)
 * lies, once kvs_stream_wait() said it landed: -EAGAIN before, the block's
 * error if it failed. The bytes stay valid and unchanged until
 * kvs_stream_fetch_destroy(): in place, the sidecar holds the block (a
 * live block by its reservation, a sealed one by a reference) for this
 * fetch until then, but a sealed block at most daemon.lease_max_ms after
 * its seal: after that this returns KVS_EEXPIRED, and bytes read after
 * the lease's end must be discarded (copy out what must last longer).
 * A block that failed after its parts were read (its
 * error from kvs_stream_wait(block, KVS_STREAM_BLOCK), e.g. KVS_EEXPIRED:
 * evicted before the sidecar could hold it) must be discarded. Since 0.6.
 */
KVS_API int kvs_stream_data(const kvs_stream_fetch_t *fetch, uint32_t block,
                            uint32_t part, const void **data_out,
                            size_t *len_out);
/* Cancels what is still coming (blocks not complete are dropped by the
 * sidecars), waits until nothing writes into the buffers any more, and
 * frees fetch. NULL is a no-op. */
KVS_API void kvs_stream_fetch_destroy(kvs_stream_fetch_t *fetch);

#ifdef __cplusplus
}
#endif
#endif
