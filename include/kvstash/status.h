/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstash error space, shared by the engine, the daemon, the wire protocol
 * and the client library.
 *
 * Every call returns an int: 0 is success, a negative value is an error.
 * Values in [-4095, -1] are negative errno codes (-EINVAL, -ENOMEM, -EIO...).
 * Values at or below KVS_EBASE are kvstash's own codes below. The same int
 * travels in the status field of a wire reply, so a client sees exactly the
 * error the daemon saw.
 */
#ifndef KVSTASH_STATUS_H
#define KVSTASH_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#define KVS_EBASE (-5000)

enum kvs_status {
    KVS_OK = 0,
    KVS_ENOTFOUND = KVS_EBASE - 1,      /* no such block (or not visible) */
    KVS_ECORRUPT = KVS_EBASE - 2,       /* stored bytes failed a check */
    KVS_EFULL = KVS_EBASE - 3,          /* store full: no DRAM or disk space */
    KVS_EPROTO = KVS_EBASE - 4,         /* malformed frame */
    KVS_EPROTO_VERSION = KVS_EBASE - 5, /* unsupported protocol version */
    KVS_EAUTH = KVS_EBASE - 6,          /* bad or missing token */
    KVS_EPINNED_FULL = KVS_EBASE - 7,   /* pinned class over its share */
    KVS_ETOOBIG = KVS_EBASE - 8,        /* block or key over a limit */
    KVS_EURING = KVS_EBASE - 9,         /* io_uring unavailable */
    KVS_EINDEX = KVS_EBASE - 10,        /* RocksDB reported an error */
    KVS_ECODEC = KVS_EBASE - 11,      /* compression or decompression failed */
    KVS_EPEER = KVS_EBASE - 12,       /* a peer failed or went away */
    KVS_ECONFIG = KVS_EBASE - 13,     /* invalid configuration */
    KVS_EBUSY = KVS_EBASE - 14,       /* block in use (referenced) */
    KVS_ELAYOUT = KVS_EBASE - 15,     /* on-disk layout differs from config */
    KVS_EINCOMPLETE = KVS_EBASE - 16, /* block not sealed (parts missing) */
    KVS_EEXPIRED = KVS_EBASE - 17,    /* a lease ran out before its release:
                                       * bytes read under it may be wrong */
    KVS_ETOOSMALL = KVS_EBASE - 18,   /* block under the configured minimum
                                         (store.min_block_bytes) */
    KVS_ELAST = KVS_EBASE - 19
};

/*
 * Returns a static, human-readable string for any status value (kvstash
 * codes and negative errno values alike). Never returns NULL.
 */
const char *kvs_strerror(int status);

#ifdef __cplusplus
}
#endif
#endif
