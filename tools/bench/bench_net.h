/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-bench network modes: figures measured through libkvstash against a
 * real kvstashd (started by the bench, or one already running with --port),
 * each printed beside the machine limit measured in the same run.
 *
 *   net-get    DRAM-tier GET of 1 MiB blocks into this process
 *              vs ucx_perftest ucp_am_bw of 1 MiB (target ratio >= 0.85)
 *   net-multi  256 KiB GETs from 8 client processes
 *              vs Redis GET of 256 KiB values, 8 clients (target >= 3)
 *   net-match  MATCH of a 128-key chain: p50 and p99 latency
 *              vs one UCX round trip + 10 us (target ratio <= 1)
 *   net        all three
 */
#ifndef KVS_BENCH_NET_H
#define KVS_BENCH_NET_H

int bench_net_main(int argc, char **argv);

#endif
