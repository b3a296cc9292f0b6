/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small client of etcd's v3 JSON gateway (etcd 3.4: POST /v3/lease/grant,
 * /v3/lease/keepalive, /v3/lease/revoke, /v3/kv/put, /v3/kv/range; keys and
 * values base64 in the JSON, 64-bit integers as strings), over libcurl. One
 * kvs_etcd_t is used by one thread at a time. Every call returns 0 or a
 * negative status: KVS_EPEER when etcd cannot be reached or answers an
 * error (logged at debug level with etcd's message), KVS_ENOTFOUND for a
 * lease that etcd no longer has.
 */
#ifndef KVS_CLUSTER_ETCD_H
#define KVS_CLUSTER_ETCD_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvs_etcd kvs_etcd_t;

/* base: "http://host:port" (no trailing slash needed). timeout_ms bounds
 * every request. */
int kvs_etcd_open(const char *base, uint32_t timeout_ms, kvs_etcd_t **out);
void kvs_etcd_close(kvs_etcd_t *e);

int kvs_etcd_lease_grant(kvs_etcd_t *e, uint32_t ttl_s, int64_t *id_out);
/* KVS_ENOTFOUND when the lease has expired or etcd lost it. */
int kvs_etcd_lease_keepalive(kvs_etcd_t *e, int64_t id);
int kvs_etcd_lease_revoke(kvs_etcd_t *e, int64_t id);
/* lease 0: none. */
int kvs_etcd_put(kvs_etcd_t *e, const char *key, const void *val,
                 size_t val_len, int64_t lease);

/* Called for each key under a prefix; pointers valid during the call. */
typedef void (*kvs_etcd_kv_cb)(void *arg, const char *key, const char *val,
                               size_t val_len);
/* Every key that starts with prefix; *count_out gets their number. */
int kvs_etcd_range_prefix(kvs_etcd_t *e, const char *prefix, kvs_etcd_kv_cb cb,
                          void *arg, size_t *count_out);

#endif
