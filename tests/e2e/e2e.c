/* SPDX-License-Identifier: Apache-2.0 */
/* End-to-end helpers: see e2e.h. */
#include "tests/e2e/e2e.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testutil.h"

#ifndef KVS_DAEMON_BIN
#error "KVS_DAEMON_BIN must name the kvstashd binary"
#endif

/* A failed CHECK exits at once; never leave a daemon behind. */
static pid_t started_pid, starter_pid;

static void kill_daemon_at_exit(void)
{
    /* Only in the process that started it, not in forked clients. */
    if (started_pid > 0 && getpid() == starter_pid) {
        kill(started_pid, SIGKILL);
        waitpid(started_pid, NULL, 0);
    }
}

void kvs_e2e_daemon_init(kvs_e2e_daemon_t *d, const char *name)
{
    const char *ext = getenv("KVS_TEST_DAEMON");

    memset(d, 0, sizeof(*d));
    if (ext && *ext) {
        d->external = true;
        d->port = (uint16_t)atoi(ext);
        return;
    }
    snprintf(d->dir, sizeof(d->dir), "%s", kvs_test_dir(name));
}

const char *kvs_e2e_write_config(kvs_e2e_daemon_t *d, const char *text)
{
    FILE *f;

    if (d->external) {
        fprintf(stderr, "needs its own configuration; KVS_TEST_DAEMON set\n");
        exit(KVS_TEST_SKIP);
    }
    snprintf(d->cfg, sizeof(d->cfg), "%s/kvstashd.ini", d->dir);
    f = fopen(d->cfg, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
    return d->cfg;
}

void kvs_e2e_daemon_start(kvs_e2e_daemon_t *d, const char *const *extra)
{
    char port_file[600], data[600], log[600], cfgopt[620];
    const char *argv[64];
    int argc = 0;

    if (d->external) {
        if (extra && extra[0]) {
            fprintf(stderr, "needs its own daemon; KVS_TEST_DAEMON set\n");
            exit(KVS_TEST_SKIP);
        }
        return;
    }
    snprintf(port_file, sizeof(port_file), "%s/port", d->dir);
    snprintf(data, sizeof(data), "%s/data", d->dir);
    snprintf(log, sizeof(log), "%s/kvstashd.log", d->dir);
    unlink(port_file);
    argv[argc++] = KVS_DAEMON_BIN;
    if (d->cfg[0]) {
        snprintf(cfgopt, sizeof(cfgopt), "--config=%s", d->cfg);
        argv[argc++] = cfgopt;
    }
    argv[argc++] = "--port=0";
    argv[argc++] = "--port-file";
    argv[argc++] = port_file;
    argv[argc++] = "--dir";
    argv[argc++] = data;
    argv[argc++] = "--dram-mib=64";
    argv[argc++] = "--nvme-mib=64";
    argv[argc++] = "--set=store.region_mib=8";
    argv[argc++] = "--set=store.max_block_mib=4";
    argv[argc++] = "--set=store.max_blocks=65536";
    argv[argc++] = "--set=daemon.staging_slots=2";
    argv[argc++] = "--set=daemon.busy_poll_us=0";
    for (int i = 0; extra && extra[i] && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    fflush(NULL);
    d->pid = fork();
    CHECK(d->pid >= 0);
    if (d->pid > 0 && started_pid == 0) {
        started_pid = d->pid;
        starter_pid = getpid();
        atexit(kill_daemon_at_exit);
    }
    if (d->pid == 0) {
        FILE *lf = freopen(log, "w", stdout);

        if (!lf || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(127);
        execv(KVS_DAEMON_BIN, (char *const *)argv);
        _exit(127);
    }
    /* Wait for the port file; the daemon writes it once listening. */
    for (;;) {
        FILE *f = fopen(port_file, "r");
        int status;
        unsigned port = 0;

        if (f) {
            int n = fscanf(f, "%u", &port);
            fclose(f);
            if (n == 1 && port) {
                d->port = (uint16_t)port;
                return;
            }
        }
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "kvstashd exited early; see %s\n", log);
            exit(1);
        }
        usleep(20000);
    }
}

void kvs_e2e_daemon_stop(kvs_e2e_daemon_t *d)
{
    int status;

    if (!d->pid)
        return;
    CHECK(kill(d->pid, SIGTERM) == 0);
    CHECK(waitpid(d->pid, &status, 0) == d->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr,
                "kvstashd did not stop cleanly (status 0x%x); see "
                "%s/kvstashd.log\n",
                status, d->dir);
        exit(1);
    }
    d->pid = 0;
    started_pid = 0;
}

int kvs_e2e_try_connect(const kvs_e2e_daemon_t *d, const char *ns,
                        const char *token, kvs_client_t **out)
{
    kvs_client_params_t p = {
        .field_mask = KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT |
                      KVS_CLIENT_PARAM_NS | KVS_CLIENT_PARAM_BUSY_POLL_US,
        .addr = "127.0.0.1",
        .port = d->port,
        .ns = ns,
        .busy_poll_us = 0,
    };

    if (token) {
        p.field_mask |= KVS_CLIENT_PARAM_TOKEN;
        p.token = token;
    }
    return kvs_client_create(&p, out);
}

kvs_client_t *kvs_e2e_connect(const kvs_e2e_daemon_t *d, const char *ns,
                              const char *token)
{
    kvs_client_t *c = NULL;

    CHECK_EQ(kvs_e2e_try_connect(d, ns, token, &c), 0);
    return c;
}

int kvs_e2e_present(kvs_client_t *c, const char *key)
{
    kvs_client_key_t k = {key, (uint32_t)strlen(key)};
    uint8_t p = 9;

    CHECK_EQ(kvs_client_exists(c, &k, 1, &p), 0);
    return p;
}

uint64_t kvs_e2e_stat(kvs_client_t *c, const char *name)
{
    kvs_client_stat_t st[128];
    size_t n = 0;

    CHECK_EQ(kvs_client_stat(c, st, 128, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].name, name) == 0)
            return st[i].value;
    fprintf(stderr, "STAT has no '%s'\n", name);
    exit(1);
}
