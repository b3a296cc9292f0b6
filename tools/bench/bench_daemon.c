/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting and stopping a benchmark's kvstashd (bench_daemon.h): fork,
 * exec with the port file in the scratch directory, poll for the port.
 */
#include "tools/bench/bench_daemon.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t at_exit_pid; /* stopped by stop_at_exit */

static void stop_at_exit(void)
{
    bench_daemon_t d = {.pid = at_exit_pid};

    bench_daemon_stop(&d);
}

static void daemon_path(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash;

    self[n > 0 ? n : 0] = '\0';
    slash = strrchr(self, '/');
    if (n <= 0 || !slash) {
        snprintf(out, cap, "kvstashd");
        return;
    }
    *slash = '\0';
    snprintf(out, cap, "%s/kvstashd", self); /* built and installed so */
}

int bench_daemon_start(bench_daemon_t *d, const char *dir,
                       const char *const *extra)
{
    char bin[PATH_MAX + 32], port_file[PATH_MAX], data[PATH_MAX],
        log[PATH_MAX];
    const char *argv[32];
    int argc = 0;

    daemon_path(bin, sizeof(bin));
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(log, sizeof(log), "%s/kvstashd.log", dir);
    unlink(port_file);
    bench_rmtree(data);
    argv[argc++] = bin;
    argv[argc++] = "--port=0";
    argv[argc++] = "--port-file";
    argv[argc++] = port_file;
    argv[argc++] = "--dir";
    argv[argc++] = data;
    argv[argc++] = "--log-level=info";
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    fflush(NULL);
    d->pid = fork();
    if (d->pid < 0)
        return -errno;
    if (d->pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(1, 2) < 0)
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (!at_exit_pid)
        atexit(stop_at_exit);
    at_exit_pid = d->pid;
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(port_file, "r");
        unsigned port = 0;
        int st;

        if (f) {
            int n = fscanf(f, "%u", &port);

            fclose(f);
            if (n == 1 && port) {
                d->port = (uint16_t)port;
                return 0;
            }
        }
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            fprintf(stderr, "bench: kvstashd exited; see %s\n", log);
            d->pid = at_exit_pid = 0;
            return -ECHILD;
        }
        usleep(10000);
    }
    fprintf(stderr, "bench: kvstashd did not start; see %s\n", log);
    bench_daemon_stop(d);
    return -ETIMEDOUT;
}

void bench_daemon_stop(bench_daemon_t *d)
{
    int st;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    waitpid(d->pid, &st, 0);
    if (at_exit_pid == d->pid)
        at_exit_pid = 0;
    d->pid = 0;
}
