/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End-to-end test helpers: start a real kvstashd on 127.0.0.1 with an
 * ephemeral port and a fresh data directory under $KVS_TEST_DIR, connect
 * clients to it, and stop it. Set KVS_TEST_DAEMON=PORT to run against a
 * daemon that is already running on 127.0.0.1 (it is then neither started
 * nor stopped, and tests that need a special configuration skip).
 *
 * Checks print the failed expression and exit(1); there are no timed
 * assertions: waits loop until their condition holds and the CTest timeout
 * is the only clock.
 */
#ifndef KVS_E2E_H
#define KVS_E2E_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "kvstash/kvstash.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_) {                                                        \
            fprintf(stderr,                                                    \
                    "%s:%d: CHECK failed: %s == %s (%lld vs %lld)"             \
                    " %s\n",                                                   \
                    __FILE__, __LINE__, #a, #b, a_, b_,                        \
                    a_ < 0 ? kvs_strerror((int)a_) : "");                      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

typedef struct kvs_e2e_daemon {
    pid_t pid; /* 0: attached to an external daemon */
    uint16_t port;
    bool external; /* KVS_TEST_DAEMON */
    char dir[512];
    char cfg[600];
} kvs_e2e_daemon_t;

/* Makes a fresh directory for a daemon named name. */
void kvs_e2e_daemon_init(kvs_e2e_daemon_t *d, const char *name);
/* Starts kvstashd with small test sizes plus extra "--set=s.k=v" style
 * arguments (NULL-terminated), and waits until it listens. */
void kvs_e2e_daemon_start(kvs_e2e_daemon_t *d, const char *const *extra_args);
/* SIGTERM, then waits; checks that it exited 0 (an orderly shutdown). */
void kvs_e2e_daemon_stop(kvs_e2e_daemon_t *d);
/* Writes a config file into the daemon's directory; returns its path
 * (in d, valid as long as d). */
const char *kvs_e2e_write_config(kvs_e2e_daemon_t *d, const char *text);

/* Connects a client; NULL token means none. */
kvs_client_t *kvs_e2e_connect(const kvs_e2e_daemon_t *d, const char *ns,
                              const char *token);
int kvs_e2e_try_connect(const kvs_e2e_daemon_t *d, const char *ns,
                        const char *token, kvs_client_t **out);
/* 1 if the daemon holds key (EXISTS), 0 if not; exits on an error. */
int kvs_e2e_present(kvs_client_t *c, const char *key);
/* One named STAT value; exits if absent. */
uint64_t kvs_e2e_stat(kvs_client_t *c, const char *name);

#endif
