/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the test programs: scratch directories under
 * $KVS_TEST_DIR (default ./var/test), deterministic random bytes, and the
 * skip exit code CTest understands.
 */
#ifndef KVS_TESTUTIL_H
#define KVS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#define KVS_TEST_SKIP 77

/* Creates a fresh, empty directory for one test and returns its path in a
 * static buffer (valid until the next call). Aborts the test on failure. */
const char *kvs_test_dir(const char *name);

/* Removes a directory tree; returns 0 or -errno. */
int kvs_test_rmtree(const char *path);

/* Fills buf with bytes that depend only on seed. */
void kvs_test_fill(void *buf, size_t len, uint64_t seed);

/* A small deterministic PRNG (splitmix64). */
uint64_t kvs_test_rand(uint64_t *state);

#endif
