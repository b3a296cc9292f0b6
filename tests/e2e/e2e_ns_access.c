/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A write on a namespace the tenant may not use (issue 15, finding 5).
 * Decided (docs/protocol.md §8): a PUT there is refused with -EACCES,
 * whether the namespace exists, holds another tenant's blocks, or has
 * never been named, so a tenant learns that it is not allowed (its own
 * configuration) and nothing about anyone else's namespaces; an allowed
 * empty namespace takes the PUT. Reads there still answer as an empty
 * namespace would.
 */
#include <errno.h>
#include <string.h>

#include "tests/e2e/e2e.h"

int main(void)
{
    kvs_e2e_daemon_t d;
    kvs_client_t *b, *a_own, *a_in_b, *a_nowhere;
    uint8_t buf[16];
    size_t len;

    kvs_e2e_daemon_init(&d, "e2e_ns_access");
    kvs_e2e_write_config(&d, "[tenant.a]\ntoken = atok\nnamespaces = na\n"
                             "[tenant.b]\ntoken = btok\nnamespaces = nb\n");
    kvs_e2e_daemon_start(&d, NULL);
    b = kvs_e2e_connect(&d, "nb", "btok");
    CHECK_EQ(kvs_client_put(b, "k", 1, "bee", 3, 0), 0);
    a_own = kvs_e2e_connect(&d, "na", "atok");
    a_in_b = kvs_e2e_connect(&d, "nb", "atok");
    a_nowhere = kvs_e2e_connect(&d, "never-named", "atok");

    /* Allowed and empty: the PUT is taken. */
    CHECK_EQ(kvs_client_put(a_own, "k", 1, "aaa", 3, 0), 0);
    /* Not allowed: -EACCES, the same for a namespace with blocks and for
     * one nobody has used. */
    CHECK_EQ(kvs_client_put(a_in_b, "k", 1, "xxx", 3, 0), -EACCES);
    CHECK_EQ(kvs_client_put(a_nowhere, "k", 1, "xxx", 3, 0), -EACCES);
    CHECK_EQ(kvs_client_put(a_in_b, "new", 3, "xxx", 3, 0), -EACCES);
    /* Reads there answer as on an empty namespace, in both. */
    CHECK_EQ(kvs_client_get(a_in_b, "k", 1, buf, sizeof(buf), &len),
             KVS_ENOTFOUND);
    CHECK_EQ(kvs_client_get(a_nowhere, "k", 1, buf, sizeof(buf), &len),
             KVS_ENOTFOUND);
    /* b's block is untouched. */
    CHECK_EQ(kvs_client_get(b, "k", 1, buf, sizeof(buf), &len), 0);
    CHECK(len == 3 && memcmp(buf, "bee", 3) == 0);

    kvs_client_destroy(a_nowhere);
    kvs_client_destroy(a_in_b);
    kvs_client_destroy(a_own);
    kvs_client_destroy(b);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_ns_access: ok\n");
    return 0;
}
