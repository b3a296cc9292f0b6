/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench entry point: a table of modes, each with its own options.
 * Every mode prints its figures next to the limit measured in the same run
 * (bench_figure), as text or, with --json, one JSON object per line.
 */
#include "tools/bench/bench.h"
#include "tools/bench/bench_net.h"
#include "tools/bench/bench_stream.h"
#include "common/cliarg.h"

#include <stdio.h>
#include <string.h>

struct mode {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *help;
};

static const struct mode modes[] = {
    {"store", bench_store_main,
     "engine put/get throughput on the NVMe tier vs fio (io_uring, O_DIRECT)"},
    {"codec", bench_codec_main,
     "ratio and one-thread speed of each codec path on one block"},
    {"net", bench_net_main, "net-get, net-multi and net-match in one run"},
    {"net-get", bench_net_main,
     "DRAM GET of 1 MiB blocks via kvstashd vs ucx_perftest am_bw"},
    {"net-multi", bench_net_main,
     "256 KiB GETs from 8 client processes vs Redis GET, 8 clients"},
    {"net-match", bench_net_main,
     "MATCH of a 128-key chain: p50/p99 vs one UCX round trip"},
    {"shm", bench_shm_main,
     "put/get/view of 1 MiB in place in a same-host daemon's arena vs memcpy"},
    {"net-load", bench_load_main, "net-match-load and net-mixed in one run"},
    {"net-match-load", bench_load_main,
     "MATCH p99 while cold GETs read NVMe and VERIFY runs vs MATCH alone"},
    {"net-mixed", bench_load_main,
     "64 client processes of mixed GET/PUT/MATCH: MB/s, p99 per opcode"},
    {"stream", bench_stream_main,
     "prefill->decode streaming between two daemons vs ucx_perftest am_bw"},
    {"replay", bench_replay_main,
     "block hit ratio of the engine's eviction on a request trace vs LRU"},
    {"scale", bench_scale_main,
     "one node at scale: memory per indexed block, fixed memory, space amp"},
    {"report", bench_report_main,
     "JSON lines of one or more runs -> a PNG (figures beside limits)"},
    {"events", bench_events_main,
     "PUT rate with the KV event publisher on vs off, events/s published"},
    {"warmup", bench_warmup_main,
     "kvstash-warmup import rate vs raw client puts, running daemon"},
};

static void usage(void)
{
    fprintf(stderr, "usage: kvstash-bench MODE [options] [--json]\n\nmodes:\n");
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        fprintf(stderr, "  %-10s %s\n", modes[i].name, modes[i].help);
    fprintf(stderr, "\nkvstash-bench MODE --help lists a mode's options;\n"
                    "kvstash-bench --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 &&
        (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        kvs_cliarg_version("kvstash-bench", stdout);
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(argv[1], modes[i].name))
            return modes[i].main(argc - 1, argv + 1);
    fprintf(stderr, "kvstash-bench: unknown mode '%s'\n", argv[1]);
    usage();
    return 2;
}
