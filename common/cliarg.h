/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Argument checks shared by the command-line tools (kvstashd, kvstash,
 * kvstash-warmup, kvstash-bench): numbers and ports refused with the
 * option and the accepted range named, the connection settings taken from
 * the environment, the --version line, and the message for a daemon that
 * does not answer. Each function that refuses prints one line on stderr,
 * prefixed with the tool's name, and returns -EINVAL.
 */
#ifndef KVS_CLIARG_H
#define KVS_CLIARG_H

#include <stdint.h>
#include <stdio.h>

#include "common/resolve.h"

/* A whole number in min..max (decimal, or 0x hex). what names the option
 * in the message ("-j", "--timeout", "KVSTASH_PORT"). */
int kvs_cliarg_u64(const char *tool, const char *what, const char *s,
                   uint64_t min, uint64_t max, uint64_t *out);
int kvs_cliarg_u32(const char *tool, const char *what, const char *s,
                   uint32_t min, uint32_t max, uint32_t *out);
/* A TCP port of a daemon to reach: 1..65535. */
int kvs_cliarg_port(const char *tool, const char *what, const char *s,
                    uint16_t *out);

/*
 * The address and port to reach kvstashd at: addr and port (an option's
 * text, or NULL), else $KVSTASH_ADDR and $KVSTASH_PORT, else 127.0.0.1 and
 * KVS_DEFAULT_PORT. A host name is resolved into addr_out (cap bytes,
 * KVS_RESOLVE_ADDR_MAX is enough).
 */
int kvs_cliarg_daemon(const char *tool, const char *addr, const char *port,
                      char *addr_out, size_t cap, uint16_t *port_out);

/* Prints "TOOL VERSION" (the project's version) on out. */
void kvs_cliarg_version(const char *tool, FILE *out);

/* Prints why a connection to the daemon at addr:port failed with status,
 * and what to do about it. */
void kvs_cliarg_connect_failed(const char *tool, const char *addr,
                               uint16_t port, int status);

#endif
