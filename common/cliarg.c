/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Argument checks for the command-line tools (see cliarg.h). Each tool
 * used to turn "-p abc" into port 0 with atoi and a port of 99999 into
 * 34463 with a cast; every number a person types now goes through
 * kvs_cliarg_u64, which refuses trailing text, signs and values out of
 * range, naming the option.
 */
#include "common/cliarg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/kvstash.h"
#include "kvstash/status.h"
#include "kvstash/client.h"

int kvs_cliarg_u64(const char *tool, const char *what, const char *s,
                   uint64_t min, uint64_t max, uint64_t *out)
{
    unsigned long long x;
    char *end;

    errno = 0;
    if (s && *s && *s != '-' && *s != '+' && *s != ' ') {
        x = strtoull(s, &end, 0);
        if (!errno && !*end && x >= min && x <= max) {
            *out = x;
            return 0;
        }
    }
    fprintf(stderr, "%s: %s '%s': not a whole number in %llu..%llu\n", tool,
            what, s ? s : "", (unsigned long long)min, (unsigned long long)max);
    return -EINVAL;
}

int kvs_cliarg_u32(const char *tool, const char *what, const char *s,
                   uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t x;

    if (kvs_cliarg_u64(tool, what, s, min, max, &x))
        return -EINVAL;
    *out = (uint32_t)x;
    return 0;
}

int kvs_cliarg_port(const char *tool, const char *what, const char *s,
                    uint16_t *out)
{
    uint64_t x;

    if (kvs_cliarg_u64(tool, what, s, 1, 65535, &x))
        return -EINVAL;
    *out = (uint16_t)x;
    return 0;
}

int kvs_cliarg_daemon(const char *tool, const char *addr, const char *port,
                      char *addr_out, size_t cap, uint16_t *port_out)
{
    const char *addr_what = "-a", *port_what = "-p";
    char why[256];

    if (!addr && (addr = getenv("KVSTASH_ADDR")) && *addr)
        addr_what = "KVSTASH_ADDR";
    if (!addr || !*addr)
        addr = "127.0.0.1";
    if (!port && (port = getenv("KVSTASH_PORT")) && *port)
        port_what = "KVSTASH_PORT";
    if (port && *port) {
        if (kvs_cliarg_port(tool, port_what, port, port_out))
            return -EINVAL;
    } else {
        *port_out = KVS_DEFAULT_PORT;
    }
    if (kvs_resolve_host(addr, addr_out, cap, why, sizeof(why))) {
        fprintf(stderr, "%s: %s '%s': cannot resolve the host name: %s\n", tool,
                addr_what, addr, why);
        return -EINVAL;
    }
    return 0;
}

void kvs_cliarg_version(const char *tool, FILE *out)
{
    fprintf(out, "%s %d.%d.%d\n", tool, KVS_VERSION_MAJOR, KVS_VERSION_MINOR,
            KVS_VERSION_PATCH);
}

void kvs_cliarg_connect_failed(const char *tool, const char *addr,
                               uint16_t port, int status)
{
    if (status == KVS_EPEER || status == -ECONNREFUSED ||
        status == -ETIMEDOUT) {
        fprintf(stderr,
                "%s: cannot connect to %s port %u: nothing answered. Is "
                "kvstashd running there? Start it with `make run` (in the "
                "source tree) or `kvstashd -c FILE`; -a/-p or "
                "KVSTASH_ADDR/KVSTASH_PORT pick another daemon.\n",
                tool, addr, port);
        return;
    }
    if (status == KVS_EAUTH) {
        fprintf(stderr,
                "%s: %s port %u refused the token: pass the one in "
                "the daemon's [tenant.*] section with -t or KVSTASH_TOKEN\n",
                tool, addr, port);
        return;
    }
    fprintf(stderr, "%s: cannot connect to %s port %u: %s\n", tool, addr, port,
            kvs_strerror(status));
}
