/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host names to numeric addresses, for the tools and the daemon's
 * configuration: the transport takes numeric addresses only, so every name
 * a person types (-a localhost, listen = myhost, a peer's host:port) is
 * resolved here, once, before the transport sees it.
 */
#ifndef KVS_RESOLVE_H
#define KVS_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

/* Room for any numeric IPv4 or IPv6 address and its terminating NUL. */
#define KVS_RESOLVE_ADDR_MAX 46

/*
 * Resolves host (a name, or a numeric IPv4/IPv6 address, returned as it
 * is) into a numeric address in num_out (cap bytes). When a name has both,
 * the first IPv4 address is taken, so that "localhost" means 127.0.0.1, the
 * daemon's default. Returns 0, or -ENOENT with why_out (whycap bytes) set
 * to the resolver's reason.
 */
int kvs_resolve_host(const char *host, char *num_out, size_t cap, char *why_out,
                     size_t whycap);

/*
 * Splits "host:port" or "[v6]:port" and resolves host. port must be
 * 1..65535. Returns 0, or -EINVAL / -ENOENT with why_out set.
 */
int kvs_resolve_hostport(const char *s, char *num_out, size_t cap,
                         uint16_t *port_out, char *why_out, size_t whycap);

#endif
