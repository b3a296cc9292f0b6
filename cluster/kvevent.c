// SPDX-License-Identifier: Apache-2.0
/*
 * The KVEventBatch decoder: msgpack-c unpacks the payload into a tree; one
 * walk checks every field that matters (the batch's "events" array, each
 * event's "type", "block_hashes" and "medium"), a second reports the
 * events. Fields this consumer does not need are allowed and ignored, as
 * msgspec does for unknown fields.
 *
 * Before msgpack-c sees the payload, one pass over its bytes checks that
 * every array and map it declares can be there: each element takes at
 * least one byte, so more elements pending than bytes left is a lie.
 * msgpack-c allocates a declared count before reading the elements, and a
 * 300-byte payload declaring 2^32 of them made it ask for 16 GiB (found
 * by tests/fuzz/fuzz_kvevent.c).
 */
#include "cluster/kvevent.h"

#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <string.h>

#include "kvstash/types.h"

enum { EV_STORED, EV_REMOVED, EV_CLEARED };

static bool str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);

    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           !memcmp(o->via.str.ptr, s, n);
}

static const msgpack_object *field(const msgpack_object *map, const char *k)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (str_is(&map->via.map.ptr[i].key, k))
            return &map->via.map.ptr[i].val;
    return NULL;
}

/* 0 and *kind, *tier (0: a medium not ours) for a valid event. */
static int check_event(const msgpack_object *ev, int *kind, uint8_t *tier)
{
    const msgpack_object *t = field(ev, "type"), *h, *m;

    if (!t)
        return -EPROTO;
    if (str_is(t, "AllBlocksCleared")) {
        *kind = EV_CLEARED;
        return 0;
    }
    if (str_is(t, "BlockStored"))
        *kind = EV_STORED;
    else if (str_is(t, "BlockRemoved"))
        *kind = EV_REMOVED;
    else
        return -EPROTO;
    h = field(ev, "block_hashes");
    m = field(ev, "medium");
    if (!h || h->type != MSGPACK_OBJECT_ARRAY || !m)
        return -EPROTO;
    for (uint32_t i = 0; i < h->via.array.size; i++) {
        const msgpack_object *k = &h->via.array.ptr[i];

        if (k->type != MSGPACK_OBJECT_BIN &&
            k->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
            k->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return -EPROTO;
    }
    if (str_is(m, "CPU"))
        *tier = KVS_TIER_DRAM;
    else if (str_is(m, "STORAGE"))
        *tier = KVS_TIER_NVME;
    else if (m->type == MSGPACK_OBJECT_STR || m->type == MSGPACK_OBJECT_NIL)
        *tier = 0;
    else
        return -EPROTO;
    return 0;
}

static int walk(const msgpack_object *evs, const kvs_kvevent_sink_t *sink)
{
    for (uint32_t i = 0; i < evs->via.array.size; i++) {
        const msgpack_object *ev = &evs->via.array.ptr[i], *h;
        int kind;
        uint8_t tier = 0;

        if (check_event(ev, &kind, &tier))
            return -EPROTO;
        if (!sink)
            continue;
        if (kind == EV_CLEARED) {
            sink->cleared(sink->arg);
            continue;
        }
        if (!tier)
            continue;
        h = field(ev, "block_hashes");
        for (uint32_t j = 0; j < h->via.array.size; j++) {
            const msgpack_object *k = &h->via.array.ptr[j];

            if (k->type != MSGPACK_OBJECT_BIN || !k->via.bin.size ||
                k->via.bin.size > KVS_KEY_MAX)
                continue; /* not a kvstash key */
            (kind == EV_STORED ? sink->stored : sink->removed)(
                sink->arg, k->via.bin.ptr, k->via.bin.size, tier);
        }
    }
    return 0;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The bytes that follow msgpack type byte b before its elements or its
 * body: *lenw bytes of length (then *fixed more bytes, ext's type), or
 * *fixed bytes of value. Sets *elems for arrays (1 per element) and maps
 * (2 per pair), from the length or the type byte. -1: never valid (0xc1). */
static int head(uint8_t b, unsigned *lenw, unsigned *fixed, unsigned *elems)
{
    *lenw = *fixed = *elems = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b <= 0x8f)
        *elems = 2u * (b & 0x0f);
    else if (b <= 0x9f)
        *elems = b & 0x0f;
    else if (b <= 0xbf)
        *fixed = b & 0x1f; /* fixstr */
    else if (b >= 0xc4 && b <= 0xc6)
        *lenw = 1u << (b - 0xc4); /* bin 8/16/32 */
    else if (b >= 0xc7 && b <= 0xc9) {
        *lenw = 1u << (b - 0xc7); /* ext 8/16/32, then the type */
        *fixed = 1;
    } else if (b == 0xca || b == 0xcb)
        *fixed = b == 0xca ? 4 : 8;
    else if (b >= 0xcc && b <= 0xd3)
        *fixed = 1u << ((b - 0xcc) & 3); /* u8..u64, i8..i64 */
    else if (b >= 0xd4 && b <= 0xd8)
        *fixed = 1 + (1u << (b - 0xd4)); /* fixext: type + 1..16 */
    else if (b >= 0xd9 && b <= 0xdb)
        *lenw = 1u << (b - 0xd9); /* str 8/16/32 */
    else if (b >= 0xdc && b <= 0xdf)
        *lenw = b & 1 ? 4 : 2; /* array/map 16/32: elements, below */
    else
        return -1;
    return 0;
}

/* Whether the one msgpack object in p[0..len) declares no more elements
 * than it has bytes for, and ends exactly at len. */
static bool sizes_fit(const uint8_t *p, size_t len)
{
    uint64_t pending = 1;
    size_t off = 0;

    while (pending) {
        unsigned lenw, fixed, elems;
        uint64_t n = 0;
        uint8_t b;

        if (off >= len)
            return false;
        b = p[off++];
        pending--;
        if (head(b, &lenw, &fixed, &elems))
            return false;
        if (lenw) {
            if (len - off < lenw)
                return false;
            n = be(p + off, lenw);
            off += lenw;
            if (b >= 0xdc && b <= 0xdf) {
                elems = 0;
                pending += b >= 0xde ? 2 * n : n;
                n = 0;
            }
        }
        if (fixed > len - off || n > len - off - fixed)
            return false;
        off += fixed + (size_t)n;
        pending += elems;
        if (pending > len - off)
            return false;
    }
    return off == len;
}

int kvs_kvevent_decode(const void *payload, size_t len,
                       const kvs_kvevent_sink_t *sink)
{
    msgpack_unpacked u;
    size_t off = 0;
    int ret = -EPROTO;

    if (!sizes_fit(payload, len))
        return -EPROTO;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, payload, len, &off) == MSGPACK_UNPACK_SUCCESS &&
        off == len) {
        const msgpack_object *evs = field(&u.data, "events");

        if (evs && evs->type == MSGPACK_OBJECT_ARRAY && walk(evs, NULL) == 0)
            ret = walk(evs, sink);
    }
    msgpack_unpacked_destroy(&u);
    return ret;
}
