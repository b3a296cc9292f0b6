// SPDX-License-Identifier: Apache-2.0
/*
 * etcd's v3 JSON gateway over libcurl. Each request is one POST of a JSON
 * body and one JSON answer; a response larger than KVS_ETCD_RESP_MAX is an
 * error rather than a truncation. Keys and values are base64 (OpenSSL's
 * EVP_EncodeBlock/DecodeBlock), 64-bit ids are decimal strings both ways.
 * Answers are checked field by field: a missing or mistyped field is an
 * error, never a default.
 */
#include "cluster/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kvstash/status.h"

#define KVS_ETCD_RESP_MAX (64u << 20)

struct kvs_etcd {
    CURL *curl;
    char *base;
    uint32_t timeout_ms;
    char *resp;
    size_t resp_len, resp_cap;
    bool too_big;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    kvs_etcd_t *e = arg;
    size_t len = sz * n;

    if (e->resp_len + len + 1 > KVS_ETCD_RESP_MAX) {
        e->too_big = true;
        return 0;
    }
    if (e->resp_len + len + 1 > e->resp_cap) {
        size_t cap = (e->resp_len + len + 1) * 2;
        char *r = realloc(e->resp, cap);

        if (!r)
            return 0;
        e->resp = r;
        e->resp_cap = cap;
    }
    memcpy(e->resp + e->resp_len, p, len);
    e->resp_len += len;
    e->resp[e->resp_len] = '\0';
    return len;
}

int kvs_etcd_open(const char *base, uint32_t timeout_ms, kvs_etcd_t **out)
{
    kvs_etcd_t *e;
    size_t n = strlen(base);

    pthread_once(&curl_once, curl_init_once);
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->base = strdup(base);
    e->curl = curl_easy_init();
    if (!e->base || !e->curl) {
        kvs_etcd_close(e);
        return -ENOMEM;
    }
    while (n && e->base[n - 1] == '/')
        e->base[--n] = '\0';
    e->timeout_ms = timeout_ms;
    *out = e;
    return 0;
}

void kvs_etcd_close(kvs_etcd_t *e)
{
    if (!e)
        return;
    if (e->curl)
        curl_easy_cleanup(e->curl);
    free(e->resp);
    free(e->base);
    free(e);
}

/* POSTs body to base + path; *out gets the parsed answer (the caller's). */
static int post(kvs_etcd_t *e, const char *path, json_object *body,
                json_object **out)
{
    char url[512];
    struct curl_slist *hdr = NULL;
    const char *txt =
        json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
    long code = 0;
    CURLcode cc;
    json_object *j;

    snprintf(url, sizeof(url), "%s%s", e->base, path);
    e->resp_len = 0;
    e->too_big = false;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    curl_easy_reset(e->curl);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, txt);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    cc = curl_easy_perform(e->curl);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK) {
        kvs_debug("etcd: %s: %s%s", url, curl_easy_strerror(cc),
                  e->too_big ? " (answer too large)" : "");
        return KVS_EPEER;
    }
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
    j = e->resp_len ? json_tokener_parse(e->resp) : NULL;
    if (code != 200 || !j) {
        kvs_debug("etcd: %s: HTTP %ld: %.200s", url, code,
                  e->resp_len ? e->resp : "(no body)");
        json_object_put(j);
        return KVS_EPEER;
    }
    *out = j;
    return 0;
}

static char *b64(const void *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);

    if (o)
        EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* Decodes base64 s into a NUL-terminated buffer; *len_out: bytes. */
static char *unb64(const char *s, size_t *len_out)
{
    size_t n = strlen(s), pad = 0;
    char *o;
    int r;

    if (n % 4)
        return NULL;
    o = malloc(n / 4 * 3 + 1);
    if (!o)
        return NULL;
    r = EVP_DecodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
    if (r < 0) {
        free(o);
        return NULL;
    }
    if (n && s[n - 1] == '=')
        pad++;
    if (n > 1 && s[n - 2] == '=')
        pad++;
    *len_out = (size_t)r - pad;
    o[*len_out] = '\0';
    return o;
}

/* An int64 that the gateway writes as a string (or, leniently, a number). */
static int get_i64(json_object *o, const char *k, int64_t *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, k, &v))
        return -ENOENT;
    if (json_object_is_type(v, json_type_string)) {
        char *end;
        long long x;

        errno = 0;
        x = strtoll(json_object_get_string(v), &end, 10);
        if (errno || *end)
            return -EINVAL;
        *out = x;
        return 0;
    }
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return 0;
    }
    return -EINVAL;
}

static void add_i64(json_object *o, const char *k, int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, v);
    json_object_object_add(o, k, json_object_new_string(buf));
}

int kvs_etcd_lease_grant(kvs_etcd_t *e, uint32_t ttl_s, int64_t *id_out)
{
    json_object *req = json_object_new_object(), *ans = NULL;
    int64_t id;
    int ret;

    add_i64(req, "TTL", ttl_s);
    ret = post(e, "/v3/lease/grant", req, &ans);
    json_object_put(req);
    if (ret)
        return ret;
    ret = get_i64(ans, "ID", &id) == 0 ? 0 : KVS_EPEER;
    json_object_put(ans);
    if (ret == 0)
        *id_out = id;
    return ret;
}

int kvs_etcd_lease_keepalive(kvs_etcd_t *e, int64_t id)
{
    json_object *req = json_object_new_object(), *ans = NULL, *res;
    int64_t ttl = 0;
    int ret;

    add_i64(req, "ID", id);
    ret = post(e, "/v3/lease/keepalive", req, &ans);
    json_object_put(req);
    if (ret)
        return ret;
    /* A stream of one: {"result": {..., "TTL": "5"}}; TTL absent or 0
     * when etcd no longer has the lease. */
    if (!json_object_object_get_ex(ans, "result", &res) ||
        get_i64(res, "TTL", &ttl) || ttl <= 0)
        ret = json_object_object_get_ex(ans, "error", NULL) ? KVS_EPEER
                                                            : KVS_ENOTFOUND;
    json_object_put(ans);
    return ret;
}

int kvs_etcd_lease_revoke(kvs_etcd_t *e, int64_t id)
{
    json_object *req = json_object_new_object(), *ans = NULL;
    int ret;

    add_i64(req, "ID", id);
    ret = post(e, "/v3/lease/revoke", req, &ans);
    json_object_put(req);
    json_object_put(ans);
    return ret;
}

int kvs_etcd_put(kvs_etcd_t *e, const char *key, const void *val,
                 size_t val_len, int64_t lease)
{
    json_object *req = json_object_new_object(), *ans = NULL;
    char *k = b64(key, strlen(key)), *v = b64(val, val_len);
    int ret = -ENOMEM;

    if (k && v) {
        json_object_object_add(req, "key", json_object_new_string(k));
        json_object_object_add(req, "value", json_object_new_string(v));
        if (lease)
            add_i64(req, "lease", lease);
        ret = post(e, "/v3/kv/put", req, &ans);
    }
    json_object_put(req);
    json_object_put(ans);
    free(k);
    free(v);
    return ret;
}

int kvs_etcd_range_prefix(kvs_etcd_t *e, const char *prefix, kvs_etcd_kv_cb cb,
                          void *arg, size_t *count_out)
{
    size_t n = strlen(prefix);
    char *end = malloc(n + 1);
    char *k = b64(prefix, n), *ke = NULL;
    json_object *req = json_object_new_object(), *ans = NULL, *kvs;
    size_t count = 0;
    int ret = -ENOMEM;

    if (!end || !k || !n)
        goto out;
    /* range_end: the prefix with its last byte plus one. */
    memcpy(end, prefix, n + 1);
    end[n - 1]++;
    ke = b64(end, n);
    if (!ke)
        goto out;
    json_object_object_add(req, "key", json_object_new_string(k));
    json_object_object_add(req, "range_end", json_object_new_string(ke));
    ret = post(e, "/v3/kv/range", req, &ans);
    if (ret)
        goto out;
    /* No "kvs" at all when nothing matches. */
    if (json_object_object_get_ex(ans, "kvs", &kvs)) {
        if (!json_object_is_type(kvs, json_type_array)) {
            ret = KVS_EPEER;
            goto out;
        }
        for (size_t i = 0; i < json_object_array_length(kvs); i++) {
            json_object *kv = json_object_array_get_idx(kvs, i), *jk, *jv;
            size_t kl = 0, vl = 0;
            char *dk, *dv;

            if (!json_object_object_get_ex(kv, "key", &jk) ||
                !json_object_is_type(jk, json_type_string))
                continue;
            dk = unb64(json_object_get_string(jk), &kl);
            dv = json_object_object_get_ex(kv, "value", &jv) &&
                         json_object_is_type(jv, json_type_string)
                     ? unb64(json_object_get_string(jv), &vl)
                     : strdup("");
            if (dk && dv && strlen(dk) == kl) {
                cb(arg, dk, dv, vl);
                count++;
            }
            free(dk);
            free(dv);
        }
    }
    if (count_out)
        *count_out = count;
out:
    json_object_put(req);
    json_object_put(ans);
    free(end);
    free(k);
    free(ke);
    return ret;
}
