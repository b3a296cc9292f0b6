/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kvstash wire format: what a client and kvstashd exchange, byte by
 * byte. docs/protocol.md is the prose version of this header; where they
 * disagree, this header and transport/wire.c are right and the document is
 * a bug.
 *
 * A message is a frame (a fixed 32-byte header plus a body of body_len
 * bytes) and, for PUT requests and DATA messages only, a payload: the bytes
 * of the blocks. Every integer is little-endian and fixed-width; nothing is
 * padded implicitly. Over UCX a message is one active message: a frame with
 * a payload travels in the AM header and the payload in the AM data; a frame
 * without a payload travels as the AM data with an empty AM header.
 *
 * This header is public so that clients in other languages can be written
 * against it. The codec (kvs_wire_encode / kvs_wire_decode) is pure: no I/O,
 * no allocation, no global state. Decoding never trusts a length: every
 * length and count is checked against the buffer and against the limits
 * before it is used, and a bad frame is an error code, never a crash.
 */
#ifndef KVSTASH_WIRE_H
#define KVSTASH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kvstash/status.h"
#include "kvstash/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVS_WIRE_MAGIC 0x3153564bu /* bytes "KVS1" */
#define KVS_WIRE_VERSION                                                       \
    2u /* the only version spoken today; 2                                     \
          added the stream opcodes (16-27) */
#define KVS_WIRE_HDR_SIZE 32u

/*
 * Absolute protocol limits. A daemon announces its own (smaller or equal)
 * limits in the HELLO reply; a peer never sends more than announced.
 */
#define KVS_WIRE_BODY_MAX (1u << 20) /* bytes of one body */
#define KVS_WIRE_INLINE_MAX 4608u    /* frame bytes when it has a payload */
#define KVS_WIRE_KEYS_MAX 1024u      /* entries in one batch frame */
#define KVS_WIRE_TOKEN_MAX 256u      /* bytes of an auth token */
#define KVS_WIRE_STAT_NAME_MAX 63u   /* bytes of a STAT counter name */
#define KVS_WIRE_PAYLOAD_MAX (1ull << 30) /* bytes of one payload */

/* Opcodes. A reply carries the request's opcode with KVS_WIRE_F_REPLY. */
enum kvs_wire_op {
    KVS_OP_HELLO = 1,     /* version, token, namespace -> limits */
    KVS_OP_PUT = 2,       /* n blocks; payload = their bytes */
    KVS_OP_GET = 3,       /* n keys -> n DATA messages + one reply */
    KVS_OP_DATA = 4,      /* daemon -> client: one block of a GET */
    KVS_OP_MATCH = 5,     /* n ordered keys -> leading keys present */
    KVS_OP_EXISTS = 6,    /* n keys -> n presence bytes */
    KVS_OP_DELETE = 7,    /* n keys -> n statuses */
    KVS_OP_PIN = 8,       /* n keys -> n statuses */
    KVS_OP_UNPIN = 9,     /* n keys -> n statuses */
    KVS_OP_PREFETCH = 10, /* n keys -> blocks brought into DRAM */
    KVS_OP_RELEASE = 11,  /* lease id -> status */
    KVS_OP_STAT = 12,     /* -> named counters */
    KVS_OP_VERIFY = 13,   /* -> blocks checked, blocks bad */
    KVS_OP_BIND = 14,     /* on a bulk endpoint: session, secret */
    KVS_OP_SCAN = 15,     /* group, cursor -> a page of the ns's blocks */
    /* Stream opcodes (docs/protocol.md section 9): no reply of their own;
     * req_id is the put's, fetch's or push's id. C client, D its daemon,
     * P a peer daemon. */
    KVS_OP_SPUT_BEGIN = 16, /* C->D: a streaming put; key, part lens */
    KVS_OP_SPUT_PART = 17,  /* C->D: one part; payload = its bytes */
    KVS_OP_SPUT_SEAL = 18,  /* C->D: publish -> SPUT_DONE */
    KVS_OP_SPUT_DONE = 19,  /* D->C: the seal's or abort's status */
    KVS_OP_SPUT_ABORT = 20, /* C->D: drop -> SPUT_DONE */
    KVS_OP_FETCH = 21,      /* C->D, D->P: stream these keys' blocks */
    KVS_OP_CANCEL = 22,     /* C->D, D->P: stop a fetch */
    KVS_OP_BLOCK = 23,      /* P->D, D->C: a block of a fetch begins */
    KVS_OP_PART = 24,       /* P->D, D->C: one part; payload = its bytes */
    KVS_OP_END = 25,        /* P->D, D->C, D->P: a block is done, or not */
    KVS_OP_PING = 26,       /* either way on a peer link: liveness */
    KVS_OP_PUSH = 27,       /* D->P: a block streamed into P's store */
    KVS_OP_COUNT
};

/* Header flags. */
#define KVS_WIRE_F_REPLY (1u << 0)   /* a reply to the request with this id */
#define KVS_WIRE_F_PAYLOAD (1u << 1) /* a payload follows the frame */
#define KVS_WIRE_F_KNOWN (KVS_WIRE_F_REPLY | KVS_WIRE_F_PAYLOAD)

/* Feature bits agreed in HELLO: the reply holds the bits both sides know.
 * A peer only uses a feature the other side accepted. */
#define KVS_WIRE_FEAT_LEASE (1u << 0)      /* MATCH leases, GET lease_id */
#define KVS_WIRE_FEAT_PIN_RETAIN (1u << 1) /* PIN/UNPIN KVS_WIRE_PIN_RETAIN */
#define KVS_WIRE_FEAT_PREFETCH (1u << 2)   /* PREFETCH */
#define KVS_WIRE_FEAT_VERIFY (1u << 3)     /* VERIFY */
#define KVS_WIRE_FEAT_BULK (1u << 4)       /* a second endpoint for DATA */
#define KVS_WIRE_FEAT_SCAN (1u << 5)       /* SCAN */
#define KVS_WIRE_FEAT_STREAM (1u << 6)     /* the stream opcodes */
/* Not a client's: the HELLO is a peer daemon's (token = the peer secret,
 * namespace empty); the connection is a peer link (section 9.3). */
#define KVS_WIRE_FEAT_PEER (1u << 7)
#define KVS_WIRE_FEAT_BULK_PUT                                                 \
    (1u << 8)                    /* PUT may come on the bound bulk             \
                                  * endpoint (its payload by CMA) */
/* The daemon has a shared-memory socket (kvstash/wire_shm.h) and this
 * connection's tenant may attach to it; the client learns the socket's
 * path from its own configuration. */
#define KVS_WIRE_FEAT_SHM (1u << 9)
/* The client can move: when the reply's worker_port is not 0, it closes
 * this connection and makes its connection on that port (another serving
 * thread of the same daemon, daemon.threads) instead. A moved connection
 * has no STREAM. */
#define KVS_WIRE_FEAT_MOVE (1u << 10)
/* With BULK_PUT: a second BIND, on another bulk endpoint, binds that one as
 * the connection's put endpoint, which carries PUTs only. Its client may
 * run it with another rendezvous scheme (libkvstash: the sender writes the
 * payload, docs/protocol.md section 5). */
#define KVS_WIRE_FEAT_PUT_EP (1u << 11)
/* Between daemons (with PEER): this daemon takes a PART that carries a run
 * of consecutive parts of one block, nparts of them back to back in one
 * payload (docs/protocol.md 9.2), so a sender may join parts that are
 * ready together into one transfer. */
#define KVS_WIRE_FEAT_PART_RUN (1u << 12)
#define KVS_WIRE_FEAT_ALL 0xf7fu /* every bit a client may ask */

/* MATCH flags. */
#define KVS_WIRE_MATCH_LEASE (1u << 0) /* hold the matched blocks */
/* PIN/UNPIN flags. */
#define KVS_WIRE_PIN_RETAIN (1u << 0) /* change the class, not a reference */
/* PUT entry flags (the store's KVS_PUT_* values). */
#define KVS_WIRE_PUT_DURABLE (1u << 0)
#define KVS_WIRE_PUT_NO_DRAM (1u << 1)
#define KVS_WIRE_PUT_KNOWN (KVS_WIRE_PUT_DURABLE | KVS_WIRE_PUT_NO_DRAM)
/* Stream body flags. */
#define KVS_WIRE_STREAM_PUSH (1u << 0) /* SPUT_BEGIN: a push peer follows */
/* In place in the daemon's shared arena (docs/protocol.md 9.5): on
 * SPUT_BEGIN (off = the shm session's stream key; the daemon answers with
 * BLOCK, off = where the block lies in the arena), on SPUT_PART (no
 * payload: the part was written there), on a client's FETCH (the daemon
 * sends PART without payload; BLOCK's off says where the block lies). */
#define KVS_WIRE_STREAM_INPLACE (1u << 1)
/* SPUT_BEGIN, PUSH: after the part lengths, what an ordinary put carries
 * beyond class and flags: u64 ttl_ms, u64 group, u8 parent_len, parent. */
#define KVS_WIRE_STREAM_META (1u << 2)
/* END between daemons, status 0: len is the block's XXH3-64 as the sender
 * settled it at its seal; the receiver seals its copy with it instead of
 * checksumming the bytes again (docs/protocol.md 9.2). */
#define KVS_WIRE_STREAM_SUM (1u << 3)
#define KVS_WIRE_STREAM_KNOWN                                                  \
    (KVS_WIRE_STREAM_PUSH | KVS_WIRE_STREAM_INPLACE | KVS_WIRE_STREAM_META |   \
     KVS_WIRE_STREAM_SUM)

/*
 * The frame header as it lies on the wire (offsets in bytes):
 *
 *   0      4      5      6        8               16         20       24 28 32
 *   +------+------+------+--------+----------------+----------+--------+--------+-------+
 *   |magic |vers. |opcode| flags  |  request id    | body_len | status | count
 * | rsvd  | | u32  | u8   | u8   | u16    |  u64           | u32      | i32 |
 * u32    | u32   |
 *   +------+------+------+--------+----------------+----------+--------+--------+-------+
 *
 * count is the number of entries of a batch body (keys, blocks, statuses,
 * counters), or for DATA the index of the block in its GET. status is 0 in
 * requests and the kvstash status (kvstash/status.h) in replies; a reply
 * whose status is not 0 has an empty body. reserved is sent as 0 and
 * ignored on receipt.
 */
typedef struct kvs_wire_hdr {
    uint32_t magic;
    uint8_t version;
    uint8_t opcode;
    uint16_t flags;
    uint64_t req_id;
    uint32_t body_len; /* bytes after the header */
    int32_t status;
    uint32_t count;
    uint32_t reserved;
} kvs_wire_hdr_t;

_Static_assert(sizeof(kvs_wire_hdr_t) == KVS_WIRE_HDR_SIZE,
               "the wire header is 32 bytes");

/* Fixed parts of bodies, for reference and size checks. */
#define KVS_WIRE_HELLO_FIXED 12u /* features, elem_size, rsvd[3], lens */
#define KVS_WIRE_HELLO_REP_SIZE 48u
#define KVS_WIRE_BIND_SIZE 16u       /* session, secret */
#define KVS_WIRE_PUT_ENT_FIXED 32u   /* before key, parent and part lengths */
#define KVS_WIRE_GET_FIXED 8u        /* lease id */
#define KVS_WIRE_GET_ENT_FIXED 8u    /* cap, before the key */
#define KVS_WIRE_BLOCK_SIZE 24u      /* one GET reply entry */
#define KVS_WIRE_DATA_FIXED 16u      /* before the part lengths */
#define KVS_WIRE_MATCH_FIXED 8u      /* flags, lease_ms */
#define KVS_WIRE_MATCH_REP_FIXED 16u /* matched, rsvd, lease id */
#define KVS_WIRE_PIN_FIXED 8u        /* flags, rsvd */
#define KVS_WIRE_SCAN_FIXED 16u      /* group, cursor, rsvd */
#define KVS_WIRE_SCAN_REP_FIXED 8u   /* next cursor, rsvd */
#define KVS_WIRE_SCAN_ENT_FIXED 32u  /* before the key and the parent */
#define KVS_WIRE_STREAM_FIXED 32u    /* of every stream opcode's body */
/* Bytes of a stream opcode's body after the fixed part: its frame travels
 * in the UCX AM header, so it fits KVS_WIRE_INLINE_MAX. */
#define KVS_WIRE_STREAM_BODY_MAX                                               \
    (KVS_WIRE_INLINE_MAX - KVS_WIRE_HDR_SIZE - KVS_WIRE_STREAM_FIXED)

/* A key or other byte string inside a decoded frame (not NUL-terminated). */
typedef struct kvs_wire_bytes {
    const uint8_t *data;
    uint32_t len;
} kvs_wire_bytes_t;

/* One block of a PUT. */
typedef struct kvs_wire_put_ent {
    kvs_wire_bytes_t key;    /* 1..KVS_KEY_MAX bytes */
    kvs_wire_bytes_t parent; /* 0..KVS_KEY_MAX bytes */
    uint8_t cls;             /* enum kvs_class */
    uint8_t elem_size;       /* 0: the namespace's */
    uint32_t flags;          /* KVS_WIRE_PUT_* */
    uint64_t ttl_ms;
    uint64_t group;
    uint32_t nparts;           /* 1..KVS_PARTS_MAX */
    const uint32_t *part_lens; /* nparts entries, host order */
    uint64_t data_off;         /* decode: offset of the block in payload */
    uint64_t data_len;         /* decode: sum of part_lens */
} kvs_wire_put_ent_t;

/* One key of a GET, with the room the client has for it. */
typedef struct kvs_wire_get_ent {
    kvs_wire_bytes_t key;
    uint64_t cap; /* bytes the client can receive */
} kvs_wire_get_ent_t;

/* One entry of a GET reply. */
typedef struct kvs_wire_block {
    int32_t status; /* 0, or why this block is not sent */
    uint32_t nparts;
    uint64_t len; /* bytes, also when status is -ENOBUFS */
    uint8_t tier; /* enum kvs_tier it was served from */
    uint8_t cls;
} kvs_wire_block_t;

/* One block of a SCAN reply. */
typedef struct kvs_wire_scan_ent {
    kvs_wire_bytes_t key;    /* 1..KVS_KEY_MAX bytes */
    kvs_wire_bytes_t parent; /* 0..KVS_KEY_MAX bytes */
    uint8_t tier;            /* enum kvs_tier */
    uint8_t cls;             /* enum kvs_class */
    uint32_t nparts;
    uint64_t len; /* bytes, all parts */
    uint64_t group;
    uint64_t expiry_ms; /* wall clock ms; 0: none */
} kvs_wire_scan_ent_t;

/* One named STAT counter. */
typedef struct kvs_wire_stat {
    kvs_wire_bytes_t name; /* 1..KVS_WIRE_STAT_NAME_MAX bytes */
    uint64_t value;
} kvs_wire_stat_t;

/*
 * A message in host form. The caller of kvs_wire_encode() fills hdr.opcode,
 * hdr.flags, hdr.req_id, hdr.status, hdr.count and the body member of the
 * union for that opcode; magic, version and body_len are computed. Pointers
 * are the caller's and are read during the call only.
 *
 * kvs_wire_decode() fills everything; byte strings point into the decoded
 * buffer and arrays into the scratch; both must outlive the message.
 * Replies with a non-zero status, and requests with a zero count where a
 * count is allowed, have an empty body.
 */
typedef struct kvs_wire_msg {
    kvs_wire_hdr_t hdr;
    uint64_t payload_len; /* decode: bytes of payload announced */
    union {
        struct {
            uint32_t features;
            uint8_t elem_size;
            kvs_wire_bytes_t token; /* 0..KVS_WIRE_TOKEN_MAX bytes */
            kvs_wire_bytes_t ns;    /* 1..KVS_NS_NAME_MAX bytes */
        } hello;
        struct {
            uint32_t features;
            uint32_t max_body;     /* bytes of a body the daemon accepts */
            uint32_t max_payload;  /* bytes of one PUT payload */
            uint32_t max_inflight; /* requests in flight per connection */
            uint32_t max_keys;     /* entries per batch frame */
            uint32_t lease_max_ms;
            uint64_t session;     /* connection id */
            uint64_t bind_secret; /* BULK: proves a bulk endpoint's owner */
            uint32_t bulk_port;   /* BULK: where bulk endpoints connect;
                                     0: none */
            uint32_t worker_port; /* MOVE: reconnect there; 0: stay */
        } hello_rep;
        struct {
            uint64_t session;
            uint64_t secret;
        } bind;
        struct {
            const kvs_wire_put_ent_t *ents; /* hdr.count entries */
        } put;
        struct {
            uint64_t lease_id; /* 0: none; else released when served */
            const kvs_wire_get_ent_t *ents;
        } get;
        struct {
            const kvs_wire_block_t *blocks;
        } get_rep;
        struct {
            uint64_t len; /* payload bytes */
            uint32_t nparts;
            uint8_t tier;
            uint8_t cls;
            const uint32_t *part_lens;
        } data;
        struct {               /* MATCH, EXISTS, DELETE, PIN, UNPIN,
                                  PREFETCH requests */
            uint32_t flags;    /* MATCH, PIN, UNPIN only */
            uint32_t lease_ms; /* MATCH only; 0: the default */
            const kvs_wire_bytes_t *keys;
        } keys;
        struct {
            uint32_t matched;
            uint64_t lease_id;    /* 0: no lease taken */
            const uint8_t *tiers; /* matched entries, enum kvs_tier */
        } match_rep;
        struct {
            const uint8_t *present; /* hdr.count entries, 0 or 1 */
        } exists_rep;
        struct {                   /* PUT, DELETE, PIN, UNPIN replies */
            const int32_t *status; /* hdr.count entries */
        } status_rep;
        struct {
            uint64_t promoted;
        } prefetch_rep;
        struct {
            uint64_t lease_id;
        } release;
        struct {
            const kvs_wire_stat_t *ents;
        } stat_rep;
        struct {
            uint64_t checked;
            uint64_t bad;
        } verify_rep;
        struct {             /* hdr.count: most entries wanted */
            uint64_t group;  /* 0: every block of the namespace */
            uint32_t cursor; /* 0 first, then the reply's next */
        } scan;
        struct {           /* hdr.count entries */
            uint32_t next; /* cursor to continue; 0: done */
            const kvs_wire_scan_ent_t *ents;
        } scan_rep;
        struct {                   /* every stream opcode (hdr.count 0) */
            uint32_t block;        /* block index; SPUT_BEGIN, PUSH: class */
            uint32_t part;         /* part index; SPUT_BEGIN, PUSH: put
                                      flags */
            uint32_t nparts;       /* parts of a block; FETCH: keys */
            uint32_t flags;        /* KVS_WIRE_STREAM_* */
            uint64_t len;          /* bytes of a part or a block; FETCH:
                                      wait_ms */
            uint64_t off;          /* PART: offset of the part */
            kvs_wire_bytes_t str;  /* the string that starts the body */
            kvs_wire_bytes_t rest; /* the op-specific bytes after it;
                                      decode: rest.data = str.data +
                                      str.len */
        } stream;
    } u;
} kvs_wire_msg_t;

/* What a decoder accepts. Fill with kvs_wire_limits_default(). */
typedef struct kvs_wire_limits {
    uint32_t max_body;    /* <= KVS_WIRE_BODY_MAX */
    uint32_t max_keys;    /* <= KVS_WIRE_KEYS_MAX */
    uint64_t max_payload; /* <= KVS_WIRE_PAYLOAD_MAX */
} kvs_wire_limits_t;

void kvs_wire_limits_default(kvs_wire_limits_t *lim);

/*
 * Arrays a decoded message points into. Sized for the absolute limits, so
 * one scratch serves any frame; about 1.6 MiB. Create one per thread that
 * decodes. kvs_wire_scratch_destroy(NULL) is a no-op. Returns NULL without
 * memory.
 */
typedef struct kvs_wire_scratch kvs_wire_scratch_t;
kvs_wire_scratch_t *kvs_wire_scratch_create(void);
void kvs_wire_scratch_destroy(kvs_wire_scratch_t *scratch);

/*
 * Encodes msg into buf (cap bytes). On success *len_out is the frame's size
 * (header + body). -ENOBUFS when cap is too small; -EINVAL when msg breaks a
 * rule of the format (a key over KVS_KEY_MAX, an unknown opcode, ...).
 */
int kvs_wire_encode(const kvs_wire_msg_t *msg, void *buf, size_t cap,
                    size_t *len_out);

/* The 32 header bytes at buf, without any check (kvs_wire_decode_hdr
 * checks), and their encoding with magic, version and body_len. */
void kvs_wire_hdr_load(const void *buf, kvs_wire_hdr_t *hdr_out);
void kvs_wire_hdr_store(void *buf, const kvs_wire_hdr_t *hdr,
                        uint32_t body_len);

/* Reads and checks only the header (len >= KVS_WIRE_HDR_SIZE): magic, then
 * version, then known flags and opcode, then body_len against lim and len.
 * Returns 0, KVS_EPROTO or KVS_EPROTO_VERSION; hdr_out is filled whenever
 * at least the header's bytes were there, so a reply can name the request. */
int kvs_wire_decode_hdr(const void *buf, size_t len,
                        const kvs_wire_limits_t *lim, kvs_wire_hdr_t *hdr_out);

/*
 * Decodes one frame of len bytes, followed by payload_len bytes of payload
 * (not read here; only its length is checked against the body). Returns 0,
 * KVS_EPROTO (malformed: truncated, trailing bytes, bad count, reserved
 * flag bits, ...), KVS_EPROTO_VERSION, or KVS_ETOOBIG (a key over
 * KVS_KEY_MAX, a count or size over lim). On error msg_out->hdr is still
 * filled if the header could be read, so the caller can reply to req_id.
 */
int kvs_wire_decode(const void *buf, size_t len, uint64_t payload_len,
                    const kvs_wire_limits_t *lim, kvs_wire_scratch_t *scratch,
                    kvs_wire_msg_t *msg_out);

/* True for the stream opcodes (KVS_OP_SPUT_BEGIN..KVS_OP_PUSH). */
static inline int kvs_wire_op_is_stream(unsigned opcode)
{
    return opcode >= KVS_OP_SPUT_BEGIN && opcode < KVS_OP_COUNT;
}

/* Returns a static name for an opcode ("GET"), or "?" */
const char *kvs_wire_op_name(unsigned opcode);

#ifdef __cplusplus
}
#endif
#endif
