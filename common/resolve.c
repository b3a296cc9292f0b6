/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host name resolution (see resolve.h): getaddrinfo with AF_UNSPEC, the
 * first IPv4 answer preferred over IPv6 ones, the answer printed back as a
 * numeric string. Numeric input never touches the resolver
 * (AI_NUMERICHOST is tried first), so a machine without DNS still accepts
 * 127.0.0.1 and ::1.
 */
#include "common/resolve.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int lookup(const char *host, int flags, struct addrinfo **res_out)
{
    struct addrinfo hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags;
    return getaddrinfo(host, NULL, &hints, res_out);
}

int kvs_resolve_host(const char *host, char *num_out, size_t cap, char *why_out,
                     size_t whycap)
{
    struct addrinfo *res = NULL, *pick = NULL;
    char num[KVS_RESOLVE_ADDR_MAX];
    int rc;

    if (!host || !*host) {
        snprintf(why_out, whycap, "empty host name");
        return -ENOENT;
    }
    rc = lookup(host, AI_NUMERICHOST, &res);
    if (rc != 0)
        rc = lookup(host, 0, &res);
    if (rc != 0) {
        snprintf(why_out, whycap, "%s",
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -ENOENT;
    }
    for (struct addrinfo *a = res; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET)
            pick = a;
    for (struct addrinfo *a = res; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET6)
            pick = a;
    if (!pick ||
        getnameinfo(pick->ai_addr, pick->ai_addrlen, num, sizeof(num), NULL, 0,
                    NI_NUMERICHOST) != 0 ||
        strlen(num) >= cap) {
        freeaddrinfo(res);
        snprintf(why_out, whycap, "no IPv4 or IPv6 address");
        return -ENOENT;
    }
    freeaddrinfo(res);
    memcpy(num_out, num, strlen(num) + 1);
    return 0;
}

int kvs_resolve_hostport(const char *s, char *num_out, size_t cap,
                         uint16_t *port_out, char *why_out, size_t whycap)
{
    char host[256];
    const char *colon, *h = s;
    size_t hlen;
    unsigned long p;
    char *end;

    colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(why_out, whycap, "want host:port");
        return -EINVAL;
    }
    hlen = (size_t)(colon - s);
    if (s[0] == '[' && colon[-1] == ']') { /* [v6]:port */
        h = s + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(why_out, whycap, "want host:port");
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    errno = 0;
    p = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p == 0 || p > 65535) {
        snprintf(why_out, whycap, "port '%s' is not 1..65535", colon + 1);
        return -EINVAL;
    }
    if (kvs_resolve_host(host, num_out, cap, why_out, whycap))
        return -ENOENT;
    *port_out = (uint16_t)p;
    return 0;
}
