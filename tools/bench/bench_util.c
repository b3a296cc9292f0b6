/* SPDX-License-Identifier: Apache-2.0 */
/* Figure output and machine limits for kvstash-bench (see bench.h). */
#include "tools/bench/bench.h"
#include "common/fs.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

bool bench_json;

struct limit {
    char name[32];
    double mbps;
};
static struct limit limits[16];
static int nlimits;

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_figure(const char *figure, double value, const char *unit,
                  double limit, const char *note)
{
    if (bench_json) {
        printf("{\"figure\":\"%s\",\"value\":%.3f,\"unit\":\"%s\",", figure,
               value, unit);
        if (limit > 0)
            printf("\"limit\":%.3f,\"ratio\":%.3f", limit, value / limit);
        else
            printf("\"limit\":null,\"ratio\":null");
        if (note)
            printf(",\"note\":\"%s\"", note);
        printf("}\n");
    } else {
        /* Ratios need three decimals; rates and times one. */
        int prec = strcmp(unit, "ratio") == 0 ? 3 : 1;
        printf("%-28s %12.*f %-6s", figure, prec, value, unit);
        if (limit > 0)
            printf(" limit %10.*f  ratio %.3f", prec, limit, value / limit);
        printf("%s%s\n", note ? "  " : "", note ? note : "");
    }
    fflush(stdout);
}

uint64_t bench_parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    return *end ? 0 : v;
}

/* tools/bench/limits.sh of this source tree (KVS_BENCH_LIMITS, set by
 * CMake); KVS_LIMITS_SCRIPT overrides. */
static const char *limits_script(void)
{
    const char *env = getenv("KVS_LIMITS_SCRIPT");

    if (env && *env)
        return env;
    return access(KVS_BENCH_LIMITS, R_OK) == 0 ? KVS_BENCH_LIMITS : NULL;
}

int bench_limits_run(const char *dir, uint64_t bytes, unsigned depth,
                     unsigned seconds, const char *what)
{
    return bench_limits_run_args(dir, bytes, depth, seconds, "", what);
}

int bench_limits_run_args(const char *dir, uint64_t bytes, unsigned depth,
                          unsigned seconds, const char *args, const char *what)
{
    const char *script = limits_script();
    char cmd[1024], line[512];
    FILE *p;

    if (!script) {
        fprintf(stderr, "bench: %s not found (set KVS_LIMITS_SCRIPT)\n",
                KVS_BENCH_LIMITS);
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "bash '%s' -d '%s' -s %llu -q %u -t %u %s %s",
             script, dir, (unsigned long long)bytes, depth, seconds, args,
             what);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof(line), p)) {
        char name[32];
        double mbps;
        const char *l = strstr(line, "\"limit\":\"");
        const char *m = strstr(line, "\"MBps\":");
        if (!l || !m)
            continue;
        if (sscanf(l + 9, "%31[^\"]", name) != 1 ||
            sscanf(m + 7, "%lf", &mbps) != 1)
            continue;
        /* Full (a benchmark measuring in rounds): the oldest goes, so
         * bench_limit() still finds the latest. */
        if (nlimits == (int)(sizeof(limits) / sizeof(limits[0]))) {
            memmove(limits, limits + 1, sizeof(limits) - sizeof(limits[0]));
            nlimits--;
        }
        snprintf(limits[nlimits].name, sizeof(limits[nlimits].name), "%s",
                 name);
        limits[nlimits++].mbps = mbps;
    }
    return pclose(p) == 0 ? 0 : -1;
}

double bench_limit(const char *name)
{
    for (int i = nlimits - 1; i >= 0; i--)
        if (!strcmp(limits[i].name, name))
            return limits[i].mbps > 0 ? limits[i].mbps : -1;
    return -1;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1). */
static double uniform(uint64_t *s)
{
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

void bench_fill_floats(uint8_t *p, size_t len, uint32_t elem_size,
                       uint64_t seed)
{
    const uint32_t w = elem_size == 2 || elem_size == 4 ? elem_size : 1;

    for (size_t i = 0; i < len; i += w) {
        /* Box-Muller: a standard normal from two uniforms. */
        double g = sqrt(-2.0 * log(uniform(&seed))) *
                   cos(6.283185307179586 * uniform(&seed));
        float f = (float)g;
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        for (uint32_t b = 0; b < w && i + b < len; b++)
            p[i + b] = (uint8_t)(u >> (8 * (4 - w + b)));
    }
}

void bench_report_rounds(const char *figure, unsigned nr, const double *ours,
                         const double *lim, const char *what)
{
    bench_report_rounds_unit(figure, "MB/s", nr, ours, lim, what);
}

void bench_report_rounds_unit(const char *figure, const char *unit, unsigned nr,
                              const double *ours, const double *lim,
                              const char *what)
{
    unsigned order[BENCH_ROUNDS_MAX] = {0}, nlim = 0, med;
    double key[BENCH_ROUNDS_MAX];
    char note[640], rl[200] = "";
    size_t off = 0;

    for (unsigned i = 0; i < nr; i++)
        nlim += lim[i] > 0;
    for (unsigned i = 0; i < nr; i++) {
        order[i] = i;
        key[i] = nlim == nr ? ours[i] / lim[i] : ours[i];
    }
    for (unsigned i = 1; i < nr; i++)
        for (unsigned j = i; j > 0 && key[order[j - 1]] > key[order[j]]; j--) {
            unsigned t = order[j];

            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    med = order[nr / 2];
    for (unsigned i = 0; i < nr && off < sizeof(rl); i++) {
        int w = nlim == nr ? snprintf(rl + off, sizeof(rl) - off, "%s%.0f/%.0f",
                                      i ? " " : "", ours[i], lim[i])
                           : snprintf(rl + off, sizeof(rl) - off, "%s%.0f",
                                      i ? " " : "", ours[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    snprintf(note, sizeof(note),
             "median of %u interleaved rounds (ours/limit %s: %s); %s", nr,
             unit, rl, what);
    bench_figure(figure, ours[med], unit, nlim == nr ? lim[med] : -1, note);
}

int bench_rmtree(const char *path)
{
    return kvs_fs_rmtree(path);
}

#define HUGE_SZ (2u << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void *bench_alloc_huge(size_t len)
{
    size_t map = len + HUGE_SZ;
    uint8_t *m = mmap(NULL, map, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *p;

    if (m == MAP_FAILED)
        return NULL;
    p = (uint8_t *)(((uintptr_t)m + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    /* The unused head and tail go back; munmap needs the aligned range. */
    if (p > m)
        munmap(m, (size_t)(p - m));
    if (m + map > p + len)
        munmap(p + len, (size_t)(m + map - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE);
    (void)madvise(p, len, MADV_POPULATE_WRITE);
    memset(p, 0, len);
    return p;
}

void bench_free_huge(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

void bench_cpu_stalls(double seconds, double *per_s, double *lost_pct)
{
    const double stall = 5e-6;
    double start = bench_now(), last = start, now, lost = 0;
    unsigned long n = 0;

    while ((now = bench_now()) < start + seconds) {
        if (now - last > stall) {
            n++;
            lost += now - last;
        }
        last = now;
    }
    *per_s = n / (now - start);
    *lost_pct = 100 * lost / (now - start);
}
