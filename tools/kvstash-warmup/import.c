/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash-warmup import (see import.h, docs/warmup.md).
 *
 * Two passes over the manifest. The first parses every line and checks its
 * KV file's header and shapes against the tokens and the namespace, so that
 * bad lines are reported up front (with file and line) and the total number
 * of blocks is known for the progress bar. The second, for each good line,
 * maps the file, computes (or takes) the block keys, asks the daemon which
 * are present (EXISTS, one frame per max_keys keys) and puts the others.
 *
 * Puts go through a ring of "slots", each one put batch that fits one frame
 * (the inline frame size, max_keys and a payload budget). A slot owns the
 * bytes of its blocks: each part (one per layer) is assembled by copying the
 * layer's K rows then V rows from the mapping, because in a safetensors file
 * K and V are separate tensors. Up to --jobs slots are in flight at once;
 * when all are, the tool progresses the connections until one completes.
 *
 *   block i, part L  =  K_L[iB .. (i+1)B)  ||  V_L[iB .. (i+1)B)
 *                       (B tokens x kv_heads x head_dim elements, each)
 */
#include "tools/kvstash-warmup/import.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvstash/wire.h"
#include "tools/kvstash-warmup/blockkey.h"
#include "tools/kvstash-warmup/manifest.h"
#include "tools/kvstash-warmup/progress.h"
#include "tools/kvstash-warmup/safetensors.h"

#define SLOT_ITEMS (KVS_WIRE_INLINE_MAX / KVS_WIRE_PUT_ENT_FIXED)
#define SLOT_IOVS (KVS_WIRE_INLINE_MAX / 4)
#define CONNS_MAX 64u
#define ERRS_SHOWN 10u /* failed puts printed per line */

/* One open connection per namespace. */
typedef struct conn {
    char *ns;
    kvs_client_t *c;
    kvs_client_limits_t lim;
} conn_t;

/* One put batch. Filled, then in flight, then reaped. */
typedef struct slot {
    conn_t *conn;
    bool busy; /* submitted, not yet reaped */
    bool done; /* its callback ran */
    int status;
    uint32_t n; /* blocks */
    uint32_t niov;
    size_t frame;     /* frame bytes the blocks take */
    uint64_t payload; /* bytes at buf in use */
    size_t buf_cap;
    uint8_t *buf; /* the blocks' bytes */
    kvs_client_put_t items[SLOT_ITEMS];
    kvs_iov_t iovs[SLOT_IOVS];
    uint8_t keys[SLOT_ITEMS][2][KVS_KEY_MAX]; /* key, parent */
    unsigned line[SLOT_ITEMS];                /* manifest line of each block */
    uint32_t index[SLOT_ITEMS];               /* its index in the line */
} slot_t;

/* A line's KV file, mapped, with its geometry. */
typedef struct src {
    kvs_safetensors_t *st;
    uint32_t nparts;                      /* layers (or parts per block) */
    uint64_t row;                         /* bytes of one token of K (or V) */
    const uint8_t **k, **v;               /* per layer: K and V tensors' data */
    const kvs_safetensors_tensor_t **blk; /* blocks layout: per block */
    size_t nblocks;
    uint8_t elem_size;
} src_t;

typedef struct importer {
    const kvs_warmup_opts_t *o;
    const char *manifest;
    conn_t conns[CONNS_MAX];
    size_t nconns;
    slot_t *slots;
    uint32_t nslots;
    slot_t *open; /* the slot being filled, or NULL */
    kvs_progress_t prog;
    unsigned errs_line; /* line of the last printed put errors */
    unsigned errs_shown;
    uint64_t acked;    /* blocks put, for the kill hook */
    uint64_t bad_late; /* lines whose file broke after pass 1 */
} importer_t;

static void line_err(const char *manifest, const kvs_manifest_ent_t *e,
                     unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void line_err(const char *manifest, const kvs_manifest_ent_t *e,
                     unsigned line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "kvstash-warmup: %s:%u: ", manifest, line);
    if (e && e->kv_file)
        fprintf(stderr, "%s: ", e->kv_file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void src_close(src_t *s)
{
    kvs_safetensors_close(s->st);
    free(s->k);
    free(s->v);
    free(s->blk);
    memset(s, 0, sizeof(*s));
}

static int shape_eq(const kvs_safetensors_tensor_t *a,
                    const kvs_safetensors_tensor_t *b)
{
    if (a->ndim != b->ndim || strcmp(a->dtype, b->dtype))
        return 0;
    for (uint32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

static void shape_str(const kvs_safetensors_tensor_t *t, char *buf, size_t len)
{
    size_t off = 0;

    off += (size_t)snprintf(buf, len, "[");
    for (uint32_t i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%" PRIu64,
                                i ? ", " : "", t->shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

/* Checks a tensor's dtype against the namespace's. */
static int dtype_ok(const kvs_manifest_ent_t *e,
                    const kvs_safetensors_tensor_t *t, char *err, size_t len)
{
    if (e->dtype[0] && strcmp(e->dtype, t->dtype)) {
        snprintf(err, len, "tensor '%s' is %s but namespace '%s' holds %s",
                 t->name, t->dtype, e->ns, e->dtype);
        return -EINVAL;
    }
    return 0;
}

/* The layers layout: layers.L.k and layers.L.v, each [T, H, D]. */
static int open_layers(const kvs_manifest_ent_t *e, src_t *s, uint64_t *t_out,
                       char *err, size_t len)
{
    const kvs_safetensors_tensor_t *k0 = NULL;
    char name[64], sh[96], sh0[96];
    uint32_t n = 0;

    while (n < KVS_PARTS_MAX) {
        snprintf(name, sizeof(name), "layers.%u.k", n);
        if (!kvs_safetensors_find(s->st, name))
            break;
        n++;
    }
    if (n == 0) {
        snprintf(err, len,
                 "layout \"layers\" needs tensors layers.0.k, "
                 "layers.0.v, ...; none found");
        return -EINVAL;
    }
    s->k = calloc(n, sizeof(*s->k));
    s->v = calloc(n, sizeof(*s->v));
    if (!s->k || !s->v)
        return -ENOMEM;
    for (uint32_t l = 0; l < n; l++) {
        for (int kv = 0; kv < 2; kv++) {
            const kvs_safetensors_tensor_t *t;

            snprintf(name, sizeof(name), "layers.%u.%c", l, kv ? 'v' : 'k');
            t = kvs_safetensors_find(s->st, name);
            if (!t) {
                snprintf(err, len, "tensor %s is missing", name);
                return -EINVAL;
            }
            if (!k0) {
                k0 = t;
                if (t->ndim != 3) {
                    shape_str(t, sh, sizeof(sh));
                    snprintf(err, len,
                             "tensor %s has shape %s; layout "
                             "\"layers\" wants [tokens, kv_heads, head_dim]",
                             name, sh);
                    return -EINVAL;
                }
                if (dtype_ok(e, t, err, len))
                    return -EINVAL;
            } else if (!shape_eq(k0, t)) {
                shape_str(t, sh, sizeof(sh));
                shape_str(k0, sh0, sizeof(sh0));
                snprintf(err, len, "tensor %s is %s %s, layers.0.k is %s %s",
                         name, t->dtype, sh, k0->dtype, sh0);
                return -EINVAL;
            }
            (kv ? s->v : s->k)[l] = t->data;
        }
    }
    s->nparts = n;
    s->elem_size = (uint8_t)k0->elem_size;
    s->row = k0->shape[1] * k0->shape[2] * k0->elem_size;
    *t_out = k0->shape[0];
    return 0;
}

/* The packed layout: one tensor kv of shape [L, 2, T, H, D]. */
static int open_packed(const kvs_manifest_ent_t *e, src_t *s, uint64_t *t_out,
                       char *err, size_t len)
{
    const kvs_safetensors_tensor_t *t = kvs_safetensors_find(s->st, "kv");
    char sh[96];
    uint64_t per_kv;

    if (!t) {
        snprintf(err, len, "layout \"packed\" needs a tensor 'kv'");
        return -EINVAL;
    }
    if (t->ndim != 5 || t->shape[1] != 2 || t->shape[0] == 0 ||
        t->shape[0] > KVS_PARTS_MAX) {
        shape_str(t, sh, sizeof(sh));
        snprintf(err, len,
                 "tensor kv has shape %s; layout \"packed\" wants "
                 "[layers (1..%u), 2, tokens, kv_heads, head_dim]",
                 sh, KVS_PARTS_MAX);
        return -EINVAL;
    }
    if (dtype_ok(e, t, err, len))
        return -EINVAL;
    s->nparts = (uint32_t)t->shape[0];
    s->k = calloc(s->nparts, sizeof(*s->k));
    s->v = calloc(s->nparts, sizeof(*s->v));
    if (!s->k || !s->v)
        return -ENOMEM;
    s->elem_size = (uint8_t)t->elem_size;
    s->row = t->shape[3] * t->shape[4] * t->elem_size;
    per_kv = t->shape[2] * s->row;
    for (uint32_t l = 0; l < s->nparts; l++) {
        s->k[l] = t->data + (2 * l) * per_kv;
        s->v[l] = t->data + (2 * l + 1) * per_kv;
    }
    *t_out = t->shape[2];
    return 0;
}

/* The blocks layout (what export writes): block.I of shape [parts, n], one
 * row per part, for each of the line's keys. */
static int open_blocks(const kvs_manifest_ent_t *e, src_t *s, char *err,
                       size_t len)
{
    char name[64];

    s->blk = calloc(e->nkeys ? e->nkeys : 1, sizeof(*s->blk));
    if (!s->blk)
        return -ENOMEM;
    for (size_t i = 0; i < e->nkeys; i++) {
        const kvs_safetensors_tensor_t *t;

        snprintf(name, sizeof(name), "block.%zu", i);
        t = kvs_safetensors_find(s->st, name);
        if (!t) {
            snprintf(err, len, "tensor %s is missing (the line has %zu keys)",
                     name, e->nkeys);
            return -EINVAL;
        }
        if (t->ndim != 2 || t->shape[0] == 0 || t->shape[0] > KVS_PARTS_MAX) {
            snprintf(err, len,
                     "tensor %s: layout \"blocks\" wants [parts "
                     "(1..%u), elements]",
                     name, KVS_PARTS_MAX);
            return -EINVAL;
        }
        if (strcmp(t->dtype, "U8") && dtype_ok(e, t, err, len))
            return -EINVAL;
        s->blk[i] = t;
    }
    s->nblocks = e->nkeys;
    return 0;
}

/* Maps e's KV file and checks it against e. */
static int src_open(const kvs_manifest_ent_t *e, src_t *s, char *err,
                    size_t len)
{
    uint64_t tokens = 0;
    int ret;

    memset(s, 0, sizeof(*s));
    ret = kvs_safetensors_open(e->kv_file, &s->st, err, len);
    if (ret)
        return ret;
    if (e->layout == KVS_LAYOUT_BLOCKS)
        ret = open_blocks(e, s, err, len);
    else if (e->layout == KVS_LAYOUT_PACKED)
        ret = open_packed(e, s, &tokens, err, len);
    else
        ret = open_layers(e, s, &tokens, err, len);
    if (ret)
        goto err_close;
    if (e->layout != KVS_LAYOUT_BLOCKS) {
        if (e->tokens && tokens != e->ntokens) {
            snprintf(err, len,
                     "tensors hold %" PRIu64 " tokens but the line "
                     "has %zu token ids",
                     tokens, e->ntokens);
            ret = -EINVAL;
            goto err_close;
        }
        s->nblocks = tokens / e->tokens_per_block;
        if (e->keys && e->nkeys != s->nblocks) {
            snprintf(err, len, "%zu keys given for %zu blocks of %u tokens",
                     e->nkeys, s->nblocks, e->tokens_per_block);
            ret = -EINVAL;
            goto err_close;
        }
        if (s->row == 0) {
            snprintf(err, len, "tensors have no elements per token");
            ret = -EINVAL;
            goto err_close;
        }
    }
    return 0;

err_close:
    if (ret == -ENOMEM)
        snprintf(err, len, "out of memory");
    src_close(s);
    return ret;
}

/* Bytes of block i and of its part p. */
static uint64_t part_len(const kvs_manifest_ent_t *e, const src_t *s, size_t i,
                         uint32_t p)
{
    (void)p;
    if (s->blk)
        return s->blk[i]->len / s->blk[i]->shape[0];
    return 2 * (uint64_t)e->tokens_per_block * s->row;
}

static uint32_t block_nparts(const src_t *s, size_t i)
{
    return s->blk ? (uint32_t)s->blk[i]->shape[0] : s->nparts;
}

static void copy_part(const kvs_manifest_ent_t *e, const src_t *s, size_t i,
                      uint32_t p, uint8_t *dst)
{
    if (s->blk) {
        uint64_t pl = part_len(e, s, i, p);

        memcpy(dst, s->blk[i]->data + p * pl, pl);
    } else {
        uint64_t half = (uint64_t)e->tokens_per_block * s->row;
        uint64_t off = (uint64_t)i * half;

        memcpy(dst, s->k[p] + off, half);
        memcpy(dst + half, s->v[p] + off, half);
    }
}

/* ---- connections and slots ------------------------------------------ */

static conn_t *conn_get(importer_t *im, const char *ns, uint8_t elem_size)
{
    conn_t *c;

    for (size_t i = 0; i < im->nconns; i++)
        if (!strcmp(im->conns[i].ns, ns))
            return &im->conns[i];
    if (im->nconns == CONNS_MAX) {
        fprintf(stderr,
                "kvstash-warmup: more than %u namespaces in one "
                "manifest\n",
                CONNS_MAX);
        return NULL;
    }
    c = &im->conns[im->nconns];
    if (!(c->ns = strdup(ns)))
        return NULL;
    if (kvs_warmup_connect(im->o, ns, elem_size, &c->c)) {
        free(c->ns);
        return NULL;
    }
    kvs_client_limits(c->c, &c->lim);
    im->nconns++;
    return c;
}

static void put_done(void *arg, int status)
{
    slot_t *sl = arg;

    sl->done = true;
    sl->status = status;
}

/* Accounts a completed slot and makes it free. */
static void reap(importer_t *im, slot_t *sl)
{
    uint64_t ok = 0, failed = 0, bytes = 0;
    bool per_block = false;

    for (uint32_t j = 0; j < sl->n; j++)
        per_block |= sl->items[j].status != 0;
    for (uint32_t j = 0; j < sl->n; j++) {
        kvs_client_put_t *it = &sl->items[j];
        /* A whole-frame failure (the daemon went away) leaves per-block
         * statuses unset: then the frame's status is every block's. */
        int st = per_block ? it->status : sl->status;

        if (st == 0) {
            ok++;
            for (uint32_t p = 0; p < it->nparts; p++)
                bytes += it->parts[p].len;
            continue;
        }
        failed++;
        if (im->errs_line != sl->line[j]) {
            im->errs_line = sl->line[j];
            im->errs_shown = 0;
        }
        if (im->errs_shown++ < ERRS_SHOWN) {
            char hex[2 * KVS_KEY_MAX + 1];

            kvs_warmup_hex(it->key.data, it->key.len, hex);
            fprintf(stderr,
                    "kvstash-warmup: %s:%u: block %u (key %s): put "
                    "failed: %s\n",
                    im->manifest, sl->line[j], sl->index[j], hex,
                    kvs_strerror(st));
        }
    }
    im->acked += ok;
    kvs_progress_add(&im->prog, ok, 0, failed, bytes);
    sl->busy = sl->done = false;
    sl->n = sl->niov = 0;
    sl->frame = KVS_WIRE_HDR_SIZE;
    sl->payload = 0;
    sl->conn = NULL;
    if (im->o->kill_after && im->acked >= im->o->kill_after) {
        /* Test hook: die as a kill would, with puts still in flight. */
        fflush(NULL);
        raise(SIGKILL);
    }
}

/* Progresses every connection once and reaps what completed. Returns the
 * number reaped. */
static int poll_once(importer_t *im)
{
    int n = 0;

    for (size_t i = 0; i < im->nconns; i++)
        kvs_client_progress(im->conns[i].c);
    for (uint32_t i = 0; i < im->nslots; i++) {
        if (im->slots[i].busy && im->slots[i].done) {
            reap(im, &im->slots[i]);
            n++;
        }
    }
    return n;
}

/* Waits for one completion, backing off to short sleeps so that the tool
 * does not starve a daemon on the same cores. */
static void wait_some(importer_t *im)
{
    for (unsigned spins = 0; !poll_once(im); spins++) {
        if (spins > 64) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

static void submit(importer_t *im, slot_t *sl)
{
    int ret;

    if (im->open == sl)
        im->open = NULL;
    if (sl->n == 0)
        return;
    sl->busy = true;
    sl->done = false;
    ret =
        kvs_client_put_batch_async(sl->conn->c, sl->items, sl->n, put_done, sl);
    if (ret) {
        sl->done = true;
        sl->status = ret;
        for (uint32_t j = 0; j < sl->n; j++)
            sl->items[j].status = ret;
    }
}

static void drain(importer_t *im)
{
    if (im->open)
        submit(im, im->open);
    for (;;) {
        bool busy = false;

        for (uint32_t i = 0; i < im->nslots; i++)
            busy |= im->slots[i].busy;
        if (!busy)
            return;
        wait_some(im);
    }
}

/* A slot to fill for conn with room for a block of frame_bytes and
 * payload bytes: the open one if it fits, else a free one. */
static slot_t *slot_for(importer_t *im, conn_t *conn, size_t frame_bytes,
                        uint64_t payload)
{
    slot_t *sl = im->open;
    uint64_t budget = im->o->batch_bytes;

    if (budget > conn->lim.max_payload)
        budget = conn->lim.max_payload;
    if (sl && (sl->conn != conn || sl->n == SLOT_ITEMS ||
               sl->n == conn->lim.max_keys ||
               sl->frame + frame_bytes > KVS_WIRE_INLINE_MAX ||
               sl->payload + payload > budget))
        submit(im, sl);
    if (im->open)
        return im->open;
    for (;;) {
        for (uint32_t i = 0; i < im->nslots; i++) {
            if (!im->slots[i].busy) {
                sl = &im->slots[i];
                sl->conn = conn;
                im->open = sl;
                return sl;
            }
        }
        wait_some(im);
    }
}

/* Queues block i of line e for a put. */
static int queue_block(importer_t *im, conn_t *conn,
                       const kvs_manifest_ent_t *e, const src_t *s, size_t i,
                       const uint8_t *key, uint32_t klen, const uint8_t *parent,
                       uint32_t plen)
{
    uint32_t np = block_nparts(s, i);
    uint64_t bytes = 0;
    size_t fb = 32 + klen + plen + 4 * (size_t)np;
    kvs_client_put_t *it;
    slot_t *sl;
    uint8_t *dst;

    for (uint32_t p = 0; p < np; p++)
        bytes += part_len(e, s, i, p);
    if (bytes > conn->lim.max_payload ||
        fb + KVS_WIRE_HDR_SIZE > KVS_WIRE_INLINE_MAX)
        return KVS_ETOOBIG;
    sl = slot_for(im, conn, fb, bytes);
    if (sl->n && sl->niov + np > SLOT_IOVS) {
        submit(im, sl);
        sl = slot_for(im, conn, fb, bytes);
    }
    if (sl->payload + bytes > sl->buf_cap) {
        /* Only an empty slot grows, so no queued part points into the old
         * buffer; a full batch never needs more than its budget. */
        uint64_t cap = bytes > im->o->batch_bytes ? bytes : im->o->batch_bytes;
        uint8_t *nb;

        if (sl->n) {
            submit(im, sl);
            sl = slot_for(im, conn, fb, bytes);
        }
        if (bytes > sl->buf_cap) {
            nb = realloc(sl->buf, cap);
            if (!nb)
                return -ENOMEM;
            sl->buf = nb;
            sl->buf_cap = cap;
        }
    }
    it = &sl->items[sl->n];
    memset(it, 0, sizeof(*it));
    memcpy(sl->keys[sl->n][0], key, klen);
    it->key.data = sl->keys[sl->n][0];
    it->key.len = klen;
    if (plen) {
        memcpy(sl->keys[sl->n][1], parent, plen);
        it->parent.data = sl->keys[sl->n][1];
        it->parent.len = plen;
    }
    it->parts = &sl->iovs[sl->niov];
    it->nparts = np;
    it->flags = im->o->put_flags;
    it->cls = e->cls;
    it->ttl_ms = e->ttl_ms;
    it->group = e->group;
    dst = sl->buf + sl->payload;
    for (uint32_t p = 0; p < np; p++) {
        uint64_t pl = part_len(e, s, i, p);

        copy_part(e, s, i, p, dst);
        sl->iovs[sl->niov].base = dst;
        sl->iovs[sl->niov].len = pl;
        sl->niov++;
        dst += pl;
    }
    sl->line[sl->n] = e->line;
    sl->index[sl->n] = (uint32_t)i;
    sl->n++;
    sl->frame += fb;
    sl->payload += bytes;
    return 0;
}

/* ---- one manifest line ---------------------------------------------- */

static uint8_t dtype_elem(const kvs_manifest_ent_t *e, const src_t *s)
{
    if (e->dtype[0])
        return (uint8_t)kvs_safetensors_dtype_size(e->dtype);
    return s->elem_size;
}

/* Puts the blocks of one line that the daemon does not have. */
static void import_line(importer_t *im, const kvs_manifest_ent_t *e)
{
    kvs_blockkey_params_t bp = {
        .hash = im->o->hash,
        .root = im->o->root,
        .root_len = im->o->root_len,
        .extra = e->extra,
        .extra_len = e->extra_len,
    };
    char err[512];
    src_t s;
    conn_t *conn;
    uint8_t *keys = NULL, *present = NULL;
    kvs_client_key_t *ck = NULL;
    int ksz = 0, ret;

    ret = src_open(e, &s, err, sizeof(err));
    if (ret) {
        /* It passed the first pass: the file changed since. */
        line_err(im->manifest, e, e->line, "%s", err);
        im->bad_late++;
        return;
    }
    conn = conn_get(im, e->ns, dtype_elem(e, &s));
    if (!conn) {
        line_err(im->manifest, e, e->line, "cannot connect in namespace '%s'",
                 e->ns);
        kvs_progress_add(&im->prog, 0, 0, s.nblocks, 0);
        goto out;
    }
    if (!e->keys) {
        ksz = kvs_blockkey_size(&bp);
        keys = malloc((s.nblocks ? s.nblocks : 1) * (size_t)ksz);
        if (!keys || kvs_blockkey_chain(&bp, e->tokens, e->tokens_per_block,
                                        s.nblocks, keys, ksz)) {
            line_err(im->manifest, e, e->line, "cannot compute block keys");
            kvs_progress_add(&im->prog, 0, 0, s.nblocks, 0);
            goto out;
        }
    }
    ck = calloc(s.nblocks ? s.nblocks : 1, sizeof(*ck));
    present = calloc(s.nblocks ? s.nblocks : 1, 1);
    if (!ck || !present) {
        line_err(im->manifest, e, e->line, "out of memory");
        kvs_progress_add(&im->prog, 0, 0, s.nblocks, 0);
        goto out;
    }
    for (size_t i = 0; i < s.nblocks; i++) {
        ck[i].data = keys ? keys + i * (size_t)ksz : e->keys[i].b;
        ck[i].len = keys ? (uint32_t)ksz : e->keys[i].len;
    }
    /* Resume: blocks already present are skipped. */
    for (size_t i = 0; i < s.nblocks; i += conn->lim.max_keys) {
        size_t n = s.nblocks - i < conn->lim.max_keys ? s.nblocks - i
                                                      : conn->lim.max_keys;

        ret = kvs_client_exists(conn->c, ck + i, n, present + i);
        if (ret) {
            line_err(im->manifest, e, e->line, "EXISTS failed: %s",
                     kvs_strerror(ret));
            kvs_progress_add(&im->prog, 0, 0, s.nblocks, 0);
            goto out;
        }
    }
    for (size_t i = 0; i < s.nblocks; i++) {
        const uint8_t *parent = NULL;
        uint32_t plen = 0;

        if (present[i]) {
            kvs_progress_add(&im->prog, 0, 1, 0, 0);
            continue;
        }
        if (e->parents) {
            parent = e->parents[i].b;
            plen = e->parents[i].len;
        } else if (i > 0) {
            parent = ck[i - 1].data;
            plen = ck[i - 1].len;
        }
        ret = queue_block(im, conn, e, &s, i, ck[i].data, ck[i].len, parent,
                          plen);
        if (ret) {
            line_err(im->manifest, e, e->line, "block %zu: %s", i,
                     kvs_strerror(ret));
            kvs_progress_add(&im->prog, 0, 0, 1, 0);
        }
    }
out:
    free(present);
    free(ck);
    free(keys);
    src_close(&s);
}

/* ---- the command ----------------------------------------------------- */

int kvs_import_run(const kvs_warmup_opts_t *o, const char *manifest,
                   kvs_import_result_t *res_out)
{
    importer_t im;
    kvs_manifest_ent_t *ents = NULL;
    size_t nents = 0, cap = 0, len = 0;
    uint64_t total = 0, bad = 0;
    unsigned lineno = 0;
    char *line = NULL, err[512];
    FILE *f;
    ssize_t got;

    memset(&im, 0, sizeof(im));
    im.o = o;
    im.manifest = manifest;
    f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "kvstash-warmup: %s: %s\n", manifest, strerror(errno));
        return -errno;
    }
    /* Pass 1: parse and check every line. */
    while ((got = getline(&line, &len, f)) >= 0) {
        kvs_manifest_ent_t e;
        src_t s;
        size_t i = 0;

        lineno++;
        while (i < (size_t)got && strchr(" \t\r\n", line[i]))
            i++;
        if (i == (size_t)got)
            continue; /* blank */
        if (kvs_manifest_parse(manifest, lineno, line, (size_t)got, &e, err,
                               sizeof(err))) {
            line_err(manifest, NULL, lineno, "%s", err);
            bad++;
            continue;
        }
        if (src_open(&e, &s, err, sizeof(err))) {
            line_err(manifest, &e, lineno, "%s", err);
            kvs_manifest_ent_fini(&e);
            bad++;
            continue;
        }
        total += s.nblocks;
        src_close(&s);
        if (nents == cap) {
            kvs_manifest_ent_t *n =
                realloc(ents, (cap = cap * 2 + 16) * sizeof(*n));
            if (!n) {
                kvs_manifest_ent_fini(&e);
                bad++;
                break;
            }
            ents = n;
        }
        ents[nents++] = e;
    }
    free(line);
    fclose(f);

    /* Pass 2: import. */
    im.nslots = o->jobs ? o->jobs : 8;
    im.slots = calloc(im.nslots, sizeof(*im.slots));
    if (!im.slots) {
        for (size_t i = 0; i < nents; i++)
            kvs_manifest_ent_fini(&ents[i]);
        free(ents);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < im.nslots; i++)
        im.slots[i].frame = KVS_WIRE_HDR_SIZE;
    kvs_progress_init(&im.prog, "import", total, o->tty, o->quiet,
                      o->interval_ms);
    for (size_t i = 0; i < nents; i++) {
        import_line(&im, &ents[i]);
        kvs_manifest_ent_fini(&ents[i]);
    }
    drain(&im);
    kvs_progress_finish(&im.prog, "imported");
    if (bad)
        fprintf(stderr, "import: %llu manifest line%s not loaded\n",
                (unsigned long long)bad, bad == 1 ? "" : "s");
    res_out->imported = im.prog.ok;
    res_out->skipped = im.prog.skipped;
    res_out->failed = im.prog.failed;
    res_out->bad_lines = bad + im.bad_late;
    res_out->bytes = im.prog.bytes;
    res_out->seconds = kvs_progress_elapsed(&im.prog);
    for (uint32_t i = 0; i < im.nslots; i++)
        free(im.slots[i].buf);
    free(im.slots);
    for (size_t i = 0; i < im.nconns; i++) {
        kvs_client_destroy(im.conns[i].c);
        free(im.conns[i].ns);
    }
    free(ents);
    return 0;
}
