/* SPDX-License-Identifier: Apache-2.0 */
/* kvstash-bench stream: prefill -> decode streaming between two daemons
 * (bench_stream.c). */
#ifndef KVS_BENCH_STREAM_H
#define KVS_BENCH_STREAM_H

int bench_stream_main(int argc, char **argv);

#endif
