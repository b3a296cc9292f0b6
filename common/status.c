/* SPDX-License-Identifier: Apache-2.0 */
/* kvs_strerror(): one table for kvstash's own codes, strerror for errno. */
#include "kvstash/status.h"
#include "common/compiler.h"

#include <string.h>

static const char *const kvs_messages[] = {
    [-(KVS_ENOTFOUND - KVS_EBASE)] = "not found",
    [-(KVS_ECORRUPT - KVS_EBASE)] = "stored data failed its checksum",
    [-(KVS_EFULL - KVS_EBASE)] = "store full",
    [-(KVS_EPROTO - KVS_EBASE)] = "malformed protocol frame",
    [-(KVS_EPROTO_VERSION - KVS_EBASE)] = "unsupported protocol version",
    [-(KVS_EAUTH - KVS_EBASE)] = "authentication failed",
    [-(KVS_EPINNED_FULL - KVS_EBASE)] =
        "pinned class is over its share of capacity",
    [-(KVS_ETOOBIG - KVS_EBASE)] = "size over the configured limit",
    [-(KVS_EURING - KVS_EBASE)] = "io_uring is not available",
    [-(KVS_EINDEX - KVS_EBASE)] = "index (RocksDB) error",
    [-(KVS_ECODEC - KVS_EBASE)] = "compression codec error",
    [-(KVS_EPEER - KVS_EBASE)] = "peer failed or went away",
    [-(KVS_ECONFIG - KVS_EBASE)] = "invalid configuration",
    [-(KVS_EBUSY - KVS_EBASE)] = "block is in use",
    [-(KVS_ELAYOUT - KVS_EBASE)] =
        "on-disk layout does not match the configuration",
    [-(KVS_EINCOMPLETE - KVS_EBASE)] = "block is not complete",
    [-(KVS_EEXPIRED - KVS_EBASE)] =
        "lease expired before release: what was read under it may be wrong",
    [-(KVS_ETOOSMALL - KVS_EBASE)] =
        "block under the configured minimum size (store.min_block_bytes)",
};

const char *kvs_strerror(int status)
{
    if (status == 0)
        return "success";
    if (status <= KVS_EBASE && status > KVS_ELAST) {
        const char *m = kvs_messages[-(status - KVS_EBASE)];
        return m ? m : "unknown kvstash error";
    }
    if (status < 0 && status >= -4095)
        return strerror(-status);
    return "unknown error";
}
