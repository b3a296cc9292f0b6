/* SPDX-License-Identifier: Apache-2.0 */
/*
 * STAT: an operator's view (the engine's counters, then the transport's,
 * summed over every serving thread, daemon.threads) or a tenant's own
 * (what its namespaces hold and what its connections hold). Moved out of
 * handler.c, which keeps the opcode table; the tenancy rule of handler.c
 * holds here too: a tenant sees only its own namespaces.
 *
 * Threading: runs on the serving thread of the asking connection; the
 * other threads' counters are atomics (server_int.h), read relaxed, so a
 * sum is not one instant's but each term is exact.
 */
#include "transport/server/server_int.h"
#include "transport/server/shm.h"
#include "transport/server/stream.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/debug.h"
#include "kvstash/kvstash.h"

#define STAT_ENT(s, field)                                                     \
    {                                                                          \
#field, offsetof(kvs_store_stats_t, field)                             \
    }

static const struct {
    const char *name;
    size_t off;
} store_stats[] = {
    STAT_ENT(s, blocks),
    STAT_ENT(s, dram_blocks),
    STAT_ENT(s, nvme_blocks),
    STAT_ENT(s, dram_used_bytes),
    STAT_ENT(s, dram_capacity_bytes),
    STAT_ENT(s, nvme_used_bytes),
    STAT_ENT(s, nvme_capacity_bytes),
    STAT_ENT(s, pinned_bytes),
    STAT_ENT(s, refs),
    STAT_ENT(s, puts),
    STAT_ENT(s, gets),
    STAT_ENT(s, hits),
    STAT_ENT(s, misses),
    STAT_ENT(s, dram_hits),
    STAT_ENT(s, nvme_hits),
    STAT_ENT(s, degraded),
    STAT_ENT(s, evicted),
    STAT_ENT(s, expired),
    STAT_ENT(s, promoted),
    STAT_ENT(s, corrupt_reads),
    STAT_ENT(s, full_errors),
    STAT_ENT(s, regions_reclaimed),
    STAT_ENT(s, bytes_written),
    STAT_ENT(s, bytes_read),
    STAT_ENT(s, logical_bytes_degraded),
    STAT_ENT(s, stored_bytes_degraded),
    STAT_ENT(s, admission_rejected),
    STAT_ENT(s, compress_skipped),
    STAT_ENT(s, matches),
    STAT_ENT(s, match_keys),
    STAT_ENT(s, match_hits),
    STAT_ENT(s, match_dram_hits),
    STAT_ENT(s, match_nvme_hits),
    STAT_ENT(s, io_errors),
    STAT_ENT(s, degrade_backlog_bytes),
    STAT_ENT(s, lock_acquired),
    STAT_ENT(s, lock_contended),
    STAT_ENT(s, lock_wait_us),
    STAT_ENT(s, rlock_acquired),
    STAT_ENT(s, rlock_contended),
    STAT_ENT(s, rlock_wait_us),
};

/* One named value of a STAT reply, into ents (cap entries). */
static void stat_add(kvs_wire_stat_t *ents, size_t cap, size_t *n,
                     const char *name, uint64_t value)
{
    kvs_assert(*n < cap);
    ents[*n].name.data = (const uint8_t *)name;
    ents[*n].name.len = (uint32_t)strlen(name);
    ents[*n].value = value;
    (*n)++;
}

/* What a tenant's STAT shows: its own namespace (by a walk of it) and
 * its own connections, nothing of the rest of the store. */
typedef struct tenant_view {
    uint64_t blocks, dram_blocks, nvme_blocks;
    uint64_t dram_used_bytes, nvme_used_bytes, pinned_bytes;
} tenant_view_t;

static int tenant_view_add(void *arg, const void *key, uint32_t key_len,
                           const void *parent, uint32_t parent_len,
                           const kvs_block_info_t *info)
{
    tenant_view_t *v = arg;

    (void)key, (void)key_len, (void)parent, (void)parent_len;
    v->blocks++;
    if (info->tier == KVS_TIER_DRAM) {
        v->dram_blocks++;
        v->dram_used_bytes += info->data_len;
    } else {
        v->nvme_blocks++;
        v->nvme_used_bytes += info->data_len;
    }
    if (info->cls == KVS_CLASS_PINNED)
        v->pinned_bytes += info->data_len;
    return 0;
}

static void stat_tenant(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m)
{
    kvs_wire_stat_t ents[16];
    tenant_view_t v = {0};
    uint64_t conns = 0, leases = 0, pins = 0, refs = 0;
    kvs_wire_msg_t r;
    size_t n = 0;

    if (conn->ns_ok)
        (void)kvs_store_scan(srv->store, conn->ns, 0, tenant_view_add, &v,
                             NULL);
    for (const kvs_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing || !c->ready || c->tenant != conn->tenant)
            continue;
        conns++;
        leases += c->nleases;
        pins += c->npins;
        refs += c->npins + c->ndata;
        for (const kvs_lease_t *l = c->leases; l; l = l->next)
            refs += l->nkeys;
    }
#define TEN_STAT(nm, val) stat_add(ents, KVS_ARRAY_SIZE(ents), &n, nm, val)
    TEN_STAT("blocks", v.blocks);
    TEN_STAT("dram_blocks", v.dram_blocks);
    TEN_STAT("nvme_blocks", v.nvme_blocks);
    TEN_STAT("dram_used_bytes", v.dram_used_bytes);
    TEN_STAT("nvme_used_bytes", v.nvme_used_bytes);
    TEN_STAT("pinned_bytes", v.pinned_bytes);
    TEN_STAT("refs", refs);
    TEN_STAT("connections", conns);
    TEN_STAT("leases", leases);
    TEN_STAT("conn_pins", pins);
#undef TEN_STAT
    r = kvs_reply_to(&m->hdr, (uint32_t)n);
    r.u.stat_rep.ents = ents;
    kvs_send_reply(srv, conn, &r);
}

/* A STAT counter (an atomic of size bytes at off in kvs_server_t, see
 * server_int.h) summed over every serving thread of root. */
static uint64_t sum_counter(kvs_server_t *root, size_t off, size_t size)
{
    uint64_t sum = 0;

    for (uint32_t i = 0; i <= root->nworkers; i++) {
        char *w = (char *)(i ? root->workers[i - 1] : root);

        if (size == sizeof(uint64_t))
            sum += atomic_load_explicit((_Atomic uint64_t *)(w + off),
                                        memory_order_relaxed);
        else
            sum += atomic_load_explicit((_Atomic uint32_t *)(w + off),
                                        memory_order_relaxed);
    }
    return sum;
}

void kvs_stat_op(kvs_server_t *srv, kvs_conn_t *conn, kvs_wire_msg_t *m,
                 const uint8_t *payload)
{
    /* The store's counters, then the server's SRV_STAT lines below (31
     * with shm on, after three branches each added some): room for 64, so
     * that the next counter does not trip stat_add's assert. */
    kvs_wire_stat_t ents[KVS_ARRAY_SIZE(store_stats) + 64];
    kvs_server_t *root;
    kvs_store_stats_t st;
    kvs_wire_msg_t r;
    size_t n = 0;

    (void)payload;
    if (!conn->tenant || !conn->tenant->is_operator) {
        stat_tenant(srv, conn, m);
        return;
    }
    kvs_store_stats(srv->store, &st);
    for (size_t i = 0; i < KVS_ARRAY_SIZE(store_stats); i++) {
        ents[n].name.data = (const uint8_t *)store_stats[i].name;
        ents[n].name.len = (uint32_t)strlen(store_stats[i].name);
        memcpy(&ents[n].value, (const char *)&st + store_stats[i].off, 8);
        n++;
    }
    root = kvs_server_root(srv);
#define SRV_SUM(field)                                                         \
    sum_counter(root, offsetof(kvs_server_t, field),                           \
                sizeof(((kvs_server_t *)0)->field))
#define SRV_STAT(nm, val) stat_add(ents, KVS_ARRAY_SIZE(ents), &n, nm, val)
    SRV_STAT("connections", SRV_SUM(nconns));
    SRV_STAT("connections_accepted", SRV_SUM(conns_accepted));
    SRV_STAT("connections_rejected", SRV_SUM(conns_rejected));
    SRV_STAT("connections_moved", SRV_SUM(conns_moved));
    SRV_STAT("connections_prehello", SRV_SUM(nprehello));
    SRV_STAT("hello_timeouts", SRV_SUM(hello_timeouts));
    SRV_STAT("hello_evictions", SRV_SUM(hello_evictions));
    SRV_STAT("requests", SRV_SUM(requests));
    SRV_STAT("bad_frames", SRV_SUM(bad_frames));
    SRV_STAT("auth_failures", SRV_SUM(auth_failures));
    SRV_STAT("leases", SRV_SUM(leases_active));
    SRV_STAT("leases_expired", SRV_SUM(leases_expired));
    SRV_STAT("conn_pins", SRV_SUM(conn_pins));
    SRV_STAT("staged_puts", SRV_SUM(staged_puts));
    SRV_STAT("direct_puts", SRV_SUM(direct_puts));
    SRV_STAT("bulk_endpoints_bound", SRV_SUM(bulk_bound));
    SRV_STAT("put_endpoint_puts", SRV_SUM(put_ep_puts));
    SRV_STAT("get_blocks_sent", SRV_SUM(blocks_sent));
    SRV_STAT("get_bytes_sent", SRV_SUM(bytes_sent));
    SRV_STAT("get_misses", SRV_SUM(get_misses));
    SRV_STAT("get_throttled", SRV_SUM(get_throttled));
    if (root->shm) {
        kvs_shm_stats_t sh;

        kvs_shm_stats(root->shm, &sh);
        SRV_STAT("shm_sessions", sh.sessions);
        SRV_STAT("shm_reservations", sh.reservations);
        SRV_STAT("shm_views", sh.views);
        SRV_STAT("shm_attached", sh.attached);
        SRV_STAT("shm_refused", sh.refused);
        SRV_STAT("shm_commits", sh.commits);
        SRV_STAT("shm_reclaimed", sh.reclaimed);
        SRV_STAT("shm_views_expired", sh.expired);
        SRV_STAT("shm_rings", sh.rings);
        SRV_STAT("shm_arena_cut", sh.arena_cut);
    }
    {
        kvs_srvstream_stats_t ss; /* thread 0's; atomics (stream.c) */

        kvs_srvstream_stats(root->stream, &ss);
        SRV_STAT("stream_parts_inplace", ss.parts_inplace);
        SRV_STAT("stream_puts_open", ss.puts_open);
        SRV_STAT("stream_fetches_open", ss.fetches_open);
        SRV_STAT("stream_pool_allocs", ss.pool_allocs);
    }
    SRV_STAT("puts_waited", SRV_SUM(puts_waited));
    SRV_STAT("puts_refused_busy", SRV_SUM(puts_refused_busy));
    SRV_STAT("serving_threads", root->nworkers + 1);
    SRV_STAT("uptime_ms", (kvs_clock_mono_ns() - srv->started_ns) / 1000000);
    SRV_STAT("version", KVS_VERSION_NUMBER);
#undef SRV_STAT
#undef SRV_SUM
    r = kvs_reply_to(&m->hdr, (uint32_t)n);
    r.u.stat_rep.ents = ents;
    kvs_send_reply(srv, conn, &r);
}
