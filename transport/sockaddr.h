/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket address helpers shared by the daemon (stream links) and the
 * client library. Not a public header.
 */
#ifndef KVS_TRANSPORT_SOCKADDR_H
#define KVS_TRANSPORT_SOCKADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

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
