/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting and stopping a kvstashd for a benchmark (see bench_daemon.h).
 * The daemon writes its port to a file once it listens (--port-file); we
 * poll for that file, and for the daemon's early exit, for up to 20 s.
 */
#include "tools/bench/bench_daemon.h"
#include "tools/bench/bench.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DAEMON_ARGS_MAX 16

void bench_daemon_default_path(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash;

    if (n <= 0) {
        snprintf(out, cap, "kvstashd");
        return;
    }
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    if ((size_t)snprintf(out, cap, "%s/kvstashd", self) >= cap)
        snprintf(out, cap, "kvstashd");
}

/* Waits for the port file; the daemon's pid, or -1 if it exited or did not
 * listen in time (then it is killed). */
static pid_t wait_listening(pid_t pid, const char *port_file, const char *log,
                            uint16_t *port_out)
{
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(port_file, "r");
        unsigned port = 0;
        int st;

        if (f) {
            int n = fscanf(f, "%u", &port);

            fclose(f);
            if (n == 1 && port && port <= UINT16_MAX) {
                *port_out = (uint16_t)port;
                return pid;
            }
        }
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "bench: kvstashd exited; see %s\n", log);
            return -1;
        }
        usleep(20000);
    }
    fprintf(stderr, "bench: kvstashd did not start; see %s\n", log);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

pid_t bench_daemon_start(const char *path, const char *dir,
                         const char *const *args, uint16_t *port_out)
{
    char port_file[PATH_MAX], data[PATH_MAX], log[PATH_MAX];
    const char *argv[DAEMON_ARGS_MAX + 8];
    size_t n = 0;
    pid_t pid;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: cannot create %s: %m\n", dir);
        return -1;
    }
    if ((size_t)snprintf(port_file, sizeof(port_file), "%s/port", dir) >=
            sizeof(port_file) ||
        (size_t)snprintf(data, sizeof(data), "%s/data", dir) >= sizeof(data) ||
        (size_t)snprintf(log, sizeof(log), "%s/kvstashd.log", dir) >=
            sizeof(log)) {
        fprintf(stderr, "bench: directory name too long: %s\n", dir);
        return -1;
    }
    argv[n++] = path;
    argv[n++] = "--port=0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--dir";
    argv[n++] = data;
    for (size_t i = 0; args && args[i]; i++) {
        if (i == DAEMON_ARGS_MAX) {
            fprintf(stderr, "bench: more than %d kvstashd arguments\n",
                    DAEMON_ARGS_MAX);
            return -1;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    unlink(port_file);
    bench_rmtree(data);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %m\n");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (!freopen(log, "w", stdout) || dup2(1, 2) < 0)
            _exit(127);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    return wait_listening(pid, port_file, log, port_out);
}

void bench_daemon_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}
