/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvs_assert() checks internal invariants in debug and sanitizer builds and
 * compiles to nothing otherwise. kvs_panic() is always on: it is for states
 * the process cannot continue from. Neither is ever used on bytes that came
 * from the network or the disk; those are validated and answered with an
 * error code.
 */
#ifndef KVS_DEBUG_H
#define KVS_DEBUG_H

#include "common/compiler.h"

void kvs_panic_at(const char *file, int line, const char *fmt, ...)
    KVS_PRINTF(3, 4) __attribute__((noreturn));

#define kvs_panic(...) kvs_panic_at(__FILE__, __LINE__, __VA_ARGS__)

#ifdef KVS_DEBUG
#define kvs_assert(cond)                                                       \
    do {                                                                       \
        if (kvs_unlikely(!(cond)))                                             \
            kvs_panic_at(__FILE__, __LINE__, "assertion failed: %s", #cond);   \
    } while (0)
#else
#define kvs_assert(cond) ((void)0)
#endif

#endif
