// SPDX-License-Identifier: Apache-2.0
/*
 * The KVEventBatch decoder: msgpack-c unpacks the payload into a tree; one
 * walk checks every field that matters (the batch's "events" array, each
 * event's "type", "block_hashes" and "medium"), a second reports the
 * events. Fields this consumer does not need are allowed and ignored, as
 * msgspec does for unknown fields.
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

int kvs_kvevent_decode(const void *payload, size_t len,
                       const kvs_kvevent_sink_t *sink)
{
    msgpack_unpacked u;
    size_t off = 0;
    int ret = -EPROTO;

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
