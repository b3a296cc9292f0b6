/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstashd's configuration: defaults, then the INI file, then flags, in
 * that order; the effective configuration is printed with tokens masked;
 * invalid settings and files are refused with exit status 2.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

/* Runs kvstashd with args and --print-config; returns its exit status and
 * its stdout in out. */
static int run(const char *const *args, char *out, size_t cap)
{
    const char *argv[32];
    int fds[2], argc = 0, status;
    size_t len = 0;
    ssize_t n;
    pid_t pid;

    argv[argc++] = KVS_DAEMON_BIN;
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc++] = "--print-config";
    argv[argc] = NULL;
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execv(KVS_DAEMON_BIN, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    while (len + 1 < cap && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void)
{
    static char out[16384];
    const char *dir = kvs_test_dir("e2e_config");
    char ini[600], bad[600], cfgopt[620], badopt[620];
    FILE *f;

    snprintf(ini, sizeof(ini), "%s/k.ini", dir);
    snprintf(bad, sizeof(bad), "%s/bad.ini", dir);
    f = fopen(ini, "w");
    CHECK(f);
    fputs("[daemon]\nport = 9999\nmax_inflight = 7\n[store]\ndram_mib = 96\n"
          "sync_index = yes\n[tenant.a]\ntoken = s3cret\nnamespaces = x, y\n",
          f);
    fclose(f);
    f = fopen(bad, "w");
    CHECK(f);
    fputs("[store]\nno_such_key = 1\n", f);
    fclose(f);
    snprintf(cfgopt, sizeof(cfgopt), "--config=%s", ini);
    snprintf(badopt, sizeof(badopt), "--config=%s", bad);

    /* Laptop defaults. */
    {
        const char *a[] = {NULL};
        CHECK_EQ(run(a, out, sizeof(out)), 0);
        CHECK(strstr(out, "listen = 127.0.0.1\n"));
        CHECK(strstr(out, "port = 7370\n"));
        CHECK(strstr(out, "dir = ./var/kvstash\n"));
        CHECK(strstr(out, "every token is accepted"));
    }
    /* The file, then flags over it, whatever their order. */
    {
        const char *a[] = {"--port=1234", cfgopt, "--set=store.dram_mib=80",
                           NULL};
        CHECK_EQ(run(a, out, sizeof(out)), 0);
        CHECK(strstr(out, "port = 1234\n"));
        CHECK(strstr(out, "max_inflight = 7\n"));
        CHECK(strstr(out, "dram_mib = 80\n"));
        CHECK(strstr(out, "sync_index = true\n"));
        CHECK(strstr(out, "[tenant.a]\ntoken = ********\nnamespaces = x, y\n"));
        CHECK(!strstr(out, "s3cret"));
    }
    /* Refused: unknown keys, bad values, missing files, bad flags. */
    {
        const char *a1[] = {badopt, NULL};
        const char *a2[] = {"--port=70000", NULL};
        const char *a3[] = {"--config=/nonexistent/kvstashd.ini", NULL};
        const char *a4[] = {"--set=daemon.log_level=loud", NULL};
        const char *a5[] = {"--set=nodot", NULL};
        const char *a6[] = {"--set=tenant.t.namespaces=x", NULL}; /* no token */

        CHECK_EQ(run(a1, out, sizeof(out)), 2);
        CHECK_EQ(run(a2, out, sizeof(out)), 2);
        CHECK_EQ(run(a3, out, sizeof(out)), 2);
        CHECK_EQ(run(a4, out, sizeof(out)), 2);
        CHECK_EQ(run(a5, out, sizeof(out)), 2);
        CHECK_EQ(run(a6, out, sizeof(out)), 2);
    }
    printf("e2e_config: ok\n");
    return 0;
}
