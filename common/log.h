/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leveled logging to one sink (stderr by default). Thread-safe: each message
 * is written with a single write(2). Messages below the current level cost a
 * load and a compare.
 */
#ifndef KVS_LOG_H
#define KVS_LOG_H

#include "common/compiler.h"

enum kvs_log_level {
    KVS_LOG_ERROR = 0,
    KVS_LOG_WARN,
    KVS_LOG_INFO,
    KVS_LOG_DEBUG,
    KVS_LOG_TRACE
};

extern int kvs_log_level_g;

/* Sets the level; returns the previous one. */
int kvs_log_set_level(int level);
/* Parses "error".."trace"; returns the level or -1. */
int kvs_log_parse_level(const char *name);
void kvs_log_write(int level, const char *file, int line, const char *fmt, ...)
    KVS_PRINTF(4, 5);

#define kvs_log(level, ...)                                                    \
    do {                                                                       \
        if ((level) <= kvs_log_level_g)                                        \
            kvs_log_write(level, __FILE__, __LINE__, __VA_ARGS__);             \
    } while (0)

#define kvs_error(...) kvs_log(KVS_LOG_ERROR, __VA_ARGS__)
#define kvs_warn(...) kvs_log(KVS_LOG_WARN, __VA_ARGS__)
#define kvs_info(...) kvs_log(KVS_LOG_INFO, __VA_ARGS__)
#define kvs_debug(...) kvs_log(KVS_LOG_DEBUG, __VA_ARGS__)
#define kvs_trace(...) kvs_log(KVS_LOG_TRACE, __VA_ARGS__)

#endif
