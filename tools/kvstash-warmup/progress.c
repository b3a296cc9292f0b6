/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress bar and periodic lines (see progress.h). The rate is bytes of
 * completed blocks over wall time since the start; the ETA assumes the
 * remaining blocks go at the block rate seen so far.
 */
#include "tools/kvstash-warmup/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double kvs_progress_elapsed(const kvs_progress_t *p)
{
    return (double)(now_ns() - p->start_ns) / 1e9;
}

void kvs_progress_init(kvs_progress_t *p, const char *what, uint64_t total,
                       int tty, bool quiet, uint32_t interval_ms)
{
    memset(p, 0, sizeof(*p));
    p->what = what;
    p->out = stderr;
    p->tty = tty < 0 ? isatty(STDERR_FILENO) : tty;
    p->quiet = quiet;
    p->interval_ns = (uint64_t)(interval_ms ? interval_ms : 2000) * 1000000ull;
    p->start_ns = p->last_ns = now_ns();
    p->total = total;
}

/* "12.3 MiB" style sizes. */
static void human(char *buf, size_t len, double bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;

    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", bytes, units[u]);
}

static void draw(kvs_progress_t *p, uint64_t now)
{
    double secs = (double)(now - p->start_ns) / 1e9;
    double rate = secs > 0 ? (double)p->bytes / secs : 0;
    double eta = -1;
    char b[32], r[32];

    if (p->total && p->done && secs > 0)
        eta = secs * (double)(p->total - p->done) / (double)p->done;
    human(b, sizeof(b), (double)p->bytes);
    human(r, sizeof(r), rate);
    if (p->tty) {
        char bar[31];
        int fill = p->total ? (int)(30 * p->done / p->total) : 0;

        memset(bar, ' ', 30);
        memset(bar, '#', (size_t)fill);
        bar[30] = '\0';
        fprintf(p->out, "\r%s [%s] %llu/%llu blocks  %s  %s/s  ETA %s%.0fs ",
                p->what, bar, (unsigned long long)p->done,
                (unsigned long long)p->total, b, r, eta < 0 ? "?" : "",
                eta < 0 ? 0 : eta);
    } else {
        fprintf(p->out,
                "%s: %llu/%llu blocks (%llu ok, %llu skipped, %llu "
                "failed), %s, %s/s, ETA %.0fs\n",
                p->what, (unsigned long long)p->done,
                (unsigned long long)p->total, (unsigned long long)p->ok,
                (unsigned long long)p->skipped, (unsigned long long)p->failed,
                b, r, eta < 0 ? 0 : eta);
    }
    fflush(p->out);
    p->last_ns = now;
}

void kvs_progress_add(kvs_progress_t *p, uint64_t ok, uint64_t skipped,
                      uint64_t failed, uint64_t bytes)
{
    uint64_t now;

    p->ok += ok;
    p->skipped += skipped;
    p->failed += failed;
    p->done += ok + skipped + failed;
    p->bytes += bytes;
    if (p->quiet)
        return;
    now = now_ns();
    if (now - p->last_ns >= (p->tty ? 100000000ull : p->interval_ns))
        draw(p, now);
}

void kvs_progress_finish(kvs_progress_t *p, const char *ok_word)
{
    double secs = kvs_progress_elapsed(p);

    if (p->tty && !p->quiet) {
        draw(p, now_ns());
        fputc('\n', p->out);
    }
    fprintf(p->out,
            "%s: %llu %s, %llu skipped, %llu failed; %.3f GB in "
            "%.2f s, %.3f GB/s\n",
            p->what, (unsigned long long)p->ok, ok_word,
            (unsigned long long)p->skipped, (unsigned long long)p->failed,
            (double)p->bytes / 1e9, secs,
            secs > 0 ? (double)p->bytes / 1e9 / secs : 0.0);
    fflush(p->out);
}
