/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared-memory protocol (docs/protocol.md section 11): what a client
 * on the daemon's host and kvstashd exchange over the Unix-domain socket
 * beside the UCX listener (daemon.shm_socket), byte by byte.
 *
 * The socket is SOCK_SEQPACKET: one packet is one frame, the same 32-byte
 * header as over UCX (kvstash/wire.h: magic, version, opcode, flags,
 * request id, body_len, status, count) and a fixed body per opcode; there
 * is never a payload, since block bytes are written and read in place in
 * the arena. The daemon's reply to ATTACH carries the arena's memfd as
 * SCM_RIGHTS ancillary data. Requests are answered in order, one reply
 * each. Every integer is little-endian; decoding checks every length.
 */
#ifndef KVSTASH_WIRE_SHM_H
#define KVSTASH_WIRE_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif

#include "kvstash/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opcodes of the shm socket only (never sent over UCX). */
enum kvs_wire_shm_op {
    KVS_OP_SHM_ATTACH = 40,  /* token, namespace -> arena size; memfd */
    KVS_OP_SHM_RESERVE = 41, /* key, parent, part lens -> id, offset */
    KVS_OP_SHM_COMMIT = 42,  /* id -> status: checksummed, visible */
    KVS_OP_SHM_ABORT = 43,   /* id -> status: the space is freed */
    KVS_OP_SHM_VIEW = 44,    /* key, lease_ms -> id, offset, part lens */
    KVS_OP_SHM_RELEASE = 45, /* id -> 0, or KVS_EEXPIRED */
    KVS_OP_SHM_RING = 46,    /* slots, slot size; ring memfd -> status */
};

/* ATTACH's features, asked in the request and granted (the subset the
 * daemon accepts) in the reply's count. */
#define KVS_WIRE_SHM_FEAT_RING 1u /* the session may move to a ring */

/*
 * The request ring (docs/protocol.md 11.6). After a granted RING, the
 * session's requests and replies no longer cross the socket: they are
 * frames in two rings of fixed slots in a memfd the client made and
 * passed with RING, which both processes map. A slot is a u32 frame
 * length (host byte order: both ends are on one host) and the frame.
 * The control words, u32 counters in host order that only grow (mod
 * 2^32), each written by one side only:
 */
#define KVS_WIRE_SHM_RING_SLOTS 64u  /* per ring, a power of two */
#define KVS_WIRE_SHM_RING_SLOT 4352u /* bytes per slot, 64-byte lines */
#define KVS_WIRE_SHM_RING_CTL 256u   /* the control words' part */
#define KVS_WIRE_SHM_RING_SQ_TAIL 0u /* client: requests written */
#define KVS_WIRE_SHM_RING_CQ_HEAD 4u /* client: replies read */
#define KVS_WIRE_SHM_RING_CLI_WAIT                                             \
    8u                                 /* client: 1 while asleep on the        \
                                          socket: ring it after a reply */
#define KVS_WIRE_SHM_RING_SQ_HEAD 128u /* daemon: requests read */
#define KVS_WIRE_SHM_RING_CQ_TAIL 132u /* daemon: replies written */
#define KVS_WIRE_SHM_RING_SRV_WAIT                                             \
    136u /* daemon: 1 while asleep: ring it                                    \
            after a request */
/* Requests' slots from CTL, then replies' slots. */
#define KVS_WIRE_SHM_RING_BYTES                                                \
    (KVS_WIRE_SHM_RING_CTL +                                                   \
     2u * KVS_WIRE_SHM_RING_SLOTS * KVS_WIRE_SHM_RING_SLOT)
#define KVS_WIRE_SHM_RING_REQ 8u /* RING's body: u32 slots, u32 slot size */

#define KVS_WIRE_SHM_ATTACH_FIXED 16u /* features, lens, elem_size, rsvd */
#define KVS_WIRE_SHM_ATTACH_REP                                                \
    24u                                 /* arena_len, max_block, lease_max,    \
                                           stream_key */
#define KVS_WIRE_SHM_RESERVE_FIXED 32u  /* before key, parent, part lens */
#define KVS_WIRE_SHM_RESERVE_REP 24u    /* id, off, len */
#define KVS_WIRE_SHM_ID_SIZE 8u         /* COMMIT, ABORT, RELEASE */
#define KVS_WIRE_SHM_VIEW_FIXED 8u      /* lease_ms, key_len, rsvd */
#define KVS_WIRE_SHM_VIEW_REP_FIXED 40u /* before the part lens */
/* The largest frame: a reservation with every key and part at its limit. */
#define KVS_WIRE_SHM_FRAME_MAX                                                 \
    (KVS_WIRE_HDR_SIZE + KVS_WIRE_SHM_RESERVE_FIXED + 2 * KVS_KEY_MAX +        \
     4 * KVS_PARTS_MAX)
_Static_assert(KVS_WIRE_SHM_FRAME_MAX + 4 <= KVS_WIRE_SHM_RING_SLOT,
               "a ring slot holds the largest frame and its length");

#ifndef __cplusplus /* C11 atomics */
/* A control word of a mapped ring (KVS_WIRE_SHM_RING_SQ_TAIL, ...); C11
 * atomics on it work across the two processes. */
static inline _Atomic uint32_t *kvs_wire_shm_ring_word(uint8_t *ring,
                                                       uint32_t off)
{
    return (_Atomic uint32_t *)(void *)(ring + off);
}

/* Message n's slot: of the requests' ring, or of the replies'. */
static inline uint8_t *kvs_wire_shm_ring_slot(uint8_t *ring, int replies,
                                              uint32_t n)
{
    return ring + KVS_WIRE_SHM_RING_CTL +
           (size_t)((replies ? KVS_WIRE_SHM_RING_SLOTS : 0) +
                    (n & (KVS_WIRE_SHM_RING_SLOTS - 1))) *
               KVS_WIRE_SHM_RING_SLOT;
}

/* Writes a frame of len bytes as message n of a ring (the replies' one
 * when replies), then publishes n + 1 at the writer's tail word tail_off
 * (release). Returns whether the reader sleeps and wants a doorbell: its
 * flag at wait_off, read after a full fence, against the reader's "flag,
 * fence, look again" before it sleeps, so that one of the two sees the
 * other's store. */
static inline int kvs_wire_shm_ring_push(uint8_t *ring, int replies, uint32_t n,
                                         const void *frame, uint32_t len,
                                         uint32_t tail_off, uint32_t wait_off)
{
    uint8_t *slot = kvs_wire_shm_ring_slot(ring, replies, n);

    memcpy(slot, &len, 4);
    memcpy(slot + 4, frame, len);
    atomic_store_explicit(kvs_wire_shm_ring_word(ring, tail_off), n + 1,
                          memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(kvs_wire_shm_ring_word(ring, wait_off),
                                memory_order_relaxed) != 0;
}

/* The reader's side: copies message n of a ring into dst (room for
 * KVS_WIRE_SHM_FRAME_MAX bytes) once the writer's tail word tail_off
 * (acquire) is past it, then publishes n + 1 at the reader's head word
 * head_off (release). Returns the frame's length; 0 when nothing is past
 * n yet; -1 when the ring does not add up (the tail more than a ring
 * ahead of n, or a length under a header or over the largest frame), and
 * nothing is taken then. The slot is read once, into dst, so that a
 * writer changing it meanwhile changes only that copy. */
static inline int kvs_wire_shm_ring_pop(uint8_t *ring, int replies, uint32_t n,
                                        void *dst, uint32_t tail_off,
                                        uint32_t head_off)
{
    uint32_t tail = atomic_load_explicit(kvs_wire_shm_ring_word(ring, tail_off),
                                         memory_order_acquire);
    uint8_t *slot = kvs_wire_shm_ring_slot(ring, replies, n);
    uint32_t len;

    if (tail == n)
        return 0;
    memcpy(&len, slot, 4);
    if (tail - n > KVS_WIRE_SHM_RING_SLOTS || len < KVS_WIRE_HDR_SIZE ||
        len > KVS_WIRE_SHM_FRAME_MAX)
        return -1;
    memcpy(dst, slot + 4, len);
    atomic_store_explicit(kvs_wire_shm_ring_word(ring, head_off), n + 1,
                          memory_order_release);
    return (int)len;
}
#endif

/* A shm message in host form; see kvs_wire_msg_t for the conventions.
 * hdr.count is the number of parts for RESERVE and the VIEW reply, the
 * features granted for the ATTACH reply, else 0. */
typedef struct kvs_wire_shm_msg {
    kvs_wire_hdr_t hdr;
    union {
        struct {
            uint32_t features; /* 0 today */
            uint8_t elem_size;
            kvs_wire_bytes_t token; /* 0..KVS_WIRE_TOKEN_MAX bytes */
            kvs_wire_bytes_t ns;    /* 1..KVS_NS_NAME_MAX bytes */
        } attach;
        struct {
            uint64_t arena_len; /* bytes of the memfd to map */
            uint32_t max_block; /* bytes of one block, all parts */
            uint32_t lease_max_ms;
            uint64_t stream_key; /* names this session to the UCX side: a
                                    streaming put in place carries it
                                    (docs/protocol.md 11.4) */
        } attach_rep;
        struct {
            kvs_wire_bytes_t key;    /* 1..KVS_KEY_MAX */
            kvs_wire_bytes_t parent; /* 0..KVS_KEY_MAX */
            uint8_t cls;
            uint8_t elem_size;
            uint32_t flags; /* KVS_WIRE_PUT_DURABLE only */
            uint64_t ttl_ms;
            uint64_t group;
            const uint32_t *part_lens; /* hdr.count entries */
        } reserve;
        struct {                /* RESERVE and VIEW replies */
            uint64_t id;        /* names the reservation or the lease */
            uint64_t off;       /* of the block's first byte in the arena */
            uint64_t len;       /* bytes, all parts, back to back */
            uint8_t tier;       /* VIEW: enum kvs_tier it was found in */
            uint8_t cls;        /* VIEW */
            uint64_t expiry_ns; /* VIEW: the lease ends at this
                                   CLOCK_MONOTONIC time (the host's) */
            const uint32_t *part_lens; /* VIEW: hdr.count entries */
        } block;
        struct {
            uint64_t id;
        } id; /* COMMIT, ABORT, RELEASE */
        struct {
            uint32_t slots;     /* KVS_WIRE_SHM_RING_SLOTS */
            uint32_t slot_size; /* KVS_WIRE_SHM_RING_SLOT */
        } ring;                 /* RING (the memfd as SCM_RIGHTS) */
        struct {
            uint32_t lease_ms; /* 0: the daemon's default */
            kvs_wire_bytes_t key;
        } view;
    } u;
} kvs_wire_shm_msg_t;

/* Encodes msg (magic, version and body_len computed) into buf. 0, -ENOBUFS
 * or -EINVAL (a length over a limit, an unknown opcode). */
int kvs_wire_shm_encode(const kvs_wire_shm_msg_t *msg, void *buf, size_t cap,
                        size_t *len_out);

/*
 * Decodes one packet of len bytes. part_lens (KVS_PARTS_MAX entries) holds
 * the decoded part lengths; byte strings point into buf. 0, KVS_EPROTO
 * (malformed, trailing bytes, unknown opcode or flags), KVS_EPROTO_VERSION
 * or KVS_ETOOBIG (a key or a count over its limit); msg_out->hdr is filled
 * whenever the header could be read, so that the reply names the request.
 */
int kvs_wire_shm_decode(const void *buf, size_t len, uint32_t *part_lens,
                        kvs_wire_shm_msg_t *msg_out);

#ifdef __cplusplus
}
#endif
#endif
