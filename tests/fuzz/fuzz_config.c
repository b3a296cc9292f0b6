/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for kvstashd's configuration file: kvs_config_load()
 * (the line cleaner, inih and every setter, tenants included), then the
 * one validation kvs_config_finish() (with the [events] and [cluster]
 * checks of cluster_config.c) and kvs_config_print(). Input: the whole
 * file, written to a memfd that kvs_config_load() opens by its
 * /proc/self/fd path as it would any file.
 *
 * Nothing may crash or read out of bounds. A refused file must be refused
 * with KVS_ECONFIG (the daemon then exits with the message); one that
 * passes the validation is printed, as --print-config does. kvs_config_finish()
 * resolves host names; it is run only when daemon.listen and every peer's host
 * are numeric, so that the fuzzer never waits on DNS (the splitting of the peer
 * list is fuzzed either way: a malformed entry is refused before any lookup).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvstash/status.h"
#include "tools/kvstashd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1, saved_stderr = -1;
static char path[64];
static FILE *devnull;

#if defined(__SANITIZE_ADDRESS__)
#define KVS_FZ_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVS_FZ_SANITIZER 1
#endif
#endif
#ifdef KVS_FZ_SANITIZER
void __sanitizer_set_report_fd(void *fd);
#endif

/* The configuration code writes each refusal to stderr; thousands of them
 * a second would fill the fuzzer's log, so they go to /dev/null while it
 * runs. The sanitizers report to a copy of the real stderr. */
static void quiet(int on)
{
    fflush(stderr);
    if (dup2(on ? fileno(devnull) : saved_stderr, 2) < 0)
        abort();
}

static int numeric(const char *h, size_t n)
{
    char buf[64];
    unsigned char a[16];

    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

/* Whether resolve_peers() would look up only numeric hosts: each entry
 * split as config.c and kvs_resolve_hostport() split it. */
static int peers_numeric(const char *peers)
{
    char *list, *save = NULL;
    int ok = 1;

    if (!peers)
        return 1;
    list = strdup(peers);
    if (!list)
        abort();
    for (char *tok = strtok_r(list, ", ", &save); tok && ok;
         tok = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(tok, '='), *hp, *colon;
        size_t hl;

        if (!eq || eq == tok)
            break; /* refused before any lookup */
        hp = eq + 1;
        colon = strrchr(hp, ':');
        if (!colon || colon == hp)
            break;
        hl = (size_t)(colon - hp);
        if (hp[0] == '[' && colon[-1] == ']')
            ok = numeric(hp + 1, hl - 2);
        else
            ok = numeric(hp, hl);
    }
    free(list);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvs_config_t cfg;
    int ret;

    if (fd < 0) {
        fd = memfd_create("fuzz_config", MFD_CLOEXEC);
        devnull = fopen("/dev/null", "w");
        if (fd < 0 || !devnull)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (saved_stderr < 0)
            abort();
#ifdef KVS_FZ_SANITIZER
        __sanitizer_set_report_fd((void *)(intptr_t)saved_stderr);
#endif
    }
    if (size > (1u << 20))
        return 0; /* a configuration file is small */
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    quiet(1);
    kvs_config_init(&cfg);
    ret = kvs_config_load(&cfg, path);
    if (ret != 0 && ret != KVS_ECONFIG && ret != -ENOMEM)
        abort();
    if (ret == 0 && numeric(cfg.listen, strlen(cfg.listen)) &&
        peers_numeric(cfg.peers)) {
        ret = kvs_config_finish(&cfg);
        if (ret != 0 && ret != KVS_ECONFIG && ret != -ENOMEM)
            abort();
        if (ret == 0) /* as --print-config does */
            kvs_config_print(&cfg, devnull);
    }
    kvs_config_fini(&cfg);
    quiet(0);
    return 0;
}
