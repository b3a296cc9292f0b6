/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libkvstash: the client library of kvstash. Include this header only; it
 * brings the error space, the value types and the client API.
 *
 * Versioning: KVS_VERSION_* describe the headers you compiled against;
 * kvs_version() the library you run with. The API version passed by the
 * inline kvs_client_create() lets the library refuse a header it does not
 * know instead of misreading a params struct.
 */
#ifndef KVSTASH_KVSTASH_H
#define KVSTASH_KVSTASH_H

#define KVS_VERSION_MAJOR 0
#define KVS_VERSION_MINOR 1
#define KVS_VERSION_PATCH 0
#define KVS_VERSION_NUMBER                                                     \
    (KVS_VERSION_MAJOR * 10000 + KVS_VERSION_MINOR * 100 + KVS_VERSION_PATCH)

/* The client API version: major in the high 16 bits. A library accepts any
 * minor of its own major. */
#define KVS_API_VERSION ((KVS_VERSION_MAJOR << 16) | KVS_VERSION_MINOR)

#if defined(__GNUC__) && __GNUC__ >= 4
#define KVS_API __attribute__((visibility("default")))
#else
#define KVS_API
#endif

#include "kvstash/status.h"
#include "kvstash/types.h"
#include "kvstash/client.h"
#include "kvstash/stream.h"
#include "kvstash/shm.h"
#include "kvstash/locate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, as KVS_VERSION_NUMBER. */
KVS_API unsigned kvs_version(void);
/* The library's version as "major.minor.patch". Static; never NULL. */
KVS_API const char *kvs_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
