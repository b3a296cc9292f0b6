/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared pieces of kvstash-bench: figure output (human or JSON lines) and
 * the machine limits measured by tools/bench/limits.sh in the same run.
 */
#ifndef KVS_BENCH_H
#define KVS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern bool bench_json;

/* Prints one figure. limit <= 0 means "no limit measured": the ratio is
 * then omitted (JSON null). */
void bench_figure(const char *figure, double value, const char *unit,
                  double limit, const char *note);

/* Runs tools/bench/limits.sh for the given block size and depth and keeps
 * the MB/s of each limit it prints ("disk-read", "disk-write", "ucx-am",
 * "redis-get", "memcpy") for bench_limit(); -1 if it could not run (reason
 * on stderr). what is passed to the script as is ("disk-read disk-write");
 * args too (more options, e.g. "-w 266240 -f 2147483648"). */
int bench_limits_run(const char *dir, uint64_t bytes, unsigned depth,
                     unsigned seconds, const char *what);
int bench_limits_run_args(const char *dir, uint64_t bytes, unsigned depth,
                          unsigned seconds, const char *args, const char *what);
/* The latest MB/s of one limit, or -1 if none was measured. */
double bench_limit(const char *name);

/* Parses "256k", "1m", "2g" or a plain number; 0 on error. */
uint64_t bench_parse_size(const char *s);

double bench_now(void);

/* Fills p with normal floats (the shape of real KV data), each stored
 * little-endian as its top elem_size bytes: bf16 for 2, fp32 for 4, the
 * top byte (an fp8-like stand-in) otherwise. Deterministic for a seed. */
void bench_fill_floats(uint8_t *p, size_t len, uint32_t elem_size,
                       uint64_t seed);

/* Removes a directory tree the benchmark made. */
int bench_rmtree(const char *path);

/* A client buffer as an inference engine would have one: 2 MiB pages,
 * written once before use (first writes to 4 KiB pages cost ~20 us each
 * on shadow-paging VMs). NULL on failure; free with bench_free_huge(). */
void *bench_alloc_huge(size_t len);
void bench_free_huge(void *p, size_t len);

/* Spins one thread for seconds, reading the clock: how often per second
 * it lost the CPU for more than 5 us, and the share of time lost. Idle
 * bare metal gives the timer tick; a VM adds its host's exits. */
void bench_cpu_stalls(double seconds, double *per_s, double *lost_pct);

/* At most this many interleaved rounds of (ours, limit). */
#define BENCH_ROUNDS_MAX 9

/* Prints the round with the median ratio of ours[i] / lim[i] (the median
 * of ours when a round has no limit), with that round's own value and
 * limit, so that value / limit is the median ratio; the note lists every
 * round, then what. */
void bench_report_rounds(const char *figure, unsigned nr, const double *ours,
                         const double *lim, const char *what);
/* The same for a figure in another unit than MB/s (a latency: the ratio
 * is then a slowdown, the lower the better). */
void bench_report_rounds_unit(const char *figure, const char *unit, unsigned nr,
                              const double *ours, const double *lim,
                              const char *what);

int bench_store_main(int argc, char **argv);
int bench_shm_main(int argc, char **argv);
int bench_codec_main(int argc, char **argv);
int bench_warmup_main(int argc, char **argv);
int bench_report_main(int argc, char **argv);
int bench_replay_main(int argc, char **argv);
int bench_scale_main(int argc, char **argv);
int bench_events_main(int argc, char **argv);
int bench_load_main(int argc, char **argv);

#endif
