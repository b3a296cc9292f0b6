/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging and panics. A line is "<time> <level> <file>:<line> <message>",
 * formatted into a stack buffer and written with one write(2) so lines from
 * different threads never interleave.
 */
#include "common/log.h"
#include "common/debug.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int kvs_log_level_g = KVS_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          "trace"};

int kvs_log_set_level(int level)
{
    int old = kvs_log_level_g;

    if (level >= KVS_LOG_ERROR && level <= KVS_LOG_TRACE)
        kvs_log_level_g = level;
    return old;
}

int kvs_log_parse_level(const char *name)
{
    for (size_t i = 0; i < KVS_ARRAY_SIZE(level_names); i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

static void log_vwrite(const char *tag, const char *file, int line,
                       const char *fmt, va_list ap)
{
    char buf[1024];
    struct timespec ts;
    struct tm tm;
    const char *base = strrchr(file, '/');
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03ld %-5s %s:%d ",
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, tag,
                 base ? base + 1 : file, line);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(buf))
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        /* Nowhere left to report a failed log write. */
    }
}

void kvs_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level_names[level], file, line, fmt, ap);
    va_end(ap);
}

void kvs_panic_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite("PANIC", file, line, fmt, ap);
    va_end(ap);
    abort();
}
