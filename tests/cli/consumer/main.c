/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer ADDR PORT: puts one block into the daemon there and reads it
 * back, through an installed libkvstash only. Exit 0 if the bytes match.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvstash/kvstash.h>

int main(int argc, char **argv)
{
    static char block[65536], back[65536];
    kvs_client_params_t p = {0};
    kvs_client_t *c;
    size_t len = 0;
    int ret;

    if (argc != 3)
        return 2;
    printf("libkvstash %s\n", kvs_version_string());
    p.field_mask =
        KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS;
    p.addr = argv[1];
    p.port = (uint16_t)atoi(argv[2]);
    p.ns = "consumer";
    ret = kvs_client_create(&p, &c);
    if (ret) {
        fprintf(stderr, "connect: %s\n", kvs_strerror(ret));
        return 1;
    }
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (char)(i * 7);
    ret = kvs_client_put(c, "k", 1, block, sizeof(block), 0);
    if (!ret)
        ret = kvs_client_get(c, "k", 1, back, sizeof(back), &len);
    kvs_client_destroy(c);
    if (ret || len != sizeof(block) || memcmp(block, back, len)) {
        fprintf(stderr, "put/get: %s\n",
                ret ? kvs_strerror(ret) : "bytes differ");
        return 1;
    }
    printf("put and get of %zu bytes: ok\n", len);
    return 0;
}
