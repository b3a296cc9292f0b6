/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery at open: opens the RocksDB index, checks that it was made with
 * this layout, and rebuilds the block table from it: namespaces, region
 * generations, then one entry per block record.
 *
 * What survives a crash is what the index says, checked against the
 * regions: a record whose region was reused since it was written (its
 * generation is older than the region's), or whose location or sizes are
 * out of range, describes data that is gone; it is deleted, and the block
 * is a miss. Records that do not decode are deleted by the index. The
 * data itself is checked when it is read (read.c), not here.
 *
 * Called once, by kvs_store_open, before the background thread starts:
 * nothing else runs, so no lock is taken.
 */
#include "kvstore/store_int.h"
#include "common/log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load_ns(void *arg, const char *name, size_t len, uint32_t id,
                    uint32_t elem_size)
{
    kvs_store_t *s = arg;

    if (id >= s->ns_cap) {
        kvs_warn("store: namespace id %u over the limit; ignored", id);
        return;
    }
    free(s->ns[id].name);
    s->ns[id].name = strndup(name, len);
    s->ns[id].elem_size = elem_size;
    if (id >= s->nns)
        s->nns = id + 1;
}

static void load_region(void *arg, uint32_t region, uint64_t gen)
{
    kvs_store_t *s = arg;

    if (region < s->nregions) {
        s->regions[region].gen = gen;
        if (gen > s->gen_seq)
            s->gen_seq = gen;
    }
}

struct load_ctx {
    kvs_store_t *s;
    uint64_t stale, dup, full;
    kvs_index_batch_t *drop;
};

static void load_rec(void *arg, const kvs_index_rec_t *r)
{
    struct load_ctx *c = arg;
    kvs_store_t *s = c->s;
    struct entry *e;
    uint64_t h;

    /* A record whose region was reused since it was written (or whose
     * location is out of range) describes data that is gone. */
    if (r->region >= s->nregions || r->gen != s->regions[r->region].gen ||
        r->disk_off / s->cfg.region_bytes != r->region ||
        r->disk_off % KVS_SEG_ALIGN ||
        r->disk_len !=
            kvs_segment_disk_len(r->key_len, r->nparts, r->stored_len) ||
        r->raw_len > s->cfg.max_block_bytes || r->key_len == 0 ||
        r->ns >= s->nns || !s->ns[r->ns].name) {
        c->stale++;
        kvs_index_batch_delete(c->drop, r->uid);
        return;
    }
    h = key_hash(r->ns, r->key, r->key_len);
    /* Records come in uid order: one of a key already loaded is older (a
     * replaced block whose record's delete was lost in a crash). */
    e = kvs_table_lookup_locked(s, r->ns, r->key, r->key_len, h);
    if (e) {
        c->dup++;
        kvs_index_batch_delete(c->drop, e->uid);
        kvs_table_remove_locked(s, e);
    }
    e = kvs_table_alloc_locked(s);
    if (!e) {
        c->full++;
        return;
    }
    if (kvs_table_set_key(s, e, r->ns, r->key, r->key_len, h, r->parent,
                          r->parent_len)) {
        kvs_table_free_locked(s, e);
        c->full++;
        return;
    }
    e->uid = r->uid;
    if (r->uid > s->uid_seq)
        s->uid_seq = r->uid;
    e->cls = r->cls;
    e->elem_size = r->elem_size;
    e->codec = r->codec;
    e->nparts = r->nparts;
    e->raw_len = r->raw_len;
    e->stored_len = r->stored_len;
    if (kvs_table_xrec_set(s, e, r->expiry_ms, r->group)) {
        kvs_table_free_locked(s, e);
        c->full++;
        return;
    }
    ent_set_loc(s, e,
                &(kvs_seg_loc_t){r->disk_off, r->gen, r->region, r->disk_len});
    e->flags |= E_DISK | E_DURABLE;
    kvs_table_link(s, e);
    kvs_region_add(s, e);
    if (s->regions[r->region].state == RG_FREE)
        kvs_region_set_state(s, r->region, RG_SEALED);
    s->regions[r->region].reserved = true;
    if (e->cls == KVS_CLASS_PINNED)
        s->pinned_bytes += e->raw_len;
    s->st.blocks++;
    s->st.nvme_blocks++;
    ev_tier_locked(s, e, KVS_STORE_EV_STORED, KVS_TIER_NVME);
}

/* The index is in key order, not chain order: a child loaded before its
 * parent holds a copy of the parent's key, given up here for the parent's
 * own chunk (the copies freed go to the key store's free lists). */
static void share_parents(kvs_store_t *s)
{
    for (uint32_t i = 0; i < s->nents_used; i++) {
        struct entry *e = &s->ents[i];
        if (!(e->flags & E_LINKED) || e->pref == KVS_KEYS_NIL ||
            kvs_keys_refs(&s->keys, e->pref) != 1)
            continue;
        const uint8_t *p = ent_parent(s, e);
        kvs_table_share_parent(
            s, e,
            kvs_table_lookup_locked(s, e->ns, p, e->parent_len,
                                    key_hash(e->ns, p, e->parent_len)));
    }
}

/* An index of format 1 (records named by their key) is rewritten as
 * format 2 (named by uid), then marked so. */
static int migrate(kvs_store_t *s, const kvs_index_meta_t *want)
{
    uint64_t moved = 0, bad = 0;
    int ret;

    kvs_info("store: %s: index format 1, rewriting its block records as "
             "format %u (named by uid)",
             s->dir, want->format);
    ret = kvs_index_migrate(s->index, &moved, &bad);
    if (ret == 0)
        ret = kvs_index_meta_put(s->index, want);
    if (ret) {
        kvs_error("store: %s: migrating the index failed (%s); it is left "
                  "as it was or half done, and the next open tries again",
                  s->dir, kvs_strerror(ret));
        return ret;
    }
    kvs_info("store: index migrated: %llu block records rewritten, %llu "
             "malformed dropped",
             (unsigned long long)moved, (unsigned long long)bad);
    return 0;
}

int kvs_recover_load(kvs_store_t *s)
{
    char path[PATH_MAX];
    kvs_index_meta_t meta,
        want = {KVS_INDEX_FORMAT, s->cfg.region_bytes, s->nregions};
    struct load_ctx c = {.s = s};
    uint64_t bad = 0;
    int ret;

    snprintf(path, sizeof(path), "%s/index", s->dir);
    ret = kvs_index_open(path, &s->index);
    if (ret)
        return ret;
    ret = kvs_index_meta_get(s->index, &meta);
    if (ret == KVS_ENOTFOUND) {
        ret = kvs_index_meta_put(s->index, &want);
    } else if (ret == 0 && meta.format != want.format &&
               meta.format != 1) {
        kvs_error("store: %s has an index of format %u, which this kvstash "
                  "(format %u) does not know: made by a newer version? Run "
                  "that version, or remove the directory to start empty",
                  s->dir, meta.format, want.format);
        return KVS_ELAYOUT;
    } else if (ret == 0 && (meta.region_bytes != want.region_bytes ||
                            meta.nregions != want.nregions)) {
        kvs_error("store: %s was made with region_bytes=%u and %u regions; "
                  "the configuration asks for %u and %u (format %u vs %u)",
                  s->dir, meta.region_bytes, meta.nregions, want.region_bytes,
                  want.nregions, meta.format, want.format);
        return KVS_ELAYOUT;
    }
    if (ret == 0 && meta.format == 1)
        ret = migrate(s, &want);
    if (ret)
        return ret;
    ret = kvs_index_ns_load(s->index, load_ns, s);
    if (ret == 0)
        ret = kvs_index_region_load(s->index, load_region, s);
    if (ret)
        return ret;
    kvs_table_buckets_reserve(s, kvs_index_block_estimate(s->index));
    ret = kvs_index_batch_create(&c.drop);
    if (ret)
        return ret;
    ret = kvs_index_block_load(s->index, load_rec, &c, &bad);
    if (ret == 0)
        ret = kvs_index_commit(s->index, c.drop, true);
    kvs_index_batch_destroy(c.drop);
    if (ret)
        return ret;
    share_parents(s);
    if (s->st.blocks || c.stale || bad || c.full)
        kvs_info("store: loaded %llu blocks from the index (%llu stale, "
                 "%llu malformed, %llu over max_blocks)",
                 (unsigned long long)s->st.blocks, (unsigned long long)c.stale,
                 (unsigned long long)bad, (unsigned long long)c.full);
    return 0;
}
