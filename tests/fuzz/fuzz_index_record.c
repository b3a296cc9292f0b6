/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for kvs_index_rec_decode(), the decoder of block records read
 * back from RocksDB.
 *
 * Input: byte 0 is the RocksDB key's length (mod KVS_INDEX_KEY_MAX + 2),
 * then that many key bytes, then the value. A record that decodes must
 * encode back to exactly the same key and value: every byte of both is a
 * field, a length or the check, so anything else means the decoder accepted
 * bytes it did not understand.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvstash/status.h"
#include "kvstore/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t k[KVS_INDEX_KEY_MAX], v[KVS_INDEX_REC_MAX];
    kvs_index_rec_t rec;
    size_t klen, vlen;
    int ret;

    if (size == 0)
        return 0;
    klen = data[0] % (KVS_INDEX_KEY_MAX + 2);
    if (klen > size - 1)
        klen = size - 1;
    ret = kvs_index_rec_decode(data + 1, klen, data + 1 + klen, size - 1 - klen,
                               &rec);
    if (ret != 0) {
        if (ret != KVS_ECORRUPT)
            abort(); /* the only failure the decoder may report */
        return 0;
    }
    if (kvs_index_key_encode(rec.uid, k) != klen ||
        memcmp(k, data + 1, klen) != 0)
        abort();
    vlen = kvs_index_rec_encode(&rec, v);
    if (vlen != size - 1 - klen || memcmp(v, data + 1 + klen, vlen) != 0)
        abort();
    return 0;
}
