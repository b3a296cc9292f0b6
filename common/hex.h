/* SPDX-License-Identifier: Apache-2.0 */
/* Hex strings for keys given on command lines and in manifests. */
#ifndef KVS_HEX_H
#define KVS_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline int kvs_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes the hex string s (any case, even length) into out, which may be
 * s itself (decoding in place). Returns the number of bytes, or -1 when s
 * is not hex or does not fit in cap bytes.
 */
static inline long kvs_hex_decode(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);

    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = kvs_hex_digit(s[2 * i]), lo = kvs_hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

#endif
