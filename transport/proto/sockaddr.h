/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket address helpers shared by the daemon (stream links) and the
 * client library. Not a public header.
 */
#ifndef KVS_TRANSPORT_SOCKADDR_H
#define KVS_TRANSPORT_SOCKADDR_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

static inline void kvs_sockaddr_set_port(struct sockaddr_storage *ss,
                                         uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static inline socklen_t kvs_sockaddr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in);
}

/* A numeric IPv4 or IPv6 address and a port. 0, or -EINVAL. */
static inline int kvs_sockaddr_parse(const char *addr, uint16_t port,
                                     struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)ss)->sin_addr) == 1)
        ss->ss_family = AF_INET;
    else if (inet_pton(AF_INET6, addr,
                       &((struct sockaddr_in6 *)ss)->sin6_addr) == 1)
        ss->ss_family = AF_INET6;
    else
        return -EINVAL;
    kvs_sockaddr_set_port(ss, port);
    return 0;
}

/* 127.0.0.0/8 or ::1. */
static inline bool kvs_sockaddr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >>
                24) == 127;
    return ss->ss_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

#endif
