/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench report: turns the JSON lines of one or more runs into a
 * PNG. The drawing is tools/bench/report.py (matplotlib), whose path CMake
 * compiles in (KVS_BENCH_REPORT; KVS_REPORT_SCRIPT overrides); this mode
 * runs it with the same arguments under Debian's /usr/bin/python3, the one
 * python3-matplotlib is installed for (a python3 earlier in PATH, from
 * pyenv or a venv, may not have it).
 *
 *   kvstash-bench report [-o OUT.png] [--title T] RUN.jsonl [...]
 */
#include "tools/bench/bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bench_report_main(int argc, char **argv)
{
    const char *script = getenv("KVS_REPORT_SCRIPT");
    char **args;

    if (!script || !*script)
        script = KVS_BENCH_REPORT;
    if (access(script, R_OK) != 0) {
        fprintf(stderr,
                "kvstash-bench report: %s: %s (set "
                "KVS_REPORT_SCRIPT)\n",
                script, strerror(errno));
        return 2;
    }
    /* python3 SCRIPT argv[1..] NULL */
    args = calloc((size_t)argc + 2, sizeof(*args));
    if (!args)
        return 1;
    args[0] = "/usr/bin/python3";
    args[1] = (char *)script;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    execv(args[0], args);
    fprintf(stderr,
            "kvstash-bench report: cannot run %s: %s (install "
            "python3-matplotlib: scripts/deps.sh)\n",
            args[0], strerror(errno));
    free(args);
    return 2;
}
