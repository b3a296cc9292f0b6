/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The table's key chunks (see keys.h). A chunk is a header word and the
 * key's bytes, in units of 4 bytes, two at least:
 *
 *   | size class (8 bits) | references (24 bits) | key bytes ... pad to 4 |
 *
 * A free chunk has no references and the handle of the next free chunk of
 * its class in the word after its header. Chunks come from their class's
 * free list, else from the untouched end of the region, so the resident
 * part follows the most key bytes held at once.
 */
#include "kvstore/keys.h"
#include "kvstore/store.h"
#include "common/compiler.h"
#include "common/debug.h"

#include <errno.h>
#include <string.h>

#define REFS_MAX 0xffffffu
#define UNIT 4u
#define UNITS_MIN 2u /* a free chunk's header and next handle */

static uint32_t *word(const kvs_keys_t *k, uint32_t h)
{
    return (uint32_t *)(void *)((uint8_t *)k->mem.base + (uint64_t)h * UNIT);
}

/* Units of a chunk holding len bytes, UNITS_MIN..UNITS_MIN - 1 +
 * KVS_KEYS_CLASSES; its class is units - UNITS_MIN. */
static uint32_t units_for(uint32_t len)
{
    return KVS_MAX((4 + len + UNIT - 1) / UNIT, UNITS_MIN);
}

int kvs_keys_init(kvs_keys_t *k, uint64_t max_chunks)
{
    uint64_t units = max_chunks * units_for(KVS_KEY_MAX);

    memset(k, 0, sizeof(*k));
    _Static_assert(KVS_KEY_MAX + 4 <=
                       (KVS_KEYS_CLASSES + UNITS_MIN - 1) * UNIT,
                   "the largest key fits the largest class");
    /* Handles are 32 bits: past that, puts find the table full. */
    units = KVS_MAX(KVS_MIN(units, (uint64_t)KVS_KEYS_NIL - 1), 1ull);
    if (kvs_huge_reserve(units * UNIT, &k->mem))
        return -ENOMEM;
    k->cap = units;
    for (unsigned c = 0; c < KVS_KEYS_CLASSES; c++)
        k->free[c] = KVS_KEYS_NIL;
    return 0;
}

void kvs_keys_fini(kvs_keys_t *k)
{
    kvs_huge_unmap(&k->mem);
    memset(k, 0, sizeof(*k));
}

uint32_t kvs_keys_add(kvs_keys_t *k, const void *bytes, uint32_t len)
{
    kvs_assert(len >= 1 && len <= KVS_KEY_MAX);
    uint32_t units = units_for(len), cls = units - UNITS_MIN,
             h = k->free[cls];

    if (h != KVS_KEYS_NIL) {
        k->free[cls] = word(k, h)[1];
    } else if (k->top + units <= k->cap) {
        h = (uint32_t)k->top;
        k->top += units;
    } else {
        return KVS_KEYS_NIL;
    }
    uint32_t *w = word(k, h);
    w[0] = (cls << 24) | 1u;
    memcpy(w + 1, bytes, len);
    k->nchunks++;
    k->bytes += (uint64_t)units * UNIT;
    return h;
}

bool kvs_keys_ref(kvs_keys_t *k, uint32_t h)
{
    uint32_t *w = word(k, h);

    kvs_assert((*w & REFS_MAX) != 0);
    if ((*w & REFS_MAX) == REFS_MAX)
        return false;
    (*w)++;
    return true;
}

void kvs_keys_unref(kvs_keys_t *k, uint32_t h)
{
    if (h == KVS_KEYS_NIL)
        return;
    uint32_t *w = word(k, h), cls = *w >> 24;

    kvs_assert((*w & REFS_MAX) != 0 && cls < KVS_KEYS_CLASSES);
    if (--(*w) & REFS_MAX)
        return;
    w[1] = k->free[cls];
    k->free[cls] = h;
    k->nchunks--;
    k->bytes -= (uint64_t)(cls + UNITS_MIN) * UNIT;
}

uint32_t kvs_keys_refs(const kvs_keys_t *k, uint32_t h)
{
    return *word(k, h) & REFS_MAX;
}
