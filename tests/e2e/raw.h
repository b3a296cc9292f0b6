/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A raw UCX client for the end-to-end tests that must speak the protocol
 * byte by byte (bad input, the conformance table, attacks on tenancy): an
 * endpoint to a daemon port, sends of hand-made frames, and a queue of the
 * frames received. A rendezvous DATA is never pulled: its descriptor is
 * kept (counted in rndv_held) until raw_close, so that a test can hold
 * blocks in flight on purpose. Single-threaded; every wait progresses the
 * worker until its condition holds (the CTest timeout is the only clock).
 */
#ifndef KVS_E2E_RAW_H
#define KVS_E2E_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ucp/api/ucp.h>

#include "kvstash/wire.h"

#define RAW_QUEUE 64
#define RAW_FRAME_MAX (1u << 16)
#define RAW_HELD_MAX 4096

typedef struct raw_frame {
    size_t len;
    bool rndv;                    /* a DATA whose payload was not pulled */
    uint8_t bytes[RAW_FRAME_MAX]; /* the frame (AM header or AM data) */
} raw_frame_t;

typedef struct raw {
    ucp_context_h ctx;
    ucp_worker_h w;
    ucp_ep_h ep;
    bool closed;              /* the daemon closed it (peer error) */
    unsigned head, tail;      /* queue of frames received */
    raw_frame_t *q;           /* RAW_QUEUE entries */
    void *held[RAW_HELD_MAX]; /* rendezvous descriptors not pulled */
    unsigned rndv_held;
    uint64_t received; /* frames received in all */
} raw_t;

/* Connects to 127.0.0.1:port, with peer error handling (a control
 * endpoint) or without (a bulk endpoint, as libkvstash makes it). */
void raw_connect(raw_t *r, uint16_t port);
void raw_connect_mode(raw_t *r, uint16_t port, ucp_err_handling_mode_t mode);
void raw_close(raw_t *r);
/* One more endpoint on worker w to 127.0.0.1:port (for tests that make
 * many connections on one worker). */
ucp_ep_h raw_ep_create(ucp_worker_h w, uint16_t port,
                       ucp_err_handling_mode_t mode, ucp_err_handler_cb_t cb,
                       void *arg);
/* Sends raw bytes: the frame as AM data, or with a payload the frame as AM
 * header and the payload as AM data; waits until UCX is done with them. */
void raw_post(raw_t *r, const void *frame, size_t flen, const void *payload,
              size_t plen, bool rndv);
/* Progresses until a frame is queued (true) or the endpoint is closed. */
bool raw_wait(raw_t *r);
/* Pops the oldest frame received into *h (decoded by hand, so that an
 * unknown opcode echoed back is readable); false if none is queued. */
bool raw_pop(raw_t *r, kvs_wire_hdr_t *h, raw_frame_t **frame);
/* raw_post, then waits for a reply frame (skipping DATA) and returns its
 * status; CHECKs that one came before any close. */
int raw_send(raw_t *r, const void *frame, size_t flen, const void *payload,
             size_t plen, bool rndv);
/* The last reply raw_send returned (header and bytes). */
const raw_frame_t *raw_last(const raw_t *r);
void raw_wait_closed(raw_t *r);
void raw_progress(raw_t *r);

/* Frame builders (the codec's encoder; req_id as given). */
size_t raw_enc(void *buf, size_t cap, kvs_wire_msg_t *m);
size_t raw_hello(uint8_t *buf, uint64_t req_id, const char *token,
                 const char *ns, uint32_t features);
size_t raw_keys(uint8_t *buf, unsigned opcode, uint64_t req_id,
                const char *key);
/* Decodes a frame strictly (CHECKs that it decodes; arrays live in a
 * scratch of raw.c's, valid until the next call). */
void raw_decode(const raw_frame_t *f, kvs_wire_msg_t *out);
/* The session, bind secret and bulk port of the HELLO reply raw_send
 * returned last. */
void raw_hello_reply(const raw_t *r, kvs_wire_msg_t *out);

#endif
