/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the shm tests: a daemon with daemon.shm_socket in its
 * directory, clients that map its arena, and a raw ATTACH over the socket
 * (for the refusals a well-behaved client never gets to see).
 */
#ifndef KVS_SHMTEST_H
#define KVS_SHMTEST_H

#include "tests/e2e/e2e.h"

/* Starts d (kvs_e2e_daemon_init done, config written if any) with its shm
 * socket at d->dir/shm.sock (returned in sock, cap bytes), plus extra
 * --set arguments (NULL-terminated, may be NULL). */
void shmtest_start(kvs_e2e_daemon_t *d, char *sock, size_t cap,
                   const char *const *extra);
/* A prefill/decode pair for the stream tests: P started with its shm
 * socket and a peer secret; D (which may be started again on the same
 * data) with its socket, the same secret, P as peer "prefill", and extra
 * (NULL-terminated, may be NULL). */
void shmtest_start_prefill(kvs_e2e_daemon_t *P, char *sock, size_t cap);
void shmtest_start_decode(kvs_e2e_daemon_t *D, char *sock, size_t cap,
                          const kvs_e2e_daemon_t *P, const char *const *extra);
/* A client that maps the arena when the daemon allows it. */
int shmtest_try_connect(const kvs_e2e_daemon_t *d, const char *sock,
                        const char *ns, const char *token, kvs_client_t **out);
kvs_client_t *shmtest_connect(const kvs_e2e_daemon_t *d, const char *sock,
                              const char *ns, const char *token);
/* ATTACH over a fresh connection to sock, without UCX: the daemon's status
 * (0: it passed the memfd), or -errno of connect. */
int shmtest_raw_attach(const char *sock, const char *ns, const char *token);
/* The same, keeping the session open: its socket in *fd_out (close it to
 * end the session), its stream key in *key_out (optional; 0 if refused). */
int shmtest_raw_attach_keep(const char *sock, const char *ns, const char *token,
                            int *fd_out, uint64_t *key_out);
/* ATTACH (namespace "ns", no token, features as asked) over a fresh
 * connection that succeeds: the arena's fd as the daemon passed it, the
 * session's socket in *sock_fd (close it to end the session), the
 * features granted in *granted (optional). */
int shmtest_attach_fd(const char *sock, uint32_t features, int *sock_fd,
                      uint32_t *granted);
/* Waits (no clock: the CTest timeout) until STAT's name equals want. */
void shmtest_wait_stat(kvs_client_t *c, const char *name, uint64_t want);

#endif
