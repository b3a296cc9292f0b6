/* SPDX-License-Identifier: Apache-2.0 */
/*
 * STAT and VERIFY do not show one tenant another's activity (issue 15,
 * finding 4). Tenants a and b have a namespace each; tenant o is marked
 * operator in the config. After b stores blocks, a's STAT still counts
 * only a's namespace (blocks, bytes) and a's own connections, and a's
 * VERIFY checks only a's blocks; the operator sees the whole store.
 */
#include <string.h>

#include "tests/e2e/e2e.h"

static void put_durable(kvs_client_t *c, const char *key)
{
    CHECK_EQ(kvs_client_put(c, key, (uint32_t)strlen(key), "0123456789", 10,
                            KVS_CLIENT_PUT_DURABLE),
             0);
}

static uint64_t verified(kvs_client_t *c)
{
    uint64_t checked = 0, bad = 0;

    CHECK_EQ(kvs_client_verify(c, &checked, &bad), 0);
    CHECK_EQ(bad, 0);
    return checked;
}

int main(void)
{
    kvs_e2e_daemon_t d;
    kvs_client_t *a, *b, *b2, *o;
    char key[16];

    kvs_e2e_daemon_init(&d, "e2e_tenant_stat");
    kvs_e2e_write_config(&d, "[tenant.a]\ntoken = atok\nnamespaces = na\n"
                             "[tenant.b]\ntoken = btok\nnamespaces = nb\n"
                             "[tenant.o]\ntoken = otok\nnamespaces = *\n"
                             "operator = true\n");
    kvs_e2e_daemon_start(&d, NULL);
    a = kvs_e2e_connect(&d, "na", "atok");
    b = kvs_e2e_connect(&d, "nb", "btok");
    b2 = kvs_e2e_connect(&d, "nb", "btok");
    o = kvs_e2e_connect(&d, "na", "otok");

    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "b%d", i);
        put_durable(b, key);
    }
    /* a sees its own empty namespace and its own connection only. */
    CHECK_EQ(kvs_e2e_stat(a, "blocks"), 0);
    CHECK_EQ(kvs_e2e_stat(a, "dram_used_bytes"), 0);
    CHECK_EQ(kvs_e2e_stat(a, "connections"), 1);
    CHECK_EQ(verified(a), 0);
    put_durable(a, "a0");
    CHECK_EQ(kvs_e2e_stat(a, "blocks"), 1);
    CHECK_EQ(kvs_e2e_stat(a, "dram_used_bytes"), 10);
    CHECK_EQ(verified(a), 1);
    /* b sees its five, and both its connections. */
    CHECK_EQ(kvs_e2e_stat(b, "blocks"), 5);
    CHECK_EQ(kvs_e2e_stat(b, "connections"), 2);
    CHECK_EQ(verified(b), 5);
    /* The operator sees the whole store and every connection. */
    CHECK_EQ(kvs_e2e_stat(o, "blocks"), 6);
    CHECK_EQ(kvs_e2e_stat(o, "connections"), 4);
    CHECK_EQ(verified(o), 6);

    kvs_client_destroy(o);
    kvs_client_destroy(b2);
    kvs_client_destroy(b);
    kvs_client_destroy(a);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_tenant_stat: ok\n");
    return 0;
}
